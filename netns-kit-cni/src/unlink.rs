//! DEL's removal of the container's interface, returning once the kernel has removed it rather
//! than once the kernel has also freed it.
//!
//! Where the time goes (kernel 6.18, 2 vCPUs; `perf record -e sched:sched_switch -g` on
//! `ip link del` of a veth whose peer is a bridge port): an RTM_DELLINK request blocks its
//! sender for about 17 ms. Under 1 ms of that is the removal: the pair is closed, unlisted (its
//! names and indexes are free), taken off the bridge, its addresses and routes dropped, and the
//! RTM_DELLINK notifications sent, with three expedited RCU grace periods, all under the RTNL
//! lock. The rest is `rcu_barrier()` in `netdev_run_todo`, after the lock is released: waiting
//! for every pending RCU callback on every CPU before the two devices' memory is freed. Nothing
//! can reach the devices any more by then, but the kernel acknowledges the request only after
//! it. The reference plugin, and this one until 0.1, waited for that acknowledgement: most of
//! DEL was that wait.
//!
//! So the request is sent by a forked child, from a socket in the container's namespace, and
//! DEL goes on when that namespace's own RTM_DELLINK notification for the interface arrives (on
//! a socket subscribed before the request was sent, so it cannot be missed). The child waits
//! for the acknowledgement and exits; an error in it reaches the plugin through a pipe (a
//! request the kernel refuses is refused at once, with no barrier to wait for). The child does
//! only what is safe between `fork` and `exit` in a process with threads (`dup2`, `send`,
//! `recv`, `write`, `_exit`), with /dev/null as its standard streams, so a runtime that reads
//! the plugin's output to its end does not wait for the child either.
//!
//! Anything that keeps this from starting (no socket, no fork) falls back to the ordinary,
//! acknowledged delete through the library.
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
            // This thread alone moves into the container's namespace, and ends there.
            nix::sched::setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|_| None)?;
            let watch = netlink_socket(RTMGRP_LINK).map_err(|_| None)?;
            let request = netlink_socket(0).map_err(|_| None)?;
            let Some(index) = index_of(&request, name).map_err(|_| None)? else {
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
            wait(&watch, &from_child, index).map_err(Some)
        })
        .join()
        .unwrap_or(Err(None))
    })
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
        for stream in 0..3 {
            libc::dup2(null.as_raw_fd(), stream);
        }
        let mut code: i32 = -libc::EIO;
        if libc::send(
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
            if n >= (NLMSG_HDRLEN + 4) as isize
                && u16::from_ne_bytes([answer[4], answer[5]]) == NLMSG_ERROR
            {
                code = i32::from_ne_bytes(answer[16..20].try_into().unwrap_or([0; 4]));
            }
        } else {
            code = -*libc::__errno_location();
        }
        let bytes = code.to_ne_bytes();
        libc::write(to_parent.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
        libc::_exit(0)
    }
}

/// Waits for the interface's RTM_DELLINK notification, or for the child's answer.
fn wait(watch: &OwnedFd, from_child: &OwnedFd, index: u32) -> io::Result<()> {
    let mut watching = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: if watching { watch.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: from_child.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            // SAFETY: `buf` is a writable buffer of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    watch.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                // Overrun (ENOBUFS): the notification may be among what was dropped, so the
                // child's answer decides.
                if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    watching = false;
                }
            } else if deleted(&buf[..n as usize], index) {
                return Ok(());
            }
        }
        if fds[1].revents != 0 {
            let mut code = [0u8; 4];
            // SAFETY: `code` is a writable buffer of 4 bytes.
            let n = unsafe { libc::read(from_child.as_raw_fd(), code.as_mut_ptr().cast(), 4) };
            return match (n, i32::from_ne_bytes(code)) {
                (4, 0) => Ok(()),
                (4, e) if -e == libc::ENODEV => Ok(()),
                (4, e) => Err(io::Error::from_raw_os_error(-e)),
                _ => Err(io::Error::other(
                    "the process deleting the interface ended without an answer",
                )),
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
        if kind == RTM_DELLINK
            && len >= NLMSG_HDRLEN + 8
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

/// The index of the interface `name`, `None` if there is none, asked on `socket`.
fn index_of(socket: &OwnedFd, name: &str) -> io::Result<Option<u32>> {
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
    if n < (NLMSG_HDRLEN + 8) as isize {
        return Err(io::Error::last_os_error());
    }
    match u16::from_ne_bytes([answer[4], answer[5]]) {
        RTM_NEWLINK => Ok(Some(u32::from_ne_bytes([
            answer[20], answer[21], answer[22], answer[23],
        ]))),
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
    }
}
