//! Pattern 2: a bridge holding the gateway address(es) in a host namespace, and members joined
//! to it by veth pairs ([`bridged`], [`BridgedNetwork`]). The bridge comes from the [`Bridge`]
//! builder; members are built by the [`member`](super::member) job.
//!
//! **Existing bridges.** A container runtime owns one bridge (`cni0`) shared by all its
//! containers, often wired by separate short-lived processes. A network made with
//! [`existing_bridge`](BridgedNetworkBuilder::existing_bridge) attaches its members to that
//! bridge and, on teardown, removes only what it added: the members (their host ends carry the
//! network's link group; the bridge does not), the gateway addresses that were not already on
//! the bridge, and its own FORWARD rules. Two processes can do this on one bridge at once: each
//! network has its own link group and rule tag, and a gateway another process added meanwhile
//! (`EEXIST`) counts as already there, so it is left to that process.

use std::{net::IpAddr, sync::Arc};

use futures::StreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::RouteNetlinkMessage;

use super::member::{self, NetworkContext, Planned, Taken};
pub use super::member::{Member, MemberSpec};
use crate::{
    error::{Error, Result},
    firewall::ForwardRules,
    guard::{self, Guard, Resource},
    ip::{IntoIpNetwork, validate_host, validate_routable},
    link::{Link, bridge::Bridge},
    name::IfName,
    netlink::{
        BLOCKING_TIMEOUT,
        msg::{add_address, del_address, del_group, set_link},
    },
    netns::{Namespace, NsInner},
    owner, trace,
};

/// How many members are set up at once: enough to overlap namespace creation (on the worker
/// threads) with netlink requests, few enough to bound open sockets.
const MEMBER_CONCURRENCY: usize = 8;

/// The most ports a Linux bridge takes (`BR_MAX_PORTS` is 1024 and port number 0 is reserved):
/// checked before anything is made, instead of meeting `EXFULL` at member 1024.
const MAX_PORTS: usize = 1023;

/// Refuses a network of more members than a bridge takes.
fn check_port_count(members: usize, object: &dyn Fn() -> String) -> Result<()> {
    if members > MAX_PORTS {
        return Err(Error::invalid(
            object(),
            format!("{members} members: a bridge takes at most {MAX_PORTS} ports"),
        ));
    }
    Ok(())
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
    pub(crate) host: Option<Arc<NsInner>>,
    bridge_name: Option<String>,
    pub(crate) existing: Option<Link>,
    pub(super) gateways: Vec<Result<IpNetwork>>,
    link_name: String,
    members: Vec<MemberSpec>,
    accept_forward: bool,
    nodad: bool,
    mtu: Option<u32>,
    link_local_ipv6: Option<bool>,
    /// A VXLAN port stretching the network to other machines: (VNI, local, peers).
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
    /// already on it stay; members, gateway addresses the network added, and its FORWARD rules
    /// go; several processes may attach networks to one bridge at once. If the bridge is down, it
    /// is set up (and left up). Members' MTU defaults to the bridge's; [`mtu`](Self::mtu) sets only
    /// theirs.
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
    /// network on `peers` — the other machines' underlay addresses, each running the same
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
    /// // same with local 192.168.50.2, peer 192.168.50.1 and gateway-less members .11 and up.
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
        peers: impl IntoIterator<Item = std::net::IpAddr>,
    ) -> Self {
        self.vxlan = Some((vni, local, peers.into_iter().collect()));
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<BridgedNetwork> {
        let span = self.create_span();
        trace::timed(span, async move {
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
                    let overhead = crate::link::vxlan::VXLAN_OVERHEAD_V4
                        + if local.is_ipv6() { 20 } else { 0 };
                    1500 - overhead
                })
            });
            // The VXLAN port's own input, before anything is made.
            if let Some((vni, local, peers)) = &self.vxlan {
                let mut vx = crate::link::vxlan::Vxlan::builder("nkvx0", *vni).local(*local);
                for peer in peers {
                    vx = vx.remote(*peer);
                }
                vx.validate_in(host.id(), &object)?;
            }
            let gateways = validate_gateways(self.gateways, &object)?;
            check_port_count(self.members.len(), &object)?;
            let mut taken = Taken::default();
            let planned = self
                .members
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
            let adopted = self.existing.is_some();
            let (bridge, rules, mtu, fast_link_local) = match self.existing {
                Some(link) => {
                    let mtu = adopt_bridge(&link).await?;
                    (link, None, want_mtu.or(mtu), false)
                }
                None => {
                    let bridge = Bridge::builder(bridge_name.as_str())
                        .namespace(&Namespace::view(host.clone()))
                        .owned_group(group_hold.group())
                        // A fixed MAC and MTU: otherwise the kernel recomputes both from all
                        // ports each time one joins (the bridge takes the lowest port MAC, and
                        // the lowest port MTU), and every MAC change ripples through the
                        // bridge's IPv6 configuration — costs that grow with the members.
                        .mac(crate::link::random_mac())
                        .mtu(want_mtu.unwrap_or(1500))
                        .nodad(self.nodad)
                        .accept_forward(self.accept_forward);
                    let bridge = gateways.iter().fold(bridge, |b, gw| b.address(*gw));
                    // If this fails, or the future is dropped, `group_hold` gives the number
                    // back.
                    let (bridge, rules, fast_link_local) = bridge.create().await?.into_parts();
                    (bridge, rules, want_mtu, fast_link_local)
                }
            };
            // From here on the guard owns everything made: if a step fails it is removed, and if
            // this future is dropped the guard's `Drop` removes it.
            let mut network = Guard::new(NetworkResource {
                context: NetworkContext {
                    host,
                    bridge,
                    group: group_hold.hand_over(),
                    has_ipv6: gateways.iter().any(IpNetwork::is_ipv6),
                    fast_link_local,
                    gateways,
                    link_local_ipv6: self.link_local_ipv6,
                    link_name,
                    nodad: self.nodad,
                    mtu,
                },
                rules,
                members: Vec::new(),
                taken,
                adopted,
                added_gateways: Vec::new(),
                vxlan_port: None,
            });
            if adopted {
                if let Err(e) = network.get_mut().adopt(self.nodad, self.accept_forward).await {
                    return Err(guard::roll_back(network, e).await);
                }
            }
            if let Some((vni, local, peers)) = self.vxlan {
                let context = &network.get().context;
                let mut vx = crate::link::vxlan::Vxlan::builder(
                    IfName::unique("nkvx").map(|n| n.as_str().to_owned()).unwrap_or_default(),
                    vni,
                )
                .namespace(&Namespace::view(context.host.clone()))
                .local(local)
                .controller(&context.bridge)
                .owned_group(context.group);
                if let Some(mtu) = context.mtu {
                    vx = vx.mtu(mtu);
                }
                for peer in peers {
                    vx = vx.remote(peer);
                }
                // The network's link group holds it: removed in the same batch.
                match vx.create().await {
                    Ok(vx) => network.get_mut().vxlan_port = Some(vx.into_link().index()),
                    Err(e) => return Err(guard::roll_back(network, e).await),
                }
            }
            let (members, first_error) = build_members(&network.get().context, planned).await;
            network.get_mut().members = members;
            if let Some(e) = first_error {
                return Err(guard::roll_back(network, e).await);
            }
            // Ready on return.
            let net = network.get();
            member::wait_ready(&net.context, !net.adopted, &net.members, &net.describe()).await;
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

/// Checks that `link` is still a bridge, sets it up if it is down, and returns its MTU.
async fn adopt_bridge(link: &Link) -> Result<Option<u32>> {
    let info = link.info().await.map_err(|e| {
        if e.is_not_found() {
            let gone = std::io::Error::from_raw_os_error(nix::libc::ENODEV);
            Error::os("attach members to", link.label(), gone)
        } else {
            e
        }
    })?;
    if info.kind.as_deref() != Some("bridge") {
        return Err(Error::invalid(link.label(), "it is no longer a bridge"));
    }
    if !info.up {
        link.set_up().await?;
    }
    Ok(info.mtu)
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
    let mut built = futures::stream::iter(planned.into_iter().enumerate())
        .map(|(order, planned)| async move { (order, member::build(context, planned).await) })
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

#[derive(Debug)]
struct NetworkResource {
    context: NetworkContext,
    rules: Option<ForwardRules>,
    members: Vec<Member>,
    taken: Taken,
    /// Whether the bridge existed before (and is never deleted by us).
    adopted: bool,
    /// The gateway addresses this network put on an existing bridge (removed with it).
    added_gateways: Vec<IpNetwork>,
    /// The VXLAN port's index, if the network has one (in its group, removed with it).
    vxlan_port: Option<u32>,
}

impl NetworkResource {
    /// On an existing bridge: adds the gateway addresses it lacks, and the FORWARD rules if
    /// asked. An address another process added meanwhile (`EEXIST`) is left to that process.
    async fn adopt(&mut self, nodad: bool, accept_forward: bool) -> Result<()> {
        let bridge = self.context.bridge.clone();
        let present = bridge.addresses().await?;
        let nl = self.context.host.nl().await?;
        for gw in self.context.gateways.clone() {
            if present.iter().any(|a| a.address.ip() == gw.ip()) {
                continue;
            }
            // Recorded first: if this future is dropped after the request went out, the
            // network's teardown still removes the address.
            self.added_gateways.push(gw);
            let (message, flags) = add_address(bridge.index(), &gw, nodad);
            match nl.send(message, flags).ack().await {
                Ok(()) => {}
                Err(e) if e.errno == nix::libc::EEXIST => {
                    self.added_gateways.pop();
                }
                Err(e) => {
                    self.added_gateways.pop();
                    return Err(e.into_error("add gateway address to", bridge.label()));
                }
            }
        }
        if accept_forward {
            self.enable_accept_forward().await?;
        }
        Ok(())
    }

    /// Inserts this network's FORWARD rules for its bridge, or, if it has them, those of the
    /// IP families that got a `filter` table since.
    async fn enable_accept_forward(&mut self) -> Result<()> {
        if let Some(rules) = &self.rules {
            return rules.insert().await;
        }
        let rules = Guard::new(ForwardRules::for_bridge(
            &self.context.host,
            self.context.bridge.name(),
        ));
        if let Err(e) = rules.get().insert().await {
            return Err(guard::roll_back(rules, e).await);
        }
        self.rules = Some(rules.into_inner());
        Ok(())
    }

    /// The requests that remove this network's links and addresses: one group deletion (the
    /// bridge too, unless it was adopted, and every member's veth pair), then the gateway
    /// addresses added to an adopted bridge.
    fn removals(&self) -> Vec<RouteNetlinkMessage> {
        std::iter::once(del_group(self.context.group))
            .chain(
                self.added_gateways
                    .iter()
                    .map(|gw| del_address(self.context.bridge.index(), gw)),
            )
            .collect()
    }

    /// Replaces every ownership mark (for `keep`): the bridge's alias, the link group of the
    /// bridge and the members' host ends, the firewall rules' comments. Returns whether all of
    /// them were replaced; failures are logged.
    fn unmark(&mut self) -> bool {
        let context = &self.context;
        // An adopted bridge carries no mark of ours, and keeps its own group.
        let own_bridge = (!self.adopted).then_some(context.bridge.index());
        let mut unmark: Vec<_> = own_bridge
            .map(|index| (set_link(index, |b| b.alias(owner::UNMARKED_ALIAS)), 0))
            .into_iter()
            .collect();
        unmark.extend(
            own_bridge
                .into_iter()
                .map(|index| (set_link(index, |b| b.link_group(0)), 0)),
        );
        unmark.extend(
            self.members
                .iter()
                .map(|m| m.host.index())
                .chain(self.vxlan_port)
                .map(|index| {
                    (
                        set_link(index, |b| b.link_group(0).alias(owner::UNMARKED_ALIAS)),
                        0,
                    )
                }),
        );
        let mut unmarked = match context.host.blocking_acks(unmark, BLOCKING_TIMEOUT) {
            Ok(answers) => answers
                .into_iter()
                .filter_map(|a| a.err())
                .fold(true, |_, e| {
                    let e = e.into_error("unmark", context.bridge.label());
                    trace::swallowed(&"keeping a bridged network", &e);
                    false
                }),
            Err(e) => {
                trace::swallowed(&"keeping a bridged network", &e);
                false
            }
        };
        if let Some(rules) = &mut self.rules {
            unmarked &= rules.keep_blocking();
        }
        unmarked
    }
}

impl Resource for NetworkResource {
    const KIND: &'static str = "bridged network";

    fn netns(&self) -> String {
        self.context.host.label().to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "bridged network {:?} in {}",
            self.context.bridge.name(),
            self.context.host.label()
        )
    }

    async fn remove(&self) -> Result<()> {
        let what = self.describe();
        let mut errors = Vec::new();
        // One request, one kernel batch: the bridge and every member's veth pair. First, so an
        // interruption during the slower iptables calls leaves only rules behind for `Drop`.
        let nl = self.context.host.nl().await;
        match nl {
            Ok(nl) => {
                let replies: Vec<_> = self.removals().into_iter().map(|m| nl.send(m, 0)).collect();
                for reply in replies {
                    match reply.ack().await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => errors.push(e.into_error("delete the links of", what.clone())),
                    }
                }
            }
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
        if self.context.host.is_doomed() {
            // The host namespace dies with this crate's last references, and with it the
            // bridge, every member's veth pair and the rules.
            return Ok(());
        }
        let what = self.describe();
        let mut errors = Vec::new();
        let removals = self.removals().into_iter().map(|m| (m, 0)).collect();
        match self.context.host.blocking_acks(removals, BLOCKING_TIMEOUT) {
            Ok(answers) => errors.extend(answers.into_iter().filter_map(|a| match a {
                Err(e) if !e.is_not_found() => {
                    Some(e.into_error("delete the links of", what.clone()))
                }
                _ => None,
            })),
            Err(e) => errors.push(Error::os("delete the links of", what.clone(), e)),
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
            owner::release_group(self.context.group);
        } else {
            // Links may still be in the group: never hand its number to another network.
            tracing::warn!(
                target: "netns_kit",
                object = %what,
                group = self.context.group,
                "link group not reused: links may still be in it"
            );
        }
        Error::collect(what, errors)
    }
}

/// A bridged network, made by [`bridged`]: a bridge with the gateway address(es) in a host
/// namespace and members joined to it. The guard removes the bridge, every member's veth pair
/// (in one kernel batch, see below), the firewall rules if any, and the member namespaces it
/// created or was given; it never destroys the host namespace, namespaces given with
/// [`MemberSpec::in_namespace`], or an [existing bridge](BridgedNetworkBuilder::existing_bridge)
/// and the addresses it had. See the [guard contract](crate#guards).
///
/// # Fast teardown
///
/// Deleting a link costs the kernel 15–35 ms (it waits for RCU grace periods), so deleting a
/// network's links one by one would cost that per member. Instead the bridge and every member's
/// host-side veth end share one **link group** (`ip link ... group N`; [`link_group`](Self::link_group)),
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

impl std::fmt::Display for BridgedNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.get().describe())
    }
}

impl BridgedNetwork {
    /// The bridge.
    pub fn bridge(&self) -> &Link {
        &self.0.get().context.bridge
    }

    /// The gateway addresses on the bridge, one per IP version.
    pub fn gateways(&self) -> &[IpNetwork] {
        &self.0.get().context.gateways
    }

    /// The link group of the bridge and the members' host-side veth ends. `ip` prints it as a
    /// signed number (`group -2131965439`); `ip link del group <that number>` would remove the
    /// whole network.
    pub fn link_group(&self) -> u32 {
        self.0.get().context.group
    }

    /// Whether the network inserted `iptables` FORWARD accept rules for its bridge.
    pub fn accept_forward_enabled(&self) -> bool {
        self.0.get().rules.is_some()
    }

    /// Inserts the FORWARD accept rules of
    /// [`BridgedNetworkBuilder::accept_forward`] into the live network (say, once a firewall
    /// that drops forwarded traffic was started after it): into each IP family's `filter`
    /// table that exists and lacks them. They are removed with the network.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if `iptables` is missing or fails; what was inserted is removed
    /// again.
    ///
    /// # Cancel safety
    ///
    /// If dropped while `iptables` runs, the rules inserted so far are removed again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     host: netns_kit::Namespace,
    /// #     mut net: netns_kit::BridgedNetwork,
    /// # ) -> netns_kit::Result<()> {
    /// // `host` holds the network's bridge.
    /// if netns_kit::forward_check(&host).await?.needs_fix() {
    ///     net.enable_accept_forward().await?;
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "iptables -I FORWARD")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn enable_accept_forward(&mut self) -> Result<()> {
        self.0.get_mut().enable_accept_forward().await
    }

    /// The blocking form of [`enable_accept_forward`](Self::enable_accept_forward): the same work,
    /// checks and errors, on the calling thread without an async runtime (see [the blocking
    /// API](crate#blocking-api)). Do not call it from async code.
    pub fn enable_accept_forward_blocking(&mut self) -> Result<()> {
        crate::netlink::block_on(self.enable_accept_forward())
    }

    /// The members, in the order they were added.
    pub fn members(&self) -> &[Member] {
        &self.0.get().members
    }

    /// The member that has address `address`.
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
    /// println!("new member's eth0 is #{}", m.link().index());
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_member(&mut self, spec: MemberSpec) -> Result<&Member> {
        let resource = self.0.get_mut();
        let context = resource.context.clone();
        let own_bridge = !resource.adopted;
        let describe = resource.describe();
        check_port_count(resource.members.len() + 1, &|| describe.clone())?;
        // Validate against a copy of what is taken; commit it only once the member exists.
        let mut taken = resource.taken.clone();
        let planned = member::plan(
            spec,
            context.host.id(),
            &context.gateways,
            &context.link_name,
            &mut taken,
            &|| describe.clone(),
        )?;
        let member = match member::build(&context, planned).await {
            Ok(member) => member,
            // Deleted behind the network's back: say so rather than the kernel's EINVAL.
            Err(_) if context.bridge.info().await.is_err_and(|e| e.is_not_found()) => {
                let gone = std::io::Error::from_raw_os_error(nix::libc::ENODEV);
                return Err(Error::os("add a member to", context.bridge.label(), gone));
            }
            Err(e) => return Err(e),
        };
        // The network owns it before the wait: a caller that stops waiting now leaves a
        // member the network's teardown removes, not one nobody does.
        let resource = self.0.get_mut();
        resource.taken = taken;
        resource.members.push(member);
        let member = resource.members.last().expect("just pushed");
        member::wait_ready(
            &context,
            own_bridge,
            std::slice::from_ref(member),
            &describe,
        )
        .await;
        Ok(self.0.get().members.last().expect("just pushed"))
    }

    /// The blocking form of [`add_member`](Self::add_member): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do
    /// not call it from async code.
    pub fn add_member_blocking(&mut self, spec: MemberSpec) -> Result<&Member> {
        crate::netlink::block_on(self.add_member(spec))
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
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
        resource.taken.release(&member);
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

    /// The blocking form of [`remove_member`](Self::remove_member): the same work, checks and
    /// errors, on the calling thread without an async runtime (see [the blocking
    /// API](crate#blocking-api)). Do not call it from async code.
    pub fn remove_member_blocking(&mut self, address: IpAddr) -> Result<()> {
        crate::netlink::block_on(self.remove_member(address))
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

    /// Disarms the guard: the bridge, veths, rules and member namespaces stay after the guard
    /// is gone (see [the guard contract](crate#guards)): a named member namespace keeps its
    /// name; an anonymous one still dies with its last handle, held by the guard. Ownership
    /// marks are replaced, so [`reap`](crate::reap) never removes what was kept. Returns the
    /// same, now inert, guard.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(net: netns_kit::BridgedNetwork) {
    /// let net = net.keep();
    /// for member in net.members() {
    ///     println!("kept {member}");
    /// }
    /// # }
    /// ```
    pub fn keep(mut self) -> Self {
        if !self.0.is_armed() {
            return self;
        }
        let resource = self.0.get_mut();
        let unmarked = resource.unmark();
        for member in &mut resource.members {
            member.keep_namespace();
        }
        if unmarked {
            owner::release_group(resource.context.group);
        } else {
            // Something still carries the group: never hand its number to another network,
            // whose teardown would delete what was kept.
            tracing::warn!(
                target: "netns_kit",
                group = resource.context.group,
                "link group not reused: kept links may still be in it"
            );
        }
        self.0.disarm();
        self
    }
}
