//! The `bridge` plugin's commands on the library's blocking API.
//!
//! ADD does what the reference plugin does, in its order: the bridge (created if missing, up),
//! a veth pair whose host end is a port of it — created in one request with its peer already
//! inside the container's namespace, where the reference creates it in the container and
//! moves the other end out —, the IPAM plugin's addresses and routes on the container side, the
//! gateway addresses on the bridge with forwarding, and the masquerade rules. Until the result
//! is printed, what was made is held by the library's guards: any failure removes the veth
//! pair again and releases the addresses (IPAM DEL), so a failed ADD leaves only the bridge,
//! which, as with the reference plugin, belongs to the network and is never removed.
//!
//! The container side's sysctls (`accept_dad`, `arp_notify`) are written before the interface
//! comes up, so its link-local address does not wait for duplicate-address detection, and all
//! of them in one visit to the namespace.

use std::{net::IpAddr, time::Duration};

use netns_kit::{
    Bridge, Link, MacAddr, Namespace, Route, VethPair,
    ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network},
};

use serde_json::Value;

use crate::{
    conf::{Env, NetConf},
    delegate, masq,
    spec::{CniError, CniResult, Interface, IpConfig, Result, RouteConfig, code, failed},
};

/// Opens the container's namespace.
pub fn open_container(path: &str) -> Result<Namespace> {
    Namespace::open_path(path).map_err(|e| CniError {
        code: code::UNKNOWN_CONTAINER,
        ..failed(format_args!("failed to open netns {path:?}"), e)
    })
}

/// The bridge, created (up, with the configured MTU) if it does not exist.
fn ensure_bridge(host: &Namespace, conf: &NetConf) -> Result<Bridge> {
    let not_a_bridge = || {
        CniError::new(
            code::INTERNAL,
            format!("{:?} already exists but is not a bridge", conf.bridge),
        )
    };
    let bridge = match Bridge::open_blocking(host, &conf.bridge) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            // A MAC of its own from the start: the kernel would otherwise give the bridge its
            // lowest port's, changing as ports come and go (and, with gateways, ADDs racing on
            // a new bridge would each pin a different one).
            let mut builder = Bridge::builder(&conf.bridge)
                .namespace(host)
                .mac(random_mac())
                .vlan_filtering(conf.vlan != 0);
            if let Some(mtu) = conf.mtu {
                builder = builder.mtu(mtu);
            }
            match builder.create_blocking() {
                Ok(b) => b.keep(),
                // Another ADD made it meanwhile.
                Err(e) if e.is_already_exists() => {
                    match Bridge::open_blocking(host, &conf.bridge) {
                        Ok(b) => b,
                        Err(e) if e.is_invalid_input() => return Err(not_a_bridge()),
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(failed(format_args!("could not add {:?}", conf.bridge), e)),
            }
        }
        Err(e) if e.is_invalid_input() => return Err(not_a_bridge()),
        Err(e) => return Err(e.into()),
    };
    if conf.promisc {
        bridge.link().set_promisc_blocking(true)?;
    }
    // Router advertisements do not configure the bridge (errors ignored, as the reference).
    let _ = host.set_sysctl_blocking(&conf_key("ipv6", &conf.bridge, "accept_ra"), "0");
    bridge.link().set_up_blocking()?;
    Ok(bridge)
}

/// A random locally administered unicast MAC address.
fn random_mac() -> MacAddr {
    let mut b = [0u8; 6];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = (t ^ u128::from(std::process::id()) << 64).to_le_bytes();
        b.copy_from_slice(&seed[..6]);
    }
    b[0] = (b[0] & 0xfe) | 0x02;
    MacAddr(b)
}

/// A fresh host-side name, `veth` and eight hex digits, as the reference makes them.
fn host_veth_name() -> String {
    let mut bytes = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    if bytes == [0; 4] {
        // No /dev/urandom: the clock and pid are random enough for a name that is checked.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = (t ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    format!(
        "veth{:02x}{:02x}{:02x}{:02x}",
        bytes[0], bytes[1], bytes[2], bytes[3]
    )
}

/// The veth pair: host end on the bridge, `ifname` in the container, both down.
fn create_veth(
    host: &Namespace,
    container: &Namespace,
    bridge: &Bridge,
    conf: &NetConf,
    ifname: &str,
) -> Result<VethPair> {
    let mut attempts = 0;
    loop {
        let name = host_veth_name();
        let mut builder = VethPair::builder(&name, ifname)
            .namespace(host)
            .peer_namespace(container)
            .controller(bridge.link())
            // The reference's veths have no queue length (it sends 0).
            .txqlen(0)
            .up(false);
        if let Some(mtu) = conf.mtu {
            builder = builder.mtu(mtu);
        }
        if let Some(mac) = conf.mac {
            builder = builder.peer_mac(mac);
        }
        match builder.create_blocking() {
            Ok(pair) => return Ok(pair),
            Err(e) if e.is_already_exists() => {
                if container.link_by_name_blocking(ifname).is_ok() {
                    return Err(CniError::new(
                        code::INTERNAL,
                        format!("container veth name provided ({ifname}) already exists"),
                    ));
                }
                attempts += 1;
                if attempts == 5 {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The gateway of `address`'s network: its first address (`10.1.0.0/24` -> `10.1.0.1`).
fn first_address(address: &IpNetwork) -> IpAddr {
    match address {
        IpNetwork::V4(n) => IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from(n.network()).wrapping_add(1),
        )),
        IpNetwork::V6(n) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(n.network()).wrapping_add(1),
        )),
    }
}

/// The reference's `calcGateways`: every IP is the container interface's (index 2); with
/// `isGateway` an IP without a gateway gets its network's first address; with
/// `isDefaultGateway` a default route per family via that gateway, unless the IPAM result has
/// one. Returns the bridge addresses (gateway with the IP's prefix length).
fn calc_gateways(result: &mut CniResult, conf: &NetConf) -> Vec<IpNetwork> {
    let mut gateways = Vec::new();
    let mut default_found = [false, false];
    for i in 0..result.ips.len() {
        let v6 = result.ips[i].address.is_ipv6();
        result.ips[i].interface = Some(2);
        if result.ips[i].gateway.is_none() && conf.is_gateway {
            result.ips[i].gateway = Some(first_address(&result.ips[i].address));
        }
        let gateway = result.ips[i].gateway;
        if conf.is_default_gateway && !default_found[usize::from(v6)] {
            let default: IpNetwork = if v6 {
                IpNetwork::V6(Ipv6Network::new(std::net::Ipv6Addr::UNSPECIFIED, 0).unwrap())
            } else {
                IpNetwork::V4(Ipv4Network::new(std::net::Ipv4Addr::UNSPECIFIED, 0).unwrap())
            };
            let present = result
                .routes
                .iter()
                .any(|r| r.gw.is_some() && r.dst == default);
            if !present {
                result.routes.push(RouteConfig {
                    dst: default,
                    gw: gateway,
                    extra: serde_json::Map::new(),
                });
            }
            default_found[usize::from(v6)] = true;
        }
        if conf.is_gateway {
            if let Some(gw) = gateway {
                if let Ok(net) = IpNetwork::new(gw, result.ips[i].address.prefix()) {
                    gateways.push(net);
                }
            }
        }
    }
    gateways
}

/// The reference's `ensureAddr`: the gateway address on the bridge. An IPv4 bridge has one
/// address per family: a different one is an error, or is replaced with `forceAddress`; IPv6
/// allows several unless their networks overlap.
fn ensure_address(bridge: &Link, gw: &IpNetwork, force: bool) -> Result<()> {
    for a in bridge.addresses_blocking()? {
        let a = a.address;
        if a.is_ipv6() != gw.is_ipv6() {
            continue;
        }
        if a == *gw {
            return Ok(());
        }
        if gw.is_ipv4() || a.contains(gw.ip()) || gw.contains(a.ip()) {
            if force {
                bridge.remove_address_blocking(a)?;
            } else {
                return Err(CniError::new(
                    code::INTERNAL,
                    format!(
                        "{:?} already has an IP address different from {gw}",
                        bridge.name()
                    ),
                ));
            }
        }
    }
    match bridge.add_address_blocking(*gw) {
        Ok(addr) => {
            addr.keep();
        }
        Err(e) if e.is_already_exists() => {}
        Err(e) => {
            return Err(failed(
                format_args!("could not add IP address to {:?}", bridge.name()),
                e,
            ));
        }
    }
    Ok(())
}

/// Writes `net.ipv4.ip_forward` / `net.ipv6.conf.all.forwarding` to 1 unless it already is.
fn enable_forwarding(host: &Namespace, v6: bool) -> Result<()> {
    let key = if v6 {
        "net.ipv6.conf.all.forwarding"
    } else {
        "net.ipv4.ip_forward"
    };
    if host.sysctl_blocking(key)? != "1" {
        host.set_sysctl_blocking(key, "1")
            .map_err(|e| failed("failed to enable forwarding", e))?;
    }
    Ok(())
}

/// Waits until no IPv6 address of `link` is tentative (with `enabledad`), at most 10 s, as the
/// reference's `SettleAddresses`.
fn settle_addresses(link: &Link) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tentative = link
            .addresses_blocking()?
            .iter()
            .any(|a| a.tentative && a.address.is_ipv6());
        if !tentative {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(CniError::new(
                code::INTERNAL,
                format!(
                    "addresses of {:?} still tentative after 10 s (duplicate address?)",
                    link.name()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sysctl key `net.FAMILY.conf.IFNAME.SETTING` (a `.` in the name written as `/`, as
/// sysctl(8) and the library take it).
fn conf_key(family: &str, ifname: &str, setting: &str) -> String {
    format!("net.{family}.conf.{}.{setting}", ifname.replace('.', "/"))
}

/// The container side (the reference's `ConfigureIface`): with addresses (layer 3), its
/// sysctls, IPv6 enabled where it was not, the addresses, up, the routes; without, only up.
fn configure_container(
    container: &Namespace,
    pair: &VethPair,
    result: &CniResult,
    conf: &NetConf,
    ifname: &str,
) -> Result<()> {
    let iface = pair.peer();
    let layer3 = conf.ipam.is_some();
    let mine: Vec<&IpConfig> = result
        .ips
        .iter()
        .filter(|i| i.interface == Some(2))
        .collect();
    if layer3 {
        let ipv6 = mine.iter().any(|i| i.address.is_ipv6());
        container_sysctls(container, conf.enable_dad, ipv6, ifname)?;
        for ipc in &mine {
            iface
                .add_address_blocking(ipc.address)
                .map_err(|e| {
                    failed(
                        format_args!("failed to add IP addr {} to {ifname:?}", ipc.address),
                        e,
                    )
                })?
                .keep();
        }
    }
    iface.set_up_blocking()?;
    if !layer3 {
        return Ok(());
    }
    let gateway = |v6: bool| {
        mine.iter()
            .find(|i| i.address.is_ipv6() == v6 && i.gateway.is_some())
            .and_then(|i| i.gateway)
    };
    if enable_dad_wait(conf, gateway(true)) {
        settle_addresses(iface)?;
    }
    add_routes(container, iface, &result.routes, gateway, ifname)
}

/// The container interface's sysctls, all in one visit to the namespace (inside it, the
/// library writes them from this thread), as the reference sets them: DAD as configured,
/// `arp_notify`, and IPv6 enabled where an IPv6 address is coming.
fn container_sysctls(
    container: &Namespace,
    enable_dad: bool,
    ipv6: bool,
    ifname: &str,
) -> Result<()> {
    let dir = ifname.to_owned();
    container
        .run_blocking(move || -> netns_kit::Result<()> {
            let here = Namespace::current()?;
            let set = |key: String, value: &str| here.set_sysctl_blocking(&key, value);
            // Best effort, as in the reference (older kernels have no enhanced_dad).
            if enable_dad {
                let _ = set(conf_key("ipv6", &dir, "enhanced_dad"), "1");
                let _ = set(conf_key("ipv6", &dir, "accept_dad"), "1");
            } else {
                let _ = set(conf_key("ipv6", &dir, "accept_dad"), "0");
            }
            let _ = set(conf_key("ipv4", &dir, "arp_notify"), "1");
            if ipv6 {
                for x in ["lo", dir.as_str()] {
                    let key = conf_key("ipv6", x, "disable_ipv6");
                    if here.sysctl_blocking(&key).is_ok_and(|v| v != "0") {
                        set(key, "0")?;
                    }
                }
            }
            Ok(())
        })?
        .map_err(|e| {
            CniError::new(
                code::IO,
                format!("failed to enable IPv6 for interface {ifname:?}: {e}"),
            )
        })
}

/// The result's routes in the container, as the reference adds them: `proto boot`, scope
/// global even without a gateway, in front of an existing route to the same destination
/// rather than refused; a route without a gateway of its own goes via its family's gateway.
fn add_routes(
    container: &Namespace,
    iface: &Link,
    routes: &[RouteConfig],
    gateway: impl Fn(bool) -> Option<IpAddr>,
    ifname: &str,
) -> Result<()> {
    for r in routes {
        let gw = r.gw.or_else(|| gateway(r.dst.is_ipv6()));
        let mut builder = Route::builder(r.dst)
            .namespace(container)
            .dev(iface)
            .proto(3)
            .scope(0)
            .exclusive(false);
        if let Some(gw) = gw {
            builder = builder.via(gw);
        }
        builder
            .create_blocking()
            .map_err(|e| {
                let via = gw.map_or_else(|| "<nil>".to_owned(), |g| g.to_string());
                failed(
                    format_args!("failed to add route '{} via {via} dev {ifname}'", r.dst),
                    e,
                )
            })?
            .keep();
    }
    Ok(())
}

/// Whether ADD waits for the container's IPv6 addresses to finish duplicate-address detection:
/// only when it runs (`enabledad`) and there is an IPv6 gateway, as in the reference.
fn enable_dad_wait(conf: &NetConf, v6_gateway: Option<IpAddr>) -> bool {
    conf.enable_dad && v6_gateway.is_some()
}

/// Waits until the host end is operationally up (a bridge port passes traffic only then), at
/// most 2.5 s, as the reference does before it answers; here in 1 ms steps, since the kernel
/// reports it within a millisecond or two of both ends coming up.
fn wait_port_up(port: &Link) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_millis(2550);
    loop {
        let info = port.info_blocking()?;
        if info.oper_state == netns_kit::OperState::Up {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(CniError::new(
                code::INTERNAL,
                format!("bridge port in error state: {:?}", info.oper_state),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The result's interfaces, in the reference's order: the bridge (with the MAC it has now),
/// the host end, the container's.
fn interfaces(bridge: &Bridge, pair: &VethPair, env: &Env) -> Result<Vec<Interface>> {
    let mac = |l: &Link| -> Result<String> {
        Ok(l.info_blocking()?
            .mac
            .map(|m| m.to_string())
            .unwrap_or_default())
    };
    Ok(vec![
        Interface {
            name: bridge.link().name().to_owned(),
            mac: mac(bridge.link())?,
            ..Interface::default()
        },
        Interface {
            name: pair.link().name().to_owned(),
            mac: mac(pair.link())?,
            ..Interface::default()
        },
        Interface {
            name: env.ifname.clone(),
            mac: mac(pair.peer())?,
            sandbox: env.netns.clone(),
            ..Interface::default()
        },
    ])
}

/// ADD: wires the container; returns the result to print.
///
/// An IPAM plugin that is executed is started first and works while the bridge and the veth
/// pair are made (exec-ing it is most of an ADD's time on a node); `host-local` runs
/// in-process instead (see `hostlocal`). The outcome is the reference's, whose order is
/// sequential; on any failure the addresses are released and the masquerade chain removed
/// before the error is returned, and the veth pair's guard removes it.
pub fn add(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<Value> {
    let container = open_container(&env.netns)?;
    let host = Namespace::current()?;
    // The bridge first, as in the reference's order. (Looking for the container's interface on
    // a thread of its own meanwhile was slower: the thread's start and the hand-over cost more
    // than the overlap saved.)
    let bridge = ensure_bridge(&host, conf)?;
    let exists = container.link_by_name_blocking(&env.ifname).is_ok();
    // The interface is there already: this container was added before. Refused before the IPAM
    // plugin runs: asked again, it may hand out a second address, and releasing that one would
    // release the first too.
    if exists {
        return Err(CniError::new(
            code::INTERNAL,
            format!(
                "container veth name provided ({}) already exists",
                env.ifname
            ),
        ));
    }
    // IPAM plugins that need nothing of the interface (`host-local`, `static`) work while the
    // bridge and the pair are made; any other (`dhcp` asks for a lease on the interface) runs
    // once they exist, as in the reference.
    let early = matches!(conf.ipam.as_deref(), Some("host-local" | "static"));
    let mut ipam = match &conf.ipam {
        Some(name) if early => Some(delegate::start_ipam(name, &env.path, "ADD", stdin)?),
        _ => None,
    };
    let release = |ipam: Option<&String>| {
        if let Some(name) = ipam {
            let _ = delegate::run_ipam(name, &env.path, "DEL", stdin);
        }
    };
    let wired = match wire(host, container, bridge, conf, env) {
        Ok(w) => w,
        Err(e) => {
            if let Some(running) = ipam {
                if running.finish().is_ok() {
                    release(conf.ipam.as_ref());
                }
            }
            return Err(e);
        }
    };
    if let (None, Some(name)) = (&ipam, &conf.ipam) {
        ipam = Some(delegate::start_ipam(name, &env.path, "ADD", stdin)?);
    }
    let mut result = CniResult::default();
    match (ipam, &conf.ipam) {
        (Some(running), Some(name)) => {
            let out = running.finish()?;
            // From here on a failure releases the addresses again.
            let chain = masq::chain_name(&conf.name, &env.container_id);
            let mut masquerading = false;
            let configured =
                wired.configure_layer3(conf, env, name, &out, &chain, &mut masquerading);
            match configured {
                Ok(r) => result = r,
                Err(e) => {
                    drop(wired);
                    if masquerading {
                        let _ = masq::teardown(&chain);
                    }
                    release(Some(name));
                    return Err(e);
                }
            }
        }
        _ => {
            // Layer 2 only: the interfaces, up, and nothing else.
            configure_container(&wired.container, &wired.pair, &result, conf, &env.ifname)?;
            result.interfaces = interfaces(&wired.bridge, &wired.pair, env)?;
        }
    }
    // The configuration's `dns` is the result's, as in the reference (which drops the IPAM
    // plugin's).
    result.dns = conf.dns.clone();
    let printed = result.to_json(&conf.cni_version)?;
    wired.pair.keep();
    Ok(printed)
}

/// What ADD made before the addresses: the bridge (with the MAC it had, to pin it again), and
/// the veth pair, whose guard removes it if ADD fails later.
struct Wired {
    host: Namespace,
    container: Namespace,
    bridge: Bridge,
    bridge_mac: Option<MacAddr>,
    pair: VethPair,
}

/// The veth pair on the bridge, with its host end configured.
fn wire(
    host: Namespace,
    container: Namespace,
    bridge: Bridge,
    conf: &NetConf,
    env: &Env,
) -> Result<Wired> {
    let bridge_mac = if conf.is_gateway {
        bridge.link().info_blocking()?.mac
    } else {
        None
    };
    let pair = create_veth(&host, &container, &bridge, conf, &env.ifname)?;
    pair.link().set_up_blocking()?;
    // Router advertisements do not configure the host end (errors ignored, as the reference).
    let _ = host.set_sysctl_blocking(&conf_key("ipv6", pair.link().name(), "accept_ra"), "0");
    if conf.hairpin {
        pair.link().set_hairpin_blocking(true)?;
    }
    if conf.vlan != 0 {
        pair.link()
            .add_bridge_vlan_blocking(conf.vlan, true, true)?;
    }
    Ok(Wired {
        host,
        container,
        bridge,
        bridge_mac,
        pair,
    })
}

impl Wired {
    /// The IPAM plugin's addresses on the container side, the gateways on the bridge, and the
    /// masquerade rules (started first, finished last, as they run in another program). Sets
    /// `masquerading` once rules may exist, for the caller to remove them on failure.
    fn configure_layer3(
        &self,
        conf: &NetConf,
        env: &Env,
        ipam: &str,
        out: &[u8],
        chain: &str,
        masquerading: &mut bool,
    ) -> Result<CniResult> {
        let value: Value = serde_json::from_slice(out).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("failed to decode the result of IPAM plugin {ipam:?}: {e}"),
            )
        })?;
        let ipam_result = CniResult::parse(&value, &conf.cni_version, "the IPAM result")?;
        if ipam_result.ips.is_empty() {
            return Err(CniError::new(
                code::INTERNAL,
                "IPAM plugin returned missing IP config",
            ));
        }
        let mut result = CniResult {
            ips: ipam_result.ips,
            routes: ipam_result.routes,
            ..CniResult::default()
        };
        let gateways = calc_gateways(&mut result, conf);
        if conf.ip_masq {
            let addresses: Vec<IpNetwork> = result.ips.iter().map(|i| i.address).collect();
            *masquerading = true;
            let comment = masq::comment(&conf.name, &env.container_id);
            masq::add(&addresses, chain, &comment)?;
        }
        let configured = (|| {
            configure_container(&self.container, &self.pair, &result, conf, &env.ifname)?;
            wait_port_up(self.pair.link())?;
            if conf.is_gateway {
                self.configure_gateways(&gateways, conf)?;
            }
            result.interfaces = interfaces(&self.bridge, &self.pair, env)?;
            Ok(())
        })();
        configured.map(|()| result)
    }

    /// The gateway addresses on the bridge, forwarding for their families, and the bridge's
    /// MAC pinned.
    fn configure_gateways(&self, gateways: &[IpNetwork], conf: &NetConf) -> Result<()> {
        for v6 in [false, true] {
            let mine: Vec<&IpNetwork> = gateways.iter().filter(|g| g.is_ipv6() == v6).collect();
            for gw in &mine {
                ensure_address(self.bridge.link(), gw, conf.force_address)?;
            }
            if !mine.is_empty() {
                enable_forwarding(&self.host, v6)?;
            }
        }
        // The bridge keeps the MAC it had before this port joined instead of following its
        // ports' lowest one as they come and go (as the reference does: it sets the address it
        // read when it found the bridge).
        if let Some(mac) = self.bridge_mac {
            self.bridge.link().set_mac_blocking(mac)?;
        }
        Ok(())
    }
}

/// DEL: removes the container's interface (and so the pair), releases its addresses, removes
/// its masquerade rules. Whatever is already gone counts as removed; every step is tried even
/// after one failed, and the first failure is reported.
pub fn del(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<()> {
    let mut errors: Vec<CniError> = Vec::new();
    if !env.netns.is_empty() {
        match Namespace::open_path(&env.netns) {
            Ok(container) => match crate::unlink::delete(&container, &env.ifname) {
                Ok(()) => {}
                Err(Some(e)) => errors.push(CniError::new(
                    code::INTERNAL,
                    format!(
                        "failed to delete {:?}: {}",
                        env.ifname,
                        crate::unlink::describe(&e)
                    ),
                )),
                // The ordinary, acknowledged removal.
                Err(None) => match container.link_by_name_blocking(&env.ifname) {
                    Ok(link) => {
                        if let Err(e) = link.delete_blocking() {
                            errors.push(e.into());
                        }
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => errors.push(e.into()),
                },
            },
            // The namespace is gone, or the path no longer is one (its bind mount was
            // removed and a plain file is left).
            Err(e) if e.is_not_found() || e.is_invalid_input() => {}
            Err(e) => errors.push(e.into()),
        }
    }
    // Once the interface is gone (the reference's order: no address is handed out again while
    // it is still in use), the IPAM plugin releases it while the masquerade rules are removed.
    let ipam = conf
        .ipam
        .as_ref()
        .map(|name| delegate::start_ipam(name, &env.path, "DEL", stdin));
    if conf.ip_masq {
        let chain = masq::chain_name(&conf.name, &env.container_id);
        if let Err(e) = masq::teardown(&chain) {
            errors.push(e);
        }
    }
    if let Some(Err(e)) = ipam.map(|started| started.and_then(delegate::RunningIpam::finish)) {
        errors.push(e);
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
