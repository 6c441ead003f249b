//! One member of a bridged network: what the caller asks for ([`MemberSpec`]), what it becomes
//! ([`Member`]), and the job that builds it, in named steps — [`plan`] (validate against the
//! network), [`InsideJob::create`] (the veth pair, from inside the member's namespace),
//! [`InsideJob::configure`] (addresses, routes, up: one batch), [`InsideJob::attach`] (the host
//! end on the bridge, from the same job) and [`InsideJob::undo`]; [`build`] runs the job and
//! makes the [`Member`].
//!
//! # Why a member is built from inside its namespace
//!
//! A member costs one job on a library worker thread inside its namespace — right after
//! `unshare` for a new one: the veth pair is created from that side, its peer placed directly in
//! the host namespace in the network's link group, then the addresses and default routes go in
//! one `sendmsg` — and one round trip in the host (the host end's IPv6 address mode, its mark,
//! then attached to the bridge and up), which the same job sends: the worker enters the host
//! namespace on its own thread and opens a socket there (it goes home after every job), or,
//! when at most two members are built in one call with the blocking API (a runtime's ADD,
//! `add_member_blocking`), uses the caller's host connection, which any thread may use. This is
//! the same work as `VethPair` + `Address` + `Route` (built from the same messages), but it
//! needs no netlink connection kept in the member's namespace: a member costs one worker job
//! and, once built, one file descriptor (the namespace's). Anything made is removed if a later
//! step fails.
//!
//! Why the job attaches the host end too: the kernel does the same work either way, but handed
//! back to the caller's host connection, each member crossed threads twice more, and the
//! caller's thread competed with the two workers for the two CPUs of the development VM and the
//! RTNL lock. Measured there (`benches/peers.sh`-style rounds, 100 members, 10 rounds
//! alternating, medians): 103 ms before, 96 ms after; a program with no library doing the same
//! kernel requests (`benches/peers/floor`) took 83 ms in the same run.
//!
//! A member's veth pair has one queue each way per end, unless the member joins an existing
//! namespace (a container's), whose interface keeps the kernel's default, one per possible CPU,
//! like any runtime's (`ethtool -L` can then give it more channels): reducing that default to
//! one costs two expedited RCU grace periods under the RTNL lock per pair (see
//! `link::veth::veth_message`).

use std::{
    collections::HashSet,
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::Arc,
};

use ipnetwork::IpNetwork;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};

use crate::{
    error::{Error, Result},
    guard::{self, Guard},
    impair::{Direction, Impaired, Impairment},
    ip::{IntoIpNetwork, validate_host},
    link::{
        Link, PendingLink,
        veth::{VethMessage, requested_indexes, veth_message},
    },
    name::IfName,
    netlink::{
        BatchConn, Nl,
        msg::{
            add_address, del_group, del_link, echoed_link, no_link_local, no_link_local_named,
            set_link, set_link_named, with_index,
        },
    },
    netns::{AbandonedJob, Namespace, NsInner, SocketJob, batch_entering},
    owner,
    route::RouteSpec,
    trace,
};

/// Where a member's namespace comes from.
#[derive(Debug)]
enum MemberNs {
    /// A new anonymous namespace, owned by the network.
    New,
    /// An existing namespace; never destroyed by the network.
    Borrowed(Arc<NsInner>),
    /// A namespace handed over to the network, destroyed with it.
    Owned(Namespace),
}

/// One member of a [`BridgedNetwork`](crate::BridgedNetwork), to be created: where its namespace
/// comes from and its addresses.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(container: netns_kit::Namespace) -> netns_kit::Result<()> {
/// use netns_kit::MemberSpec;
///
/// let fresh = MemberSpec::new().address("10.88.0.5/16");
/// let existing = MemberSpec::in_namespace(&container)
///     .address("10.88.0.6/16")
///     .address("fd88::6/64");
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a member spec does nothing until added to a network"]
pub struct MemberSpec {
    ns: MemberNs,
    addresses: Vec<Result<IpNetwork>>,
    link_name: Option<String>,
    peer_name: Option<String>,
    impairment: Option<Impairment>,
}

impl MemberSpec {
    /// A member in a new anonymous namespace, created and owned by the network (freed with
    /// it, or when the member is removed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged};
    /// # let host = netns_kit::Namespace::new().await?;
    ///
    /// // Each member gets a fresh namespace of its own, freed with the network.
    /// let net = bridged()
    ///     .host(&host)
    ///     .gateway("10.0.10.1/24")
    ///     .member(MemberSpec::new().address("10.0.10.2/24"))
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn new() -> MemberSpec {
        MemberSpec::with(MemberNs::New)
    }

    /// A member in an existing namespace, e.g. a container's (`/run/netns/X`,
    /// `/proc/PID/ns/net`). The network adds a veth, addresses and a default route to it and
    /// removes them again; it never destroys the namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, Namespace};
    /// # let mut net = netns_kit::bridged().gateway("10.88.0.1/16").create().await?;
    ///
    /// // A container's namespace, found by the pid of its first process.
    /// let container = Namespace::from_pid(4242)?;
    /// net.add_member(MemberSpec::in_namespace(&container).address("10.88.0.7/16")).await?;
    /// drop(net); // removes the veth, leaves the container's namespace alone
    /// # Ok(()) }
    /// ```
    pub fn in_namespace(ns: &Namespace) -> MemberSpec {
        MemberSpec::with(MemberNs::Borrowed(ns.inner().clone()))
    }

    /// A member in `ns`, which the network takes over and destroys with itself (a named
    /// namespace is unmounted then).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, Namespace, bridged};
    /// # let host = Namespace::new().await?;
    ///
    /// let web = Namespace::named("web1").await?;
    /// let net = bridged()
    ///     .host(&host).gateway("10.0.11.1/24")
    ///     .member(MemberSpec::owning(web).address("10.0.11.2/24"))
    ///     .create()
    ///     .await?;
    /// net.delete().await?; // also removes /run/netns/web1
    /// # Ok(()) }
    /// ```
    pub fn owning(ns: Namespace) -> MemberSpec {
        MemberSpec::with(MemberNs::Owned(ns))
    }

    fn with(ns: MemberNs) -> MemberSpec {
        MemberSpec {
            ns,
            addresses: Vec::new(),
            link_name: None,
            peer_name: None,
            impairment: None,
        }
    }

    /// An address of the member's interface; it must lie in the subnet of the network's
    /// gateway of the same IP version. Call once per IP version.
    pub fn address(mut self, net: impl IntoIpNetwork) -> Self {
        self.addresses.push(net.into_ip_network());
        self
    }

    /// The name of the member's interface (default: the network's
    /// [`link_name`](crate::BridgedNetworkBuilder::link_name), `eth0`).
    pub fn link_name(mut self, name: impl AsRef<str>) -> Self {
        self.link_name = Some(name.as_ref().to_owned());
        self
    }

    /// The name of the host-side veth end attached to the bridge (default: a unique
    /// generated name such as `nkv0ab1c000002`).
    pub fn peer_name(mut self, name: impl AsRef<str>) -> Self {
        self.peer_name = Some(name.as_ref().to_owned());
        self
    }

    /// Makes what the member sends misbehave from its first packet (its interface's
    /// [outbound](crate::impair::Direction::Outbound) direction; see [`Link::impair`]): set
    /// when the member is built, in force until the member goes, changed later through
    /// [`Member::impairment`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(host: &netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::time::Duration;
    /// use netns_kit::{MemberSpec, bridged, impair::Impairment};
    /// let far = Impairment::new().delay(Duration::from_millis(40));
    /// let net = bridged()
    ///     .host(host)
    ///     .gateway("10.0.11.1/24")
    ///     .member(MemberSpec::new().address("10.0.11.2/24").impair(far))
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn impair(mut self, impairment: Impairment) -> Self {
        self.impairment = Some(impairment);
        self
    }
}

impl Default for MemberSpec {
    fn default() -> Self {
        MemberSpec::new()
    }
}

/// Waits until `members` carry traffic: their host ends forward on the bridge, both ends pass
/// traffic, `nodad` IPv6 addresses are usable (see [`crate::netlink::ready`]). One wait for all,
/// after they are built, so the kernel brings them up while the next ones are being made.
pub(super) async fn wait_ready(
    net: &NetworkContext,
    own_bridge: bool,
    members: &[Member],
    object: &str,
) {
    if members.is_empty() {
        return;
    }
    use crate::netlink::ready::Watched;
    // The bridge's own state counts where it forwards as soon as a port is up: one the network
    // made, or an existing one without spanning tree. Such a bridge that had no port up before
    // (a runtime's first container) comes up only in the kernel's `linkwatch` work, which for
    // a bridge may wait up to a second behind other link events; until then its queueing
    // discipline is `noop` and the gateway's first answer to a member is lost. (With spanning
    // tree, ports forward after the owner's forward delay, seconds: not waited for.)
    let own_or_quick_bridge = own_bridge || net.bridge_waited;
    // The bridge's `nodad` gateway addresses too: they are what members reach first.
    let bridge = Watched {
        ns: net.host.fd().clone(),
        index: net.bridge.index(),
        ipv6: net.nodad && net.gateways.iter().any(IpNetwork::is_ipv6),
        // Made without duplicate-address detection for a `nodad` network (see `Bridge`).
        link_local: net.nodad
            && net.gateways.iter().any(IpNetwork::is_ipv6)
            && own_bridge
            && net.fast_link_local,
        state: own_or_quick_bridge,
    };
    let links: Vec<Watched> = members
        .iter()
        .flat_map(|m| {
            [
                // The host end has no IPv6 address (see `attach_host_end`).
                Watched {
                    ns: net.host.fd().clone(),
                    index: m.host.index(),
                    ipv6: false,
                    link_local: false,
                    state: true,
                },
                Watched {
                    ns: m.ns.inner().fd().clone(),
                    index: m.inside.index(),
                    ipv6: m.addresses.iter().any(IpNetwork::is_ipv6),
                    link_local: false,
                    state: true,
                },
            ]
        })
        .chain([bridge])
        .collect();
    if members.len() <= QUICK_CHECK_MAX
        && links.iter().all(|w| !w.ipv6 && !w.link_local)
        && ready_already(net, own_or_quick_bridge, members).await
    {
        return;
    }
    crate::netlink::ready::wait_ready(links, object).await;
}

/// Networks of at most this many members (a runtime adding one container) are first asked
/// whether they are ready already; see [`ready_already`].
pub(super) const QUICK_CHECK_MAX: usize = 2;

/// Whether members built now, `count` of them, are asked [`ready_already`] (see [`build`]).
pub(super) fn quick_check(count: usize) -> bool {
    count <= QUICK_CHECK_MAX && crate::netlink::blocking_mode()
}

/// Whether the members' links (and the bridge, if the network made it) carry traffic already,
/// asked once on the connections the build used, from the calling thread. Usually they do by
/// the time the last one is attached; then the wait's own thread, sockets and subscriptions
/// (about half a millisecond on a 2-vCPU VM, most of it the thread's start) are not needed.
/// Only with the blocking transport, whose connections any thread may use, and only where the
/// member's build left its connection open (in an existing namespace; a new namespace's would
/// cost a trip to a worker); not where IPv6 readiness counts, which is read from the
/// namespace's joined groups, inside it. The criteria are the wait's own
/// ([`ready_now`](crate::netlink::ready::ready_now)). Anything not ready yet, or any failure
/// to ask, leaves it to the wait.
async fn ready_already(net: &NetworkContext, own_bridge: bool, members: &[Member]) -> bool {
    if !crate::netlink::blocking_mode() {
        return false;
    }
    let Ok(host) = net.host.nl().await else {
        return false;
    };
    let Some(insides) = members
        .iter()
        .map(|m| m.ns.inner().batched_if_open())
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let mut asks = Vec::new();
    if own_bridge {
        asks.push(host.send(crate::netlink::msg::get_link(net.bridge.index()), 0));
    }
    for (m, inside) in members.iter().zip(insides) {
        asks.push(host.send(crate::netlink::msg::get_link(m.host.index()), 0));
        asks.push(inside.send(crate::netlink::msg::get_link(m.inside.index()), 0));
    }
    // All asked first, then the answers read: one round trip per connection. Every answer is
    // read, also after a link that is not ready: one left unread would stay in its
    // connection's table of answers for as long as the connection lives.
    let mut ready = true;
    for reply in asks {
        ready &= reply
            .messages()
            .await
            .ok()
            .and_then(|answer| crate::netlink::msg::first_link(answer).ok())
            .is_some_and(|link| crate::netlink::ready::ready_now(&link));
    }
    ready
}

/// A member of a [`BridgedNetwork`](crate::BridgedNetwork): its namespace, its interface (inside)
/// and the host-side end attached to the bridge.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// # let host = netns_kit::Namespace::new().await?;
/// # let net = netns_kit::bridged().host(&host).gateway("10.0.15.1/24")
/// #     .member(netns_kit::MemberSpec::new().address("10.0.15.2/24"))
/// #     .member(netns_kit::MemberSpec::new().address("10.0.15.3/24"))
/// #     .create().await?;
/// for member in net.members() {
///     let port = member.peer().name();
///     println!("{} behind bridge port {port}", member.addresses()[0]);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Member {
    /// Dropped first where a member is dropped whole: its relay holds the member's namespace.
    /// (A network's teardown closes the namespace first; see `NetworkResource::finish`.)
    pub(super) impaired: Option<Impaired>,
    pub(super) ns: Namespace,
    pub(super) inside: Link,
    pub(super) host: Link,
    pub(super) addresses: Vec<IpNetwork>,
}

impl std::fmt::Display for Member {
    /// E.g. `member 10.0.0.2/24 (interface "eth0" in anonymous namespace net:[4026532…])`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addresses: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        write!(f, "member {} ({})", addresses.join(", "), self.inside)
    }
}

impl Member {
    /// Disarms the member's namespace, if the network owned it (for the network's `keep`).
    pub(super) fn keep_namespace(&mut self) {
        let view = Namespace::view(self.ns.inner().clone());
        let ns = std::mem::replace(&mut self.ns, view);
        self.ns = ns.keep();
    }

    /// The member's namespace; run code or commands in it from here.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The member's interface, inside its namespace (`eth0`).
    pub fn link(&self) -> &Link {
        &self.inside
    }

    /// The impairment set with [`MemberSpec::impair`] (change it with [`Impaired::set`]);
    /// `None` without one.
    pub fn impairment(&self) -> Option<&Impaired> {
        self.impaired.as_ref()
    }

    /// The host-side veth end, a port of the bridge.
    pub fn peer(&self) -> &Link {
        &self.host
    }

    /// The member's addresses.
    pub fn addresses(&self) -> &[IpNetwork] {
        &self.addresses
    }

    /// The member's address of IP version `version` (4 or 6), if it has one; `None` for any
    /// other version.
    pub fn address(&self, version: u8) -> Option<IpAddr> {
        let ipv6 = match version {
            4 => false,
            6 => true,
            _ => return None,
        };
        self.addresses
            .iter()
            .find(|a| a.is_ipv6() == ipv6)
            .map(IpNetwork::ip)
    }
}

/// What a network gives every member it builds (fixed when the network is created).
#[derive(Debug, Clone)]
pub(super) struct NetworkContext {
    pub(super) host: Arc<NsInner>,
    pub(super) bridge: Link,
    pub(super) group: u32,
    pub(super) gateways: Vec<IpNetwork>,
    pub(super) link_name: IfName,
    pub(super) nodad: bool,
    pub(super) mtu: Option<u32>,
    pub(super) link_local_ipv6: Option<bool>,
    pub(super) has_ipv6: bool,
    /// Whether the bridge's link-local address skips duplicate-address detection (see
    /// `Bridge`'s `nodad`), so it is worth waiting for.
    pub(super) fast_link_local: bool,
    /// Whether the bridge's own state counts in the readiness wait: one the network made, or an
    /// existing one whose spanning tree was off when the network joined it (see [`wait_ready`]).
    pub(super) bridge_waited: bool,
    /// Whether members' router messages are to be filtered (see
    /// `BridgedNetworkBuilder::filter_router_messages`): asked for, on a bridge of the
    /// network's own, without a VXLAN port.
    pub(super) filter_router_messages: bool,
    /// Whether they are: then members' link-local addresses skip duplicate-address detection
    /// too.
    pub(super) router_messages_filtered: bool,
}

/// Names, addresses and namespaces already used in a network.
#[derive(Debug, Default, Clone)]
pub(super) struct Taken {
    pub(super) addresses: HashSet<IpAddr>,
    pub(super) host_names: HashSet<String>,
    pub(super) namespaces: HashSet<(u64, u64)>,
}

impl Taken {
    /// Forgets what `member` used, once it has left the network.
    pub(super) fn release(&mut self, member: &Member) {
        for net in &member.addresses {
            self.addresses.remove(&net.ip());
        }
        self.host_names.remove(member.host.name());
        self.namespaces.remove(&member.ns.inner().id());
    }
}

/// A validated member, ready to be built.
#[derive(Debug)]
pub(super) struct Planned {
    ns: MemberNs,
    addresses: Vec<IpNetwork>,
    link_name: IfName,
    peer_name: IfName,
    impairment: Option<Impairment>,
}

impl Planned {
    /// Whether the member's interface gets no IPv6 link-local address: as asked, or by default
    /// only in a namespace the network made and only on an IPv4-only network. An existing
    /// namespace (a container's) keeps the kernel's defaults unless the caller says otherwise.
    pub(super) fn quiet_ipv6(&self, has_ipv6: bool, link_local_ipv6: Option<bool>) -> bool {
        match link_local_ipv6 {
            Some(on) => !on,
            None => !has_ipv6 && matches!(self.ns, MemberNs::New),
        }
    }

    /// Whether the member has IPv6 at all: addresses, or a link-local address.
    pub(super) fn has_ipv6(&self, has_ipv6: bool, link_local_ipv6: Option<bool>) -> bool {
        self.addresses.iter().any(IpNetwork::is_ipv6) || !self.quiet_ipv6(has_ipv6, link_local_ipv6)
    }
}

/// Step 1: checks `spec` against the network (`gateways`, what is `taken`) before anything is
/// made, and records what it takes.
pub(super) fn plan(
    spec: MemberSpec,
    host: (u64, u64),
    gateways: &[IpNetwork],
    default_name: &IfName,
    taken: &mut Taken,
    network: &dyn Fn() -> String,
) -> Result<Planned> {
    let link_name = match &spec.link_name {
        Some(n) => IfName::new(n)?,
        None => default_name.clone(),
    };
    let peer_name = match &spec.peer_name {
        Some(n) => IfName::new(n)?,
        None => IfName::unique("nkv")?,
    };
    let addresses = spec.addresses.into_iter().collect::<Result<Vec<_>>>()?;
    let object = || {
        let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        format!("member {} of {}", list.join(", "), network())
    };
    check_addresses(&addresses, gateways, taken, &object)?;
    if let Some(impairment) = &spec.impairment {
        impairment.validate(|| format!("impairment of {}", object()))?;
    }
    if taken.host_names.contains(peer_name.as_str()) {
        return Err(Error::invalid(
            object(),
            format!(
                "host interface name {:?} is already another member's",
                peer_name.as_str()
            ),
        ));
    }
    let ns_id = match &spec.ns {
        MemberNs::New => None,
        MemberNs::Borrowed(inner) => Some(inner.id()),
        MemberNs::Owned(ns) => Some(ns.inner().id()),
    };
    if ns_id == Some(host) {
        return Err(Error::invalid(
            object(),
            "a member cannot be the host namespace, which holds the bridge",
        ));
    }
    if ns_id.is_some_and(|id| taken.namespaces.contains(&id)) {
        return Err(Error::invalid(
            object(),
            "its namespace is already a member of this network",
        ));
    }
    taken.namespaces.extend(ns_id);
    taken.addresses.extend(addresses.iter().map(IpNetwork::ip));
    taken.host_names.insert(peer_name.to_string());
    Ok(Planned {
        impairment: spec.impairment,
        ns: spec.ns,
        addresses,
        link_name,
        peer_name,
    })
}

/// A member's addresses: at least one, at most one per IP version, each a host address in the
/// subnet of the gateway of its version, not the gateway's, not another member's.
fn check_addresses(
    addresses: &[IpNetwork],
    gateways: &[IpNetwork],
    taken: &Taken,
    object: &dyn Fn() -> String,
) -> Result<()> {
    if addresses.is_empty() {
        return Err(Error::invalid(
            object(),
            "a member needs an address (`MemberSpec::address`)",
        ));
    }
    let version = |net: &IpNetwork| if net.is_ipv4() { "IPv4" } else { "IPv6" };
    for (i, net) in addresses.iter().enumerate() {
        validate_host(net, object)?;
        let gateway = gateways.iter().find(|g| g.is_ipv4() == net.is_ipv4());
        let wrong = if addresses[..i].iter().any(|n| n.is_ipv4() == net.is_ipv4()) {
            Some("give at most one address per IP version".to_owned())
        } else if let Some(gw) = gateway {
            if !gw.contains(net.ip()) || !net.contains(gw.ip()) {
                Some(format!(
                    "{net} is not in the gateway's subnet {}/{}",
                    gw.network(),
                    gw.prefix()
                ))
            } else if net.ip() == gw.ip() {
                Some(format!("{} is the gateway's address", net.ip()))
            } else if taken.addresses.contains(&net.ip()) {
                Some(format!("{} is already another member's address", net.ip()))
            } else {
                None
            }
        } else {
            Some(format!(
                "{net} is an {} address but the network has no {} gateway",
                version(net),
                version(net)
            ))
        };
        if let Some(reason) = wrong {
            return Err(Error::invalid(object(), reason));
        }
    }
    Ok(())
}

/// The part of a member's setup done inside its namespace, on a library worker thread, over a
/// blocking netlink connection there (see the [module docs](self)).
struct InsideJob {
    object: String,
    inside_name: IfName,
    host_name: IfName,
    host_fd: Arc<OwnedFd>,
    /// The network's link group, which the host end is created in.
    group: u32,
    mtu: Option<u32>,
    /// No IPv6 link-local address on the member's interface.
    quiet_ipv6: bool,
    /// One queue each way per end (see the module docs): not in an existing namespace.
    single_queue: bool,
    /// The link-local address without duplicate-address detection (`accept_dad` 0).
    link_local_nodad: bool,
    /// Addresses and default routes, built before the interface's index is known, with labels.
    requests: Vec<((RouteNetlinkMessage, u16), String)>,
    /// A group of its own for the member's end until it is configured, so that a failure before
    /// its index is known can still find it (never by name: that could be someone else's link).
    creation_group: Option<owner::GroupHold>,
    /// The bridge's index: the job attaches the host end itself (see the module docs).
    attach_to: u32,
    /// The caller's blocking connection in the host namespace, which the job attaches the host
    /// end over (any thread may use it) instead of entering the host namespace and opening a
    /// socket there; only when at most [`QUICK_CHECK_MAX`] members are built in one call (a
    /// runtime's ADD, `add_member_blocking`), whose one or two jobs barely wait for each other
    /// on it.
    host_conn: Option<Arc<BatchConn>>,
}

/// What a member's inside job found: its interface's index, the host end's if the kernel said,
/// and whether the job attached the host end already.
type Built = (u32, Option<u32>, bool);

impl InsideJob {
    fn new(
        net: &NetworkContext,
        member: &Planned,
        object: String,
        host_conn: Option<Arc<BatchConn>>,
    ) -> InsideJob {
        let mut requests: Vec<_> = member
            .addresses
            .iter()
            .map(|a| {
                (
                    add_address(0, a, net.nodad),
                    format!("address {a} of {object}"),
                )
            })
            .collect();
        for a in &member.addresses {
            if let Some(gw) = net.gateways.iter().find(|g| g.is_ipv4() == a.is_ipv4()) {
                let route = RouteSpec::default_via(gw.ip());
                requests.push((route.add_message(), format!("default route of {object}")));
            }
        }
        let quiet_ipv6 = member.quiet_ipv6(net.has_ipv6, net.link_local_ipv6);
        InsideJob {
            object,
            inside_name: member.link_name.clone(),
            host_name: member.peer_name.clone(),
            host_fd: net.host.fd().clone(),
            group: net.group,
            mtu: net.mtu,
            quiet_ipv6,
            single_queue: !matches!(member.ns, MemberNs::Borrowed(_)),
            link_local_nodad: !quiet_ipv6 && net.router_messages_filtered,
            requests,
            creation_group: owner::allocate_group().map(owner::GroupHold::new),
            attach_to: net.bridge.index(),
            host_conn,
        }
    }

    /// Runs every step; on failure, or if the caller stopped waiting, undoes what it made.
    /// Returns the member's interface index, the host end's if the kernel said, and whether
    /// the host end was attached here ([`Built`]).
    ///
    /// After [`attach`](Self::attach) this thread may be in the host namespace: every step after
    /// it may use `conn` (opened in the member's namespace), nothing that depends on the
    /// thread's own namespace.
    fn run(mut self, conn: &BatchConn, cancelled: &dyn Fn() -> bool) -> Result<Built> {
        let (index, host_index) = self.create(conn)?;
        if let Err(e) = self.configure(conn, index) {
            self.undo(conn, Some(index));
            return Err(e);
        }
        // Jobs run on workers, which may enter the host namespace; were this one not, the
        // caller's host connection would attach the host end instead. Not for a caller that
        // stopped waiting: its member is not put on the bridge only to be deleted.
        let attached = crate::sys::on_worker_thread() && !cancelled();
        if attached && let Err(e) = self.attach() {
            self.undo(conn, Some(index));
            return Err(e);
        }
        if cancelled() {
            // Nobody will take this member: do not leave it configured.
            self.undo(conn, Some(index));
            return Err(Error::os(
                "set up",
                self.object,
                std::io::Error::from(std::io::ErrorKind::Interrupted),
            ));
        }
        Ok((index, host_index, attached))
    }

    /// Step 4 on the worker: sends [`host_end_requests`] in the host namespace in one round
    /// trip, over the caller's host connection if the job has it, else entering the host
    /// namespace on this thread (the worker goes home after the job) with a socket of its own.
    /// A failure is undone by the caller's [`undo`](Self::undo): deleting the member's end
    /// deletes the host end.
    fn attach(&self) -> Result<()> {
        // The same step name as on the caller's side, for `benches/profile.sh`.
        let _span = tracing::debug_span!("member: host end attached").entered();
        let bridge = self.attach_to;
        // A connection that stopped answering (another job's request timed out on it) is not
        // used: this job opens its own.
        let host = match self.host_conn.as_ref().filter(|c| c.is_usable()) {
            Some(conn) => conn.clone(),
            None => batch_entering(self.host_fd.as_fd())
                .map_err(|e| Error::os("attach the host end of", self.object.clone(), e))?,
        };
        let (requests, ops): (Vec<_>, Vec<_>) = host_end_requests(&self.host_name, bridge)
            .into_iter()
            .map(|(msg, op)| ((msg, 0), op))
            .unzip();
        for (answer, op) in host.exchange(requests).into_iter().zip(ops) {
            match answer {
                Ok(_) => {}
                Err(e) if op.starts_with("quiet") && e.errno == nix::libc::EAFNOSUPPORT => {}
                Err(e) => return Err(e.into_error(op, self.object.clone())),
            }
        }
        Ok(())
    }

    /// Step 2: creates the veth pair from inside (its first end is the member's interface,
    /// still down; the peer, the host end, is created directly in the host namespace, in the
    /// network's link group), and finds both indexes.
    // Over 80 lines on purpose: the create request and its retries with the next explicit
    // indexes (EEXIST/EBUSY) are one loop over one connection; split, each part would carry the
    // loop's state.
    fn create(&self, conn: &BatchConn) -> Result<(u32, Option<u32>)> {
        let op = "create the veth pair of";
        let mut attempts = 0;
        let (created, requested) = loop {
            let veth = veth_message(&VethMessage {
                name: self.inside_name.as_str(),
                peer: self.host_name.as_str(),
                peer_ns_fd: Some(self.host_fd.as_raw_fd()),
                mtu: self.mtu,
                mac: None,
                peer_mac: None,
                controller: None,
                group: self.creation_group.as_ref().map(owner::GroupHold::group),
                peer_group: Some(self.group),
                single_queue: self.single_queue,
            });
            // With explicit indexes (the peer goes to another namespace) the pair's are known:
            // no echo to wait for, read and parse (a link message of 1.5 KB).
            let requested = requested_indexes(&veth);
            let echo = if requested.is_some() { 0 } else { NLM_F_ECHO };
            let created = conn.exchange(vec![(
                RouteNetlinkMessage::NewLink(veth),
                NLM_F_CREATE | NLM_F_EXCL | echo,
            )]);
            // `EEXIST` while the member's interface name is free: the explicit indexes (see
            // `veth::pair_indexes`) are another link's, in the host namespace most likely
            // (shared with other processes); again with the next ones. (The host end's name is
            // generated and unique.)
            // (The kernel says `EBUSY` for the peer's index, `EEXIST` for the first end's.)
            let errno = match created.first() {
                Some(Err(e)) if e.from_kernel => e.errno,
                _ => 0,
            };
            attempts += 1;
            let name_free = || {
                let lookup = crate::netlink::msg::get_link_named(self.inside_name.as_str());
                matches!(conn.exchange(vec![(lookup, 0)]).first(), Some(Err(e)) if e.is_not_found())
            };
            let index_taken =
                errno == nix::libc::EBUSY || (errno == nix::libc::EEXIST && name_free());
            if !index_taken || attempts == 3 {
                break (created, requested);
            }
        };
        let acknowledged = matches!(created.first(), Some(Ok(_)));
        let echo = match created.into_iter().next() {
            Some(Ok(messages)) => messages,
            Some(Err(e)) if e.from_kernel => return Err(e.into_error(op, self.object.clone())),
            Some(Err(e)) => {
                // The kernel may have made the pair before the answer was lost.
                self.undo(conn, None);
                return Err(e.into_error(op, self.object.clone()));
            }
            None => Vec::new(),
        };
        if let Some((index, peer)) = requested.filter(|_| acknowledged) {
            return Ok((index, Some(peer)));
        }
        if let Some(found) = echoed_link(&echo) {
            return Ok(found);
        }
        let op = "look up the interface of";
        let looked_up = conn.exchange(vec![(
            crate::netlink::msg::get_link_named(self.inside_name.as_str()),
            0,
        )]);
        match looked_up.into_iter().next() {
            Some(Ok(messages)) => echoed_link(&messages).ok_or_else(|| {
                self.undo(conn, None);
                Error::os(
                    op,
                    self.object.clone(),
                    std::io::Error::other("the kernel answered without the link"),
                )
            }),
            Some(Err(e)) => {
                self.undo(conn, None);
                Err(e.into_error(op, self.object.clone()))
            }
            None => {
                self.undo(conn, None);
                Err(Error::os(
                    op,
                    self.object.clone(),
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                ))
            }
        }
    }

    /// Step 3: one batch — quiet IPv6 if asked, the interface up and out of its temporary
    /// group, its addresses, its default routes.
    fn configure(&mut self, conn: &BatchConn, index: u32) -> Result<()> {
        if self.link_local_nodad {
            // Before it is up, from this thread (in the member's namespace). Best effort: where
            // `/proc/sys` is read-only the address only takes the usual second or two.
            let path = format!(
                "/proc/sys/net/ipv6/conf/{}/accept_dad",
                self.inside_name.as_str()
            );
            if let Err(e) = std::fs::write(&path, "0") {
                tracing::debug!(object = %self.object, error = %e, "link-local address with DAD");
            }
        }
        let mut batch = Vec::new();
        let mut labels = Vec::new();
        if self.quiet_ipv6 {
            // Best effort: refused (EAFNOSUPPORT) where the link has no IPv6 at all, e.g. an
            // MTU below 1280 or IPv6 disabled, which is quiet enough.
            batch.push((no_link_local(index), 0));
            labels.push(None);
        }
        // Out of its temporary group with the queue length restored while still down, then
        // up (see `link::create::settle_message`).
        batch.push((
            set_link(index, |b| b.link_group(0).txqueuelen(owner::DEFAULT_TXQLEN)),
            0,
        ));
        labels.push(Some(("restore the queue length of", self.object.clone())));
        batch.push((set_link(index, |b| b.up()), 0));
        labels.push(Some(("bring up", self.object.clone())));
        for ((msg, flags), label) in std::mem::take(&mut self.requests) {
            batch.push((with_index(msg, index), flags));
            labels.push(Some(("add", label)));
        }
        let failure =
            conn.exchange(batch)
                .into_iter()
                .zip(labels)
                .find_map(|(answer, label)| match (answer, label) {
                    (Err(e), Some((op, label))) => Some(e.into_error(op, label)),
                    _ => None,
                });
        failure.map_or(Ok(()), Err)
    }

    /// Removes the pair again (deleting this end deletes the host end too): by index once
    /// known; before that by the temporary group this end was created in, which holds nothing
    /// else.
    fn undo(&self, conn: &BatchConn, index: Option<u32>) {
        let msg = match (index, &self.creation_group) {
            (Some(index), _) => del_link(index),
            (None, Some(hold)) => del_group(hold.group()),
            (None, None) => return,
        };
        let _ = conn.exchange(vec![(msg, 0)]);
    }
}

/// Steps 2–4: builds `member` of the network (see the [module docs](self)): the job in the
/// member's namespace, which also attaches the host end to the bridge (in the host namespace,
/// one round trip), then the [`Member`].
pub(super) async fn build(net: &NetworkContext, member: Planned, quick: bool) -> Result<Member> {
    let object = format!(
        "member {} ({:?} <-> {:?} in {})",
        member
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        member.link_name.as_str(),
        member.peer_name.as_str(),
        net.host.label()
    );
    let span = trace::op!("member", "member", object, net.host.label());
    trace::timed(span, build_traced(net, member, object, quick)).await
}

/// `quick`: the network is small enough for [`ready_already`], whose question about the
/// member's interface then goes over the connection its build leaves open (none is kept for a
/// larger network: a thousand members must not hold a thousand more sockets).
async fn build_traced(
    net: &NetworkContext,
    member: Planned,
    object: String,
    quick: bool,
) -> Result<Member> {
    // The host's connection, before anything is made, so that failing to get it leaves nothing.
    let nl = net.host.nl().await?;
    let host_conn = match &nl {
        Nl::Batched(conn) if quick => Some(conn.clone()),
        _ => None,
    };
    let job = InsideJob::new(net, &member, object.clone(), host_conn);
    let inside: SocketJob<Built> = Box::new(move |conn, cancelled| job.run(conn, cancelled));
    // In an existing namespace, a member whose future was dropped just as its job finished is
    // removed again there (a new namespace simply dies with its fd).
    let abandoned = || -> AbandonedJob<Built> {
        Box::new(|conn, (index, _, _)| {
            let _ = conn.exchange(vec![(del_link(index), 0)]);
        })
    };
    // The steps are spans of their own (DEBUG), for `cargo bench -- --profile`.
    use tracing::Instrument;
    let step = |name: &'static str| match name {
        "inside" => tracing::debug_span!("member: namespace and inside end"),
        _ => tracing::debug_span!("member: host end attached"),
    };
    let (ns, (inside_index, host_index, attached)) = async {
        Ok::<_, Error>(match member.ns {
            MemberNs::New => Namespace::create_with(inside).await?,
            MemberNs::Borrowed(inner) => {
                let found = inner.with_socket(inside, abandoned(), quick).await?;
                (Namespace::view(inner), found)
            }
            MemberNs::Owned(ns) => {
                let found = ns.inner().with_socket(inside, abandoned(), quick).await?;
                (ns, found)
            }
        })
    }
    .instrument(step("inside"))
    .await?;
    let host_index = match (attached, host_index) {
        (true, Some(index)) => index,
        _ => {
            attach_host_end(net, &nl, &member.peer_name, host_index, attached, &object)
                .instrument(step("attach"))
                .await?
        }
    };
    let inside = Link::new(ns.inner().clone(), inside_index, member.link_name);
    // Before the member exists for anyone: its first packet is impaired. If that fails (or this
    // future is dropped meanwhile), the pair goes again, with the addresses and routes on the
    // member's end: a member added to a running network, in an existing namespace (a
    // container's), would otherwise stay half-made until the network's teardown.
    let impaired = match &member.impairment {
        Some(impairment) => {
            let pending = Guard::new(PendingLink {
                ns: net.host.clone(),
                via: nl.clone(),
                name: member.peer_name.clone(),
                index: Some(host_index),
                alone_in_group: None,
            });
            match inside.impair(Direction::Outbound, impairment).await {
                Ok(impaired) => {
                    pending.into_inner();
                    Some(impaired)
                }
                Err(e) => return Err(guard::roll_back(pending, e).await),
            }
        }
        None => None,
    };
    Ok(Member {
        impaired,
        inside,
        host: Link::new(net.host.clone(), host_index, member.peer_name),
        ns,
        addresses: member.addresses,
    })
}

/// The host end's requests, sent in one round trip, with what each does: its IPv6 address mode
/// first, so that it is in place before the carrier-on event (which `up` leads to) would make a
/// link-local address; its ownership mark, replacing the creation queue length (see `owner`),
/// while it is still down; then onto the bridge and up (see `link::create::settle_message`).
fn host_end_requests(name: &IfName, bridge: u32) -> [(RouteNetlinkMessage, &'static str); 3] {
    [
        (no_link_local_named(name.as_str()), "quiet IPv6 on"),
        (
            set_link_named(name.as_str(), |b| {
                b.alias(owner::marker()).txqueuelen(owner::DEFAULT_TXQLEN)
            }),
            "mark",
        ),
        (
            set_link_named(name.as_str(), |b| b.controller(bridge).up()),
            "attach to the bridge",
        ),
    ]
}

/// Step 4 on the caller's side: attaches the host end to the bridge and brings it up (one round
/// trip), unless the member's job did that already on its worker (`attached`); returns its
/// index, looked up if the kernel did not say. Until then a pending guard removes the pair if
/// this fails or the future is dropped.
///
/// The host end is a bridge port and needs no IPv6 address: it gets none (address generation
/// mode `none`, set in the same round trip), so it sends no duplicate-address detection or MLD
/// report that the bridge would flood to every port. IPv6 is not *disabled* on it: writing
/// `disable_ipv6` takes the kernel's RTNL lock with a try-and-restart loop, which spins while
/// other members are being built — measured: 100 members in 130 ms with that write, 96 ms
/// with this request; 1,000 in 1.61 s against 1.31 s.
async fn attach_host_end(
    net: &NetworkContext,
    nl: &Nl,
    name: &IfName,
    index: Option<u32>,
    attached: bool,
    object: &str,
) -> Result<u32> {
    let pending = Guard::new(PendingLink {
        ns: net.host.clone(),
        via: nl.clone(),
        name: name.clone(),
        index,
        alone_in_group: None,
    });
    if !attached {
        // All in one round trip (see `host_end_requests`).
        let replies: Vec<_> = host_end_requests(name, net.bridge.index())
            .into_iter()
            .map(|(msg, op)| (nl.send(msg, 0), op))
            .collect();
        for (reply, op) in replies {
            match reply.ack().await {
                Ok(()) => {}
                // Where the link has no IPv6 at all (IPv6 disabled in the host namespace, an MTU
                // below 1280) it is quiet already.
                Err(e) if op.starts_with("quiet") && e.errno == nix::libc::EAFNOSUPPORT => {}
                Err(e) => {
                    let e = e.into_error(op, object.to_owned());
                    return Err(guard::roll_back(pending, e).await);
                }
            }
        }
    }
    let index = match index {
        Some(index) => index,
        None => match nl.link_named(name.as_str()).await {
            Ok(msg) => msg.header.index,
            Err(e) => {
                let e = e.into_error("look up the host end of", object.to_owned());
                return Err(guard::roll_back(pending, e).await);
            }
        },
    };
    pending.into_inner();
    Ok(index)
}
