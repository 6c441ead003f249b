//! Pattern 1: two namespaces joined directly by a veth pair ([`connect`], [`DirectLink`]),
//! built from the [`VethPair`] and [`Route`] builders.

use std::{net::IpAddr, sync::Arc};

use ipnetwork::IpNetwork;

use crate::{
    error::{Error, Result},
    ip::{IntoIpNetwork, validate_host, validate_routable},
    link::{Link, veth::VethPair},
    netns::{Namespace, NsInner},
    route::Route,
    trace,
};

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
    /// Whether `a` gets its default route too (not on a router's side).
    route_in_a: bool,
    nodad: bool,
    mtu: Option<u32>,
}

/// Starts a direct link: namespaces `a` and `b` joined directly by a veth pair, like two
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
        route_in_a: true,
        nodad: true,
        mtu: None,
    }
}

impl DirectLinkBuilder {
    /// Names the interfaces in `a` and in `b` (default `veth0` and `veth1`).
    pub fn names(mut self, a: impl AsRef<str>, b: impl AsRef<str>) -> Self {
        self.names = (a.as_ref().to_owned(), b.as_ref().to_owned());
        self
    }

    /// Gives `a`'s end `a_net` and `b`'s end `b_net`: the same IP version, each inside the
    /// other's prefix. Call once for IPv4 and once for IPv6 for a dual-stack link.
    pub fn address(mut self, a_net: impl IntoIpNetwork, b_net: impl IntoIpNetwork) -> Self {
        self.addresses
            .push((a_net.into_ip_network(), b_net.into_ip_network()));
        self
    }

    /// Whether each side gets a default route via the other (default: yes).
    pub fn default_routes(mut self, on: bool) -> Self {
        self.default_routes = on;
        self
    }

    /// Only `b` gets a default route (via `a`): a router's link to a host.
    pub(crate) fn default_route_only_in_b(mut self) -> Self {
        self.default_routes = true;
        self.route_in_a = false;
        self
    }

    /// IPv6 addresses without duplicate-address detection, usable at once (default: yes).
    pub fn nodad(mut self, on: bool) -> Self {
        self.nodad = on;
        self
    }

    /// MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// The span of `create`: what is being created, and where.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "direct link",
            format!("direct link {:?} <-> {:?}", self.names.0, self.names.1),
            format!("{} <-> {}", self.a.label(), self.b.label()),
        )
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
    ///   [`RouteBuilder::create`](crate::RouteBuilder::create). Whatever was created is removed
    ///   again.
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<DirectLink> {
        let span = self.create_span();
        trace::timed(span, async move {
            let object = || {
                format!(
                    "direct link {:?} in {} <-> {:?} in {}",
                    self.names.0,
                    self.a.label(),
                    self.names.1,
                    self.b.label()
                )
            };
            let pairs = validate_pairs(self.addresses, &object)?;
            let (a_view, b_view) = (
                Namespace::view(self.a.clone()),
                Namespace::view(self.b.clone()),
            );
            let mut veth = VethPair::builder(self.names.0.clone(), self.names.1.clone())
                .namespace(&a_view)
                .peer_namespace(&b_view)
                .nodad(self.nodad);
            if let Some(mtu) = self.mtu {
                veth = veth.mtu(mtu);
            }
            if !self.route_in_a {
                veth = veth.router_end();
            }
            for (a_net, b_net) in &pairs {
                veth = veth.address(*a_net).peer_address(*b_net);
            }
            let veth = veth.create().await?;
            if self.default_routes {
                let a_routes = self.route_in_a.then_some(&a_view);
                if let Err(e) = add_default_routes(a_routes, &b_view, &pairs).await {
                    return Err(veth.roll_back(e).await);
                }
            }
            Ok(DirectLink {
                veth,
                addresses: pairs,
            })
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<DirectLink> {
        crate::netlink::block_on(self.create())
    }
}

/// Checks the address pairs of a direct link: each pair of one IP version, on one subnet,
/// different, host addresses; at most one pair per version; at least one pair.
pub(super) fn validate_pairs(
    given: Vec<(Result<IpNetwork>, Result<IpNetwork>)>,
    object: &dyn Fn() -> String,
) -> Result<Vec<(IpNetwork, IpNetwork)>> {
    let mut pairs: Vec<(IpNetwork, IpNetwork)> = Vec::new();
    for (a_net, b_net) in given {
        let (a_net, b_net) = (a_net?, b_net?);
        let wrong = if a_net.is_ipv4() != b_net.is_ipv4() {
            Some(format!("{a_net} and {b_net} are of different IP versions"))
        } else if !a_net.contains(b_net.ip()) || !b_net.contains(a_net.ip()) {
            Some(format!("{a_net} and {b_net} are not on the same subnet"))
        } else if a_net.ip() == b_net.ip() {
            Some(format!("both ends would have {}", a_net.ip()))
        } else if pairs.iter().any(|(p, _)| p.is_ipv4() == a_net.is_ipv4()) {
            Some("give at most one address pair per IP version".to_owned())
        } else {
            None
        };
        if let Some(reason) = wrong {
            return Err(Error::invalid(object(), reason));
        }
        for net in [&a_net, &b_net] {
            validate_host(net, object)?;
            validate_routable(net, object)?;
        }
        pairs.push((a_net, b_net));
    }
    if pairs.is_empty() {
        return Err(Error::invalid(
            object(),
            "give each end an address with `.address(a, b)`",
        ));
    }
    Ok(pairs)
}

/// Adds, on each side (on `b` only when `a` is `None`), a default route via the other side's
/// address, for every IP version.
/// The routes go with the veth pair: they get no guard of their own.
async fn add_default_routes(
    a: Option<&Namespace>,
    b: &Namespace,
    pairs: &[(IpNetwork, IpNetwork)],
) -> Result<()> {
    let routes = pairs.iter().flat_map(|(a_net, b_net)| {
        let in_a = a.map(|a| default_route(a, b_net.ip()));
        in_a.into_iter().chain([default_route(b, a_net.ip())])
    });
    let mut first_error = None;
    for result in futures::future::join_all(routes).await {
        match result {
            Ok(route) => {
                route.keep();
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn default_route(ns: &Namespace, via: IpAddr) -> impl Future<Output = Result<Route>> + '_ {
    let default = match via {
        IpAddr::V4(_) => IpNetwork::V4(Route::DEFAULT_V4),
        IpAddr::V6(_) => IpNetwork::V6(Route::DEFAULT_V6),
    };
    Route::builder(default).via(via).namespace(ns).create()
}

/// A direct link, made by [`connect`]: a veth pair between two namespaces with an
/// address on each end and default routes via the peer. The guard deletes the pair, which takes
/// its addresses and routes with it (see the [guard contract](crate#guards)); it never deletes
/// the namespaces.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(ns1: netns_kit::Namespace, ns2: netns_kit::Namespace) -> netns_kit::Result<()> {
/// let link = netns_kit::connect(&ns1, &ns2).address("10.0.0.1/30", "10.0.0.2/30").create().await?;
/// assert_eq!(link.link().name(), "veth0");
/// link.delete().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DirectLink {
    veth: VethPair,
    addresses: Vec<(IpNetwork, IpNetwork)>,
}

impl std::fmt::Display for DirectLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "direct link {} <-> {}", self.link(), self.peer())
    }
}

impl DirectLink {
    /// The end in the first namespace.
    pub fn link(&self) -> &Link {
        self.veth.link()
    }

    /// The end in the second namespace.
    pub fn peer(&self) -> &Link {
        self.veth.peer()
    }

    /// The address pairs, `(a, b)`, one per IP version.
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn delete(self) -> Result<()> {
        self.veth.delete().await
    }

    /// The blocking form of [`delete`](Self::delete): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }

    /// Disarms the guard: the link stays after the guard is gone (see
    /// [the guard contract](crate#guards)). Returns the same, now inert, guard.
    pub fn keep(self) -> Self {
        DirectLink {
            veth: self.veth.keep(),
            addresses: self.addresses,
        }
    }
}
