//! Putting a set of rules in place and taking it away again, over nf_tables or with
//! `iptables-restore`.
//!
//! **nf_tables.** One transaction per IP family adds whatever the rules need that is missing —
//! the `nat` table and its base chains, created as `iptables-nft` creates them — the set's own
//! chains, and the rules. Removal is one dump of the table (to find the rules that jump to the
//! set's chains or carry its comment) and one transaction deleting them and the chains. What
//! this process created for its sets (the table, base chains) is deleted when its last set in
//! that namespace goes, if it is empty by then (`NLM_F_NONREC`: the kernel refuses, and
//! nothing changes, when someone else's rule or chain is in it): so `iptables-save` and `nft
//! list ruleset` read as before. Creation races (another process made the table first) are
//! retried.
//!
//! **`iptables-restore`**, for hosts whose `iptables` is the legacy one: one `--noflush` run per
//! family to add, one to remove. The legacy `nat` table, once used, stays (the kernel module
//! keeps it), empty.

use std::{
    os::fd::AsFd,
    sync::{Arc, Mutex},
};

use crate::{
    error::{Error, Result},
    firewall,
    netns::NsInner,
};

use super::{
    nft::{self, Batch, NftError, Socket},
    rule::{Backend, Rule},
};

const TABLE: &str = "nat";
const BUILTIN: [&str; 4] = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"];

/// A set of rules owned together: its chains (made first, removed last), its rules, and the
/// comment every rule outside its chains carries.
#[derive(Debug, Clone)]
pub(crate) struct RuleSet {
    pub(crate) ns: Arc<NsInner>,
    pub(crate) backend: Backend,
    /// `(v6, chain)`: the set's own chains.
    pub(crate) chains: Vec<(bool, String)>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) comment: String,
    /// `net.ipv4.conf.IFACE.route_localnet` switched on while the set exists.
    pub(crate) route_localnet: Option<String>,
    /// What describes the set in errors.
    pub(crate) object: String,
    /// Whether the set has given back what it counts in this process (table users,
    /// `route_localnet`): once, whichever removal (a `delete`, the guard's `Drop` after a
    /// cancelled `delete`, `keep`) comes first. Shared by the set's clones.
    pub(crate) released: Arc<std::sync::atomic::AtomicBool>,
}

/// What this process created in a namespace's `nat` tables, and how many of its sets use
/// them: the last set removed deletes them again if they are empty.
#[derive(Debug, Default)]
struct Created {
    users: usize,
    table: bool,
    chains: Vec<&'static str>,
}

/// (namespace, IPv6, table).
type Key = ((u64, u64), bool, &'static str);

static CREATED: Mutex<Vec<(Key, Created)>> = Mutex::new(Vec::new());

/// `route_localnet` values this process changed: (namespace, interface) → (users, value before).
type LocalnetKey = ((u64, u64), String);
static LOCALNET: Mutex<Vec<(LocalnetKey, (usize, String))>> = Mutex::new(Vec::new());

fn lock<T>(m: &'static Mutex<T>) -> std::sync::MutexGuard<'static, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RuleSet {
    fn families(&self) -> Vec<bool> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            if self.rules.iter().any(|r| r.v6 == v6) {
                out.push(v6);
            }
        }
        out
    }

    fn nft_error(&self, op: &'static str, e: NftError) -> Error {
        match e.errno() {
            Some(errno) => Error::os(
                op,
                self.object.clone(),
                std::io::Error::from_raw_os_error(errno),
            ),
            None => Error::os(
                op,
                self.object.clone(),
                std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string()),
            ),
        }
    }

    /// Puts the rules in place, all or nothing per family; on a failure in the second family,
    /// the first is removed again.
    pub(crate) fn install(&self) -> Result<()> {
        if let Some(iface) = &self.route_localnet {
            self.localnet(iface, true)?;
        }
        let mut done = Vec::new();
        for v6 in self.families() {
            let result = match self.backend {
                Backend::Nftables => self.install_nft(v6),
                Backend::IptablesRestore => self.install_legacy(v6),
            };
            if let Err(e) = result {
                for v6 in done {
                    let _ = self.remove_family(v6, true);
                }
                if let Some(iface) = &self.route_localnet {
                    let _ = self.localnet(iface, false);
                }
                self.released
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(e);
            }
            done.push(v6);
        }
        Ok(())
    }

    /// Removes the rules; what is already gone counts as removed.
    pub(crate) fn remove(&self) -> Result<()> {
        let release = !self
            .released
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        let mut errors = Vec::new();
        for v6 in self.families() {
            if let Err(e) = self.remove_family(v6, release) {
                errors.push(e);
            }
        }
        if let (Some(iface), true) = (&self.route_localnet, release) {
            if let Err(e) = self.localnet(iface, false) {
                errors.push(e);
            }
        }
        Error::collect(self.object.clone(), errors)
    }

    /// Removes the family's rules; with `release`, also gives back the set's count of the
    /// table's users (the last one deletes what this process created).
    fn remove_family(&self, v6: bool, release: bool) -> Result<()> {
        match self.backend {
            Backend::Nftables => self.remove_nft(v6, release),
            Backend::IptablesRestore => self.remove_legacy(v6),
        }
    }

    fn socket(&self) -> Result<Socket> {
        socket_in(&self.ns)
            .map_err(|e| Error::os("open nf_tables socket for", self.object.clone(), e))
    }

    fn install_nft(&self, v6: bool) -> Result<()> {
        let family = nft::family(v6);
        let mut sock = self.socket()?;
        let key = (self.ns.id(), v6, TABLE);
        let mut last = None;
        // A creation race (someone made the table or a base chain between our look and our
        // batch) fails the batch with EEXIST and changes nothing: look again.
        for _ in 0..3 {
            let mut batch = Batch::default();
            let mut created = Created::default();
            let exists = sock
                .table_exists(family, TABLE)
                .map_err(|e| self.nft_error("read nat table for", e))?;
            if !exists {
                batch.new_table(family, TABLE);
                created.table = true;
            }
            for builtin in BUILTIN {
                if !self.rules.iter().any(|r| r.v6 == v6 && r.chain == builtin) {
                    continue;
                }
                let present = exists
                    && sock
                        .chain_exists(family, TABLE, builtin)
                        .map_err(|e| self.nft_error("read nat table for", e))?;
                if !present {
                    batch.new_base_chain(family, TABLE, builtin);
                    created.chains.push(builtin);
                }
            }
            for (_, chain) in self.chains.iter().filter(|(c6, _)| *c6 == v6) {
                batch.new_chain(family, TABLE, chain);
            }
            for rule in self.rules.iter().filter(|r| r.v6 == v6) {
                batch.append(TABLE, rule);
            }
            // Counted before the batch: a concurrent removal by another set of ours must not
            // delete what this batch is about to use.
            register(key, created);
            match sock.apply(&batch) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // EEXIST: someone made the table or a base chain first; ENOENT: another
                    // set's cleanup deleted an empty table we found. Either way nothing of the
                    // batch took effect: look again (unless our own chain is what exists).
                    let raced = matches!(e.errno(), Some(nix::libc::EEXIST | nix::libc::ENOENT))
                        && !self.chains.iter().any(|(c6, c)| {
                            *c6 == v6 && sock.chain_exists(family, TABLE, c).unwrap_or(false)
                        });
                    // Nothing of the batch took effect (or, uncertain, may have): this set
                    // no longer counts as a user, and what it meant to create is not ours.
                    if matches!(e, NftError::Uncertain) {
                        // Maybe in place: removed again (which also ends this set's count).
                        let _ = self.remove_nft(v6, true);
                    } else {
                        unregister_failed(key);
                    }
                    if !raced {
                        return Err(match e.errno() {
                            Some(nix::libc::EEXIST) => Error::invalid(
                                self.object.clone(),
                                "its chain already exists in the nat table (another set with \
                                 the same chain name?)",
                            ),
                            _ => self.nft_error("add", e),
                        });
                    }
                    last = Some(e);
                }
            }
        }
        Err(self.nft_error("add", last.unwrap_or(NftError::Refused(nix::libc::EEXIST))))
    }

    fn remove_nft(&self, v6: bool, release: bool) -> Result<()> {
        let family = nft::family(v6);
        let mut sock = match self.socket() {
            Ok(s) => s,
            Err(e) => {
                if release {
                    let _ = unregister((self.ns.id(), v6, TABLE));
                }
                return Err(e);
            }
        };
        let mine: Vec<&str> = self
            .chains
            .iter()
            .filter(|(c6, _)| *c6 == v6)
            .map(|(_, c)| c.as_str())
            .collect();
        let mut result = Ok(());
        // A rule or chain removed by someone else between the dump and the batch fails the
        // batch with ENOENT, a rule jumping to one of the chains added meanwhile with EBUSY:
        // dump again.
        for attempt in 0..3 {
            let rules = match sock.rules(family, TABLE) {
                Ok(r) => r,
                Err(e) => {
                    result = Err(self.nft_error("read nat table for", e));
                    break;
                }
            };
            let mut batch = Batch::default();
            // The set's rules outside its chains: those that jump to them, and those carrying
            // the comment of the set (or, removing by chain name, of the rules that jump to
            // it: a published-ports set's POSTROUTING masquerade).
            let mut comments: Vec<&str> = Vec::new();
            if !self.comment.is_empty() {
                comments.push(&self.comment);
            }
            for r in &rules {
                if r.jump.as_deref().is_some_and(|j| mine.contains(&j)) {
                    if let Some(c) = r.comment.as_deref().filter(|c| !c.is_empty()) {
                        comments.push(c);
                    }
                }
            }
            for r in &rules {
                if mine.contains(&r.chain.as_str()) {
                    continue;
                }
                let jumps = r.jump.as_deref().is_some_and(|j| mine.contains(&j));
                // Only rules in the base chains with no jump elsewhere: a rule with the comment
                // in another chain, or jumping to one, is another set's (a comment may be given
                // twice).
                let tagged = r.comment.as_deref().is_some_and(|c| comments.contains(&c))
                    && r.jump.is_none()
                    && BUILTIN.contains(&r.chain.as_str());
                if jumps || tagged {
                    batch.delete_rule(family, TABLE, &r.chain, r.handle);
                }
            }
            for chain in &mine {
                let present = sock.chain_exists(family, TABLE, chain).unwrap_or(true);
                if present {
                    batch.delete_chain(family, TABLE, chain, false);
                }
            }
            match sock.apply(&batch) {
                Ok(()) => {
                    result = Ok(());
                    break;
                }
                Err(e)
                    if matches!(e.errno(), Some(nix::libc::ENOENT | nix::libc::EBUSY))
                        && attempt < 2 =>
                {
                    continue;
                }
                Err(e) => {
                    result = Err(self.nft_error("delete", e));
                    break;
                }
            }
        }
        // This set no longer uses the table: the last one deletes what this process created,
        // if it is empty.
        if let Some(created) = release
            .then(|| unregister((self.ns.id(), v6, TABLE)))
            .flatten()
        {
            let mut batch = Batch::default();
            for chain in &created.chains {
                batch.delete_chain(family, TABLE, chain, true);
            }
            if created.table {
                batch.delete_empty_table(family, TABLE);
            }
            if let Err(e) = sock.apply(&batch) {
                // EBUSY: someone else's rules or chains are there now; they keep the table.
                if e.errno() != Some(nix::libc::EBUSY) {
                    crate::trace::swallowed!(&self.object, &self.nft_error("delete", e));
                }
            }
        }
        result
    }

    fn restore(&self, v6: bool, body: String) -> std::io::Result<std::process::Output> {
        let program = if v6 {
            "ip6tables-restore"
        } else {
            "iptables-restore"
        };
        let script = format!("*{TABLE}\n{body}COMMIT\n");
        firewall::run_fed(
            &self.ns,
            program,
            &["--noflush".to_owned()],
            Some(script.into_bytes()),
        )
    }

    fn restore_checked(&self, op: &'static str, v6: bool, body: String) -> Result<()> {
        let program = if v6 {
            "ip6tables-restore"
        } else {
            "iptables-restore"
        };
        let result = self.restore(v6, body);
        match &result {
            Ok(out) if out.status.success() => Ok(()),
            _ => Err(firewall::command_error(
                op,
                self.object.clone(),
                program,
                &["--noflush".to_owned()],
                result,
            )),
        }
    }

    fn install_legacy(&self, v6: bool) -> Result<()> {
        let mut body = String::new();
        // `-N`, not `:CHAIN - [0:0]`: with --noflush the latter would empty a chain of that
        // name that is already there (someone else's) instead of failing.
        for (_, chain) in self.chains.iter().filter(|(c6, _)| *c6 == v6) {
            body.push_str(&format!("-N {chain}\n"));
        }
        for rule in self.rules.iter().filter(|r| r.v6 == v6) {
            body.push_str(&rule.restore_line());
            body.push('\n');
        }
        match self.restore_checked("add", v6, body) {
            // The legacy tool says only "line N failed": whether the chain was there decides.
            Err(_) if self.legacy_chain_exists(v6) => Err(Error::invalid(
                self.object.clone(),
                "its chain already exists in the nat table (another set with the same chain \
                     name?)",
            )),
            other => other,
        }
    }

    /// Whether one of the set's chains of family `v6` is in the `nat` table (`iptables-save`).
    fn legacy_chain_exists(&self, v6: bool) -> bool {
        let program = if v6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        };
        let Ok(out) = firewall::run_fed(&self.ns, program, &["-t".into(), TABLE.into()], None)
        else {
            return false;
        };
        let saved = String::from_utf8_lossy(&out.stdout);
        self.chains
            .iter()
            .filter(|(c6, _)| *c6 == v6)
            .any(|(_, c)| {
                saved
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&format!(":{c}")))
            })
    }

    fn remove_legacy(&self, v6: bool) -> Result<()> {
        let mine: Vec<&str> = self
            .chains
            .iter()
            .filter(|(c6, _)| *c6 == v6)
            .map(|(_, c)| c.as_str())
            .collect();
        let outside: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.v6 == v6 && !mine.contains(&r.chain.as_str()))
            .map(|r| format!("-D {}", &r.restore_line()[3..]))
            .collect();
        let chains: Vec<String> = mine.iter().map(|c| format!("-F {c}\n-X {c}")).collect();
        let mut body = String::new();
        for line in outside.iter().chain(&chains) {
            body.push_str(line);
            body.push('\n');
        }
        if self.restore_checked("delete", v6, body).is_ok() {
            return Ok(());
        }
        // Something was gone already (a restore is all or nothing): each piece on its own,
        // "not there" counting as removed.
        let mut errors = Vec::new();
        for line in outside.iter().chain(&chains) {
            let result = self.restore(v6, format!("{line}\n"));
            if let Ok(out) = &result {
                if out.status.success() || firewall::rule_absent(out) || absent(out) {
                    continue;
                }
            }
            errors.push(firewall::command_error(
                "delete",
                self.object.clone(),
                if v6 {
                    "ip6tables-restore"
                } else {
                    "iptables-restore"
                },
                &["--noflush".to_owned()],
                result,
            ));
        }
        Error::collect(self.object.clone(), errors)
    }

    /// The set stays (kept): it no longer counts as a user of what this process created in
    /// its namespace (the guard holding the namespace open goes; a stale count would outlive
    /// the namespace and be inherited by the next one given the same inode), and its
    /// `route_localnet` is left on.
    pub(crate) fn forget(&self) {
        if self
            .released
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        if self.backend == Backend::Nftables {
            for v6 in self.families() {
                unregister_failed((self.ns.id(), v6, TABLE));
            }
        }
        if let Some(iface) = &self.route_localnet {
            let id = (self.ns.id(), iface.clone());
            let mut all = lock(&LOCALNET);
            if let Some(i) = all.iter().position(|(k, _)| *k == id) {
                // The kept rules need it on: nobody puts the old value back any more.
                all[i].1.1 = "1".to_owned();
                all[i].1.0 -= 1;
                if all[i].1.0 == 0 {
                    all.remove(i);
                }
            }
        }
    }

    /// Switches `route_localnet` on `iface` on (the first set of this process to need it,
    /// remembering the value before) or back (the last).
    fn localnet(&self, iface: &str, on: bool) -> Result<()> {
        let key = format!("net.ipv4.conf.{iface}.route_localnet");
        let ns = crate::netns::Namespace::view(self.ns.clone());
        let id = (self.ns.id(), iface.to_owned());
        let mut all = lock(&LOCALNET);
        let pos = all.iter().position(|(k, _)| *k == id);
        if on {
            match pos {
                Some(i) => all[i].1.0 += 1,
                None => {
                    let before = ns.sysctl_blocking(&key)?.trim().to_owned();
                    if before != "1" {
                        ns.set_sysctl_blocking(&key, "1")?;
                    }
                    all.push((id, (1, before)));
                }
            }
            return Ok(());
        }
        let Some(i) = pos else { return Ok(()) };
        all[i].1.0 -= 1;
        if all[i].1.0 > 0 {
            return Ok(());
        }
        let (_, (_, before)) = all.remove(i);
        if before == "1" {
            return Ok(());
        }
        // Written under the lock: a set starting meanwhile must not read "1" as the value
        // before it and then see it turned off.
        let result = ns.set_sysctl_blocking(&key, &before);
        drop(all);
        match result {
            // The interface is gone (its network was removed first): nothing to put back.
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

/// An nf_tables socket in `ns`, opened where the calling thread is; on a library worker, by
/// entering `ns` and going back to where the job was (no thread per socket); on any other
/// thread, on a short-lived thread of its own (a caller's thread never changes namespace, and
/// waiting for a worker from a worker would deadlock a busy pool). The socket stays in `ns`.
pub(super) fn socket_in(ns: &NsInner) -> std::io::Result<Socket> {
    let fd = ns.fd().clone();
    if crate::sys::is_thread_ns(fd.as_fd()) {
        return Socket::open();
    }
    if crate::sys::on_worker_thread() {
        let here = std::fs::File::open("/proc/thread-self/ns/net")?;
        crate::sys::setns_net(fd.as_fd())?;
        let sock = Socket::open();
        // The worker goes home after its job anyway; back now for the rest of this one.
        crate::sys::setns_net(here.as_fd())?;
        return sock;
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("netns-kit-nat".into())
            .spawn_scoped(scope, || {
                crate::sys::setns_net(fd.as_fd())?;
                Socket::open()
            })?
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread panicked")))
    })
}

/// The base chains `iptables-nft` may create in `table`.
fn base_chains(table: &str) -> &'static [&'static str] {
    match table {
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        _ => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    }
}

/// A user of this process starts writing `iptables` rules into `table` (family `v6`) of `ns`
/// by other means (the `iptables` program), which creates the table if it is missing: the
/// first such user records whether it was there, so [`release_table`] can delete what the
/// rules' insertion created. Only where `iptables` is the nf_tables variant (a legacy table
/// cannot be deleted).
pub(crate) fn acquire_table(ns: &NsInner, v6: bool, table: &'static str) {
    if Backend::detect() != Backend::Nftables {
        return;
    }
    let key = (ns.id(), v6, table);
    if lock(&CREATED).iter().any(|(k, _)| *k == key) {
        register(key, Created::default());
        return;
    }
    let missing = socket_in(ns)
        .ok()
        .and_then(|mut s| s.table_exists(nft::family(v6), table).ok())
        == Some(false);
    register(
        key,
        Created {
            table: missing,
            ..Created::default()
        },
    );
}

/// The user of [`acquire_table`] is done (its rules removed, or `kept`, when it must not
/// delete anything): the last one deletes the table if it created it and it is empty now —
/// every base chain without rules, no other chain (`NLM_F_NONREC`: otherwise the kernel
/// refuses and nothing changes).
pub(crate) fn release_table(ns: &NsInner, v6: bool, table: &'static str, kept: bool) {
    if kept {
        unregister_failed((ns.id(), v6, table));
        return;
    }
    let Some(created) = unregister((ns.id(), v6, table)) else {
        return;
    };
    if !created.table {
        return;
    }
    let Ok(mut sock) = socket_in(ns) else {
        return;
    };
    let family = nft::family(v6);
    let mut batch = Batch::default();
    for chain in base_chains(table) {
        if sock.chain_exists(family, table, chain).unwrap_or(false) {
            batch.delete_chain(family, table, chain, true);
        }
    }
    batch.delete_empty_table(family, table);
    // EBUSY: someone else's rules or chains are there now; they keep the table.
    let _ = sock.apply(&batch);
}

/// The `--comment` word of an `iptables-save` line, quotes and all.
fn comment_of(line: &str) -> Option<&str> {
    let start = line.find(" --comment ")? + " --comment ".len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return Some(&rest[..i + 2]),
                _ => escaped = false,
            }
        }
        None
    } else {
        rest.split_whitespace().next()
    }
}

fn absent(out: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.contains("No chain") || stderr.contains("does not exist") || stderr.contains("Bad rule")
}

fn register(key: Key, created: Created) {
    let mut all = lock(&CREATED);
    match all.iter_mut().find(|(k, _)| *k == key) {
        Some((_, c)) => {
            c.users += 1;
            c.table |= created.table;
            for chain in created.chains {
                if !c.chains.contains(&chain) {
                    c.chains.push(chain);
                }
            }
        }
        None => all.push((
            key,
            Created {
                users: 1,
                ..created
            },
        )),
    }
}

/// A set whose batch failed: it no longer counts as a user (what it meant to create was not
/// created; if it was recorded as created by this set alone, the record goes).
fn unregister_failed(key: Key) {
    let mut all = lock(&CREATED);
    if let Some(i) = all.iter().position(|(k, _)| *k == key) {
        all[i].1.users -= 1;
        if all[i].1.users == 0 {
            all.remove(i);
        }
    }
}

/// One set fewer uses the namespace's tables; what to delete if it was the last.
fn unregister(key: Key) -> Option<Created> {
    let mut all = lock(&CREATED);
    let i = all.iter().position(|(k, _)| *k == key)?;
    all[i].1.users -= 1;
    if all[i].1.users > 0 {
        return None;
    }
    let (_, created) = all.remove(i);
    (created.table || !created.chains.is_empty()).then_some(created)
}

/// Removes chain `chain` of the `nat` table in both IP families, with every rule that jumps to
/// it; `Ok(false)` if it was in neither.
pub(crate) fn remove_chain(ns: &Arc<NsInner>, backend: Backend, chain: &str) -> Result<bool> {
    let object = format!("nat chain {chain:?} in {}", ns.label());
    let mut found = false;
    for v6 in [false, true] {
        let set = RuleSet {
            ns: ns.clone(),
            backend,
            chains: vec![(v6, chain.to_owned())],
            rules: Vec::new(),
            comment: String::new(),
            route_localnet: None,
            object: object.clone(),
            released: Arc::default(),
        };
        match backend {
            Backend::Nftables => {
                let family = nft::family(v6);
                let mut sock = set.socket()?;
                if !sock.chain_exists(family, TABLE, chain).unwrap_or(false) {
                    continue;
                }
                found = true;
                // Not a user of the registry: count it as one so remove_nft's release balances.
                register((ns.id(), v6, TABLE), Created::default());
                set.remove_nft(v6, true)?;
            }
            Backend::IptablesRestore => {
                let program = if v6 {
                    "ip6tables-save"
                } else {
                    "iptables-save"
                };
                let out = match firewall::run_fed(ns, program, &["-t".into(), TABLE.into()], None) {
                    Ok(out) => out,
                    // No ip6tables (or iptables) at all: no rules of that family to remove.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::os("read nat table for", object.clone(), e)),
                };
                let saved = String::from_utf8_lossy(&out.stdout).into_owned();
                if !saved
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&format!(":{chain}")))
                {
                    continue;
                }
                found = true;
                let jumps = |line: &str| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    words.windows(2).any(|w| w[0] == "-j" && w[1] == chain)
                        && words.get(1) != Some(&chain)
                };
                let rules: Vec<&str> = saved.lines().filter(|l| l.starts_with("-A ")).collect();
                // What jumps to the chain, and what carries the same comment outside it (a
                // published-ports set's POSTROUTING masquerade).
                let comments: Vec<&str> = rules
                    .iter()
                    .filter(|l| jumps(l))
                    .filter_map(|l| comment_of(l))
                    .collect();
                let user_chains: Vec<&str> = saved
                    .lines()
                    .filter_map(|l| l.strip_prefix(':'))
                    .filter_map(|l| l.split_whitespace().next())
                    .collect();
                let jumps_elsewhere = |line: &str| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    words
                        .windows(2)
                        .any(|w| w[0] == "-j" && w[1] != chain && user_chains.contains(&w[1]))
                };
                let mut body = String::new();
                for line in rules {
                    let in_chain = line.split_whitespace().nth(1) == Some(chain);
                    let in_builtin = line
                        .split_whitespace()
                        .nth(1)
                        .is_some_and(|c| BUILTIN.contains(&c));
                    let tagged = comment_of(line).is_some_and(|c| comments.contains(&c))
                        && !jumps_elsewhere(line)
                        && in_builtin;
                    if jumps(line) || (tagged && !in_chain) {
                        body.push_str(&line.replacen("-A ", "-D ", 1));
                        body.push('\n');
                    }
                }
                body.push_str(&format!("-F {chain}\n-X {chain}\n"));
                set.restore_checked("delete", v6, body)?;
            }
        }
    }
    Ok(found)
}
