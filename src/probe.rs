//! In-process connectivity check: an ICMP echo ("ping") from inside a namespace.
//!
//! The socket is a raw ICMP (or ICMPv6) socket created on a worker thread inside the namespace
//! and then used from the netlink driver's runtime, so no `ping` binary and no caller runtime are
//! needed. Raw sockets need `CAP_NET_RAW` (root has it). Unprivileged ICMP datagram sockets are
//! not used: in a new namespace `net.ipv4.ping_group_range` is `1 0`, which refuses them even to
//! root.
//!
//! A raw socket sees every ICMP message reaching the namespace, so replies are matched on
//! source address, identifier and sequence number. The kernel fills in the ICMPv6 checksum; the
//! ICMPv4 one is computed here (RFC 1071).

use std::{
    net::{IpAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage,
};

#[cfg(feature = "tokio")]
use crate::netlink;
use crate::{
    error::{Error, Result},
    netns::Namespace,
    sys,
};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

static SEQUENCE: AtomicU16 = AtomicU16::new(1);

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![0u8; 8 + 24];
    packet[0] = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].copy_from_slice(b"netns-kit echo payload!!");
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// Whether `packet` (as read from the raw socket) is the reply to (`id`, `seq`).
fn is_reply(v6: bool, packet: &[u8], id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        packet
    } else {
        // IPv4 raw sockets deliver the IP header too.
        let Some(&first) = packet.first() else {
            return false;
        };
        let header = usize::from(first & 0x0f) * 4;
        match packet.get(header..) {
            Some(rest) => rest,
            None => return false,
        }
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 }
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

impl Namespace {
    /// Sends one ICMP echo request from inside this namespace to `addr` and waits up to
    /// `timeout` for the reply; returns the round-trip time. IPv4 and IPv6 (not link-local).
    ///
    /// # Errors
    ///
    /// * [`Error::Timeout`] if no reply came in time (the address is unreachable, filtered, or
    ///   nobody has it);
    /// * [`Error::Os`] if the request cannot be sent, e.g. `ENETUNREACH` without a route;
    /// * [`Error::PermissionDenied`] without `CAP_NET_RAW`;
    /// * [`Error::InvalidInput`] for an IPv6 link-local, unspecified or multicast address.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future abandons the wait; the socket is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// use std::time::Duration;
    /// let rtt = ns.ping("10.0.0.2".parse().unwrap(), Duration::from_secs(1)).await?;
    /// println!("10.0.0.2 answered in {rtt:?}");
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn ping(&self, addr: IpAddr, timeout: Duration) -> Result<Duration> {
        let object = || format!("echo request to {addr} from {}", self.label());
        check_target(addr).map_err(|reason| Error::invalid(object(), reason))?;
        let fd = self.inner().fd().clone();
        let socket: OwnedFd = sys::on_worker(move || {
            sys::setns_net(std::os::fd::AsFd::as_fd(&*fd))?;
            icmp_socket(addr.is_ipv6())
        })
        .await
        .and_then(|r| r)
        .map_err(|e| Error::os("open an ICMP socket for", object(), e))?;
        let probe = Probe {
            addr,
            id: (std::process::id() as u16) ^ 0x6e6b,
            seq: SEQUENCE.fetch_add(1, Ordering::Relaxed),
        };
        #[cfg(feature = "tokio")]
        let outcome = if netlink::blocking_mode() {
            probe.exchange_blocking(&socket, timeout)
        } else {
            probe.exchange_async(socket, timeout).await
        };
        #[cfg(not(feature = "tokio"))]
        let outcome = probe.exchange_blocking(&socket, timeout);
        match outcome {
            Ok(Some(rtt)) => Ok(rtt),
            Ok(None) => Err(Error::Timeout {
                op: "get a reply to",
                object: object(),
                after: timeout,
            }),
            Err(e) => Err(Error::os("send", object(), e)),
        }
    }

    /// The blocking form of [`ping`](Self::ping): the same work, checks and errors, on the calling
    /// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
    /// it from async code.
    pub fn ping_blocking(&self, addr: IpAddr, timeout: Duration) -> Result<Duration> {
        crate::netlink::block_on(self.ping(addr, timeout))
    }
}

/// Why `addr` cannot be pinged, if it cannot.
fn check_target(addr: IpAddr) -> std::result::Result<(), &'static str> {
    if addr.is_unspecified() || addr.is_multicast() {
        return Err("not a unicast address");
    }
    match addr {
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
            Err("link-local IPv6 addresses need an interface and are not supported")
        }
        _ => Ok(()),
    }
}

/// A raw ICMP (or ICMPv6) socket in the calling thread's namespace, non-blocking.
fn icmp_socket(v6: bool) -> std::io::Result<OwnedFd> {
    let (family, protocol) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    nix::sys::socket::socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        protocol,
    )
    .map_err(errno)
}

fn errno(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// One echo request: to whom, with which identifier and sequence number.
struct Probe {
    addr: IpAddr,
    id: u16,
    seq: u16,
}

impl Probe {
    fn send(&self, socket: &impl AsRawFd) -> std::io::Result<Instant> {
        let packet = echo_request(self.addr.is_ipv6(), self.id, self.seq);
        let start = Instant::now();
        match self.addr {
            IpAddr::V4(a) => nix::sys::socket::sendto(
                socket.as_raw_fd(),
                &packet,
                &SockaddrIn::from(SocketAddrV4::new(a, 0)),
                MsgFlags::empty(),
            ),
            IpAddr::V6(a) => nix::sys::socket::sendto(
                socket.as_raw_fd(),
                &packet,
                &SockaddrIn6::from(SocketAddrV6::new(a, 0, 0, 0)),
                MsgFlags::empty(),
            ),
        }
        .map_err(errno)?;
        Ok(start)
    }

    /// Reads one packet; whether it is the reply. `WouldBlock` when there is none yet.
    fn receive(&self, socket: &impl AsRawFd) -> std::io::Result<bool> {
        let mut buf = [0u8; 1500];
        let (len, from) =
            nix::sys::socket::recvfrom::<SockaddrStorage>(socket.as_raw_fd(), &mut buf)
                .map_err(errno)?;
        let from_ip = from.and_then(|f| {
            f.as_sockaddr_in()
                .map(|a| IpAddr::V4(a.ip()))
                .or_else(|| f.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
        });
        Ok(from_ip == Some(self.addr)
            && is_reply(self.addr.is_ipv6(), &buf[..len], self.id, self.seq))
    }

    /// Sends and waits with poll(2) on the calling thread: the round-trip time, or `None` if
    /// no reply came within `timeout`.
    fn exchange_blocking(
        &self,
        socket: &OwnedFd,
        timeout: Duration,
    ) -> std::io::Result<Option<Duration>> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let start = self.send(socket)?;
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            let millis = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(errno(e)),
            }
            match self.receive(socket) {
                Ok(true) => return Ok(Some(start.elapsed())),
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends and waits on the netlink driver's runtime (so any executor can await it).
    #[cfg(feature = "tokio")]
    async fn exchange_async(
        self,
        socket: OwnedFd,
        timeout: Duration,
    ) -> std::io::Result<Option<Duration>> {
        let socket = netlink::async_transport::async_fd(socket)?;
        let work = async move {
            let start = self.send(&socket)?;
            loop {
                let mut guard = socket.readable().await?;
                match guard.try_io(|s| self.receive(s)) {
                    Ok(Ok(true)) => return Ok(start.elapsed()),
                    Ok(Ok(false)) | Err(_) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
        };
        let outcome = netlink::async_transport::on_driver(async move {
            tokio::time::timeout(timeout, work).await
        })
        .await?;
        match outcome {
            Ok(Ok(rtt)) => Ok(Some(rtt)),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_packet() {
        // Echo request, id 1, seq 1, no payload: checksum 0xf7fd.
        let p = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&p), 0xf7fd);
        let full = echo_request(false, 1, 1);
        assert_eq!(
            checksum(&full),
            0,
            "a packet with its checksum sums to zero"
        );
    }

    #[test]
    fn replies_are_matched() {
        let mut reply = echo_request(true, 7, 9);
        reply[0] = ECHO_REPLY_V6;
        assert!(is_reply(true, &reply, 7, 9));
        assert!(!is_reply(true, &reply, 7, 10));
        let mut v4 = vec![0x45u8; 20];
        let mut icmp = echo_request(false, 7, 9);
        icmp[0] = ECHO_REPLY_V4;
        v4.extend_from_slice(&icmp);
        assert!(is_reply(false, &v4, 7, 9));
        assert!(!is_reply(false, &v4[..22], 7, 9));
    }
}
