//! Pattern 2: a bridge holding the gateway address(es) in a host namespace, and members joined
//! to it by veth pairs ([`bridged`], [`BridgedNetwork`]). The bridge comes from the [`Bridge`]
//! builder; members are built by the [`member`](super::member) job.
//!
//! **Existing bridges.** A container runtime owns one bridge (`cni0`) shared by all its
//! containers, often wired by separate short-lived processes. A network made with
//! [`existing_bridge`](BridgedNetworkBuilder::existing_bridge) attaches its members to that
//! bridge and, on teardown, removes only what it added: the members (their host ends carry the
//! network's link group; the bridge does not), its own FORWARD rules and router-message filter
//! (which matches that link group), and — only if it is the last on the bridge — the gateway
//! addresses. Several networks, in one process or several, can
//! share one bridge:
//!
//! * each has its own link group and rule tag;
//! * joining pins the bridge's MAC (sets the one it has): a bridge whose MAC was never set
//!   follows its lowest port and changes it when that port goes, which would leave the other
//!   networks' members with a stale neighbour entry for the gateway;
//! * a gateway address a network adds is marked shared (address protocol
//!   `SHARED_GATEWAY_PROTO`, `proto 110` in `ip address`), in the kernel object itself, so every
//!   process sees it; a network removes shared gateways only when no port of another network
//!   (or of anyone) is left on the bridge, whichever network added them. An address the bridge
//!   had before (the runtime's own) is never removed.
//!
//! Files: `builder.rs` checks and builds a network; this file holds the guard and its teardown.

mod builder;

pub use builder::{BridgedNetworkBuilder, bridged};

use super::member::{self, NetworkContext, Taken};
pub use super::member::{Member, MemberSpec};
use crate::{
    error::{Error, Result},
    firewall::ForwardRules,
    guard::{self, Guard, Resource},
    link::Link,
    name::IfName,
    nat::router_messages::RouterMessageFilter,
    netlink::{
        BLOCKING_TIMEOUT,
        msg::{add_shared_gateway, del_address, del_group, set_link},
    },
    netns::Namespace,
    owner, trace,
};
use ipnetwork::IpNetwork;
use netlink_packet_route::RouteNetlinkMessage;
use std::{net::IpAddr, os::fd::AsFd};

/// The most ports a Linux bridge takes (`BR_MAX_PORTS` is 1024 and port number 0 is reserved):
/// checked before anything is made, instead of meeting `EXFULL` at member 1024.
const MAX_PORTS: usize = 1023;

/// Refuses a network of more members than a bridge takes, and warns (a `WARN` event) when the
/// kernel's neighbour tables may be too small for it (see
/// [neighbour tables](BridgedNetwork#large-networks-and-the-kernels-neighbour-tables)).
fn check_port_count(members: usize, object: &dyn Fn() -> String) -> Result<()> {
    if members > MAX_PORTS {
        return Err(Error::invalid(
            object(),
            format!("{members} members: a bridge takes at most {MAX_PORTS} ports"),
        ));
    }
    // Two entries per member that talks to the gateway (its own for the gateway, the host's
    // for it), in tables shared by every namespace.
    if let Some(limit) = neighbour_limit() {
        if members * 2 > limit {
            tracing::warn!(
                target: "netns_kit::topology",
                "{}: {members} members need about {} neighbour entries, and the kernel keeps at most {limit} for all namespaces together (net.ipv4.neigh.default.gc_thresh3, and net.ipv6.neigh.default.gc_thresh3, in the initial namespace): beyond it packets are dropped (\"neighbour table overflow\"); raise both there for a network this large",
                object(),
                members * 2
            );
        }
    }
    Ok(())
}

/// The kernel's hard limit on neighbour entries (`gc_thresh3`), readable where this process's
/// namespace is the initial one (where the setting lives); `None` elsewhere.
fn neighbour_limit() -> Option<usize> {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        crate::sys::read_small("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

#[derive(Debug)]
struct NetworkResource {
    context: NetworkContext,
    rules: Option<ForwardRules>,
    /// The isolation rules, with [`isolate`](BridgedNetworkBuilder::isolate).
    isolation: Option<ForwardRules>,
    members: Vec<Member>,
    taken: Taken,
    /// Whether the bridge existed before (and is never deleted by us).
    adopted: bool,
    /// The gateway addresses this network put on an existing bridge, and those another network
    /// of this crate put there (marked shared): removed by the last network on the bridge.
    added_gateways: Vec<IpNetwork>,
    /// The VXLAN port's index, if the network has one (in its group, removed with it).
    vxlan_port: Option<u32>,
    /// The filter of members' router messages, if made (see
    /// [`BridgedNetworkBuilder::filter_router_messages`]).
    router_messages: Option<RouterMessageFilter>,
}

impl NetworkResource {
    /// Adds the network's VXLAN port to its bridge, in the network's link group (so it goes in
    /// the same batch as the rest).
    async fn add_vxlan_port(
        &mut self,
        vni: u32,
        local: IpAddr,
        remotes: Vec<IpAddr>,
    ) -> Result<()> {
        let context = &self.context;
        let name = IfName::unique("nkvx")
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        let mut vx = crate::link::vxlan::Vxlan::builder(name, vni)
            .namespace(&Namespace::view(context.host.clone()))
            .local(local)
            .controller(&context.bridge)
            .owned_group(context.group);
        if let Some(mtu) = context.mtu {
            vx = vx.mtu(mtu);
        }
        let vx = remotes.into_iter().fold(vx, |vx, r| vx.remote(r));
        self.vxlan_port = Some(vx.create().await?.into_link().index());
        Ok(())
    }

    /// On an existing bridge: pins its MAC, adds the gateway addresses it lacks (marked as
    /// shared), and the FORWARD rules if asked. A gateway another network of this crate put
    /// there (marked) is shared: whichever network goes last removes it. One the bridge had
    /// otherwise is never removed.
    async fn adopt(
        &mut self,
        nodad: bool,
        accept_forward: bool,
        mut present: Vec<crate::addr::AddressInfo>,
        info: crate::link::LinkInfo,
    ) -> Result<()> {
        let bridge = self.context.bridge.clone();
        // A bridge whose MAC was never set follows its lowest port, and changes it when that
        // port goes (another network's member, say): every member's neighbour entry for the
        // gateway would then be wrong. Setting the MAC it has pins it. (`present`: the host's
        // addresses, listed by the subnet check just before.)
        present.retain(|a| a.index == bridge.index());
        // Once: a shared gateway on it means a network of this crate joined (and pinned it)
        // already, and setting a MAC, even the same one, makes the kernel flush the host's
        // neighbour entries of everyone on the bridge. Nor where the kernel says the MAC was set
        // already (a runtime's bridge whose gateway address is the runtime's own, so no shared
        // gateway tells: without this, every container added would flush them). `info`: the
        // bridge as looked up just before, when the network was checked to be joinable.
        if !present.iter().any(|a| a.shared_gateway)
            && let Some(mac) = info.mac
            && !(crate::sys::is_thread_ns(bridge.ns().fd().as_fd())
                && mac_set_already(&info.name, info.index, mac))
        {
            bridge.set_mac(mac).await?;
        }
        let nl = self.context.host.nl().await?;
        for gw in self.context.gateways.clone() {
            if let Some(there) = present.iter().find(|a| a.address.ip() == gw.ip()) {
                if there.shared_gateway {
                    self.added_gateways.push(there.address);
                }
                continue;
            }
            // Recorded first: if this future is dropped after the request went out, the
            // network's teardown still removes the address.
            self.added_gateways.push(gw);
            let (message, flags) = add_shared_gateway(bridge.index(), &gw, nodad);
            match nl.send(message, flags).ack().await {
                // Another process's network added it meanwhile: shared all the same.
                Ok(()) => {}
                Err(e) if e.errno == nix::libc::EEXIST => {}
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

    /// Inserts this network's isolation rules (see [`BridgedNetworkBuilder::isolate`]).
    async fn isolate(&mut self) -> Result<()> {
        let families: Vec<&'static str> = [
            (
                self.context.gateways.iter().any(IpNetwork::is_ipv4),
                "iptables",
            ),
            (
                self.context.gateways.iter().any(IpNetwork::is_ipv6),
                "ip6tables",
            ),
        ]
        .into_iter()
        .filter_map(|(has, program)| has.then_some(program))
        .collect();
        // Inserting creates the `mangle` table where it is missing: noted first, so the last
        // isolated network of this process deletes it again (see `finish`).
        for program in &families {
            crate::nat::acquire_table(&self.context.host, *program == "ip6tables", "mangle");
        }
        let rules = Guard::new(ForwardRules::isolation_for_bridge(
            &self.context.host,
            self.context.bridge.name(),
            families.clone(),
            self.rules.as_ref(),
        ));
        if let Err(e) = rules.get().insert().await {
            let e = guard::roll_back(rules, e).await;
            for program in &families {
                crate::nat::release_table(
                    &self.context.host,
                    *program == "ip6tables",
                    "mangle",
                    false,
                );
            }
            return Err(e);
        }
        self.isolation = Some(rules.into_inner());
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
    /// bridge too, unless it was adopted, and every member's veth pair), then, when no other
    /// port is left on an adopted bridge (`last`), the shared gateway addresses.
    fn removals(&self, last: bool) -> Vec<RouteNetlinkMessage> {
        let gateways = if last { &self.added_gateways[..] } else { &[] };
        std::iter::once(del_group(self.context.group))
            .chain(
                gateways
                    .iter()
                    .map(|gw| del_address(self.context.bridge.index(), gw)),
            )
            .collect()
    }

    /// Whether a link port of the bridge that is not this network's own remains, with which
    /// the gateway addresses stay (another network, or the runtime, uses the bridge).
    fn others_on_bridge(&self, ports: &[crate::link::LinkInfo]) -> bool {
        let own = |p: &&crate::link::LinkInfo| {
            p.group == self.context.group || Some(p.index) == self.vxlan_port
        };
        ports.iter().any(|p| !own(&p))
    }

    /// This network no longer uses the `mangle` tables its isolation rules went into: the last
    /// isolated network of this process deletes one its rules created, once empty (not when
    /// the rules stay: `kept`).
    fn release_mangle(&self, kept: bool) {
        if let Some(isolation) = &self.isolation {
            for v6 in isolation.families_v6() {
                crate::nat::release_table(&self.context.host, v6, "mangle", kept);
            }
        }
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
                    trace::swallowed!(&"keeping a bridged network", &e);
                    false
                }),
            Err(e) => {
                trace::swallowed!(&"keeping a bridged network", &e);
                false
            }
        };
        for rules in self.rules.iter_mut().chain(&mut self.isolation) {
            unmarked &= rules.keep_blocking();
        }
        // The router-message filter matches the link group the ports just left: it would
        // match nothing, and a later network given the same group would find it in the way.
        if let Some(filter) = self.router_messages.take() {
            if let Err(e) = filter.remove() {
                trace::swallowed!(&"keeping a bridged network", &e);
                unmarked = false;
            }
        }
        unmarked
    }

    /// Installs the router-message filter if the network wants one, has none yet, and
    /// `member` has IPv6 (see [`BridgedNetworkBuilder::filter_router_messages`]).
    pub(super) async fn filter_router_messages_for(&mut self, member: &member::Planned) {
        let c = &self.context;
        if !c.filter_router_messages
            || self.router_messages.is_some()
            || !member.has_ipv6(c.has_ipv6, c.link_local_ipv6)
        {
            return;
        }
        self.router_messages = RouterMessageFilter::install_on_worker(&c.host, c.group).await;
        self.context.router_messages_filtered = self.router_messages.is_some();
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
        let last = if self.added_gateways.is_empty() {
            true
        } else {
            match crate::link::lookup::dump_ports(&self.context.host, self.context.bridge.index())
                .await
            {
                Ok(ports) => !self.others_on_bridge(&ports),
                // Unknown: leave the shared addresses rather than take them from another user.
                Err(_) => false,
            }
        };
        let nl = self.context.host.nl().await;
        match nl {
            Ok(nl) => {
                let replies: Vec<_> = self
                    .removals(last)
                    .into_iter()
                    .map(|m| nl.send(m, 0))
                    .collect();
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
        for rules in self.rules.iter().chain(&self.isolation) {
            if let Err(e) = rules.remove().await {
                errors.push(e);
            }
        }
        if let Some(filter) = &self.router_messages {
            if let Err(e) = filter.remove_on_worker().await {
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
        let last = self.added_gateways.is_empty() || {
            let mut request = netlink_packet_route::link::LinkMessage::default();
            request
                .attributes
                .push(netlink_packet_route::link::LinkAttribute::Controller(
                    self.context.bridge.index(),
                ));
            match self.context.host.blocking_dump(
                RouteNetlinkMessage::GetLink(crate::netlink::msg::without_stats(request)),
                BLOCKING_TIMEOUT,
            ) {
                Ok(Ok(messages)) => {
                    let ports: Vec<_> = messages
                        .iter()
                        .filter_map(|m| match m {
                            RouteNetlinkMessage::NewLink(l) => {
                                Some(crate::link::LinkInfo::from_message(l))
                            }
                            _ => None,
                        })
                        .filter(|l| l.controller == Some(self.context.bridge.index()))
                        .collect();
                    !self.others_on_bridge(&ports)
                }
                // Unknown: leave the shared addresses rather than take them from another user.
                _ => false,
            }
        };
        let removals = self.removals(last).into_iter().map(|m| (m, 0)).collect();
        match self.context.host.blocking_acks(removals, BLOCKING_TIMEOUT) {
            Ok(answers) => errors.extend(answers.into_iter().filter_map(|a| match a {
                Err(e) if !e.is_not_found() => {
                    Some(e.into_error("delete the links of", what.clone()))
                }
                _ => None,
            })),
            Err(e) => errors.push(Error::os("delete the links of", what.clone(), e)),
        }
        for rules in self.rules.iter().chain(&self.isolation) {
            if let Err(e) = rules.remove_blocking() {
                errors.push(e);
            }
        }
        if let Some(Err(e)) = self
            .router_messages
            .as_ref()
            .map(RouterMessageFilter::remove)
        {
            errors.push(e);
        }
        Error::collect(what, errors)
    }

    fn finish(self, removed: bool) -> Result<()> {
        let what = self.describe();
        self.release_mangle(!removed);
        let mut errors = Vec::new();
        for member in self.members {
            let Member { impaired, ns, .. } = member;
            // The namespace's owning handle first: an anonymous one is then doomed, and an
            // impaired member's TAP (its link is gone) is left to the kernel to delete with
            // it (see `impair::divert`). The relay, which still holds the namespace, goes next.
            if let Err(e) = ns.close() {
                errors.push(e);
            }
            if let Some(impaired) = &impaired {
                impaired.leave_to_namespace();
            }
            drop(impaired);
        }
        if removed {
            owner::release_group(self.context.group);
        } else {
            // Links may still be in the group: never hand its number to another network.
            tracing::warn!(
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
/// host-side veth end share one **link group** (`ip link ... group N`;
/// [`link_group`](Self::link_group)), and teardown is a single `RTM_DELLINK` for the group — what
/// `ip link del group N` sends: the kernel unregisters them all in one batch, and deleting a veth
/// end deletes its peer inside the member's namespace. Do not put other links in that group.
///
/// # Large networks and the kernel's neighbour tables
///
/// Every member that talks to the gateway needs two neighbour (ARP or NDP) entries: its own for
/// the gateway, and the host namespace's for it. The kernel keeps them in one table per IP
/// version shared by **all** namespaces, and refuses new entries past
/// `net.ipv4.neigh.default.gc_thresh3` (and `net.ipv6.…` for IPv6; 1024 by default, settable
/// only in the initial namespace) while the old ones are younger than a few seconds. Measured
/// on this crate's test machine, with every member pinging the gateway right after `create`:
/// 400 and 500 members lost nothing (800 and 1001 entries), 1000 members lost 42 of 1000 pings
/// (the kernel counted 51 "table full" events). So above about 500 members — fewer when other
/// namespaces hold entries, say those of a network torn down moments ago — raise both
/// `gc_thresh3` (and `gc_thresh2`) in the initial namespace; a network larger than
/// `gc_thresh3 / 2` logs a `WARN` event saying so where the limit is readable.
///
/// # Sharing an existing bridge
///
/// Several networks, in one process or several, may join one
/// [existing bridge](BridgedNetworkBuilder::existing_bridge) (a runtime's `cni0`):
///
/// * each has its own link group and FORWARD rule tag, and removes only its own;
/// * joining pins the bridge's MAC (sets the one it has): a bridge whose MAC was never set
///   follows its lowest port and changes it when that port goes, which would leave the other
///   networks' members with a stale neighbour entry for the gateway;
/// * a gateway address a network adds is marked shared in the kernel object itself (address
///   protocol 110, `proto 110` in `ip address`; kernel 5.18 and later — older kernels drop
///   the mark, and the last network then leaves an address it did not add itself), so every
///   process sees it; a network removes the shared gateways only when no other port (of
///   another network, or of anyone: an uplink, a VM's TAP) is left on the bridge, whichever
///   network added them. An address the bridge had otherwise (the runtime's own) is never
///   removed. The decision is not atomic across processes: a network joining at the very
///   moment the last other one leaves can find its gateway gone, and two networks leaving at
///   once can both keep it (it is then left on the bridge).
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

    /// A masquerade for the network's subnets (traffic among them keeps its addresses): its
    /// members reach out with the host's address. The guard is the caller's; see
    /// [`nat`](crate::nat).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(net: &netns_kit::BridgedNetwork) -> netns_kit::Result<()> {
    /// let masq = net.masquerade().create_blocking()?;
    /// # drop(masq); Ok(()) }
    /// ```
    pub fn masquerade(&self) -> crate::nat::MasqueradeBuilder {
        let bridge = self.bridge();
        let mut builder = crate::nat::masquerade().host(&Namespace::view(bridge.ns().clone()));
        for gateway in self.gateways() {
            builder = builder
                .source(IpNetwork::new(gateway.network(), gateway.prefix()).unwrap_or(*gateway));
        }
        builder
    }

    /// Published ports of the host leading to members: the host, the hairpin subnets (the
    /// network's, so members reach each other through the host's addresses) and the bridge
    /// (for [`localhost`](crate::nat::PublishBuilder::localhost)) filled in. Add the mappings;
    /// the guard is the caller's. See [`nat`](crate::nat).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(net: &netns_kit::BridgedNetwork) -> netns_kit::Result<()> {
    /// use netns_kit::nat::PortMapping;
    /// let ports = net
    ///     .publish()
    ///     .map(PortMapping::tcp(8080, "10.0.40.2:80".parse().unwrap()))
    ///     .create_blocking()?;
    /// # drop(ports); Ok(()) }
    /// ```
    pub fn publish(&self) -> crate::nat::PublishBuilder {
        let bridge = self.bridge();
        let mut builder = crate::nat::publish()
            .host(&Namespace::view(bridge.ns().clone()))
            .via(bridge.name());
        for gateway in self.gateways() {
            builder = builder.hairpin(*gateway);
        }
        builder
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
        resource.filter_router_messages_for(&planned).await;
        let context = resource.context.clone();
        let member = match member::build(&context, planned, member::quick_check(1)).await {
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
        // Its link deleted, its namespace closed: its TAP may go with the namespace (see
        // `finish`).
        if let Some(impaired) = &member.impaired {
            impaired.leave_to_namespace();
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
        resource.release_mangle(true);
        for member in &mut resource.members {
            member.keep_namespace();
        }
        if unmarked {
            owner::release_group(resource.context.group);
        } else {
            // Something still carries the group: never hand its number to another network,
            // whose teardown would delete what was kept.
            tracing::warn!(
                group = resource.context.group,
                "link group not reused: kept links may still be in it"
            );
        }
        self.0.disarm();
        self
    }
}

/// Whether the kernel says the MAC of bridge `name` (index `index`, MAC `mac`) was set
/// explicitly already: its `addr_assign_type` is 3 (`NET_ADDR_SET`, whoever set it), after
/// which a bridge no longer follows its ports' MACs. Netlink does not carry it; sysfs does, for
/// the namespace of whoever mounted it, which need not be the bridge's: the caller asks only for
/// a bridge in the calling thread's own namespace, and sysfs is believed only where
/// `/sys/class/net/NAME` has the same index and MAC (a same-named link of another namespace
/// with another index or MAC is told apart; one with the same MAC as well is not, which takes
/// a MAC copied on purpose). Anything else (no sysfs, unreadable) counts as not set, and the
/// MAC is set as before.
fn mac_set_already(name: &str, index: u32, mac: crate::link::MacAddr) -> bool {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let read = |file: &str| {
        crate::sys::read_small(dir.join(file))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    read("ifindex") == index.to_string()
        && read("address").eq_ignore_ascii_case(&mac.to_string())
        && read("addr_assign_type") == "3"
}
