//! CHECK, STATUS and GC: the commands that look at what ADD made (and, for GC, remove what no
//! attachment uses any more), as the reference plugin does.

use crate::{
    conf::{Env, NetConf},
    delegate, masq,
    spec::{CniError, CniResult, Result, code},
};
use netns_kit::{Bridge, Link, LinkInfo, Namespace, ipnetwork::IpNetwork};

use crate::bridge::open_container;

/// CHECK: the container is wired as `prevResult` says.
pub fn check(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<()> {
    let container = open_container(&env.netns)?;
    if let Some(ipam) = &conf.ipam {
        delegate::run_ipam(ipam, &env.path, "CHECK", stdin)?;
    }
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "Required prevResult missing"))?;
    let prev = CniResult::parse(prev, &conf.cni_version, "prevResult")?;
    let host = Namespace::current()?;
    let bridge = check_bridge(&host, conf, &prev)?;
    let (iface, cinfo) = check_container_interface(&container, env, &prev)?;
    // The host end: an interface of the result outside the container that is a veth port of
    // the bridge and the container interface's peer (each names the other's ifindex).
    let port = prev
        .interfaces
        .iter()
        .filter(|i| i.name != conf.bridge && i.sandbox.is_empty())
        .find_map(|i| {
            let l = host.link_by_name_blocking(&i.name).ok()?;
            let info = l.info_blocking().ok()?;
            (info.kind.as_deref() == Some("veth")
                && info.controller == Some(bridge.link().index())
                && info.link == Some(iface.index())
                && cinfo.link == Some(l.index()))
            .then_some(l)
        });
    if port.is_none() {
        return Err(check_failed(format!(
            "CNI veth created for bridge {} was not found",
            conf.bridge
        )));
    }
    check_addresses_and_routes(&container, &iface, env, &prev)
}

/// A failed CHECK, with the reference's words.
fn check_failed(msg: String) -> CniError {
    CniError::new(code::INTERNAL, msg)
}

/// CHECK: the bridge exists, with the MAC the result gave it.
fn check_bridge(host: &Namespace, conf: &NetConf, prev: &CniResult) -> Result<Bridge> {
    let bridge = match Bridge::open_blocking(host, &conf.bridge) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return Err(check_failed(format!(
                "CNI created bridge {} in host namespace was not found",
                conf.bridge
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let info = bridge.link().info_blocking()?;
    if let Some(i) = prev.interfaces.iter().find(|i| i.name == conf.bridge) {
        let mac = info.mac.map(|m| m.to_string()).unwrap_or_default();
        if !i.mac.is_empty() && !i.mac.eq_ignore_ascii_case(&mac) {
            return Err(check_failed(format!(
                "Bridge interface {} Mac doesn't match: {}",
                conf.bridge, i.mac
            )));
        }
    }
    Ok(bridge)
}

/// CHECK: the container's interface is in the result, exists, is a veth, has its MAC.
fn check_container_interface(
    container: &Namespace,
    env: &Env,
    prev: &CniResult,
) -> Result<(Link, LinkInfo)> {
    let Some(cont) = prev
        .interfaces
        .iter()
        .find(|i| i.name == env.ifname && i.sandbox == env.netns)
    else {
        return Err(check_failed(format!(
            "Sandbox in prevResult doesn't match configured netns: {}",
            env.netns
        )));
    };
    let iface = match container.link_by_name_blocking(&env.ifname) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => {
            return Err(check_failed(format!(
                "CNI created interface in container {} not found",
                env.ifname
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let cinfo = iface.info_blocking()?;
    if cinfo.kind.as_deref() != Some("veth") {
        return Err(check_failed(format!(
            "Error: Container interface {} not of type veth",
            env.ifname
        )));
    }
    let cmac = cinfo.mac.map(|m| m.to_string()).unwrap_or_default();
    if !cont.mac.is_empty() && !cont.mac.eq_ignore_ascii_case(&cmac) {
        return Err(check_failed(format!(
            "Interface {} Mac {} doesn't match container Mac: {cmac}",
            env.ifname, cont.mac
        )));
    }
    Ok((iface, cinfo))
}

/// CHECK: the container's interface has the result's addresses, the container the routes.
fn check_addresses_and_routes(
    container: &Namespace,
    iface: &Link,
    env: &Env,
    prev: &CniResult,
) -> Result<()> {
    let present = iface.addresses_blocking()?;
    for ipc in prev.ips.iter().filter(|i| {
        i.interface.is_none_or(|x| {
            prev.interfaces
                .get(x)
                .is_some_and(|i| i.name == env.ifname && i.sandbox == env.netns)
        })
    }) {
        if !present.iter().any(|a| a.address == ipc.address) {
            return Err(check_failed(format!(
                "Failed to match addr {} on interface {}",
                ipc.address, env.ifname
            )));
        }
    }
    let routes = container.routes_blocking()?;
    for r in &prev.routes {
        let dst = IpNetwork::new(r.dst.network(), r.dst.prefix()).unwrap_or(r.dst);
        let found = routes
            .iter()
            .any(|x| x.destination == dst && (r.gw.is_none() || x.gateway == r.gw));
        if !found {
            return Err(check_failed(format!(
                "Failed to match route {} via {:?}",
                r.dst, r.gw
            )));
        }
    }
    Ok(())
}

/// STATUS (1.1.0): ready when the IPAM plugin is there (and, if it speaks 1.1.0, says it is
/// ready), the host's netlink answers, and `iptables-restore` exists when `ipMasq` needs it.
pub fn status(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<()> {
    let unavailable = |msg: String| CniError::new(code::NOT_AVAILABLE, msg);
    Namespace::current()?
        .link_by_name_blocking("lo")
        .map_err(|e| unavailable(format!("netlink does not answer: {e}")))?;
    if let Some(ipam) = &conf.ipam {
        delegate::find(ipam, &env.path).map_err(|e| unavailable(e.msg))?;
        if delegate::supports(ipam, &env.path, "1.1.0")? {
            delegate::run(ipam, &env.path, "STATUS", stdin)?;
        }
    }
    if conf.ip_masq {
        let found = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| d.join("iptables-restore").is_file())
        });
        if !found {
            return Err(unavailable(
                "ipMasq needs iptables-restore, which is not in PATH".to_owned(),
            ));
        }
    }
    Ok(())
}

/// GC (1.1.0): removes the masquerade rules of this network's containers that are not in
/// `cni.dev/valid-attachments`, and passes GC on to an IPAM plugin that speaks 1.1.0.
pub fn gc(env: &Env, conf: &NetConf, stdin: &[u8]) -> Result<()> {
    if conf.ip_masq {
        let valid: Vec<String> = conf
            .valid_attachments
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        masq::collect_garbage(&conf.name, &valid)?;
    }
    if let Some(ipam) = &conf.ipam {
        if delegate::supports(ipam, &env.path, "1.1.0")? {
            delegate::run(ipam, &env.path, "GC", stdin)?;
        }
    }
    Ok(())
}
