//! Ownership marks: how a resource that can outlive its process says which process made it, so
//! [`reap`](crate::reap) can remove leftovers of crashed processes and nothing else.
//!
//! # The mark
//!
//! `netns-kit:pNS:PID:START`: `NS` is the inode of the process's PID namespace, `PID` its pid
//! there, `START` its start time (field 22 of `/proc/PID/stat`, clock ticks since boot). The
//! three identify a process across PID namespaces (two containers' pid 1 differ by `NS`) and
//! after its pid is reused (a later process has a later start time).
//!
//! **Judging an owner.** The reaper looks through every process `/proc` lists for one whose PID
//! namespace, innermost pid (`NSpid`) and start time match. None means the owner is dead only if
//! `/proc` must list it: `/proc` belongs to the initial PID namespace (which sees every process)
//! or to the owner's. Otherwise the reaper cannot see the owner's namespace and **keeps** the
//! object: an owner that cannot be judged is treated as alive. Marks in the older
//! `netns-kit:PID:START` form are likewise never judged dead.
//!
//! # Where marks live, and the gaps they close
//!
//! A mark must be in place *before* the resource can be seen without one, or a process killed in
//! between leaves an unmarked leftover that nobody may remove:
//!
//! * **named namespace**: the mark is the alias of the namespace's `lo`, set on the worker thread
//!   right after `unshare`, before the namespace is named. The name itself is claimed with a
//!   marked file: a temporary `/run/netns/.netns-kit-pNS-PID-START-N` holding the mark is
//!   hard-linked to `/run/netns/NAME` (`link(2)` fails if the name is taken, so the claim is
//!   atomic) and unlinked; the namespace is then bind-mounted over `NAME`. A crash leaves at worst
//!   a marked temporary file or a marked, unmounted `NAME`, both recognisable;
//! * **links** (bridges, veth pairs, both ends): the kernel ignores `IFLA_IFALIAS` in
//!   `RTM_NEWLINK`, so the alias mark is set by a request right after creation. To cover the
//!   moment in between, a link is created in a **link group** tagged with a hash of its owner's
//!   mark (`GROUP_TAG | hash << 11 | serial`) *and* with the transmit queue length
//!   [`CREATION_TXQLEN`]; the request that sets the alias restores the kernel's default (1000).
//!   A link showing both and no alias is one this crate was creating; its owner is judged by the
//!   hash against every process the reaper can see (so only a reaper in the initial PID
//!   namespace removes it). A link in a tagged group without that queue length, or with an alias
//!   that is not a mark, is someone else's and never touched.
//! * **firewall rules**: an `iptables` comment, part of the rule when it is inserted.
//!
//! `keep()` replaces a mark by [`KEPT`] (rules, namespaces) or removes a link's alias, so the
//! reaper never removes what the user decided to keep.

use std::{
    collections::HashSet,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

pub(crate) const PREFIX: &str = "netns-kit:";
/// What `keep()` leaves in place of a mark on a firewall rule or a named namespace's `lo`.
pub(crate) const KEPT: &str = "netns-kit:kept";
/// What `keep()` leaves in place of a link's alias mark: no alias at all (the kernel removes an
/// alias set to the empty string). A kept link then looks like any link made by `ip link add` —
/// a runtime's bridge or a CNI plugin's veth carries nothing of this crate — and `reap` never
/// touches a link without a mark.
pub(crate) const UNMARKED_ALIAS: &str = "";
/// The prefix of temporary claim files in `/run/netns`.
pub(crate) const CLAIM_PREFIX: &str = ".netns-kit-";

/// The top bit marks a link group as one of this crate's.
pub(crate) const GROUP_TAG: u32 = 0x8000_0000;
const GROUP_OWNER_SHIFT: u32 = 11;
const GROUP_OWNER_MASK: u32 = 0xf_ffff; // 20 bits of the owner's hash
const GROUP_SERIAL_MASK: u32 = (1 << GROUP_OWNER_SHIFT) - 1; // 2048 groups per process
/// The transmit queue length a link is created with, until its alias mark is set.
pub(crate) const CREATION_TXQLEN: u32 = 0x6e6b;
/// The kernel's default transmit queue length for the links this crate makes.
pub(crate) const DEFAULT_TXQLEN: u32 = 1000;
/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`), fixed by the kernel.
const INIT_PID_NS: u64 = 0xefff_fffc;

/// A mark's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pid_ns: u64,
    pid: u32,
    start: u64,
}

/// The inode of the PID namespace `pid` is in (`/proc/PID/ns/pid`), as seen from here.
fn pid_ns_of(pid: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    link.to_str()?
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// This process's PID namespace.
fn own_pid_ns() -> u64 {
    static NS: OnceLock<u64> = OnceLock::new();
    *NS.get_or_init(|| pid_ns_of("self").unwrap_or(0))
}

/// This process, as a mark names it.
fn me() -> Owner {
    Owner {
        pid_ns: own_pid_ns(),
        pid: std::process::id(),
        start: start_time(),
    }
}

/// One process as `/proc` lists it.
#[derive(Debug, Clone)]
struct Listed {
    /// Its PID namespace, if its `/proc/PID/ns/pid` could be read.
    pid_ns: Option<u64>,
    /// Its pid in each PID namespace from `/proc`'s down to its own (`NSpid`).
    ns_pids: Vec<u32>,
    start: u64,
}

/// How many PID namespaces deep this process is below `/proc`'s (1: `/proc` is its own).
fn proc_depth() -> usize {
    static DEPTH: OnceLock<usize> = OnceLock::new();
    *DEPTH.get_or_init(|| ns_pids("self").len())
}

fn ns_pids(entry: &str) -> Vec<u32> {
    crate::sys::read_small(format!("/proc/{entry}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every process `/proc` lists, read now.
fn listed() -> Vec<Listed> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let ns_pids = ns_pids(&pid);
        if let (false, Ok(start)) = (ns_pids.is_empty(), crate::sys::start_time_at(&pid)) {
            // A process in `/proc`'s own namespace is in ours when that is ours (its namespace
            // link may be unreadable, e.g. for a pid 1 that is not dumpable).
            let same_as_proc = (ns_pids.len() == 1 && proc_depth() == 1).then(own_pid_ns);
            out.push(Listed {
                pid_ns: pid_ns_of(&pid).or(same_as_proc),
                ns_pids,
                start,
            });
        }
    }
    out
}

/// Whether this process sees every process of the system: it is in the initial PID namespace
/// and so is its `/proc`.
fn sees_everything() -> bool {
    own_pid_ns() == INIT_PID_NS && proc_depth() == 1
}

impl Owner {
    /// Whether this owner is still running: `None` if it cannot be told from here (see the
    /// [module docs](self)).
    pub(crate) fn is_alive(&self) -> Option<bool> {
        if self.pid_ns == own_pid_ns() && proc_depth() == 1 {
            // `/proc` numbers processes as the owner's namespace does.
            let start = crate::sys::start_time_at(&self.pid.to_string());
            return Some(start.is_ok_and(|s| s == self.start));
        }
        let same_depth = self.pid_ns == own_pid_ns();
        if !same_depth && !sees_everything() {
            return None;
        }
        // Every process of the owner's namespace is listed: look for it. A candidate whose
        // namespace cannot be read counts as the owner (never conclude "dead" by mistake).
        let found = listed().iter().any(|p| {
            p.start == self.start
                && p.ns_pids.last() == Some(&self.pid)
                && match p.pid_ns {
                    Some(ns) => ns == self.pid_ns,
                    None => true,
                }
                && (!same_depth || p.ns_pids.len() == proc_depth())
        });
        Some(found)
    }

    /// The 20-bit hash of this owner that its link groups carry.
    fn hash(&self) -> u32 {
        // FNV-1a: stable across processes and builds (unlike std's RandomState).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in format!("{}:{}:{}", self.pid_ns, self.pid, self.start).bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        (h ^ (h >> 32)) as u32 & GROUP_OWNER_MASK
    }
}

fn start_time() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| crate::sys::start_time_at("self").unwrap_or(0))
}

/// This process's mark.
pub(crate) fn marker() -> String {
    let me = me();
    format!("{PREFIX}p{}:{}:{}", me.pid_ns, me.pid, me.start)
}

/// The owner a mark names, if `text` is a mark (and not [`KEPT`], nor an older mark). A mark
/// may carry a further `:N` of its own (firewall rules number theirs).
pub(crate) fn parse(text: &str) -> Option<Owner> {
    let rest = text.trim().trim_end_matches('\0').strip_prefix(PREFIX)?;
    let mut parts = rest.split(':');
    let pid_ns = parts.next()?.strip_prefix('p')?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some(Owner { pid_ns, pid, start })
}

/// Whether `text` is the mark of a process known to be no longer running.
pub(crate) fn is_dead_mark(text: &str) -> bool {
    parse(text).is_some_and(|o| o.is_alive() == Some(false))
}

/// A fresh temporary claim-file name for this process.
pub(crate) fn claim_name() -> String {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    let me = me();
    format!(
        "{CLAIM_PREFIX}p{}-{}-{}-{}",
        me.pid_ns,
        me.pid,
        me.start,
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a claim-file name was made by a process known to be no longer running.
pub(crate) fn is_dead_claim(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(CLAIM_PREFIX) else {
        return false;
    };
    let mut parts = rest.splitn(4, '-');
    let owner = (|| {
        Some(Owner {
            pid_ns: parts.next()?.strip_prefix('p')?.parse().ok()?,
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
        })
    })();
    owner.is_some_and(|o| o.is_alive() == Some(false))
}

static LIVE_GROUPS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// A link group for a new link or bridged network of this process, unused by its live ones.
/// Release it with [`release_group`].
pub(crate) fn allocate_group() -> Option<u32> {
    // Serials start at a random point in each process, so two processes that share a pid (in
    // different PID namespaces) and a network namespace are unlikely to pick the same group.
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(start_time());
        AtomicU32::new(h.finish() as u32)
    });
    let owner = me().hash();
    let mut live = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    let live = live.get_or_insert_with(HashSet::new);
    for _ in 0..=GROUP_SERIAL_MASK {
        let serial = next.fetch_add(1, Ordering::Relaxed) & GROUP_SERIAL_MASK;
        let group = GROUP_TAG | (owner << GROUP_OWNER_SHIFT) | serial;
        if live.insert(group) {
            return Some(group);
        }
    }
    None
}

/// Makes `group` available again.
pub(crate) fn release_group(group: u32) {
    let mut live = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(live) = live.as_mut() {
        live.remove(&group);
    }
}

/// Whether `group` carries this crate's tag (so a user may not pick it).
pub(crate) fn is_tagged(group: u32) -> bool {
    group & GROUP_TAG != 0
}

/// A freshly allocated group, given back unless handed over to the network that uses it.
#[derive(Debug)]
pub(crate) struct GroupHold(Option<u32>);

impl GroupHold {
    pub(crate) fn new(group: u32) -> GroupHold {
        GroupHold(Some(group))
    }

    pub(crate) fn group(&self) -> u32 {
        self.0.expect("held until handed over")
    }

    /// The owner now releases it (after its links are gone).
    pub(crate) fn hand_over(mut self) -> u32 {
        self.0.take().expect("held until handed over")
    }
}

impl Drop for GroupHold {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            release_group(group);
        }
    }
}

/// Whether a link in tagged `group`, created by this crate (it still has
/// [`CREATION_TXQLEN`] and no alias), belongs to a process known to be dead: no process visible
/// here has the owner hash the group carries, and every process is visible (the reaper runs in
/// the initial PID namespace).
pub(crate) fn is_dead_group(group: u32) -> bool {
    if !is_tagged(group) || !sees_everything() {
        return false;
    }
    let hash = (group >> GROUP_OWNER_SHIFT) & GROUP_OWNER_MASK;
    let mut alive = false;
    for p in listed() {
        let (Some(pid_ns), Some(&pid)) = (p.pid_ns, p.ns_pids.last()) else {
            return false; // a process that cannot be judged may be the owner
        };
        let owner = Owner {
            pid_ns,
            pid,
            start: p.start,
        };
        alive |= owner.hash() == hash;
    }
    !alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_mark_is_alive() {
        let owner = parse(&marker()).unwrap();
        assert_eq!(owner, me());
        assert_eq!(owner.is_alive(), Some(true));
        let later = Owner {
            start: owner.start + 1,
            ..owner
        };
        assert_eq!(later.is_alive(), Some(false));
        assert!(!is_dead_mark(&marker()));
        assert!(is_dead_mark(&format!(
            "{PREFIX}p{}:{}:{}",
            owner.pid_ns,
            owner.pid,
            owner.start + 1
        )));
        assert!(parse(&format!("{}:7", marker())).is_some());
        // Older marks and foreign texts are never judged.
        assert_eq!(parse("netns-kit:12:34"), None);
        assert_eq!(parse(KEPT), None);
        assert_eq!(parse("something else"), None);
    }

    #[test]
    fn claims_and_groups() {
        let claim = claim_name();
        assert!(!is_dead_claim(&claim));
        assert!(!is_dead_claim("ns1"));
        let me = me();
        assert!(is_dead_claim(&format!(
            "{CLAIM_PREFIX}p{}-{}-{}-0",
            me.pid_ns,
            me.pid,
            me.start + 1
        )));
        let a = allocate_group().unwrap();
        let b = allocate_group().unwrap();
        assert_ne!(a, b);
        assert_eq!((a >> GROUP_OWNER_SHIFT) & GROUP_OWNER_MASK, me.hash());
        assert!(!is_dead_group(a));
        assert!(!is_dead_group(7));
        release_group(a);
        release_group(b);
    }
}
