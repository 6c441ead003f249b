//! The CNI spec's values: errors, and results in every result format from 0.1.0 to 1.1.0.
//!
//! A result is kept in one internal form (the 1.1.0 one, the richest) and written in the format
//! of the configuration's `cniVersion`; a result read from a delegated IPAM plugin or from
//! `prevResult` is parsed from whichever format it says it is in. The conversions are the
//! spec's: 0.3.0 added `interfaces` and `ips` (with a `version` field, dropped in 1.0.0), and
//! 0.1.0/0.2.0 had one `ip4` and one `ip6` object with their routes inside.

use std::net::IpAddr;

use netns_kit::ipnetwork::IpNetwork;
use serde_json::{Map, Value, json};

/// The versions this plugin speaks: the reference plugins' list plus 1.1.0.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The spec's well-known error codes.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// The plugin is not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// What libcni's `skel` reports for an error without a code of its own.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: printed on stdout as the spec's error object, with a non-zero exit.
#[derive(Debug)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// An error from a delegated plugin, passed on as it came.
    pub fn from_plugin(value: &Value) -> Option<CniError> {
        let code = value.get("code")?.as_u64()?;
        Some(CniError {
            code: u32::try_from(code).unwrap_or(code::INTERNAL),
            msg: value
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            details: value
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        })
    }

    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

/// A library error as a CNI error whose message starts with `what` (the reference's words
/// for the step that failed), then the library's own message naming the object.
pub fn failed(what: impl std::fmt::Display, e: netns_kit::Error) -> CniError {
    let mut err = CniError::from(e);
    err.msg = format!("{what}: {}", err.msg);
    err
}

/// The library's errors name the object and the operation; their causes go to `details`.
impl From<netns_kit::Error> for CniError {
    fn from(e: netns_kit::Error) -> CniError {
        let mut details = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            details.push(s.to_string());
            source = s.source();
        }
        CniError {
            code: code::INTERNAL,
            msg: e.to_string(),
            details: details.join(": "),
        }
    }
}

pub type Result<T> = std::result::Result<T, CniError>;

/// Compares two `x.y.z` versions.
pub fn version_at_least(version: &str, min: &str) -> bool {
    fn parts(v: &str) -> Vec<u32> {
        v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
    }
    parts(version) >= parts(min)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub sandbox: String,
    pub mtu: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpConfig {
    /// The address with its prefix length (`10.22.0.5/16`).
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub dst: IpNetwork,
    pub gw: Option<IpAddr>,
    /// The 1.1.0 fields (`mtu`, `advmss`, `priority`, `table`, `scope`), kept as given.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<RouteConfig>,
    pub dns: Map<String, Value>,
}

fn decode(what: &str, detail: impl std::fmt::Display) -> CniError {
    CniError::new(code::DECODE, format!("failed to decode {what}: {detail}"))
}

fn parse_net(v: &Value, what: &str) -> Result<IpNetwork> {
    let s = v
        .as_str()
        .ok_or_else(|| decode(what, format!("{v} is not a string")))?;
    s.parse().map_err(|e| {
        decode(
            what,
            format!("{s:?} is not an address with a prefix length: {e}"),
        )
    })
}

fn parse_ip(v: &Value, what: &str) -> Result<Option<IpAddr>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|e| decode(what, format!("{s:?} is not an IP address: {e}"))),
        v => Err(decode(what, format!("{v} is not a string"))),
    }
}

fn parse_routes(v: Option<&Value>, what: &str) -> Result<Vec<RouteConfig>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = v
        .as_array()
        .ok_or_else(|| decode(what, "routes is not a list"))?;
    list.iter()
        .map(|r| {
            let mut extra = r.as_object().cloned().unwrap_or_default();
            let dst = parse_net(extra.get("dst").unwrap_or(&Value::Null), "a route's dst")?;
            let gw = parse_ip(extra.get("gw").unwrap_or(&Value::Null), "a route's gw")?;
            extra.remove("dst");
            extra.remove("gw");
            Ok(RouteConfig { dst, gw, extra })
        })
        .collect()
}

impl CniResult {
    /// Reads a result in the format its own `cniVersion` names (`default_version` if it names
    /// none).
    pub fn parse(v: &Value, default_version: &str, what: &str) -> Result<CniResult> {
        let version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or(default_version);
        let mut result = CniResult {
            dns: v
                .get("dns")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            ..CniResult::default()
        };
        if !version_at_least(version, "0.3.0") {
            for key in ["ip4", "ip6"] {
                let Some(ipc) = v.get(key).filter(|v| !v.is_null()) else {
                    continue;
                };
                result.ips.push(IpConfig {
                    address: parse_net(ipc.get("ip").unwrap_or(&Value::Null), what)?,
                    gateway: parse_ip(ipc.get("gateway").unwrap_or(&Value::Null), what)?,
                    interface: None,
                });
                result.routes.extend(parse_routes(ipc.get("routes"), what)?);
            }
            return Ok(result);
        }
        if let Some(list) = v.get("interfaces").and_then(Value::as_array) {
            for i in list {
                let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                result.interfaces.push(Interface {
                    name: s("name"),
                    mac: s("mac"),
                    sandbox: s("sandbox"),
                    mtu: i.get("mtu").and_then(Value::as_u64),
                });
            }
        }
        if let Some(list) = v.get("ips").and_then(Value::as_array) {
            for ipc in list {
                result.ips.push(IpConfig {
                    address: parse_net(ipc.get("address").unwrap_or(&Value::Null), what)?,
                    gateway: parse_ip(ipc.get("gateway").unwrap_or(&Value::Null), what)?,
                    interface: ipc
                        .get("interface")
                        .and_then(Value::as_u64)
                        .and_then(|i| usize::try_from(i).ok()),
                });
            }
        }
        result.routes = parse_routes(v.get("routes"), what)?;
        Ok(result)
    }

    /// Writes the result in the format of `version`. The formats before 0.3.0 describe
    /// addresses only: a result without any cannot be written in them.
    pub fn to_json(&self, version: &str) -> Result<Value> {
        let v11 = version_at_least(version, "1.1.0");
        let route = |r: &RouteConfig| {
            let mut o = Map::new();
            o.insert("dst".into(), Value::String(r.dst.to_string()));
            if let Some(gw) = r.gw {
                o.insert("gw".into(), Value::String(gw.to_string()));
            }
            if v11 {
                o.extend(r.extra.clone());
            }
            Value::Object(o)
        };
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::String(version.to_owned()));
        if !version_at_least(version, "0.3.0") {
            if self.ips.is_empty() {
                return Err(CniError::new(
                    code::INTERNAL,
                    format!(
                        "cannot convert: no valid IP addresses (a result of version {version} \
                         has nothing but addresses; use 0.3.0 or later without IPAM)"
                    ),
                ));
            }
            for (key, v4) in [("ip4", true), ("ip6", false)] {
                let Some(ipc) = self.ips.iter().find(|i| i.address.is_ipv4() == v4) else {
                    continue;
                };
                let mut o = Map::new();
                o.insert("ip".into(), Value::String(ipc.address.to_string()));
                if let Some(gw) = ipc.gateway {
                    o.insert("gateway".into(), Value::String(gw.to_string()));
                }
                let routes: Vec<Value> = self
                    .routes
                    .iter()
                    .filter(|r| r.dst.is_ipv4() == v4)
                    .map(route)
                    .collect();
                if !routes.is_empty() {
                    o.insert("routes".into(), Value::Array(routes));
                }
                out.insert(key.into(), Value::Object(o));
            }
            out.insert("dns".into(), Value::Object(self.dns.clone()));
            return Ok(Value::Object(out));
        }
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), Value::String(i.name.clone()));
                if !i.mac.is_empty() {
                    o.insert("mac".into(), Value::String(i.mac.clone()));
                }
                if let (true, Some(mtu)) = (v11, i.mtu) {
                    o.insert("mtu".into(), json!(mtu));
                }
                if !i.sandbox.is_empty() {
                    o.insert("sandbox".into(), Value::String(i.sandbox.clone()));
                }
                Value::Object(o)
            })
            .collect();
        if !interfaces.is_empty() {
            out.insert("interfaces".into(), Value::Array(interfaces));
        }
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ipc| {
                let mut o = Map::new();
                if !version_at_least(version, "1.0.0") {
                    let family = if ipc.address.is_ipv4() { "4" } else { "6" };
                    o.insert("version".into(), Value::String(family.into()));
                }
                if let Some(i) = ipc.interface {
                    o.insert("interface".into(), json!(i));
                }
                o.insert("address".into(), Value::String(ipc.address.to_string()));
                if let Some(gw) = ipc.gateway {
                    o.insert("gateway".into(), Value::String(gw.to_string()));
                }
                Value::Object(o)
            })
            .collect();
        if !ips.is_empty() {
            out.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            out.insert(
                "routes".into(),
                Value::Array(self.routes.iter().map(route).collect()),
            );
        }
        out.insert("dns".into(), Value::Object(self.dns.clone()));
        Ok(Value::Object(out))
    }
}
