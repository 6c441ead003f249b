//! A lab for integration tests: a private network per test, named hosts, any of the patterns
//! inside it, commands and servers run in the hosts — gone when the test ends, or kept for
//! inspection when it fails.
//!
//! ```no_run
//! use netns_kit::lab::Lab;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let Some(mut lab) = Lab::or_skip_blocking("replication_survives_a_restart")? else {
//!     return Ok(()); // not privileged here: skipped, and the reason was printed
//! };
//! lab.add_lan_blocking(["10.0.0.0/24", "fd00:10::/64"], ["db1", "db2", "app"])?;
//! let db1 = lab.address("db1", 4)?; // 10.0.0.2
//! let out = lab.command("app", "ping")?.args(["-c1", &db1.to_string()]).output()?;
//! assert!(out.status.success());
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! * **Private.** A lab starts with a fresh anonymous namespace of its own, its "host", where
//!   the bridges of its LANs live; hosts are fresh anonymous namespaces too. Nothing touches the
//!   namespace the test runs in, and tests running in parallel cannot see each other's labs,
//!   whatever addresses or names they use.
//! * **Named hosts.** A host is found by the name the test gave it (`lab.host("db1")`), which
//!   exists only in the lab until the lab is kept.
//! * **Gone afterwards.** A lab owns everything in it as the crate's guards do; dropping it
//!   (also while a failing test unwinds) kills the processes it started, then tears the
//!   networks down, then frees the namespaces. Anonymous namespaces die with the process even on
//!   `SIGKILL`.
//! * **Kept on failure.** With `NETNS_KIT_KEEP=1` in the environment, a lab dropped while its
//!   thread panics — a failing test — or after [`Lab::mark_failed`] (for a test that fails by
//!   returning an error) is kept instead: each of its namespaces is bind-mounted
//!   at `/run/netns/nklab-TEST-HOST` (as `ip netns attach` does), every guard is disarmed, and
//!   the lab prints, on standard error, one `ip netns exec`/`nsenter` line per host to step in.
//!   Processes it started are still killed (nothing runs unattended). Only namespaces the lab
//!   made are kept and named, never one the test handed in. [`reap_kept`] removes kept labs
//!   later; it touches only namespaces a lab kept (their `lo` carries the lab's mark).
//! * **Skip or fail.** Building a lab needs `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (root).
//!   [`Lab::new`] fails with [`Error::PermissionDenied`] and the reason; [`Lab::or_skip`]
//!   prints the reason and returns `None` instead, unless `NETNS_KIT_NO_SKIP=1` (say, in CI)
//!   turns the skip back into that error.

use std::{
    net::IpAddr,
    process::{Child, Command},
};

use ipnetwork::IpNetwork;

use crate::{
    error::{Error, Result},
    ip::IntoIpNetwork,
    link::Link,
    name::NsName,
    netns::Namespace,
    owner, sys,
    topology::{
        BridgedNetwork, BridgedNetworkBuilder, DirectLink, DirectLinkBuilder, MemberSpec,
        RoutedNetwork, RoutedNetworkBuilder, bridged,
    },
};

#[cfg(feature = "topology-file")]
mod file;
#[cfg(feature = "topology-file")]
pub use file::{LanSpec, LinkSpec, Topology};

/// Set (to the test's name) in the child process a test is re-run in by [`run_isolated`].
pub const ISOLATED_ENV: &str = "NETNS_KIT_ISOLATED_TEST";

/// The environment variable that keeps a failing test's lab.
pub const KEEP_ENV: &str = "NETNS_KIT_KEEP";
/// The environment variable that turns [`Lab::or_skip`]'s skip into an error.
pub const NO_SKIP_ENV: &str = "NETNS_KIT_NO_SKIP";
/// The prefix of a kept lab's namespace names under `/run/netns`.
pub const KEPT_PREFIX: &str = "nklab-";
/// The `lo` alias of a kept lab's namespaces, followed by the test's name.
const LAB_MARK: &str = "netns-kit:lab:";

/// One network of a lab.
#[derive(Debug)]
enum Part {
    Bridged(Box<BridgedNetwork>),
    Routed(RoutedNetwork),
    Link(DirectLink),
}

/// A private network for one test; see the [module docs](self).
#[derive(Debug)]
pub struct Lab {
    test: String,
    /// Processes started in hosts, killed first.
    processes: Vec<Child>,
    /// Torn down before the namespaces are freed.
    parts: Vec<Part>,
    hosts: Vec<(String, Namespace)>,
    host: Namespace,
    /// Set by [`Lab::mark_failed`].
    failed: bool,
    /// Hosts put on a LAN by [`Lab::add_lan`] (each has its default route there).
    on_lan: Vec<String>,
}

/// Whether `text` is a usable test or host name part: letters, digits, `_`, `-`.
fn check_label(what: &str, text: &str) -> Result<()> {
    if text.is_empty()
        || text.len() > 64
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(
            format!("{what} {text:?}"),
            "use 1 to 64 letters, digits, `_` or `-`",
        ));
    }
    Ok(())
}

impl std::fmt::Display for Lab {
    /// `lab "TEST"`, as messages name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lab {:?}", self.test)
    }
}

impl Lab {
    /// A new lab for the test `test` (letters, digits, `_` and `-`: it names the lab's
    /// namespaces if it is kept), with its private host namespace.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad name; [`Error::PermissionDenied`], saying what is
    /// missing, without the privileges to make network namespaces.
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn new(test: impl AsRef<str>) -> Result<Lab> {
        let test = test.as_ref();
        check_label("lab", test)?;
        let host = Namespace::new().await.map_err(|e| explain(test, e))?;
        Ok(Lab {
            test: test.to_owned(),
            processes: Vec::new(),
            parts: Vec::new(),
            hosts: Vec::new(),
            host,
            failed: false,
            on_lan: Vec::new(),
        })
    }

    /// The blocking form of [`new`](Self::new): the same work, checks and errors, on the calling
    /// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
    /// it from async code.
    pub fn new_blocking(test: impl AsRef<str>) -> Result<Lab> {
        crate::netlink::block_on(Self::new(test))
    }

    /// [`Lab::new`], or `None` when the process lacks the privileges: the test is skipped,
    /// and the reason printed on standard error (`netns-kit lab TEST: skipped: ...`). With
    /// `NETNS_KIT_NO_SKIP=1` in the environment, the skip is an error instead.
    ///
    /// # Errors
    ///
    /// Those of [`Lab::new`], except the skipped [`Error::PermissionDenied`].
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn or_skip(test: impl AsRef<str>) -> Result<Option<Lab>> {
        let test = test.as_ref();
        match Lab::new(test).await {
            Ok(lab) => Ok(Some(lab)),
            Err(e) if e.is_permission_denied() && !env_is_1(NO_SKIP_ENV) => {
                eprintln!(
                    "netns-kit lab {test}: skipped: {e} (set {NO_SKIP_ENV}=1 to fail instead)"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The blocking form of [`or_skip`](Self::or_skip): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn or_skip_blocking(test: impl AsRef<str>) -> Result<Option<Lab>> {
        crate::netlink::block_on(Self::or_skip(test))
    }

    /// The lab's private host namespace, where its LANs' bridges live.
    pub fn namespace(&self) -> &Namespace {
        &self.host
    }

    /// The test's name.
    pub fn test(&self) -> &str {
        &self.test
    }

    /// Adds a host: a fresh namespace, found later by `name` (letters, digits, `_`, `-`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad name or one already taken; the errors of
    /// [`Namespace::new`].
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_host(&mut self, name: impl AsRef<str>) -> Result<&Namespace> {
        let name = name.as_ref();
        check_label("host", name)?;
        if self.hosts.iter().any(|(n, _)| n == name) {
            return Err(Error::invalid(
                format!("host {name:?} of lab {}", self.test),
                "there is a host of that name already",
            ));
        }
        let ns = Namespace::new().await?;
        self.hosts.push((name.to_owned(), ns));
        Ok(&self.hosts[self.hosts.len() - 1].1)
    }

    /// The blocking form of [`add_host`](Self::add_host): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn add_host_blocking(&mut self, name: impl AsRef<str>) -> Result<&Namespace> {
        crate::netlink::block_on(self.add_host(name))
    }

    /// The host named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] naming the hosts there are.
    pub fn host(&self, name: impl AsRef<str>) -> Result<&Namespace> {
        let name = name.as_ref();
        self.hosts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ns)| ns)
            .ok_or_else(|| {
                let known: Vec<&str> = self.hosts.iter().map(|(n, _)| n.as_str()).collect();
                not_found(
                    format!("host {name:?} in lab {}", self.test),
                    format!("its hosts are {known:?}"),
                )
            })
    }

    /// The hosts' names, in the order they were added.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|(n, _)| n.as_str())
    }

    /// Puts `hosts` on one LAN: a bridge in the lab's host namespace with, on each subnet
    /// of `subnets` (one per IP version), the subnet's first address as gateway and the
    /// next ones for the hosts in order (`10.0.0.0/24`: gateway `10.0.0.1`, hosts
    /// `10.0.0.2`, `10.0.0.3`, ...), and each host's default route via the gateway. Hosts
    /// not added yet are added. Returns the network.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for no subnet, two of one IP version, a subnet too small for
    /// the hosts, a host named twice; the errors of [`Lab::add_host`] and
    /// [`BridgedNetworkBuilder::create`]. Hosts added by this call are removed again on
    /// error.
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_lan(
        &mut self,
        subnets: impl IntoIterator<Item = impl IntoIpNetwork>,
        hosts: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<&BridgedNetwork> {
        let object = format!("LAN of lab {}", self.test);
        let subnets = subnets
            .into_iter()
            .map(|s| s.into_ip_network())
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = hosts.into_iter().map(|h| h.as_ref().to_owned()).collect();
        let plan = plan_lan(&object, &subnets, &names)?;
        if let Some(taken) = names.iter().find(|n| self.on_lan.contains(n)) {
            return Err(Error::invalid(
                object,
                format!(
                    "host {taken:?} is on a LAN of this lab already; a host is on one LAN (its `eth0` and default route), join LANs with a router"
                ),
            ));
        }
        let before = self.hosts.len();
        let mut builder = bridged().host(&self.host);
        for gw in &plan.gateways {
            builder = builder.gateway(*gw);
        }
        let mut failed = None;
        for (name, addresses) in names.iter().zip(&plan.addresses) {
            if self.host(name).is_err() {
                if let Err(e) = self.add_host(name).await {
                    failed = Some(e);
                    break;
                }
            }
            let Ok(ns) = self.host(name) else { continue };
            let member = addresses
                .iter()
                .fold(MemberSpec::in_namespace(ns), |m, a| m.address(*a));
            builder = builder.member(member);
        }
        let result = match failed {
            Some(e) => Err(e),
            None => builder.create().await,
        };
        match result {
            Ok(net) => {
                self.on_lan.extend(names);
                self.parts.push(Part::Bridged(Box::new(net)));
                match self.parts.last() {
                    Some(Part::Bridged(net)) => Ok(&**net),
                    _ => unreachable!("just pushed"),
                }
            }
            Err(e) => {
                self.hosts.truncate(before);
                Err(e)
            }
        }
    }

    /// The blocking form of [`add_lan`](Self::add_lan): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn add_lan_blocking(
        &mut self,
        subnets: impl IntoIterator<Item = impl IntoIpNetwork>,
        hosts: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<&BridgedNetwork> {
        crate::netlink::block_on(self.add_lan(subnets, hosts))
    }

    /// Adds a bridged network made by `network` (its bridge in the lab's host namespace
    /// unless it names a host); its members are usually lab hosts
    /// (`MemberSpec::in_namespace(lab.host("db1")?)`).
    ///
    /// # Errors
    ///
    /// Those of [`BridgedNetworkBuilder::create`].
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_bridged(&mut self, network: BridgedNetworkBuilder) -> Result<&BridgedNetwork> {
        let network = if network.host.is_none() && network.existing.is_none() {
            network.host(&self.host)
        } else {
            network
        };
        self.parts
            .push(Part::Bridged(Box::new(network.create().await?)));
        match self.parts.last() {
            Some(Part::Bridged(net)) => Ok(&**net),
            _ => unreachable!("just pushed"),
        }
    }

    /// The blocking form of [`add_bridged`](Self::add_bridged): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn add_bridged_blocking(
        &mut self,
        network: BridgedNetworkBuilder,
    ) -> Result<&BridgedNetwork> {
        crate::netlink::block_on(self.add_bridged(network))
    }

    /// Adds a routed network made by `network`; give it a lab host as its router
    /// (`.router(lab.host("r1")?)`) to reach the router by name.
    ///
    /// # Errors
    ///
    /// Those of [`RoutedNetworkBuilder::create`].
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_routed(&mut self, network: RoutedNetworkBuilder) -> Result<&RoutedNetwork> {
        self.parts.push(Part::Routed(network.create().await?));
        match self.parts.last() {
            Some(Part::Routed(net)) => Ok(net),
            _ => unreachable!("just pushed"),
        }
    }

    /// The blocking form of [`add_routed`](Self::add_routed): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do
    /// not call it from async code.
    pub fn add_routed_blocking(&mut self, network: RoutedNetworkBuilder) -> Result<&RoutedNetwork> {
        crate::netlink::block_on(self.add_routed(network))
    }

    /// Adds a direct link made by `link` (`connect(lab.host("a")?, lab.host("b")?)`).
    ///
    /// # Errors
    ///
    /// Those of [`DirectLinkBuilder::create`].
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_link(&mut self, link: DirectLinkBuilder) -> Result<&DirectLink> {
        self.parts.push(Part::Link(link.create().await?));
        match self.parts.last() {
            Some(Part::Link(link)) => Ok(link),
            _ => unreachable!("just pushed"),
        }
    }

    /// The blocking form of [`add_link`](Self::add_link): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn add_link_blocking(&mut self, link: DirectLinkBuilder) -> Result<&DirectLink> {
        crate::netlink::block_on(self.add_link(link))
    }

    /// The addresses `host` got in this lab's networks (LANs, bridged and routed networks,
    /// links), in the order they were made.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host.
    pub fn addresses(&self, host: impl AsRef<str>) -> Result<Vec<IpNetwork>> {
        let host = host.as_ref();
        let ns = self.host(host)?;
        let mut found = Vec::new();
        let from_bridged = |net: &BridgedNetwork, found: &mut Vec<IpNetwork>| {
            for m in net.members() {
                if m.namespace() == ns {
                    found.extend_from_slice(m.addresses());
                }
            }
        };
        for part in &self.parts {
            match part {
                Part::Bridged(net) => from_bridged(net, &mut found),
                Part::Routed(net) => {
                    for lan in net.lans() {
                        from_bridged(lan, &mut found);
                    }
                    for link in net.links() {
                        if in_ns(link.peer(), ns) {
                            found.extend(link.addresses().iter().map(|(_, b)| *b));
                        }
                    }
                    if net.router() == ns {
                        for lan in net.lans() {
                            found.extend_from_slice(lan.gateways());
                        }
                        for link in net.links() {
                            found.extend(link.addresses().iter().map(|(a, _)| *a));
                        }
                    }
                }
                Part::Link(link) => {
                    for (a, b) in link.addresses() {
                        if in_ns(link.link(), ns) {
                            found.push(*a);
                        }
                        if in_ns(link.peer(), ns) {
                            found.push(*b);
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// The first address of IP version `version` (4 or 6) `host` got in this lab.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host or one without such an address.
    pub fn address(&self, host: impl AsRef<str>, version: u8) -> Result<IpAddr> {
        let host = host.as_ref();
        if version != 4 && version != 6 {
            return Err(Error::invalid(
                format!("IP version {version} for host {host:?} in {self}"),
                "the version is 4 or 6",
            ));
        }
        self.addresses(host)?
            .into_iter()
            .find(|a| a.is_ipv6() == (version == 6))
            .map(|a| a.ip())
            .ok_or_else(|| {
                not_found(
                    format!("IPv{version} address of host {host:?} in lab {}", self.test),
                    "it has none".to_owned(),
                )
            })
    }

    /// A command to run `program` inside `host` (see [`Namespace::command`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host.
    pub fn command(
        &self,
        host: impl AsRef<str>,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Result<Command> {
        let host = host.as_ref();
        Ok(self.host(host)?.command(program))
    }

    /// Starts `command` (from [`Lab::command`]) as a process the lab owns: it is killed and
    /// reaped when the lab goes, first of all. Returns it, to read its output or stop it
    /// earlier.
    ///
    /// # Errors
    ///
    /// The error of [`Command::spawn`], naming the program.
    pub fn spawn(&mut self, command: &mut Command) -> Result<&mut Child> {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .map_err(|e| Error::os("start", format!("{program:?} in lab {}", self.test), e))?;
        self.processes.push(child);
        Ok(self.processes.last_mut().expect("just pushed"))
    }

    /// Every namespace the lab owns, with a name for it: the host namespace, the hosts by their
    /// names, then routers and members its networks made themselves. Never a namespace the
    /// test handed in from elsewhere (the test's own, say). Views: they keep the namespaces
    /// alive while the networks are disarmed.
    fn owned_namespaces(&self) -> Vec<(String, Namespace)> {
        let view = |ns: &Namespace| Namespace::view(ns.inner().clone());
        let mut all: Vec<(String, Namespace)> = vec![("lab.host".to_owned(), view(&self.host))];
        all.extend(self.hosts.iter().map(|(n, ns)| (n.clone(), view(ns))));
        let add = |all: &mut Vec<(String, Namespace)>, kind: &str, ns: &Namespace| {
            if !all.iter().any(|(_, known)| known == ns) {
                let n = all
                    .iter()
                    .filter(|(name, _)| name.starts_with(kind))
                    .count()
                    + 1;
                all.push((format!("{kind}.{n}"), view(ns)));
            }
        };
        for part in &self.parts {
            let lans: Vec<&BridgedNetwork> = match part {
                Part::Bridged(net) => vec![&**net],
                Part::Routed(net) => {
                    if net.is_router_owned() {
                        add(&mut all, "router", net.router());
                    }
                    net.lans().iter().collect()
                }
                Part::Link(_) => Vec::new(),
            };
            for net in lans {
                for m in net.members().iter().filter(|m| m.namespace().is_owned()) {
                    add(&mut all, "member", m.namespace());
                }
            }
        }
        all
    }

    /// Keeps the lab for inspection (see the [module docs](self)): disarms its guards, names
    /// its namespaces (after disarming, whose marks it must have the last word over) and prints
    /// how to step in.
    fn keep_for_inspection(&mut self) {
        let namespaces = self.owned_namespaces();
        for part in std::mem::take(&mut self.parts) {
            match part {
                Part::Bridged(net) => drop((*net).keep()),
                Part::Routed(net) => drop(net.keep()),
                Part::Link(link) => drop(link.keep()),
            }
        }
        let mut lines = Vec::new();
        for (name, ns) in &namespaces {
            let full = format!("{KEPT_PREFIX}{}-{name}", self.test);
            match pin(ns, &full, &format!("{LAB_MARK}{}", self.test)) {
                Ok(()) => lines.push(format!(
                    "  {name:<10} ip netns exec {full} bash    (or: nsenter --net=/run/netns/{full} bash)"
                )),
                Err(e) => lines.push(format!("  {name:<10} not kept: {e}")),
            }
        }
        eprintln!(
            "netns-kit lab {}: the test failed; its network is kept ({KEEP_ENV}=1). Step in with:\n{}\n  remove it with `netns_kit::lab::reap_kept()` (or `ip netns del NAME` for each)",
            self.test,
            lines.join("\n")
        );
    }

    /// Marks the test as failed, for a test that fails by returning an error rather than by
    /// panicking: with `NETNS_KIT_KEEP=1`, the lab is then kept when it is dropped (a panic
    /// marks it by itself).
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }
}

/// Whether the environment variable `name` is `1`.
fn env_is_1(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// Turns a permission error into one that says what a lab needs.
fn explain(test: &str, e: Error) -> Error {
    if e.is_permission_denied() {
        Error::with_detail(
            "create",
            format!("lab {test}"),
            std::io::Error::from_raw_os_error(nix::libc::EPERM),
            Some(format!(
                "{e}; a lab makes network namespaces, which needs CAP_SYS_ADMIN and CAP_NET_ADMIN (run the tests as root)"
            )),
        )
    } else {
        e
    }
}

/// [`Error::NotFound`] for something looked up in a lab.
fn not_found(object: String, detail: String) -> Error {
    Error::with_detail(
        "find",
        object,
        std::io::Error::from_raw_os_error(nix::libc::ENOENT),
        Some(detail),
    )
}

/// Whether `link` is in `ns`.
fn in_ns(link: &Link, ns: &Namespace) -> bool {
    link.ns().id() == ns.inner().id()
}

/// A LAN's addresses: the gateways, then each host's (one per subnet).
struct LanPlan {
    gateways: Vec<IpNetwork>,
    addresses: Vec<Vec<IpNetwork>>,
}

fn plan_lan(object: &str, subnets: &[IpNetwork], hosts: &[String]) -> Result<LanPlan> {
    if subnets.is_empty() {
        return Err(Error::invalid(
            object,
            "give it a subnet (one per IP version)",
        ));
    }
    if subnets.iter().filter(|s| s.is_ipv4()).count() > 1
        || subnets.iter().filter(|s| s.is_ipv6()).count() > 1
    {
        return Err(Error::invalid(
            object,
            "give at most one subnet per IP version",
        ));
    }
    for (i, h) in hosts.iter().enumerate() {
        if hosts[..i].contains(h) {
            return Err(Error::invalid(object, format!("host {h:?} is named twice")));
        }
    }
    let nth = |subnet: &IpNetwork, n: usize| -> Option<IpNetwork> {
        let ip = match subnet {
            // The last IPv4 address is the broadcast address.
            IpNetwork::V4(s) => u32::try_from(n)
                .ok()
                .filter(|&n| n + 1 < s.size())
                .and_then(|n| s.nth(n))
                .map(IpAddr::V4)?,
            IpNetwork::V6(s) => s.nth(n as u128).map(IpAddr::V6)?,
        };
        IpNetwork::new(ip, subnet.prefix()).ok()
    };
    let mut gateways = Vec::new();
    let mut addresses = vec![Vec::new(); hosts.len()];
    for subnet in subnets {
        let subnet = IpNetwork::new(subnet.network(), subnet.prefix()).unwrap_or(*subnet);
        let gw = nth(&subnet, 1).ok_or_else(|| {
            Error::invalid(
                object,
                format!("subnet {subnet} is too small for a gateway"),
            )
        })?;
        gateways.push(gw);
        for (i, list) in addresses.iter_mut().enumerate() {
            let a = nth(&subnet, i + 2).ok_or_else(|| {
                Error::invalid(
                    object,
                    format!(
                        "subnet {subnet} is too small for a gateway and {} hosts",
                        hosts.len()
                    ),
                )
            })?;
            list.push(a);
        }
    }
    Ok(LanPlan {
        gateways,
        addresses,
    })
}

/// Names `ns` `/run/netns/NAME` (bind mount, as `ip netns attach`) and marks its `lo` as a
/// kept lab's.
fn pin(ns: &Namespace, name: &str, mark: &str) -> Result<()> {
    let name = NsName::new(name)?;
    let dir = std::path::Path::new(sys::NETNS_RUN_DIR);
    let path = dir.join(name.as_str());
    let label = format!("namespace {:?}", name.as_str());
    sys::ensure_run_dir(dir).map_err(|e| Error::os("prepare /run/netns for", label.clone(), e))?;
    sys::claim_ns_file(dir, name.as_str(), &owner::claim_name(), mark)
        .map_err(|e| Error::os("name", label.clone(), e))?;
    if let Err(e) = sys::bind_ns(std::os::fd::AsFd::as_fd(ns), &path) {
        let _ = std::fs::remove_file(&path);
        return Err(Error::os("bind-mount", label, e));
    }
    let marked = crate::netlink::msg::set_link(1, |b| b.alias(mark));
    if let Err(e) = ns.inner().blocking_one(marked, "mark", || label.clone()) {
        // Unmarked, `reap_kept` would never find it: do not leave it named.
        let _ = sys::unmount_and_unlink(&path);
        return Err(e);
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.processes {
            // Only processes this lab started, by their pid.
            let _ = child.kill();
            let _ = child.wait();
        }
        if (self.failed || std::thread::panicking()) && env_is_1(KEEP_ENV) {
            self.keep_for_inspection();
        }
        // Otherwise the fields go in order: networks (each torn down by its guard), then the
        // namespaces.
    }
}

/// Removes every lab kept for inspection (see the [module docs](self)): each namespace
/// under `/run/netns` named `nklab-...` whose `lo` carries a kept lab's mark is unmounted
/// and removed, and the kernel frees it with everything inside. Returns the names removed.
///
/// # Errors
///
/// Errors reading `/run/netns` or removing a name, collected.
#[cfg_attr(not(feature = "tokio"), doc(hidden))]
pub async fn reap_kept() -> Result<Vec<String>> {
    let dir = std::path::Path::new(sys::NETNS_RUN_DIR);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::os("read", "/run/netns", e)),
    };
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(KEPT_PREFIX) {
            continue;
        }
        // Only a lab's: its `lo` carries the mark (a stranger's namespace of that name, or
        // anything that is not a namespace, is left alone).
        let Ok(ns) = Namespace::open(&name) else {
            // A name claimed but never mounted (a crash half-way): a plain file holding
            // the lab's mark.
            let path = entry.path();
            let ours = sys::read_small_file(&path, 4096)
                .is_some_and(|text| text.starts_with(LAB_MARK.as_bytes()));
            if ours {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed.push(name),
                    Err(e) => errors.push(Error::os("remove", path.display().to_string(), e)),
                }
            }
            continue;
        };
        let alias = match ns.link_by_index(1).await {
            Ok(lo) => lo.info().await.ok().and_then(|i| i.alias),
            Err(_) => None,
        };
        if !alias.is_some_and(|a| a.starts_with(LAB_MARK)) {
            continue;
        }
        drop(ns);
        match Namespace::delete_named(&name) {
            Ok(()) => removed.push(name),
            Err(e) => errors.push(e),
        }
    }
    Error::collect("kept labs", errors).map(|()| removed)
}

/// The blocking form of [`reap_kept`]: the same work, checks and errors, on the calling
/// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
/// it from async code.
pub fn reap_kept_blocking() -> Result<Vec<String>> {
    crate::netlink::block_on(reap_kept())
}

/// Runs the body of test `test` (its full path, `module_path!()::name`, as
/// [`isolated_test!`](crate::isolated_test) gives it) where it may build networks: directly
/// when the process is root; otherwise in a child process — this test binary again, running
/// only this test — inside a user namespace of its own, where it is root (see
/// [`userns`](crate::userns)). A process cannot enter a user namespace once it has threads, and
/// the test harness has them, hence the child. The child's output is shown, its panic fails this
/// test with that output, and everything it made goes with it. Works with `cargo test` and with
/// `cargo nextest` alike.
///
/// # Panics
///
/// When the body panics (in the child: with its output), when `unshare` (util-linux) is
/// missing, or when `test` names no test of this binary.
pub fn run_isolated(test: impl AsRef<str>, body: impl FnOnce()) {
    let test = test.as_ref();
    // libtest names a test by its path without the crate: `lab::my_test` -> `my_test`.
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    // The child: only where `unshare` really made a user namespace (the variable alone could
    // be inherited or set by mistake, and settling in remounts `/run/netns`).
    if std::env::var(ISOLATED_ENV).is_ok_and(|t| t == name)
        && crate::userns::in_new_user_namespace()
    {
        if let Err(e) = crate::userns::settle_in() {
            panic!("test {name}: cannot settle into its user namespace: {e}");
        }
        return body();
    }
    if crate::userns::privileged() {
        return body();
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("unshare").is_file()));
    assert!(
        found,
        "test {name}: running it without root needs `unshare`: install the `util-linux` package"
    );
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--mount", "--"])
        .arg(exe)
        .args([
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(ISOLATED_ENV, name)
        .output()
        .unwrap_or_else(|e| panic!("test {name}: cannot start `unshare`: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "test {name} failed in its user namespace:\n{text}"
    );
    assert!(
        text.contains("running 1 test"),
        "test {name}: its path matched no single test of this binary (give `module_path!()` and the name, or use `isolated_test!`):\n{text}"
    );
    print!("{text}");
}

/// Defines a test whose body runs where it may build networks even without root (see
/// [`run_isolated`](crate::lab::run_isolated)):
///
/// ```no_run
/// netns_kit::isolated_test!(two_hosts_talk, {
///     let mut lab = netns_kit::lab::Lab::new_blocking("two_hosts_talk").unwrap();
///     lab.add_lan_blocking(["10.0.0.0/24"], ["a", "b"]).unwrap();
/// });
/// ```
#[macro_export]
macro_rules! isolated_test {
    ($name:ident, $body:block) => {
        #[test]
        fn $name() {
            $crate::lab::run_isolated(concat!(module_path!(), "::", stringify!($name)), || $body)
        }
    };
}
