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
//!   networks down, then frees the namespaces. On `SIGKILL` the kernel does it: the processes
//!   the lab started die with the test's process ([`Lab::spawn`]), and then its anonymous
//!   namespaces, with everything in them.
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

#[cfg(feature = "topology-file")]
mod file;
mod impair;
mod isolated;
mod keep;

#[cfg(feature = "topology-file")]
pub use file::{ImpairSpec, LanSpec, LinkSpec, Topology};
pub use impair::CAPTURE_ENV;
pub use isolated::run_isolated;
pub use keep::{reap_kept, reap_kept_blocking};

use std::{
    net::IpAddr,
    process::{Child, Command},
};

use ipnetwork::IpNetwork;

use crate::{
    error::{Error, Result},
    ip::IntoIpNetwork,
    link::Link,
    netns::Namespace,
    topology::{
        BridgedNetwork, BridgedNetworkBuilder, DirectLink, DirectLinkBuilder, MemberSpec,
        RoutedNetwork, RoutedNetworkBuilder, bridged,
    },
};

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
    /// Impairments, partitions and captures: partitions and captures end before the networks
    /// go, impairments after them and the hosts' namespaces (see the lab's `Drop`).
    misbehaviour: impair::Misbehaviour,
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let mut lab = netns_kit::lab::Lab::new("replication").await?;
    /// lab.add_lan(["10.0.0.0/24"], ["db", "app"]).await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn new(test: impl AsRef<str>) -> Result<Lab> {
        let test = test.as_ref();
        check_label("lab", test)?;
        let host = Namespace::new().await.map_err(|e| explain(test, e))?;
        Ok(Lab {
            test: test.to_owned(),
            processes: Vec::new(),
            misbehaviour: impair::Misbehaviour::default(),
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// // Without the privileges: `None`, and a line saying why the test is skipped.
    /// let Some(mut lab) = netns_kit::lab::Lab::or_skip("replication").await? else {
    ///     return Ok(());
    /// };
    /// lab.add_host("db").await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// let db = lab.add_host("db").await?;
    /// let listener = db.run(|| std::net::TcpListener::bind("127.0.0.1:5432")).await?;
    /// # drop(listener);
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> Result<(), Box<dyn std::error::Error>> {
    /// lab.add_lan(["10.0.0.0/24"], ["db", "app"]).await?;
    /// let db = lab.host("db")?;
    /// let route = db.command("ip").args(["route"]).output()?;
    /// # drop(route);
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// // Gateway 10.0.0.1 and fd00:10::1; db .2 and ::2, app .3 and ::3.
    /// lab.add_lan(["10.0.0.0/24", "fd00:10::/64"], ["db", "app"]).await?;
    /// assert_eq!(lab.address("app", 4)?.to_string(), "10.0.0.3");
    /// # Ok(()) }
    /// ```
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
                self.capture_if_asked().await?;
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged};
    /// lab.add_host("db").await?;
    /// let db = MemberSpec::in_namespace(lab.host("db")?).address("10.0.5.2/24");
    /// let net = bridged().host(lab.namespace()).gateway("10.0.5.1/24").member(db).mtu(1400);
    /// lab.add_bridged(net).await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_bridged(&mut self, network: BridgedNetworkBuilder) -> Result<&BridgedNetwork> {
        let network = if network.host.is_none() && network.existing.is_none() {
            network.host(&self.host)
        } else {
            network
        };
        self.parts
            .push(Part::Bridged(Box::new(network.create().await?)));
        self.capture_if_asked().await?;
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// use netns_kit::{MemberSpec, bridged, routed};
    /// for host in ["r1", "a", "b"] {
    ///     lab.add_host(host).await?;
    /// }
    /// let a = MemberSpec::in_namespace(lab.host("a")?).address("10.1.0.2/24");
    /// let b = MemberSpec::in_namespace(lab.host("b")?).address("10.2.0.2/24");
    /// let net = routed()
    ///     .router(lab.host("r1")?)
    ///     .lan(bridged().gateway("10.1.0.1/24").member(a))
    ///     .lan(bridged().gateway("10.2.0.1/24").member(b));
    /// lab.add_routed(net).await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_routed(&mut self, network: RoutedNetworkBuilder) -> Result<&RoutedNetwork> {
        self.parts.push(Part::Routed(network.create().await?));
        self.capture_if_asked().await?;
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// use netns_kit::connect;
    /// lab.add_host("a").await?;
    /// lab.add_host("b").await?;
    /// let link = connect(lab.host("a")?, lab.host("b")?).address("10.9.0.1/30", "10.9.0.2/30");
    /// lab.add_link(link).await?;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_link(&mut self, link: DirectLinkBuilder) -> Result<&DirectLink> {
        self.parts.push(Part::Link(link.create().await?));
        self.capture_if_asked().await?;
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// lab.add_lan(["10.0.0.0/24", "fd00:10::/64"], ["db"]).await?;
    /// let all = lab.addresses("db")?; // 10.0.0.2/24 and fd00:10::2/64
    /// assert_eq!(all.len(), 2);
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// lab.add_lan(["10.0.0.0/24", "fd00:10::/64"], ["db"]).await?;
    /// let v4 = lab.address("db", 4)?; // 10.0.0.2
    /// let v6 = lab.address("db", 6)?; // fd00:10::2
    /// # drop((v4, v6));
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> Result<(), Box<dyn std::error::Error>> {
    /// lab.add_lan(["10.0.0.0/24"], ["db", "app"]).await?;
    /// let status = lab.command("app", "ping")?.args(["-c1", "10.0.0.2"]).status()?;
    /// assert!(status.success());
    /// # Ok(()) }
    /// ```
    pub fn command(
        &self,
        host: impl AsRef<str>,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Result<Command> {
        let host = host.as_ref();
        Ok(self.host(host)?.command(program))
    }

    /// Starts `command` (from [`Lab::command`]) as a process the lab owns: it is killed and
    /// reaped when the lab goes, first of all — and killed by the kernel if the test process
    /// dies first, even by `SIGKILL` (`PR_SET_PDEATHSIG`; strictly, when the thread that
    /// called `spawn` ends, which for a test is its body's thread). Returns it, to read its
    /// output or stop it earlier.
    ///
    /// # Errors
    ///
    /// The error of [`Command::spawn`], naming the program.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// lab.add_lan(["10.0.0.0/24"], ["db", "app"]).await?;
    /// // Runs until the lab goes (killed by its pid then).
    /// let mut server = lab.command("db", "my-database")?;
    /// lab.spawn(server.arg("--listen=0.0.0.0:5432"))?;
    /// # Ok(()) }
    /// ```
    pub fn spawn(&mut self, command: &mut Command) -> Result<&mut Child> {
        let program = command.get_program().to_string_lossy().into_owned();
        crate::sys::kill_with_parent(command);
        let child = command
            .spawn()
            .map_err(|e| Error::os("start", format!("{program:?} in lab {}", self.test), e))?;
        self.processes.push(child);
        Ok(self.processes.last_mut().expect("just pushed"))
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
