//! The router pattern: one router namespace joining two or more subnets, with forwarding on in
//! that namespace only.
//!
//! A routed network is made of the two other patterns, with the router in the middle:
//!
//! * each **LAN** is a [`bridged`](crate::bridged) network whose bridge lives in the router
//!   namespace, so its gateway address is the router's address on that subnet and its members'
//!   default routes point at the router;
//! * each **link** is a [`connect`](crate::connect)ed veth pair from the router to one other
//!   namespace (a point-to-point subnet), whose far end gets a default route via the router.
//!
//! The router then needs only its connected routes, which the kernel makes with the addresses,
//! and forwarding: `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding` are set to 1 *in the
//! router namespace*, for the IP versions its subnets use — never in the caller's namespace. By
//! default the router is a new anonymous namespace owned by the network; given an existing one
//! ([`RoutedNetworkBuilder::router`]), the network puts the settings back as they were when it
//! is torn down.
//!
//! # Ready on return, for IPv6 too
//!
//! A router resolves the next hop of a *forwarded* IPv6 packet with a neighbour solicitation
//! sent from its interface's link-local address — and sends none while that address is
//! tentative, which, with duplicate-address detection, lasts a second or two after the
//! interface comes up: the first forwarded packets would be lost. So, with IPv6, the router's
//! `net.ipv6.conf.default.accept_dad` is set to 0 before its interfaces are made (they skip
//! detection for their link-local addresses, like the `nodad` addresses), and `create` waits
//! until each has a usable link-local address (see `netlink::ready`).
//!
//! Validated before the first request: at least two subnets, no LAN with a host of its own (its
//! host is the router) or an existing bridge, the links' addresses and names, no two subnets
//! overlapping (the router could not tell them apart). Each LAN's gateways and members are
//! validated by its own builder, after the forwarding settings are made; a failure there, or
//! any later one, removes what was made and puts a given router's settings back.

use std::sync::Arc;

use ipnetwork::IpNetwork;

use crate::{
    error::{Error, Result},
    ip::IntoIpNetwork,
    name::IfName,
    netns::{Namespace, NsInner},
    topology::{BridgedNetwork, BridgedNetworkBuilder, DirectLink, connect},
    trace,
};

/// Starts a routed network: a router namespace joining two or more subnets.
///
/// Each [LAN](RoutedNetworkBuilder::lan) is a [`bridged`](crate::bridged) network whose bridge
/// lives in the router, so its gateway is the router's address there and its members' default
/// routes point at the router; each [link](RoutedNetworkBuilder::link) is a veth pair from the
/// router to another namespace, whose end gets a default route via the router. Forwarding
/// (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`) is switched on in the router only, for
/// the IP versions in use; with IPv6 the router's interfaces also skip duplicate-address
/// detection for their link-local addresses (`net.ipv6.conf.default.accept_dad` 0 in the
/// router), which a router needs to forward the first packets. A router given with
/// [`router`](RoutedNetworkBuilder::router) gets those settings back at teardown; a new one
/// (the default) is freed.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{MemberSpec, Namespace, RouterLink, bridged, routed};
///
/// let db = Namespace::new().await?;
/// let net = routed()
///     .lan(
///         bridged()
///             .gateway("10.10.1.1/24")
///             .member(MemberSpec::new().address("10.10.1.2/24"))
///             .member(MemberSpec::new().address("10.10.1.3/24")),
///     )
///     .lan(
///         bridged()
///             .gateway("10.10.2.1/24")
///             .member(MemberSpec::new().address("10.10.2.2/24")),
///     )
///     .link(RouterLink::to(&db).address("10.10.3.1/30", "10.10.3.2/30"))
///     .create()
///     .await?;
/// // A member of the first LAN reaches the second LAN and `db`, through the router.
/// let ns = net.lans()[0].members()[0].namespace();
/// ns.ping("10.10.2.2".parse().unwrap(), std::time::Duration::from_secs(1)).await?;
/// ns.ping("10.10.3.2".parse().unwrap(), std::time::Duration::from_secs(1)).await?;
/// # Ok(()) }
/// ```
pub fn routed() -> RoutedNetworkBuilder {
    RoutedNetworkBuilder {
        router: None,
        lans: Vec::new(),
        links: Vec::new(),
    }
}

/// Builds a [`RoutedNetwork`]; see [`routed`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct RoutedNetworkBuilder {
    router: Option<Namespace>,
    lans: Vec<BridgedNetworkBuilder>,
    links: Vec<RouterLink>,
}

/// A point-to-point subnet of a [routed network](routed): a veth pair from the router to
/// another namespace, an address on each end (the router's first), and a default route via the
/// router in that namespace.
///
/// # Examples
///
/// ```no_run
/// # fn demo(db: &netns_kit::Namespace) {
/// use netns_kit::RouterLink;
///
/// let link = RouterLink::to(db)
///     .names("to-db", "eth0")
///     .address("10.10.3.1/30", "10.10.3.2/30")
///     .address("fd10:3::1/64", "fd10:3::2/64");
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a router link does nothing until given to `routed().link(...)`"]
pub struct RouterLink {
    ns: Arc<NsInner>,
    names: Option<(String, String)>,
    addresses: Vec<(Result<IpNetwork>, Result<IpNetwork>)>,
    mtu: Option<u32>,
}

impl RouterLink {
    /// A link from the router to `ns`.
    pub fn to(ns: &Namespace) -> Self {
        RouterLink {
            ns: ns.inner().clone(),
            names: None,
            addresses: Vec::new(),
            mtu: None,
        }
    }

    /// Names the router's end and the other end (default: a unique generated name in the
    /// router, `eth0` in the other namespace).
    pub fn names(mut self, router_end: impl AsRef<str>, other_end: impl AsRef<str>) -> Self {
        self.names = Some((
            router_end.as_ref().to_owned(),
            other_end.as_ref().to_owned(),
        ));
        self
    }

    /// Gives the router's end `router_net` and the other end `other_net`: the same IP version,
    /// each inside the other's prefix. Call once per IP version.
    pub fn address(
        mut self,
        router_net: impl IntoIpNetwork,
        other_net: impl IntoIpNetwork,
    ) -> Self {
        self.addresses
            .push((router_net.into_ip_network(), other_net.into_ip_network()));
        self
    }

    /// MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

impl RoutedNetworkBuilder {
    /// Uses `ns` as the router instead of a new namespace. Its forwarding settings are put
    /// back as they were when the network is torn down; the namespace itself is never deleted.
    pub fn router(mut self, ns: &Namespace) -> Self {
        self.router = Some(Namespace::view(ns.inner().clone()));
        self
    }

    /// Adds a LAN: a bridged network whose bridge lives in the router, its gateway address the
    /// router's address on the LAN. Give it no [`host`](BridgedNetworkBuilder::host) and no
    /// [existing bridge](BridgedNetworkBuilder::existing_bridge): its host is the router.
    pub fn lan(mut self, lan: BridgedNetworkBuilder) -> Self {
        self.lans.push(lan);
        self
    }

    /// Adds a point-to-point subnet from the router to another namespace.
    pub fn link(mut self, link: RouterLink) -> Self {
        self.links.push(link);
        self
    }

    /// The span of `create`.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "routed network",
            format!(
                "routed network ({})",
                count(self.lans.len(), self.links.len())
            ),
            self.router
                .as_ref()
                .map_or_else(|| "a new namespace".to_owned(), |r| r.label().to_owned()),
        )
    }

    /// Creates the network: the router namespace (unless given), forwarding on in it, every
    /// LAN (bridge in the router, members, default routes via the router) and every link.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidInput`] before any request: fewer than two subnets, a LAN with a
    ///   host or an existing bridge of its own, a link without addresses, two subnets that
    ///   overlap; and each LAN's and link's own input errors (see
    ///   [`BridgedNetworkBuilder::create`] and
    ///   [`DirectLinkBuilder::create`](crate::DirectLinkBuilder::create));
    /// * the errors of those builders and of [`Namespace::set_sysctl`]. Whatever was created
    ///   is removed again, and a given router's forwarding settings are put back.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future half-way removes whatever was already made (see the
    /// [crate docs](crate#resource-leaking)).
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<RoutedNetwork> {
        let span = self.create_span();
        trace::timed(span, async move { self.build().await }).await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<RoutedNetwork> {
        crate::netlink::block_on(self.create())
    }

    async fn build(self) -> Result<RoutedNetwork> {
        let plan = self.validate()?;
        let (router, owned) = match plan.router {
            Some(r) => (r, false),
            None => (Namespace::new().await?, true),
        };
        let mut network = RoutedNetwork {
            lans: Vec::new(),
            links: Vec::new(),
            forwarding: Forwarding {
                router: Namespace::view(router.inner().clone()),
                registered: false,
                armed: true,
            },
            router,
        };
        // A router made here dies with the network, settings and all: nothing to put back.
        if let Err(e) = network
            .forwarding
            .enable(plan.ipv4, plan.ipv6, !owned)
            .await
        {
            return Err(network.roll_back(e).await);
        }
        for lan in plan.lans {
            match lan.host(&network.router).create().await {
                Ok(lan) => network.lans.push(lan),
                Err(e) => return Err(network.roll_back(e).await),
            }
        }
        for link in plan.links {
            match network.add_link(link).await {
                Ok(link) => network.links.push(link),
                Err(e) => return Err(network.roll_back(e).await),
            }
        }
        Ok(network)
    }

    /// Every check before anything is made: at least two subnets, LANs without a host or an
    /// existing bridge of their own, links with addresses and valid names, no two subnets of
    /// one IP version overlapping.
    fn validate(self) -> Result<RoutedPlan> {
        let object = "routed network";
        let subnets = self.lans.len() + self.links.len();
        if subnets < 2 {
            return Err(Error::invalid(
                object,
                format!(
                    "a router joins two or more subnets, {subnets} given (for one, use \
                     `bridged()` or `connect()`)"
                ),
            ));
        }
        let mut prefixes: Vec<(IpNetwork, String)> = Vec::new();
        for (i, lan) in self.lans.iter().enumerate() {
            let what = format!("LAN {i}");
            if lan.host.is_some() || lan.existing.is_some() {
                return Err(Error::invalid(
                    format!("{what} of the {object}"),
                    "a LAN's bridge lives in the router: give it no `host` and no \
                     `existing_bridge`",
                ));
            }
            for gw in lan.gateways.iter().flatten() {
                prefixes.push((subnet_of(gw), what.clone()));
            }
        }
        let mut links = Vec::new();
        for (i, link) in self.links.into_iter().enumerate() {
            let what = format!("link {i}");
            if link.addresses.is_empty() {
                return Err(Error::invalid(
                    format!("{what} of the {object}"),
                    "give it an address pair with `.address(router_end, other_end)`",
                ));
            }
            let object = || format!("{what} of the {object}");
            let pairs = super::direct::validate_pairs(link.addresses, &object)?;
            for (r, _) in &pairs {
                prefixes.push((subnet_of(r), what.clone()));
            }
            if let Some((r, o)) = &link.names {
                IfName::new(r)?;
                IfName::new(o)?;
            }
            links.push(PlannedLink {
                ns: link.ns,
                names: link.names,
                pairs,
                mtu: link.mtu,
            });
        }
        for (i, (a, a_what)) in prefixes.iter().enumerate() {
            for (b, b_what) in &prefixes[i + 1..] {
                if a.is_ipv4() == b.is_ipv4()
                    && (a.contains(b.network()) || b.contains(a.network()))
                {
                    return Err(Error::invalid(
                        object,
                        format!(
                            "the subnets of {a_what} ({a}) and {b_what} ({b}) overlap: the \
                             router could not tell them apart"
                        ),
                    ));
                }
            }
        }
        Ok(RoutedPlan {
            router: self.router,
            lans: self.lans,
            links,
            ipv4: prefixes.iter().any(|(p, _)| p.is_ipv4()),
            ipv6: prefixes.iter().any(|(p, _)| p.is_ipv6()),
        })
    }
}

/// A routed network checked in full, before anything is made.
struct RoutedPlan {
    router: Option<Namespace>,
    lans: Vec<BridgedNetworkBuilder>,
    links: Vec<PlannedLink>,
    /// Which IP versions the router forwards.
    ipv4: bool,
    ipv6: bool,
}

/// A [`RouterLink`] checked: its address pairs parsed.
struct PlannedLink {
    ns: Arc<NsInner>,
    names: Option<(String, String)>,
    pairs: Vec<(IpNetwork, IpNetwork)>,
    mtu: Option<u32>,
}

impl RoutedNetwork {
    /// A point-to-point link from the router, with its addresses and the other end's default
    /// route via the router.
    async fn add_link(&self, link: PlannedLink) -> Result<DirectLink> {
        let other = Namespace::view(link.ns);
        let (router_end, other_end) = match link.names {
            Some(names) => names,
            None => (
                IfName::unique("nkr")?.as_str().to_owned(),
                "eth0".to_owned(),
            ),
        };
        let mut builder = connect(&self.router, &other)
            .names(router_end, other_end)
            .default_route_only_in_b();
        if let Some(mtu) = link.mtu {
            builder = builder.mtu(mtu);
        }
        for (r, o) in link.pairs {
            builder = builder.address(r, o);
        }
        builder.create().await
    }
}

/// "2 LANs, 1 link".
fn count(lans: usize, links: usize) -> String {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    format!("{lans} LAN{}, {links} link{}", s(lans), s(links))
}

/// The subnet an address is on (`10.1.2.3/24` → `10.1.2.0/24`).
fn subnet_of(net: &IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(*net)
}

/// The router's forwarding settings: switched on, and put back at teardown where the router
/// was given (a new router dies with the network, settings and all).
///
/// Two things make "put back" more than writing the old value: writing `ip_forward` or
/// `conf.all.forwarding` also rewrites every interface's own `forwarding` setting, so each
/// existing interface's value is recorded too and restored after the global one; and several
/// routed networks of this process may share one router, so the settings are recorded by the
/// first and restored by the last (a count per router namespace, [`ROUTERS`]).
#[derive(Debug)]
struct Forwarding {
    router: Namespace,
    /// Whether this network counts as a user of the router's settings.
    registered: bool,
    armed: bool,
}

/// What this process changed in each given router namespace: how many routed networks use it,
/// and the values to put back (in order) when the last goes.
static ROUTERS: std::sync::Mutex<Vec<((u64, u64), RouterState)>> =
    std::sync::Mutex::new(Vec::new());

#[derive(Debug, Default)]
struct RouterState {
    users: usize,
    /// IP versions switched on already.
    ipv4: bool,
    ipv6: bool,
    /// (sysctl key, value before), restored in this order.
    restore: Vec<(String, String)>,
}

fn routers() -> std::sync::MutexGuard<'static, Vec<((u64, u64), RouterState)>> {
    ROUTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Forwarding {
    const IPV4: &'static str = "net.ipv4.ip_forward";
    const IPV6: &'static str = "net.ipv6.conf.all.forwarding";
    /// For interfaces made from now on: see the module docs.
    const IPV6_DAD: &'static str = "net.ipv6.conf.default.accept_dad";

    /// Sets forwarding on for the IP versions asked (and, for IPv6, link-local addresses
    /// without duplicate-address detection); with `record` (a given router), remembers what it
    /// changed, to put it back.
    async fn enable(&mut self, ipv4: bool, ipv6: bool, record: bool) -> Result<()> {
        let id = self.router.inner().id();
        let (ipv4, ipv6) = if record {
            let mut all = routers();
            let state = match all.iter_mut().find(|(i, _)| *i == id) {
                Some((_, state)) => state,
                None => {
                    all.push((id, RouterState::default()));
                    &mut all.last_mut().expect("just pushed").1
                }
            };
            state.users += 1;
            self.registered = true;
            let todo = (ipv4 && !state.ipv4, ipv6 && !state.ipv6);
            state.ipv4 |= ipv4;
            state.ipv6 |= ipv6;
            todo
        } else {
            (ipv4, ipv6)
        };
        for (family, on) in [("ipv4", ipv4), ("ipv6", ipv6)] {
            if !on {
                continue;
            }
            let (global, value) = if family == "ipv4" {
                (Self::IPV4, "1")
            } else {
                (Self::IPV6, "1")
            };
            if record {
                // Every interface's own value, put back after the global one.
                let interfaces = self.interface_values(family).await?;
                let before = self.router.sysctl(global).await?;
                self.record(global, before.trim());
                for (key, value) in interfaces {
                    self.record(&key, &value);
                }
            }
            self.router.set_sysctl(global, value).await?;
            if family == "ipv6" {
                let before = self.router.sysctl(Self::IPV6_DAD).await?;
                if record {
                    self.record(Self::IPV6_DAD, before.trim());
                }
                // Best effort: without it the first forwarded IPv6 packets wait for
                // duplicate-address detection (a second or two), nothing worse.
                if let Err(e) = self.router.set_sysctl(Self::IPV6_DAD, "0").await {
                    trace::swallowed!(&self.router.label(), &e);
                }
            }
        }
        Ok(())
    }

    /// `(key, value)` of every existing interface's `forwarding` setting for `family`.
    async fn interface_values(&self, family: &'static str) -> Result<Vec<(String, String)>> {
        self.router
            .run(move || {
                let dir = format!("/proc/sys/net/{family}/conf");
                let mut found = Vec::new();
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name == "all" || name == "default" {
                        continue;
                    }
                    if let Ok(value) = std::fs::read_to_string(entry.path().join("forwarding")) {
                        let key =
                            format!("net.{family}.conf.{}.forwarding", name.replace('.', "/"));
                        found.push((key, value.trim().to_owned()));
                    }
                }
                found
            })
            .await
    }

    fn record(&self, key: &str, value: &str) {
        let id = self.router.inner().id();
        if let Some((_, state)) = routers().iter_mut().find(|(i, _)| *i == id) {
            state.restore.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Gives up this network's use of the router's settings; the last user gets the values to
    /// put back.
    fn release(&mut self) -> Vec<(String, String)> {
        if !std::mem::take(&mut self.registered) {
            return Vec::new();
        }
        let id = self.router.inner().id();
        let mut all = routers();
        let Some(at) = all.iter().position(|(i, _)| *i == id) else {
            return Vec::new();
        };
        all[at].1.users -= 1;
        if all[at].1.users > 0 {
            return Vec::new();
        }
        all.remove(at).1.restore
    }

    async fn restore(&mut self) -> Result<()> {
        let mut errors = Vec::new();
        for (key, before) in self.release() {
            match self.router.set_sysctl(&key, &before).await {
                Ok(()) => {}
                // An interface that went with the network.
                Err(e) if e.is_not_found() => {}
                Err(e) => errors.push(e),
            }
        }
        Error::collect(format!("forwarding in {}", self.router.label()), errors)
    }

    fn restore_blocking(&mut self) {
        for (key, before) in self.release() {
            match self.router.set_sysctl_blocking(&key, &before) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => trace::swallowed!(&self.router.label(), &e),
            }
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if !self.armed {
            // Kept: the settings stay, and so does the count (the router stays in use).
            return;
        }
        if self.router.inner().is_doomed() {
            self.release();
        } else {
            self.restore_blocking();
        }
    }
}

/// A routed network, made by [`routed`]: the router namespace, its LANs and links. The guard
/// tears everything down (LANs and links as their own guards do), puts a given router's
/// forwarding settings back, and frees a router it created (see the
/// [guard contract](crate#guards)); it never deletes namespaces it did not create.
#[derive(Debug)]
pub struct RoutedNetwork {
    // Field order is drop order: subnets first, then the settings, then the router.
    lans: Vec<BridgedNetwork>,
    links: Vec<DirectLink>,
    forwarding: Forwarding,
    router: Namespace,
}

impl std::fmt::Display for RoutedNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "routed network ({}) via router {}",
            count(self.lans.len(), self.links.len()),
            self.router.label()
        )
    }
}

impl RoutedNetwork {
    /// The router namespace.
    pub fn router(&self) -> &Namespace {
        &self.router
    }

    /// Whether the network created its router (and frees it at teardown); `false` once the
    /// network is [kept](Self::keep).
    pub fn is_router_owned(&self) -> bool {
        self.router.is_owned()
    }

    /// The LANs, in the order given.
    pub fn lans(&self) -> &[BridgedNetwork] {
        &self.lans
    }

    /// The point-to-point links, in the order given; [`DirectLink::link`] is the router's end.
    pub fn links(&self) -> &[DirectLink] {
        &self.links
    }

    /// Tears down what was made after `error`, and returns `error`.
    async fn roll_back(self, error: Error) -> Error {
        if let Err(e) = self.delete_inner().await {
            trace::swallowed!(&"routed network", &e);
        }
        error
    }

    async fn delete_inner(mut self) -> Result<()> {
        let mut errors = Vec::new();
        for lan in std::mem::take(&mut self.lans) {
            if let Err(e) = lan.delete().await {
                errors.push(e);
            }
        }
        for link in std::mem::take(&mut self.links) {
            if let Err(e) = link.delete().await {
                errors.push(e);
            }
        }
        if let Err(e) = self.forwarding.restore().await {
            errors.push(e);
        }
        Error::collect(self.to_string(), errors)
    }

    /// Tears the network down now and reports errors (dropping does the same, silently).
    ///
    /// # Errors
    ///
    /// Those of [`BridgedNetwork::delete`], [`DirectLink::delete`] and
    /// [`Namespace::set_sysctl`], collected into one.
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn delete(self) -> Result<()> {
        self.delete_inner().await
    }

    /// The blocking form of [`delete`](Self::delete): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }

    /// Disarms the guard: everything stays after the guard is gone, including the forwarding
    /// settings (see [the guard contract](crate#guards)). A router this network created is an
    /// anonymous namespace, which lives only as long as something holds it (see
    /// [`Namespace::keep`]). Returns the same, now inert, guard.
    pub fn keep(mut self) -> Self {
        self.lans = std::mem::take(&mut self.lans)
            .into_iter()
            .map(BridgedNetwork::keep)
            .collect();
        self.links = std::mem::take(&mut self.links)
            .into_iter()
            .map(DirectLink::keep)
            .collect();
        self.forwarding.armed = false;
        let router = std::mem::replace(
            &mut self.router,
            Namespace::view(self.forwarding.router.inner().clone()),
        );
        self.router = router.keep();
        self
    }
}
