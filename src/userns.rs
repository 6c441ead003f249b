//! Without root: a process of its own in new user, network and mount namespaces.
//!
//! Everything this crate does needs `CAP_NET_ADMIN` (and `CAP_SYS_ADMIN` for namespaces) — in
//! the user namespace that owns the network namespaces it works on, not necessarily on the
//! machine. So an unprivileged user can do all of it inside a user namespace of their own:
//! [`isolate`] moves the calling process into a new user namespace that maps the caller's uid
//! and gid to root, with a new network namespace (with `lo` up) and a new mount namespace whose
//! mounts are private, a private `/run/netns` (a tmpfs; `/run` itself is replaced when
//! `/run/netns` does not exist and cannot be made) and `/sys` for the new network namespace.
//! Root gets the same new network and mount namespaces, without a user namespace.
//!
//! # Why the process, and why first
//!
//! The kernel moves a process into a new user namespace only while it has a single thread
//! (`unshare(CLONE_NEWUSER)` fails with `EINVAL` otherwise), and `setns` into a user namespace
//! has the same rule. Every namespace this crate creates afterwards — on its own worker
//! threads, by any API — is then owned by that user namespace, and every capability check
//! passes there. So [`isolate`] must run before any thread starts: first thing in `main`, or in
//! a test binary with its own `main` (`harness = false`), or in a child process (`cargo
//! nextest` runs one process per test; a test under the default harness can re-run itself as
//! a child).
//!
//! # What works without root
//!
//! Each row is checked by `tests/rootless.rs`, which `.ci/run` runs as uid 65534 with no
//! capabilities, from outside the library (`ip -j`, `ip netns`, `iptables-save`, `ping`):
//!
//! | what | without root, after [`isolate`] |
//! | --- | --- |
//! | anonymous namespaces ([`Namespace::new`](crate::Namespace::new)) | yes |
//! | named namespaces | yes, in the private `/run/netns` (invisible outside) |
//! | veth pairs, bridges, addresses, routes, the patterns | yes |
//! | in-process ping, a real `ping` | yes |
//! | commands and closures inside a namespace | yes |
//! | per-namespace sysctls | yes |
//! | the FORWARD fix (`iptables` inside) | yes |
//! | a [`Lab`](crate::lab::Lab) | yes |
//! | `reap` | yes |
//! | namespaces outside the user namespace (the machine's, by pid) | no: `EPERM`, named |
//! | link impairment | not in this crate yet (needs `sch_netem`) |
//!
//! # Security
//!
//! The privileges are real only inside: the new user namespace owns the new network and mount
//! namespaces and those the process creates later, and nothing else. The machine's network
//! namespace, its interfaces, routes and firewall, its `/run/netns` and every file keep their
//! owners and permissions; a file the caller could not write before, it cannot write now. When
//! the process ends, its namespaces and everything in them go with it.

use std::{io, path::Path};

use nix::{
    mount::{MsFlags, mount},
    sched::{CloneFlags, unshare},
    unistd::{getegid, geteuid},
};

use crate::error::{Error, Result};

/// What [`isolate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The process was root: new network and mount namespaces, no user namespace.
    Root,
    /// The process was not root: a new user namespace mapping `uid`/`gid` (the caller's) to
    /// root, and new network and mount namespaces owned by it.
    UserNamespace {
        /// The caller's uid outside.
        uid: u32,
        /// The caller's gid outside.
        gid: u32,
    },
}

/// Moves the calling process into new network and mount namespaces — and, when it is not root,
/// a new user namespace in which it is root — with `lo` up, private mounts, a private
/// `/run/netns` and `/sys` for the new network namespace (see the [module docs](self)). Call
/// it before any thread starts.
///
/// # Errors
///
/// * [`Error::InvalidInput`] if the process already has more than one thread (naming how many);
/// * [`Error::PermissionDenied`] (or [`Error::Os`]) if the kernel refuses, naming the setting
///   at fault when one is — `user.max_user_namespaces`, `kernel.unprivileged_userns_clone`,
///   `kernel.apparmor_restrict_unprivileged_userns` — and how to change it;
/// * the errors of the mounts and of writing the uid/gid maps.
///
/// # Examples
///
/// ```no_run
/// fn main() -> netns_kit::Result<()> {
///     netns_kit::userns::isolate()?; // first: no thread may exist yet
///     let ns = netns_kit::Namespace::new_blocking()?; // works as an unprivileged user too
///     # drop(ns);
///     Ok(())
/// }
/// ```
pub fn isolate() -> Result<Isolation> {
    let object = "this process";
    if crate::sys::home_opened() {
        return Err(Error::invalid(
            object,
            "it used netns-kit before: its library threads belong to its current namespaces; \
             call `userns::isolate` first thing in `main`",
        ));
    }
    let threads = thread_count();
    if threads > 1 {
        return Err(Error::invalid(
            object,
            format!(
                "it has {threads} threads; a process enters a new user namespace only while it has one: call `userns::isolate` first thing in `main` (a test: a binary with `harness = false`, or a child process)"
            ),
        ));
    }
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    let plain = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS;
    // Root with the capabilities needs no user namespace; root without them (a container's)
    // gets one like anybody else.
    let root = privileged() && unshare(plain).is_ok();
    let isolation = if root {
        Isolation::Root
    } else {
        Isolation::UserNamespace { uid, gid }
    };
    if !root {
        if let Err(errno) = unshare(plain | CloneFlags::CLONE_NEWUSER) {
            let source = io::Error::from_raw_os_error(errno as i32);
            return Err(Error::with_detail(
                "enter new namespaces for",
                object,
                source,
                Some(why_refused(errno)),
            ));
        }
    }
    if let Isolation::UserNamespace { uid, gid } = isolation {
        let write = |path: &str, text: String| {
            std::fs::write(path, text).map_err(|e| Error::os("write", path.to_owned(), e))
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("0 {uid} 1"))?;
        write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    }
    settle_in()?;
    Ok(isolation)
}

/// In new network and mount namespaces just entered (by [`isolate`], or by `unshare(1)` for a
/// test run in a child): private mounts, a private `/run/netns`, `/sys` for the new network
/// namespace, `lo` up.
pub(crate) fn settle_in() -> Result<()> {
    // Nothing mounted from here on reaches the parent's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|errno| {
        Error::os(
            "make private",
            "the mounts",
            io::Error::from_raw_os_error(errno as i32),
        )
    })?;
    private_run_netns()?;
    // `/sys/class/net` and friends for the new network namespace (what `ip netns exec` does);
    // best effort: nothing in this crate reads it.
    let _ = mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::empty(),
        None::<&str>,
    );
    let lo = crate::netns::Namespace::current()?.link_by_index_blocking(1)?;
    lo.set_up_blocking()?;
    Ok(())
}

/// A tmpfs at `/run/netns`; if it does not exist, a tmpfs over `/run` first (making the
/// directory on the machine's `/run` would be a change outside, and an unprivileged user cannot
/// anyway).
fn private_run_netns() -> Result<()> {
    let tmpfs = |target: &str| {
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        )
        .map_err(|errno| {
            Error::os(
                "mount a tmpfs on",
                target.to_owned(),
                io::Error::from_raw_os_error(errno as i32),
            )
        })
    };
    let dir = Path::new(crate::sys::NETNS_RUN_DIR);
    if !dir.is_dir() {
        tmpfs("/run")?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::os("create", dir.display().to_string(), e))?;
    }
    tmpfs(crate::sys::NETNS_RUN_DIR)
}

/// Whether this process has `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` in its user namespace (root
/// on a machine, usually; not root in a container without them).
pub(crate) fn privileged() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0 && caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether this process is in a user namespace other than the machine's (whose uid map is the
/// identity over all uids).
pub(crate) fn in_new_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// The number of threads of this process.
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Why the kernel refused a new user namespace, and what to change.
fn why_refused(errno: nix::errno::Errno) -> String {
    why_refused_given(errno, &|path| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    })
}

/// [`why_refused`], reading settings through `read` (a path under `/proc/sys` to its value).
fn why_refused_given(errno: nix::errno::Errno, read: &dyn Fn(&str) -> Option<String>) -> String {
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled: user.max_user_namespaces is 0 (enable with `sysctl -w user.max_user_namespaces=15000`)".into();
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled: kernel.unprivileged_userns_clone is 0 (enable with `sysctl -w kernel.unprivileged_userns_clone=1`)".into();
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces: kernel.apparmor_restrict_unprivileged_userns is 1 (set it to 0, or give the program an AppArmor profile with `userns,`)".into();
    }
    match errno {
        nix::errno::Errno::ENOSPC => "the limit of user namespaces is reached (user.max_user_namespaces)".into(),
        nix::errno::Errno::EPERM => "the kernel or a security policy (seccomp, a container runtime) forbids new user namespaces here".into(),
        e => format!("the kernel refused ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    fn with(setting: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |path| path.ends_with(setting).then(|| value.to_owned())
    }

    #[test]
    fn a_refusal_names_the_setting_at_fault() {
        let says = |read: &dyn Fn(&str) -> Option<String>| why_refused_given(Errno::EPERM, read);
        assert!(says(&with("max_user_namespaces", "0")).contains("user.max_user_namespaces is 0"));
        assert!(
            says(&with("unprivileged_userns_clone", "0"))
                .contains("kernel.unprivileged_userns_clone")
        );
        assert!(says(&with("apparmor_restrict_unprivileged_userns", "1")).contains("AppArmor"));
        assert!(says(&|_| None).contains("security policy"));
        assert!(why_refused_given(Errno::ENOSPC, &|_| None).contains("limit"));
    }
}
