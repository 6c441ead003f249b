//! The invocation: the `CNI_*` environment and the network configuration on stdin, both
//! checked before anything is changed.
//!
//! The configuration keys are the reference `bridge` plugin's (containernetworking-plugins
//! 1.1.1), with its defaults: bridge `cni0`, the kernel's MTU, everything else off. A key that
//! this plugin cannot honour (`macspoofchk`, a `vlan` together with a gateway) is refused with
//! the spec's "unsupported field" error rather than ignored, so nobody gets less isolation than
//! they asked for without knowing.

use netns_kit::{IfName, MacAddr};
use serde_json::{Map, Value};

use crate::spec::{CniError, Result, SUPPORTED, code, version_at_least};

/// The command and the `CNI_*` variables.
#[derive(Debug)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Env {
    pub fn read() -> Result<Env> {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let env = Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            path: var("CNI_PATH"),
        };
        // What each command needs, as libcni's `skel` requires it.
        let needed: &[(&str, &str)] = match env.command.as_str() {
            "ADD" | "CHECK" => &[
                ("CNI_CONTAINERID", &env.container_id),
                ("CNI_NETNS", &env.netns),
                ("CNI_IFNAME", &env.ifname),
                ("CNI_PATH", &env.path),
            ],
            "DEL" => &[
                ("CNI_CONTAINERID", &env.container_id),
                ("CNI_IFNAME", &env.ifname),
                ("CNI_PATH", &env.path),
            ],
            "STATUS" | "GC" => &[("CNI_PATH", &env.path)],
            "VERSION" => &[],
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("unknown CNI_COMMAND: {other}"),
                ));
            }
        };
        let missing: Vec<&str> = needed
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        // As libcni's `skel` checks it: it ends up in iptables comments and IPAM's files.
        if matches!(env.command.as_str(), "ADD" | "DEL" | "CHECK") && !valid_id(&env.container_id) {
            return Err(CniError {
                code: code::INVALID_ENV,
                msg: "invalid characters in containerID".into(),
                details: env.container_id.clone(),
            });
        }
        Ok(env)
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`, libcni's rule for container ids and network names.
fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The network configuration, validated.
#[derive(Debug)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: bool,
    pub mtu: Option<u32>,
    pub hairpin: bool,
    pub promisc: bool,
    pub vlan: u16,
    pub enable_dad: bool,
    /// `ipam.type`; none means layer 2 only (no addresses).
    pub ipam: Option<String>,
    /// The container interface's MAC (`CNI_ARGS` `MAC`, `args.cni.mac`, `runtimeConfig.mac`).
    pub mac: Option<MacAddr>,
    /// The configuration's own `dns`, which replaces the IPAM plugin's when set.
    pub dns: Map<String, Value>,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC): container id and interface name.
    pub valid_attachments: Vec<(String, String)>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

fn flag(o: &Map<String, Value>, key: &str) -> Result<bool> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(CniError::new(
            code::DECODE,
            format!("failed to load netconf: {key:?} must be true or false, not {v}"),
        )),
    }
}

fn string<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(CniError::new(
            code::DECODE,
            format!("failed to load netconf: {key:?} must be a string, not {v}"),
        )),
    }
}

fn number(o: &Map<String, Value>, key: &str, max: u64) -> Result<Option<u64>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(invalid(format!(
                "invalid {key} {v}: must be a whole number from 0 to {max}"
            ))),
        },
    }
}

fn mac(text: &str, source: &str) -> Result<MacAddr> {
    let mac: MacAddr = text
        .parse()
        .map_err(|_| invalid(format!("invalid MAC address {text:?} in {source}")))?;
    if mac.0[0] & 1 != 0 {
        return Err(invalid(format!(
            "invalid MAC address {text:?} in {source}: it is a multicast address"
        )));
    }
    Ok(mac)
}

impl NetConf {
    /// Parses and checks the configuration for `env.command`. Nothing is changed before this
    /// returns.
    pub fn parse(stdin: &[u8], env: &Env) -> Result<NetConf> {
        let value: Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::new(code::DECODE, format!("failed to load netconf: {e}")))?;
        let o = value.as_object().ok_or_else(|| {
            CniError::new(code::DECODE, "failed to load netconf: not a JSON object")
        })?;
        let cni_version = string(o, "cniVersion")?.unwrap_or("0.1.0").to_owned();
        if !SUPPORTED.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "incompatible CNI versions; config is {cni_version:?}, plugin supports {SUPPORTED:?}"
                ),
            ));
        }
        match env.command.as_str() {
            "CHECK" if !version_at_least(&cni_version, "0.4.0") => {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!("config version {cni_version:?} does not allow CHECK"),
                ));
            }
            "STATUS" | "GC" if !version_at_least(&cni_version, "1.1.0") => {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!(
                        "config version {cni_version:?} does not allow {}",
                        env.command
                    ),
                ));
            }
            _ => {}
        }
        let name = string(o, "name")?.unwrap_or("").to_owned();
        let bridge = string(o, "bridge")?.unwrap_or("cni0").to_owned();
        let bridge = if bridge.is_empty() {
            "cni0".to_owned()
        } else {
            bridge
        };
        let is_default_gateway = flag(o, "isDefaultGateway")?;
        let promisc = flag(o, "promiscMode")?;
        let hairpin = flag(o, "hairpinMode")?;
        let mut conf = NetConf {
            cni_version,
            name,
            is_gateway: flag(o, "isGateway")? || is_default_gateway,
            is_default_gateway,
            force_address: flag(o, "forceAddress")?,
            ip_masq: flag(o, "ipMasq")?,
            mtu: number(o, "mtu", 65535)?
                .filter(|m| *m != 0)
                .map(|m| m as u32),
            hairpin,
            promisc,
            vlan: number(o, "vlan", 4094)?.unwrap_or(0) as u16,
            enable_dad: flag(o, "enabledad")?,
            ipam: None,
            mac: None,
            dns: match o.get("dns") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(d)) => d.clone(),
                Some(v) => {
                    return Err(CniError::new(
                        code::DECODE,
                        format!("failed to load netconf: \"dns\" must be an object, not {v}"),
                    ));
                }
            },
            prev_result: o.get("prevResult").filter(|v| !v.is_null()).cloned(),
            valid_attachments: Vec::new(),
            bridge,
        };
        if let Some(ipam) = o.get("ipam").filter(|v| !v.is_null()) {
            let ipam = ipam.as_object().ok_or_else(|| {
                CniError::new(
                    code::DECODE,
                    "failed to load netconf: \"ipam\" must be an object",
                )
            })?;
            conf.ipam = string(ipam, "type")?
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if let Some(t) = &conf.ipam {
                if t.contains('/') || t == "." || t == ".." {
                    return Err(invalid(format!(
                        "invalid ipam type {t:?}: a plugin name, not a path"
                    )));
                }
            }
        }
        // The spec 1.1.0 text names the key `cni.dev/attachments`; it was corrected to
        // `cni.dev/valid-attachments`, which libcni sends (1.2.3 and later send both).
        if env.command == "GC" {
            // Without the list every attachment would look stale: refuse rather than remove
            // the rules of running containers.
            let list = o
                .get("cni.dev/valid-attachments")
                .or_else(|| o.get("cni.dev/attachments"))
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    invalid(
                        "GC needs the list of valid attachments (\"cni.dev/valid-attachments\")",
                    )
                })?;
            for a in list {
                let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                conf.valid_attachments.push((s("containerID"), s("ifname")));
            }
        }
        // DEL must work with whatever it is given (a partial configuration included): it
        // needs only the names. VERSION needs nothing.
        if matches!(env.command.as_str(), "DEL" | "VERSION") {
            return Ok(conf);
        }
        if conf.name.is_empty() {
            return Err(invalid("the network configuration has no \"name\""));
        }
        if !valid_id(&conf.name) {
            return Err(CniError {
                code: code::INVALID_CONFIG,
                msg: "invalid characters found in network name".into(),
                details: conf.name.clone(),
            });
        }
        IfName::new(&conf.bridge)
            .map_err(|e| invalid(format!("invalid bridge name {:?}: {e}", conf.bridge)))?;
        if matches!(env.command.as_str(), "ADD" | "CHECK") {
            IfName::new(&env.ifname).map_err(|e| {
                CniError::new(
                    code::INVALID_ENV,
                    format!("invalid CNI_IFNAME {:?}: {e}", env.ifname),
                )
            })?;
        }
        if let Some(m) = conf.mtu {
            if m < 68 {
                return Err(invalid(format!(
                    "invalid mtu {m}: must be at least 68 (IPv4's minimum)"
                )));
            }
        }
        if conf.hairpin && conf.promisc {
            return Err(invalid(
                "cannot set hairpin mode and promiscuous mode at the same time.",
            ));
        }
        if flag(o, "macspoofchk")? {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "macspoofchk is not supported by netns-kit-cni (it needs nftables rules this \
                 plugin does not write); use the reference bridge plugin for it",
            ));
        }
        if conf.vlan != 0 && conf.is_gateway {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "vlan together with isGateway is not supported by netns-kit-cni (the gateway \
                 would need a VLAN interface on the bridge)",
            ));
        }
        // The container's MAC: CNI_ARGS, then args, then runtimeConfig, later ones winning as in
        // the reference plugin.
        if !env.args.is_empty() {
            let mut ignore_unknown = false;
            let mut pairs = Vec::new();
            for pair in env.args.split(';').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    CniError::new(code::INVALID_ENV, format!("ARGS: invalid pair {pair:?}"))
                })?;
                if k == "IgnoreUnknown" {
                    ignore_unknown = matches!(v.to_ascii_lowercase().as_str(), "1" | "true");
                }
                pairs.push((k, v));
            }
            for (k, v) in pairs {
                match k {
                    "MAC" => conf.mac = Some(mac(v, "CNI_ARGS")?),
                    "IgnoreUnknown" => {}
                    _ if ignore_unknown => {}
                    _ => {
                        return Err(CniError::new(
                            code::INVALID_ENV,
                            format!("ARGS: can not find type for field {k:?}"),
                        ));
                    }
                }
            }
        }
        let mac_at = |v: Option<&Value>, source: &str| -> Result<Option<MacAddr>> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(m)) => mac(m, source).map(Some),
                Some(v) => Err(CniError::new(
                    code::DECODE,
                    format!("failed to load netconf: {source} must be a string, not {v}"),
                )),
            }
        };
        let args_mac = o
            .get("args")
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("mac"));
        if let Some(m) = mac_at(args_mac, "args.cni.mac")? {
            conf.mac = Some(m);
        }
        let runtime_mac = o.get("runtimeConfig").and_then(|r| r.get("mac"));
        if let Some(m) = mac_at(runtime_mac, "runtimeConfig.mac")? {
            conf.mac = Some(m);
        }
        Ok(conf)
    }
}
