//! The FORWARD mystery: why bridged traffic can be dropped by `iptables`, how to tell,
//! and a fix scoped to one bridge.
//!
//! With `br_netfilter` active, the per-namespace sysctl `net.bridge.bridge-nf-call-iptables`
//! (default 1 in every namespace) makes IPv4 frames that are merely *bridged* between two ports
//! traverse the iptables `FORWARD` chain, as if they were routed (`ip6tables` likewise for IPv6
//! with `bridge-nf-call-ip6tables`). Docker, and other tools, set that chain's policy to `DROP`.
//! So on a host running Docker, two namespaces on one bridge cannot ping each other until
//! something accepts their traffic — the classic recipe's `iptables -A FORWARD -i br0 -j ACCEPT`,
//! whose reason its author did not know. (The kernel ORs the sysctl with the bridge's own
//! `nf_call_iptables` option, so clearing the option alone does not help.)
//!
//! [`ForwardRules`] is the scoped fix: two rules per IP version, accepting traffic into and out
//! of one bridge, **inserted** at the top of `FORWARD` (an appended rule would come after a
//! trailing `REJECT`, as Docker's and firewalld's chains have), tagged with a comment naming the
//! owning process, and deleted with the bridge. It runs the system's `iptables`/`ip6tables`, so
//! it works with both the nf_tables and the legacy backend. Nothing global changes: neither
//! `bridge-nf-call-iptables` nor `ip_forward` is touched.
//!
//! Removal cannot fail for lack of file descriptors: the rules hold the few an `iptables` run
//! needs (`FD_RESERVE`, opened on `/dev/null`) from before the first insert, and let go of them
//! just before they are removed.
//!
//! [`forward_check`] reports whether a namespace would drop bridged traffic this way. In a fresh
//! namespace the firewall is empty and the policy `ACCEPT`, so tests need no fix.
//!
//! **No side effects.** Rules go only into `filter` tables that already exist: with the
//! nf_tables backend, the first `iptables -I` in a namespace creates the table (with its three
//! chains), and removing our rules would leave that empty table behind, changing what
//! `iptables-save` prints for good. A family without a `filter` table has no `FORWARD` rules and
//! an `ACCEPT` policy: nothing there can drop bridged traffic, so nothing is inserted. Whether the
//! table exists is read with a plain `iptables-save` (which, unlike `iptables -S` or
//! `iptables-save -t filter`, reports only tables that exist and creates none). When a firewall
//! appears later (a Docker daemon started after the network), inserting again
//! ([`Bridge::enable_accept_forward`](crate::Bridge::enable_accept_forward)) adds the rules to
//! the families that now have a table.

use std::{
    process::{Output, Stdio},
    sync::Arc,
    time::Duration,
};

use crate::{
    error::{Error, Result},
    netns::{Namespace, NsInner},
    owner,
};

const IPTABLES: [&str; 2] = ["iptables", "ip6tables"];

/// How long `iptables` may wait for the xtables lock (`-w 5`), and how long it may run at all
/// before it is killed: a guard's `Drop` must not hang.
const LOCK_WAIT: &str = "5";
const DEADLINE: Duration = Duration::from_secs(10);
/// How long the output of an `iptables` that has exited may take to arrive.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// `program -w 5 args...` (no `-w` for the `-save` programs, which take no lock), entering `ns`
/// between fork and exec (no shell), killed if the thread that started it ends (so it never acts
/// after this process is gone).
fn command(ns: &NsInner, program: &'static str, args: &[String]) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    if !program.ends_with("-save") {
        command.arg("-w").arg(LOCK_WAIT);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::sys::enter_before_exec(&mut command, ns.fd().clone());
    crate::sys::kill_with_parent(&mut command);
    command
}

/// Runs `program args...` inside `ns` and returns its output, on a short-lived thread so async
/// callers are not blocked (`iptables` is not on any hot path: a few calls per bridge).
pub(crate) async fn run(
    ns: &Arc<NsInner>,
    program: &'static str,
    args: Vec<String>,
) -> std::io::Result<Output> {
    let ns = ns.clone();
    on_thread(move |_| run_blocking(&ns, program, &args)).await?
}

/// Runs `f` on a new thread and waits for it asynchronously. `f` is told whether the waiting
/// future was dropped meanwhile, so it can undo what nobody will own.
async fn on_thread<R: Send + 'static>(
    f: impl FnOnce(&dyn Fn() -> bool) -> R + Send + 'static,
) -> std::io::Result<R> {
    let (tx, rx) = futures::channel::oneshot::channel();
    // Owed until the thread is done: it may be undoing what a dropped future inserted.
    let owed = crate::sys::owed();
    std::thread::Builder::new()
        .name("netns-kit-iptables".into())
        .spawn(move || {
            let _owed = owed;
            let result = f(&|| tx.is_canceled());
            let _ = tx.send(result);
        })?;
    rx.await
        .map_err(|_| std::io::Error::other("the iptables thread ended early"))
}

/// Runs `program args...` inside `ns`, blocking, for at most [`DEADLINE`] in all.
///
/// The program runs in a process group of its own. Its output is read on helper threads while
/// it runs (a full pipe would stall it), but only the program's exit is waited for: once it has
/// exited, what it wrote arrives within [`OUTPUT_GRACE`]; a descendant that kept the pipes open
/// (a daemon it started, say) is then killed with the whole group and nobody waits on the pipes
/// any more. At the deadline the whole group is killed and the run fails with `TimedOut`.
fn run_blocking(ns: &NsInner, program: &'static str, args: &[String]) -> std::io::Result<Output> {
    run_fed(ns, program, args, None)
}

/// [`run_blocking`] with `input` written to the program's stdin (on a thread of its own, so a
/// program that does not read cannot stall the caller past the deadline).
pub(crate) fn run_fed(
    ns: &NsInner,
    program: &'static str,
    args: &[String],
    input: Option<Vec<u8>>,
) -> std::io::Result<Output> {
    use std::os::unix::process::CommandExt;
    let mut command = command(ns, program, args);
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.process_group(0).spawn()?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::Builder::new()
            .name("netns-kit-iptables".into())
            .spawn(move || {
                use std::io::Write;
                // A program that exits without reading makes this fail: its exit says why.
                let _ = stdin.write_all(&input);
            })?;
    }
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let kill_group = || {
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    };
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = pipe.map(|mut pipe| {
            std::thread::Builder::new()
                .name("netns-kit-iptables".into())
                .spawn(move || {
                    let mut bytes = Vec::new();
                    let _ = pipe.read_to_end(&mut bytes);
                    let _ = tx.send(bytes);
                })
        });
        (rx, spawned)
    };
    let (out_rx, out_thread) = read(child.stdout.take().map(|p| Box::new(p) as _));
    let (err_rx, err_thread) = read(child.stderr.take().map(|p| Box::new(p) as _));
    // The reader threads are never joined: they end when the pipes close.
    for spawned in [out_thread, err_thread].into_iter().flatten() {
        if let Err(e) = spawned {
            kill_group();
            let _ = child.wait();
            return Err(e);
        }
    }
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        match child.try_wait()? {
            Some(status) => break status,
            None if std::time::Instant::now() >= deadline => {
                kill_group();
                let _ = child.wait();
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let grace = std::time::Instant::now() + OUTPUT_GRACE;
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        let left = grace.saturating_duration_since(std::time::Instant::now());
        rx.recv_timeout(left).unwrap_or_else(|_| {
            // Something still holds the pipe: end the group (the reader then ends too).
            kill_group();
            Vec::new()
        })
    };
    let stdout = collect(out_rx);
    let stderr = collect(err_rx);
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

pub(crate) fn command_error(
    op: &'static str,
    object: String,
    program: &str,
    args: &[String],
    result: std::io::Result<Output>,
) -> Error {
    let program = format!("{program} -w {LOCK_WAIT} {}", args.join(" "));
    let outcome = match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "is not installed (install the iptables package)".to_owned()
        }
        Err(e) => format!("could not be run: {e}"),
        Ok(out) => format!(
            "failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    };
    Error::Command {
        op,
        object,
        program,
        outcome,
    }
}

/// Whether a failed `iptables -D` failed because the rule (or chain) is not there.
pub(crate) fn rule_absent(out: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    out.status.code() == Some(1)
        && (stderr.contains("does a matching rule exist")
            || stderr.contains("No chain/target/match")
            || stderr.contains("doesn't exist"))
}

/// Whether the `filter` table of `program`'s family exists in `ns`, without creating it (see
/// the [module docs](self)). If the `-save` program is missing, says yes, so the insert that
/// follows reports the missing tool.
fn filter_table_exists(rules: &ForwardRules, program: &'static str) -> bool {
    let save = match program {
        "iptables" => "iptables-save",
        _ => "ip6tables-save",
    };
    match rules.run(save, &[]) {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim_end() == "*filter"),
        _ => true,
    }
}

/// The `FORWARD` accept rules of one bridge, or its isolation rules; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct ForwardRules {
    ns: Arc<NsInner>,
    bridge: String,
    tag: String,
    /// Isolation rules (`mangle` table) instead of accept rules (`filter`).
    isolate: bool,
    /// The programs (IP families) to insert for.
    programs: Vec<&'static str>,
    /// The programs (IP families) whose rules were inserted, shared by every clone (an insert
    /// runs on a clone, on a thread of its own).
    inserted: Arc<std::sync::Mutex<Vec<&'static str>>>,
    /// File descriptors held from before the first insert until removal starts, so the removal
    /// can always start `iptables` (pipes, `/dev/null`), even in a process that has run out of
    /// descriptors meanwhile.
    reserve: Arc<std::sync::Mutex<Vec<std::fs::File>>>,
    /// Set once a run timed out: the tool hangs (a held lock, a stuck kernel), and every later
    /// run for these rules would too, so they are skipped. Keeps a creation, its roll-back and
    /// a teardown each within one [`DEADLINE`] in all; rules left behind carry the owner's mark
    /// for [`reap`](crate::reap).
    hung: Arc<std::sync::atomic::AtomicBool>,
}

/// The packet mark bit isolation rules use (`0x2000000`): set on what arrives on an isolated
/// network's bridge, checked where it would leave by another isolated network's bridge.
pub(crate) const ISOLATION_MARK: u32 = 0x0200_0000;

/// How many descriptors an `iptables` run needs at most: stdin, two output pipes, and the pipe
/// through which `spawn` reports a failed `exec`, plus slack.
const FD_RESERVE: usize = 8;

impl ForwardRules {
    /// The rules, each as `-t TABLE CHAIN ...` without the action, with comment `tag`.
    ///
    /// Accept rules: `FORWARD -i BRIDGE -j ACCEPT` and `FORWARD -o BRIDGE -j ACCEPT` (filter).
    ///
    /// Isolation rules (mangle): what arrives on the bridge is marked with [`ISOLATION_MARK`]
    /// (`PREROUTING -i BRIDGE -j MARK --set-xmark M/M`), and what is forwarded to the bridge
    /// from another interface with that mark is dropped (`FORWARD ! -i BRIDGE -o BRIDGE -m mark
    /// --mark M/M -j DROP`): traffic between two isolated networks is dropped both ways, before
    /// the `filter` table's accept rules are ever consulted (mangle's FORWARD runs first), and
    /// whatever order the networks' rules were inserted in. Traffic to the uplink or to
    /// networks that are not isolated passes.
    fn rules(&self, tag: &str) -> Vec<Vec<String>> {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let comment = ["-m", "comment", "--comment", tag];
        let bridge = self.bridge.as_str();
        if self.isolate {
            let mark = format!("{ISOLATION_MARK:#x}/{ISOLATION_MARK:#x}");
            let mut prerouting = words(&["-t", "mangle", "PREROUTING", "-i", bridge]);
            prerouting.extend(words(&comment));
            prerouting.extend(words(&["-j", "MARK", "--set-xmark", &mark]));
            let mut forward = words(&["-t", "mangle", "FORWARD", "!", "-i", bridge, "-o", bridge]);
            forward.extend(words(&["-m", "mark", "--mark", &mark]));
            forward.extend(words(&comment));
            forward.extend(words(&["-j", "DROP"]));
            vec![prerouting, forward]
        } else {
            ["-i", "-o"]
                .into_iter()
                .map(|direction| {
                    let mut rule = words(&["-t", "filter", "FORWARD", direction, bridge]);
                    rule.extend(words(&comment));
                    rule.extend(words(&["-j", "ACCEPT"]));
                    rule
                })
                .collect()
        }
    }

    /// `action` (`-I`, `-D`) for rule `rule` (as [`rules`](Self::rules) gives it): the action
    /// goes right before the chain, after `-t TABLE`.
    fn with_action(action: &str, rule: &[String]) -> Vec<String> {
        let mut args = rule[..2].to_vec();
        args.push(action.to_owned());
        args.extend_from_slice(&rule[2..]);
        args
    }

    fn object(&self) -> String {
        let what = if self.isolate {
            "isolation rules"
        } else {
            "FORWARD accept rules"
        };
        format!("{what} for bridge {:?} in {}", self.bridge, self.ns.label())
    }

    /// The rules for `bridge`, not inserted yet. Their comment is this process's mark plus a
    /// serial of its own, so two rule sets for the same bridge name (a bridge deleted and made
    /// again) never delete each other's rules.
    pub(crate) fn for_bridge(ns: &Arc<NsInner>, bridge: &str) -> ForwardRules {
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ForwardRules {
            ns: ns.clone(),
            bridge: bridge.to_owned(),
            tag: format!("{}:{serial}", owner::marker()),
            isolate: false,
            programs: IPTABLES.to_vec(),
            inserted: Arc::default(),
            reserve: Arc::default(),
            hung: Arc::default(),
        }
    }

    /// The isolation rules for `bridge` (see [`rules`](Self::rules)) in the IP families
    /// `programs`, not inserted yet. With `accept`, the network's accept rules, a hung
    /// `iptables` seen by either set skips the other's runs too (one deadline for the network).
    pub(crate) fn isolation_for_bridge(
        ns: &Arc<NsInner>,
        bridge: &str,
        programs: Vec<&'static str>,
        accept: Option<&ForwardRules>,
    ) -> ForwardRules {
        let mut rules = ForwardRules::for_bridge(ns, bridge);
        rules.isolate = true;
        rules.programs = programs;
        if let Some(accept) = accept {
            rules.hung = accept.hung.clone();
        }
        rules
    }

    /// Inserts the rules. Put `self` under a guard first: on failure (or if this future is
    /// dropped) the guard removes whatever was inserted. The `iptables` runs happen on a thread
    /// of their own, which removes the rules itself if the future was dropped while it ran
    /// (an `iptables` already started completes; it is not killed half-way).
    pub(crate) async fn insert(&self) -> Result<()> {
        let rules = self.clone();
        on_thread(move |cancelled| {
            let result = rules.insert_blocking();
            if cancelled() {
                let _ = rules.remove_blocking();
            }
            result
        })
        .await
        .map_err(|e| Error::os("insert", self.object(), e))?
    }

    /// The IP families the rules are for (`true` for IPv6).
    pub(crate) fn families_v6(&self) -> Vec<bool> {
        self.programs.iter().map(|p| *p == "ip6tables").collect()
    }

    /// The families whose rules are in place.
    fn inserted(&self) -> Vec<&'static str> {
        self.inserted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes the descriptors the removal will need, if not held yet.
    fn reserve_fds(&self) -> Result<()> {
        let mut reserve = self.reserve.lock().unwrap_or_else(|e| e.into_inner());
        while reserve.len() < FD_RESERVE {
            let file = std::fs::File::open("/dev/null").map_err(|e| {
                Error::os("reserve the file descriptors to remove", self.object(), e)
            })?;
            reserve.push(file);
        }
        Ok(())
    }

    /// Gives the reserved descriptors back, for the removal's `iptables` runs.
    fn release_fds(&self) {
        self.reserve
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Runs `program args...` for these rules, unless an earlier run timed out (see `hung`).
    fn run(&self, program: &'static str, args: &[String]) -> std::io::Result<Output> {
        use std::sync::atomic::Ordering;
        if self.hung.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "skipped: an earlier run for these rules timed out",
            ));
        }
        let result = run_blocking(&self.ns, program, args);
        if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::TimedOut) {
            self.hung.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Inserts the rules of every family that has a `filter` table and not yet our rules.
    fn insert_blocking(&self) -> Result<()> {
        self.reserve_fds()?;
        for program in self.programs.clone() {
            // Accept rules only where a `filter` table exists (not creating one is the point);
            // isolation, asked for, goes everywhere.
            if self.inserted().contains(&program)
                || (!self.isolate && !filter_table_exists(self, program))
            {
                continue;
            }
            // Recorded before the first insert, so a failure half-way removes what went in.
            self.inserted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(program);
            for rule in self.rules(&self.tag) {
                let args = Self::with_action("-I", &rule);
                let result = self.run(program, &args);
                if !matches!(&result, Ok(out) if out.status.success()) {
                    return Err(command_error(
                        "insert",
                        self.object(),
                        program,
                        &args,
                        result,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Replaces the ownership mark of the rules by [`owner::KEPT`] (for `keep()`): each rule is
    /// inserted again with the new comment before the marked one is deleted, so traffic never
    /// stops passing. Errors are logged; returns whether every rule was unmarked.
    pub(crate) fn keep_blocking(&mut self) -> bool {
        self.release_fds();
        let mut all = true;
        for program in self.inserted() {
            for (kept, rule) in self
                .rules(owner::KEPT)
                .into_iter()
                .zip(self.rules(&self.tag))
            {
                // Insert the kept rule first; delete the marked one only once that worked, so
                // traffic never loses its accept rule.
                let insert = Self::with_action("-I", &kept);
                let result = self.run(program, &insert);
                if !matches!(&result, Ok(out) if out.status.success()) {
                    let e = command_error("keep", self.object(), program, &insert, result);
                    crate::trace::swallowed!(&self.object(), &e);
                    all = false;
                    continue;
                }
                let delete = Self::with_action("-D", &rule);
                let result = self.run(program, &delete);
                if !matches!(&result, Ok(out) if out.status.success() || rule_absent(out)) {
                    let e = command_error("keep", self.object(), program, &delete, result);
                    crate::trace::swallowed!(&self.object(), &e);
                    all = false;
                }
            }
        }
        if all {
            // The rules now carry the kept tag: a later removal (none, once kept) would match
            // these.
            self.tag = owner::KEPT.to_owned();
        }
        all
    }

    /// Deletes the rules; rules already gone count as deleted. Goes on after a failure. The
    /// `iptables` runs happen on a thread of their own.
    pub(crate) async fn remove(&self) -> Result<()> {
        let rules = self.clone();
        on_thread(move |_| rules.remove_blocking())
            .await
            .map_err(|e| Error::os("delete", self.object(), e))?
    }

    /// Like [`remove`](Self::remove), blocking (for `Drop`).
    pub(crate) fn remove_blocking(&self) -> Result<()> {
        self.release_fds();
        let mut errors = Vec::new();
        for program in self.inserted() {
            for rule in self.rules(&self.tag) {
                let args = Self::with_action("-D", &rule);
                let result = self.run(program, &args);
                let timed_out =
                    matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::TimedOut);
                match &result {
                    Ok(out) if out.status.success() || rule_absent(out) => {}
                    _ => errors.push(command_error(
                        "delete",
                        self.object(),
                        program,
                        &args,
                        result,
                    )),
                }
                if timed_out {
                    // The tool hangs: a second run would too. Keep teardown bounded.
                    return Error::collect(self.object(), errors);
                }
            }
        }
        Error::collect(self.object(), errors)
    }
}

/// What [`forward_check`] found out about a namespace's firewall.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{ForwardCheck, Namespace, forward_check};
///
/// let check: ForwardCheck = forward_check(&Namespace::current()?).await?;
/// if check.bridge_nf_call_iptables == Some(true) {
///     println!("bridged IPv4 meets FORWARD policy {:?}", check.ipv4_forward_policy);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardCheck {
    /// `net.bridge.bridge-nf-call-iptables` in the namespace; `None` if `br_netfilter` is not
    /// loaded (then bridged frames never see iptables).
    pub bridge_nf_call_iptables: Option<bool>,
    /// `net.bridge.bridge-nf-call-ip6tables`, likewise for IPv6.
    pub bridge_nf_call_ip6tables: Option<bool>,
    /// The policy of the IPv4 `FORWARD` chain (`"ACCEPT"`, `"DROP"`), or `None` if `iptables`
    /// is not installed.
    pub ipv4_forward_policy: Option<String>,
    /// The policy of the IPv6 `FORWARD` chain, or `None` if `ip6tables` is not installed.
    pub ipv6_forward_policy: Option<String>,
}

impl ForwardCheck {
    /// Bridged IPv4 traffic goes through an iptables `FORWARD` chain whose policy is not
    /// `ACCEPT`: it is dropped unless a rule accepts it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let check = netns_kit::forward_check(&netns_kit::Namespace::current()?).await?;
    /// if check.blocks_bridged_ipv4() {
    ///     eprintln!("FORWARD policy {:?} drops bridged IPv4", check.ipv4_forward_policy);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn blocks_bridged_ipv4(&self) -> bool {
        self.bridge_nf_call_iptables == Some(true)
            && self
                .ipv4_forward_policy
                .as_deref()
                .is_some_and(|p| p != "ACCEPT")
    }

    /// Likewise for IPv6 and ip6tables.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let check = netns_kit::forward_check(&netns_kit::Namespace::current()?).await?;
    /// if check.blocks_bridged_ipv6() {
    ///     eprintln!("FORWARD policy {:?} drops bridged IPv6", check.ipv6_forward_policy);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn blocks_bridged_ipv6(&self) -> bool {
        self.bridge_nf_call_ip6tables == Some(true)
            && self
                .ipv6_forward_policy
                .as_deref()
                .is_some_and(|p| p != "ACCEPT")
    }

    /// Either family is blocked: a bridge in this namespace wants
    /// [`accept_forward`](crate::BridgeBuilder::accept_forward).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Bridge, Namespace, forward_check};
    ///
    /// let fix = forward_check(&Namespace::current()?).await?.needs_fix();
    /// let br = Bridge::builder("br0").address("10.0.3.1/24").accept_forward(fix).create().await?;
    /// assert_eq!(br.accept_forward_enabled(), fix);
    /// # Ok(()) }
    /// ```
    pub fn needs_fix(&self) -> bool {
        self.blocks_bridged_ipv4() || self.blocks_bridged_ipv6()
    }
}

/// Reports whether bridged traffic in `ns` would hit a `FORWARD` chain that does not accept it
/// (the FORWARD "mystery"; see [the crate docs](crate#the-forward-mystery)). Reads two sysctls
/// and runs `iptables -S FORWARD` / `ip6tables -S FORWARD` inside `ns`; changes nothing.
///
/// Only chain policies are considered: an explicit `DROP` rule matching the bridge is not
/// detected.
///
/// # Errors
///
/// [`Error::Command`] if `iptables` is installed but fails (e.g. without `CAP_NET_ADMIN`);
/// a missing `iptables` is reported as an unknown policy, not an error.
///
/// # Cancel safety
///
/// Cancel-safe: it only reads.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// let host = netns_kit::Namespace::current()?;
/// let check = netns_kit::forward_check(&host).await?;
/// if check.needs_fix() {
///     println!("bridged traffic here needs Bridge::accept_forward");
/// }
/// # Ok(()) }
/// ```
#[doc(alias = "iptables -S FORWARD")]
#[cfg_attr(not(feature = "tokio"), doc(hidden))]
pub async fn forward_check(ns: &Namespace) -> Result<ForwardCheck> {
    async fn flag(ns: &Namespace, key: &str) -> Result<Option<bool>> {
        match ns.sysctl(key).await {
            Ok(v) => Ok(Some(v.trim() != "0")),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
    let mut policies = Vec::new();
    for program in IPTABLES {
        let args = vec!["-S".to_owned(), "FORWARD".to_owned()];
        let result = run(ns.inner(), program, args.clone()).await;
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => policies.push(None),
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                policies.push(
                    text.lines()
                        .find_map(|l| l.strip_prefix("-P FORWARD ").map(|p| p.trim().to_owned())),
                );
            }
            other => {
                return Err(command_error(
                    "check the FORWARD chain of",
                    ns.label().to_owned(),
                    program,
                    &args,
                    other,
                ));
            }
        }
    }
    Ok(ForwardCheck {
        bridge_nf_call_iptables: flag(ns, "net.bridge.bridge-nf-call-iptables").await?,
        bridge_nf_call_ip6tables: flag(ns, "net.bridge.bridge-nf-call-ip6tables").await?,
        ipv6_forward_policy: policies.pop().flatten(),
        ipv4_forward_policy: policies.pop().flatten(),
    })
}

/// The blocking form of [`forward_check`]: the same work, checks and errors, on the calling
/// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
/// it from async code.
pub fn forward_check_blocking(ns: &Namespace) -> Result<ForwardCheck> {
    crate::netlink::block_on(forward_check(ns))
}

impl crate::guard::Resource for ForwardRules {
    const KIND: &'static str = "forward rules";

    fn netns(&self) -> String {
        self.ns.label().to_owned()
    }

    fn describe(&self) -> String {
        self.object()
    }

    async fn remove(&self) -> Result<()> {
        ForwardRules::remove(self).await
    }

    fn remove_blocking(&self) -> Result<()> {
        ForwardRules::remove_blocking(self)
    }
}
