//! Keep-on-failure: a failing test's lab kept as named namespaces to step into
//! ([`KEEP_ENV`]), and [`reap_kept`], which removes them later.

use super::*;
use crate::{
    error::{Error, Result},
    name::NsName,
    netns::Namespace,
    owner, sys,
    topology::BridgedNetwork,
};

impl Lab {
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> Result<(), Box<dyn std::error::Error>> {
    /// lab.add_lan(["10.0.0.0/24"], ["db", "app"]).await?;
    /// let status = lab.command("app", "my-client")?.status()?;
    /// if !status.success() {
    ///     lab.mark_failed(); // kept for a look with NETNS_KIT_KEEP=1
    ///     return Err("my-client failed".into());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }
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
        let failed = self.failed || std::thread::panicking();
        let impaired = self.misbehaviour.take_impairments();
        self.misbehaviour.finish(&self.test, failed);
        if failed && env_is_1(KEEP_ENV) {
            drop(impaired);
            self.keep_for_inspection();
            return;
        }
        // The networks first (each torn down by its guard: the hosts' interfaces go), then the
        // hosts' namespaces: one that nothing outside the crate holds (no process was started
        // in it) is doomed then, and each impaired interface's TAP is left to the kernel to
        // delete with it, rather than unregistered alone behind an `rcu_barrier` (as a bridged
        // network's teardown does; see `impair::divert`).
        drop(std::mem::take(&mut self.parts));
        for (_, ns) in std::mem::take(&mut self.hosts) {
            let _ = ns.close();
        }
        for (_, guard) in &impaired {
            guard.leave_to_namespace();
        }
        drop(impaired);
    }
}

/// Removes every lab kept for inspection (see the [module docs](crate::lab)): each namespace
/// under `/run/netns` named `nklab-...` whose `lo` carries a kept lab's mark is unmounted
/// and removed, and the kernel frees it with everything inside. Returns the names removed.
///
/// # Errors
///
/// Errors reading `/run/netns` or removing a name, collected.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// for name in netns_kit::lab::reap_kept().await? {
///     println!("removed kept namespace {name}");
/// }
/// # Ok(()) }
/// ```
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
