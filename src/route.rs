//! Routes: the [`Route`] guard, its family-typed builder, and listings.
//!
//! [`RouteBuilder`] is generic over the address type: a builder from [`Route::default_v4`] or
//! [`Route::v4`] only accepts an [`Ipv4Addr`] gateway, one from [`Route::default_v6`] or
//! [`Route::v6`] only an [`Ipv6Addr`], so mixing families does not compile:
//!
//! ```compile_fail
//! # use std::net::Ipv6Addr;
//! let r = netns_kit::Route::default_v4().via(Ipv6Addr::LOCALHOST); // IPv6 gateway, IPv4 route
//! ```
//!
//! When the family is only known at run time, [`Route::to`] takes any destination and
//! [`RouteBuilder::<IpAddr>::via`] any gateway; a mismatch is then an
//! [`Error::InvalidInput`] reported before anything is sent.

use std::{
    marker::PhantomData,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
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
};

/// A validated route, ready to become netlink messages.
#[derive(Debug, Clone)]
pub(crate) struct RouteSpec {
    pub(crate) dest: IpNetwork,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) oif: Option<u32>,
    pub(crate) metric: Option<u32>,
    pub(crate) table: u32,
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
        h.protocol = RouteProtocol::Static;
        h.kind = RouteType::Unicast;
        // Like `ip route`: a route with no gateway is link-scoped; deletion matches any scope.
        h.scope = if for_delete {
            RouteScope::NoWhere
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
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// `RTM_DELROUTE`.
    pub(crate) fn del_message(&self) -> RouteNetlinkMessage {
        RouteNetlinkMessage::DelRoute(self.message(true))
    }
}

/// Builds a [`Route`]; see [`Route::default_v4`], [`Route::v4`], [`Route::default_v6`],
/// [`Route::v6`] and [`Route::to`]. `A` is the gateway type: [`Ipv4Addr`], [`Ipv6Addr`], or
/// [`IpAddr`] when the family is only known at run time.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(ns: netns_kit::Namespace, eth0: netns_kit::Link) -> netns_kit::Result<()> {
/// use netns_kit::{Route, RouteBuilder};
/// use std::net::Ipv4Addr;
///
/// let builder: RouteBuilder<Ipv4Addr> = Route::v4("10.20.0.0/16".parse().unwrap()).dev(&eth0);
/// let route = builder.via(Ipv4Addr::new(10, 0, 0, 1)).metric(100).add(&ns).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `.add(&namespace).await`"]
pub struct RouteBuilder<A = IpAddr> {
    dest: Result<IpNetwork>,
    gateway: Option<IpAddr>,
    dev: Option<Link>,
    metric: Option<u32>,
    table: u32,
    _family: PhantomData<fn() -> A>,
}

const RT_TABLE_MAIN: u32 = 254;

impl<A> RouteBuilder<A> {
    fn new(dest: Result<IpNetwork>) -> Self {
        RouteBuilder {
            dest,
            gateway: None,
            dev: None,
            metric: None,
            table: RT_TABLE_MAIN,
            _family: PhantomData,
        }
    }

    /// Sends traffic out of `link` (`ip route add ... dev LINK`). Needed for IPv6 link-local
    /// gateways; enough on its own for an on-link prefix.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let eth0 = ns.link("eth0").await?;
    /// // 10.3.0.0/24 is on the wire of eth0: no gateway needed.
    /// let r = netns_kit::Route::v4("10.3.0.0/24".parse().unwrap()).dev(&eth0).add(&ns).await?;
    /// # Ok(()) }
    /// ```
    pub fn dev(mut self, link: &Link) -> Self {
        self.dev = Some(link.dup());
        self
    }

    /// The route's metric (`ip route add ... metric N`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::Ipv4Addr;
    /// // A backup default route, used only if the preferred one (lower metric) is gone.
    /// let backup = netns_kit::Route::default_v4()
    ///     .via(Ipv4Addr::new(10, 0, 1, 254))
    ///     .metric(200)
    ///     .add(&ns)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    /// The routing table (`ip route add ... table N`; default: main, 254).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::Ipv4Addr;
    /// let r = netns_kit::Route::default_v4()
    ///     .via(Ipv4Addr::new(10, 0, 0, 1))
    ///     .table(100)
    ///     .add(&ns)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    fn spec(self, ns: &Namespace) -> Result<RouteSpec> {
        let dest = self.dest?;
        let object = || {
            RouteSpec {
                dest,
                gateway: self.gateway,
                oif: None,
                metric: None,
                table: self.table,
            }
            .describe()
                + &format!(" in {}", ns.label())
        };
        if dest.ip() != dest.network() {
            return Err(Error::invalid(
                object(),
                format!(
                    "destination {dest} has host bits set; did you mean {}/{}?",
                    dest.network(),
                    dest.prefix()
                ),
            ));
        }
        if let Some(gw) = self.gateway {
            if gw.is_ipv4() != dest.is_ipv4() {
                return Err(Error::invalid(
                    object(),
                    format!("gateway {gw} and destination {dest} are of different IP families"),
                ));
            }
            if gw.is_unspecified() || gw.is_multicast() {
                return Err(Error::invalid(
                    object(),
                    format!("{gw} cannot be a gateway"),
                ));
            }
            if let IpAddr::V6(v6) = gw {
                if v6.segments()[0] & 0xffc0 == 0xfe80 && self.dev.is_none() {
                    return Err(Error::invalid(
                        object(),
                        format!(
                            "the link-local gateway {gw} needs an output device (`.dev(&link)`)"
                        ),
                    ));
                }
            }
        }
        if self.gateway.is_none() && self.dev.is_none() {
            return Err(Error::invalid(
                object(),
                "needs a gateway (`.via(...)`), an output device (`.dev(&link)`), or both",
            ));
        }
        if let Some(dev) = &self.dev {
            if !dev.is_in(ns) {
                return Err(Error::invalid(
                    object(),
                    format!("its device {} is in another namespace", dev.label()),
                ));
            }
        }
        if self.table == 0 {
            return Err(Error::invalid(object(), "table 0 is not a routing table"));
        }
        Ok(RouteSpec {
            dest,
            gateway: self.gateway,
            oif: self.dev.as_ref().map(Link::index),
            metric: self.metric,
            table: self.table,
        })
    }

    /// Adds the route to `ns`, like `ip route add`.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidInput`] before any request: families that differ, a destination with
    ///   host bits, no gateway and no device, a device in another namespace, a link-local IPv6
    ///   gateway without a device;
    /// * [`Error::AlreadyExists`] if the same route exists;
    /// * the kernel's refusal otherwise, e.g. `ENETUNREACH` if the gateway is not on any
    ///   connected network (the message quotes the kernel's explanation).
    ///
    /// # Cancel safety
    ///
    /// Once polled, the request is sent; if the future is then dropped the route may be added
    /// with no guard to remove it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::Ipv4Addr;
    /// let r = netns_kit::Route::default_v4().via(Ipv4Addr::new(10, 0, 0, 1)).add(&ns).await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip route add")]
    pub async fn add(self, ns: &Namespace) -> Result<Route> {
        let spec = self.spec(ns)?;
        let nl = ns.inner().nl().await?;
        let (msg, flags) = spec.add_message();
        nl.send(msg, flags)
            .ack()
            .await
            .map_err(|e| e.into_error("add", format!("{} in {}", spec.describe(), ns.label())))?;
        Ok(Route(Guard::new(RouteResource {
            ns: ns.inner().clone(),
            spec,
        })))
    }
}

impl RouteBuilder<Ipv4Addr> {
    /// Routes via gateway `gw` (`ip route add ... via GW`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::{IpAddr, Ipv4Addr};
    /// let gw = Ipv4Addr::new(10, 0, 0, 1);
    /// let r = netns_kit::Route::v4("10.50.0.0/16".parse().unwrap()).via(gw).add(&ns).await?;
    /// assert_eq!(r.gateway(), Some(IpAddr::V4(gw)));
    /// # Ok(()) }
    /// ```
    pub fn via(mut self, gw: Ipv4Addr) -> Self {
        self.gateway = Some(IpAddr::V4(gw));
        self
    }
}

impl RouteBuilder<Ipv6Addr> {
    /// Routes via gateway `gw` (`ip -6 route add ... via GW`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::Ipv6Addr;
    /// let gw: Ipv6Addr = "fd10::1".parse().unwrap();
    /// let r = netns_kit::Route::default_v6().via(gw).add(&ns).await?;
    /// # Ok(()) }
    /// ```
    pub fn via(mut self, gw: Ipv6Addr) -> Self {
        self.gateway = Some(IpAddr::V6(gw));
        self
    }
}

impl RouteBuilder<IpAddr> {
    /// Routes via gateway `gw`; its family must match the destination's, checked by
    /// [`add`](RouteBuilder::add).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::IpAddr;
    /// // Destination and gateway as read from a config file, family unknown until run time.
    /// let (dest, gw) = ("fd10:1::/64", "fd10::1".parse::<IpAddr>().unwrap());
    /// let r = netns_kit::Route::to(dest).via(gw).add(&ns).await?;
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
/// device or namespace is already gone counts as removed.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(ns: netns_kit::Namespace, eth0: netns_kit::Link) -> netns_kit::Result<()> {
/// use netns_kit::Route;
/// use std::net::Ipv6Addr;
///
/// let v4 = Route::v4("10.9.0.0/16".parse().unwrap()).dev(&eth0).add(&ns).await?;
/// let v6 = Route::default_v6().via("fd10:1::1".parse::<Ipv6Addr>().unwrap()).add(&ns).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Route(Guard<RouteResource>);

impl Route {
    /// An IPv4 default route (`ip route add default ...`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::Ipv4Addr;
    /// let r = netns_kit::Route::default_v4().via(Ipv4Addr::new(10, 88, 0, 1)).add(&ns).await?;
    /// assert_eq!(r.destination().to_string(), "0.0.0.0/0");
    /// # Ok(()) }
    /// ```
    pub fn default_v4() -> RouteBuilder<Ipv4Addr> {
        RouteBuilder::new(Ok(IpNetwork::V4(Ipv4Network::from(Ipv4Addr::UNSPECIFIED))))
            .with_prefix_zero()
    }

    /// An IPv6 default route (`ip -6 route add default ...`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::Ipv6Addr;
    /// let gw: Ipv6Addr = "fd10::1".parse().unwrap();
    /// let r = netns_kit::Route::default_v6().via(gw).add(&ns).await?;
    /// # Ok(()) }
    /// ```
    pub fn default_v6() -> RouteBuilder<Ipv6Addr> {
        RouteBuilder::new(Ok(IpNetwork::V6(Ipv6Network::from(Ipv6Addr::UNSPECIFIED))))
            .with_prefix_zero()
    }

    /// An IPv4 route to `dest` (`ip route add DEST ...`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::net::Ipv4Addr;
    /// let r = netns_kit::Route::v4("10.9.0.0/16".parse().unwrap())
    ///     .via(Ipv4Addr::new(10, 0, 0, 1))
    ///     .add(&ns)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn v4(dest: Ipv4Network) -> RouteBuilder<Ipv4Addr> {
        RouteBuilder::new(Ok(IpNetwork::V4(dest)))
    }

    /// An IPv6 route to `dest` (`ip -6 route add DEST ...`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace, eth0: netns_kit::Link) -> netns_kit::Result<()> {
    /// let r = netns_kit::Route::v6("fd10:9::/64".parse().unwrap())
    ///     .dev(&eth0)
    ///     .add(&ns)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn v6(dest: Ipv6Network) -> RouteBuilder<Ipv6Addr> {
        RouteBuilder::new(Ok(IpNetwork::V6(dest)))
    }

    /// A route to `dest` of either family, e.g. `"10.0.0.0/8"` or `"default"`-like `"::/0"`;
    /// the gateway's family is checked at [`add`](RouteBuilder::add).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace, eth0: netns_kit::Link) -> netns_kit::Result<()> {
    /// // One loop for both families.
    /// for dest in ["10.7.0.0/16", "fd10:7::/64"] {
    ///     netns_kit::Route::to(dest).dev(&eth0).add(&ns).await?.keep();
    /// }
    /// # Ok(()) }
    /// ```
    pub fn to(dest: impl IntoIpNetwork) -> RouteBuilder<IpAddr> {
        RouteBuilder::new(dest.into_ip_network())
    }

    /// The destination (`0.0.0.0/0` or `::/0` for a default route).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace, eth0: netns_kit::Link) -> netns_kit::Result<()> {
    /// let r = netns_kit::Route::v4("10.9.0.0/16".parse().unwrap()).dev(&eth0).add(&ns).await?;
    /// assert_eq!(r.destination().to_string(), "10.9.0.0/16");
    /// # Ok(()) }
    /// ```
    pub fn destination(&self) -> IpNetwork {
        self.0.get().spec.dest
    }

    /// The gateway, if any.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(r: netns_kit::Route) -> netns_kit::Result<()> {
    /// match r.gateway() {
    ///     Some(gw) => println!("{} via {gw}", r.destination()),
    ///     None => println!("{} on link", r.destination()),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn gateway(&self) -> Option<IpAddr> {
        self.0.get().spec.gateway
    }

    /// Removes the route now and reports errors.
    ///
    /// # Errors
    ///
    /// The kernel's refusal, e.g. [`Error::PermissionDenied`]; a route already gone is not an
    /// error.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the removal is sent and carried out even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(r: netns_kit::Route) -> netns_kit::Result<()> {
    /// r.delete().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip route del")]
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// Disarms the guard: the route stays.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(r: netns_kit::Route) {
    /// r.keep();
    /// # }
    /// ```
    pub fn keep(self) {
        self.0.keep();
    }
}

impl<A> RouteBuilder<A> {
    fn with_prefix_zero(mut self) -> Self {
        if let Ok(net) = &self.dest {
            self.dest = Ok(IpNetwork::new(net.ip(), 0).expect("prefix 0 is always valid"));
        }
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
    /// Lists the unicast routes of the main table, IPv4 and IPv6 (two pipelined dumps), like
    /// `ip route show; ip -6 route show`.
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
    pub async fn routes(&self) -> Result<Vec<RouteInfo>> {
        let nl = self.inner().nl().await?;
        // Both dumps are sent before either is awaited.
        let replies: Vec<_> = [AddressFamily::Inet, AddressFamily::Inet6]
            .into_iter()
            .map(|family| {
                let mut msg = RouteMessage::default();
                msg.header.address_family = family;
                nl.dump(RouteNetlinkMessage::GetRoute(msg))
            })
            .collect();
        let mut all = Vec::new();
        for reply in replies {
            let msgs = reply
                .messages()
                .await
                .map_err(|e| e.into_error("list the routes of", self.label()))?;
            all.extend(msgs.iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => RouteInfo::from_message(r),
                _ => None,
            }));
        }
        all.retain(|r| r.table == RT_TABLE_MAIN);
        Ok(all)
    }
}
