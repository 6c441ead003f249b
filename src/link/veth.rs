//! [`VethPair`]: two virtual Ethernet ends joined like a cable (veth(4)).
//!
//! The pair is created with **one** `RTM_NEWLINK` sent in the first end's namespace; the peer's
//! part of the message carries `IFLA_NET_NS_FD`, so the kernel creates the peer directly inside
//! its target namespace. The classic shell recipe instead creates both ends in the current
//! namespace and moves each with `ip link set ... netns`, which costs 15–20 ms per move on these
//! machines against ~1 ms for creating in place. The first end's MTU, MAC and controller
//! (bridge) travel in the same message. Both ends are created down: each gets its ownership mark
//! (and its queue length back from the creation marker) by a request of its own and is brought
//! up by the next one, pipelined with the one direct lookup of the peer's ifindex (see
//! `create::settle_message` for why not in one request); the address requests follow, pipelined
//! too.
//!
//! `NLM_F_ECHO` makes the kernel answer with the new link, so the first end's ifindex comes back
//! without another request.

use std::sync::Arc;

use ipnetwork::IpNetwork;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::{
    CreationGroup, Link, MacAddr, address_label, await_all, check_group, check_mac, create_link,
    settle_message, unmark_blocking,
};
use crate::{
    error::{Error, Result},
    guard::{self, Guard, Resource},
    ip::{IntoIpNetwork, host_addresses},
    name::IfName,
    netlink::{
        BLOCKING_TIMEOUT, Nl, Reply,
        msg::{add_address, del_link, set_link, set_link_named},
    },
    netns::{Namespace, NsInner},
    owner, trace,
};

/// One end's settings.
#[derive(Debug, Default)]
struct End {
    name: String,
    ns: Option<Arc<NsInner>>,
    mac: Option<MacAddr>,
    addresses: Vec<Result<IpNetwork>>,
}

/// Builds a [`VethPair`]; see [`VethPair::builder`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Namespace, VethPair, VethPairBuilder};
///
/// let ns = Namespace::new().await?;
/// let builder: VethPairBuilder = VethPair::builder("veth0", "veth1").namespace(&ns);
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
    /// Whether `create` also waits for a usable link-local address on the first end (a
    /// router's end: see `netlink::ready`).
    router_end: bool,
    txqlen: Option<u32>,
}

impl VethPairBuilder {
    /// Makes `create` wait for a usable link-local address on the first end too (it must be
    /// made without duplicate-address detection).
    pub(crate) fn router_end(mut self) -> Self {
        self.router_end = true;
        self
    }

    /// Puts the first end in `ns` (default: the caller's current namespace). The request is
    /// sent on `ns`'s netlink connection.
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
    /// let veth = VethPair::builder("veth-guest", "eth0").namespace(&host).peer_namespace(&guest);
    /// let veth = veth.create().await?;
    /// assert!(veth.peer().is_in(&guest));
    /// # Ok(()) }
    /// ```
    pub fn peer_namespace(mut self, ns: &Namespace) -> Self {
        self.ends[1].ns = Some(ns.inner().clone());
        self
    }

    /// MTU of both ends (`mtu N`).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// MAC address of the first end (`address MAC`).
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.ends[0].mac = Some(mac);
        self
    }

    /// MAC address of the peer.
    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        self.ends[1].mac = Some(mac);
        self
    }

    /// Adds an address to the first end (may be called several times).
    pub fn address(mut self, net: impl IntoIpNetwork) -> Self {
        self.ends[0].addresses.push(net.into_ip_network());
        self
    }

    /// Adds an address to the peer (may be called several times).
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
    /// let veth = netns_kit::VethPair::builder("veth0", "veth1")
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
    pub fn up(mut self, up: bool) -> Self {
        self.up = up;
        self
    }

    /// The transmit queue length of both ends (`txqueuelen N`; default: the kernel's, 1000).
    /// A veth has no queue of its own (its qdisc is `noqueue`), so this only matters to a
    /// qdisc added later that sizes itself by it, and to tools that compare it.
    pub fn txqlen(mut self, txqlen: u32) -> Self {
        self.txqlen = Some(txqlen);
        self
    }

    /// Puts the first end in link group `group` (`group N`), so that `ip link del group N` —
    /// one request, one kernel batch — deletes it together with everything else in the group.
    /// Groups from 2³¹ up are reserved for this crate's own marks and refused by
    /// [`create`](VethPairBuilder::create).
    pub fn link_group(mut self, group: u32) -> Self {
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
    /// let br = Bridge::builder("br0").namespace(&host).address("10.0.2.254/24").create().await?;
    /// let veth = VethPair::builder("veth-a", "eth0").namespace(&host).controller(br.link());
    /// let veth = veth.create().await?;
    /// assert_eq!(br.ports().await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn controller(mut self, bridge: &Link) -> Self {
        self.controller = Some(bridge.dup());
        self
    }

    /// The span of `create`: what is being created, and where.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "veth",
            format!(
                "veth pair {:?} / {:?}",
                self.ends[0].name, self.ends[1].name
            ),
            self.ends[0].ns.as_ref().map_or_else(
                || "the current namespace".to_owned(),
                |ns| ns.label().to_owned()
            ),
        )
    }

    /// Creates the pair, its addresses, and brings both ends up.
    ///
    /// Everything is validated before the first request: both names, MACs, every address (see
    /// [`Address::builder`](crate::Address::builder)), the controller's namespace. If anything
    /// fails after the pair was created, the pair is deleted again before the error is returned.
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
    /// let veth = VethPair::builder("veth1", "veth2")
    ///     .namespace(&ns1)
    ///     .address("10.1.1.1/24")
    ///     .peer_namespace(&ns2)
    ///     .peer_address("10.1.1.2/24")
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link add type veth")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<VethPair> {
        let span = self.create_span();
        trace::timed(span, async move {
            let router_end = self.router_end;
            let plan = self.validate()?;
            let object = || plan.to_string();
            let creation = CreationGroup::temporary(plan.group);
            let nl = plan.ns.nl().await?;
            let peer_nl = if plan.peer_ns.id() == plan.ns.id() {
                nl.clone()
            } else {
                plan.peer_ns.nl().await?
            };
            // `peer_ns`'s fd, named in the message, stays open while it is sent: `plan` holds it.
            let mut attempts = 0;
            let (pending, index) = loop {
                let msg = plan.message(&creation);
                let created = create_link(
                    &plan.ns,
                    &nl,
                    &plan.name,
                    msg,
                    creation.temporary_group(),
                    object,
                )
                .await;
                attempts += 1;
                match created {
                    // The explicit indexes (see `pair_indexes`) are another link's — the
                    // kernel says `EBUSY` for the peer's, `EEXIST` (as for a name taken)
                    // for the first end's: again with the next ones.
                    Err(e)
                        if attempts < 3
                            && plan.peer_ns.id() != plan.ns.id()
                            && (e.errno() == Some(nix::libc::EBUSY)
                                || (e.is_already_exists()
                                    && nl
                                        .link_named(plan.name.as_str())
                                        .await
                                        .is_err_and(|e| e.is_not_found())
                                    && peer_nl
                                        .link_named(plan.peer.as_str())
                                        .await
                                        .is_err_and(|e| e.is_not_found()))) =>
                    {
                        continue;
                    }
                    created => break created?,
                }
            };
            match plan.configure(&nl, &peer_nl, index, &creation).await {
                Ok(ends) => {
                    pending.into_inner();
                    let pair = VethPair(Guard::new(VethResource {
                        ends,
                        attempted: std::sync::atomic::AtomicBool::new(false),
                    }));
                    if plan.up {
                        // Ready on return: both ends pass traffic (see `netlink::ready`).
                        let ends = [pair.link(), pair.peer()]
                            .into_iter()
                            .zip(&plan.addresses)
                            .zip([router_end, false])
                            .map(|((l, addresses), router)| crate::netlink::ready::Watched {
                                ns: l.ns().fd().clone(),
                                index: l.index(),
                                ipv6: addresses.iter().any(IpNetwork::is_ipv6),
                                link_local: router && addresses.iter().any(IpNetwork::is_ipv6),
                                state: true,
                            })
                            .collect();
                        crate::netlink::ready::wait_ready(ends, &object()).await;
                    }
                    Ok(pair)
                }
                Err(e) => Err(guard::roll_back(pending, e).await),
            }
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<VethPair> {
        crate::netlink::block_on(self.create())
    }

    /// Checks everything before the first request: both names, MACs, the group, every
    /// address, the controller's namespace.
    fn validate(self) -> Result<VethPlan> {
        let [first, second] = self.ends;
        let ns = match first.ns {
            Some(ns) => ns,
            None => crate::netns::current_inner()?,
        };
        let plan = VethPlan {
            name: IfName::new(&first.name)?,
            peer: IfName::new(&second.name)?,
            peer_ns: second.ns.unwrap_or_else(|| ns.clone()),
            ns,
            addresses: Default::default(),
            macs: [first.mac, second.mac],
            mtu: self.mtu,
            up: self.up,
            nodad: self.nodad,
            controller: self.controller,
            group: self.group,
            txqlen: self.txqlen.unwrap_or(owner::DEFAULT_TXQLEN),
        };
        let object = || plan.to_string();
        if plan.ns.id() == plan.peer_ns.id() && plan.name == plan.peer {
            return Err(Error::invalid(
                object(),
                "both ends have the same name in the same namespace",
            ));
        }
        for mac in plan.macs.iter().flatten() {
            check_mac(mac, object)?;
        }
        check_group(plan.group, object)?;
        if let Some(controller) = &plan.controller {
            if controller.ns().id() != plan.ns.id() {
                return Err(Error::invalid(
                    object(),
                    format!(
                        "its controller {} is not in the first end's namespace",
                        controller.label()
                    ),
                ));
            }
        }
        let addresses = [
            host_addresses(first.addresses, object)?,
            host_addresses(second.addresses, object)?,
        ];
        Ok(VethPlan { addresses, ..plan })
    }
}

/// A validated veth pair, ready to be created.
#[derive(Debug)]
struct VethPlan {
    name: IfName,
    peer: IfName,
    ns: Arc<NsInner>,
    peer_ns: Arc<NsInner>,
    addresses: [Vec<IpNetwork>; 2],
    macs: [Option<MacAddr>; 2],
    mtu: Option<u32>,
    up: bool,
    nodad: bool,
    controller: Option<Link>,
    group: Option<u32>,
    /// What replaces the creation queue length (see `owner`).
    txqlen: u32,
}

impl std::fmt::Display for VethPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "veth pair {:?} in {} / {:?} in {}",
            self.name.as_str(),
            self.ns.label(),
            self.peer.as_str(),
            self.peer_ns.label()
        )
    }
}

impl VethPlan {
    /// The one `RTM_NEWLINK` that creates the pair, created in `creation`'s group.
    fn message(&self, creation: &CreationGroup) -> LinkMessage {
        veth_message(&VethMessage {
            name: self.name.as_str(),
            peer: self.peer.as_str(),
            peer_ns_fd: (self.peer_ns.id() != self.ns.id())
                .then(|| std::os::fd::AsRawFd::as_raw_fd(&**self.peer_ns.fd())),
            mtu: self.mtu,
            mac: self.macs[0],
            peer_mac: self.macs[1],
            controller: self.controller.as_ref().map(Link::index),
            group: creation.create_in(),
            peer_group: None,
            single_queue: false,
        })
    }

    /// Everything after the creation, pipelined: both ends' ownership marks (the kernel ignores
    /// an alias in `RTM_NEWLINK`) and the move out of the temporary group, the peer up and its
    /// index looked up, then every address. Returns both ends.
    async fn configure(
        &self,
        nl: &Nl,
        peer_nl: &Nl,
        index: u32,
        creation: &CreationGroup,
    ) -> Result<[Link; 2]> {
        let object = || self.to_string();
        let marked =
            settle_message(index, true, creation.final_group(), self.txqlen).map(|m| nl.send(m, 0));
        let up = self
            .up
            .then(|| nl.send(set_link(index, LinkMessageBuilder::up), 0));
        let peer_marked = peer_nl.send(
            set_link_named(self.peer.as_str(), |b| {
                b.alias(owner::marker()).txqueuelen(self.txqlen)
            }),
            0,
        );
        let peer_up = self.up.then(|| {
            peer_nl.send(
                set_link_named(self.peer.as_str(), LinkMessageBuilder::up),
                0,
            )
        });
        let peer_index = peer_nl
            .link_named(self.peer.as_str())
            .await
            .map_err(|e| e.into_error("look up the peer of", object()))?
            .header
            .index;
        peer_marked
            .ack()
            .await
            .map_err(|e| e.into_error("mark the peer of", object()))?;
        if let Some(peer_up) = peer_up {
            peer_up
                .ack()
                .await
                .map_err(|e| e.into_error("bring up the peer of", object()))?;
        }
        if let Some(marked) = marked {
            marked
                .ack()
                .await
                .map_err(|e| e.into_error("mark", object()))?;
        }
        if let Some(up) = up {
            up.ack()
                .await
                .map_err(|e| e.into_error("bring up", object()))?;
        }
        let ends = [
            Link::new(self.ns.clone(), index, self.name.clone()),
            Link::new(self.peer_ns.clone(), peer_index, self.peer.clone()),
        ];
        let mut pending: Vec<(Reply, &'static str, String)> = Vec::new();
        for ((link, nl), list) in ends.iter().zip([nl, peer_nl]).zip(&self.addresses) {
            for net in list {
                let (m, flags) = add_address(link.index(), net, self.nodad);
                pending.push((nl.send(m, flags), "add", address_label(net, link)));
            }
        }
        await_all(pending).await?;
        Ok(ends)
    }
}

/// What one `RTM_NEWLINK` creating a veth pair says.
pub(crate) struct VethMessage<'a> {
    pub(crate) name: &'a str,
    pub(crate) peer: &'a str,
    /// Creates the peer directly in the namespace this fd refers to (`IFLA_NET_NS_FD`).
    pub(crate) peer_ns_fd: Option<std::os::fd::RawFd>,
    pub(crate) mtu: Option<u32>,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) peer_mac: Option<MacAddr>,
    pub(crate) controller: Option<u32>,
    pub(crate) group: Option<u32>,
    pub(crate) peer_group: Option<u32>,
    /// One queue each way per end instead of the kernel's default (see [`veth_message`]).
    pub(crate) single_queue: bool,
}

/// Interface indexes for the two ends of a veth pair whose ends live in different namespaces:
/// distinct from each other, and from the indexes the kernel hands out by itself (those count
/// up from 1 in each namespace). The kernel takes a peer's index only together with the first
/// end's, so both are given.
///
/// Why: an end brought up while its peer is still down has no carrier, so the kernel delays
/// attaching its queueing discipline until the carrier-on event — and treats that event as
/// urgent only when the end's index differs from its peer's (`linkwatch_urgent_event`: an
/// `iflink` equal to the `ifindex` looks like a plain device). In two fresh namespaces both
/// ends get index 2, the event waits for the kernel's once-a-second batch, and the first packets
/// sent meanwhile are dropped: a first ping lost, a one-second ARP retry (seen in 17 of 80
/// runs of eight parallel `two_patterns` examples). Indexes `2^24 + 2n` and `2^24 + 2n + 1` (`n`
/// distinct within the process, random across processes) keep the ends apart. Ends in one
/// namespace always differ already and keep kernel-chosen indexes.
fn pair_indexes() -> (u32, u32) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new().hash_one(0u8) as u32;
        AtomicU32::new(random)
    });
    let n = next.fetch_add(1, Ordering::Relaxed) & 0x1fff_ffff;
    ((1 << 24) + 2 * n, (1 << 24) + 2 * n + 1)
}

/// The `RTM_NEWLINK` message for a veth pair, both ends down: each is brought up after its
/// ownership mark (see `create::settle_message`).
///
/// With `single_queue`, each end is created with one transmit and one receive queue, the number
/// the kernel leaves in use anyway. Asked for none, it allocates one per possible CPU and then,
/// both ends registered, reduces each end's queues in use to one, and each reduction waits for
/// an expedited RCU grace period under the RTNL lock (`netif_set_real_num_tx_queues`): 50–200
/// µs per end here, during which every other netlink request of the host waits too. Without
/// it, the pair is the kernel's default one (as `ip link add type veth` makes it, and as a
/// runtime's plugin must, whose interfaces may get more channels with `ethtool -L` later).
pub(crate) fn veth_message(v: &VethMessage<'_>) -> LinkMessage {
    // Both ends start with the creation queue length, until their alias marks are set (see
    // `owner`).
    let indexes = v.peer_ns_fd.map(|_| pair_indexes());
    fn queues<T>(b: LinkMessageBuilder<T>, single: bool) -> LinkMessageBuilder<T> {
        if single {
            b.append_extra_attribute(LinkAttribute::NumTxQueues(1))
                .append_extra_attribute(LinkAttribute::NumRxQueues(1))
        } else {
            b
        }
    }
    let mut peer = queues(
        LinkUnspec::new_with_name(v.peer).txqueuelen(owner::CREATION_TXQLEN),
        v.single_queue,
    );
    if let Some((_, peer_index)) = indexes {
        peer = peer.index(peer_index);
    }
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
    let mut msg = queues(
        LinkVeth::new(v.name, v.peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .txqueuelen(owner::CREATION_TXQLEN),
        v.single_queue,
    );
    if let Some((index, _)) = indexes {
        msg = msg.index(index);
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

/// The indexes `msg` (made by [`veth_message`]) asks for, the first end's and the peer's, if
/// it asks for explicit ones: the pair's indexes if the kernel creates it.
pub(crate) fn requested_indexes(msg: &LinkMessage) -> Option<(u32, u32)> {
    let peer = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            netlink_packet_route::link::LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) => {
                Some(peer.header.index)
            }
            _ => None,
        }),
        _ => None,
    })?;
    (msg.header.index > 0 && peer > 0).then_some((msg.header.index, peer))
}

/// Whether a deletion removed the link or found it gone.
enum Gone {
    Deleted,
    Already,
}

async fn delete_end(end: &Link) -> Result<Gone> {
    let nl = end.ns().nl().await?;
    match nl.send(del_link(end.index()), 0).ack().await {
        Ok(()) => Ok(Gone::Deleted),
        Err(e) if e.is_not_found() => Ok(Gone::Already),
        Err(e) => Err(e.into_error("delete", end.label())),
    }
}

fn delete_end_blocking(end: &Link) -> Result<Gone> {
    let answers = end
        .ns()
        .blocking_acks(vec![(del_link(end.index()), 0)], BLOCKING_TIMEOUT)
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
    const KIND: &'static str = "veth";

    fn netns(&self) -> String {
        self.ends[0].ns().label().to_owned()
    }

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
/// let veth = VethPair::builder("veth-host", "eth0")
///     .namespace(&host)
///     .peer_namespace(&guest)
///     .create()
///     .await?;
/// assert_eq!(veth.peer().name(), "eth0");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct VethPair(Guard<VethResource>);

impl std::fmt::Display for VethPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.get().describe())
    }
}

impl VethPair {
    /// Starts building a pair whose ends are called `name` and `peer`, like
    /// `ip link add NAME type veth peer name PEER`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let v = netns_kit::VethPair::builder("a", "b").namespace(&ns).mtu(9000).create().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(name: impl AsRef<str>, peer: impl AsRef<str>) -> VethPairBuilder {
        VethPairBuilder {
            ends: [
                End {
                    name: name.as_ref().to_owned(),
                    ..End::default()
                },
                End {
                    name: peer.as_ref().to_owned(),
                    ..End::default()
                },
            ],
            mtu: None,
            up: true,
            nodad: false,
            controller: None,
            router_end: false,
            group: None,
            txqlen: None,
        }
    }

    /// The first end.
    pub fn link(&self) -> &Link {
        &self.0.get().ends[0]
    }

    /// The peer end.
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

    /// Deletes the pair after `error` made a composite fail; returns `error`.
    pub(crate) async fn roll_back(self, error: Error) -> Error {
        guard::roll_back(self.0, error).await
    }

    /// Disarms the guard: the pair stays after the guard is gone, and its ends no longer carry
    /// this process's ownership mark (see [the guard contract](crate#guards)). Returns the
    /// same, now inert, guard.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     host: netns_kit::Namespace,
    /// #     c: netns_kit::Namespace,
    /// # ) -> netns_kit::Result<()> {
    /// use netns_kit::VethPair;
    /// let veth = VethPair::builder("veth-c1", "eth0")
    ///     .namespace(&host)
    ///     .peer_namespace(&c)
    ///     .create()
    ///     .await?
    ///     .keep();
    /// println!("{veth} outlives this process");
    /// # Ok(()) }
    /// ```
    pub fn keep(mut self) -> Self {
        if self.0.is_armed() {
            for end in &self.0.get().ends {
                unmark_blocking(end.ns(), end.index(), || end.label());
            }
            self.0.disarm();
        }
        self
    }
}
