//! `host-local` IPAM in-process: the library's [`ipam::HostLocal`], which reads and writes the
//! reference plugin's store, instead of executing the plugin (~3.5 ms of a ~5 ms ADD).
//!
//! Only where it is sure to give the plugin's answer: ADD and DEL, a configuration whose
//! `ipam` section is read completely here (`ranges` or the older `subnet`, `rangeStart`,
//! `rangeEnd`, `gateway`, `routes`, `dataDir`) and no `resolvConf`; requested addresses from
//! `CNI_ARGS` `IP=`, `args.cni.ips` and `runtimeConfig.ips`. Anything else — an unknown key,
//! a value that does not parse — runs the plugin, so its own error is what the runtime sees.

use std::net::IpAddr;

use netns_kit::{
    Error,
    ipam::{self, HostLocal, IpRange},
    ipnetwork::IpNetwork,
};
use serde_json::Value;

use crate::spec::{CniError, CniResult, IpConfig, Result, RouteConfig, code};

/// What ADD and DEL need, read from the configuration and environment.
pub struct Plan {
    store: HostLocal,
    routes: Vec<RouteConfig>,
    requested: Vec<IpAddr>,
    version: String,
}

const KNOWN: &[&str] = &[
    "type",
    "ranges",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "routes",
    "dataDir",
];

fn ip(v: &Value) -> Option<IpAddr> {
    let s = v.as_str()?;
    s.split('/').next()?.parse().ok()
}

fn range(v: &Value) -> Option<IpRange> {
    let obj = v.as_object()?;
    if obj
        .keys()
        .any(|k| !["subnet", "rangeStart", "rangeEnd", "gateway"].contains(&k.as_str()))
    {
        return None;
    }
    let subnet: IpNetwork = obj.get("subnet")?.as_str()?.parse().ok()?;
    let mut r = IpRange::new(subnet).ok()?;
    if let Some(v) = obj.get("rangeStart") {
        r = r.start(ip(v)?).ok()?;
    }
    if let Some(v) = obj.get("rangeEnd") {
        r = r.end(ip(v)?).ok()?;
    }
    if let Some(v) = obj.get("gateway") {
        r = r.gateway(ip(v)?).ok()?;
    }
    Some(r)
}

/// The plan for this configuration, or `None` where the plugin must run.
pub fn plan(stdin: &[u8], env_args: &str) -> Option<Plan> {
    let conf: Value = serde_json::from_slice(stdin).ok()?;
    let ipam = conf.get("ipam")?.as_object()?;
    if ipam.get("type")?.as_str()? != "host-local"
        || ipam.keys().any(|k| !KNOWN.contains(&k.as_str()))
    {
        return None;
    }
    let name = conf.get("name")?.as_str()?;
    // Ranges the runtime passes (`runtimeConfig.ipRanges`) go in front of the configured ones
    // in the plugin: left to it.
    if conf
        .pointer("/runtimeConfig/ipRanges")
        .is_some_and(|r| r.as_array().is_none_or(|a| !a.is_empty()))
    {
        return None;
    }
    let mut sets: Vec<Vec<IpRange>> = Vec::new();
    if ipam.contains_key("subnet") {
        let mut old = serde_json::Map::new();
        for k in ["subnet", "rangeStart", "rangeEnd", "gateway"] {
            if let Some(v) = ipam.get(k) {
                old.insert(k.to_owned(), v.clone());
            }
        }
        sets.push(vec![range(&Value::Object(old))?]);
    }
    for set in ipam
        .get("ranges")
        .map(Value::as_array)
        .unwrap_or(Some(&Vec::new()))?
    {
        let set: Option<Vec<IpRange>> = set.as_array()?.iter().map(range).collect();
        sets.push(set?);
    }
    let v6_sets = sets
        .iter()
        .filter(|s| s.first().is_some_and(|r| r.subnet().is_ipv6()))
        .count();
    let v4_sets = sets.len() - v6_sets;
    let data_dir = match ipam.get("dataDir") {
        Some(v) => v.as_str()?.to_owned(),
        None => ipam::DEFAULT_DATA_DIR.to_owned(),
    };
    let store = HostLocal::new(
        if data_dir.is_empty() {
            ipam::DEFAULT_DATA_DIR
        } else {
            &data_dir
        },
        name,
        sets,
    )
    .ok()?;
    let mut routes = Vec::new();
    for r in ipam
        .get("routes")
        .map(Value::as_array)
        .unwrap_or(Some(&Vec::new()))?
    {
        let obj = r.as_object()?;
        if obj.keys().any(|k| k != "dst" && k != "gw") {
            return None;
        }
        routes.push(RouteConfig {
            dst: obj.get("dst")?.as_str()?.parse().ok()?,
            gw: match obj.get("gw") {
                Some(g) => Some(g.as_str()?.parse().ok()?),
                None => None,
            },
            extra: serde_json::Map::new(),
        });
    }
    // Requested addresses: CNI_ARGS IP= (the plugin reads it only with known keys or
    // IgnoreUnknown), then args.cni.ips, then runtimeConfig.ips.
    let mut requested: Vec<IpAddr> = Vec::new();
    // The plugin's `LoadArgs`: `K=V` pairs, exactly one `=` each, or it refuses (then it is
    // the one to say so).
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if !env_args.is_empty() {
        for pair in env_args.split(';') {
            let mut kv = pair.split('=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => pairs.push((k, v)),
                _ => return None,
            }
        }
    }
    // The last `IgnoreUnknown` counts, as in the plugin; a value it would not read as a
    // boolean: the plugin decides.
    let ignore_unknown = match pairs.iter().rev().find(|(k, _)| *k == "IgnoreUnknown") {
        None => false,
        // The plugin's `UnmarshallableBool`: lowercased, `1`/`true` or `0`/`false`.
        Some((_, v)) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return None,
        },
    };
    if pairs.iter().filter(|(k, _)| *k == "IP").count() > 1 {
        return None;
    }
    for (k, v) in &pairs {
        match *k {
            "IP" => requested.push(v.parse::<IpAddr>().ok()?.to_canonical()),
            "IgnoreUnknown" => {}
            _ if ignore_unknown => {}
            _ => return None,
        }
    }
    for list in [
        conf.pointer("/args/cni/ips"),
        conf.pointer("/runtimeConfig/ips"),
    ]
    .into_iter()
    .flatten()
    {
        for v in list.as_array()? {
            requested.push(ip(v)?.to_canonical());
        }
    }
    // The plugin keeps them in a map: the same address asked twice is one request.
    let mut unique = Vec::new();
    for ip in requested {
        if !unique.contains(&ip) {
            unique.push(ip);
        }
    }
    let requested = unique;
    let version = conf
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.1.0")
        .to_owned();
    // Results before 0.3.0 hold one address per family: the plugin refuses more.
    let old = ["", "0.1.0", "0.2.0"].contains(&version.as_str());
    if old && (v6_sets > 1 || v4_sets > 1) {
        return None;
    }
    Some(Plan {
        store,
        routes,
        requested,
        version,
    })
}

/// The plugin's error for `e`: what it prints for a range set, `failed to allocate for range
/// N: ...`, and code 999 as for all its errors.
fn cni_error(e: Error) -> CniError {
    match e {
        Error::Unavailable { object, reason } => CniError::new(
            code::INTERNAL,
            format!("failed to allocate for {object}: {reason}"),
        ),
        Error::InvalidInput { object, reason } if object.starts_with("range ") => CniError::new(
            code::INTERNAL,
            format!("failed to allocate for {object}: {reason}"),
        ),
        e => CniError::new(code::INTERNAL, e.to_string()),
    }
}

impl Plan {
    /// ADD: the leases, as the plugin's result in the configuration's version.
    pub fn add(&self, id: &str, ifname: &str) -> Result<Vec<u8>> {
        let leases = self
            .store
            .allocate(id, ifname, &self.requested)
            .map_err(cni_error)?;
        let result = CniResult {
            ips: leases
                .iter()
                .map(|l| IpConfig {
                    address: l.address,
                    gateway: Some(l.gateway),
                    interface: None,
                })
                .collect(),
            routes: self.routes.clone(),
            ..CniResult::default()
        };
        Ok(result.to_json(&self.version)?.to_string().into_bytes())
    }

    /// DEL: every lease of the container's interface released.
    pub fn del(&self, id: &str, ifname: &str) -> Result<Vec<u8>> {
        self.store.release(id, ifname).map_err(cni_error)?;
        Ok(Vec::new())
    }
}
