//! Building a bridged network: [`bridged`], [`BridgedNetworkBuilder`], and the checks made
//! before anything is created.

use super::{BridgedNetwork, NetworkResource, check_port_count};
use crate::topology::member::{self, Member, MemberSpec, NetworkContext, Planned, Taken};
use crate::{
    error::{Error, Result},
    firewall::ForwardRules,
    guard::{self, Guard, Resource},
    ip::{IntoIpNetwork, validate_host, validate_routable},
    link::{Link, bridge::Bridge},
    name::IfName,
    netlink::msg::get_link,
    netns::{Namespace, NsInner},
    owner, trace,
};
use futures::StreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::RouteNetlinkMessage;
use std::sync::Arc;

/// How many members are set up at once: enough to overlap namespace creation (on the worker
/// threads) with netlink requests, few enough to bound open sockets.
const MEMBER_CONCURRENCY: usize = 8;

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
    pub(crate) host: Option<Arc<NsInner>>,
    bridge_name: Option<String>,
    pub(crate) existing: Option<Link>,
    pub(crate) gateways: Vec<Result<IpNetwork>>,
    link_name: String,
    members: Vec<MemberSpec>,
    accept_forward: bool,
    isolate: bool,
    filter_router_messages: bool,
    nodad: bool,
    mtu: Option<u32>,
    link_local_ipv6: Option<bool>,
    /// A VXLAN port stretching the network to other machines: (VNI, local, remotes).
    vxlan: Option<(u32, std::net::IpAddr, Vec<std::net::IpAddr>)>,
}

/// Starts a bridged network: a bridge holding the gateway address(es) in a host namespace,
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
        existing: None,
        gateways: Vec::new(),
        link_name: "eth0".into(),
        members: Vec::new(),
        accept_forward: false,
        isolate: false,
        filter_router_messages: true,
        nodad: true,
        mtu: None,
        link_local_ipv6: None,
        vxlan: None,
    }
}

impl BridgedNetworkBuilder {
    /// The namespace holding the bridge (default: the caller's current namespace).
    pub fn host(mut self, ns: &Namespace) -> Self {
        self.host = Some(ns.inner().clone());
        self
    }

    /// The bridge's name (default: a unique generated name such as `nkbr0ab1c000001`).
    pub fn bridge_name(mut self, name: impl AsRef<str>) -> Self {
        self.bridge_name = Some(name.as_ref().to_owned());
        self
    }

    /// Attaches the members to `bridge`, which already exists (opened with [`Bridge::open`], or
    /// made and kept by this program), instead of creating a bridge. The network's namespace is
    /// the bridge's. On teardown the bridge, its addresses, and gateway addresses that were
    /// already on it stay; members and its FORWARD rules go, and the gateway addresses networks
    /// of this crate added go with the last of them to leave the bridge; several networks, in
    /// one process or several, may share one bridge (see
    /// [sharing a bridge](BridgedNetwork#sharing-an-existing-bridge)). Joining sets the bridge's
    /// MAC to the one it has, so it no longer changes as ports come and go.
    /// If the bridge is down, it is set up (and left up). Members' MTU defaults to the bridge's;
    /// [`mtu`](Self::mtu) sets only theirs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Bridge, MemberSpec, Namespace, bridged};
    ///
    /// let host = Namespace::current()?;
    /// let cni0 = Bridge::open_blocking(&host, "cni0")?;
    /// let container = Namespace::open("ctr1")?;
    /// let net = bridged()
    ///     .existing_bridge(&cni0)
    ///     .gateway("10.88.0.1/16")
    ///     .member(MemberSpec::in_namespace(&container).address("10.88.0.5/16"))
    ///     .create_blocking()?
    ///     .keep();
    /// # Ok(()) }
    /// ```
    pub fn existing_bridge(mut self, bridge: &Bridge) -> Self {
        self.existing = Some(bridge.link().clone());
        self
    }

    /// A gateway address, put on the bridge; its prefix is the network's subnet for that IP
    /// version. Call once for IPv4 and/or once for IPv6.
    pub fn gateway(mut self, net: impl IntoIpNetwork) -> Self {
        self.gateways.push(net.into_ip_network());
        self
    }

    /// The default name of each member's interface (default `eth0`).
    pub fn link_name(mut self, name: impl AsRef<str>) -> Self {
        self.link_name = name.as_ref().to_owned();
        self
    }

    /// Adds a member.
    pub fn member(mut self, member: MemberSpec) -> Self {
        self.members.push(member);
        self
    }

    /// Adds several members.
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
    /// assert_eq!(net.accept_forward_enabled(), fix);
    /// # Ok(()) }
    /// ```
    pub fn accept_forward(mut self, on: bool) -> Self {
        self.accept_forward = on;
        self
    }

    /// Keeps this network from reaching, and from being reached by, every other isolated
    /// network on the host namespace (netavark's `isolate`), both ways and whatever else the
    /// firewall accepts; traffic to the uplink and to networks that are not isolated passes.
    /// Done with two `iptables` rules per IP family in the `mangle` table, carrying the
    /// network's mark and removed with it: what arrives on the bridge gets the packet mark bit
    /// `0x2000000`, and what would be forwarded to the bridge from elsewhere with that bit is
    /// dropped (before the `filter` table's accept rules are consulted). Needs `iptables` (and
    /// `ip6tables` with an IPv6 gateway). The mark bit may clash with another tool that uses it
    /// (Calico's default mark mask includes it). Rules left by a killed process are not
    /// removed by [`reap`](crate::reap).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(host: &netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged};
    /// let a = bridged().host(host).gateway("10.0.31.1/24").isolate(true)
    ///     .member(MemberSpec::new().address("10.0.31.2/24")).create().await?;
    /// let b = bridged().host(host).gateway("10.0.32.1/24").isolate(true)
    ///     .member(MemberSpec::new().address("10.0.32.2/24")).create().await?;
    /// // 10.0.31.2 and 10.0.32.2 cannot reach each other (with forwarding on in `host`).
    /// # Ok(()) }
    /// ```
    pub fn isolate(mut self, on: bool) -> Self {
        self.isolate = on;
        self
    }

    /// Whether members' MLD reports and router solicitations are kept from the other members
    /// (default: yes). Only routers, multicast queriers and snooping switches listen to them;
    /// the gateway (the bridge) still gets them. A bridge floods them to every port, so
    /// without this filter N members with IPv6 cost on the order of N² deliveries at start-up
    /// (measured: 500 dual-stack members 2.1–2.6× an IPv4-only network's setup, 1.4–1.6×
    /// with it; see `benches/README.md`). Turn it off for members that act as multicast routers or
    /// queriers.
    ///
    /// The filter is one nf_tables table in the host namespace (family `bridge`, named
    /// `netns-kit-rm-` and the network's link group in hex) that drops ICMPv6 types 131, 132,
    /// 133 and 143 forwarded from one member's port to another's (any other port on the bridge
    /// still gets them). It is made only on a bridge the network makes (never on an
    /// [existing](Self::existing_bridge) one: a runtime's bridge, with one network per
    /// container, would pass every frame through one chain per network), not with a
    /// [VXLAN](Self::vxlan) port (routers may be on the other side), and only once a member
    /// has IPv6 (a dual-stack network, link-local addresses kept; also a member added later);
    /// it goes with the network (and with [`keep`](BridgedNetwork::keep), whose ports leave
    /// the group it matches), and is removed by [`reap`](crate::reap) after a SIGKILL when the
    /// reaper runs in the initial PID namespace. Where nf_tables refuses (no `CAP_NET_ADMIN`,
    /// a kernel without it) the network is made without it.
    ///
    /// With it, a member's link-local address also skips duplicate-address detection
    /// (`accept_dad` 0 on the member's interface, as the CNI reference bridge plugin does by
    /// default, and as [`nodad`](Self::nodad) addresses do), so that the probes do not fall
    /// into the setup either.
    pub fn filter_router_messages(mut self, on: bool) -> Self {
        self.filter_router_messages = on;
        self
    }

    /// IPv6 addresses without duplicate-address detection, usable at once (default: yes).
    pub fn nodad(mut self, on: bool) -> Self {
        self.nodad = on;
        self
    }

    /// MTU of the bridge and every veth (default 1500; on an
    /// [existing bridge](Self::existing_bridge), the bridge's, which is left as it is).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Stretches the network across machines: a VXLAN port on the bridge (VNI `vni`, UDP port
    /// 4789, datagrams from the underlay address `local`) sends what members send to the same
    /// network on `remotes` — the other machines' underlay addresses, each running the same
    /// network with the same VNI and its own members (addresses on one subnet, none twice).
    /// Without an explicit [`mtu`](Self::mtu), the bridge and members get 1450: an underlay
    /// MTU of 1500 less VXLAN's 50 bytes of headers (1430 with an IPv6 `local`, whose header is
    /// 20 bytes longer; give `mtu` for an underlay of another MTU). The
    /// port is removed with the network. See [`Vxlan`](crate::Vxlan) for the details.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(host_a: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged};
    /// // On machine A (192.168.50.1), its half of network 10.42.0.0/24; machine B runs the
    /// // same with local 192.168.50.2, remote 192.168.50.1, its own gateway address (say
    /// // 10.42.0.2/24: every bridge needs one, and no address may be used twice) and members
    /// // .11 and up.
    /// let net = bridged()
    ///     .host(&host_a)
    ///     .gateway("10.42.0.1/24")
    ///     .vxlan(42, "192.168.50.1".parse().unwrap(), ["192.168.50.2".parse().unwrap()])
    ///     .member(MemberSpec::new().address("10.42.0.2/24"))
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn vxlan(
        mut self,
        vni: u32,
        local: std::net::IpAddr,
        remotes: impl IntoIterator<Item = std::net::IpAddr>,
    ) -> Self {
        self.vxlan = Some((vni, local, remotes.into_iter().collect()));
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
    /// The bridge's own ports (the host-side veth ends) never get an IPv6 address
    /// (`addrgenmode none`), for the same reason.
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

    /// The span of `create`: what is being created, and where.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "bridged network",
            format!(
                "bridged network {:?}",
                self.existing
                    .as_ref()
                    .map(Link::name)
                    .or(self.bridge_name.as_deref())
                    .unwrap_or("(generated name)")
            ),
            self.host.as_ref().map_or_else(
                || "the current namespace".to_owned(),
                |ns| ns.label().to_owned()
            ),
        )
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
    /// * the errors of the builders it uses ([`Bridge`](crate::Bridge),
    ///   [`VethPair`](crate::VethPair), [`Route`](crate::Route)).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future half-way removes whatever was already made (see the
    /// [crate docs](crate#resource-leaking)).
    ///
    /// # Examples
    ///
    /// A container runtime joining a container's namespace to its bridge `cni0`, which exists
    /// from the first container on (creating it again would fail with
    /// [`Error::AlreadyExists`]): open it, and attach to it.
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Bridge, MemberSpec, Namespace, bridged};
    ///
    /// let host = Namespace::current()?;
    /// let container = Namespace::open_path("/run/netns/c1")?;
    /// let cni0 = Bridge::open(&host, "cni0").await?; // a handle that never deletes it
    /// let net = bridged()
    ///     .host(&host)
    ///     .existing_bridge(&cni0)
    ///     .gateway("10.88.0.1/16")
    ///     .member(MemberSpec::in_namespace(&container).address("10.88.0.5/16"))
    ///     .create()
    ///     .await?;
    /// let members = net.keep(); // the container's network outlives this process
    /// # Ok(()) }
    /// ```
    #[doc(alias = "brctl addbr")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<BridgedNetwork> {
        let span = self.create_span();
        trace::timed(span, async move {
            use tracing::Instrument;
            let plan = self.validate()?;
            // Every member is built by a job on a worker: one starts now, beside the checks
            // and the bridge below, unless one is idle already.
            if !plan.planned.is_empty() {
                crate::sys::start_worker_early();
            }
            // An existing bridge is looked up in the same round trip as the subnet check's
            // listing (both asked before either answer is read), and adopted only after it.
            let lookup = match &plan.builder.existing {
                Some(link) => Some((link, link.ns().nl().await?.send(get_link(link.index()), 0))),
                None => None,
            };
            let present = plan
                .check_subnets_free()
                .instrument(tracing::debug_span!("network: subnet check"))
                .await;
            let looked_up = match lookup {
                Some((link, reply)) => Some((link, reply.messages().await)),
                None => None,
            };
            let present = present?;
            let MadeBridge {
                bridge,
                rules,
                mtu,
                fast_link_local,
                waited: bridge_waited,
                found,
            } = async {
                match looked_up {
                    Some((link, answer)) => plan.adopted_bridge(link, answer).await,
                    None => plan.make_bridge().await,
                }
            }
            .instrument(tracing::debug_span!("network: bridge"))
            .await?;
            let Plan {
                host,
                link_name,
                gateways,
                planned,
                taken,
                group_hold,
                builder,
                ..
            } = plan;
            let adopted = builder.existing.is_some();
            // From here on the guard owns everything made: if a step fails it is removed, and if
            // this future is dropped the guard's `Drop` removes it.
            let mut network = Guard::new(NetworkResource {
                context: NetworkContext {
                    host,
                    bridge,
                    group: group_hold.hand_over(),
                    has_ipv6: gateways.iter().any(IpNetwork::is_ipv6),
                    fast_link_local,
                    bridge_waited,
                    gateways,
                    link_local_ipv6: builder.link_local_ipv6,
                    link_name,
                    nodad: builder.nodad,
                    mtu,
                    // Only on a bridge of the network's own: on an existing one (a runtime's,
                    // with one network per container) every forwarded frame would pass one chain
                    // per network. Not with a VXLAN port: routers may be on the other side.
                    filter_router_messages: builder.filter_router_messages
                        && builder.existing.is_none()
                        && builder.vxlan.is_none(),
                    router_messages_filtered: false,
                },
                rules,
                isolation: None,
                members: Vec::new(),
                taken,
                adopted,
                added_gateways: Vec::new(),
                vxlan_port: None,
                router_messages: None,
            });
            // `found`: the existing bridge as just looked up (none for a new one).
            if let Some(found) = found {
                let adopt =
                    network
                        .get_mut()
                        .adopt(builder.nodad, builder.accept_forward, present, found);
                if let Err(e) = adopt.await {
                    return Err(guard::roll_back(network, e).await);
                }
            }
            if builder.isolate {
                if let Err(e) = network.get_mut().isolate().await {
                    return Err(guard::roll_back(network, e).await);
                }
            }
            if let Some((vni, local, remotes)) = builder.vxlan {
                if let Err(e) = network.get_mut().add_vxlan_port(vni, local, remotes).await {
                    return Err(guard::roll_back(network, e).await);
                }
            }
            if let Some(first) = planned.iter().find(|m| {
                let c = &network.get().context;
                m.has_ipv6(c.has_ipv6, c.link_local_ipv6)
            }) {
                network.get_mut().filter_router_messages_for(first).await;
            }
            let (members, first_error) = build_members(&network.get().context, planned)
                .instrument(tracing::debug_span!("network: members"))
                .await;
            network.get_mut().members = members;
            if let Some(e) = first_error {
                return Err(guard::roll_back(network, e).await);
            }
            // Ready on return.
            let net = network.get();
            member::wait_ready(&net.context, !net.adopted, &net.members, &net.describe())
                .instrument(tracing::debug_span!("network: readiness wait"))
                .await;
            Ok(BridgedNetwork(network))
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<BridgedNetwork> {
        crate::netlink::block_on(self.create())
    }
}

impl BridgedNetworkBuilder {
    /// The host namespace and the bridge's name: those of the
    /// [existing bridge](Self::existing_bridge) if there is one (then neither a different host
    /// nor a bridge name may be given), else the given or current namespace and the given or a
    /// generated name.
    fn host_and_bridge_name(&self) -> Result<(Arc<NsInner>, IfName)> {
        let Some(existing) = &self.existing else {
            let host = match &self.host {
                Some(host) => host.clone(),
                None => crate::netns::current_inner()?,
            };
            let name = match &self.bridge_name {
                Some(name) => IfName::new(name)?,
                None => IfName::unique("nkbr")?,
            };
            return Ok((host, name));
        };
        let object = || format!("bridged network on {}", existing.label());
        if self.bridge_name.is_some() {
            return Err(Error::invalid(
                object(),
                "give either `bridge_name` (a new bridge) or `existing_bridge`, not both",
            ));
        }
        if let Some(host) = &self.host
            && host.id() != existing.ns().id()
        {
            return Err(Error::invalid(
                object(),
                format!("the bridge is not in the host namespace {}", host.label()),
            ));
        }
        Ok((existing.ns().clone(), IfName::new(existing.name())?))
    }
}

/// A bridged network checked in full, before anything is made.
struct Plan {
    host: Arc<NsInner>,
    bridge_name: IfName,
    link_name: IfName,
    /// The MTU asked for, or the one a VXLAN port needs.
    want_mtu: Option<u32>,
    gateways: Vec<IpNetwork>,
    planned: Vec<Planned>,
    taken: Taken,
    /// The network's link group, given back if creation stops before the guard takes it.
    group_hold: owner::GroupHold,
    /// The rest of the builder's settings.
    builder: BridgedNetworkBuilder,
}

impl Plan {
    /// Refuses a gateway subnet that another interface of the host namespace has already: two
    /// equal routes on two bridges, of which the kernel uses one, would leave one network cut
    /// off without a word. (Joining an existing bridge whose own addresses are in the subnet is
    /// sharing it, not a clash.)
    ///
    /// Returns the host namespace's addresses it listed (an existing bridge's are looked at
    /// again when the network adopts it: one dump, on a host with many interfaces a long one).
    async fn check_subnets_free(&self) -> Result<Vec<crate::addr::AddressInfo>> {
        let present = Namespace::view(self.host.clone()).addresses().await?;
        let bridge = self.builder.existing.as_ref().map(Link::index);
        for gw in &self.gateways {
            let (net, prefix) = (gw.network(), gw.prefix());
            let clash = present.iter().find(|a| {
                Some(a.index) != bridge
                    && !a.link_local
                    && a.address.prefix() == prefix
                    && a.address.network() == net
            });
            if let Some(a) = clash {
                let on = crate::link::lookup::dump_links(&self.host)
                    .await
                    .ok()
                    .and_then(|links| links.into_iter().find(|l| l.index == a.index))
                    .map_or(format!("interface {}", a.index), |l| {
                        format!("interface {:?}", l.name)
                    });
                return Err(Error::invalid(
                    format!(
                        "gateway {gw} of bridged network {:?} in {}",
                        self.bridge_name.as_str(),
                        self.host.label()
                    ),
                    format!(
                        "subnet {net}/{prefix} is on {on} already ({}): two networks with one subnet in one namespace would clash (one route wins); use another subnet, or join that bridge with `existing_bridge`",
                        a.address
                    ),
                ));
            }
        }
        Ok(present)
    }
}

impl BridgedNetworkBuilder {
    /// Every check [`create`](Self::create) makes before its first change: names, the VXLAN
    /// port's settings, gateways, the number of ports, each member's plan; then a link group.
    fn validate(mut self) -> Result<Plan> {
        let (host, bridge_name) = self.host_and_bridge_name()?;
        let object = || {
            format!(
                "bridged network {:?} in {}",
                bridge_name.as_str(),
                host.label()
            )
        };
        let link_name = IfName::new(&self.link_name)?;
        if self.vxlan.is_some() && self.existing.is_some() {
            return Err(Error::invalid(
                object(),
                "a VXLAN port goes on a bridge the network creates, not an existing one",
            ));
        }
        // With a VXLAN port, room for its headers (see `vxlan`).
        let want_mtu = self.mtu.or_else(|| {
            self.vxlan.as_ref().map(|(_, local, _)| {
                // An IPv6 outer header is 20 bytes longer.
                let overhead =
                    crate::link::vxlan::VXLAN_OVERHEAD_V4 + if local.is_ipv6() { 20 } else { 0 };
                1500 - overhead
            })
        });
        if let Some((vni, local, remotes)) = &self.vxlan {
            let vx = crate::link::vxlan::Vxlan::builder("nkvx0", *vni).local(*local);
            let vx = remotes.iter().fold(vx, |vx, r| vx.remote(*r));
            vx.validate_in(host.id(), &object)?;
        }
        let gateways = validate_gateways(std::mem::take(&mut self.gateways), &object)?;
        check_port_count(self.members.len(), &object)?;
        let mut taken = Taken::default();
        let planned = std::mem::take(&mut self.members)
            .into_iter()
            .map(|spec| {
                let id = host.id();
                member::plan(spec, id, &gateways, &link_name, &mut taken, &object)
            })
            .collect::<Result<Vec<Planned>>>()?;
        let group_hold = owner::allocate_group().map(owner::GroupHold::new).ok_or_else(|| {
            Error::invalid(
                object(),
                "this process already has 512 live bridged networks, the most it can tell apart",
            )
        })?;
        Ok(Plan {
            host,
            bridge_name,
            link_name,
            want_mtu,
            gateways,
            planned,
            taken,
            group_hold,
            builder: self,
        })
    }
}

impl Plan {
    /// The existing bridge `link`, adopted as it is from `found`, the kernel's answer to looking
    /// it up; see [`MadeBridge`] for what comes with it.
    async fn adopted_bridge(&self, link: &Link, found: LinkAnswer) -> Result<MadeBridge> {
        let (info, stp_off) = adopt_bridge(link, found).await?;
        Ok(MadeBridge {
            bridge: link.clone(),
            rules: None,
            mtu: self.want_mtu.or(info.mtu),
            fast_link_local: false,
            waited: stp_off,
            found: Some(info),
        })
    }

    /// A new bridge with the gateways; see [`MadeBridge`] for what comes with it.
    async fn make_bridge(&self) -> Result<MadeBridge> {
        let bridge = Bridge::builder(self.bridge_name.as_str())
            .namespace(&Namespace::view(self.host.clone()))
            .owned_group(self.group_hold.group())
            // A fixed MAC and MTU: otherwise the kernel recomputes both from all ports each time
            // one joins (the bridge takes the lowest port MAC, and the lowest port MTU), and every
            // MAC change ripples through the bridge's IPv6 configuration — costs that grow with
            // the members.
            .mac(crate::link::random_mac())
            .mtu(self.want_mtu.unwrap_or(1500))
            .nodad(self.builder.nodad)
            .accept_forward(self.builder.accept_forward);
        let bridge = self.gateways.iter().fold(bridge, |b, gw| b.address(*gw));
        // If this fails, or the future is dropped, `group_hold` gives the number back.
        let (bridge, rules, fast_link_local) = bridge.create().await?.into_parts();
        Ok(MadeBridge {
            bridge,
            rules,
            mtu: self.want_mtu,
            fast_link_local,
            waited: true,
            found: None,
        })
    }
}

/// The network's bridge, made or existing, and what is known about it.
struct MadeBridge {
    bridge: Link,
    /// The FORWARD rules made with a new bridge.
    rules: Option<ForwardRules>,
    /// The members' MTU.
    mtu: Option<u32>,
    /// Whether the new bridge's link-local address is usable at once (see `Bridge`).
    fast_link_local: bool,
    /// Whether the bridge's own readiness is waited for (see `member::wait_ready`).
    waited: bool,
    /// An existing bridge as just looked up (its MAC, for `adopt`).
    found: Option<crate::link::LinkInfo>,
}

/// The kernel's answer to looking up an existing bridge.
type LinkAnswer = std::result::Result<Vec<RouteNetlinkMessage>, crate::netlink::KernelError>;

/// Checks from `found`, the kernel's answer to looking `link` up, that it is still a bridge,
/// sets it up if it is down, and returns what the kernel said about it and whether its
/// spanning tree is off (its ports forward as soon as they are up; see `member::wait_ready`).
async fn adopt_bridge(link: &Link, found: LinkAnswer) -> Result<(crate::link::LinkInfo, bool)> {
    use netlink_packet_route::link::{BridgeStpState, InfoBridge, InfoData, LinkAttribute};
    let gone = |e: crate::netlink::KernelError| {
        let e = e.into_error("look up", link.label());
        if e.is_not_found() {
            let gone = std::io::Error::from_raw_os_error(nix::libc::ENODEV);
            Error::os("attach members to", link.label(), gone)
        } else {
            e
        }
    };
    let msg = found
        .and_then(crate::netlink::msg::first_link)
        .map_err(gone)?;
    let info = crate::link::LinkInfo::from_message(&msg);
    if info.kind.as_deref() != Some("bridge") {
        return Err(Error::invalid(link.label(), "it is no longer a bridge"));
    }
    let stp_off = msg.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| match i {
            netlink_packet_route::link::LinkInfo::Data(InfoData::Bridge(data)) => data
                .iter()
                .any(|d| matches!(d, InfoBridge::StpState(BridgeStpState::Disabled))),
            _ => false,
        }),
        _ => false,
    });
    if !info.up {
        link.set_up().await?;
    }
    Ok((info, stp_off))
}

/// The gateways of a bridged network: at least one, at most one per IP version, host addresses.
fn validate_gateways(
    given: Vec<Result<IpNetwork>>,
    object: &dyn Fn() -> String,
) -> Result<Vec<IpNetwork>> {
    let mut gateways: Vec<IpNetwork> = Vec::new();
    for gw in given {
        let gw = gw?;
        validate_host(&gw, object)?;
        validate_routable(&gw, object)?;
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
    Ok(gateways)
}

/// Builds `planned` members, [`MEMBER_CONCURRENCY`] at a time; returns those built, in the
/// order given, and the first error met.
async fn build_members(
    context: &NetworkContext,
    planned: Vec<Planned>,
) -> (Vec<Member>, Option<Error>) {
    let quick = member::quick_check(planned.len());
    let mut built = futures::stream::iter(planned.into_iter().enumerate())
        .map(
            |(order, planned)| async move { (order, member::build(context, planned, quick).await) },
        )
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
    members.sort_by_key(|(order, _)| *order);
    (members.into_iter().map(|(_, m)| m).collect(), first_error)
}
