//! The CNI spec's values: errors, and results in every result format from 0.1.0 to 1.1.0.
//!
//! A result is kept in one internal form (the 1.1.0 one, the richest) and written in the format
//! of the configuration's `cniVersion`; a result read from a delegated IPAM plugin or from
//! `prevResult` is parsed from whichever format it says it is in. The conversions are the
//! spec's: 0.3.0 added `interfaces` and `ips` (with a `version` field, dropped in 1.0.0), and
//! 0.1.0/0.2.0 had one `ip4` and one `ip6` object with their routes inside.

use std::net::IpAddr;

use netns_kit::ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
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

/// A result in any format, as the spec writes it: 0.3.0 and later have `interfaces`, `ips`
/// (with `version` before 1.0.0) and `routes`; 0.1.0 and 0.2.0 one `ip4` and one `ip6` object
/// with their routes inside.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(skip_serializing_if = "Option::is_none")]
    cni_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<WireInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<WireIp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<WireRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<WireLegacyIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<WireLegacyIp>,
    #[serde(default, deserialize_with = "object_or_null")]
    dns: Map<String, Value>,
}

#[derive(Serialize, Deserialize)]
struct WireInterface {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtu: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sandbox: String,
}

#[derive(Serialize, Deserialize)]
struct WireIp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNetwork,
    #[serde(
        default,
        deserialize_with = "ip_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    gateway: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct WireLegacyIp {
    ip: IpNetwork,
    #[serde(
        default,
        deserialize_with = "ip_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<WireRoute>,
}

#[derive(Serialize, Deserialize)]
struct WireRoute {
    dst: IpNetwork,
    #[serde(
        default,
        deserialize_with = "ip_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    gw: Option<IpAddr>,
    /// The 1.1.0 fields (`mtu`, `advmss`, `priority`, `table`, `scope`), kept as given.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// An address, where Go's plugins write an absent one as `""` or `null`.
fn ip_or_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// An object, where a plugin may write `null`.
fn object_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

impl From<WireRoute> for RouteConfig {
    fn from(r: WireRoute) -> RouteConfig {
        RouteConfig {
            dst: r.dst,
            gw: r.gw,
            extra: r.extra,
        }
    }
}

impl CniResult {
    /// Reads a result in the format its own `cniVersion` names (`default_version` if it names
    /// none).
    pub fn parse(v: &Value, default_version: &str, what: &str) -> Result<CniResult> {
        let wire: Wire = serde_path_to_error::deserialize(v).map_err(|e| decode(what, &e))?;
        let version = wire.cni_version.as_deref().unwrap_or(default_version);
        let mut result = CniResult {
            dns: wire.dns,
            ..CniResult::default()
        };
        if !version_at_least(version, "0.3.0") {
            for ipc in [wire.ip4, wire.ip6].into_iter().flatten() {
                result.ips.push(IpConfig {
                    address: ipc.ip,
                    gateway: ipc.gateway,
                    interface: None,
                });
                result
                    .routes
                    .extend(ipc.routes.into_iter().map(RouteConfig::from));
            }
            return Ok(result);
        }
        result.interfaces = wire
            .interfaces
            .into_iter()
            .map(|i| Interface {
                name: i.name,
                mac: i.mac,
                sandbox: i.sandbox,
                mtu: i.mtu,
            })
            .collect();
        result.ips = wire
            .ips
            .into_iter()
            .map(|ipc| IpConfig {
                address: ipc.address,
                gateway: ipc.gateway,
                interface: ipc.interface,
            })
            .collect();
        result.routes = wire.routes.into_iter().map(RouteConfig::from).collect();
        Ok(result)
    }

    /// Writes the result in the format of `version`. The formats before 0.3.0 describe
    /// addresses only: a result without any cannot be written in them.
    pub fn to_json(&self, version: &str) -> Result<Value> {
        let v11 = version_at_least(version, "1.1.0");
        let route = |r: &RouteConfig| WireRoute {
            dst: r.dst,
            gw: r.gw,
            extra: if v11 { r.extra.clone() } else { Map::new() },
        };
        let mut wire = Wire {
            cni_version: Some(version.to_owned()),
            dns: self.dns.clone(),
            ..Wire::default()
        };
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
            let legacy = |v4: bool| {
                let ipc = self.ips.iter().find(|i| i.address.is_ipv4() == v4)?;
                Some(WireLegacyIp {
                    ip: ipc.address,
                    gateway: ipc.gateway,
                    routes: self
                        .routes
                        .iter()
                        .filter(|r| r.dst.is_ipv4() == v4)
                        .map(route)
                        .collect(),
                })
            };
            wire.ip4 = legacy(true);
            wire.ip6 = legacy(false);
        } else {
            wire.interfaces = self
                .interfaces
                .iter()
                .map(|i| WireInterface {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    mtu: i.mtu.filter(|_| v11),
                    sandbox: i.sandbox.clone(),
                })
                .collect();
            let with_version = !version_at_least(version, "1.0.0");
            wire.ips = self
                .ips
                .iter()
                .map(|ipc| WireIp {
                    version: with_version
                        .then(|| if ipc.address.is_ipv4() { "4" } else { "6" }.to_owned()),
                    interface: ipc.interface,
                    address: ipc.address,
                    gateway: ipc.gateway,
                })
                .collect();
            wire.routes = self.routes.iter().map(route).collect();
        }
        serde_json::to_value(wire).map_err(|e| CniError::new(code::INTERNAL, e.to_string()))
    }
}
