//! [`reap`]: remove what crashed processes left behind, and nothing else.

use std::{collections::BTreeSet, path::Path};

use crate::{
    error::{Error, Result},
    link::{delete_link, dump_links},
    netlink::msg::del_group,
    netns::Namespace,
    owner,
    sys::{self, NETNS_RUN_DIR, NotNetNs},
    trace,
};

/// What [`reap`] removed, and what it could not.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Namespace, Reaped, reap};
///
/// let reaped: Reaped = reap(&Namespace::current()?).await?;
/// for e in &reaped.errors {
///     eprintln!("could not remove: {e}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Reaped {
    /// Entries removed from `/run/netns`: named namespaces and half-made names.
    pub namespaces: Vec<String>,
    /// Links removed from the host namespace (a bridged network's group counts once, with the
    /// names of its links).
    pub links: Vec<String>,
    /// Firewall rules removed from the host namespace: `iptables`/`ip6tables` rules of the
    /// `filter` table's `FORWARD` chain (a bridge's accept rules) and of the `mangle` table's
    /// `PREROUTING` and `FORWARD` chains (an [isolated](crate::BridgedNetworkBuilder::isolate)
    /// network's), each as `PROGRAM -t TABLE -A ...`; and bridged networks' router-message
    /// filters (`nft table bridge netns-kit-rm-…`, see
    /// [`BridgedNetworkBuilder::filter_router_messages`](crate::BridgedNetworkBuilder::filter_router_messages)).
    pub firewall_rules: Vec<String>,
    /// Removals that failed; everything else was still attempted.
    pub errors: Vec<Error>,
}

impl Reaped {
    /// Whether nothing was found to remove and nothing failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let reaped = netns_kit::reap(&netns_kit::Namespace::current()?).await?;
    /// if !reaped.is_empty() {
    ///     println!("cleaned up after a crash: {reaped:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.links.is_empty()
            && self.firewall_rules.is_empty()
            && self.errors.is_empty()
    }
}

/// Finds and removes everything this crate created whose owning process is dead: named
/// namespaces under `/run/netns`, and bridges, veth pairs and firewall rules in `host` (FORWARD
/// accept rules, isolation rules, and the nf_tables tables that filter bridged networks' router
/// messages). Not the `nat` rules of [masquerades and published ports](crate::nat): those of a
/// killed process are removed by chain name with [`nat::remove_chain`](crate::nat::remove_chain).
///
/// Every such object carries its owner's mark — PID namespace, process id *and* start time,
/// so neither a reused pid nor a process with the same pid in another PID namespace is
/// mistaken for the owner (see the [crate docs](crate#resource-leaking)). Objects without a
/// mark (made by other tools, whatever their link group or alias), marked by a process that is
/// still running, or disarmed with `keep()` are never touched; nor is anything whose owner this
/// reaper cannot judge: owners in another PID namespace can be judged only from the initial
/// one, which sees every process. Entries of `/run/netns` that are not namespace mounts or
/// small marked files (symbolic links, FIFOs, devices, large files) are never opened for
/// reading. Several reapers may run at once: what another removed first is not an error.
///
/// Anonymous namespaces never need reaping: the kernel frees them with their last handle.
///
/// # Errors
///
/// [`Error::Os`] if `/run/netns` or `host` cannot be listed at all. Failures to remove single
/// objects are reported in [`Reaped::errors`] after everything else was tried.
///
/// # Cancel safety
///
/// Removals already sent are carried out; dropping the future stops the scan.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// let host = netns_kit::Namespace::current()?;
/// let reaped = netns_kit::reap(&host).await?;
/// println!("removed {:?} {:?} {:?}", reaped.namespaces, reaped.links, reaped.firewall_rules);
/// # Ok(()) }
/// ```
#[cfg_attr(not(feature = "tokio"), doc(hidden))]
pub async fn reap(host: &Namespace) -> Result<Reaped> {
    let span = trace::op!("reap", "leftovers", "what dead owners left", host);
    trace::timed(span, async move {
        let mut reaped = Reaped::default();
        reap_run_dir(Path::new(NETNS_RUN_DIR), &mut reaped).await?;
        reap_links(host, &mut reaped).await?;
        reap_rules(host, &mut reaped).await;
        // A bridged network's filter of its members' router messages (one nf_tables
        // transaction per table; no process to wait for).
        let (tables, errors) = crate::nat::router_messages::reap(host.inner());
        reaped.firewall_rules.extend(tables);
        reaped.errors.extend(errors);
        Ok(reaped)
    })
    .await
}

/// The blocking form of [`reap`]: the same work, checks and errors, on the calling
/// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
/// it from async code.
pub fn reap_blocking(host: &Namespace) -> Result<Reaped> {
    crate::netlink::block_on(reap(host))
}

async fn reap_run_dir(dir: &Path, reaped: &mut Reaped) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::os("list", dir.display().to_string(), e)),
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = dir.join(&name);
        let label = format!("{} (left by a dead process)", path.display());
        if name.starts_with(owner::CLAIM_PREFIX) {
            // A temporary claim file: its name carries the mark.
            if owner::is_dead_claim(&name) {
                match sys::unmount_and_unlink(&path) {
                    Ok(()) => reaped.namespaces.push(name),
                    Err(e) => reaped.errors.push(Error::os("remove", label, e)),
                }
            }
            continue;
        }
        // Never followed: a symbolic link, a FIFO, a device or a plain file is not a namespace.
        match sys::open_net_ns_at(&path, false) {
            Ok(fd) => {
                // A namespace: its mark is the alias of its `lo`.
                let Ok(ns) = Namespace::from_fd(fd) else {
                    continue;
                };
                let alias = match ns.link_by_index(1).await {
                    Ok(lo) => lo.info().await.ok().and_then(|i| i.alias),
                    Err(_) => None,
                };
                let id = ns.inner().id();
                drop(ns);
                if alias.as_deref().is_some_and(owner::is_dead_mark) {
                    // Only if the name still refers to the namespace we inspected.
                    match sys::path_id(&path) {
                        Ok(Some(now)) if now == id => match sys::unmount_and_unlink(&path) {
                            Ok(()) => reaped.namespaces.push(name),
                            Err(e) => reaped.errors.push(Error::os("remove", label, e)),
                        },
                        _ => {}
                    }
                }
            }
            Err(NotNetNs::Other(_)) => {
                // Not mounted: a name claimed by a process that died before mounting holds
                // that process's mark.
                let marked = sys::read_small_file(&path, 128)
                    .and_then(|c| String::from_utf8(c).ok())
                    .is_some_and(|c| owner::is_dead_mark(&c));
                if marked {
                    match std::fs::remove_file(&path) {
                        Ok(()) => reaped.namespaces.push(name),
                        Err(e) => reaped.errors.push(Error::os("remove", label, e)),
                    }
                }
            }
            Err(NotNetNs::Io(_)) => {}
        }
    }
    Ok(())
}

/// Whether `link` is one this crate made for a process known to be dead: it bears a dead
/// owner's mark, or — killed before the mark was set — it has no alias, the creation queue
/// length and a tagged group whose owner is dead (see [`owner`]). Anything else (no mark, a
/// foreign alias, [`owner::KEPT`], a live or unjudgeable owner) is left alone.
fn left_by_dead_owner(link: &crate::link::LinkInfo) -> bool {
    match link.alias.as_deref() {
        Some(alias) => owner::is_dead_mark(alias),
        None => link.txqlen == Some(owner::CREATION_TXQLEN) && owner::is_dead_group(link.group),
    }
}

async fn reap_links(host: &Namespace, reaped: &mut Reaped) -> Result<()> {
    let links = dump_links(host.inner()).await?;
    let dead: Vec<bool> = links.iter().map(left_by_dead_owner).collect();
    // A tagged group goes in one request only if every link in it is a dead owner's.
    let mut groups = BTreeSet::new();
    for (link, &dead) in links.iter().zip(&dead) {
        if dead && owner::is_tagged(link.group) {
            groups.insert(link.group);
        }
    }
    groups.retain(|&group| {
        links
            .iter()
            .zip(&dead)
            .filter(|(l, _)| l.group == group)
            .all(|(_, &dead)| dead)
    });
    let singles: Vec<_> = links
        .iter()
        .zip(&dead)
        .filter(|(l, dead)| **dead && !groups.contains(&l.group))
        .map(|(l, _)| l)
        .collect();
    let nl = host.inner().nl().await?;
    for group in groups {
        let names: Vec<&str> = links
            .iter()
            .filter(|l| l.group == group)
            .map(|l| l.name.as_str())
            .collect();
        match nl.send(del_group(group), 0).ack().await {
            Ok(()) => reaped
                .links
                .push(format!("group {group:#x} ({})", names.join(", "))),
            // Another reaper was faster.
            Err(e) if e.is_not_found() => {}
            Err(e) => reaped.errors.push(e.into_error(
                "delete",
                format!("link group {group:#x} in {}", host.label()),
            )),
        }
    }
    for link in singles {
        let label = || format!("interface {:?} in {}", link.name, host.label());
        match delete_link(host.inner(), link.index, label).await {
            Ok(()) => reaped.links.push(link.name.clone()),
            Err(e) => reaped.errors.push(e),
        }
    }
    Ok(())
}

/// The chains where this crate inserts single rules, each with its owner's mark (replaced by
/// `KEPT` on `keep()`): a bridge's FORWARD accept rules (`filter`) and an isolated network's
/// rules (`mangle`).
const RULE_CHAINS: [(&str, &str); 3] = [
    ("filter", "FORWARD"),
    ("mangle", "PREROUTING"),
    ("mangle", "FORWARD"),
];

/// Removes the rules of [`RULE_CHAINS`] whose owner is dead. The rules are listed with a
/// plain `iptables-save`, which shows only the tables that exist and creates none (see
/// `firewall`'s module docs).
async fn reap_rules(host: &Namespace, reaped: &mut Reaped) {
    for (save, program) in [
        ("iptables-save", "iptables"),
        ("ip6tables-save", "ip6tables"),
    ] {
        let Ok(out) = crate::firewall::run(host.inner(), save, Vec::new()).await else {
            continue; // not installed: there can be no rules of ours
        };
        let mut table = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line.strip_prefix('*') {
                name.trim().clone_into(&mut table);
                continue;
            }
            let words: Vec<String> = line
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_owned())
                .collect();
            let chain = words.get(1).cloned().unwrap_or_default();
            let mark = words
                .iter()
                .position(|w| w == "--comment")
                .and_then(|i| words.get(i + 1));
            if words.first().map(String::as_str) != Some("-A")
                || !RULE_CHAINS.contains(&(table.as_str(), chain.as_str()))
                || !mark.is_some_and(|m| owner::is_dead_mark(m))
            {
                continue;
            }
            let mut args = vec!["-t".to_owned(), table.to_owned(), "-D".to_owned()];
            args.extend(words.into_iter().skip(1));
            match crate::firewall::run(host.inner(), program, args.clone()).await {
                Ok(out) if out.status.success() => reaped
                    .firewall_rules
                    .push(format!("{program} -t {table} {line}")),
                // Another reaper was faster.
                Ok(out) if crate::firewall::rule_absent(&out) => {}
                result => reaped.errors.push(crate::firewall::command_error(
                    "delete",
                    format!(
                        "a {table} {chain} rule left by a dead process in {}",
                        host.label()
                    ),
                    program,
                    &args,
                    result,
                )),
            }
        }
    }
}
