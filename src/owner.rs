//! Ownership marks: how a resource that can outlive its process says which process made it, so
//! [`reap`](crate::reap) can remove leftovers of crashed processes and nothing else.
//!
//! # The mark
//!
//! `netns-kit:PID:START`, where `START` is the process's start time (field 22 of
//! `/proc/PID/stat`, clock ticks since boot). The pair identifies a process even after its pid is
//! reused: a later process with the same pid has a later start time. An owner counts as alive
//! only if a process with both the pid and the start time exists.
//!
//! # Where marks live, and the gaps they close
//!
//! A mark must be in place *before* the resource can be seen without one, or a process killed in
//! between leaves an unmarked leftover that nobody may remove:
//!
//! * **named namespace**: the mark is the alias of the namespace's `lo`, set on the worker thread
//!   right after `unshare`, before the namespace is named. The name itself is claimed with a
//!   marked file: a temporary `/run/netns/.netns-kit-PID-START-N` holding the mark is hard-linked
//!   to `/run/netns/NAME` (`link(2)` fails if the name is taken, so the claim is atomic) and
//!   unlinked; the namespace is then bind-mounted over `NAME`. A crash leaves at worst a marked
//!   temporary file or a marked, unmounted `NAME`, both recognisable;
//! * **links** (bridges, veth pairs): the kernel ignores `IFLA_IFALIAS` in `RTM_NEWLINK`, so the
//!   alias mark is set by a request right after creation. A bridged network's links are also
//!   created in a **link group** that encodes the owner's pid (`GROUP_TAG | pid << 9 | n`), set in
//!   the creating message itself, which covers that gap: a group-tagged link whose pid is not
//!   running is a leftover. (Without the start time this check is only conservative: a reused
//!   pid makes a leftover look alive, never the reverse.)
//! * **firewall rules**: an `iptables` comment, part of the rule when it is inserted.
//!
//! `keep()` replaces a mark by [`KEPT`] so the reaper never removes what the user decided to keep.

use std::{
    collections::HashSet,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

const PREFIX: &str = "netns-kit:";
/// What `keep()` leaves in place of a mark.
pub(crate) const KEPT: &str = "netns-kit:kept";
/// The prefix of temporary claim files in `/run/netns`.
pub(crate) const CLAIM_PREFIX: &str = ".netns-kit-";

/// The top bit marks a link group as one of this crate's.
pub(crate) const GROUP_TAG: u32 = 0x8000_0000;
const GROUP_PID_SHIFT: u32 = 9;
const GROUP_PID_MASK: u32 = 0x3f_ffff; // 22 bits: PID_MAX_LIMIT is 2^22
const GROUP_SERIAL_MASK: u32 = (1 << GROUP_PID_SHIFT) - 1;

fn start_time() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| crate::sys::process_start_time(std::process::id()).unwrap_or(0))
}

/// This process's mark.
pub(crate) fn marker() -> String {
    format!("{PREFIX}{}:{}", std::process::id(), start_time())
}

/// The (pid, start time) a mark names, if `text` is a mark (and not [`KEPT`]). A mark may carry
/// a further `:N` of its own (firewall rules number theirs).
pub(crate) fn parse(text: &str) -> Option<(u32, u64)> {
    let rest = text.trim().trim_end_matches('\0').strip_prefix(PREFIX)?;
    let mut parts = rest.split(':');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some((pid, start))
}

/// Whether the process a mark names is still running.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    crate::sys::process_start_time(pid).is_ok_and(|s| s == start)
}

/// Whether `text` is the mark of a process that is no longer running.
pub(crate) fn is_dead_mark(text: &str) -> bool {
    parse(text).is_some_and(|(pid, start)| !is_alive(pid, start))
}

/// A fresh temporary claim-file name for this process.
pub(crate) fn claim_name() -> String {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    format!(
        "{CLAIM_PREFIX}{}-{}-{}",
        std::process::id(),
        start_time(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a claim-file name was made by a process that is no longer running.
pub(crate) fn is_dead_claim(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(CLAIM_PREFIX) else {
        return false;
    };
    let mut parts = rest.splitn(3, '-');
    let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
        return false;
    };
    match (pid.parse(), start.parse()) {
        (Ok(pid), Ok(start)) => !is_alive(pid, start),
        _ => false,
    }
}

static LIVE_GROUPS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// A link group for a new bridged network of this process, unused by its live networks.
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
    let pid = std::process::id() & GROUP_PID_MASK;
    let mut live = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    let live = live.get_or_insert_with(HashSet::new);
    for _ in 0..=GROUP_SERIAL_MASK {
        let serial = next.fetch_add(1, Ordering::Relaxed) & GROUP_SERIAL_MASK;
        let group = GROUP_TAG | (pid << GROUP_PID_SHIFT) | serial;
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

/// The pid a tagged link group encodes.
pub(crate) fn group_pid(group: u32) -> Option<u32> {
    (group & GROUP_TAG != 0).then_some((group >> GROUP_PID_SHIFT) & GROUP_PID_MASK)
}

/// Whether `group` is one of this crate's whose process is no longer running.
pub(crate) fn is_dead_group(group: u32) -> bool {
    group_pid(group).is_some_and(|pid| pid != 0 && crate::sys::process_start_time(pid).is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_mark_is_alive() {
        let (pid, start) = parse(&marker()).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(is_alive(pid, start));
        assert!(!is_alive(pid, start + 1));
        assert!(!is_dead_mark(&marker()));
        assert!(is_dead_mark(&format!("{PREFIX}{pid}:{}", start + 1)));
        assert_eq!(parse("netns-kit:12:34"), Some((12, 34)));
        assert_eq!(parse("netns-kit:12:34:7"), Some((12, 34)));
        assert_eq!(parse(KEPT), None);
        assert_eq!(parse("something else"), None);
    }

    #[test]
    fn claims_and_groups() {
        let claim = claim_name();
        assert!(!is_dead_claim(&claim));
        assert!(!is_dead_claim("ns1"));
        assert!(is_dead_claim(&format!(
            "{CLAIM_PREFIX}{}-{}-0",
            std::process::id(),
            start_time() + 1
        )));
        let a = allocate_group().unwrap();
        let b = allocate_group().unwrap();
        assert_ne!(a, b);
        assert_eq!(group_pid(a), Some(std::process::id() & GROUP_PID_MASK));
        assert!(!is_dead_group(a));
        assert_eq!(group_pid(7), None);
        release_group(a);
        release_group(b);
    }
}
