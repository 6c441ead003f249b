//! [`VethPair`]: two virtual Ethernet ends joined like a cable (veth(4)).
//!
//! The pair is created with **one** `RTM_NEWLINK` sent in the first end's namespace; the peer's
//! part of the message carries `IFLA_NET_NS_FD`, so the kernel creates the peer directly inside
//! its target namespace. The seed script instead creates both ends in the current namespace and
//! moves each with `ip link set ... netns`, which costs 15–20 ms per move on these machines
//! against ~1 ms for creating in place. The first end's flags (up), MTU, MAC and controller
//! (bridge) travel in the same message. The peer cannot be brought up in it (the kernel opens the
//! peer before the two are joined and answers `ENOTCONN`), so it is brought up right after, by
//! name, pipelined with the one direct lookup of its ifindex; the address requests follow,
//! pipelined too.
//!
//! `NLM_F_ECHO` makes the kernel answer with the new link, so the first end's ifindex comes back
//! without another request.

use std::sync::Arc;

use ipnetwork::IpNetwork;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoData, InfoVeth, LinkMessage},
};
use rtnetlink::{LinkUnspec, LinkVeth};

use crate::{
    addr::{self, IntoIpNetwork},
    error::{Error, Result},
    guard::{Guard, Resource},
    link::{
        CreationGroup, Link, MacAddr, check_mac, create_link, get_by_name, roll_back,
        settle_message, unmark_blocking,
    },
    name::IfName,
    netlink::{KernelError, Reply},
    netns::{Namespace, NsInner},
};

/// One end's settings.
#[derive(Debug, Default)]
struct End {
    name: String,
    ns: Option<Arc<NsInner>>,
    mac: Option<MacAddr>,
    addresses: Vec<Result<IpNetwork>>,
}

/// Builds a [`VethPair`]; see [`VethPair::new`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Namespace, VethPair, VethPairBuilder};
///
/// let ns = Namespace::new().await?;
/// let builder: VethPairBuilder = VethPair::new("veth0", "veth1").namespace(&ns);
/// let veth = builder.address("10.0.1.1/24").create().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct VethPairBuilder {
    ends: [End; 2],
    mtu: Option<u32>,
    up: bool,
    nodad: bool,
    controller: Option<Link>,
    group: Option<u32>,
}

impl VethPairBuilder {
    /// Puts the first end in `ns` (default: the caller's current namespace). The request is
    /// sent on `ns`'s netlink connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Namespace, VethPair};
    ///
    /// let host = Namespace::new().await?;
    /// let veth = VethPair::new("veth0", "veth1").namespace(&host).create().await?;
    /// assert!(veth.link().is_in(&host) && veth.peer().is_in(&host));
    /// # Ok(()) }
    /// ```
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.ends[0].ns = Some(ns.inner().clone());
        self
    }

    /// Creates the peer directly inside `ns` (default: the first end's namespace), like
    /// `ip link add ... type veth peer name PEER netns NS`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Namespace, VethPair};
    ///
    /// let (host, guest) = (Namespace::new().await?, Namespace::new().await?);
    /// let veth = VethPair::new("veth-guest", "eth0").namespace(&host).peer_namespace(&guest);
    /// let veth = veth.create().await?;
    /// assert!(veth.peer().is_in(&guest));
    /// # Ok(()) }
    /// ```
    pub fn peer_namespace(mut self, ns: &Namespace) -> Self {
        self.ends[1].ns = Some(ns.inner().clone());
        self
    }

    /// MTU of both ends (`mtu N`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1").namespace(&ns).mtu(1400);
    /// let veth = veth.create().await?;
    /// assert_eq!(veth.peer().info().await?.mtu, Some(1400));
    /// # Ok(()) }
    /// ```
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// MAC address of the first end (`address MAC`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let mac: netns_kit::MacAddr = "02:00:00:00:01:01".parse()?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1").namespace(&ns).mac(mac);
    /// let veth = veth.create().await?;
    /// assert_eq!(veth.link().info().await?.mac, Some(mac));
    /// # Ok(()) }
    /// ```
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.ends[0].mac = Some(mac);
        self
    }

    /// MAC address of the peer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1")
    ///     .namespace(&ns)
    ///     .mac("02:00:00:00:01:01".parse()?)
    ///     .peer_mac("02:00:00:00:01:02".parse()?)
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        self.ends[1].mac = Some(mac);
        self
    }

    /// Adds an address to the first end (may be called several times).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1")
    ///     .namespace(&ns)
    ///     .address("10.0.1.1/24")
    ///     .address("fd10::1/64")
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn address(mut self, net: impl IntoIpNetwork) -> Self {
        self.ends[0].addresses.push(net.into_ip_network());
        self
    }

    /// Adds an address to the peer (may be called several times).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Namespace, VethPair};
    ///
    /// let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let veth = VethPair::new("veth0", "eth0")
    ///     .namespace(&ns1)
    ///     .peer_namespace(&ns2)
    ///     .peer_address("10.0.1.2/24");
    /// let veth = veth.create().await?;
    /// # Ok(()) }
    /// ```
    pub fn peer_address(mut self, net: impl IntoIpNetwork) -> Self {
        self.ends[1].addresses.push(net.into_ip_network());
        self
    }

    /// Adds IPv6 addresses without duplicate-address detection, so they are usable at once
    /// (default: off, as with `ip addr add`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1")
    ///     .namespace(&ns)
    ///     .address("fd10::1/64")
    ///     .peer_address("fd10::2/64")
    ///     .nodad(true) // both usable at once, no DAD wait
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn nodad(mut self, nodad: bool) -> Self {
        self.nodad = nodad;
        self
    }

    /// Whether both ends are brought up (default: yes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1").namespace(&ns).up(false);
    /// let veth = veth.create().await?;
    /// assert!(!veth.link().info().await?.up);
    /// veth.link().set_up().await?;
    /// # Ok(()) }
    /// ```
    pub fn up(mut self, up: bool) -> Self {
        self.up = up;
        self
    }

    /// Puts the first end in link group `group` (`group N`), so that `ip link del group N` —
    /// one request, one kernel batch — deletes it together with everything else in the group.
    /// Groups from 2³¹ up are reserved for this crate's own marks and refused by
    /// [`create`](VethPairBuilder::create).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1").namespace(&ns).group(100);
    /// let veth = veth.create().await?;
    /// assert_eq!(veth.link().info().await?.group, 100);
    /// # Ok(()) }
    /// ```
    pub fn group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }

    /// Makes the first end a port of `bridge` as it is created (`master BRIDGE`); the bridge
    /// must be in the first end's namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Bridge, Namespace, VethPair};
    ///
    /// let host = Namespace::new().await?;
    /// let br = Bridge::new("br0").namespace(&host).address("10.0.2.254/24").create().await?;
    /// let veth = VethPair::new("veth-a", "eth0").namespace(&host).controller(br.link());
    /// let veth = veth.create().await?;
    /// assert_eq!(br.ports().await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn controller(mut self, bridge: &Link) -> Self {
        self.controller = Some(bridge.dup());
        self
    }

    /// Creates the pair, its addresses, and brings both ends up.
    ///
    /// Everything is validated before the first request: both names, MACs, every address (see
    /// [`Address::new`](crate::Address::new)), the controller's namespace. If anything fails
    /// after the pair was created, the pair is deleted again before the error is returned.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidName`]/[`Error::InvalidInput`] for bad input, before any request;
    /// * [`Error::AlreadyExists`] if either name is taken in its namespace (nothing is created);
    /// * the kernel's refusal otherwise (e.g. an MTU out of range).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future removes whatever was already made, even a pair whose creation
    /// request was still in flight (see the [crate docs](crate#resource-leaking)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Namespace, VethPair};
    ///
    /// let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let veth = VethPair::new("veth1", "veth2")
    ///     .namespace(&ns1)
    ///     .address("10.1.1.1/24")
    ///     .peer_namespace(&ns2)
    ///     .peer_address("10.1.1.2/24")
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link add type veth")]
    pub async fn create(self) -> Result<VethPair> {
        let [first, second] = self.ends;
        let name = IfName::new(&first.name)?;
        let peer = IfName::new(&second.name)?;
        let ns = match first.ns {
            Some(ns) => ns,
            None => crate::netns::current_inner()?,
        };
        let peer_ns = second.ns.unwrap_or_else(|| ns.clone());
        let object = || {
            format!(
                "veth pair {:?} in {} / {:?} in {}",
                name.as_str(),
                ns.label(),
                peer.as_str(),
                peer_ns.label()
            )
        };
        if ns.id() == peer_ns.id() && name == peer {
            return Err(Error::invalid(
                object(),
                "both ends have the same name in the same namespace",
            ));
        }
        for mac in first.mac.iter().chain(second.mac.iter()) {
            check_mac(mac, object)?;
        }
        check_group(self.group, object)?;
        let mut addresses: [Vec<IpNetwork>; 2] = Default::default();
        for (slot, list) in addresses
            .iter_mut()
            .zip([first.addresses, second.addresses])
        {
            for net in list {
                let net = net?;
                addr::validate_host(&net, object)?;
                if slot.contains(&net) {
                    return Err(Error::invalid(
                        object(),
                        format!("address {net} is given twice"),
                    ));
                }
                slot.push(net);
            }
        }
        if let Some(controller) = &self.controller {
            if controller.ns().id() != ns.id() {
                return Err(Error::invalid(
                    object(),
                    format!(
                        "its controller {} is not in the first end's namespace",
                        controller.label()
                    ),
                ));
            }
        }

        let mut msg = veth_message(&VethMessage {
            name: name.as_str(),
            peer: peer.as_str(),
            peer_ns_fd: (peer_ns.id() != ns.id())
                .then(|| std::os::fd::AsRawFd::as_raw_fd(&**peer_ns.fd())),
            mtu: self.mtu,
            up: self.up,
            mac: first.mac,
            peer_mac: second.mac,
            controller: self.controller.as_ref().map(Link::index),
            group: None,
            peer_group: None,
        });
        let creation = CreationGroup::temporary(self.group);
        if let Some(group) = creation.create_in() {
            msg.attributes
                .push(netlink_packet_route::link::LinkAttribute::Group(group));
        }

        let nl = ns.nl().await?;
        let peer_nl = if peer_ns.id() == ns.id() {
            nl.clone()
        } else {
            peer_ns.nl().await?
        };
        // `peer_ns`'s fd, named in the message, stays open while it is sent: `peer_ns` is alive.
        let (pending, index) =
            create_link(&ns, &nl, &name, msg, creation.temporary_group(), object).await?;
        let first_link = Link::new(ns.clone(), index, name.clone());

        let rest = async {
            // The ownership mark, for `reap` (the kernel ignores an alias in RTM_NEWLINK), and
            // the move out of the temporary group.
            let marked =
                settle_message(index, true, creation.final_group()).map(|msg| nl.send(msg, 0));
            let up = self.up.then(|| {
                let msg = LinkUnspec::new_with_name(peer.as_str()).up().build();
                peer_nl.send(RouteNetlinkMessage::SetLink(msg), 0)
            });
            let peer_index = get_by_name(&peer_nl, peer.as_str())
                .await
                .map_err(|e| e.into_error("look up the peer of", object()))?
                .header
                .index;
            if let Some(up) = up {
                up.ack()
                    .await
                    .map_err(|e| e.into_error("bring up the peer of", object()))?;
            }
            if let Some(marked) = marked {
                marked
                    .ack()
                    .await
                    .map_err(|e| e.into_error("mark", object()))?;
            }
            let second_link = Link::new(peer_ns.clone(), peer_index, peer.clone());
            let mut pending: Vec<(Reply, &'static str, String)> = Vec::new();
            for (link, nl, list) in [
                (&first_link, &nl, &addresses[0]),
                (&second_link, &peer_nl, &addresses[1]),
            ] {
                for net in list {
                    let (m, flags) = addr::add_message(link.index(), net, self.nodad);
                    pending.push((nl.send(m, flags), "add", addr::label(net, link)));
                }
            }
            await_all(pending).await?;
            Ok::<Link, Error>(second_link)
        };
        match rest.await {
            Ok(second_link) => {
                pending.keep();
                Ok(VethPair(Guard::new(VethResource {
                    ends: [first_link, second_link],
                    attempted: std::sync::atomic::AtomicBool::new(false),
                })))
            }
            Err(e) => Err(roll_back(pending, e).await),
        }
    }
}

/// What one `RTM_NEWLINK` creating a veth pair says.
pub(crate) struct VethMessage<'a> {
    pub(crate) name: &'a str,
    pub(crate) peer: &'a str,
    /// Creates the peer directly in the namespace this fd refers to (`IFLA_NET_NS_FD`).
    pub(crate) peer_ns_fd: Option<std::os::fd::RawFd>,
    pub(crate) mtu: Option<u32>,
    /// Brings the first end up. (The peer cannot be brought up in this message: the kernel
    /// opens it before the pair is joined and refuses with `ENOTCONN`.)
    pub(crate) up: bool,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) peer_mac: Option<MacAddr>,
    pub(crate) controller: Option<u32>,
    pub(crate) group: Option<u32>,
    pub(crate) peer_group: Option<u32>,
}

/// The `RTM_NEWLINK` message for a veth pair.
pub(crate) fn veth_message(v: &VethMessage<'_>) -> LinkMessage {
    let mut peer = LinkUnspec::new_with_name(v.peer);
    if let Some(mtu) = v.mtu {
        peer = peer.mtu(mtu);
    }
    if let Some(mac) = v.peer_mac {
        peer = peer.address(mac.0.to_vec());
    }
    if let Some(fd) = v.peer_ns_fd {
        peer = peer.setns_by_fd(fd);
    }
    if let Some(group) = v.peer_group {
        peer = peer.link_group(group);
    }
    let mut msg =
        LinkVeth::new(v.name, v.peer).set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    if v.up {
        msg = msg.up();
    }
    if let Some(mtu) = v.mtu {
        msg = msg.mtu(mtu);
    }
    if let Some(mac) = v.mac {
        msg = msg.address(mac.0.to_vec());
    }
    if let Some(controller) = v.controller {
        msg = msg.controller(controller);
    }
    if let Some(group) = v.group {
        msg = msg.link_group(group);
    }
    msg.build()
}

/// Refuses a link group from the range this crate uses for its ownership marks.
pub(crate) fn check_group(group: Option<u32>, object: impl FnOnce() -> String) -> Result<()> {
    match group {
        Some(g) if crate::owner::is_tagged(g) => Err(Error::invalid(
            object(),
            format!("link group {g} is in the range reserved for netns-kit's marks (2^31 and up)"),
        )),
        _ => Ok(()),
    }
}

/// The ifindex of the link the kernel echoed back (`NLM_F_ECHO`).
pub(crate) fn echoed_index(messages: &[RouteNetlinkMessage]) -> Option<u32> {
    messages.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(LinkMessage { header, .. }) if header.index > 0 => {
            Some(header.index)
        }
        _ => None,
    })
}

/// Waits for every pipelined request, each with its operation and object, and returns the
/// first error.
pub(crate) async fn await_all(pending: Vec<(Reply, &'static str, String)>) -> Result<()> {
    let results =
        futures::future::join_all(pending.into_iter().map(|(reply, op, label)| async move {
            reply.ack().await.map_err(|e| (e, op, label))
        }))
        .await;
    for result in results {
        if let Err((e, op, label)) = result {
            return Err(KernelError::into_error(e, op, label));
        }
    }
    Ok(())
}

/// Whether a deletion removed the link or found it gone.
enum Gone {
    Deleted,
    Already,
}

async fn delete_end(end: &Link) -> Result<Gone> {
    let nl = end.ns().nl().await?;
    match nl
        .send(crate::link::del_link_message(end.index()), 0)
        .ack()
        .await
    {
        Ok(()) => Ok(Gone::Deleted),
        Err(e) if e.is_not_found() => Ok(Gone::Already),
        Err(e) => Err(e.into_error("delete", end.label())),
    }
}

fn delete_end_blocking(end: &Link) -> Result<Gone> {
    let answers = end
        .ns()
        .blocking_acks(
            vec![(crate::link::del_link_message(end.index()), 0)],
            crate::netns::BLOCKING_TIMEOUT,
        )
        .map_err(|e| Error::os("delete", end.label(), e))?;
    match answers.into_iter().next() {
        Some(Err(e)) if e.is_not_found() => Ok(Gone::Already),
        Some(Err(e)) => Err(e.into_error("delete", end.label())),
        _ => Ok(Gone::Deleted),
    }
}

#[derive(Debug)]
pub(crate) struct VethResource {
    pub(crate) ends: [Link; 2],
    /// Set once a deletion of the first end has been sent: after that, finding the first end
    /// gone means our own deletion took it (and the peer), not that it was moved away.
    attempted: std::sync::atomic::AtomicBool,
}

impl Resource for VethResource {
    fn describe(&self) -> String {
        format!(
            "veth pair {} / {}",
            self.ends[0].label(),
            self.ends[1].label()
        )
    }

    async fn remove(&self) -> Result<()> {
        // Deleting either end deletes both. The first end is tried; the second only if the
        // first was gone (it may have been moved away): deleting it by an ifindex that was
        // already freed could hit another link.
        let [a, b] = &self.ends;
        let repeated = self
            .attempted
            .swap(true, std::sync::atomic::Ordering::AcqRel);
        match delete_end(a).await? {
            Gone::Already if !repeated => delete_end(b).await.map(drop),
            _ => Ok(()),
        }
    }

    fn remove_blocking(&self) -> Result<()> {
        let [a, b] = &self.ends;
        if a.ns().is_doomed() && b.ns().is_doomed() {
            // Both namespaces die with this crate's last references: the kernel deletes the
            // pair with them.
            return Ok(());
        }
        let repeated = self
            .attempted
            .swap(true, std::sync::atomic::Ordering::AcqRel);
        match delete_end_blocking(a)? {
            Gone::Already if !repeated => delete_end_blocking(b).map(drop),
            _ => Ok(()),
        }
    }
}

/// A veth pair: two virtual Ethernet interfaces joined like a cable (veth(4)), possibly in two
/// namespaces. The guard deletes the pair (see the [guard contract](crate#guards)); deleting
/// either end deletes the other, so an end already gone counts as deleted.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Namespace, VethPair};
///
/// let host = Namespace::new().await?;
/// let guest = Namespace::new().await?;
/// let veth = VethPair::new("veth-host", "eth0")
///     .namespace(&host)
///     .peer_namespace(&guest)
///     .create()
///     .await?;
/// assert_eq!(veth.peer().name(), "eth0");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct VethPair(Guard<VethResource>);

impl VethPair {
    /// Starts building a pair whose ends are called `name` and `peer`, like
    /// `ip link add NAME type veth peer name PEER`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let v = netns_kit::VethPair::new("a", "b").namespace(&ns).mtu(9000).create().await?;
    /// # Ok(()) }
    /// ```
    pub fn new(name: impl Into<String>, peer: impl Into<String>) -> VethPairBuilder {
        VethPairBuilder {
            ends: [
                End {
                    name: name.into(),
                    ..End::default()
                },
                End {
                    name: peer.into(),
                    ..End::default()
                },
            ],
            mtu: None,
            up: true,
            nodad: false,
            controller: None,
            group: None,
        }
    }

    /// The first end.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let veth = netns_kit::VethPair::new("veth0", "veth1").namespace(&ns).create().await?;
    /// let addr = veth.link().add_address("10.0.1.1/24").await?;
    /// assert_eq!(veth.link().name(), "veth0");
    /// # Ok(()) }
    /// ```
    pub fn link(&self) -> &Link {
        &self.0.get().ends[0]
    }

    /// The peer end.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Namespace, VethPair};
    ///
    /// let (host, guest) = (Namespace::new().await?, Namespace::new().await?);
    /// let veth = VethPair::new("veth0", "eth0").namespace(&host).peer_namespace(&guest);
    /// let veth = veth.create().await?;
    /// let addr = veth.peer().add_address("10.0.1.2/24").await?;
    /// assert_eq!(veth.peer().name(), "eth0");
    /// # Ok(()) }
    /// ```
    pub fn peer(&self) -> &Link {
        &self.0.get().ends[1]
    }

    /// Deletes the pair now and reports errors.
    ///
    /// # Errors
    ///
    /// The kernel's refusal (an end already gone is not an error).
    ///
    /// # Cancel safety
    ///
    /// Once polled, the deletion is sent and carried out even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(v: netns_kit::VethPair) -> netns_kit::Result<()> {
    /// v.delete().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link del")]
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// Disarms the guard: the pair stays. Returns handles to both ends.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(v: netns_kit::VethPair) {
    /// let [end, peer] = v.keep();
    /// # }
    /// ```
    pub fn keep(self) -> [Link; 2] {
        let resource = self.0.keep();
        let [end, _] = &resource.ends;
        unmark_blocking(end.ns(), end.index(), || end.label());
        resource.ends.map(Link::handed_out)
    }
}
