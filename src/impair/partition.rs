//! Partitions: traffic between two sets of hosts (namespaces), or over one link, silently
//! dropped — as a real partition looks: links stay up, addresses stay, no ICMP error and no
//! TCP reset comes back, the packets just go nowhere — until the guard is dropped.
//!
//! A partition acts where packets leave: every interface of a host on one side drops what it
//! sends to an address of the other side (IPv4, IPv6, and ARP requests for it), in the same
//! relay job that carries the interface's impairment, if any. So traffic through a router
//! between the sides is cut as well, and traffic of either side with hosts on neither side is
//! not. Dropping the guard heals at once: what TCP retransmits next arrives.

use std::{
    collections::HashSet,
    fmt,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{
    Direction,
    guard::{Channel, channel},
    relay::Block,
};
use crate::{
    error::{Error, Result},
    link::{Link, lookup::dump_links},
    name::IfName,
    netns::Namespace,
    sys,
};

/// A partition in force; dropping it (or [`Partition::heal`]) heals it.
///
/// Made by [`partition`] (between sets of hosts) and [`Link::cut`] (one link).
pub struct Partition {
    id: u64,
    what: String,
    channels: Vec<Arc<Channel>>,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("what", &self.what)
            .field("interfaces", &self.channels.len())
            .finish()
    }
}

impl fmt::Display for Partition {
    /// What is cut off from what.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Partition {
    fn new(what: String) -> Partition {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Partition {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            what,
            channels: Vec::new(),
        }
    }

    async fn block(&mut self, link: &Link, direction: Direction, block: Block) -> Result<()> {
        let channel = channel(link, direction).await?;
        let id = self.id;
        channel.shared.update(|s| s.blocks.push((id, block)));
        self.channels.push(channel);
        Ok(())
    }

    /// Heals the partition now (dropping it does the same).
    pub fn heal(self) {}
}

impl Drop for Partition {
    fn drop(&mut self) {
        let id = self.id;
        for channel in self.channels.drain(..) {
            channel
                .shared
                .update(|s| s.blocks.retain(|(b, _)| *b != id));
        }
        tracing::debug!(target: "netns_kit::impair", "healed: {}", self.what);
    }
}

/// The interfaces of `ns` that partitions, and a lab's per-host impairments and captures, act
/// on: all but loopback and the relay's own TAPs (one dump, no lookup per interface).
pub(crate) async fn host_interfaces(ns: &Namespace) -> Result<Vec<Link>> {
    dump_links(ns.inner())
        .await?
        .into_iter()
        .filter(|info| info.name != "lo" && !info.name.starts_with(super::divert::TAP_PREFIX))
        .map(|info| {
            Ok(Link::new(
                ns.inner().clone(),
                info.index,
                IfName::new(&info.name)?,
            ))
        })
        .collect()
}

/// The interfaces of `ns` a partition acts on (all but loopback and the relay's own TAPs) and
/// its addresses.
async fn host(ns: &Namespace) -> Result<(Vec<Link>, Vec<IpAddr>)> {
    let links = host_interfaces(ns).await?;
    let addresses = sys::in_ns(ns.inner().fd().clone(), || {
        let all = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
        Ok(all
            .filter_map(|a| a.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::from(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::from(v6.ip())))
            })
            .filter(|ip| !ip.is_loopback())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect::<Vec<_>>())
    })
    .await
    .map_err(|e| Error::os("list the addresses of", ns.to_string(), e))?;
    Ok((links, addresses))
}

/// Cuts the hosts `a` from the hosts `b` (namespaces) until the returned guard is dropped: what
/// any of them sends to an address of the other side is dropped silently. See the
/// [`impair`](crate::impair) module for how; it uses the user-space path, so it needs what that
/// path needs (root).
///
/// # Errors
///
/// [`Error::InvalidInput`] for an empty side or a namespace on both; [`Error::Unsupported`]
/// where the user-space path cannot work. Nothing is left behind on error.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(a: &netns_kit::Namespace, b: &netns_kit::Namespace, c: &netns_kit::Namespace) -> netns_kit::Result<()> {
/// let split = netns_kit::impair::partition(&[a, b], &[c]).await?;
/// // a and b reach each other, not c; c reaches neither.
/// split.heal();
/// # Ok(()) }
/// ```
#[cfg_attr(not(feature = "tokio"), doc(hidden))]
pub async fn partition(a: &[&Namespace], b: &[&Namespace]) -> Result<Partition> {
    let names = |side: &[&Namespace]| {
        side.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let what = format!("partition of [{}] from [{}]", names(a), names(b));
    if a.is_empty() || b.is_empty() {
        return Err(Error::invalid(what, "each side needs at least one host"));
    }
    if let Some(both) = a
        .iter()
        .find(|x| b.iter().any(|y| x.inner().id() == y.inner().id()))
    {
        return Err(Error::invalid(what, format!("{both} is on both sides")));
    }
    let mut sides = [Vec::new(), Vec::new()];
    for (i, side) in [a, b].into_iter().enumerate() {
        for ns in side {
            sides[i].push(host(ns).await?);
        }
    }
    let others = |i: usize| -> Vec<IpAddr> {
        sides[1 - i]
            .iter()
            .flat_map(|(_, addresses)| addresses.iter().copied())
            .collect()
    };
    let mut partition = Partition::new(what);
    for (i, side) in sides.iter().enumerate() {
        let blocked = others(i);
        for (links, _) in side {
            for link in links {
                partition
                    .block(link, Direction::Outbound, Block::To(blocked.clone()))
                    .await?;
            }
        }
    }
    tracing::debug!(target: "netns_kit::impair", "{partition}");
    Ok(partition)
}

/// The blocking form of [`partition`]: the same work, checks and errors, on the calling thread
/// without an async runtime (see [the blocking API](crate#blocking-api)). Do not call it from
/// async code.
pub fn partition_blocking(a: &[&Namespace], b: &[&Namespace]) -> Result<Partition> {
    crate::netlink::block_on(partition(a, b))
}

impl Link {
    /// Cuts this link until the returned guard is dropped: everything it sends and receives
    /// is dropped silently (the link stays up). Uses the user-space path (root).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] where the user-space path cannot work; nothing is left behind.
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn cut(&self) -> Result<Partition> {
        let mut partition = Partition::new(format!("cut of {}", self.label()));
        partition
            .block(self, Direction::Outbound, Block::All)
            .await?;
        partition
            .block(self, Direction::Inbound, Block::All)
            .await?;
        Ok(partition)
    }

    /// The blocking form of [`cut`](Self::cut): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn cut_blocking(&self) -> Result<Partition> {
        crate::netlink::block_on(self.cut())
    }
}
