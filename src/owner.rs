//! Ownership marks: how a named resource says which process made it.
//!
//! A mark is `netns-kit:PID:START`, where `START` is the process's start time (field 22 of
//! `/proc/PID/stat`, clock ticks since boot). The pair identifies a process even after its pid
//! is reused: a later process with the same pid has a later start time. A process is the owner's
//! only if both match, so nothing is ever attributed to the wrong process.

use std::sync::OnceLock;

const PREFIX: &str = "netns-kit:";

/// This process's mark.
pub(crate) fn marker() -> String {
    static MARK: OnceLock<String> = OnceLock::new();
    MARK.get_or_init(|| {
        let pid = std::process::id();
        let start = crate::sys::process_start_time(pid).unwrap_or(0);
        format!("{PREFIX}{pid}:{start}")
    })
    .clone()
}

/// The (pid, start time) a mark names, if `text` is a mark.
#[allow(dead_code)]
pub(crate) fn parse(text: &str) -> Option<(u32, u64)> {
    let rest = text.trim().strip_prefix(PREFIX)?;
    let (pid, start) = rest.split_once(':')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Whether the process a mark names is still running.
#[allow(dead_code)]
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    crate::sys::process_start_time(pid).is_ok_and(|s| s == start)
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
        assert_eq!(parse("netns-kit:12:34"), Some((12, 34)));
        assert_eq!(parse("something else"), None);
    }
}
