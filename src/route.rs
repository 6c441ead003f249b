//! Routes: the [`Route`] guard, its family-typed builder, and listings.
//!
//! [`RouteBuilder`] is generic over the gateway's address type, chosen by the destination given
//! to [`Route::builder`]: an [`Ipv4Network`] (or [`Route::DEFAULT_V4`]) only accepts an
//! [`Ipv4Addr`] gateway, an [`Ipv6Network`] (or [`Route::DEFAULT_V6`]) only an [`Ipv6Addr`], so
//! mixing families does not compile:
//!
//! ```compile_fail
//! # use std::net::Ipv6Addr;
//! use netns_kit::Route;
//! let r = Route::builder(Route::DEFAULT_V4).via(Ipv6Addr::LOCALHOST); // IPv6 gateway, IPv4 route
//! ```
//!
//! When the family is only known at run time (an [`IpNetwork`] or a string destination),
//! [`RouteBuilder::<IpAddr>::via`] takes any gateway; a mismatch is then an
//! [`Error::InvalidInput`] reported before anything is sent.

use std::{
    fmt,
    marker::PhantomData,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};

use crate::{
    error::{Error, Result},
    guard::{Guard, Resource},
    ip::IntoIpNetwork,
    link::Link,
    netns::{Namespace, NsInner},
    trace,
};

/// A validated route, ready to become netlink messages.
#[derive(Debug, Clone)]
pub(crate) struct RouteSpec {
    pub(crate) dest: IpNetwork,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) oif: Option<u32>,
    pub(crate) metric: Option<u32>,
    pub(crate) table: u32,
    /// The routing protocol (`proto`), part of what identifies the route for deletion.
    pub(crate) protocol: u8,
    /// The scope asked for (`scope`); none: link without a gateway, else universe.
    pub(crate) scope: Option<u8>,
    /// Whether an existing route to the same destination (and metric) makes `create` fail.
    pub(crate) exclusive: bool,
}

impl RouteSpec {
    /// A default route (main table) via `gateway`, of the gateway's IP version.
    pub(crate) fn default_via(gateway: IpAddr) -> RouteSpec {
        let any = match gateway {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        RouteSpec {
            dest: IpNetwork::new(any, 0).expect("prefix 0 is valid"),
            gateway: Some(gateway),
            oif: None,
            metric: None,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_STATIC,
            scope: None,
            exclusive: true,
        }
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = if self.dest.prefix() == 0 {
            format!(
                "default route ({})",
                if self.dest.is_ipv4() { "IPv4" } else { "IPv6" }
            )
        } else {
            format!("route to {}", self.dest)
        };
        if let Some(gw) = self.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = self.oif {
            s.push_str(&format!(" dev #{oif}"));
        }
        s
    }

    fn message(&self, for_delete: bool) -> RouteMessage {
        let mut msg = RouteMessage::default();
        let h = &mut msg.header;
        h.address_family = if self.dest.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        h.destination_prefix_length = self.dest.prefix();
        h.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        h.protocol = RouteProtocol::from(self.protocol);
        h.kind = RouteType::Unicast;
        // Like `ip route`: a route with no gateway is link-scoped; deletion matches any scope.
        h.scope = if for_delete {
            RouteScope::NoWhere
        } else if let Some(scope) = self.scope {
            RouteScope::from(scope)
        } else if self.gateway.is_none() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        if self.dest.prefix() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    self.dest.network(),
                )));
        }
        if let Some(gw) = self.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = self.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(metric) = self.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        if self.table > 255 {
            msg.attributes.push(RouteAttribute::Table(self.table));
        }
        msg
    }

    /// `RTM_NEWROUTE` and its flags.
    pub(crate) fn add_message(&self) -> (RouteNetlinkMessage, u16) {
        (
            RouteNetlinkMessage::NewRoute(self.message(false)),
            if self.exclusive {
                NLM_F_CREATE | NLM_F_EXCL
            } else {
                NLM_F_CREATE
            },
        )
    }

    /// `RTM_DELROUTE`.
    pub(crate) fn del_message(&self) -> RouteNetlinkMessage {
        RouteNetlinkMessage::DelRoute(self.message(true))
    }
}

/// What [`Route::builder`] accepts as a destination, and the gateway type it implies: an
/// [`Ipv4Network`] takes an [`Ipv4Addr`] gateway, an [`Ipv6Network`] an [`Ipv6Addr`], an
/// [`IpNetwork`] or a string (`"10.0.0.0/8"`, `"fd10::/16"`) either, checked when the route is
/// created.
pub trait RouteDestination {
    /// The gateway address type.
    type Gateway;

    /// The destination, or why it is not one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a string that is not an address with a prefix length.
    fn into_destination(self) -> Result<IpNetwork>;
}

impl RouteDestination for Ipv4Network {
    type Gateway = Ipv4Addr;
    fn into_destination(self) -> Result<IpNetwork> {
        Ok(IpNetwork::V4(self))
    }
}

impl RouteDestination for Ipv6Network {
    type Gateway = Ipv6Addr;
    fn into_destination(self) -> Result<IpNetwork> {
        Ok(IpNetwork::V6(self))
    }
}

impl RouteDestination for IpNetwork {
    type Gateway = IpAddr;
    fn into_destination(self) -> Result<IpNetwork> {
        Ok(self)
    }
}

impl RouteDestination for &str {
    type Gateway = IpAddr;
    fn into_destination(self) -> Result<IpNetwork> {
        self.into_ip_network()
    }
}

impl RouteDestination for String {
    type Gateway = IpAddr;
    fn into_destination(self) -> Result<IpNetwork> {
        self.into_ip_network()
    }
}

/// Builds a [`Route`]; see [`Route::builder`]. `A` is the gateway type: [`Ipv4Addr`],
/// [`Ipv6Addr`], or [`IpAddr`] when the family is only known at run time.
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct RouteBuilder<A = IpAddr> {
    dest: Result<IpNetwork>,
    gateway: Option<IpAddr>,
    dev: Option<Link>,
    ns: Option<Arc<NsInner>>,
    metric: Option<u32>,
    table: u32,
    protocol: u8,
    scope: Option<u8>,
    exclusive: bool,
    _family: PhantomData<fn() -> A>,
}

const RT_TABLE_MAIN: u32 = 254;
/// `proto static`: what this crate marks its routes with unless told otherwise.
const RTPROT_STATIC: u8 = 4;

impl<A> RouteBuilder<A> {
    /// The namespace to add the route to (default: the output device's, else the caller's
    /// current namespace).
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.ns = Some(ns.inner().clone());
        self
    }

    /// Sends traffic out of `link` (`ip route add ... dev LINK`). Needed for IPv6 link-local
    /// gateways; enough on its own for an on-link prefix.
    pub fn dev(mut self, link: &Link) -> Self {
        self.dev = Some(link.dup());
        self
    }

    /// The route's metric (`ip route add ... metric N`): among routes to the same
    /// destination, the lowest metric wins, so a higher one makes a backup route.
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    /// The routing table (`ip route add ... table N`; default: main, 254).
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// The routing protocol the route is marked with (`ip route add ... proto N`; default: 4,
    /// `static`). Plain `ip route add` uses 3 (`boot`); daemons use their own numbers, listed in
    /// `/etc/iproute2/rt_protos`. The kernel only records it (`ip route show proto N` filters
    /// by it); 0 and 2 (`kernel`) are refused by [`create`](RouteBuilder::create).
    pub fn proto(mut self, proto: u8) -> Self {
        self.protocol = proto;
        self
    }

    /// The route's scope (`ip route add ... scope N`): 0 `global` (universe), 253 `link`,
    /// 254 `host`. Default: `link` for a route without a gateway, `global` with one, as `ip`
    /// chooses.
    pub fn scope(mut self, scope: u8) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Whether [`create`](RouteBuilder::create) fails when a route to the same destination
    /// with the same metric exists (default: yes, as `ip route add`). With `false` the kernel
    /// adds this one in front of it, as `ip route prepend` (`NLM_F_CREATE` without
    /// `NLM_F_EXCL`); the guard deletes this one.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    fn spec(self, ns: &NsInner) -> Result<RouteSpec> {
        let dest = self.dest?;
        let object = || {
            RouteSpec {
                dest,
                gateway: self.gateway,
                oif: None,
                metric: None,
                table: self.table,
                protocol: self.protocol,
                scope: self.scope,
                exclusive: self.exclusive,
            }
            .describe()
                + &format!(" in {}", ns.label())
        };
        let wrong = check_route(dest, self.gateway, self.dev.as_ref(), self.table, ns);
        if let Some(reason) = wrong {
            return Err(Error::invalid(object(), reason));
        }
        if matches!(self.protocol, 0 | 2) {
            return Err(Error::invalid(
                object(),
                format!(
                    "proto {} is reserved (0: unspecified, 2: the kernel's own routes)",
                    self.protocol
                ),
            ));
        }
        Ok(RouteSpec {
            dest,
            gateway: self.gateway,
            oif: self.dev.as_ref().map(Link::index),
            metric: self.metric,
            table: self.table,
            protocol: self.protocol,
            scope: self.scope,
            exclusive: self.exclusive,
        })
    }

    /// The span of `create`: what is being created, and where.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "route",
            self.dest
                .as_ref()
                .map_or_else(|_| "a route".to_owned(), |d| format!("route to {d}")),
            self.ns
                .as_ref()
                .or(self.dev.as_ref().map(|d| d.ns()))
                .map_or_else(
                    || "the current namespace".to_owned(),
                    |ns| ns.label().to_owned()
                ),
        )
    }

    /// Adds the route, like `ip route add`.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidInput`] before any request: families that differ, a destination
    ///   with host bits, no gateway and no device, a device in another namespace, a
    ///   link-local IPv6 gateway without a device;
    /// * [`Error::AlreadyExists`] if the same route exists;
    /// * the kernel's refusal otherwise, e.g. `ENETUNREACH` if the gateway is not on any
    ///   connected network (the message quotes the kernel's explanation).
    ///
    /// # Cancel safety
    ///
    /// Once polled, the request is sent; if the future is then dropped the route may be
    /// added with no guard to remove it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use netns_kit::Route;
    /// use std::net::Ipv4Addr;
    ///
    /// let default = Route::builder(Route::DEFAULT_V4)
    ///     .via(Ipv4Addr::new(10, 0, 0, 1))
    ///     .namespace(&ns)
    ///     .create()
    ///     .await?;
    /// // A backup route, used only if the preferred one (lower metric) is gone.
    /// let backup = Route::builder(Route::DEFAULT_V4)
    ///     .via(Ipv4Addr::new(10, 0, 1, 254))
    ///     .metric(200)
    ///     .namespace(&ns)
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip route add")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<Route> {
        let span = self.create_span();
        trace::timed(span, async move {
            let ns = match (&self.ns, &self.dev) {
                (Some(ns), _) => ns.clone(),
                (None, Some(dev)) => dev.ns().clone(),
                (None, None) => crate::netns::current_inner()?,
            };
            let spec = self.spec(&ns)?;
            let nl = ns.nl().await?;
            let (msg, flags) = spec.add_message();
            nl.send(msg, flags).ack().await.map_err(|e| {
                e.into_error("add", format!("{} in {}", spec.describe(), ns.label()))
            })?;
            Ok(Route(Guard::new(RouteResource { ns, spec })))
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<Route> {
        crate::netlink::block_on(self.create())
    }
}

/// Why a route cannot be added, if it cannot.
fn check_route(
    dest: IpNetwork,
    gateway: Option<IpAddr>,
    dev: Option<&Link>,
    table: u32,
    ns: &NsInner,
) -> Option<String> {
    if dest.ip() != dest.network() {
        return Some(format!(
            "destination {dest} has host bits set; did you mean {}/{}?",
            dest.network(),
            dest.prefix()
        ));
    }
    if let Some(gw) = gateway {
        if gw.is_ipv4() != dest.is_ipv4() {
            return Some(format!(
                "gateway {gw} and destination {dest} are of different IP families"
            ));
        }
        if gw.is_unspecified() || gw.is_multicast() {
            return Some(format!("{gw} cannot be a gateway"));
        }
        if let IpAddr::V6(v6) = gw {
            if v6.segments()[0] & 0xffc0 == 0xfe80 && dev.is_none() {
                return Some(format!(
                    "the link-local gateway {gw} needs an output device (`.dev(&link)`)"
                ));
            }
        }
    }
    if gateway.is_none() && dev.is_none() {
        return Some(
            "needs a gateway (`.via(...)`), an output device (`.dev(&link)`), or both".to_owned(),
        );
    }
    if let Some(dev) = dev {
        if dev.ns().id() != ns.id() {
            return Some(format!("its device {dev} is in another namespace"));
        }
    }
    if table == 0 {
        return Some("table 0 is not a routing table".to_owned());
    }
    None
}

impl RouteBuilder<Ipv4Addr> {
    /// Routes via gateway `gw` (`ip route add ... via GW`).
    pub fn via(mut self, gw: Ipv4Addr) -> Self {
        self.gateway = Some(IpAddr::V4(gw));
        self
    }
}

impl RouteBuilder<Ipv6Addr> {
    /// Routes via gateway `gw` (`ip -6 route add ... via GW`).
    pub fn via(mut self, gw: Ipv6Addr) -> Self {
        self.gateway = Some(IpAddr::V6(gw));
        self
    }
}

impl RouteBuilder<IpAddr> {
    /// Routes via gateway `gw`; its family must match the destination's, checked by
    /// [`create`](RouteBuilder::create).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::IpAddr;
    /// // Destination and gateway as read from a config file, family unknown until run time.
    /// let (dest, gw) = ("fd10:1::/64", "fd10::1".parse::<IpAddr>().unwrap());
    /// let r = netns_kit::Route::builder(dest).via(gw).namespace(&ns).create().await?;
    /// # Ok(()) }
    /// ```
    pub fn via(mut self, gw: IpAddr) -> Self {
        self.gateway = Some(gw);
        self
    }
}

#[derive(Debug)]
struct RouteResource {
    ns: std::sync::Arc<NsInner>,
    spec: RouteSpec,
}

impl Resource for RouteResource {
    const KIND: &'static str = "route";

    fn netns(&self) -> String {
        self.ns.label().to_owned()
    }

    fn describe(&self) -> String {
        format!("{} in {}", self.spec.describe(), self.ns.label())
    }

    async fn remove(&self) -> Result<()> {
        let nl = self.ns.nl().await?;
        match nl.send(self.spec.del_message(), 0).ack().await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_error("remove", self.describe())),
        }
    }

    fn remove_blocking(&self) -> Result<()> {
        if self.ns.is_doomed() {
            return Ok(());
        }
        self.ns
            .blocking_one(self.spec.del_message(), "remove", || self.describe())
    }
}

/// A route; the guard removes it (see the [guard contract](crate#guards)). A route whose
/// device or namespace is already gone counts as removed. `Display` names it, e.g.
/// `default route (IPv4) via 10.0.0.1 in namespace "ns1"`.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(ns: netns_kit::Namespace, eth0: netns_kit::Link) -> netns_kit::Result<()> {
/// use netns_kit::Route;
/// use std::net::Ipv6Addr;
///
/// let v4 = Route::builder("10.9.0.0/16").dev(&eth0).create().await?;
/// let v6 = Route::builder(Route::DEFAULT_V6)
///     .via("fd10:1::1".parse::<Ipv6Addr>().unwrap())
///     .namespace(&ns)
///     .create()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Route(Guard<RouteResource>);

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.get().describe())
    }
}

impl Route {
    /// The IPv4 default destination, `0.0.0.0/0` (`ip route add default ...`).
    pub const DEFAULT_V4: Ipv4Network = match Ipv4Network::new_checked(Ipv4Addr::UNSPECIFIED, 0) {
        Some(net) => net,
        None => unreachable!(),
    };

    /// The IPv6 default destination, `::/0` (`ip -6 route add default ...`).
    pub const DEFAULT_V6: Ipv6Network = match Ipv6Network::new_checked(Ipv6Addr::UNSPECIFIED, 0) {
        Some(net) => net,
        None => unreachable!(),
    };

    /// Starts building a route to `dest`: an [`Ipv4Network`], an [`Ipv6Network`] (these fix
    /// the gateway's type), [`Route::DEFAULT_V4`]/[`Route::DEFAULT_V6`], or an [`IpNetwork`] or
    /// string whose family is checked against the gateway's when the route is created. See
    /// [`RouteDestination`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use netns_kit::Route;
    /// use std::net::Ipv4Addr;
    ///
    /// let r = Route::builder("10.50.0.0/16".parse::<ipnetwork::Ipv4Network>().unwrap())
    ///     .via(Ipv4Addr::new(10, 0, 0, 1))
    ///     .namespace(&ns)
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder<D: RouteDestination>(dest: D) -> RouteBuilder<D::Gateway> {
        RouteBuilder {
            dest: dest.into_destination(),
            gateway: None,
            dev: None,
            ns: None,
            metric: None,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_STATIC,
            scope: None,
            exclusive: true,
            _family: PhantomData,
        }
    }

    /// The destination (`0.0.0.0/0` or `::/0` for a default route).
    pub fn destination(&self) -> IpNetwork {
        self.0.get().spec.dest
    }

    /// The gateway, if any.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.0.get().spec.gateway
    }

    /// Removes the route now and reports errors. After [`keep`](Self::keep) it removes
    /// nothing.
    ///
    /// # Errors
    ///
    /// The kernel's refusal, e.g. [`Error::PermissionDenied`]; a route already gone is not
    /// an error.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the removal is sent and carried out even if the future is dropped.
    #[doc(alias = "ip route del")]
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

    /// Disarms the guard: the route stays after the guard is gone (see
    /// [the guard contract](crate#guards)). Returns the same, now inert, guard.
    pub fn keep(mut self) -> Self {
        self.0.disarm();
        self
    }
}

/// One route, as `ip route show` reports it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
/// for r in ns.routes().await? {
///     println!("{} via {:?} dev #{:?} metric {:?}", r.destination, r.gateway, r.oif, r.metric);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteInfo {
    /// Destination; `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpNetwork,
    /// Gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface ifindex, if any.
    pub oif: Option<u32>,
    /// Metric, if set.
    pub metric: Option<u32>,
    /// Routing table.
    pub table: u32,
}

impl RouteInfo {
    /// Whether this is a default route.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let default = ns.routes().await?.into_iter().find(|r| r.is_default());
    /// if let Some(gw) = default.and_then(|r| r.gateway) {
    ///     println!("default gateway: {gw}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_default(&self) -> bool {
        self.destination.prefix() == 0
    }

    fn from_message(msg: &RouteMessage) -> Option<RouteInfo> {
        let v4 = match msg.header.address_family {
            AddressFamily::Inet => true,
            AddressFamily::Inet6 => false,
            _ => return None,
        };
        if msg.header.kind != RouteType::Unicast {
            return None;
        }
        let mut dest: Option<IpAddr> = None;
        let mut info = RouteInfo {
            destination: IpNetwork::V4(Ipv4Network::from(Ipv4Addr::UNSPECIFIED)),
            gateway: None,
            oif: None,
            metric: None,
            table: u32::from(msg.header.table),
        };
        let ip = |a: &RouteAddress| match a {
            RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
            RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
            _ => None,
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dest = ip(a),
                RouteAttribute::Gateway(a) => info.gateway = ip(a),
                RouteAttribute::Oif(i) => info.oif = Some(*i),
                RouteAttribute::Priority(p) => info.metric = Some(*p),
                RouteAttribute::Table(t) => info.table = *t,
                _ => {}
            }
        }
        let dest = dest.unwrap_or(if v4 {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        info.destination = IpNetwork::new(dest, msg.header.destination_prefix_length).ok()?;
        Some(info)
    }
}

impl Namespace {
    /// Lists the unicast routes of the main table, IPv4 and IPv6 (one dump of both), like
    /// `ip route show; ip -6 route show`.
    ///
    /// Taken while other processes change IPv6 routes in the namespace, a listing of many may
    /// miss or repeat one that was there throughout, and the kernel does not say so (unlike for
    /// addresses): measured with 1,500 IPv6 routes while another process added and removed
    /// others, 130 of 272 listings. IPv4 listings were whole.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the listing fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let has_default = ns.routes().await?.iter().any(|r| r.is_default());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip route show")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn routes(&self) -> Result<Vec<RouteInfo>> {
        let nl = self.inner().nl().await?;
        // One dump of every family (`AF_UNSPEC`): a socket runs one dump at a time, and a
        // second dump sent before the first is read would be refused (`EBUSY`).
        let msgs = nl
            .dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))
            .messages()
            .await
            .map_err(|e| e.into_error("list the routes of", self.to_string()))?;
        let mut all: Vec<RouteInfo> = msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => RouteInfo::from_message(r),
                _ => None,
            })
            .collect();
        all.retain(|r| r.table == RT_TABLE_MAIN);
        Ok(all)
    }

    /// The blocking form of [`routes`](Self::routes): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn routes_blocking(&self) -> Result<Vec<RouteInfo>> {
        crate::netlink::block_on(self.routes())
    }
}
