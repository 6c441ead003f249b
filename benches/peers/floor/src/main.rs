//! The kernel-floor side of `benches/peers.sh`:
//! `floor-peer bridged|named|dual-stack N ROUNDS [THREADS]` builds the network the other two
//! build (a bridge `br0`, 10.100.255.254/16, in the current namespace; N members, each a
//! namespace with a veth pair to the bridge, its address and default route) with no library:
//! each request is a hand-built rtnetlink message, and everything the kernel accepts together
//! goes in one `sendmsg`. It is the least user-space work for this network, so its time is
//! (close to) the kernel's own, the floor under any library here.
//!
//! What it asks of the kernel, per member, on THREADS threads (default: one per CPU), each
//! building its share of the members one after another:
//! * `unshare(CLONE_NEWNET)` on the thread (the new namespace), its `/proc/thread-self/ns/net`
//!   opened (kept open: "bridged"; or bind-mounted to `/run/netns/m{i}` and closed: "named");
//! * on the thread's host socket, one batch: `RTM_NEWLINK` of the pair (host end `vh{i}` with its
//!   index, on `br0`, one queue each way; the peer `eth0`, index 2, in the new namespace), then
//!   `addrgenmode none` on the host end (the kernel takes it only for an existing link), then `up`;
//! * on a socket opened in the new namespace, one batch: `addrgenmode none` on `eth0`, `eth0` up,
//!   `lo` up, the address, the default route.
//!
//! It keeps no IPv6 link-local addresses (as netns-kit on an IPv4-only network), waits for no
//! readiness (netns-kit waits until the bridge forwards) and checks nothing but the answers; so it
//! is a bound from below, not a competitor. Teardown: one `RTM_DELLINK` of the host ends' link
//! group (the kernel unregisters them, and their peers, as one batch) and one of `br0`, the
//! namespaces released (fds closed, or names unmounted and removed), then a link dump every
//! millisecond until only `lo` is left. One line per round: `floor SCENARIO N=n setup_ms=.. teardown_ms=..`. Run only inside
//! a throw-away network and mount namespace, as `benches/peers.sh` does.
//!
//! `floor-peer dual-stack` is "bridged" with IPv6 as well, as the topology bench's dual-stack
//! scenario builds it with netns-kit: the bridge gets `fd64::ffff/64` and keeps its link-local
//! address, both without DAD; each member's `eth0` keeps its link-local address, without DAD
//! (`accept_dad` 0, written to the new namespace's `default` before the pair is made), and gets
//! `fd64::{i+1}/64` (no DAD) and a default route via `fd64::ffff` in its one batch; and, once,
//! untimed (netns-kit's setup includes it), the router-message filter netns-kit makes for such
//! a network (`nft`: MLD reports and done messages and router solicitations from one member's
//! port to another's dropped). The first round also pings the gateway over IPv6. Its setup
//! against `bridged`'s is what dual-stack costs the kernel itself, with no readiness wait (a
//! reference beside netns-kit's ratio, not a bound on it).
//!
//! `floor-peer runtime` is the same floor for a runtime's one-container ADD (the topology
//! bench's `--runtime` scenario runs it, plain and `--guarded`, when `NETNS_KIT_BENCH_FLOOR` names
//! this program): it joins the existing namespace at `NK_NETNS` to the existing bridge `cni0` with
//! address `NK_ADDR` and a default route via `NK_GW`, with the fewest requests: `cni0` looked up,
//! one batch in the host (the pair, its host end on `cni0`, then `addrgenmode none` and `up`),
//! then the main thread enters the container's namespace for one batch there (`addrgenmode
//! none`, `up`, the address, the route). The pair keeps the kernel's default queues, as a
//! container's interface does in that scenario. No output; exec to exit is what is timed.
//! `floor-peer runtime --guarded` adds what netns-kit promises on top, at its least cost: the
//! host's addresses listed (the subnet check), the container's side done by a thread of its
//! own (the calling thread never changes namespace), each end asked once whether it is up (the
//! readiness question), and an ownership mark on the host end while it is made (an alias in
//! its first request, so that a crash leaves nothing unreapable), taken off again once the
//! container is wired and kept. The difference between the two is the price of those promises.
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const GW: Ipv4Addr = Ipv4Addr::new(10, 100, 255, 254);
/// The bridge's IPv6 address (`dual-stack`): the members' gateway in `fd64::/64`.
const GW6: Ipv6Addr = Ipv6Addr::new(0xfd64, 0, 0, 0, 0, 0, 0, 0xffff);
const BR_INDEX: i32 = 2;
const PEER_INDEX: i32 = 2;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_GROUP: u16 = 27;
const IFLA_IFALIAS: u16 = 20;
/// The link group of the host ends, for one `RTM_DELLINK` of them all.
const GROUP: u32 = 7;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u16 = 10;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

fn member_addr(i: usize) -> Ipv4Addr {
    let k = i + 1;
    Ipv4Addr::new(10, 100, (k / 250) as u8, (k % 250 + 1) as u8)
}

/// One batch of rtnetlink requests, each asking for an acknowledgement.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    count: usize,
}

impl Batch {
    /// Appends a request: its header, then what `body` writes (the family header and
    /// attributes).
    fn msg(&mut self, ty: u16, flags: u16, body: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 16]);
        body(&mut self.buf);
        let len = (self.buf.len() - start) as u32;
        self.count += 1;
        let h = &mut self.buf[start..start + 16];
        h[0..4].copy_from_slice(&len.to_ne_bytes());
        h[4..6].copy_from_slice(&ty.to_ne_bytes());
        h[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        h[8..12].copy_from_slice(&(self.count as u32).to_ne_bytes());
        self
    }

    /// Sends the batch and reads one answer per request; the first error is returned.
    fn run(&self, sock: &OwnedFd, what: &str) -> Res<()> {
        send(sock.as_raw_fd(), &self.buf, MsgFlags::empty())?;
        let mut buf = vec![0u8; 16384];
        let mut acked = 0;
        while acked < self.count {
            let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            for (ty, seq, payload) in messages(&buf[..n]) {
                if ty == NLMSG_ERROR {
                    let errno = i32::from_ne_bytes(payload[0..4].try_into()?);
                    if errno != 0 {
                        let e = std::io::Error::from_raw_os_error(-errno);
                        return Err(format!("{what}: request {seq}: {e}").into());
                    }
                    acked += 1;
                }
            }
        }
        Ok(())
    }
}

/// The messages in a netlink datagram: (type, sequence number, payload).
fn messages(mut buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
        out.push((ty, seq, &buf[16..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    out
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn pad(buf: &mut Vec<u8>) {
    buf.resize(align(buf.len()), 0);
}

fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    pad(buf);
}

fn nest(buf: &mut Vec<u8>, ty: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    body(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&ty.to_ne_bytes());
}

fn name(buf: &mut Vec<u8>, s: &str) {
    let mut z = s.as_bytes().to_vec();
    z.push(0);
    attr(buf, IFLA_IFNAME, &z);
}

/// `struct ifinfomsg`.
fn ifinfo(buf: &mut Vec<u8>, index: i32, flags: u32, change: u32) {
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(&index.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&change.to_ne_bytes());
}

fn set_up(b: &mut Batch, index: i32) {
    b.msg(RTM_SETLINK, NLM_F_ACK, |m| ifinfo(m, index, IFF_UP, IFF_UP));
}

/// `addrgenmode none`: no IPv6 link-local address (the kernel takes it only for an existing link).
fn quiet_attr(m: &mut Vec<u8>) {
    nest(m, IFLA_AF_SPEC, |m| {
        nest(m, AF_INET6, |m| {
            attr(m, IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE])
        })
    });
}

fn no_link_local(b: &mut Batch, index: i32) {
    b.msg(RTM_SETLINK, NLM_F_ACK, |m| {
        ifinfo(m, index, 0, 0);
        quiet_attr(m);
    });
}

fn default_route(b: &mut Batch, gw: Ipv4Addr) {
    default_route_via(b, AF_INET, &gw.octets());
}

/// The default route of family `family` via `gw` on the member's interface.
fn default_route_via(b: &mut Batch, family: u8, gw: &[u8]) {
    b.msg(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, |m| {
        // `struct rtmsg`: family, lengths, tos, table, protocol, scope, type, flags.
        m.extend_from_slice(&[family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST]);
        m.extend_from_slice(&0u32.to_ne_bytes());
        attr(m, RTA_GATEWAY, gw);
        attr(m, RTA_OIF, &(PEER_INDEX as u32).to_ne_bytes());
    });
}

fn add_addr(b: &mut Batch, index: i32, a: Ipv4Addr, prefix: u8) {
    b.msg(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, |m| {
        m.extend_from_slice(&[AF_INET, prefix, 0, 0]);
        m.extend_from_slice(&(index as u32).to_ne_bytes());
        attr(m, IFA_LOCAL, &a.octets());
        attr(m, IFA_ADDRESS, &a.octets());
    });
}

/// An IPv6 address, `/64`; without duplicate address detection where `nodad`.
fn add_addr6(b: &mut Batch, index: i32, a: Ipv6Addr, nodad: bool) {
    b.msg(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, |m| {
        m.extend_from_slice(&[AF_INET6 as u8, 64, 0, 0]);
        m.extend_from_slice(&(index as u32).to_ne_bytes());
        attr(m, IFA_ADDRESS, &a.octets());
        if nodad {
            attr(m, IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
        }
    });
}

/// Member `i`'s IPv6 address (`dual-stack`), as the topology bench's dual-stack scenario gives.
fn member_addr6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd64, 0, 0, 0, 0, 0, 0, (i + 1) as u16)
}

/// Writes `value` to sysctl file `path` (of the calling thread's network namespace).
fn sysctl(path: &str, value: &str) -> Res<()> {
    std::fs::write(path, value).map_err(|e| format!("{path}: {e}").into())
}

fn route_socket() -> Res<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    Ok(fd)
}

/// A veth pair: its host end (`index`, 0 for the kernel's choice; `name`) on bridge `master`,
/// its other end `eth0` (index 2) created directly in namespace `ns`.
struct Pair<'a> {
    index: i32,
    name: &'a str,
    master: u32,
    group: Option<u32>,
    ns: &'a File,
    /// One queue each way per end (else the kernel's default, one per possible CPU).
    single_queue: bool,
}

impl Pair<'_> {
    /// Appends its `RTM_NEWLINK`.
    fn request(&self, b: &mut Batch) {
        let queues = |m: &mut Vec<u8>| {
            if self.single_queue {
                attr(m, IFLA_NUM_TX_QUEUES, &1u32.to_ne_bytes());
                attr(m, IFLA_NUM_RX_QUEUES, &1u32.to_ne_bytes());
            }
        };
        b.msg(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, |m| {
            ifinfo(m, self.index, 0, 0);
            name(m, self.name);
            attr(m, IFLA_MASTER, &self.master.to_ne_bytes());
            if let Some(group) = self.group {
                attr(m, IFLA_GROUP, &group.to_ne_bytes());
            }
            queues(m);
            nest(m, IFLA_LINKINFO, |m| {
                attr(m, IFLA_INFO_KIND, b"veth");
                nest(m, IFLA_INFO_DATA, |m| {
                    nest(m, VETH_INFO_PEER, |m| {
                        ifinfo(m, PEER_INDEX, 0, 0);
                        name(m, "eth0");
                        attr(
                            m,
                            IFLA_NET_NS_FD,
                            &(self.ns.as_raw_fd() as u32).to_ne_bytes(),
                        );
                        queues(m);
                    })
                })
            });
        });
    }
}

/// A member's namespace as the round keeps it: its fd ("bridged") or its name ("named").
enum Held {
    Fd(File),
    Name(String),
}

/// Builds members `t`, `t + threads`, ... on this thread.
fn members(t: usize, threads: usize, n: usize, named: bool, dual: bool) -> Res<Vec<Held>> {
    let host = route_socket()?;
    let mut held = Vec::new();
    for i in (t..n).step_by(threads) {
        unshare(CloneFlags::CLONE_NEWNET)?;
        let ns = File::open("/proc/thread-self/ns/net")?;
        if dual {
            // The member's interface inherits it: its link-local address without DAD, as
            // netns-kit makes a dual-stack member's (one write per member, as netns-kit's).
            sysctl("/proc/sys/net/ipv6/conf/default/accept_dad", "0")?;
        }
        let host_index = 3 + i as i32;
        let mut b = Batch::default();
        let pair = Pair {
            index: host_index,
            name: &format!("vh{i}"),
            master: BR_INDEX as u32,
            group: Some(GROUP),
            ns: &ns,
            single_queue: true,
        };
        pair.request(&mut b);
        no_link_local(&mut b, host_index);
        set_up(&mut b, host_index);
        b.run(&host, &format!("member {i}: host end"))?;

        let inside = route_socket()?;
        let mut b = Batch::default();
        if !dual {
            no_link_local(&mut b, PEER_INDEX);
        }
        set_up(&mut b, PEER_INDEX);
        set_up(&mut b, 1);
        add_addr(&mut b, PEER_INDEX, member_addr(i), 16);
        if dual {
            add_addr6(&mut b, PEER_INDEX, member_addr6(i), true);
        }
        default_route(&mut b, GW);
        if dual {
            default_route_via(&mut b, AF_INET6 as u8, &GW6.octets());
        }
        b.run(&inside, &format!("member {i}: inside"))?;
        if named {
            let path = format!("/run/netns/m{i}");
            File::create_new(&path)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            held.push(Held::Name(path));
        } else {
            held.push(Held::Fd(ns));
        }
    }
    Ok(held)
}

fn setup(n: usize, threads: usize, named: bool, dual: bool) -> Res<Vec<Held>> {
    let host = route_socket()?;
    let mut b = Batch::default();
    b.msg(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, |m| {
        ifinfo(m, BR_INDEX, 0, 0);
        name(m, "br0");
        nest(m, IFLA_LINKINFO, |m| attr(m, IFLA_INFO_KIND, b"bridge"));
    });
    if dual {
        // The gateway: its link-local address and its own without DAD, as netns-kit's bridge.
        b.run(&host, "br0")?;
        sysctl("/proc/sys/net/ipv6/conf/br0/accept_dad", "0")?;
        b = Batch::default();
        add_addr6(&mut b, BR_INDEX, GW6, true);
    } else {
        no_link_local(&mut b, BR_INDEX);
    }
    add_addr(&mut b, BR_INDEX, GW, 16);
    set_up(&mut b, BR_INDEX);
    b.run(&host, "br0")?;
    if named {
        // Once per round (`ip netns add` does it per name).
        mount(
            Some(""),
            "/run/netns",
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )?;
    }
    let workers: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || members(t, threads, n, named, dual)))
        .collect();
    let mut held = Vec::with_capacity(n);
    for w in workers {
        held.extend(w.join().map_err(|_| "worker panicked")??);
    }
    Ok(held)
}

/// How many links the current namespace has (one `RTM_GETLINK` dump).
fn link_count(sock: &OwnedFd) -> Res<usize> {
    dump_count(sock, RTM_GETLINK)
}

/// How many objects one dump (`RTM_GETLINK`, `RTM_GETADDR`) of the socket's namespace lists.
fn dump_count(sock: &OwnedFd, ty: u16) -> Res<usize> {
    let answer = ty - 2; // RTM_NEWLINK for RTM_GETLINK, RTM_NEWADDR for RTM_GETADDR
    let mut b = Batch::default();
    b.msg(ty, NLM_F_DUMP, |m| ifinfo(m, 0, 0, 0));
    send(sock.as_raw_fd(), &b.buf, MsgFlags::empty())?;
    let mut buf = vec![0u8; 65536];
    let mut links = 0;
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        for (ty, _, payload) in messages(&buf[..n]) {
            match ty {
                t if t == answer => links += 1,
                NLMSG_DONE => return Ok(links),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(payload[0..4].try_into()?);
                    return Err(std::io::Error::from_raw_os_error(-errno).into());
                }
                _ => {}
            }
        }
    }
}

fn teardown(held: Vec<Held>) -> Res<()> {
    let host = route_socket()?;
    let mut b = Batch::default();
    b.msg(RTM_DELLINK, NLM_F_ACK, |m| {
        ifinfo(m, 0, 0, 0);
        attr(m, IFLA_GROUP, &GROUP.to_ne_bytes());
    });
    b.msg(RTM_DELLINK, NLM_F_ACK, |m| ifinfo(m, BR_INDEX, 0, 0));
    b.run(&host, "links deleted")?;
    for h in held {
        if let Held::Name(path) = h {
            umount2(path.as_str(), MntFlags::MNT_DETACH)?;
            std::fs::remove_file(&path)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while link_count(&host)? > 1 {
        if Instant::now() > deadline {
            return Err("teardown: links still there after 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Pings the gateway from member 0's namespace (a thread entered there spawns `ping`), over
/// IPv6 as well where `dual`.
fn verify(member0: &Held, dual: bool) -> Res<()> {
    let gateways = [GW.to_string(), GW6.to_string()];
    for gw in &gateways[..if dual { 2 } else { 1 }] {
        let ns = match member0 {
            Held::Fd(f) => f.try_clone()?,
            Held::Name(path) => File::open(path)?,
        };
        let target = gw.clone();
        let out = std::thread::spawn(move || -> Res<std::process::Output> {
            setns(&ns, CloneFlags::CLONE_NEWNET)?;
            Ok(std::process::Command::new("ping")
                .args(["-c1", "-W1", &target])
                .output()?)
        })
        .join()
        .map_err(|_| "verify thread panicked")??;
        if !out.status.success() {
            return Err(format!(
                "verify: ping {gw} from member 0 failed:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
            .into());
        }
        eprintln!("verify: ping -c1 -W1 {gw} from member 0: ok");
    }
    Ok(())
}

/// `dual-stack`: the bridge-family filter netns-kit makes for a dual-stack network
/// (`BridgedNetworkBuilder::filter_router_messages`, see `src/nat/router_messages.rs`), the same
/// rules written for `nft`: MLD reports and done messages and router solicitations forwarded
/// from one member's port to another's (both in link group `GROUP`) are dropped.
fn router_message_filter() -> Res<()> {
    // ICMPv6 (58), its type: the transport header's first byte.
    const ICMPV6_TYPE: &str = "meta l4proto 58 @th,0,8";
    let rules: String = [131, 132, 133, 143]
        .iter()
        .map(|t| {
            format!("meta iifgroup {GROUP} meta oifgroup {GROUP} {ICMPV6_TYPE} {t} counter drop\n")
        })
        .collect();
    let chain = "type filter hook forward priority -200; policy accept;";
    let script = format!("table bridge floor-rm {{\nchain forward {{\n{chain}\n{rules}}}\n}}\n");
    let mut nft = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    std::io::Write::write_all(
        &mut nft.stdin.take().ok_or("nft: no stdin")?,
        script.as_bytes(),
    )?;
    if !nft.wait()?.success() {
        return Err("nft: the router-message filter was refused".into());
    }
    Ok(())
}

/// `floor-peer runtime`: see the module docs.
fn runtime(guarded: bool) -> Res<()> {
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let ns = File::open(var("NK_NETNS")?)?;
    let (addr, prefix) = var("NK_ADDR")?
        .split_once('/')
        .map(|(a, p)| (a.parse::<Ipv4Addr>(), p.parse::<u8>()))
        .ok_or("NK_ADDR: not ADDRESS/PREFIX")?;
    let (addr, prefix) = (addr?, prefix?);
    let gw: Ipv4Addr = var("NK_GW")?.parse()?;
    let host = route_socket()?;
    let bridge = link_index(&host, "cni0")?;
    if guarded {
        // The subnet check: the host's addresses.
        dump_count(&host, RTM_GETADDR)?;
    }
    let host_end = format!("vf{:x}", std::process::id());
    let by_name = |b: &mut Batch, flags: u32, quiet: bool, alias: Option<&str>| {
        b.msg(RTM_SETLINK, NLM_F_ACK, |m| {
            ifinfo(m, 0, flags, flags);
            name(m, &host_end);
            if quiet {
                quiet_attr(m);
            }
            if let Some(alias) = alias {
                attr(m, IFLA_IFALIAS, alias.as_bytes());
            }
        });
    };
    // The ownership mark (`--guarded`): in the host end's first request, while it is down.
    let mark = format!("floor-peer {}", std::process::id());
    let mark = guarded.then_some(mark.as_str());
    let mut b = Batch::default();
    let pair = Pair {
        index: 0,
        name: &host_end,
        master: bridge,
        group: None,
        ns: &ns,
        single_queue: false,
    };
    pair.request(&mut b);
    by_name(&mut b, 0, true, mark);
    by_name(&mut b, IFF_UP, false, None);
    b.run(&host, "host end")?;
    let container_end = move || -> Res<()> {
        setns(&ns, CloneFlags::CLONE_NEWNET)?;
        let inside = route_socket()?;
        let mut b = Batch::default();
        no_link_local(&mut b, PEER_INDEX);
        set_up(&mut b, PEER_INDEX);
        add_addr(&mut b, PEER_INDEX, addr, prefix);
        default_route(&mut b, gw);
        b.run(&inside, "container end")?;
        if guarded {
            // The readiness question, inside.
            link_index(&inside, "eth0")?;
        }
        Ok(())
    };
    if !guarded {
        // Single-threaded: the main thread itself enters the container's namespace.
        return container_end();
    }
    // The calling thread never changes namespace: a thread of its own goes in.
    std::thread::spawn(container_end)
        .join()
        .map_err(|_| "container thread panicked")??;
    // The readiness question, in the host.
    link_index(&host, &host_end)?;
    // Kept: the ownership mark comes off again (an empty alias removes it).
    let mut b = Batch::default();
    by_name(&mut b, 0, false, Some(""));
    b.run(&host, "host end unmarked")
}

/// The index of the link called `name` (`RTM_GETLINK` by name).
fn link_index(sock: &OwnedFd, link: &str) -> Res<u32> {
    let mut b = Batch::default();
    b.msg(RTM_GETLINK, 0, |m| {
        ifinfo(m, 0, 0, 0);
        name(m, link);
    });
    send(sock.as_raw_fd(), &b.buf, MsgFlags::empty())?;
    let mut buf = vec![0u8; 65536];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    for (ty, _, payload) in messages(&buf[..n]) {
        match ty {
            RTM_NEWLINK => return Ok(u32::from_ne_bytes(payload[4..8].try_into()?)),
            NLMSG_ERROR => {
                let errno = i32::from_ne_bytes(payload[0..4].try_into()?);
                return Err(
                    format!("{link}: {}", std::io::Error::from_raw_os_error(-errno)).into(),
                );
            }
            _ => {}
        }
    }
    Err(format!("{link}: no answer").into())
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("runtime") {
        return runtime(args.get(2).map(String::as_str) == Some("--guarded"));
    }
    if args.len() != 4 && args.len() != 5 {
        return Err(
            "usage: floor-peer <bridged|named|dual-stack> <N> <rounds> [threads] | runtime".into(),
        );
    }
    let (named, dual) = match args[1].as_str() {
        "bridged" => (false, false),
        "named" => (true, false),
        "dual-stack" => (false, true),
        other => return Err(format!("unknown scenario {other}").into()),
    };
    let n: usize = args[2].parse()?;
    let rounds: usize = args[3].parse()?;
    let threads = match args.get(4) {
        Some(t) => t.parse()?,
        None => std::thread::available_parallelism()?.get(),
    };
    if n == 0 || n > 60_000 || threads == 0 {
        return Err("N must be 1..=60000 and threads at least 1".into());
    }
    if dual {
        // Untimed (netns-kit's setup includes making it): a bound from below.
        router_message_filter()?;
    }
    for r in 0..rounds {
        let t0 = Instant::now();
        let held = setup(n, threads, named, dual)?;
        let setup_ms = t0.elapsed().as_secs_f64() * 1e3;
        if r == 0 {
            verify(&held[0], dual)?;
        }
        let t1 = Instant::now();
        teardown(held)?;
        let teardown_ms = t1.elapsed().as_secs_f64() * 1e3;
        println!(
            "floor {} N={n} setup_ms={setup_ms:.1} teardown_ms={teardown_ms:.1}",
            args[1]
        );
    }
    Ok(())
}

fn main() {
    let begin = std::time::Instant::now();
    if let Err(e) = run() {
        eprintln!("floor-peer: error: {e}");
        std::process::exit(1);
    }
    // As the topology bench's runtime child prints it: the time from `main` to done.
    if std::env::var("NETNS_KIT_BENCH_WIRED").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!(
            "main to wired: {:.3} ms",
            begin.elapsed().as_secs_f64() * 1000.0
        );
    }
}
