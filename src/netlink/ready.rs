//! Waiting until links carry traffic, on the kernel's own notifications.
//!
//! A link that is up is not yet ready: the kernel attaches its queueing discipline (until then
//! it drops every packet) and, for a bridge port, starts forwarding only when it handles the
//! link's carrier-on event in its `linkwatch` work, asynchronously, after the request that
//! brought the link up has returned. Under load that is long enough for the first packets a test
//! sends to be lost — a first ping that takes a second (the ARP retry), a first TCP connect that
//! times out. `linkwatch` sets the link's operational state to `UP` in that same work, after the
//! queueing discipline is attached and the bridge notified, and announces it with an
//! `RTM_NEWLINK`. So a link is ready when its operational state is `UP`, and that is what
//! [`wait_oper_up`] waits for: it subscribes to link notifications (`RTNLGRP_LINK`) in each
//! namespace first, then asks for each link's current state (so an event that came before the
//! subscription is not missed), then reads notifications until every link is up.
//!
//! IPv6 adds one step. An address given with `nodad` is never tentative — usable as a source at
//! once — but the kernel joins its *solicited-node multicast group* (`ff02::1:ffXX:XXXX`, where
//! neighbour solicitations for it are sent) later, in its address work (`addrconf_dad_work`, a
//! work item that takes the RTNL lock and so waits behind every other namespace's requests under
//! parallel load). Until then a neighbour solicitation for the address is dropped on input, and
//! the first IPv6 packet to it waits for the one-second neighbour retransmit (seen in 2 to 4 of
//! 80 parallel `two_patterns` runs once the links themselves were waited for). The kernel announces
//! a `nodad` address (`RTM_NEWADDR`) only from that work, after the join. So the same socket also
//! follows IPv6 address notifications (`RTNLGRP_IPV6_IFADDR`) and dumps the IPv6 addresses once
//! (again while the kernel marks the dump interrupted, up to 8 reads: see
//! `netlink::request::rereads`);
//! for every `nodad` address of a watched link it checks the joined groups
//! (`/proc/thread-self/net/igmp6`) after the dump and again on each notification, and a link is
//! ready when it is up and all its `nodad` addresses' groups are joined. (Addresses without
//! `nodad` are tentative for the whole duplicate-address detection, on purpose, and are not
//! waited for.) While a group is missing the list is also read every few milliseconds, so a
//! lost notification costs milliseconds, not the timeout.

use std::{
    os::fd::{AsFd, OwnedFd},
    sync::Arc,
    time::{Duration, Instant},
};

use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::{LinkAttribute, State},
};
use rtnetlink::{
    packet_core::{ErrorBuffer, NLM_F_DUMP_INTR, NetlinkBuffer, NetlinkMessage, NetlinkPayload},
    sys::{Socket, SocketAddr},
};

use super::{framing::request_message, request::DUMP_READS};

/// How long [`wait_ready`] waits: far longer than the kernel takes (microseconds to a few
/// milliseconds under load), short enough that a link that will never be up (its peer kept
/// down on purpose elsewhere) does not hang the caller.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits, on a library thread, until the links are ready (see the [module docs](self)). A link
/// still not ready after [`READY_TIMEOUT`], or a failure to watch, is a `WARN` event, not an
/// error: the links exist and are configured, only the kernel is late.
///
/// The wait runs on a short-lived thread of its own (which enters the namespaces to make its
/// sockets, and ends with the wait), not on a worker: a worker blocked in a wait could not build
/// the next member meanwhile.
pub(crate) async fn wait_ready(links: Vec<Watched>, object: &str) {
    let (tx, rx) = futures::channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("netns-kit-ready".into())
        .spawn(move || {
            // A caller that stopped waiting (its future dropped) ends the wait within
            // `CANCEL_CHECK`, so the thread does not hold the namespaces open for seconds.
            let result = wait_oper_up(&links, READY_TIMEOUT, &|| tx.is_canceled());
            let _ = tx.send(result);
        });
    let waited = match spawned {
        Ok(thread) => {
            let result = rx
                .await
                .map_err(|_| std::io::Error::other("the wait thread ended early"));
            // It has sent its answer and is ending: joining takes microseconds, and a caller
            // that exits right after (a runtime's short-lived process) leaves no thread behind.
            let _ = thread.join();
            result
        }
        Err(e) => Err(e),
    };
    match waited {
        Ok(Ok(late)) if late.is_empty() => {}
        Ok(Ok(late)) => tracing::warn!(
            object = %object,
            links = ?late,
            "links not up after {READY_TIMEOUT:?}"
        ),
        Ok(Err(e)) | Err(e) => tracing::warn!(
            object = %object,
            error = %e,
            "could not watch the links come up"
        ),
    }
}

/// How often a wait looks whether its caller is still there.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// How often a missing solicited-node group is looked for again without a notification.
const JOIN_RECHECK: Duration = Duration::from_millis(5);

/// `RTMGRP_LINK` and `RTMGRP_IPV6_IFADDR`: link and IPv6 address notifications.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// Sequence numbers of the two dumps, to tell their ends apart.
const LINK_DUMP: u32 = 1;
const ADDRESS_DUMP: u32 = 2;

/// A link to wait for.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    /// Its namespace.
    pub(crate) ns: Arc<OwnedFd>,
    /// Its interface index there.
    pub(crate) index: u32,
    /// Whether it has IPv6 addresses, so IPv6 must be ready on it too (false for a link with
    /// IPv6 disabled, such as a bridge port's host end, where it never will be).
    pub(crate) ipv6: bool,
    /// Whether its own state counts (up, queueing discipline, bridge port, IPv6 ready). Not for
    /// a bridge this crate did not make: it has carrier only once a port forwards, which with
    /// spanning tree on takes its owner's forward delay (seconds); only its `nodad` addresses
    /// are waited for.
    pub(crate) state: bool,
    /// Whether it must have a usable (not tentative) link-local address: a router's interface,
    /// whose neighbour solicitations for forwarded packets come from it (the kernel sends none
    /// without one). Only where duplicate-address detection is off for it, or it would be a
    /// wait of seconds.
    pub(crate) link_local: bool,
}

/// What one namespace's watch still waits for.
#[derive(Default)]
struct Waiting {
    /// Links not seen up yet.
    links: Vec<u32>,
    /// `nodad` IPv6 addresses of watched links: (link, address).
    nodad: Vec<(u32, std::net::Ipv6Addr)>,
    /// Those of them whose solicited-node multicast group is not joined yet (known once the
    /// address dump has ended).
    unjoined: Vec<(u32, std::net::Ipv6Addr)>,
    /// Links that need a usable link-local address and have none yet.
    link_local: Vec<u32>,
    /// Whether the address dump has ended.
    addresses_listed: bool,
    /// Whether the kernel marked the address dump being read interrupted (`NLM_F_DUMP_INTR`):
    /// an address present throughout may be missing from it, so it is read again (see
    /// `netlink::request::rereads`), up to [`DUMP_READS`] reads in all.
    address_dump_interrupted: bool,
    /// Address dumps read to their end so far.
    address_reads: usize,
    /// The dump being read, if any, and the dumps to ask for after it: one socket runs one dump
    /// at a time (a second one started meanwhile fails with `EBUSY`).
    dumping: Option<u32>,
    dumps: std::collections::VecDeque<u32>,
    /// The links on which IPv6 readiness counts too.
    ipv6: Vec<u32>,
    /// Links of [`links`](Self::links) ready but for being a disabled bridge port: (link,
    /// bridge).
    ports: Vec<(u32, u32)>,
    /// Links of the namespace seen administratively down.
    down: std::collections::HashSet<u32>,
}

impl Waiting {
    /// Asks for dump `seq` ([`LINK_DUMP`] or [`ADDRESS_DUMP`]) now, or after the current one.
    fn dump(&mut self, socket: &Socket, seq: u32) -> std::io::Result<()> {
        if seq == ADDRESS_DUMP {
            self.addresses_listed = false;
        }
        if self.dumping == Some(seq) || self.dumps.contains(&seq) {
            // Asked again while it runs (notifications lost): read it once more after.
            if self.dumping == Some(seq) && !self.dumps.contains(&seq) {
                self.dumps.push_back(seq);
            }
            return Ok(());
        }
        if self.dumping.is_some() {
            self.dumps.push_back(seq);
            return Ok(());
        }
        self.dumping = Some(seq);
        let msg = if seq == LINK_DUMP {
            RouteNetlinkMessage::GetLink(super::msg::without_stats(
                netlink_packet_route::link::LinkMessage::default(),
            ))
        } else {
            let mut addresses = AddressMessage::default();
            addresses.header.family = AddressFamily::Inet6;
            RouteNetlinkMessage::GetAddress(addresses)
        };
        send(socket, msg, rtnetlink::packet_core::NLM_F_DUMP, seq)
    }

    /// The dump `seq` has ended (done, or failed with `code`): starts the next one.
    fn dump_ended(&mut self, socket: &Socket, seq: u32, code: i32) -> std::io::Result<()> {
        if self.dumping != Some(seq) {
            return Ok(());
        }
        self.dumping = None;
        if code != 0 {
            return Err(std::io::Error::from_raw_os_error(code.abs()));
        }
        if seq == ADDRESS_DUMP {
            self.address_reads += 1;
            if std::mem::take(&mut self.address_dump_interrupted)
                && self.address_reads < DUMP_READS
                && !self.dumps.contains(&ADDRESS_DUMP)
            {
                self.dumps.push_back(ADDRESS_DUMP);
            }
        }
        if seq == ADDRESS_DUMP && !self.dumps.contains(&ADDRESS_DUMP) {
            self.addresses_listed = true;
            self.check_joined()?;
        }
        match self.dumps.pop_front() {
            Some(next) => self.dump(socket, next),
            None => Ok(()),
        }
    }

    /// Links still awaited. A port of a bridge that is down stays disabled until someone sets
    /// the bridge up, so it is not waited for: ready as far as this link goes.
    fn pending(&self) -> impl Iterator<Item = u32> + '_ {
        self.links.iter().copied().filter(|i| {
            !self
                .ports
                .iter()
                .any(|(port, bridge)| port == i && self.down.contains(bridge))
        })
    }

    fn done(&self) -> bool {
        self.pending().next().is_none()
            && self.addresses_listed
            && self.unjoined.is_empty()
            && self.link_local.is_empty()
    }

    /// Takes in the kernel's latest word on a link.
    fn update(&mut self, link: &netlink_packet_route::link::LinkMessage) {
        let index = link.header.index;
        if link
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up)
        {
            self.down.remove(&index);
        } else {
            self.down.insert(index);
        }
        if !self.links.contains(&index) {
            return;
        }
        self.ports.retain(|(port, _)| *port != index);
        match link_ready(link, self.ipv6.contains(&index)) {
            Readiness::Ready => self.links.retain(|&i| i != index),
            Readiness::DisabledPort(bridge) => self.ports.push((index, bridge)),
            Readiness::NotYet => {}
        }
    }

    /// Recomputes [`unjoined`](Self::unjoined) from the kernel's list of joined groups.
    fn check_joined(&mut self) -> std::io::Result<()> {
        let joined = joined_groups()?;
        self.unjoined = self
            .nodad
            .iter()
            .filter(|(index, address)| !joined.contains(&(*index, solicited_node(address))))
            .copied()
            .collect();
        Ok(())
    }
}

/// The solicited-node multicast group of an IPv6 address (`ff02::1:ffXX:XXXX`, RFC 4291).
fn solicited_node(address: &std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let o = address.octets();
    let mut group = [0u8; 16];
    group[..2].copy_from_slice(&[0xff, 0x02]);
    group[11..13].copy_from_slice(&[0x01, 0xff]);
    group[13..].copy_from_slice(&o[13..]);
    std::net::Ipv6Addr::from(group)
}

/// The IPv6 multicast groups joined in the calling thread's namespace: (link, group), from
/// `/proc/thread-self/net/igmp6` (rtnetlink can list them too, but `netlink-packet-route` does
/// not parse those messages).
fn joined_groups() -> std::io::Result<Vec<(u32, std::net::Ipv6Addr)>> {
    let text = crate::sys::read_small("/proc/thread-self/net/igmp6")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let index = fields.next()?.parse().ok()?;
            let hex = fields.nth(1)?;
            let group = u128::from_str_radix(hex, 16).ok()?;
            Some((index, std::net::Ipv6Addr::from(group)))
        })
        .collect())
}

/// Waits until every link is ready (see the [module docs](self)), or `timeout` passes. Returns the
/// links that were not up by then (none: all ready). Blocks, and enters the namespaces: run it on a
/// library thread.
pub(crate) fn wait_oper_up(
    links: &[Watched],
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> std::io::Result<Vec<u32>> {
    let deadline = Instant::now() + timeout;
    // The links by namespace, in order of first appearance.
    let mut order: Vec<Vec<&Watched>> = Vec::new();
    let mut by_ns = std::collections::HashMap::new();
    for link in links {
        let id = crate::sys::ns_id(link.ns.as_fd())?;
        let slot = *by_ns.entry(id).or_insert_with(|| {
            order.push(Vec::new());
            order.len() - 1
        });
        order[slot].push(link);
    }
    // One namespace at a time, one socket open at a time (a network of 1,000 members must not
    // need 1,000 more descriptors): the links of later namespaces came up meanwhile, so their
    // waits are mostly a single answer.
    let mut late = Vec::new();
    for wanted in order {
        if cancelled() {
            break;
        }
        late.extend(wait_in(&wanted[0].ns, &wanted, deadline, cancelled)?);
    }
    Ok(late)
}

/// [`wait_oper_up`] for the links `wanted` of one namespace.
fn wait_in(
    fd: &OwnedFd,
    wanted: &[&Watched],
    deadline: Instant,
    cancelled: &dyn Fn() -> bool,
) -> std::io::Result<Vec<u32>> {
    let ipv6_links: Vec<u32> = wanted.iter().filter(|w| w.ipv6).map(|w| w.index).collect();
    let ipv6 = !ipv6_links.is_empty();
    let indexes: Vec<u32> = wanted.iter().filter(|w| w.state).map(|w| w.index).collect();
    let link_local: Vec<u32> = wanted
        .iter()
        .filter(|w| w.link_local)
        .map(|w| w.index)
        .collect();
    crate::sys::setns_net(fd.as_fd())?;
    let mut socket = Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)?;
    let groups = if ipv6 {
        RTMGRP_LINK | RTMGRP_IPV6_IFADDR
    } else {
        RTMGRP_LINK
    };
    socket.bind(&SocketAddr::new(0, groups))?;
    socket.set_non_blocking(true)?;
    let mut waiting = Waiting {
        links: indexes,
        link_local,
        addresses_listed: !ipv6,
        ipv6: ipv6_links,
        ..Waiting::default()
    };
    // Subscribed: now the current state, so nothing before this moment is missed. One dump,
    // not a request per link: the kernel streams a dump as it is read, where hundreds of
    // answers at once would overflow the socket.
    waiting.dump(&socket, LINK_DUMP)?;
    if ipv6 {
        waiting.dump(&socket, ADDRESS_DUMP)?;
    }
    loop {
        read_available(&mut socket, &mut waiting)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if waiting.done() || left.is_zero() || cancelled() {
            let mut late: Vec<u32> = waiting
                .pending()
                .chain(waiting.unjoined.iter().map(|(i, _)| *i))
                .chain(waiting.link_local.iter().copied())
                .collect();
            late.dedup();
            return Ok(late);
        }
        let mut polls = [nix::poll::PollFd::new(
            socket.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        // A missing group is looked at again every few milliseconds as well (see the module
        // docs); otherwise only a notification wakes the wait.
        let left = if waiting.addresses_listed && !waiting.unjoined.is_empty() {
            left.min(JOIN_RECHECK)
        } else {
            left.min(CANCEL_CHECK)
        };
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut polls, nix::poll::PollTimeout::from(ms)) {
            Ok(0) if waiting.addresses_listed && !waiting.unjoined.is_empty() => {
                waiting.check_joined()?;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends one request (`NLM_F_REQUEST | flags`).
fn send(socket: &Socket, msg: RouteNetlinkMessage, flags: u16, seq: u32) -> std::io::Result<()> {
    let mut message = request_message(msg, flags);
    message.header.sequence_number = seq;
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    socket.send(&buf, 0).map(drop)
}

/// Whether a link, as the kernel reports it, carries traffic (see the [module docs](self)):
/// operational state `UP`, a real queueing discipline attached (not `noop`, which drops
/// everything), as a bridge port past `disabled`, and, when `ipv6`, IPv6 ready on it.
///
/// Operational state alone is not enough: `linkwatch` sets it *before* it attaches the queueing
/// discipline and runs the carrier-on notifiers (the bridge's, IPv6's), so a dump that lands in
/// between reads `UP` for a link that still drops packets — the IPv6 part of that window is why
/// a first IPv6 ping could still take a second (seen in 1 to 4 of 80 parallel `two_patterns` runs).
/// The notification itself comes after all of them. The other three fields are set by those
/// steps, so together they are seen only once the link is really ready. A bridge port in a
/// spanning-tree state (`listening`, `learning`, `blocking`) counts as ready: spanning tree
/// moves it on its own clock, tens of seconds, which is the bridge owner's choice; so does a
/// port of a bridge that is down (see [`Waiting::pending`]).
fn link_ready(link: &netlink_packet_route::link::LinkMessage, ipv6: bool) -> Readiness {
    use netlink_packet_route::link::{
        AfSpecInet6, AfSpecUnspec, BridgePortState, Inet6IfaceFlags, InfoBridgePort, InfoPortData,
        LinkInfo,
    };
    let mut up = false;
    let mut qdisc = false;
    let mut port_ready = true;
    let mut ipv6_ready = !ipv6;
    let mut master = None;
    // A device whose carrier was on from the start (a bridge set up before its first port)
    // never had a carrier event, so its operational state stays UNKNOWN: its carrier
    // (`LOWER_UP`) says it, and its queueing discipline was attached when it was set up.
    let carrier = link
        .header
        .flags
        .contains(netlink_packet_route::link::LinkFlags::LowerUp);
    for attr in &link.attributes {
        match attr {
            LinkAttribute::Controller(index) => master = Some(*index),
            LinkAttribute::OperState(state) => {
                up = *state == State::Up || (*state == State::Unknown && carrier);
            }
            LinkAttribute::Qdisc(name) => qdisc = name != "noop",
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::PortData(InfoPortData::BridgePort(port)) = info {
                        port_ready = !port
                            .iter()
                            .any(|p| matches!(p, InfoBridgePort::State(BridgePortState::Disabled)));
                    }
                }
            }
            LinkAttribute::AfSpecUnspec(specs) if ipv6 => {
                for spec in specs {
                    if let AfSpecUnspec::Inet6(inet6) = spec {
                        ipv6_ready = inet6.iter().any(|a| {
                            matches!(a, AfSpecInet6::Flags(f) if f.contains(Inet6IfaceFlags::Ready))
                        });
                    }
                }
            }
            _ => {}
        }
    }
    match (up && qdisc && ipv6_ready, port_ready, master) {
        (true, true, _) => Readiness::Ready,
        (true, false, Some(bridge)) => Readiness::DisabledPort(bridge),
        _ => Readiness::NotYet,
    }
}

/// Whether `link`, as the kernel reports it, carries traffic now (see [`link_ready`]; IPv6
/// readiness not asked).
pub(crate) fn ready_now(link: &netlink_packet_route::link::LinkMessage) -> bool {
    matches!(link_ready(link, false), Readiness::Ready)
}

/// What [`link_ready`] found.
enum Readiness {
    Ready,
    /// Ready but for being a bridge port still disabled; the bridge's index.
    DisabledPort(u32),
    NotYet,
}

/// The address of an IPv6 address message, if it is a `nodad` one.
fn nodad_address(msg: &AddressMessage) -> Option<std::net::Ipv6Addr> {
    let mut flags = AddressFlags::from_bits_truncate(u32::from(msg.header.flags.bits()));
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Flags(f) => flags = *f,
            AddressAttribute::Address(std::net::IpAddr::V6(a)) => address = Some(*a),
            _ => {}
        }
    }
    address.filter(|_| flags.contains(AddressFlags::Nodad))
}

/// Whether an IPv6 address message is of a link-local address that is not tentative.
fn usable_link_local(msg: &AddressMessage) -> bool {
    let mut flags = AddressFlags::from_bits_truncate(u32::from(msg.header.flags.bits()));
    let mut link_local = false;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Flags(f) => flags = *f,
            AddressAttribute::Address(std::net::IpAddr::V6(a)) => {
                link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            }
            _ => {}
        }
    }
    link_local && !flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed)
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// The length, type and sequence number of the netlink message at the start of `buf`, and for
/// `NLMSG_DONE`/`NLMSG_ERROR` its error code; `None` if it is not even a header.
fn raw_header(buf: &[u8]) -> Option<(usize, u16, u32, i32)> {
    let message = NetlinkBuffer::new_checked(buf).ok()?;
    let kind = message.message_type();
    let code = if kind == NLMSG_DONE || kind == NLMSG_ERROR {
        // `NLMSG_DONE` carries the dump's error code where `NLMSG_ERROR` carries its own.
        ErrorBuffer::new_checked(message.payload())
            .ok()
            .and_then(|e| e.code())
            .map_or(0, |c| c.get())
    } else {
        0
    };
    Some((
        message.length() as usize,
        kind,
        message.sequence_number(),
        code,
    ))
}

/// Reads every message waiting on `socket` and updates `waiting`.
// Over 80 lines on purpose: one pass over a datagram's messages, each kind updating the
// wait state in place; split, every arm would take the whole state and the socket.
fn read_available(socket: &mut Socket, waiting: &mut Waiting) -> std::io::Result<()> {
    loop {
        let buf = match socket.recv_from_full() {
            Ok((data, _)) => data,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            // Notifications were lost (ENOBUFS): ask again for everything still awaited.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                if !waiting.links.is_empty() {
                    waiting.dump(socket, LINK_DUMP)?;
                }
                if !waiting.link_local.is_empty() {
                    // Only an address's announcement (or a dump) tells it is usable.
                    waiting.dump(socket, ADDRESS_DUMP)?;
                } else if waiting.addresses_listed {
                    // Listed already: look at the groups again (an announcement may be lost).
                    waiting.check_joined()?;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut offset = 0;
        while offset < buf.len() {
            // Looked at in the header, so that a message the parser does not take counts too.
            if let Ok(header) = NetlinkBuffer::new_checked(&buf[offset..])
                && header.sequence_number() == ADDRESS_DUMP
                && header.flags() & NLM_F_DUMP_INTR != 0
            {
                waiting.address_dump_interrupted = true;
            }
            let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..])
            else {
                // A message this crate's parser does not take (a link kind it does not know,
                // an attribute it misreads): skip it alone, by its header, so the rest of the
                // datagram — the dump's end, say — is still read.
                match raw_header(&buf[offset..]) {
                    Some((len, kind, seq, code)) => {
                        if kind == NLMSG_DONE || kind == NLMSG_ERROR {
                            waiting.dump_ended(socket, seq, code)?;
                        }
                        offset += len.next_multiple_of(4);
                        continue;
                    }
                    None => break,
                }
            };
            let len = message.header.length as usize;
            match &message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    waiting.update(link);
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a))
                    if waiting.ipv6.contains(&a.header.index) =>
                {
                    if usable_link_local(a) {
                        waiting.link_local.retain(|&i| i != a.header.index);
                    }
                    if let Some(address) = nodad_address(a) {
                        let key = (a.header.index, address);
                        if !waiting.nodad.contains(&key) {
                            waiting.nodad.push(key);
                        }
                        // The kernel announces a `nodad` address after it joined its group.
                        if waiting.addresses_listed {
                            waiting.check_joined()?;
                        }
                    }
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => {
                    if let Some(address) = nodad_address(a) {
                        let key = (a.header.index, address);
                        waiting.nodad.retain(|k| *k != key);
                        waiting.unjoined.retain(|k| *k != key);
                    }
                }
                NetlinkPayload::Done(done) => {
                    waiting.dump_ended(socket, message.header.sequence_number, done.code)?;
                }
                NetlinkPayload::Error(e) => {
                    let code = e.code.map_or(0, std::num::NonZeroI32::get);
                    waiting.dump_ended(socket, message.header.sequence_number, code)?;
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len.next_multiple_of(4);
        }
    }
}
