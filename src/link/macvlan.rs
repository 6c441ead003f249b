//! [`Macvlan`]: a macvlan interface (`ip link add link PARENT type macvlan mode M`), an
//! interface with a MAC address of its own on top of a parent Ethernet link — how a runtime
//! puts a container straight on the parent's network, without veth and bridge.
//!
//! The interface is created with one `RTM_NEWLINK` sent in the parent's namespace (it must
//! name its parent by index there) and, for another target namespace, placed directly inside
//! it (`IFLA_NET_NS_FD`), as the kernel allows for macvlan: it never appears in the parent's
//! namespace. Its index there is then looked up by name, its addresses added and the interface
//! brought up through the target's connection, pipelined. Modes: `bridge` (macvlans of one
//! parent reach each other directly), `private`, `vepa` (through the external switch) and
//! `passthru` (one macvlan takes over the parent). In no mode does a macvlan reach its own
//! parent's addresses: that is the kernel's design, not an error.

use std::sync::Arc;

use ipnetwork::IpNetwork;
use netlink_packet_route::link::{LinkAttribute, LinkMessage, MacVlanMode};
use rtnetlink::LinkMacVlan;

use super::{
    Link, MacAddr, PendingLink, address_label, await_all, check_mac, remove_own_link,
    remove_own_link_blocking,
};
use crate::{
    error::Result,
    guard::{self, Guard, Resource},
    ip::{IntoIpNetwork, host_addresses},
    name::IfName,
    netlink::{
        Nl,
        msg::{add_address, set_link},
    },
    netns::{Namespace, NsInner},
    owner, trace,
};

/// How a [`Macvlan`] shares its parent (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MacvlanMode {
    /// Macvlans of one parent reach each other directly (the usual choice).
    #[default]
    Bridge,
    /// No traffic between macvlans of one parent.
    Private,
    /// Traffic between macvlans goes out through the parent to an external switch.
    Vepa,
    /// One macvlan takes over the parent (for a single container).
    Passthru,
}

impl MacvlanMode {
    fn netlink(self) -> MacVlanMode {
        match self {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        }
    }
}

/// Builds a [`Macvlan`]; see [`Macvlan::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct MacvlanBuilder {
    name: String,
    parent: Link,
    mode: MacvlanMode,
    ns: Option<Arc<NsInner>>,
    addresses: Vec<Result<IpNetwork>>,
    mac: Option<MacAddr>,
    mtu: Option<u32>,
    nodad: bool,
}

/// Creates a link through the parent's namespace (`parent_nl`) directly inside `ns`
/// (`IFLA_NET_NS_FD` in `msg`), under a guard that deletes it through `nl`, the connection of
/// `ns`, if a later step fails. The kernel echoes nothing back across namespaces: the caller
/// looks the new link up by name.
async fn create_elsewhere(
    parent_nl: &Nl,
    ns: &Arc<NsInner>,
    nl: &Nl,
    name: &IfName,
    msg: LinkMessage,
    object: impl Fn() -> String,
) -> Result<Guard<PendingLink>> {
    use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
    let created = parent_nl
        .send(
            netlink_packet_route::RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .ack()
        .await;
    let pending = Guard::new(PendingLink {
        ns: ns.clone(),
        via: nl.clone(),
        name: name.clone(),
        index: None,
        alone_in_group: None,
    });
    match created {
        Ok(()) => Ok(pending),
        Err(e) if e.from_kernel => {
            pending.into_inner();
            Err(e.into_error("create", object()))
        }
        Err(e) => Err(guard::roll_back(pending, e.into_error("create", object())).await),
    }
}

impl MacvlanBuilder {
    /// The mode (default [`MacvlanMode::Bridge`]).
    pub fn mode(mut self, mode: MacvlanMode) -> Self {
        self.mode = mode;
        self
    }

    /// Creates the interface directly inside `ns` (default: the parent's namespace).
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.ns = Some(ns.inner().clone());
        self
    }

    /// Adds an address (IPv4 or IPv6); call once per address.
    pub fn address(mut self, net: impl IntoIpNetwork) -> Self {
        self.addresses.push(net.into_ip_network());
        self
    }

    /// Adds IPv6 addresses without duplicate-address detection, usable at once (default: on).
    pub fn nodad(mut self, on: bool) -> Self {
        self.nodad = on;
        self
    }

    /// Its MAC address (default: a random one from the kernel).
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Its MTU (default: the parent's; at most the parent's).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "macvlan",
            format!("macvlan {:?} on {}", self.name, self.parent.name()),
            self.ns.as_ref().map_or_else(
                || self.parent.ns().label().to_owned(),
                |ns| ns.label().to_owned()
            ),
        )
    }

    /// Creates the interface, inside its namespace, with its addresses, up.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidName`](crate::Error::InvalidName)/[`Error::InvalidInput`](crate::Error::InvalidInput) before any request: a bad name,
    ///   MAC or address, an address given twice;
    /// * [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name is taken in the target namespace;
    /// * the kernel's refusal otherwise (a parent that is not Ethernet, an MTU over the
    ///   parent's, a second `passthru`).
    ///
    /// Whatever was made is removed again before the error is returned.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future removes whatever was already made, except in one narrow window:
    /// a creation request sent for another namespace whose answer was not read yet (the
    /// interface is then found by name there by the next attempt, `EEXIST`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     host: netns_kit::Namespace,
    /// #     container: netns_kit::Namespace,
    /// # ) -> netns_kit::Result<()> {
    /// use netns_kit::Macvlan;
    /// let eth0 = host.link_by_name("eth0").await?;
    /// let mv = Macvlan::builder("eth0", &eth0)
    ///     .namespace(&container)
    ///     .address("10.77.0.5/24")
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link add type macvlan")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    // Over 80 lines on purpose: the request, the lookup and the mark with addresses share one
    // rollback guard and read best as one sequence.
    pub async fn create(self) -> Result<Macvlan> {
        let span = self.create_span();
        trace::timed(span, async move {
            let name = IfName::new(&self.name)?;
            let parent_ns = self.parent.ns().clone();
            let ns = self.ns.clone().unwrap_or_else(|| parent_ns.clone());
            let object = || {
                format!(
                    "macvlan {:?} on {} in {}",
                    name.as_str(),
                    self.parent.label(),
                    ns.label()
                )
            };
            if let Some(mac) = &self.mac {
                check_mac(mac, object)?;
            }
            let addresses = host_addresses(self.addresses, object)?;
            let mut msg = LinkMacVlan::new(name.as_str(), self.parent.index(), self.mode.netlink())
                .txqueuelen(owner::CREATION_TXQLEN);
            if let Some(mtu) = self.mtu {
                msg = msg.mtu(mtu);
            }
            if let Some(mac) = self.mac {
                msg = msg.address(mac.0.to_vec());
            }
            let mut msg = msg.build();
            let elsewhere = ns.id() != parent_ns.id();
            if elsewhere {
                // The target's fd stays open while the request is sent: `ns` holds it.
                msg.attributes
                    .push(LinkAttribute::NetNsFd(std::os::fd::AsRawFd::as_raw_fd(
                        &**ns.fd(),
                    )));
            }
            let parent_nl = parent_ns.nl().await?;
            let nl = if elsewhere {
                ns.nl().await?
            } else {
                parent_nl.clone()
            };
            let pending = if elsewhere {
                create_elsewhere(&parent_nl, &ns, &nl, &name, msg, object).await?
            } else {
                super::create_link(&ns, &nl, &name, msg, None, object)
                    .await?
                    .0
            };
            let mut pending = pending;
            let index = match nl.link_named(name.as_str()).await {
                Ok(found) => found.header.index,
                Err(e) => {
                    let e = e.into_error("look up the new", object());
                    return Err(guard::roll_back(pending, e).await);
                }
            };
            // From here on a rollback removes exactly this link.
            pending.get_mut().index = Some(index);
            let link = Link::new(ns.clone(), index, name.clone());
            // Marked while down, then up (see `settle_message`).
            let mark = set_link(index, |b| {
                b.alias(owner::marker()).txqueuelen(owner::DEFAULT_TXQLEN)
            });
            let up = set_link(index, |b| b.up());
            let mut requests = vec![
                (nl.send(mark, 0), "mark", object()),
                (nl.send(up, 0), "bring up", object()),
            ];
            for net in &addresses {
                let (m, flags) = add_address(index, net, self.nodad);
                requests.push((nl.send(m, flags), "add", address_label(net, &link)));
            }
            if let Err(e) = await_all(requests).await {
                return Err(guard::roll_back(pending, e).await);
            }
            pending.into_inner();
            Ok(Macvlan(Guard::new(MacvlanResource {
                link,
                parent: self.parent.name().to_owned(),
                mode: self.mode,
                addresses,
            })))
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<Macvlan> {
        crate::netlink::block_on(self.create())
    }
}

#[derive(Debug)]
pub(crate) struct MacvlanResource {
    link: Link,
    parent: String,
    mode: MacvlanMode,
    addresses: Vec<IpNetwork>,
}

impl Resource for MacvlanResource {
    const KIND: &'static str = "macvlan";

    fn netns(&self) -> String {
        self.link.ns().label().to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "macvlan {:?} on {:?} in {}",
            self.link.name(),
            self.parent,
            self.link.ns().label()
        )
    }

    async fn remove(&self) -> Result<()> {
        remove_own_link(&self.link, self.describe()).await
    }

    fn remove_blocking(&self) -> Result<()> {
        remove_own_link_blocking(&self.link, self.describe())
    }
}

/// A macvlan interface made by [`Macvlan::builder`]; the guard deletes it when dropped or
/// [deleted](Macvlan::delete), see the [guard contract](crate#guards).
#[derive(Debug)]
pub struct Macvlan(Guard<MacvlanResource>);

impl std::fmt::Display for Macvlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.get().describe())
    }
}

impl Macvlan {
    /// Starts building macvlan `name` on `parent` (an Ethernet link: a veth end, a physical
    /// interface, a bridge).
    pub fn builder(name: impl AsRef<str>, parent: &Link) -> MacvlanBuilder {
        MacvlanBuilder {
            name: name.as_ref().to_owned(),
            parent: parent.clone(),
            mode: MacvlanMode::default(),
            ns: None,
            addresses: Vec::new(),
            mac: None,
            mtu: None,
            nodad: true,
        }
    }

    /// The interface, in its namespace.
    pub fn link(&self) -> &Link {
        &self.0.get().link
    }

    /// The mode.
    pub fn mode(&self) -> MacvlanMode {
        self.0.get().mode
    }

    /// The addresses given.
    pub fn addresses(&self) -> &[IpNetwork] {
        &self.0.get().addresses
    }

    /// Deletes the interface now and reports errors (dropping does the same, silently).
    ///
    /// # Errors
    ///
    /// The kernel's refusal; an interface already gone is not an error.
    #[doc(alias = "ip link del")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// The blocking form of [`delete`](Self::delete): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }

    /// Disarms the guard: the interface stays after the guard is gone, without this process's
    /// ownership mark (see [the guard contract](crate#guards)). Returns the same, now inert,
    /// guard.
    pub fn keep(mut self) -> Self {
        super::keep_own_link(&mut self.0, |r| &r.link);
        self
    }
}
