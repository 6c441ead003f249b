//! Reaching out and being reached: masquerade and published ports, as guards.
//!
//! What every container network needs after "give it `eth0`": its members' connections leave
//! through the host with the host's address ([`masquerade`] → [`Masquerade`]), and a port of
//! the host leads to a member's port, like `podman run -p 8080:80` ([`publish`] →
//! [`PublishedPorts`]). Both are `nat` table rules, IPv4 and IPv6, removed with the guard.
//!
//! ```no_run
//! use netns_kit::{MemberSpec, Namespace, bridged, nat::{self, PortMapping}};
//!
//! let host = Namespace::new_blocking()?;
//! host.set_sysctl_blocking("net.ipv4.ip_forward", "1")?;
//! let net = bridged()
//!     .host(&host)
//!     .gateway("10.0.40.1/24")
//!     .member(MemberSpec::new().address("10.0.40.2/24"))
//!     .create_blocking()?;
//! // Members reach out with the host's address...
//! let masq = net.masquerade().create_blocking()?;
//! // ...and the host's port 8080 (also on 127.0.0.1) leads to 10.0.40.2:80.
//! let ports = net
//!     .publish()
//!     .map(PortMapping::tcp(8080, "10.0.40.2:80".parse().unwrap()))
//!     .localhost(true)
//!     .create_blocking()?;
//! # drop((masq, ports));
//! # Ok::<(), netns_kit::Error>(())
//! ```
//!
//! # The rules
//!
//! They are the rules a runtime's tools write, so `iptables-save` shows them and the reference
//! CNI plugins' teardown can remove them:
//!
//! * **masquerade** (as the CNI `bridge` plugin's `ipMasq`): a chain of its own, reached from
//!   `POSTROUTING` by each source (`-s SOURCE -j CHAIN`); in it, traffic to the exempt networks
//!   (by default the sources' own) is accepted and everything else but multicast is
//!   masqueraded.
//! * **published ports** (as the CNI `portmap` plugin): a chain of its own, reached from
//!   `PREROUTING` and `OUTPUT` for local destinations (`-m addrtype --dst-type LOCAL`), so a
//!   port is reached on every address of the host, from outside and from the host itself; in
//!   it, per mapping, a `DNAT` to the member. Connections from a hairpin subnet (another member
//!   of the network, through the host's address) and from `127.0.0.1` (with
//!   [`localhost`](PublishBuilder::localhost), which switches `route_localnet` on the interface
//!   toward the members for as long as the guard lives) are marked with `0x2000` — the bit
//!   `portmap` and netavark use — and masqueraded in `POSTROUTING`, so the member's answer comes
//!   back through the host. That `POSTROUTING` rule is inserted at the top, as `portmap`'s:
//!   a masquerade's exempt-network `ACCEPT` before it would end the chain for a hairpin
//!   connection.
//!
//! Every rule outside the guard's chains carries its comment (`netns-kit:...`, or the one
//! given), which is how removal finds it.
//!
//! # How they are written
//!
//! Straight to nf_tables over netlink ([`Backend::Nftables`]), in `iptables-nft`'s own form,
//! where the `iptables` in `PATH` is the nf_tables one or there is none: one transaction per IP
//! family, no process. A `nat` table or base chain that is missing is created as
//! `iptables-nft` creates it, and deleted again when this process's last guard in that
//! namespace goes, if nobody else put anything in it — so `iptables-save`, `ip6tables-save`
//! and `nft list ruleset` read exactly as before. Where `iptables` is the legacy one
//! ([`Backend::IptablesRestore`]), one `iptables-restore --noflush` per family (a legacy `nat`
//! table, once used, stays, empty).
//!
//! # What else they need
//!
//! Traffic that crosses the host (a member reaching out, a port reached from another host) is
//! *forwarded*: `net.ipv4.ip_forward` (and `net.ipv6.conf.all.forwarding`) must be on in the
//! host namespace — a runtime's decision, not changed here — and a `FORWARD` policy of `DROP`
//! (Docker's) needs the bridge's accept rules
//! ([`BridgedNetworkBuilder::accept_forward`](crate::BridgedNetworkBuilder::accept_forward)).
//! A port reached from the host itself needs neither.
//!
//! After a SIGKILL the rules stay (they live in the host namespace); [`remove_chain`] removes
//! them by chain name, from any process.

mod apply;
pub(crate) use apply::{acquire_table, release_table};
mod nft;
pub(crate) mod router_messages;
mod rule;

use std::{
    hash::{Hash, Hasher},
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    sync::atomic::{AtomicU64, Ordering},
};

use ipnetwork::IpNetwork;

use crate::{
    error::{Error, Result},
    guard::{Guard, Resource},
    ip::IntoIpNetwork,
    netns::Namespace,
    owner,
};

use apply::RuleSet;
pub use rule::{Backend, Protocol};
use rule::{Rule, Target};

/// The packet mark bit that asks for masquerading in `POSTROUTING` (`portmap`'s and netavark's).
pub const MASQUERADE_MARK: u32 = 0x2000;

/// The longest chain name `iptables` accepts.
const CHAIN_MAX: usize = 28;

/// One published port (or range): connections to the host's `host_ports` go to `to`'s ports.
///
/// # Examples
///
/// ```
/// use netns_kit::nat::{PortMapping, Protocol};
///
/// let web = PortMapping::tcp(8080, "10.0.40.2:80".parse().unwrap());
/// // 9000-9009 on the host to 10.0.40.2:7000-7009, on one host address only.
/// let range = PortMapping::new(Protocol::Udp, 9000..=9009, "10.0.40.2".parse().unwrap(), 7000)
///     .host_address("10.9.0.1".parse().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    protocol: Protocol,
    host_ports: (u16, u16),
    host_address: Option<IpAddr>,
    to: IpAddr,
    to_port: u16,
}

impl PortMapping {
    /// Host ports `host_ports` (one, or a range) to `to`'s ports from `to_port` on (in order).
    pub fn new(
        protocol: Protocol,
        host_ports: RangeInclusive<u16>,
        to: IpAddr,
        to_port: u16,
    ) -> Self {
        PortMapping {
            protocol,
            host_ports: (*host_ports.start(), *host_ports.end()),
            host_address: None,
            to,
            to_port,
        }
    }

    /// TCP port `host_port` of the host to `to`.
    pub fn tcp(host_port: u16, to: SocketAddr) -> Self {
        Self::new(Protocol::Tcp, host_port..=host_port, to.ip(), to.port())
    }

    /// UDP port `host_port` of the host to `to`.
    pub fn udp(host_port: u16, to: SocketAddr) -> Self {
        Self::new(Protocol::Udp, host_port..=host_port, to.ip(), to.port())
    }

    /// Only connections to this address of the host (default: every local address).
    pub fn host_address(mut self, address: IpAddr) -> Self {
        self.host_address = Some(address);
        self
    }

    fn to_ports(&self) -> (u16, u16) {
        let len = self.host_ports.1.saturating_sub(self.host_ports.0);
        (self.to_port, self.to_port.saturating_add(len))
    }

    fn validate(&self) -> Result<()> {
        let object = || format!("port mapping {self}");
        let (first, last) = self.host_ports;
        if first == 0 || self.to_port == 0 {
            return Err(Error::invalid(
                object(),
                "port 0 cannot be published or reached",
            ));
        }
        if last < first {
            return Err(Error::invalid(
                object(),
                "the host port range ends before it starts",
            ));
        }
        if u32::from(self.to_port) + u32::from(last - first) > 65535 {
            return Err(Error::invalid(
                object(),
                "the member's port range runs past 65535",
            ));
        }
        let to = self.to;
        if to.is_unspecified() || to.is_multicast() || to.is_loopback() {
            return Err(Error::invalid(
                object(),
                format!("{to} is not a member's address (unspecified, multicast or loopback)"),
            ));
        }
        if let IpAddr::V6(v6) = to {
            if v6.to_ipv4_mapped().is_some() {
                return Err(Error::invalid(
                    object(),
                    "give an IPv4 member as IPv4, not mapped",
                ));
            }
        }
        if let Some(host) = self.host_address {
            if host.is_ipv4() != to.is_ipv4() {
                return Err(Error::invalid(
                    object(),
                    "the host address and the member's address are of different IP versions",
                ));
            }
            if host.is_unspecified() || host.is_multicast() {
                return Err(Error::invalid(
                    object(),
                    format!("{host} is not a host address"),
                ));
            }
            if host.is_loopback() {
                return Err(Error::invalid(
                    object(),
                    format!(
                        "{host} is a loopback address: publish on every address and ask for \
                         .localhost(true) to be reached on 127.0.0.1 (::1 is never routed)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = self.host_ports;
        let (c, d) = self.to_ports();
        if let Some(h) = self.host_address {
            write!(f, "{h}:")?;
        }
        if a == b {
            write!(f, "{a}")?;
        } else {
            write!(f, "{a}-{b}")?;
        }
        let to = match self.to {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        if c == d {
            write!(f, "->{to}:{c}/{}", self.protocol)
        } else {
            write!(f, "->{to}:{c}-{d}/{}", self.protocol)
        }
    }
}

/// A new guard's chain name (`PREFIX` + 8 hex digits) and comment, unique to this process.
fn identity(prefix: &str) -> (String, String) {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let comment = format!("{}:nat{serial}", owner::marker());
    let mut hasher = std::hash::DefaultHasher::new();
    comment.hash(&mut hasher);
    (format!("{prefix}{:08x}", hasher.finish() as u32), comment)
}

fn subnet(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("a full prefix is valid")
}

fn host(
    ns: Option<std::sync::Arc<crate::netns::NsInner>>,
    object: &str,
) -> Result<std::sync::Arc<crate::netns::NsInner>> {
    ns.ok_or_else(|| {
        Error::invalid(
            object.to_owned(),
            "no host namespace given: call .host(&ns) (the namespace whose traffic it is)",
        )
    })
}

/// The rules of a guard, removed with it.
#[derive(Debug)]
struct NatRules {
    set: RuleSet,
}

impl Resource for NatRules {
    const KIND: &'static str = "nat rules";

    fn describe(&self) -> String {
        self.set.object.clone()
    }

    fn netns(&self) -> String {
        self.set.ns.label().to_owned()
    }

    async fn remove(&self) -> Result<()> {
        let set = self.set.clone();
        let object = set.object.clone();
        // Owed by the job, not this future: a dropped `delete` still finishes before exit.
        let owed = crate::sys::owed();
        crate::sys::on_worker(move || {
            let _owed = owed;
            set.remove()
        })
        .await
        .map_err(|e| Error::os("delete", object, e))?
    }

    fn remove_blocking(&self) -> Result<()> {
        self.set.remove()
    }
}

/// Installs `set` on a worker (async callers are not blocked); removes it again if the caller
/// stopped waiting.
async fn install(set: RuleSet) -> Result<Guard<NatRules>> {
    let object = set.object.clone();
    let span = crate::trace::op!("create", NatRules::KIND, object.clone(), set.ns.label());
    let work = async move {
        let installed = crate::sys::on_worker_cancellable(
            {
                let set = set.clone();
                move |_| set.install().map(|()| set)
            },
            |result: Result<RuleSet>| {
                if let Ok(set) = result {
                    let _ = set.remove();
                }
            },
        )
        .await
        .map_err(|e| Error::os("create", object, e))??;
        Ok(Guard::new(NatRules { set: installed }))
    };
    crate::trace::timed(span, work).await
}

fn install_blocking(set: RuleSet) -> Result<Guard<NatRules>> {
    crate::netlink::block_on(install(set))
}

/// Masquerade for `sources`: see [`masquerade`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until .create() or .create_blocking()"]
pub struct MasqueradeBuilder {
    host: Option<std::sync::Arc<crate::netns::NsInner>>,
    sources: Vec<IpNetwork>,
    exempt: Option<Vec<IpNetwork>>,
    chain: Option<String>,
    comment: Option<String>,
    backend: Option<Backend>,
    error: Option<Error>,
}

/// Starts a masquerade: connections from the [`source`](MasqueradeBuilder::source)s leave
/// `host` with the address of the interface they leave by. See the [module docs](self).
///
/// # Examples
///
/// ```no_run
/// use netns_kit::{Namespace, nat};
///
/// let host = Namespace::new_blocking()?;
/// let masq = nat::masquerade().host(&host).source("10.0.41.0/24").create_blocking()?;
/// assert_eq!(masq.chains().len(), 1);
/// # Ok::<(), netns_kit::Error>(())
/// ```
pub fn masquerade() -> MasqueradeBuilder {
    MasqueradeBuilder::default()
}

impl MasqueradeBuilder {
    /// The namespace the rules go into (the one the traffic leaves by).
    pub fn host(mut self, ns: &Namespace) -> Self {
        self.host = Some(ns.inner().clone());
        self
    }

    /// A source network (or one address, as `10.0.41.2/32`) whose traffic is masqueraded;
    /// several may be given, IPv4 and IPv6.
    pub fn source(mut self, net: impl IntoIpNetwork) -> Self {
        match net.into_ip_network() {
            Ok(n) => self.sources.push(n),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// A destination network *not* masqueraded (traffic to it keeps its source). Default: the
    /// sources' own networks (members talking to each other through the host keep their
    /// addresses). Giving any replaces the default.
    pub fn exempt(mut self, net: impl IntoIpNetwork) -> Self {
        match net.into_ip_network() {
            Ok(n) => self.exempt.get_or_insert_with(Vec::new).push(subnet(n)),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// The chain's name (default: `NK-MASQ-` and 8 hex digits). A CNI plugin gives the
    /// reference's `CNI-...` name, so the reference's teardown finds it.
    pub fn chain(mut self, name: impl Into<String>) -> Self {
        self.chain = Some(name.into());
        self
    }

    /// The comment on every rule (default: this process's mark and a serial).
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// How to write the rules (default: [`Backend::detect`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    fn build(self) -> Result<RuleSet> {
        let (default_chain, default_comment) = identity("NK-MASQ-");
        let chain = self.chain.unwrap_or(default_chain);
        let object = format!("masquerade {chain:?}");
        if let Some(e) = self.error {
            return Err(e);
        }
        let ns = host(self.host, &object)?;
        validate_chain(&chain, &object)?;
        let comment = self.comment.unwrap_or(default_comment);
        validate_comment(&comment, &object)?;
        if self.sources.is_empty() {
            return Err(Error::invalid(
                object,
                "no source given: .source(\"10.0.41.0/24\")",
            ));
        }
        for s in &self.sources {
            if s.prefix() == 0 {
                return Err(Error::invalid(
                    object,
                    format!("source {s} is every address: give the members' network"),
                ));
            }
            if let IpNetwork::V6(v6) = s {
                if v6.ip().to_ipv4_mapped().is_some() {
                    return Err(Error::invalid(object, format!("source {s} is IPv4-mapped")));
                }
            }
        }
        let exempt = self
            .exempt
            .unwrap_or_else(|| self.sources.iter().map(|s| subnet(*s)).collect());
        let mut rules: Vec<Rule> = Vec::new();
        let mut chains = Vec::new();
        let mut push = |rule: Rule| {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        };
        for v6 in [false, true] {
            let sources: Vec<&IpNetwork> =
                self.sources.iter().filter(|s| s.is_ipv6() == v6).collect();
            if sources.is_empty() {
                continue;
            }
            chains.push((v6, chain.clone()));
            let tagged = |mut r: Rule| {
                r.comment = Some(comment.clone());
                r
            };
            for e in exempt.iter().filter(|e| e.is_ipv6() == v6) {
                let mut r = Rule::new(&chain, v6, Target::Accept);
                r.destination = Some((*e, false));
                push(tagged(r));
            }
            let multicast: IpNetwork = if v6 { "ff00::/8" } else { "224.0.0.0/4" }
                .parse()
                .expect("a valid network");
            let mut r = Rule::new(&chain, v6, Target::Masquerade);
            r.destination = Some((multicast, true));
            push(tagged(r));
            for s in sources {
                let mut r = Rule::new("POSTROUTING", v6, Target::Jump(chain.clone()));
                r.source = Some((*s, false));
                push(tagged(r));
            }
        }
        Ok(RuleSet {
            object: format!("{object} in {}", ns.label()),
            ns,
            backend: self.backend.unwrap_or_else(Backend::detect),
            chains,
            rules,
            comment,
            route_localnet: None,
            released: Default::default(),
        })
    }

    /// Writes the rules; see the [module docs](self).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (before anything is written) for no host or sources, a `/0`
    /// source, a chain name `iptables` would refuse or one already there; an OS or command
    /// error if the kernel or `iptables-restore` refused, with nothing left written.
    pub async fn create(self) -> Result<Masquerade> {
        Ok(Masquerade(install(self.build()?).await?))
    }

    /// The blocking form of [`create`](Self::create).
    pub fn create_blocking(self) -> Result<Masquerade> {
        Ok(Masquerade(install_blocking(self.build()?)?))
    }
}

/// Masquerade rules, removed when dropped; see [`masquerade`].
#[derive(Debug)]
#[must_use = "dropping the guard removes the rules at once"]
pub struct Masquerade(Guard<NatRules>);

/// Published ports: see [`publish`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until .create() or .create_blocking()"]
pub struct PublishBuilder {
    host: Option<std::sync::Arc<crate::netns::NsInner>>,
    mappings: Vec<PortMapping>,
    hairpin: Vec<IpNetwork>,
    localhost: bool,
    via: Option<String>,
    backend: Option<Backend>,
    error: Option<Error>,
}

/// Starts publishing ports of `host` (connections to any local address of it, from outside
/// or from the host itself) to members' ports. See the [module docs](self);
/// [`BridgedNetwork::publish`](crate::BridgedNetwork::publish) fills in the host, the
/// hairpin subnets and the bridge.
///
/// # Examples
///
/// ```no_run
/// use netns_kit::{Namespace, nat::{self, PortMapping}};
///
/// let host = Namespace::new_blocking()?;
/// let ports = nat::publish()
///     .host(&host)
///     .map(PortMapping::tcp(8080, "10.0.41.2:80".parse().unwrap()))
///     .map(PortMapping::udp(5353, "10.0.41.2:53".parse().unwrap()))
///     .create_blocking()?;
/// # drop(ports);
/// # Ok::<(), netns_kit::Error>(())
/// ```
pub fn publish() -> PublishBuilder {
    PublishBuilder::default()
}

impl PublishBuilder {
    /// The namespace whose ports are published.
    pub fn host(mut self, ns: &Namespace) -> Self {
        self.host = Some(ns.inner().clone());
        self
    }

    /// Adds a mapping.
    pub fn map(mut self, mapping: PortMapping) -> Self {
        self.mappings.push(mapping);
        self
    }

    /// Adds mappings.
    pub fn maps(mut self, mappings: impl IntoIterator<Item = PortMapping>) -> Self {
        self.mappings.extend(mappings);
        self
    }

    /// Members of `net` reach the published ports through the host's addresses too
    /// ("hairpin"): their connections are masqueraded, so the answer comes back the same way.
    pub fn hairpin(mut self, net: impl IntoIpNetwork) -> Self {
        match net.into_ip_network() {
            Ok(n) => self.hairpin.push(subnet(n)),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Whether IPv4 mappings are reached on `127.0.0.1` too (as `portmap` does): switches
    /// `route_localnet` on the [`via`](Self::via) interface while the guard lives. (IPv6 has no
    /// equivalent: `::1` is never routed.) Default: off.
    pub fn localhost(mut self, on: bool) -> Self {
        self.localhost = on;
        self
    }

    /// The interface toward the members (a bridge): where [`localhost`](Self::localhost)
    /// needs `route_localnet`.
    pub fn via(mut self, interface: impl AsRef<str>) -> Self {
        self.via = Some(interface.as_ref().to_owned());
        self
    }

    /// How to write the rules (default: [`Backend::detect`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    fn build(self) -> Result<RuleSet> {
        let (chain, comment) = identity("NK-PORTS-");
        let object = format!("published ports {chain:?}");
        if let Some(e) = self.error {
            return Err(e);
        }
        let ns = host(self.host, &object)?;
        if self.mappings.is_empty() {
            return Err(Error::invalid(
                object,
                "no port mapping given: .map(PortMapping::tcp(8080, member))",
            ));
        }
        for (i, m) in self.mappings.iter().enumerate() {
            m.validate()?;
            for other in &self.mappings[..i] {
                let overlap = other.protocol == m.protocol
                    && other.to.is_ipv4() == m.to.is_ipv4()
                    && other.host_ports.0 <= m.host_ports.1
                    && m.host_ports.0 <= other.host_ports.1
                    && (other.host_address.is_none()
                        || m.host_address.is_none()
                        || other.host_address == m.host_address);
                if overlap {
                    return Err(Error::invalid(
                        format!("port mapping {m}"),
                        format!("its host ports overlap those of {other}"),
                    ));
                }
            }
        }
        let any_v4 = self.mappings.iter().any(|m| m.to.is_ipv4());
        let via = match (&self.via, self.localhost && any_v4) {
            (Some(v), true) => {
                crate::name::IfName::new(v)?;
                Some(v.clone())
            }
            (None, true) if self.mappings.iter().any(|m| m.to.is_ipv4()) => {
                return Err(Error::invalid(
                    object,
                    "localhost(true) needs the interface toward the members: .via(\"br0\")",
                ));
            }
            _ => None,
        };
        let mark = (MASQUERADE_MARK, MASQUERADE_MARK);
        let mut rules = Vec::new();
        let mut chains = Vec::new();
        for v6 in [false, true] {
            let mine: Vec<&PortMapping> = self
                .mappings
                .iter()
                .filter(|m| m.to.is_ipv6() == v6)
                .collect();
            if mine.is_empty() {
                continue;
            }
            chains.push((v6, chain.clone()));
            let localhost = self.localhost && !v6;
            let hairpin: Vec<IpNetwork> = self
                .hairpin
                .iter()
                .copied()
                .filter(|h| h.is_ipv6() == v6)
                .collect();
            for m in mine {
                let base = |target: Target| {
                    let mut r = Rule::new(&chain, v6, target);
                    r.protocol = Some(m.protocol);
                    r.dport = Some(m.host_ports);
                    r.destination = m.host_address.map(|h| (host_net(h), false));
                    r
                };
                let set_mark = || Target::SetMark {
                    value: MASQUERADE_MARK,
                    mask: MASQUERADE_MARK,
                };
                for h in &hairpin {
                    let mut r = base(set_mark());
                    r.source = Some((*h, false));
                    rules.push(r);
                }
                if localhost {
                    let mut r = base(set_mark());
                    r.source = Some((host_net(IpAddr::from([127, 0, 0, 1])), false));
                    rules.push(r);
                }
                let (first, last) = m.host_ports;
                rules.push(base(Target::Dnat {
                    to: m.to,
                    ports: Some(m.to_ports()),
                    // A range onto other ports: in order (host port first + i to member port
                    // to_port + i). The same ports keep theirs without it.
                    base: (last > first && m.to_port != first).then_some(first),
                }));
            }
            for entry in ["PREROUTING", "OUTPUT"] {
                let mut r = Rule::new(entry, v6, Target::Jump(chain.clone()));
                r.local_destination = true;
                r.comment = Some(comment.clone());
                rules.push(r);
            }
            if localhost || !hairpin.is_empty() {
                // At the top: a masquerade's exempt-network ACCEPT (ours, the CNI plugins')
                // earlier in POSTROUTING would end the chain before it for a hairpin
                // connection, whose source and destination are on the same network.
                let mut r = Rule::new("POSTROUTING", v6, Target::Masquerade);
                r.mark = Some(mark);
                r.comment = Some(comment.clone());
                r.insert = true;
                rules.push(r);
            }
        }
        Ok(RuleSet {
            object: format!("{object} in {}", ns.label()),
            ns,
            backend: self.backend.unwrap_or_else(Backend::detect),
            chains,
            rules,
            comment,
            route_localnet: via,
            released: Default::default(),
        })
    }

    /// Writes the rules; see the [module docs](self).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (before anything is written) for no host or mappings, a port 0,
    /// a range running past 65535, overlapping host ports, mixed IP versions in a mapping, a
    /// loopback or unspecified member address, `localhost` without `via`; an OS or command error
    /// if the kernel or `iptables-restore` refused, with nothing left written.
    pub async fn create(self) -> Result<PublishedPorts> {
        Ok(PublishedPorts(install(self.build()?).await?))
    }

    /// The blocking form of [`create`](Self::create).
    pub fn create_blocking(self) -> Result<PublishedPorts> {
        Ok(PublishedPorts(install_blocking(self.build()?)?))
    }
}

/// Published ports, removed when dropped; see [`publish`].
#[derive(Debug)]
#[must_use = "dropping the guard removes the rules at once"]
pub struct PublishedPorts(Guard<NatRules>);

impl Masquerade {
    /// The names of the guard's own chains in the `nat` table (one per IP family, the same
    /// name).
    pub fn chains(&self) -> Vec<String> {
        self.0.get().chain_names()
    }

    /// How the rules were written.
    pub fn backend(&self) -> Backend {
        self.0.get().set.backend
    }

    /// Removes the rules now, reporting errors (dropping the guard removes them too).
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// The blocking form of [`delete`](Self::delete).
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }

    /// Disarms the guard: the rules stay after it is dropped ([`remove_chain`] removes them
    /// later, by name).
    pub fn keep(mut self) -> Self {
        keep_rules(&mut self.0);
        self
    }
}

impl PublishedPorts {
    /// The names of the guard's own chains in the `nat` table (one per IP family, the same
    /// name).
    pub fn chains(&self) -> Vec<String> {
        self.0.get().chain_names()
    }

    /// How the rules were written.
    pub fn backend(&self) -> Backend {
        self.0.get().set.backend
    }

    /// Removes the rules now, reporting errors (dropping the guard removes them too).
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// The blocking form of [`delete`](Self::delete).
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }

    /// Disarms the guard: the rules stay after it is dropped ([`remove_chain`] removes them
    /// later, by name).
    pub fn keep(mut self) -> Self {
        keep_rules(&mut self.0);
        self
    }
}

impl NatRules {
    /// The set's chain names, each once.
    fn chain_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.set.chains.iter().map(|(_, c)| c.clone()).collect();
        names.dedup();
        names
    }
}

/// `keep()` of either guard: the rules stay, and no longer count as this process's users of
/// the tables they are in.
fn keep_rules(guard: &mut Guard<NatRules>) {
    if guard.is_armed() {
        guard.get().set.forget();
    }
    guard.disarm();
}

fn validate_chain(chain: &str, object: &str) -> Result<()> {
    let ok = !chain.is_empty()
        && chain.len() <= CHAIN_MAX
        && chain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !matches!(
            chain,
            "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
        )
        && !chain.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            object.to_owned(),
            format!(
                "chain name {chain:?} is not one iptables accepts (1 to {CHAIN_MAX} of \
                 A-Z a-z 0-9 - _ ., not a built-in chain)"
            ),
        ))
    }
}

fn validate_comment(comment: &str, object: &str) -> Result<()> {
    if comment.len() >= nft::COMMENT_LEN || comment.contains(['\0', '\n']) {
        return Err(Error::invalid(
            object.to_owned(),
            format!(
                "the comment must be under {} bytes, on one line",
                nft::COMMENT_LEN
            ),
        ));
    }
    Ok(())
}

/// Removes chain `chain` of `host`'s `nat` table (IPv4 and IPv6) with every rule that jumps to
/// it — what a kept or killed guard left, or a CNI plugin's masquerade chain; returns whether
/// it was there. Uses [`Backend::detect`].
///
/// # Errors
///
/// [`Error::InvalidInput`] for a chain name `iptables` would refuse; an OS or command error if
/// the kernel or `iptables-restore` refused.
pub async fn remove_chain(host: &Namespace, chain: &str) -> Result<bool> {
    let ns = host.inner().clone();
    let chain = chain.to_owned();
    validate_chain(&chain, &format!("nat chain {chain:?}"))?;
    let object = format!("nat chain {chain:?}");
    crate::sys::on_worker(move || apply::remove_chain(&ns, Backend::detect(), &chain))
        .await
        .map_err(|e| Error::os("delete", object, e))?
}

/// The blocking form of [`remove_chain`].
pub fn remove_chain_blocking(host: &Namespace, chain: &str) -> Result<bool> {
    crate::netlink::block_on(remove_chain(host, chain))
}
