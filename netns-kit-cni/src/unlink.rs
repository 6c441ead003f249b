//! DEL's removal of the container's interface, returning once the kernel has removed it rather
//! than once the kernel has also freed it.
//!
//! Where the time goes (kernel 6.18, 2 vCPUs; `perf record -e sched:sched_switch -g` on
//! `ip link del` of a veth whose peer is a bridge port): an RTM_DELLINK request blocks its
//! sender for about 17 ms. Under 1 ms of that is the removal: the pair is closed, unlisted (its
//! names and indexes are free), its addresses and routes dropped, the host end taken off the
//! bridge, and the RTM_DELLINK notifications sent, with three expedited RCU grace periods, all
//! under the RTNL lock (which anything else that changes links waits for). The rest is `rcu_barrier()` in `netdev_run_todo`, after the lock is released: waiting
//! for every pending RCU callback on every CPU before the two devices' memory is freed. Nothing
//! can reach the devices any more by then, but the kernel acknowledges the request only after
//! it. The reference plugin waits for that acknowledgement (and so did this one): most of DEL
//! was that wait.
//!
//! So the request is sent by a forked child, from a socket in the container's namespace, and
//! DEL goes on when that namespace's own RTM_DELLINK notification for the interface arrives (on
//! a socket subscribed before the request was sent, so it cannot be missed). The child waits
//! for the acknowledgement and exits; an error in it reaches the plugin through a pipe (a
//! request the kernel refuses is refused at once, with no barrier to wait for). The child does
//! only what is safe between `fork` and `exit` in a process with threads (`dup2`,
//! `close_range`, `send`, `recv`, `write`, `_exit`), with /dev/null as its standard streams and
//! no other descriptor of the plugin's open, so a runtime that reads the plugin's output to its
//! end does not wait for the child either. The child is reaped before the plugin exits if it
//! has ended; otherwise, as any orphan, by the nearest subreaper or init (a runtime that runs
//! plugins as PID 1 of a container must reap adopted children, as PID 1 must anyway).
//!
//! Anything that keeps this from starting (no socket, no fork), or a child that ends without
//! an answer, falls back to the ordinary, acknowledged delete through the library.
//!
//! The plugin's only module with `unsafe` (fork, and the calls allowed after it).
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use nix::libc;
use nix::sched::CloneFlags;

const RTM_DELLINK: u16 = 17;
const NLMSG_ERROR: u16 = 2;
const RTMGRP_LINK: u32 = 1;
const NLMSG_HDRLEN: usize = 16;

/// Deletes the interface named `name` in the namespace `netns`; `Ok` once it is gone (also
/// when there was none). `Err(None)` means this path could not start and nothing was changed.
pub fn delete(netns: impl AsFd + Sync, name: &str) -> Result<(), Option<io::Error>> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // The plugin's (host) namespace's notifications, for a veth's host end.
            let host_watch = netlink_socket(RTMGRP_LINK).map_err(|_| None)?;
            // This thread alone moves into the container's namespace, and ends there.
            nix::sched::setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|_| None)?;
            let watch = netlink_socket(RTMGRP_LINK).map_err(|_| None)?;
            let request = netlink_socket(0).map_err(|_| None)?;
            let Some((index, peer)) = index_of(&request, name).map_err(|_| None)? else {
                return Ok(());
            };
            let (from_child, to_child) = pipe().map_err(|_| None)?;
            let null = open_null().map_err(|_| None)?;
            let message = dellink(index);
            // SAFETY: the child runs only async-signal-safe calls (dup2, send, recv, write,
            // _exit) on descriptors opened above and buffers on its stack, so the locks and
            // allocator state it inherits from other threads are never touched.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: see above; `_exit` never returns.
                unsafe { child(&request, &to_child, &null, &message) }
            }
            if pid < 0 {
                return Err(None);
            }
            drop((request, to_child, null));
            CHILD.store(pid, std::sync::atomic::Ordering::Relaxed);
            // Done when the interface is gone and, for a veth, its peer too (the peer goes
            // last, off the bridge first): both notifications.
            let mut gone = Vec::from([Removal {
                socket: &watch,
                index,
            }]);
            if let Some(peer) = peer {
                let socket = if peer.elsewhere { &host_watch } else { &watch };
                gone.push(Removal {
                    socket,
                    index: peer.index,
                });
            }
            wait(gone, &from_child)
        })
        .join()
        .unwrap_or(Err(None))
    })
}

/// The child of the last [`delete`], 0 if none.
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Reaps the child of [`delete`] if it has ended (called before the plugin exits). One that
/// has not (the kernel's barrier still runs) is adopted by the nearest subreaper or init when
/// the plugin exits, as any orphan, and reaped there.
pub fn reap() {
    let pid = CHILD.swap(0, std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: waitpid on our own child with WNOHANG; the status is not read.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

/// The kernel's error as the reference plugin words it (Go's `syscall.Errno`: strerror,
/// lower case, no number).
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}

/// The forked child: sends the request, passes the kernel's answer (0 or a negative errno) to
/// the parent, exits.
///
/// # Safety
/// Only to be called in the child of `fork`.
unsafe fn child(request: &OwnedFd, to_parent: &OwnedFd, null: &OwnedFd, message: &[u8]) -> ! {
    // SAFETY: plain syscalls on open descriptors and stack buffers; the caller is the child of
    // `fork`, which must not return into the parent's code.
    unsafe {
        // /dev/null as the standard streams, and nothing else of the plugin's open but the
        // request socket and the pipe: the runtime's pipes, the namespace files and the
        // library's sockets are not held for the ~17 ms this child lives.
        for stream in 0..3 {
            libc::dup2(null.as_raw_fd(), stream);
        }
        let (a, b) = {
            let (x, y) = (request.as_raw_fd() as u32, to_parent.as_raw_fd() as u32);
            (x.min(y), x.max(y))
        };
        for (first, last) in [(3, a.wrapping_sub(1)), (a + 1, b - 1), (b + 1, u32::MAX)] {
            if first <= last {
                libc::syscall(libc::SYS_close_range, first, last, 0);
            }
        }
        let errno = || -*libc::__errno_location();
        let code = if libc::send(
            request.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        ) == message.len() as isize
        {
            let mut answer = [0u8; 1024];
            let n = libc::recv(
                request.as_raw_fd(),
                answer.as_mut_ptr().cast(),
                answer.len(),
                0,
            );
            if n < 0 {
                errno()
            } else if n >= (NLMSG_HDRLEN + 4) as isize
                && u16::from_ne_bytes([answer[4], answer[5]]) == NLMSG_ERROR
            {
                i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]])
            } else {
                -libc::EPROTO
            }
        } else {
            errno()
        };
        let bytes = code.to_ne_bytes();
        libc::write(to_parent.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
        libc::_exit(0)
    }
}

/// An interface whose RTM_DELLINK notification is awaited on `socket`.
struct Removal<'a> {
    socket: &'a OwnedFd,
    index: u32,
}

/// Waits for the RTM_DELLINK notifications of every one of `gone`, or for the child's answer.
/// A peer whose namespace is not the plugin's is never announced there: the child's answer
/// ends the wait then, as when a notification was lost to an overrun.
fn wait(mut gone: Vec<Removal<'_>>, from_child: &OwnedFd) -> Result<(), Option<io::Error>> {
    let mut buf = vec![0u8; 64 * 1024];
    // The notification sockets; one that overran is no longer read (`None`).
    let mut watched: Vec<Option<&OwnedFd>> = Vec::new();
    for r in &gone {
        if !watched
            .iter()
            .flatten()
            .any(|w| w.as_raw_fd() == r.socket.as_raw_fd())
        {
            watched.push(Some(r.socket));
        }
    }
    loop {
        let mut fds: Vec<libc::pollfd> = watched
            .iter()
            // poll(2) skips a negative descriptor.
            .map(|w| w.map_or(-1, AsRawFd::as_raw_fd))
            .chain([from_child.as_raw_fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd for the duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Some(e));
        }
        let (answer, notified) = fds.split_last().expect("the pipe is polled");
        for (i, pfd) in notified.iter().enumerate() {
            if pfd.fd < 0 || pfd.revents == 0 {
                continue;
            }
            // SAFETY: `buf` is a writable buffer of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    pfd.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                // Overrun (ENOBUFS): a notification may be among what was dropped, so the
                // child's answer decides.
                if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    watched[i] = None;
                }
                continue;
            }
            let got = &buf[..n as usize];
            gone.retain(|r| r.socket.as_raw_fd() != pfd.fd || !deleted(got, r.index));
            if gone.is_empty() {
                return Ok(());
            }
        }
        if answer.revents != 0 {
            let mut code = [0u8; 4];
            // SAFETY: `code` is a writable buffer of 4 bytes.
            let n = unsafe { libc::read(from_child.as_raw_fd(), code.as_mut_ptr().cast(), 4) };
            return match (n, i32::from_ne_bytes(code)) {
                (4, 0) => Ok(()),
                (4, e) if -e == libc::ENODEV => Ok(()),
                (4, e) => Err(Some(io::Error::from_raw_os_error(-e))),
                // The child ended without an answer: whether the request was sent is unknown,
                // so the caller's acknowledged delete decides (gone already counts as done).
                _ => Err(None),
            };
        }
    }
}

/// Whether the notifications in `buf` include RTM_DELLINK for `index`.
fn deleted(mut buf: &[u8], index: u32) -> bool {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return false;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        // struct ifinfomsg: family, pad, type (u16), index (i32) at offset 4.
        // Family AF_UNSPEC: the device itself, not a bridge port's AF_BRIDGE message.
        if kind == RTM_DELLINK
            && len >= NLMSG_HDRLEN + 8
            && buf[NLMSG_HDRLEN] == libc::AF_UNSPEC as u8
            && u32::from_ne_bytes([buf[20], buf[21], buf[22], buf[23]]) == index
        {
            return true;
        }
        let next = (len + 3) & !3;
        if next >= buf.len() {
            return false;
        }
        buf = &buf[next..];
    }
    false
}

/// A veth's other end, as its `IFLA_LINK`: its index, and whether it is in another namespace
/// (`IFLA_LINK_NETNSID`).
struct Peer {
    index: u32,
    elsewhere: bool,
}

/// The index of the interface `name` and its veth peer, `None` if there is no such interface,
/// asked on `socket`.
fn index_of(socket: &OwnedFd, name: &str) -> io::Result<Option<(u32, Option<Peer>)>> {
    const IFLA_LINK: u16 = 5;
    const IFLA_LINK_NETNSID: u16 = 37;
    const IFLA_LINKINFO: u16 = 18;
    const RTM_GETLINK: u16 = 18;
    const RTM_NEWLINK: u16 = 16;
    const IFLA_IFNAME: u16 = 3;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // Header, ifinfomsg, then IFLA_IFNAME with its NUL, padded to 4 bytes.
    let attr_len = 4 + name.len() + 1;
    let len = NLMSG_HDRLEN + 16 + ((attr_len + 3) & !3);
    let mut m = vec![0u8; len];
    m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    m[32..34].copy_from_slice(&(attr_len as u16).to_ne_bytes());
    m[34..36].copy_from_slice(&IFLA_IFNAME.to_ne_bytes());
    m[36..36 + name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `m` is a readable buffer of `m.len()` bytes.
    if unsafe { libc::send(socket.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut answer = vec![0u8; 64 * 1024];
    // SAFETY: `answer` is a writable buffer of `answer.len()` bytes.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            answer.as_mut_ptr().cast(),
            answer.len(),
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let answer = &answer[..n as usize];
    if answer.len() < NLMSG_HDRLEN + 8 {
        return Err(io::Error::other("short answer to RTM_GETLINK"));
    }
    let len = (u32::from_ne_bytes([answer[0], answer[1], answer[2], answer[3]]) as usize)
        .min(answer.len());
    match u16::from_ne_bytes([answer[4], answer[5]]) {
        RTM_NEWLINK => {
            let index = u32::from_ne_bytes([answer[20], answer[21], answer[22], answer[23]]);
            let (mut link, mut elsewhere, mut veth) = (None, false, false);
            let mut at = NLMSG_HDRLEN + 16;
            while at + 4 <= len {
                let alen = u16::from_ne_bytes([answer[at], answer[at + 1]]) as usize;
                let kind = u16::from_ne_bytes([answer[at + 2], answer[at + 3]]) & 0x3fff;
                if alen < 4 || at + alen > len {
                    break;
                }
                match (kind, alen) {
                    (IFLA_LINK, 8) => {
                        link = Some(u32::from_ne_bytes([
                            answer[at + 4],
                            answer[at + 5],
                            answer[at + 6],
                            answer[at + 7],
                        ]));
                    }
                    (IFLA_LINK_NETNSID, _) => elsewhere = true,
                    // IFLA_LINKINFO, whose first attribute is IFLA_INFO_KIND: only a veth's
                    // IFLA_LINK is a peer that goes with it (a macvlan's is its lower device).
                    (IFLA_LINKINFO, _) => {
                        veth = answer[at + 4..at + alen].get(4..9) == Some(b"veth\0".as_slice())
                            && u16::from_ne_bytes([answer[at + 6], answer[at + 7]]) == 1;
                    }
                    _ => {}
                }
                at += (alen + 3) & !3;
            }
            // A link that names itself (or nothing) has no peer to wait for.
            let peer = link
                .filter(|&l| veth && l != 0 && (elsewhere || l != index))
                .map(|index| Peer { index, elsewhere });
            Ok(Some((index, peer)))
        }
        NLMSG_ERROR => {
            match -i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]) {
                libc::ENODEV => Ok(None),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        }
        _ => Err(io::Error::other("unexpected answer to RTM_GETLINK")),
    }
}

/// RTM_DELLINK for `index`, acknowledged.
fn dellink(index: u32) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0..4].copy_from_slice(&32u32.to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_DELLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // struct ifinfomsg follows the 16-byte header: family AF_UNSPEC, index at offset 4.
    m[20..24].copy_from_slice(&index.to_ne_bytes());
    m
}

/// A route netlink socket in the calling thread's namespace, bound to `groups`.
fn netlink_socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket() returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: `addr` is a valid sockaddr_nl of the given size.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just returned by pipe2 and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn open_null() -> io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_notification_among_others() {
        let mut buf = Vec::new();
        for (kind, index) in [(16u16, 7u32), (RTM_DELLINK, 6), (RTM_DELLINK, 7)] {
            let mut m = dellink(index);
            m[4..6].copy_from_slice(&kind.to_ne_bytes());
            buf.extend_from_slice(&m);
        }
        assert!(deleted(&buf, 7));
        assert!(!deleted(&buf[..64], 7));
        assert!(!deleted(&buf, 8));
        assert!(!deleted(&buf[..20], 7));
        // A bridge port's AF_BRIDGE message is not the device's removal.
        let mut port = dellink(9);
        port[16] = libc::AF_BRIDGE as u8;
        assert!(!deleted(&port, 9));
    }

    #[test]
    fn errors_worded_as_the_reference() {
        let e = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
        assert_eq!(describe(&e), "operation not supported");
    }
}
