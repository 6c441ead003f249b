//! A lab described in a file (see [`Topology`]). The format is strict on purpose: a misspelt
//! key silently ignored would build a different lab than the one described.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::{Lab, plan_lan};
use crate::{
    error::{Error, Result},
    impair::{Direction, Distribution, Impairment, Percent, Rate, parse::duration},
    topology::{MemberSpec, bridged, connect, routed},
};

/// A lab described in a file: hosts, LANs (optionally behind routers) and links, in TOML or
/// JSON, built in one call ([`Lab::add_topology`]).
///
/// ```toml
/// hosts = ["monitor"]            # hosts with no network of their own (optional)
///
/// [[lan]]                        # a bridge; gateway .1, hosts .2, .3, ... in order
/// subnets = ["10.40.1.0/24", "fd40:1::/64"]
/// hosts = ["web1", "web2"]
/// router = "r1"                  # optional: the gateway is router r1 (forwarding on there)
///
/// [[lan]]
/// subnets = ["10.40.2.0/24"]
/// hosts = ["db1"]
/// router = "r1"
///
/// [[link]]                       # a cable: a gets .1, b gets .2 of each subnet
/// a = "db1"
/// b = "monitor"
/// subnets = ["10.40.9.0/30"]
/// impair = { delay = "5ms", rate = "100mbit" }   # optional: both ends, what each sends
///
/// [impair.web2]                  # optional: what host web2 sends, on all its interfaces
/// delay = "50ms"
/// jitter = "5ms"
/// loss = "1%"
/// ```
///
/// The format is strict: an unknown key is an error naming it (so a misspelt `subnet` is not
/// silently ignored), as is every mistake [`Lab::add_topology`] can find before making anything — a
/// bad subnet, a LAN too small, a host on two LANs (it would get two default routes), a router
/// that is also a member, a router with a single subnet, an impairment value that does not parse
/// or an impairment of an unknown host. Hosts are made in the order they first appear; the
/// impairments (see [`ImpairSpec`] and [`crate::impair`]) come last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Hosts with no LAN (they may still have links).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// LANs, `[[lan]]` in TOML.
    #[serde(default, rename = "lan")]
    pub lans: Vec<LanSpec>,
    /// Links, `[[link]]` in TOML.
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSpec>,
    /// Impairments of what hosts send, by host name (`[impair.HOST]` in TOML).
    #[serde(default)]
    pub impair: BTreeMap<String, ImpairSpec>,
}

/// An impairment in a [`Topology`], in tc-netem(8)'s words: every key optional, values as
/// `tc` spells them (`"50ms"`, `"1%"`, `"10mbit"`); see [`Impairment`] for what each does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpairSpec {
    /// `"50ms"`.
    #[serde(default)]
    pub delay: Option<String>,
    /// `"5ms"` (needs a delay).
    #[serde(default)]
    pub jitter: Option<String>,
    /// `"uniform"` (the default) or `"normal"`.
    #[serde(default)]
    pub distribution: Option<String>,
    /// `"1%"`.
    #[serde(default)]
    pub loss: Option<String>,
    /// `"0.5%"`.
    #[serde(default)]
    pub duplicate: Option<String>,
    /// `"25%"` (needs a delay).
    #[serde(default)]
    pub reorder: Option<String>,
    /// `"0.1%"`.
    #[serde(default)]
    pub corrupt: Option<String>,
    /// `"10mbit"`.
    #[serde(default)]
    pub rate: Option<String>,
    /// Queue limit in packets.
    #[serde(default)]
    pub limit: Option<u32>,
}

impl ImpairSpec {
    /// The impairment this describes; errors name `object` and the key.
    pub fn to_impairment(&self, object: &str) -> Result<Impairment> {
        let key = |name: &str, e: Error| match e {
            Error::InvalidInput { reason, .. } => {
                Error::invalid(format!("{object}: {name}"), reason)
            }
            e => e,
        };
        let mut imp = Impairment::new();
        if let Some(v) = &self.delay {
            imp = imp.delay(duration(v).map_err(|e| key("delay", e))?);
        }
        if let Some(v) = &self.jitter {
            imp = imp.jitter(duration(v).map_err(|e| key("jitter", e))?);
        }
        match self.distribution.as_deref() {
            None | Some("uniform") => {}
            Some("normal") => imp = imp.distribution(Distribution::Normal),
            Some(other) => {
                return Err(Error::invalid(
                    format!("{object}: distribution"),
                    format!("{other:?} is not one of \"uniform\", \"normal\""),
                ));
            }
        }
        if let Some(v) = &self.loss {
            imp = imp.loss(v.parse::<Percent>().map_err(|e| key("loss", e))?);
        }
        if let Some(v) = &self.duplicate {
            imp = imp.duplicate(v.parse::<Percent>().map_err(|e| key("duplicate", e))?);
        }
        if let Some(v) = &self.reorder {
            imp = imp.reorder(v.parse::<Percent>().map_err(|e| key("reorder", e))?);
        }
        if let Some(v) = &self.corrupt {
            imp = imp.corrupt(v.parse::<Percent>().map_err(|e| key("corrupt", e))?);
        }
        if let Some(v) = &self.rate {
            imp = imp.rate(v.parse::<Rate>().map_err(|e| key("rate", e))?);
        }
        if let Some(v) = self.limit {
            imp = imp.limit(v);
        }
        imp.validate(|| object.to_owned())?;
        Ok(imp)
    }
}

/// A LAN of a [`Topology`]: a bridge, its subnets (one per IP version) and hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanSpec {
    /// One subnet per IP version (`10.0.0.0/24`); the gateway is its first address, the hosts
    /// get the next ones in order.
    pub subnets: Vec<String>,
    /// The hosts on it, each with a default route via the gateway.
    pub hosts: Vec<String>,
    /// The router whose address the gateway is (the bridge then lives in the router, which
    /// forwards between its subnets). Without one, the bridge lives in the lab's host
    /// namespace and the gateway leads nowhere else.
    #[serde(default)]
    pub router: Option<String>,
}

/// A link of a [`Topology`]: a veth pair between two hosts, `a` taking the first address of
/// each subnet and `b` the second. No default routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One end.
    pub a: String,
    /// The other end.
    pub b: String,
    /// One subnet per IP version.
    pub subnets: Vec<String>,
    /// The interface names at `a` and at `b` (default: `to-B` at `a` and `to-A` at `b`,
    /// shortened to 15 bytes).
    #[serde(default)]
    pub names: Option<(String, String)>,
    /// An impairment of what each end sends (`impair = { delay = "5ms" }`).
    #[serde(default)]
    pub impair: Option<ImpairSpec>,
}

impl Topology {
    /// Reads a topology from TOML text.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] with the parser's message (line, column, unknown key).
    pub fn from_toml(text: &str) -> Result<Topology> {
        toml::from_str(text).map_err(|e| Error::invalid("topology (TOML)", e.to_string()))
    }

    /// Reads a topology from JSON text.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] with the parser's message.
    pub fn from_json(text: &str) -> Result<Topology> {
        serde_json::from_str(text).map_err(|e| Error::invalid("topology (JSON)", e.to_string()))
    }

    /// Reads a topology file: JSON if its name ends in `.json`, TOML otherwise.
    ///
    /// # Errors
    ///
    /// The file's read error, or those of [`from_toml`](Self::from_toml) and
    /// [`from_json`](Self::from_json), naming the file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Topology> {
        let path = path.as_ref();
        let object = format!("topology file {}", path.display());
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::os("read", object.clone(), e))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Topology::from_json(&text)
        } else {
            Topology::from_toml(&text)
        };
        parsed.map_err(|e| match e {
            Error::InvalidInput { reason, .. } => Error::invalid(object, reason),
            e => e,
        })
    }

    /// Every host, in the order it first appears (explicit hosts, LANs, routers, links).
    fn all_hosts(&self) -> Vec<&str> {
        let lans = self.lans.iter().flat_map(|lan| {
            lan.hosts
                .iter()
                .map(String::as_str)
                .chain(lan.router.as_deref())
        });
        let links = self.links.iter().flat_map(|l| [l.a.as_str(), l.b.as_str()]);
        let mut all: Vec<&str> = Vec::new();
        for h in self
            .hosts
            .iter()
            .map(String::as_str)
            .chain(lans)
            .chain(links)
        {
            if !all.contains(&h) {
                all.push(h);
            }
        }
        all
    }

    /// Checks what can be checked before anything is made.
    fn validate(&self) -> Result<()> {
        for host in self.all_hosts() {
            super::check_label("host", host)?;
        }
        let mut lan_of: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, lan) in self.lans.iter().enumerate() {
            let object = format!("topology LAN {i}");
            let subnets = parse_subnets(&object, &lan.subnets)?;
            plan_lan(&object, &subnets, &lan.hosts)?;
            for h in &lan.hosts {
                if let Some(first) = lan_of.insert(h, i) {
                    return Err(Error::invalid(
                        object,
                        format!(
                            "host {h:?} is on LAN {first} too; a host is on one LAN (its default route), joined to others by links or routers"
                        ),
                    ));
                }
            }
        }
        let mut routers: BTreeMap<&str, usize> = BTreeMap::new();
        for lan in &self.lans {
            if let Some(r) = &lan.router {
                *routers.entry(r).or_default() += 1;
            }
        }
        for (r, lans) in &routers {
            if let Some(i) = lan_of.get(r) {
                return Err(Error::invalid(
                    format!("topology router {r:?}"),
                    format!(
                        "it is also a host of LAN {i}; a router is the LANs' gateway, not a member"
                    ),
                ));
            }
            if *lans < 2 {
                return Err(Error::invalid(
                    format!("topology router {r:?}"),
                    "a router joins two or more LANs; for one, leave `router` out",
                ));
            }
        }
        for (i, link) in self.links.iter().enumerate() {
            let object = format!("topology link {i} ({} <-> {})", link.a, link.b);
            if link.a == link.b {
                return Err(Error::invalid(object, "both ends are the same host"));
            }
            link_addresses(&object, &link.subnets)?;
            if let Some(spec) = &link.impair {
                spec.to_impairment(&format!("{object} impair"))?;
            }
        }
        let hosts = self.all_hosts();
        for (host, spec) in &self.impair {
            let object = format!("topology impair.{host}");
            if !hosts.contains(&host.as_str()) {
                return Err(Error::invalid(
                    object,
                    "no host of the topology has this name",
                ));
            }
            spec.to_impairment(&object)?;
            // `[impair.HOST]` covers every interface of the host, the ends of its links too.
            let overlap = self
                .links
                .iter()
                .position(|l| l.impair.is_some() && (l.a == *host || l.b == *host));
            if let Some(i) = overlap {
                return Err(Error::invalid(
                    object,
                    format!(
                        "link {i} has an `impair` of its own at this host's end, and [impair.{host}] covers every interface of {host:?} already: give one of them"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Parses subnets, naming the object on error.
fn parse_subnets(object: &str, subnets: &[String]) -> Result<Vec<IpNetwork>> {
    subnets
        .iter()
        .map(|s| {
            s.parse::<IpNetwork>()
                .map_err(|e| Error::invalid(object.to_owned(), format!("subnet {s:?}: {e}")))
        })
        .collect()
}

/// The address pairs of a link: the first and second address of each subnet.
fn link_addresses(object: &str, subnets: &[String]) -> Result<Vec<(IpNetwork, IpNetwork)>> {
    let subnets = parse_subnets(object, subnets)?;
    if subnets.is_empty() {
        return Err(Error::invalid(
            object,
            "give it a subnet (one per IP version)",
        ));
    }
    let mut pairs = Vec::new();
    for subnet in subnets {
        let addresses = plan_lan(object, &[subnet], &["b".to_owned()])?;
        pairs.push((addresses.gateways[0], addresses.addresses[0][0]));
    }
    Ok(pairs)
}

/// An interface name `to-OTHER`, at most 15 bytes.
fn towards(other: &str) -> String {
    let mut name = format!("to-{other}");
    name.truncate(15);
    name
}

impl Lab {
    /// Builds `topology` in this lab, in one call: its hosts, then the LANs without a
    /// router, then each router with its LANs, then the links. Everything that can be is
    /// checked before anything is made; if a later step fails (the kernel refuses), what
    /// was built stays in the lab and goes with it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the LAN, router, link or host at fault; the errors
    /// of [`Lab::add_host`], [`Lab::add_lan`], [`Lab::add_routed`] and [`Lab::add_link`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// use netns_kit::lab::Topology;
    /// let topology = Topology::from_toml(r#"
    ///     [[lan]]
    ///     subnets = ["10.0.0.0/24"]
    ///     hosts = ["db", "app"]
    /// "#)?;
    /// lab.add_topology(&topology).await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_topology(&mut self, topology: &Topology) -> Result<()> {
        topology.validate()?;
        for host in topology.all_hosts() {
            if self.host(host).is_err() {
                self.add_host(host).await?;
            }
        }
        for lan in topology.lans.iter().filter(|l| l.router.is_none()) {
            self.add_lan(lan.subnets.clone(), lan.hosts.clone()).await?;
        }
        let mut routers: Vec<&str> = Vec::new();
        for lan in &topology.lans {
            if let Some(r) = lan.router.as_deref() {
                if !routers.contains(&r) {
                    routers.push(r);
                }
            }
        }
        for router in routers {
            let mut net = routed().router(self.host(router)?);
            for (i, lan) in topology.lans.iter().enumerate() {
                if lan.router.as_deref() != Some(router) {
                    continue;
                }
                let object = format!("topology LAN {i}");
                let subnets = parse_subnets(&object, &lan.subnets)?;
                let plan = plan_lan(&object, &subnets, &lan.hosts)?;
                let mut b = bridged();
                for gw in plan.gateways {
                    b = b.gateway(gw);
                }
                for (host, addresses) in lan.hosts.iter().zip(plan.addresses) {
                    let member = addresses
                        .into_iter()
                        .fold(MemberSpec::in_namespace(self.host(host)?), |m, a| {
                            m.address(a)
                        });
                    b = b.member(member);
                }
                net = net.lan(b);
            }
            self.add_routed(net).await?;
        }
        for (i, link) in topology.links.iter().enumerate() {
            let object = format!("topology link {i} ({} <-> {})", link.a, link.b);
            let pairs = link_addresses(&object, &link.subnets)?;
            let (a_name, b_name) = link
                .names
                .clone()
                .unwrap_or_else(|| (towards(&link.b), towards(&link.a)));
            let mut builder = connect(self.host(&link.a)?, self.host(&link.b)?)
                .names(&a_name, &b_name)
                .default_routes(false);
            for (a, b) in pairs {
                builder = builder.address(a, b);
            }
            self.add_link(builder).await?;
            if let Some(spec) = &link.impair {
                let imp = spec.to_impairment(&format!("{object} impair"))?;
                self.impair_interface(&link.a, &a_name, Direction::Outbound, &imp)
                    .await?;
                self.impair_interface(&link.b, &b_name, Direction::Outbound, &imp)
                    .await?;
            }
        }
        for (host, spec) in &topology.impair {
            let imp = spec.to_impairment(&format!("topology impair.{host}"))?;
            self.impair(host, &imp).await?;
        }
        Ok(())
    }

    /// The blocking form of [`add_topology`](Self::add_topology): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn add_topology_blocking(&mut self, topology: &Topology) -> Result<()> {
        crate::netlink::block_on(self.add_topology(topology))
    }
}
