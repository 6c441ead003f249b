//! The invocation: the `CNI_*` environment and the network configuration on stdin, both
//! checked before anything is changed.
//!
//! The configuration keys are the reference `bridge` plugin's (containernetworking-plugins
//! 1.1.1), with its defaults: bridge `cni0`, the kernel's MTU, everything else off. A key that
//! this plugin cannot honour (`macspoofchk`, a `vlan` together with a gateway) is refused with
//! the spec's "unsupported field" error rather than ignored, so nobody gets less isolation than
//! they asked for without knowing.

use netns_kit::{IfName, MacAddr};
use serde::Deserialize;
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

/// The configuration as it comes on stdin: the reference plugin's keys, each optional. Keys
/// whose bad values the reference reports as an invalid configuration rather than a decoding
/// failure (`mtu`, `vlan`) are read as JSON values and checked below.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    bridge: Option<String>,
    is_gateway: Option<bool>,
    is_default_gateway: Option<bool>,
    force_address: Option<bool>,
    ip_masq: Option<bool>,
    mtu: Option<Value>,
    hairpin_mode: Option<bool>,
    promisc_mode: Option<bool>,
    vlan: Option<Value>,
    #[serde(rename = "enabledad")]
    enable_dad: Option<bool>,
    macspoofchk: Option<bool>,
    ipam: Option<RawIpam>,
    dns: Option<Map<String, Value>>,
    prev_result: Option<Value>,
    args: Option<RawArgs>,
    runtime_config: Option<RawRuntimeConfig>,
    /// The spec 1.1.0 text names the key `cni.dev/attachments`; it was corrected to
    /// `cni.dev/valid-attachments`, which libcni sends (1.2.3 and later send both).
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<RawAttachment>>,
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<RawAttachment>>,
}

#[derive(Deserialize)]
struct RawIpam {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawArgs {
    cni: Option<RawCniArgs>,
}

#[derive(Deserialize)]
struct RawCniArgs {
    mac: Option<String>,
}

#[derive(Deserialize)]
struct RawRuntimeConfig {
    mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttachment {
    #[serde(rename = "containerID", default)]
    container_id: String,
    #[serde(default)]
    ifname: String,
}

/// A JSON number from 0 to `max` (`null` or absent: `None`).
fn number(key: &str, v: Option<Value>, max: u64) -> Result<Option<u64>> {
    match v {
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
        let mut input = serde_json::Deserializer::from_slice(stdin);
        let raw: RawConf = serde_path_to_error::deserialize(&mut input).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." {
                String::new()
            } else {
                format!("{at}: ")
            };
            CniError::new(
                code::DECODE,
                format!("failed to load netconf: {at}{}", e.inner()),
            )
        })?;
        // One JSON value and nothing after it, as `serde_json::from_slice` requires.
        input
            .end()
            .map_err(|e| CniError::new(code::DECODE, format!("failed to load netconf: {e}")))?;
        let cni_version = raw.cni_version.clone().unwrap_or_else(|| "0.1.0".into());
        check_version(&cni_version, &env.command)?;
        let mut conf = NetConf::from_raw(raw, cni_version, env)?;
        // DEL must work with whatever it is given (a partial configuration included): it
        // needs only the names. VERSION needs nothing.
        if matches!(env.command.as_str(), "DEL" | "VERSION") {
            return Ok(conf);
        }
        conf.check(env)?;
        conf.mac = container_mac(&env.args, conf.mac)?;
        Ok(conf)
    }

    /// The configuration's values with the reference's defaults; the checks every command
    /// needs (the IPAM plugin's name, GC's list).
    fn from_raw(raw: RawConf, cni_version: String, env: &Env) -> Result<NetConf> {
        let is_default_gateway = raw.is_default_gateway.unwrap_or(false);
        let ipam = raw.ipam.and_then(|i| i.kind).filter(|t| !t.is_empty());
        if let Some(t) = &ipam {
            if t.contains('/') || t == "." || t == ".." {
                return Err(invalid(format!(
                    "invalid ipam type {t:?}: a plugin name, not a path"
                )));
            }
        }
        let valid_attachments = if env.command == "GC" {
            // Without the list every attachment would look stale: refuse rather than remove
            // the rules of running containers.
            raw.valid_attachments
                .or(raw.attachments)
                .ok_or_else(|| {
                    invalid(
                        "GC needs the list of valid attachments (\"cni.dev/valid-attachments\")",
                    )
                })?
                .into_iter()
                .map(|a| (a.container_id, a.ifname))
                .collect()
        } else {
            Vec::new()
        };
        // The container's MAC from the configuration: args, then runtimeConfig (later wins);
        // `CNI_ARGS` comes first (see `container_mac`).
        let args_mac = raw.args.and_then(|a| a.cni).and_then(|c| c.mac);
        let runtime_mac = raw.runtime_config.and_then(|r| r.mac);
        // DEL and VERSION look at names only (see `parse`).
        let checked = !matches!(env.command.as_str(), "DEL" | "VERSION");
        let mut conf_mac = None;
        if let (true, Some(m)) = (checked, args_mac) {
            conf_mac = Some(mac(&m, "args.cni.mac")?);
        }
        if let (true, Some(m)) = (checked, runtime_mac) {
            conf_mac = Some(mac(&m, "runtimeConfig.mac")?);
        }
        if checked && raw.macspoofchk.unwrap_or(false) {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "macspoofchk is not supported by netns-kit-cni (it needs nftables rules this \
                 plugin does not write); use the reference bridge plugin for it",
            ));
        }
        Ok(NetConf {
            cni_version,
            name: raw.name.unwrap_or_default(),
            bridge: raw
                .bridge
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "cni0".into()),
            is_gateway: raw.is_gateway.unwrap_or(false) || is_default_gateway,
            is_default_gateway,
            force_address: raw.force_address.unwrap_or(false),
            ip_masq: raw.ip_masq.unwrap_or(false),
            mtu: number("mtu", raw.mtu, 65535)?
                .filter(|m| *m != 0)
                .map(|m| m as u32),
            hairpin: raw.hairpin_mode.unwrap_or(false),
            promisc: raw.promisc_mode.unwrap_or(false),
            vlan: number("vlan", raw.vlan, 4094)?.unwrap_or(0) as u16,
            enable_dad: raw.enable_dad.unwrap_or(false),
            ipam,
            mac: conf_mac,
            dns: raw.dns.unwrap_or_default(),
            prev_result: raw.prev_result.filter(|v| !v.is_null()),
            valid_attachments,
        })
    }

    /// The checks of ADD, CHECK, STATUS and GC (the MACs and `macspoofchk` are checked first,
    /// in `from_raw`).
    fn check(&self, env: &Env) -> Result<()> {
        if self.name.is_empty() {
            return Err(invalid("the network configuration has no \"name\""));
        }
        if !valid_id(&self.name) {
            return Err(CniError {
                code: code::INVALID_CONFIG,
                msg: "invalid characters found in network name".into(),
                details: self.name.clone(),
            });
        }
        IfName::new(&self.bridge)
            .map_err(|e| invalid(format!("invalid bridge name {:?}: {e}", self.bridge)))?;
        if matches!(env.command.as_str(), "ADD" | "CHECK") {
            IfName::new(&env.ifname).map_err(|e| {
                CniError::new(
                    code::INVALID_ENV,
                    format!("invalid CNI_IFNAME {:?}: {e}", env.ifname),
                )
            })?;
        }
        if let Some(m) = self.mtu {
            if m < 68 {
                return Err(invalid(format!(
                    "invalid mtu {m}: must be at least 68 (IPv4's minimum)"
                )));
            }
        }
        if self.hairpin && self.promisc {
            return Err(invalid(
                "cannot set hairpin mode and promiscuous mode at the same time.",
            ));
        }
        if self.vlan != 0 && self.is_gateway {
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                "vlan together with isGateway is not supported by netns-kit-cni (the gateway \
                 would need a VLAN interface on the bridge)",
            ));
        }
        Ok(())
    }
}

/// Whether the configuration's version allows `command`.
fn check_version(cni_version: &str, command: &str) -> Result<()> {
    if !SUPPORTED.contains(&cni_version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI versions; config is {cni_version:?}, plugin supports \
                 {SUPPORTED:?}"
            ),
        ));
    }
    let allowed = match command {
        "CHECK" => version_at_least(cni_version, "0.4.0"),
        "STATUS" | "GC" => version_at_least(cni_version, "1.1.0"),
        _ => true,
    };
    if !allowed {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("config version {cni_version:?} does not allow {command}"),
        ));
    }
    Ok(())
}

/// The container's MAC: `CNI_ARGS` `MAC=...` (with `IgnoreUnknown` as libcni reads it), unless
/// the configuration's `args` or `runtimeConfig` gave one, which win as in the reference.
fn container_mac(args: &str, from_conf: Option<MacAddr>) -> Result<Option<MacAddr>> {
    let mut found = None;
    if !args.is_empty() {
        let mut ignore_unknown = false;
        let mut pairs = Vec::new();
        for pair in args.split(';').filter(|p| !p.is_empty()) {
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
                "MAC" => found = Some(mac(v, "CNI_ARGS")?),
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
    Ok(from_conf.or(found))
}
