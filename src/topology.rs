//! The seed's two patterns as composable async functions, built from the link, address and route
//! layer: [`connect`] from the [`VethPair`] and [`Route`] builders; [`bridged`] from the
//! [`Bridge`] builder and, for its members, from the same messages those builders send, batched
//! (see "Setting up members" below).
//!
//! * [`connect`] — **pattern 1**: two namespaces joined directly by a veth pair, an address on
//!   each end, default routes via the peer ([`DirectLink`]).
//! * [`bridged`] — **pattern 2**: a bridge holding the gateway address in a host namespace, and
//!   for each member namespace a veth whose inside end (`eth0`) has the member's address and a
//!   default route via the gateway ([`BridgedNetwork`]).
//!
//! Both validate everything before the first request, roll back what they made if a later step
//! fails, and return one guard owning everything they made.
//!
//! # Fast teardown of a bridged network
//!
//! Deleting a link costs the kernel 15–35 ms (it waits for RCU grace periods); deleting a
//! network's links one by one would cost that per member. Instead the bridge and every member's
//! host-side veth end are created in one **link group** (`ip link ... group N`), and teardown is
//! a single `RTM_DELLINK` for the group: the kernel unregisters them all in one batch (one set of
//! grace periods), and deleting a veth end deletes its peer inside the member namespace. The
//! group number (see [`owner`](crate::owner)) is unique among this process's live networks and
//! encodes its pid, which also marks the links for `reap` from the moment they exist. Member
//! namespaces the network created are then closed, which frees them.
//!
//! Measured (`benches/topology.rs`, 2 vCPUs): 1000 members are torn down in ~0.7 s, against
//! ~1.8 s for `ip -batch` deleting their namespaces; a lone bridge costs ~40 ms to delete
//! whatever deletes it, which bounds a small network's teardown.
//!
//! # Setting up members
//!
//! A member costs one job on a library worker thread inside its namespace — right after
//! `unshare` for a new one: the veth pair is created from that side, its peer placed directly in
//! the host namespace in the network's group, then the addresses and default routes go in one
//! `sendmsg` — and one `RTM_SETLINK` in the host (attach to the bridge, up). No netlink
//! connection is kept in the member's namespace, so a member holds one file descriptor (1000
//! members fit in a soft limit of 1024) and under 1 KiB of heap.
//!
//! Where the kernel allows overlap it is used: up to 8 members are in flight, namespace creation
//! runs on two worker threads while the host's requests go out on the driver thread. Where it
//! serialises, it does: every link, address and route change takes the global `rtnl_lock`
//! (`perf` shows 12–17% of samples spinning on it during a 1000-member setup), so two cores give
//! ~1.3 ms per member rather than half of it.
//!
//! The per-member cost still grows with N, because the kernel's bridge does O(ports) work per new
//! port (`br_add_if` walks all ports and the forwarding database, the adjacency list is searched
//! linearly, peer namespace ids are looked up by walking an idr): ~1.2 ms per member at N=100,
//! ~1.6 ms at N=1000. Two growths were avoidable and are avoided: every member's IPv6 start-up
//! traffic flooded to every port (see [`BridgedNetworkBuilder::link_local_ipv6`]; it made 1000
//! members cost ~18 ms each), and the bridge recomputing its MAC and MTU from all ports at each
//! join (it gets fixed ones).

use std::{collections::HashSet, net::IpAddr, sync::Arc};

use futures::StreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;

use std::os::fd::{AsFd, AsRawFd};

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};

use crate::{
    addr::{self, IntoIpNetwork},
    error::{Error, Result},
    firewall::ForwardRules,
    guard::{Guard, Resource},
    link::{Link, blocking_one, bridge::Bridge, veth::VethPair},
    link::{
        PendingLink, get_by_name, roll_back,
        veth::{VethMessage, veth_message},
    },
    name::IfName,
    netlink::blocking_requests,
    netns::{AbandonedJob, SocketJob},
    netns::{BLOCKING_TIMEOUT, Namespace, NsInner},
    owner,
    route::Route,
    route::RouteSpec,
};

// ---------------------------------------------------------------------------------------------
// Pattern 1: a direct link.

/// Builds a [`DirectLink`]; see [`connect`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{DirectLinkBuilder, Namespace, connect};
///
/// let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
/// let builder: DirectLinkBuilder = connect(&ns1, &ns2).address("10.0.3.1/30", "10.0.3.2/30");
/// let link = builder.mtu(1400).create().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct DirectLinkBuilder {
    a: Arc<NsInner>,
    b: Arc<NsInner>,
    names: (String, String),
    addresses: Vec<(Result<IpNetwork>, Result<IpNetwork>)>,
    default_routes: bool,
    nodad: bool,
    mtu: Option<u32>,
}

/// Starts pattern 1 of the seed: namespaces `a` and `b` joined directly by a veth pair, like two
/// computers joined by a cable.
///
/// Give each end an address with [`address`](DirectLinkBuilder::address) (once per IP
/// version); by default each side gets a default route via the other.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Namespace, connect};
/// use std::time::Duration;
///
/// let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
/// let link = connect(&ns1, &ns2)
///     .address("10.1.1.1/24", "10.1.1.2/24")
///     .address("fd10:1::1/64", "fd10:1::2/64")
///     .create()
///     .await?;
/// ns1.ping("10.1.1.2".parse().unwrap(), Duration::from_secs(1)).await?;
/// # Ok(()) }
/// ```
pub fn connect(a: &Namespace, b: &Namespace) -> DirectLinkBuilder {
    DirectLinkBuilder {
        a: a.inner().clone(),
        b: b.inner().clone(),
        names: ("veth0".into(), "veth1".into()),
        addresses: Vec::new(),
        default_routes: true,
        nodad: true,
        mtu: None,
    }
}

impl DirectLinkBuilder {
    /// Names the interfaces in `a` and in `b` (default `veth0` and `veth1`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .names("uplink", "downlink")
    ///     .address("10.0.4.1/30", "10.0.4.2/30")
    ///     .create()
    ///     .await?;
    /// assert_eq!(link.b().name(), "downlink");
    /// # Ok(()) }
    /// ```
    pub fn names(mut self, a: impl Into<String>, b: impl Into<String>) -> Self {
        self.names = (a.into(), b.into());
        self
    }

    /// Gives `a`'s end `a_net` and `b`'s end `b_net`: the same IP version, each inside the
    /// other's prefix. Call once for IPv4 and once for IPv6 for a dual-stack link.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .address("10.0.5.1/30", "10.0.5.2/30")
    ///     .address("fd10:5::1/64", "fd10:5::2/64")
    ///     .create()
    ///     .await?;
    /// assert_eq!(link.addresses().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn address(mut self, a_net: impl IntoIpNetwork, b_net: impl IntoIpNetwork) -> Self {
        self.addresses
            .push((a_net.into_ip_network(), b_net.into_ip_network()));
        self
    }

    /// Whether each side gets a default route via the other (default: yes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// // Only the /30 between them: each namespace keeps its own default route.
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .address("10.0.6.1/30", "10.0.6.2/30")
    ///     .default_routes(false)
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn default_routes(mut self, on: bool) -> Self {
        self.default_routes = on;
        self
    }

    /// IPv6 addresses without duplicate-address detection, usable at once (default: yes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .address("fd10:7::1/64", "fd10:7::2/64")
    ///     .nodad(false) // let the kernel run duplicate-address detection first
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn nodad(mut self, on: bool) -> Self {
        self.nodad = on;
        self
    }

    /// MTU of both ends.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .address("10.0.8.1/30", "10.0.8.2/30")
    ///     .mtu(9000)
    ///     .create()
    ///     .await?;
    /// assert_eq!(link.a().info().await?.mtu, Some(9000));
    /// # Ok(()) }
    /// ```
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Creates the link: the veth pair (the peer directly inside `b`), the addresses, both ends
    /// up, and the default routes.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidInput`]/[`Error::InvalidName`] before any request: no address, two
    ///   addresses of one IP version, ends of different IP versions, an end outside the other's
    ///   prefix, equal addresses, `a` and `b` the same namespace with the same names;
    /// * the errors of [`VethPairBuilder::create`](crate::VethPairBuilder::create) and
    ///   [`RouteBuilder::add`](crate::RouteBuilder::add). Whatever was created is removed again.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future half-way removes whatever was already made (see the
    /// [crate docs](crate#resource-leaking)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(a: netns_kit::Namespace, b: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let link = netns_kit::connect(&a, &b)
    ///     .names("left", "right")
    ///     .address("10.0.0.1/30", "10.0.0.2/30")
    ///     .mtu(9000)
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn create(self) -> Result<DirectLink> {
        let a_view = Namespace::view(self.a.clone());
        let b_view = Namespace::view(self.b.clone());
        let object = || {
            format!(
                "direct link {:?} in {} <-> {:?} in {}",
                self.names.0,
                self.a.label(),
                self.names.1,
                self.b.label()
            )
        };
        let mut pairs = Vec::new();
        for (a_net, b_net) in self.addresses {
            let (a_net, b_net) = (a_net?, b_net?);
            if a_net.is_ipv4() != b_net.is_ipv4() {
                return Err(Error::invalid(
                    object(),
                    format!("{a_net} and {b_net} are of different IP versions"),
                ));
            }
            if !a_net.contains(b_net.ip()) || !b_net.contains(a_net.ip()) {
                return Err(Error::invalid(
                    object(),
                    format!("{a_net} and {b_net} are not on the same subnet"),
                ));
            }
            if a_net.ip() == b_net.ip() {
                return Err(Error::invalid(
                    object(),
                    format!("both ends would have {}", a_net.ip()),
                ));
            }
            if pairs
                .iter()
                .any(|(p, _): &(IpNetwork, IpNetwork)| p.is_ipv4() == a_net.is_ipv4())
            {
                return Err(Error::invalid(
                    object(),
                    "give at most one address pair per IP version",
                ));
            }
            addr::validate_host(&a_net, object)?;
            addr::validate_host(&b_net, object)?;
            pairs.push((a_net, b_net));
        }
        if pairs.is_empty() {
            return Err(Error::invalid(
                object(),
                "give each end an address with `.address(a, b)`",
            ));
        }

        let mut veth = VethPair::new(self.names.0.clone(), self.names.1.clone())
            .namespace(&a_view)
            .peer_namespace(&b_view)
            .nodad(self.nodad);
        if let Some(mtu) = self.mtu {
            veth = veth.mtu(mtu);
        }
        for (a_net, b_net) in &pairs {
            veth = veth.address(*a_net).peer_address(*b_net);
        }
        let veth = veth.create().await?;

        if self.default_routes {
            let routes = pairs.iter().flat_map(|(a_net, b_net)| {
                [
                    default_route(&a_view, b_net.ip()),
                    default_route(&b_view, a_net.ip()),
                ]
            });
            let added = futures::future::join_all(routes).await;
            let mut first_error = None;
            for result in added {
                match result {
                    // The routes go with the veth pair; no guard of their own.
                    Ok(route) => route.keep(),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                if let Err(undo) = veth.delete().await {
                    log::warn!("netns-kit: rolling back {}: {undo}", object());
                }
                return Err(e);
            }
        }
        Ok(DirectLink {
            veth,
            addresses: pairs,
        })
    }
}

fn default_route(ns: &Namespace, via: IpAddr) -> impl Future<Output = Result<Route>> + '_ {
    let default = match via {
        IpAddr::V4(_) => IpNetwork::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => IpNetwork::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    }
    .expect("prefix 0 is valid");
    Route::to(default).via(via).add(ns)
}

/// Pattern 1 of the seed, made by [`connect`]: a veth pair between two namespaces with an
/// address on each end and default routes via the peer. The guard deletes the pair, which takes
/// its addresses and routes with it (see the [guard contract](crate#guards)); it never deletes
/// the namespaces.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(ns1: netns_kit::Namespace, ns2: netns_kit::Namespace) -> netns_kit::Result<()> {
/// let link = netns_kit::connect(&ns1, &ns2).address("10.0.0.1/30", "10.0.0.2/30").create().await?;
/// assert_eq!(link.a().name(), "veth0");
/// link.delete().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DirectLink {
    veth: VethPair,
    addresses: Vec<(IpNetwork, IpNetwork)>,
}

impl DirectLink {
    /// The end in the first namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .address("10.0.9.1/30", "10.0.9.2/30")
    ///     .create()
    ///     .await?;
    /// assert!(link.a().is_in(&ns1));
    /// println!("ns1's end: {} (ifindex {})", link.a().name(), link.a().index());
    /// # Ok(()) }
    /// ```
    pub fn a(&self) -> &Link {
        self.veth.link()
    }

    /// The end in the second namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .address("10.0.9.1/30", "10.0.9.2/30")
    ///     .create()
    ///     .await?;
    /// // Pull the cable out on ns2's side.
    /// link.b().set_down().await?;
    /// # Ok(()) }
    /// ```
    pub fn b(&self) -> &Link {
        self.veth.peer()
    }

    /// The address pairs, `(a, b)`, one per IP version.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # use netns_kit::Namespace;
    /// # let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
    /// let link = netns_kit::connect(&ns1, &ns2)
    ///     .address("10.0.9.1/30", "10.0.9.2/30")
    ///     .address("fd10:9::1/64", "fd10:9::2/64")
    ///     .create()
    ///     .await?;
    /// for (a, b) in link.addresses() {
    ///     println!("{} <-> {}", a.ip(), b.ip());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn addresses(&self) -> &[(IpNetwork, IpNetwork)] {
        &self.addresses
    }

    /// Deletes the link now and reports errors.
    ///
    /// # Errors
    ///
    /// As for [`VethPair::delete`].
    ///
    /// # Cancel safety
    ///
    /// Once polled, the deletion is sent and carried out even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::DirectLink) -> netns_kit::Result<()> {
    /// link.delete().await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(self) -> Result<()> {
        self.veth.delete().await
    }

    /// Disarms the guard: the link stays. Returns its two ends.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(link: netns_kit::DirectLink) {
    /// let [a, b] = link.keep();
    /// # }
    /// ```
    pub fn keep(self) -> [Link; 2] {
        self.veth.keep()
    }
}

// ---------------------------------------------------------------------------------------------
// Pattern 2: a bridged network.

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

/// One member of a [`BridgedNetwork`], to be created: where its namespace comes from and its
/// addresses.
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
    interface_name: Option<String>,
    host_interface_name: Option<String>,
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
            interface_name: None,
            host_interface_name: None,
        }
    }

    /// An address of the member's interface; it must lie in the subnet of the network's
    /// gateway of the same IP version. Call once per IP version.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::MemberSpec;
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let mut net = netns_kit::bridged().host(&host).gateway("10.0.12.1/24")
    /// #     .gateway("fd10:12::1/64")
    /// #     .create().await?;
    ///
    /// let spec = MemberSpec::new().address("10.0.12.2/24").address("fd10:12::2/64");
    /// let member = net.add_member(spec).await?;
    /// assert_eq!(member.addresses().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn address(mut self, net: impl IntoIpNetwork) -> Self {
        self.addresses.push(net.into_ip_network());
        self
    }

    /// The name of the member's interface (default: the network's
    /// [`interface_name`](BridgedNetworkBuilder::interface_name), `eth0`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::MemberSpec;
    /// # let container = netns_kit::Namespace::open("c2")?;
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let mut net = netns_kit::bridged().host(&host).gateway("10.0.13.1/24")
    /// #     .create().await?;
    ///
    /// // A second interface for a container that already has an `eth0`.
    /// let spec = MemberSpec::in_namespace(&container)
    ///     .interface_name("net1")
    ///     .address("10.0.13.5/24");
    /// let member = net.add_member(spec).await?;
    /// assert_eq!(member.interface().name(), "net1");
    /// # Ok(()) }
    /// ```
    pub fn interface_name(mut self, name: impl Into<String>) -> Self {
        self.interface_name = Some(name.into());
        self
    }

    /// The name of the host-side veth end attached to the bridge (default: a unique
    /// generated name such as `nkv0ab1c000002`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::MemberSpec;
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let mut net = netns_kit::bridged().host(&host).gateway("10.0.14.1/24")
    /// #     .create().await?;
    ///
    /// let spec = MemberSpec::new().host_interface_name("vethweb1").address("10.0.14.5/24");
    /// let member = net.add_member(spec).await?;
    /// assert_eq!(member.host_interface().name(), "vethweb1");
    /// # Ok(()) }
    /// ```
    pub fn host_interface_name(mut self, name: impl Into<String>) -> Self {
        self.host_interface_name = Some(name.into());
        self
    }
}

impl Default for MemberSpec {
    fn default() -> Self {
        MemberSpec::new()
    }
}

/// A member of a [`BridgedNetwork`]: its namespace, its interface (inside) and the host-side
/// end attached to the bridge.
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
///     let port = member.host_interface().name();
///     println!("{} behind bridge port {port}", member.addresses()[0]);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Member {
    ns: Namespace,
    inside: Link,
    host: Link,
    addresses: Vec<IpNetwork>,
}

impl Member {
    /// The member's namespace; run code or commands in it from here.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use std::time::Duration;
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.16.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.16.2/24"))
    /// #     .create().await?;
    ///
    /// let ns = net.members()[0].namespace();
    /// ns.ping("10.0.16.1".parse().unwrap(), Duration::from_secs(1)).await?;
    /// let routes = ns.command("ip").args(["route", "show"]).output();
    /// # Ok(()) }
    /// ```
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The member's interface, inside its namespace (`eth0`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.17.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.17.2/24"))
    /// #     .create().await?;
    /// let eth0 = net.members()[0].interface();
    /// assert_eq!(eth0.name(), "eth0");
    /// eth0.set_mtu(1400).await?;
    /// # Ok(()) }
    /// ```
    pub fn interface(&self) -> &Link {
        &self.inside
    }

    /// The host-side veth end, a port of the bridge.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.18.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.18.2/24"))
    /// #     .create().await?;
    /// let port = net.members()[0].host_interface();
    /// assert!(port.is_in(&host));
    /// port.set_down().await?; // cut the member off the bridge
    /// # Ok(()) }
    /// ```
    pub fn host_interface(&self) -> &Link {
        &self.host
    }

    /// The member's addresses.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.19.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.19.2/24"))
    /// #     .create().await?;
    /// for addr in net.members()[0].addresses() {
    ///     println!("{} (prefix /{})", addr.ip(), addr.prefix());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn addresses(&self) -> &[IpNetwork] {
        &self.addresses
    }

    /// The member's address of the given IP version, if any.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use std::time::Duration;
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.20.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.20.2/24"))
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.20.3/24"))
    /// #     .create().await?;
    ///
    /// let (web, client) = (&net.members()[0], &net.members()[1]);
    /// let web_ip = web.address(false).expect("an IPv4 member");
    /// client.namespace().ping(web_ip, Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub fn address(&self, ipv6: bool) -> Option<IpAddr> {
        self.addresses
            .iter()
            .find(|a| a.is_ipv6() == ipv6)
            .map(IpNetwork::ip)
    }
}

/// Builds a [`BridgedNetwork`]; see [`bridged`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{BridgedNetworkBuilder, MemberSpec, bridged};
/// # let host = netns_kit::Namespace::new().await?;
///
/// let mut builder: BridgedNetworkBuilder = bridged().host(&host).gateway("10.0.21.1/24");
/// for i in 2..=4 {
///     builder = builder.member(MemberSpec::new().address(format!("10.0.21.{i}/24")));
/// }
/// let net = builder.create().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct BridgedNetworkBuilder {
    host: Option<Arc<NsInner>>,
    bridge_name: Option<String>,
    gateways: Vec<Result<IpNetwork>>,
    interface_name: String,
    members: Vec<MemberSpec>,
    accept_forward: bool,
    nodad: bool,
    mtu: Option<u32>,
    link_local_ipv6: Option<bool>,
}

/// Starts pattern 2 of the seed: a bridge holding the gateway address(es) in a host namespace,
/// and members each joined to it by a veth pair, with their address(es) and a default route via
/// the gateway.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{MemberSpec, Namespace, bridged};
/// use std::time::Duration;
///
/// let host = Namespace::new().await?;
/// let net = bridged()
///     .host(&host)
///     .gateway("10.1.1.254/24")
///     .member(MemberSpec::new().address("10.1.1.1/24"))
///     .member(MemberSpec::new().address("10.1.1.2/24"))
///     .create()
///     .await?;
/// let ns1 = net.members()[0].namespace();
/// ns1.ping("10.1.1.2".parse().unwrap(), Duration::from_secs(1)).await?;
/// # Ok(()) }
/// ```
pub fn bridged() -> BridgedNetworkBuilder {
    BridgedNetworkBuilder {
        host: None,
        bridge_name: None,
        gateways: Vec::new(),
        interface_name: "eth0".into(),
        members: Vec::new(),
        accept_forward: false,
        nodad: true,
        mtu: None,
        link_local_ipv6: None,
    }
}

/// A validated member, ready to be built.
#[derive(Debug)]
struct PlannedMember {
    ns: MemberNs,
    addresses: Vec<IpNetwork>,
    interface_name: IfName,
    host_interface_name: IfName,
}

/// What a network needs to build members, shared by `create` and `add_member`.
#[derive(Debug, Clone)]
struct Plan {
    host: Arc<NsInner>,
    bridge: Link,
    group: u32,
    gateways: Vec<IpNetwork>,
    interface_name: IfName,
    nodad: bool,
    mtu: Option<u32>,
    link_local_ipv6: Option<bool>,
    has_ipv6: bool,
}

impl BridgedNetworkBuilder {
    /// The namespace holding the bridge (default: the caller's current namespace).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let host = netns_kit::Namespace::new().await?; // keeps the bridge off the real host
    /// let net = netns_kit::bridged()
    ///     .host(&host)
    ///     .gateway("10.0.22.1/24")
    ///     .member(netns_kit::MemberSpec::new().address("10.0.22.2/24"))
    ///     .create()
    ///     .await?;
    /// assert!(net.bridge().is_in(&host));
    /// # Ok(()) }
    /// ```
    pub fn host(mut self, ns: &Namespace) -> Self {
        self.host = Some(ns.inner().clone());
        self
    }

    /// The bridge's name (default: a unique generated name such as `nkbr0ab1c000001`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// let net = netns_kit::bridged()
    ///     .host(&host)
    ///     .bridge_name("br0")
    ///     .gateway("10.0.23.1/24")
    ///     .create()
    ///     .await?;
    /// assert_eq!(net.bridge().name(), "br0");
    /// # Ok(()) }
    /// ```
    pub fn bridge_name(mut self, name: impl Into<String>) -> Self {
        self.bridge_name = Some(name.into());
        self
    }

    /// A gateway address, put on the bridge; its prefix is the network's subnet for that IP
    /// version. Call once for IPv4 and/or once for IPv6.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged};
    /// # let host = netns_kit::Namespace::new().await?;
    ///
    /// let net = bridged()
    ///     .host(&host)
    ///     .gateway("10.0.24.1/24")
    ///     .gateway("fd10:24::1/64")
    ///     .member(MemberSpec::new().address("10.0.24.2/24").address("fd10:24::2/64"))
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn gateway(mut self, net: impl IntoIpNetwork) -> Self {
        self.gateways.push(net.into_ip_network());
        self
    }

    /// The default name of each member's interface (default `eth0`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// let net = netns_kit::bridged()
    ///     .host(&host)
    ///     .gateway("10.0.25.1/24")
    ///     .interface_name("lan0")
    ///     .member(netns_kit::MemberSpec::new().address("10.0.25.2/24"))
    ///     .create()
    ///     .await?;
    /// assert_eq!(net.members()[0].interface().name(), "lan0");
    /// # Ok(()) }
    /// ```
    pub fn interface_name(mut self, name: impl Into<String>) -> Self {
        self.interface_name = name.into();
        self
    }

    /// Adds a member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged};
    /// # let host = netns_kit::Namespace::new().await?;
    ///
    /// let net = bridged()
    ///     .host(&host)
    ///     .gateway("10.0.26.1/24")
    ///     .member(MemberSpec::new().address("10.0.26.2/24"))
    ///     .member(MemberSpec::new().address("10.0.26.3/24"))
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn member(mut self, member: MemberSpec) -> Self {
        self.members.push(member);
        self
    }

    /// Adds several members.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged};
    /// # let host = netns_kit::Namespace::new().await?;
    ///
    /// let specs = (2..=101).map(|i| MemberSpec::new().address(format!("10.0.27.{i}/24")));
    /// let net = bridged().host(&host).gateway("10.0.27.1/24").members(specs).create().await?;
    /// assert_eq!(net.members().len(), 100);
    /// # Ok(()) }
    /// ```
    pub fn members(mut self, members: impl IntoIterator<Item = MemberSpec>) -> Self {
        self.members.extend(members);
        self
    }

    /// Inserts scoped `iptables` FORWARD accept rules for the bridge (see
    /// [`BridgeBuilder::accept_forward`](crate::BridgeBuilder::accept_forward) and
    /// [`forward_check`](crate::forward_check)). Default: off.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Namespace, bridged, forward_check};
    ///
    /// let host = Namespace::current()?; // e.g. a machine running Docker
    /// let fix = forward_check(&host).await?.needs_fix();
    /// let net = bridged().host(&host).gateway("10.0.28.1/24").accept_forward(fix).create().await?;
    /// assert_eq!(net.accepts_forward(), fix);
    /// # Ok(()) }
    /// ```
    pub fn accept_forward(mut self, on: bool) -> Self {
        self.accept_forward = on;
        self
    }

    /// IPv6 addresses without duplicate-address detection, usable at once (default: yes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// let net = netns_kit::bridged()
    ///     .host(&host)
    ///     .gateway("fd10:29::1/64")
    ///     .nodad(false) // let the kernel run duplicate-address detection first
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn nodad(mut self, on: bool) -> Self {
        self.nodad = on;
        self
    }

    /// MTU of the bridge and every veth.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// let net = netns_kit::bridged()
    ///     .host(&host)
    ///     .gateway("10.0.30.1/24")
    ///     .mtu(1400) // e.g. inside a tunnel
    ///     .create()
    ///     .await?;
    /// assert_eq!(net.bridge().info().await?.mtu, Some(1400));
    /// # Ok(()) }
    /// ```
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Whether members' interfaces get an IPv6 link-local address (`fe80::`). Default: yes,
    /// except on an IPv4-only network for members whose namespace the network creates itself
    /// ([`MemberSpec::new`]): their interface is created with `addrgenmode none`, so IPv6 stays
    /// enabled (addresses can be added by hand) but silent. Otherwise each member's IPv6
    /// start-up traffic (duplicate-address detection, MLD reports, router solicitations) is
    /// flooded by the bridge to every other member, which makes setting up N members cost
    /// O(N²) — with 1000 members, about 10× slower. `false` applies it to every member,
    /// existing namespaces included; `true` to none.
    ///
    /// The bridge's own ports (the host-side veth ends) get IPv6 disabled where the system
    /// allows writing the sysctl, for the same reason.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// // Members keep their fe80:: address, e.g. to test IPv6 neighbour discovery.
    /// let net = netns_kit::bridged()
    ///     .host(&host)
    ///     .gateway("10.0.31.1/24")
    ///     .link_local_ipv6(true)
    ///     .member(netns_kit::MemberSpec::new().address("10.0.31.2/24"))
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn link_local_ipv6(mut self, on: bool) -> Self {
        self.link_local_ipv6 = Some(on);
        self
    }

    /// Creates the network: the bridge with its gateway address(es), then every member.
    ///
    /// Everything is validated before the first request. If a step fails, everything already
    /// made (bridge, veths, namespaces the network created, firewall rules) is removed before
    /// the error is returned.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidInput`]/[`Error::InvalidName`] before any request: no gateway, two
    ///   gateways of one IP version, a member address outside its gateway's subnet or equal to
    ///   it, a member without an address or with two of one IP version, duplicate member
    ///   addresses, host interface names or namespaces, bad names;
    /// * the errors of the builders it uses ([`Bridge`], [`VethPair`], [`Route`]).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future half-way removes whatever was already made (see the
    /// [crate docs](crate#resource-leaking)).
    ///
    /// # Examples
    ///
    /// A container runtime joining an existing namespace to `cni0`:
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, Namespace, bridged};
    ///
    /// let container = Namespace::open_path("/run/netns/c1")?;
    /// let net = bridged()
    ///     .host(&Namespace::current()?)
    ///     .bridge_name("cni0")
    ///     .gateway("10.88.0.1/16")
    ///     .member(MemberSpec::in_namespace(&container).address("10.88.0.5/16"))
    ///     .create()
    ///     .await?;
    /// let members = net.keep(); // the container's network outlives this process
    /// # Ok(()) }
    /// ```
    #[doc(alias = "brctl addbr")]
    pub async fn create(self) -> Result<BridgedNetwork> {
        let host = match self.host {
            Some(host) => host,
            None => crate::netns::current_inner()?,
        };
        let host_view = Namespace::view(host.clone());
        let bridge_name = match &self.bridge_name {
            Some(name) => IfName::new(name)?,
            None => IfName::unique("nkbr")?,
        };
        let object = || {
            format!(
                "bridged network {:?} in {}",
                bridge_name.as_str(),
                host.label()
            )
        };
        let interface_name = IfName::new(&self.interface_name)?;
        let mut gateways: Vec<IpNetwork> = Vec::new();
        for gw in self.gateways {
            let gw = gw?;
            addr::validate_host(&gw, object)?;
            if gateways.iter().any(|g| g.is_ipv4() == gw.is_ipv4()) {
                return Err(Error::invalid(
                    object(),
                    "give at most one gateway per IP version",
                ));
            }
            gateways.push(gw);
        }
        if gateways.is_empty() {
            return Err(Error::invalid(
                object(),
                "give the bridge a gateway address with `.gateway(...)`",
            ));
        }
        let mut taken = Taken::default();
        let mut planned = Vec::new();
        for spec in self.members {
            planned.push(plan_member(
                spec,
                host.id(),
                &gateways,
                &interface_name,
                &mut taken,
                &object,
            )?);
        }

        let group_hold = owner::allocate_group().map(owner::GroupHold::new).ok_or_else(|| {
            Error::invalid(
                object(),
                "this process already has 512 live bridged networks, the most it can tell apart",
            )
        })?;
        let group = group_hold.group();
        // A fixed MAC and MTU: otherwise the kernel recomputes both from all ports each time one
        // joins (the bridge takes the lowest port MAC, and the lowest port MTU), and every MAC
        // change ripples through the bridge's IPv6 configuration — costs that grow with the
        // number of members.
        let bridge = Bridge::new(bridge_name.as_str())
            .namespace(&host_view)
            .owned_group(group)
            .mac(crate::link::random_mac())
            .mtu(self.mtu.unwrap_or(1500))
            .nodad(self.nodad)
            .accept_forward(self.accept_forward);
        let bridge = gateways.iter().fold(bridge, |b, gw| b.address(*gw));
        // If this fails, or the future is dropped, `group_hold` gives the number back.
        let bridge = bridge.create().await?;
        let (bridge_link, rules) = bridge.into_parts();
        let has_ipv6 = gateways.iter().any(IpNetwork::is_ipv6);
        // From here on the guard owns everything made: if a step fails it is removed, and if
        // this future is dropped the guard's `Drop` removes it.
        let mut network = Guard::new(NetworkResource {
            plan: Plan {
                host: host.clone(),
                bridge: bridge_link,
                group: group_hold.hand_over(),
                gateways,
                link_local_ipv6: self.link_local_ipv6,
                has_ipv6,
                interface_name,
                nodad: self.nodad,
                mtu: self.mtu,
            },
            rules,
            members: Vec::new(),
            taken,
        });
        let plan = network.get().plan.clone();
        let mut built = futures::stream::iter(planned.into_iter().enumerate())
            .map(|(order, member)| {
                let plan = &plan;
                async move { (order, build_member(plan, member).await) }
            })
            .buffer_unordered(MEMBER_CONCURRENCY);
        let mut first_error = None;
        let mut members = Vec::new();
        while let Some((order, result)) = built.next().await {
            match result {
                Ok(member) => members.push((order, member)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        drop(built);
        // Keep the members in the order they were given.
        members.sort_by_key(|(order, _)| *order);
        network.get_mut().members = members.into_iter().map(|(_, m)| m).collect();
        if let Some(e) = first_error {
            return Err(rollback(network, e).await);
        }
        Ok(BridgedNetwork(network))
    }
}

/// How many members are set up at once: enough to overlap namespace creation (on the worker
/// threads) with netlink requests, few enough to bound open sockets.
const MEMBER_CONCURRENCY: usize = 8;

/// Names, addresses and namespaces already used in a network.
#[derive(Debug, Default, Clone)]
struct Taken {
    addresses: HashSet<IpAddr>,
    host_names: HashSet<String>,
    namespaces: HashSet<(u64, u64)>,
}

fn plan_member(
    spec: MemberSpec,
    host: (u64, u64),
    gateways: &[IpNetwork],
    default_name: &IfName,
    taken: &mut Taken,
    network: &dyn Fn() -> String,
) -> Result<PlannedMember> {
    let interface_name = match &spec.interface_name {
        Some(n) => IfName::new(n)?,
        None => default_name.clone(),
    };
    let host_interface_name = match &spec.host_interface_name {
        Some(n) => IfName::new(n)?,
        None => IfName::unique("nkv")?,
    };
    let mut addresses: Vec<IpNetwork> = Vec::new();
    for net in spec.addresses {
        addresses.push(net?);
    }
    let object = || {
        let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        format!("member {} of {}", list.join(", "), network())
    };
    if addresses.is_empty() {
        return Err(Error::invalid(
            object(),
            "a member needs an address (`MemberSpec::address`)",
        ));
    }
    for (i, net) in addresses.iter().enumerate() {
        addr::validate_host(net, object)?;
        if addresses[..i].iter().any(|n| n.is_ipv4() == net.is_ipv4()) {
            return Err(Error::invalid(
                object(),
                "give at most one address per IP version",
            ));
        }
        let Some(gw) = gateways.iter().find(|g| g.is_ipv4() == net.is_ipv4()) else {
            return Err(Error::invalid(
                object(),
                format!(
                    "{net} is an {} address but the network has no {} gateway",
                    if net.is_ipv4() { "IPv4" } else { "IPv6" },
                    if net.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            ));
        };
        if !gw.contains(net.ip()) || !net.contains(gw.ip()) {
            return Err(Error::invalid(
                object(),
                format!(
                    "{net} is not in the gateway's subnet {}/{}",
                    gw.network(),
                    gw.prefix()
                ),
            ));
        }
        if net.ip() == gw.ip() {
            return Err(Error::invalid(
                object(),
                format!("{} is the gateway's address", net.ip()),
            ));
        }
        if taken.addresses.contains(&net.ip()) {
            return Err(Error::invalid(
                object(),
                format!("{} is already another member's address", net.ip()),
            ));
        }
    }
    if taken.host_names.contains(host_interface_name.as_str()) {
        return Err(Error::invalid(
            object(),
            format!(
                "host interface name {:?} is already another member's",
                host_interface_name.as_str()
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
    if let Some(id) = ns_id {
        if !taken.namespaces.insert(id) {
            return Err(Error::invalid(
                object(),
                "its namespace is already a member of this network",
            ));
        }
    }
    for net in &addresses {
        taken.addresses.insert(net.ip());
    }
    taken.host_names.insert(host_interface_name.to_string());
    Ok(PlannedMember {
        ns: spec.ns,
        addresses,
        interface_name,
        host_interface_name,
    })
}

/// Builds one member in two steps, each a single batch of requests:
///
/// 1. **inside the member's namespace**, on a worker thread — right after `unshare` for a new
///    namespace: the veth pair is created from that side (its first end is the member's
///    interface, up; the peer, the host end, is created directly in the host namespace, in the
///    network's link group), then the addresses and default routes are added, in one `sendmsg`;
/// 2. **in the host namespace**: the host end is attached to the bridge and brought up (one
///    `RTM_SETLINK`).
///
/// This is the same work as `VethPair` + `Address` + `Route` (built from the same messages) but
/// needs no netlink connection in the member's namespace: a member costs one worker job, one
/// host request and, once built, one file descriptor (the namespace's). Anything made is removed
/// if a later step fails.
async fn build_member(plan: &Plan, member: PlannedMember) -> Result<Member> {
    let object = format!(
        "member {} ({:?} <-> {:?} in {})",
        member
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        member.interface_name.as_str(),
        member.host_interface_name.as_str(),
        plan.host.label()
    );
    let inside_name = member.interface_name.clone();
    let host_name = member.host_interface_name.clone();
    let host_fd = plan.host.fd().clone();
    let group = plan.group;
    let mtu = plan.mtu;
    let nodad = plan.nodad;
    let mut requests: Vec<(RouteNetlinkMessage, u16)> = member
        .addresses
        .iter()
        .map(|net| addr::add_message(0, net, nodad))
        .collect();
    for net in &member.addresses {
        if let Some(gw) = plan.gateways.iter().find(|g| g.is_ipv4() == net.is_ipv4()) {
            let spec = RouteSpec {
                dest: IpNetwork::new(
                    if gw.is_ipv4() {
                        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                    },
                    0,
                )
                .expect("prefix 0 is valid"),
                gateway: Some(gw.ip()),
                oif: None,
                metric: None,
                table: 254,
            };
            requests.push(spec.add_message());
        }
    }
    let labels: Vec<String> = member
        .addresses
        .iter()
        .map(|net| format!("address {net} of {object}"))
        .chain(
            requests[member.addresses.len()..]
                .iter()
                .map(|_| format!("default route of {object}")),
        )
        .collect();
    // Quiet IPv6 (no link-local address) on the member's interface: as asked, or by default
    // only in a namespace the network made and only on an IPv4-only network. An existing
    // namespace (a container's) keeps the kernel's defaults unless the caller says otherwise.
    let quiet_ipv6 = match plan.link_local_ipv6 {
        Some(on) => !on,
        None => !plan.has_ipv6 && matches!(member.ns, MemberNs::New),
    };
    // The host's connection, before anything is made, so that failing to get it leaves nothing.
    let nl = plan.host.nl().await?;
    let job_object = object.clone();
    // The member's end is created in a group of its own until configured (see `undo` below);
    // the number is given back when the job ends.
    let creation_group = owner::allocate_group().map(owner::GroupHold::new);
    let inside_job: SocketJob<(u32, Option<u32>)> = Box::new(move |socket, cancelled| {
        let object = job_object;
        let run = |batch: Vec<(RouteNetlinkMessage, u16)>| {
            blocking_requests(socket, batch, BLOCKING_TIMEOUT)
        };
        // Removes the pair again (deleting this end deletes the host end too): by index once
        // known; before that by the temporary group this end is created in, which holds nothing
        // else — never by name, which could be an existing interface's in a namespace that is
        // not ours.
        let undo = |index: Option<u32>| {
            let msg = match (index, &creation_group) {
                (Some(index), _) => crate::link::del_link_message(index),
                (None, Some(hold)) => RouteNetlinkMessage::DelLink(
                    rtnetlink::LinkMessageBuilder::<LinkUnspec>::default()
                        .link_group(hold.group())
                        .build(),
                ),
                (None, None) => return,
            };
            let _ = run(vec![(msg, 0)]);
        };
        let veth = veth_message(&VethMessage {
            name: inside_name.as_str(),
            peer: host_name.as_str(),
            peer_ns_fd: Some(host_fd.as_raw_fd()),
            mtu,
            // Brought up below, after its IPv6 address generation is settled.
            up: false,
            mac: None,
            peer_mac: None,
            controller: None,
            group: creation_group.as_ref().map(owner::GroupHold::group),
            peer_group: Some(group),
        });
        let created = run(vec![(
            RouteNetlinkMessage::NewLink(veth),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )]);
        let echo = match created.map(|mut answers| answers.pop()) {
            Ok(Some(Ok(messages))) => messages,
            Ok(Some(Err(e))) => return Err(e.into_error("create the veth pair of", object)),
            Ok(None) => Vec::new(),
            Err(e) => {
                // The kernel may have made the pair before the answer was lost.
                undo(None);
                return Err(Error::os("create the veth pair of", object, e));
            }
        };
        let (index, host_index) = match echoed_link(&echo) {
            Some(found) => found,
            None => {
                let get = LinkUnspec::new_with_name(inside_name.as_str()).build();
                let looked_up = run(vec![(RouteNetlinkMessage::GetLink(get), 0)]);
                match looked_up.map(|mut answers| answers.pop()) {
                    Ok(Some(Ok(messages))) => match echoed_link(&messages) {
                        Some(found) => found,
                        None => {
                            undo(None);
                            return Err(Error::os(
                                "look up the interface of",
                                object,
                                std::io::Error::other("the kernel answered without the link"),
                            ));
                        }
                    },
                    Ok(Some(Err(e))) => {
                        undo(None);
                        return Err(e.into_error("look up the interface of", object));
                    }
                    Ok(None) | Err(_) => {
                        undo(None);
                        return Err(Error::os(
                            "look up the interface of",
                            object,
                            std::io::Error::from(std::io::ErrorKind::TimedOut),
                        ));
                    }
                }
            }
        };
        let mut batch = Vec::new();
        let mut labels_of_batch = Vec::new();
        if quiet_ipv6 {
            // Best effort: refused (EAFNOSUPPORT) where the link has no IPv6 at all, e.g. an
            // MTU below 1280 or IPv6 disabled, which is quiet enough.
            batch.push((no_link_local(index), 0));
            labels_of_batch.push(None);
        }
        // Up, and out of its temporary group.
        batch.push((
            RouteNetlinkMessage::SetLink(
                LinkUnspec::new_with_index(index).up().link_group(0).build(),
            ),
            0,
        ));
        labels_of_batch.push(Some(("bring up", object.clone())));
        batch.extend(
            requests
                .into_iter()
                .map(|(msg, flags)| (with_index(msg, index), flags)),
        );
        labels_of_batch.extend(labels.into_iter().map(|label| Some(("add", label))));
        let failure = match run(batch) {
            Ok(answers) => answers
                .into_iter()
                .zip(labels_of_batch)
                .find_map(|(answer, label)| match (answer, label) {
                    (Err(e), Some((op, label))) => Some(e.into_error(op, label)),
                    _ => None,
                }),
            Err(e) => Some(Error::os("configure", object.clone(), e)),
        };
        if let Some(e) = failure {
            undo(Some(index));
            return Err(e);
        }
        if cancelled() {
            // Nobody will take this member: do not leave it configured.
            undo(Some(index));
            return Err(Error::os(
                "set up",
                object,
                std::io::Error::from(std::io::ErrorKind::Interrupted),
            ));
        }
        // The host end is a bridge port and needs no IPv6 at all: disabling it there (while it
        // is still down) spares the host namespace an IPv6 route per port, which every later
        // port's start would otherwise walk. Best effort: without it IPv6 is only noisier.
        if crate::sys::setns_net(host_fd.as_fd()).is_ok() {
            let _ = std::fs::write(
                format!(
                    "/proc/sys/net/ipv6/conf/{}/disable_ipv6",
                    host_name.as_str()
                ),
                "1",
            );
        }
        Ok((index, host_index))
    });
    // In an existing namespace, a member whose future was dropped just as its job finished
    // is removed again there (a new namespace simply dies with its fd).
    let abandoned = || -> AbandonedJob<(u32, Option<u32>)> {
        Box::new(|socket, (index, _)| {
            let _ = blocking_requests(
                socket,
                vec![(crate::link::del_link_message(index), 0)],
                BLOCKING_TIMEOUT,
            );
        })
    };
    let (ns, (inside_index, host_index)) = match member.ns {
        MemberNs::New => Namespace::create_with(inside_job).await?,
        MemberNs::Borrowed(inner) => {
            let found = inner.with_socket(inside_job, abandoned()).await?;
            (Namespace::view(inner), found)
        }
        MemberNs::Owned(ns) => {
            let found = ns.inner().with_socket(inside_job, abandoned()).await?;
            (ns, found)
        }
    };

    // The pair exists: until the member is handed over, `pending` removes it if the next step
    // fails or this future is dropped (by the host end's ifindex when the echo gave it).
    let pending = Guard::new(PendingLink {
        ns: plan.host.clone(),
        via: nl.clone(),
        name: member.host_interface_name.clone(),
        index: host_index,
        alone_in_group: None,
    });
    // Step 2: attach the host end to the bridge and bring it up, in one request.
    let attach = LinkUnspec::new_with_name(member.host_interface_name.as_str())
        .controller(plan.bridge.index())
        .up()
        .build();
    if let Err(e) = nl.send(RouteNetlinkMessage::SetLink(attach), 0).ack().await {
        let e = e.into_error("attach to the bridge", object.clone());
        return Err(roll_back(pending, e).await);
    }
    let host_index = match host_index {
        Some(index) => index,
        None => match get_by_name(&nl, member.host_interface_name.as_str()).await {
            Ok(msg) => msg.header.index,
            Err(e) => {
                let e = e.into_error("look up the host end of", object.clone());
                return Err(roll_back(pending, e).await);
            }
        },
    };
    pending.keep();
    Ok(Member {
        inside: Link::new(ns.inner().clone(), inside_index, member.interface_name),
        host: Link::new(plan.host.clone(), host_index, member.host_interface_name),
        ns,
        addresses: member.addresses,
    })
}

/// The attribute that stops IPv6 from giving a link a link-local address (`addrgenmode none`).
/// Without an address, a link sends no duplicate-address detection, MLD report or router
/// solicitation. This matters on a bridge: such multicast is flooded to every port, so N members
/// each announcing themselves cost on the order of N² deliveries (measured: 1000 members took
/// ~10× longer to set up with it). It cannot be given when the link is created: the kernel only
/// accepts it for an existing link.
fn addr_gen_mode_none() -> netlink_packet_route::link::LinkAttribute {
    use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}

/// `RTM_SETLINK` applying [`addr_gen_mode_none`] to link `index`.
fn no_link_local(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkUnspec::new_with_index(index).build();
    msg.attributes.push(addr_gen_mode_none());
    RouteNetlinkMessage::SetLink(msg)
}

/// The ifindex of a veth end the kernel echoed, and its peer's (`IFLA_LINK`), in the peer's
/// namespace.
fn echoed_link(messages: &[RouteNetlinkMessage]) -> Option<(u32, Option<u32>)> {
    messages.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(link) if link.header.index > 0 => {
            let peer = link.attributes.iter().find_map(|a| match a {
                netlink_packet_route::link::LinkAttribute::Link(peer) if *peer > 0 => Some(*peer),
                _ => None,
            });
            Some((link.header.index, peer))
        }
        _ => None,
    })
}

/// Sets the interface index of an address or route request built before the index was known.
fn with_index(msg: RouteNetlinkMessage, index: u32) -> RouteNetlinkMessage {
    match msg {
        RouteNetlinkMessage::NewAddress(mut a) => {
            a.header.index = index;
            RouteNetlinkMessage::NewAddress(a)
        }
        other => other,
    }
}

fn link_alias(index: u32, alias: &str) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).alias(alias).build())
}

fn link_group(index: u32, group: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).link_group(group).build())
}

fn group_message(group: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelLink(
        rtnetlink::LinkMessageBuilder::<LinkUnspec>::default()
            .link_group(group)
            .build(),
    )
}

async fn rollback(network: Guard<NetworkResource>, error: Error) -> Error {
    let what = network.get().describe();
    if let Err(undo) = network.delete().await {
        log::warn!("netns-kit: rolling back {what}: {undo}");
    }
    error
}

#[derive(Debug)]
struct NetworkResource {
    plan: Plan,
    rules: Option<ForwardRules>,
    members: Vec<Member>,
    taken: Taken,
}

impl Resource for NetworkResource {
    fn describe(&self) -> String {
        format!(
            "bridged network {:?} in {}",
            self.plan.bridge.name(),
            self.plan.host.label()
        )
    }

    async fn remove(&self) -> Result<()> {
        let what = self.describe();
        let mut errors = Vec::new();
        // One request, one kernel batch: the bridge and every member's veth pair. First, so an
        // interruption during the slower iptables calls leaves only rules behind for `Drop`.
        let nl = self.plan.host.nl().await;
        match nl {
            Ok(nl) => match nl.send(group_message(self.plan.group), 0).ack().await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => errors.push(e.into_error("delete the links of", what.clone())),
            },
            Err(e) => errors.push(e),
        }
        if let Some(rules) = &self.rules {
            if let Err(e) = rules.remove().await {
                errors.push(e);
            }
        }
        Error::collect(what, errors)
    }

    fn remove_blocking(&self) -> Result<()> {
        if self.plan.host.is_doomed() {
            // The host namespace dies with this crate's last references, and with it the
            // bridge, every member's veth pair and the rules.
            return Ok(());
        }
        let what = self.describe();
        let mut errors = Vec::new();
        if let Err(e) = blocking_one(
            &self.plan.host,
            group_message(self.plan.group),
            BLOCKING_TIMEOUT,
            "delete the links of",
            || what.clone(),
        ) {
            errors.push(e);
        }
        if let Some(rules) = &self.rules {
            if let Err(e) = rules.remove_blocking() {
                errors.push(e);
            }
        }
        Error::collect(what, errors)
    }

    fn finish(self, removed: bool) -> Result<()> {
        let what = self.describe();
        let mut errors = Vec::new();
        for member in self.members {
            if let Err(e) = member.ns.close() {
                errors.push(e);
            }
        }
        if removed {
            owner::release_group(self.plan.group);
        } else {
            // Links may still be in the group: never hand its number to another network.
            log::warn!(
                "netns-kit: {what}: link group {:#x} not reused",
                self.plan.group
            );
        }
        Error::collect(what, errors)
    }
}

/// Pattern 2 of the seed, made by [`bridged`]: a bridge with the gateway address(es) in a host
/// namespace and members joined to it. The guard removes the bridge, every member's veth pair
/// (in one kernel batch, see below), the firewall rules if any, and the member namespaces it
/// created or was given; it never destroys the host namespace or namespaces given with
/// [`MemberSpec::in_namespace`]. See the [guard contract](crate#guards).
///
/// # Fast teardown
///
/// Deleting a link costs the kernel 15–35 ms (it waits for RCU grace periods), so deleting a
/// network's links one by one would cost that per member. Instead the bridge and every member's
/// host-side veth end share one **link group** (`ip link ... group N`; [`group`](Self::group)),
/// and teardown is a single `RTM_DELLINK` for the group — what `ip link del group N` sends: the
/// kernel unregisters them all in one batch, and deleting a veth end deletes its peer inside the
/// member's namespace. Do not put other links in that group.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(host: netns_kit::Namespace) -> netns_kit::Result<()> {
/// use netns_kit::{MemberSpec, bridged};
///
/// let mut net = bridged()
///     .host(&host)
///     .gateway("10.1.0.1/24")
///     .member(MemberSpec::new().address("10.1.0.2/24"))
///     .create()
///     .await?;
/// net.add_member(MemberSpec::new().address("10.1.0.3/24")).await?;
/// net.remove_member("10.1.0.2".parse().unwrap()).await?;
/// assert_eq!(net.members().len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BridgedNetwork(Guard<NetworkResource>);

impl BridgedNetwork {
    /// The bridge.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.32.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.32.2/24"))
    /// #     .create().await?;
    /// let bridge = net.bridge();
    /// assert!(bridge.is_in(&host));
    /// let info = bridge.info().await?;
    /// assert_eq!(info.kind.as_deref(), Some("bridge"));
    /// # Ok(()) }
    /// ```
    pub fn bridge(&self) -> &Link {
        &self.0.get().plan.bridge
    }

    /// The gateway addresses on the bridge, one per IP version.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use std::time::Duration;
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.33.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.33.2/24"))
    /// #     .create().await?;
    ///
    /// let gateway = net.gateways()[0].ip();
    /// let member = net.members()[0].namespace();
    /// member.ping(gateway, Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub fn gateways(&self) -> &[IpNetwork] {
        &self.0.get().plan.gateways
    }

    /// The link group of the bridge and the members' host-side veth ends. `ip` prints it as a
    /// signed number (`group -2131965439`); `ip link del group <that number>` would remove the
    /// whole network.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.34.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.34.2/24"))
    /// #     .create().await?;
    /// assert_eq!(net.bridge().info().await?.group, net.group());
    /// // `ip` prints the group as a signed number.
    /// println!("to remove by hand: ip link del group {}", net.group() as i32);
    /// # Ok(()) }
    /// ```
    pub fn group(&self) -> u32 {
        self.0.get().plan.group
    }

    /// Whether the network inserted `iptables` FORWARD accept rules for its bridge.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::forward_check;
    /// # let host = netns_kit::Namespace::current()?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.35.1/24")
    /// #     .create().await?;
    ///
    /// if !net.accepts_forward() && forward_check(&host).await?.needs_fix() {
    ///     eprintln!("warning: the FORWARD chain drops traffic between members");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn accepts_forward(&self) -> bool {
        self.0.get().rules.is_some()
    }

    /// The members, in the order they were added.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.36.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.36.2/24"))
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.36.3/24"))
    /// #     .create().await?;
    /// for member in net.members() {
    ///     println!("{} in {}", member.addresses()[0], member.namespace().label());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn members(&self) -> &[Member] {
        &self.0.get().members
    }

    /// The member that has address `address`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// # let host = netns_kit::Namespace::new().await?;
    /// # let net = netns_kit::bridged().host(&host).gateway("10.0.37.1/24")
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.37.2/24"))
    /// #     .member(netns_kit::MemberSpec::new().address("10.0.37.3/24"))
    /// #     .create().await?;
    /// let web = net.member("10.0.37.2".parse().unwrap()).expect("a member with that address");
    /// web.interface().set_down().await?; // take it offline, e.g. to test failover
    /// # Ok(()) }
    /// ```
    pub fn member(&self, address: IpAddr) -> Option<&Member> {
        self.members()
            .iter()
            .find(|m| m.addresses.iter().any(|a| a.ip() == address))
    }

    /// Adds a member to the live network, validated against the existing ones like the members
    /// given to [`create`](BridgedNetworkBuilder::create). On failure nothing of the new member
    /// remains and the network is unchanged.
    ///
    /// # Errors
    ///
    /// As for [`BridgedNetworkBuilder::create`].
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped half-way, the new member's veth may remain in the network's
    /// link group without being listed; it is removed with the network.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut net: netns_kit::BridgedNetwork) -> netns_kit::Result<()> {
    /// let m = net.add_member(netns_kit::MemberSpec::new().address("10.1.0.9/24")).await?;
    /// println!("new member's eth0 is #{}", m.interface().index());
    /// # Ok(()) }
    /// ```
    pub async fn add_member(&mut self, spec: MemberSpec) -> Result<&Member> {
        let resource = self.0.get_mut();
        let plan = resource.plan.clone();
        let describe = resource.describe();
        // Validate against a copy of what is taken; commit it only once the member exists.
        let mut taken = resource.taken.clone();
        let planned = plan_member(
            spec,
            plan.host.id(),
            &plan.gateways,
            &plan.interface_name,
            &mut taken,
            &|| describe.clone(),
        )?;
        let member = build_member(&plan, planned).await?;
        let resource = self.0.get_mut();
        resource.taken = taken;
        resource.members.push(member);
        Ok(resource.members.last().expect("just pushed"))
    }

    /// Removes the member that has `address`: deletes its veth pair (with its address and
    /// routes) and, if the network created or was given its namespace, destroys that too.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if no member has that address; the kernel's refusal otherwise
    /// (the member is forgotten by the network in any case).
    ///
    /// # Cancel safety
    ///
    /// Once polled, the member is taken out of the network and its deletion sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut net: netns_kit::BridgedNetwork) -> netns_kit::Result<()> {
    /// net.remove_member("10.1.0.9".parse().unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_member(&mut self, address: IpAddr) -> Result<()> {
        let resource = self.0.get_mut();
        let Some(position) = resource
            .members
            .iter()
            .position(|k| k.addresses.iter().any(|a| a.ip() == address))
        else {
            return Err(Error::invalid(
                resource.describe(),
                format!("no member has address {address}"),
            ));
        };
        let member = resource.members.remove(position);
        for net in &member.addresses {
            resource.taken.addresses.remove(&net.ip());
        }
        resource.taken.host_names.remove(member.host.name());
        resource.taken.namespaces.remove(&member.ns.inner().id());
        let host = member.host.dup();
        let mut errors = Vec::new();
        if let Err(e) = crate::link::delete_link(host.ns(), host.index(), || host.label()).await {
            errors.push(e);
        }
        if let Err(e) = member.ns.close() {
            errors.push(e);
        }
        Error::collect(format!("member {address}"), errors)
    }

    /// Tears the whole network down now and reports every error met; teardown goes on after a
    /// failure.
    ///
    /// # Errors
    ///
    /// The kernel's or `iptables`' refusals, several as [`Error::Teardown`].
    ///
    /// # Cancel safety
    ///
    /// Once polled, the group deletion is sent and carried out even if the future is dropped;
    /// member namespaces are then freed when the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(net: netns_kit::BridgedNetwork) -> netns_kit::Result<()> {
    /// net.delete().await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// Disarms the guard: the bridge, veths, rules and member namespaces stay (a named member
    /// namespace keeps its name; an anonymous one still dies with its last handle, which is
    /// returned here).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(net: netns_kit::BridgedNetwork) {
    /// let members = net.keep();
    /// # }
    /// ```
    pub fn keep(self) -> Vec<Member> {
        let NetworkResource {
            plan,
            rules,
            members,
            ..
        } = self.0.keep();
        // Unmark everything, so `reap` never removes it: the bridge's alias, the link group of
        // the bridge and the members' host ends, the firewall rules' comments, the names.
        let mut unmark = vec![(link_alias(plan.bridge.index(), owner::KEPT), 0)];
        unmark.extend(
            std::iter::once(plan.bridge.index())
                .chain(members.iter().map(|m| m.host.index()))
                .map(|index| (link_group(index, 0), 0)),
        );
        let mut unmarked = match plan.host.blocking_acks(unmark, BLOCKING_TIMEOUT) {
            Ok(answers) => answers
                .into_iter()
                .filter_map(|a| a.err())
                .fold(true, |_, e| {
                    let e = e.into_error("unmark", plan.bridge.label());
                    log::warn!("netns-kit: keeping a bridged network: {e}");
                    false
                }),
            Err(e) => {
                log::warn!("netns-kit: keeping a bridged network: {e}");
                false
            }
        };
        if let Some(rules) = rules {
            unmarked &= rules.keep_blocking();
        }
        if unmarked {
            owner::release_group(plan.group);
        } else {
            // Something still carries the group: never hand its number to another network,
            // whose teardown would delete what was kept.
            log::warn!("netns-kit: link group {:#x} not reused", plan.group);
        }
        members
            .into_iter()
            .map(|m| {
                let Member {
                    ns,
                    inside,
                    host,
                    addresses,
                } = m;
                Member {
                    ns: ns.keep(),
                    inside: inside.handed_out(),
                    host: host.handed_out(),
                    addresses,
                }
            })
            .collect()
    }
}
