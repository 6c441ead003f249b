//! nf_tables over netlink, writing and reading rules exactly as `iptables-nft` 1.8 does, so
//! `iptables-save` shows them and `iptables -D` (a reference CNI plugin's teardown) removes them.
//!
//! `iptables-nft` reads a rule back by parsing its expressions, so these are built as it builds
//! them (`nft --debug=netlink list ruleset` shows both the same; `tests/nat.rs` compares
//! `iptables-save` and `nft list ruleset` of ours with those of `iptables-restore` on the same
//! rules): `-p` as a `meta l4proto` load and `cmp`; an address as a `payload` load of the bytes
//! its prefix covers (`bitwise` with the mask when the prefix is not a whole number of bytes);
//! `--dport` as a transport-header `payload` and a `cmp` (or a `range`); `-m mark` as `meta
//! mark`, `bitwise`, `cmp`; `-m addrtype` and `-m comment` as xtables matches; a `counter`;
//! then an `immediate` verdict or an xtables target (`MASQUERADE` rev 0, `DNAT` rev 2, `MARK`
//! rev 2) with the structure the kernel's `x_tables` expects, padded to 8 as xtables aligns it.
//!
//! A change is one batch, one transaction: every rule is in place or none is. Reading back is a
//! dump of the table's rules, each with its chain, handle, jump target and comment: enough to
//! remove a chain and what leads to it by name, from any process.

use std::{
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    time::Duration,
};

use ipnetwork::IpNetwork;
use nix::sys::{
    socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
        setsockopt, socket, sockopt,
    },
    time::TimeVal,
};
use rtnetlink::packet_core::{DefaultNla, Emitable, ErrorBuffer, NetlinkBuffer};

use super::rule::{Rule, Target};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
/// Set on a dump's messages when the ruleset changed while it was read: it may miss rules.
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_NONREC: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NETLINK_HEADER_LEN: usize = 16;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
pub(crate) const NFPROTO_BRIDGE: u8 = 7;
/// `NF_BR_FORWARD`: frames a bridge forwards from one port to another.
const NF_BR_FORWARD: u32 = 2;
/// `NF_BR_PRI_FILTER_BRIDGED`: before `br_netfilter` (priority 0) hands a frame to ip6tables.
const NF_BR_PRI_FILTER_BRIDGED: i32 = -200;
const NFT_META_IIFGROUP: u32 = 21;
const NFT_META_OIFGROUP: u32 = 22;
const NF_DROP: u32 = 0;
const IPPROTO_ICMPV6: u8 = 58;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_MARK: u32 = 3;
const NFT_META_L4PROTO: u32 = 16;
const NFT_REG_1: u32 = 1;
const NFT_REG_VERDICT: u32 = 0;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_RANGE_EQ: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: u32 = (-3i32) as u32;
/// `XT_MAX_COMMENT_LEN`: the size of `xt_comment_info`.
pub(crate) const COMMENT_LEN: usize = 256;
/// `XT_ADDRTYPE_LOCAL`: `1 << RTN_LOCAL`.
const XT_ADDRTYPE_LOCAL: u16 = 1 << 2;
/// `NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED`.
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
/// `NF_NAT_RANGE_PROTO_OFFSET` (`1 << 5`).
const NF_NAT_RANGE_PROTO_OFFSET: u32 = 1 << 5;

/// How long to wait for the kernel's answers, per receive: it answers at once, so this only
/// bounds a wait that would otherwise have no end.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The IP family of a table: `ip` or `ip6`.
pub(crate) fn family(v6: bool) -> u8 {
    if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }
}

/// What went wrong talking to nf_tables.
#[derive(Debug)]
pub(crate) enum NftError {
    /// The kernel refused, with this errno (nothing of the batch took effect).
    Refused(i32),
    /// No answer came in time after a batch was sent: it may or may not be in place.
    Uncertain,
}

impl NftError {
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            NftError::Refused(e) => Some(*e),
            NftError::Uncertain => None,
        }
    }
}

impl std::fmt::Display for NftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NftError::Refused(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
            NftError::Uncertain => write!(
                f,
                "no answer from nf_tables within {} s; the change may be in place",
                RECEIVE_TIMEOUT.as_secs()
            ),
        }
    }
}

/// A list of netlink attributes, written out by netlink-packet-core (header, length, padding,
/// the nested flag).
#[derive(Default)]
struct Attrs(Vec<DefaultNla>);

impl Attrs {
    fn raw(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        self.0.push(DefaultNla::new(kind, data.to_vec()));
        self
    }

    fn string(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.raw(kind, &data)
    }

    fn be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.raw(kind, &v.to_be_bytes())
    }

    fn be64(&mut self, kind: u16, v: u64) -> &mut Self {
        self.raw(kind, &v.to_be_bytes())
    }

    fn nested(&mut self, kind: u16, inner: Attrs) -> &mut Self {
        let bytes = inner.bytes();
        self.raw(kind | NLA_F_NESTED, &bytes)
    }

    fn bytes(&self) -> Vec<u8> {
        let nlas = self.0.as_slice();
        let mut out = vec![0u8; nlas.buffer_len()];
        nlas.emit(&mut out);
        out
    }
}

/// An expression: `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }`.
fn expr(list: &mut Attrs, name: &str, data: Attrs) {
    let mut e = Attrs::default();
    e.string(1, name).nested(2, data);
    list.nested(1, e);
}

/// `NFTA_DATA_VALUE` inside a nest of `kind`.
fn data_value(kind: u16, bytes: &[u8], out: &mut Attrs) {
    let mut d = Attrs::default();
    d.raw(1, bytes);
    out.nested(kind, d);
}

fn address_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn cmp(list: &mut Attrs, negate: bool, bytes: &[u8]) {
    let mut c = Attrs::default();
    c.be32(1, NFT_REG_1)
        .be32(2, if negate { NFT_CMP_NEQ } else { NFT_CMP_EQ });
    data_value(3, bytes, &mut c);
    expr(list, "cmp", c);
}

fn meta(list: &mut Attrs, key: u32) {
    let mut m = Attrs::default();
    m.be32(2, key).be32(1, NFT_REG_1);
    expr(list, "meta", m);
}

fn payload(list: &mut Attrs, base: u32, offset: u32, len: u32) {
    let mut p = Attrs::default();
    p.be32(1, NFT_REG_1)
        .be32(2, base)
        .be32(3, offset)
        .be32(4, len);
    expr(list, "payload", p);
}

fn bitwise(list: &mut Attrs, mask: &[u8]) {
    let mut b = Attrs::default();
    b.be32(1, NFT_REG_1)
        .be32(2, NFT_REG_1)
        .be32(3, mask.len() as u32);
    data_value(4, mask, &mut b);
    data_value(5, &vec![0u8; mask.len()], &mut b);
    expr(list, "bitwise", b);
}

/// An xtables match or target (`name`, revision `rev`) with its info structure, padded to 8.
fn xt(list: &mut Attrs, kind: &str, name: &str, rev: u32, mut info: Vec<u8>) {
    info.resize(info.len().next_multiple_of(8), 0);
    let mut m = Attrs::default();
    m.string(1, name).be32(2, rev).raw(3, &info);
    expr(list, kind, m);
}

/// An address match: the bytes the prefix covers, at the source or destination offset.
fn address(list: &mut Attrs, net: IpNetwork, source: bool, negate: bool) {
    let v6 = net.is_ipv6();
    let offset = match (v6, source) {
        (false, true) => 12,
        (false, false) => 16,
        (true, true) => 8,
        (true, false) => 24,
    };
    let addr = address_bytes(net.network());
    let mask = address_bytes(net.mask());
    // iptables' add_addr(): the leading whole 0xff bytes of the mask, unless a partial byte
    // follows, in which case the full address with a bitwise mask.
    let whole = mask.iter().take_while(|b| **b == 0xff).count();
    let partial = mask[whole..].iter().any(|b| *b != 0);
    let len = if partial { mask.len() } else { whole };
    if len == 0 {
        return;
    }
    payload(list, NFT_PAYLOAD_NETWORK_HEADER, offset, len as u32);
    if partial {
        bitwise(list, &mask[..len]);
    }
    cmp(list, negate, &addr[..len]);
}

/// `nf_nat_range2` for a DNAT to `to` (and ports `ports`): flags, min and max address (16 bytes
/// each), min and max port, base port (big-endian).
fn nat_range2(to: IpAddr, ports: Option<(u16, u16)>, base: Option<u16>) -> Vec<u8> {
    let mut info = vec![0u8; 42];
    let mut flags = NF_NAT_RANGE_MAP_IPS;
    let addr = address_bytes(to);
    info[4..4 + addr.len()].copy_from_slice(&addr);
    info[20..20 + addr.len()].copy_from_slice(&addr);
    if let Some((min, max)) = ports {
        flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
        info[36..38].copy_from_slice(&min.to_be_bytes());
        info[38..40].copy_from_slice(&max.to_be_bytes());
    }
    if let Some(base) = base {
        // Port `base + i` maps to `min + i`, not to any port of the range.
        flags |= NF_NAT_RANGE_PROTO_OFFSET;
        info[40..42].copy_from_slice(&base.to_be_bytes());
    }
    info[..4].copy_from_slice(&flags.to_ne_bytes());
    info
}

/// The expressions of `rule`, in the order `iptables-nft` makes them.
fn expressions(rule: &Rule, v6: bool) -> Attrs {
    let mut list = Attrs::default();
    if let Some(proto) = rule.protocol {
        meta(&mut list, NFT_META_L4PROTO);
        cmp(&mut list, false, &[proto.number()]);
    }
    if let Some((net, negate)) = rule.source {
        address(&mut list, net, true, negate);
    }
    if let Some((net, negate)) = rule.destination {
        address(&mut list, net, false, negate);
    }
    if let Some((min, max)) = rule.dport {
        payload(&mut list, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
        if min == max {
            cmp(&mut list, false, &min.to_be_bytes());
        } else {
            let mut r = Attrs::default();
            r.be32(1, NFT_REG_1).be32(2, NFT_RANGE_EQ);
            data_value(3, &min.to_be_bytes(), &mut r);
            data_value(4, &max.to_be_bytes(), &mut r);
            expr(&mut list, "range", r);
        }
    }
    if let Some((value, mask)) = rule.mark {
        meta(&mut list, NFT_META_MARK);
        bitwise(&mut list, &mask.to_ne_bytes());
        cmp(&mut list, false, &value.to_ne_bytes());
    }
    if rule.local_destination {
        // xt_addrtype_info_v1: source, dest (u16), flags (u32).
        let mut info = vec![0u8; 8];
        info[2..4].copy_from_slice(&XT_ADDRTYPE_LOCAL.to_ne_bytes());
        xt(&mut list, "match", "addrtype", 1, info);
    }
    if let Some(comment) = &rule.comment {
        let mut info = vec![0u8; COMMENT_LEN];
        info[..comment.len()].copy_from_slice(comment.as_bytes());
        xt(&mut list, "match", "comment", 0, info);
    }
    let mut counter = Attrs::default();
    counter.be64(1, 0).be64(2, 0);
    expr(&mut list, "counter", counter);

    let immediate = |list: &mut Attrs, verdict: Attrs| {
        let mut data = Attrs::default();
        data.nested(2, verdict);
        let mut i = Attrs::default();
        i.be32(1, NFT_REG_VERDICT).nested(2, data);
        expr(list, "immediate", i);
    };
    match &rule.target {
        Target::Accept => {
            let mut verdict = Attrs::default();
            verdict.be32(1, NF_ACCEPT);
            immediate(&mut list, verdict);
        }
        Target::Jump(chain) => {
            let mut verdict = Attrs::default();
            verdict.be32(1, NFT_JUMP).string(2, chain);
            immediate(&mut list, verdict);
        }
        Target::Masquerade => {
            // IPv4: `nf_nat_ipv4_multi_range_compat` with rangesize 1 (20 bytes); IPv6:
            // `nf_nat_range` (40 bytes).
            let info = if v6 {
                vec![0u8; 40]
            } else {
                let mut i = vec![0u8; 20];
                i[..4].copy_from_slice(&1u32.to_ne_bytes());
                i
            };
            xt(&mut list, "target", "MASQUERADE", 0, info);
        }
        Target::Dnat { to, ports, base } => {
            xt(
                &mut list,
                "target",
                "DNAT",
                2,
                nat_range2(*to, *ports, *base),
            );
        }
        Target::SetMark { value, mask } => {
            // xt_mark_tginfo2: mark, mask.
            let mut info = value.to_ne_bytes().to_vec();
            info.extend_from_slice(&mask.to_ne_bytes());
            xt(&mut list, "target", "MARK", 2, info);
        }
    }
    list
}

/// A netlink message: header, `nfgenmsg`, attributes.
fn message(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, attrs: &Attrs) {
    let res_id = if kind == NFNL_MSG_BATCH_BEGIN || kind == NFNL_MSG_BATCH_END {
        NFNL_SUBSYS_NFTABLES
    } else {
        0
    };
    let attrs = attrs.bytes();
    let len = NETLINK_HEADER_LEN + 4 + attrs.len();
    let start = out.len();
    out.resize(start + len, 0);
    let mut message = NetlinkBuffer::new(&mut out[start..]);
    message.set_length(len as u32);
    message.set_message_type(kind);
    message.set_flags(flags);
    message.set_sequence_number(seq);
    message.set_port_number(0);
    let payload = message.payload_mut();
    payload[0] = family;
    payload[1] = 0; // NFNETLINK_V0
    payload[2..4].copy_from_slice(&res_id.to_be_bytes());
    payload[4..].copy_from_slice(&attrs);
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// An nf_tables netlink socket in the calling thread's namespace.
pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub(crate) fn open() -> std::io::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        let timeout = TimeVal::new(RECEIVE_TIMEOUT.as_secs() as _, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Socket { fd, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Sends `buf` and reads answers until every sequence number in `acks` is acknowledged
    /// (or, with `dump`, until the dump's end); the messages that are not acknowledgements,
    /// and the first error.
    ///
    /// The kernel handles a request (a batch too) inside the `send`, so every answer to it is
    /// queued by the time `send` returns: after a failure the rest is drained without waiting,
    /// and answers to other sequence numbers (an earlier request's leftovers) are skipped, so
    /// a reused socket never reads a stale answer as its own. A receive error after the send
    /// leaves the outcome unknown ([`NftError::Uncertain`]).
    ///
    /// `also`: further sequence numbers of this request whose errors count but that get no
    /// acknowledgement of their own (a batch's begin and end, a dump's request): the kernel
    /// reports some batch-wide failures against the batch's begin message.
    fn transact(
        &mut self,
        buf: &[u8],
        acks: &[u32],
        also: &[u32],
        dump: bool,
    ) -> Result<Vec<Vec<u8>>, NftError> {
        // Room for every answer of a big batch (an ack takes ~1 KiB of receive buffer) and for
        // the batch itself.
        crate::sys::grow_receive_buffer(self.fd.as_fd(), (acks.len() + 64) * 2048);
        grow_send_buffer(self.fd.as_fd(), buf.len() + 4096);
        send(self.fd.as_raw_fd(), buf, MsgFlags::empty())
            .map_err(|e| NftError::Refused(e as i32))?;
        let mine = |seq: u32| acks.contains(&seq) || also.contains(&seq);
        let mut pending: Vec<u32> = acks.to_vec();
        let mut replies = Vec::new();
        let mut first_error = None;
        let mut done = !dump;
        let mut interrupted = false;
        let mut rbuf = vec![0u8; 1 << 16];
        while !pending.is_empty() || !done {
            let flags = if first_error.is_some() {
                MsgFlags::MSG_DONTWAIT
            } else {
                MsgFlags::empty()
            };
            let n = match recv(self.fd.as_raw_fd(), &mut rbuf, flags) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => continue,
                // Draining after a failure: nothing more is queued.
                Err(nix::Error::EAGAIN) if first_error.is_some() => break,
                // Draining after a known refusal: that refusal stands.
                Err(_) if first_error.is_some() => break,
                Err(_) => return Err(NftError::Uncertain),
            };
            let mut rest = &rbuf[..n];
            while let Ok(message) = NetlinkBuffer::new_checked(rest) {
                let len = message.length() as usize;
                let seq = message.sequence_number();
                if mine(seq) {
                    interrupted |= dump && message.flags() & NLM_F_DUMP_INTR != 0;
                    match message.message_type() {
                        NLMSG_ERROR => {
                            if let Ok(error) = ErrorBuffer::new_checked(message.payload()) {
                                if let Some(code) = error.code() {
                                    first_error.get_or_insert(-code.get());
                                    done = true;
                                }
                            }
                            pending.retain(|s| *s != seq);
                            if first_error.is_some() && also.contains(&seq) {
                                // A batch-wide failure: no further answer is owed.
                                pending.clear();
                            }
                        }
                        NLMSG_DONE => done = true,
                        _ => replies.push(rest[..len].to_vec()),
                    }
                }
                rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
            }
        }
        match first_error {
            Some(errno) => Err(NftError::Refused(errno)),
            // Inconsistent: read again (see `dump`).
            None if interrupted => Err(NftError::Refused(nix::libc::EINTR)),
            None => Ok(replies),
        }
    }

    /// A dump of `msg` for `family` with `attrs`, read again while the kernel says the ruleset
    /// changed meanwhile (`NLM_F_DUMP_INTR`: other processes' transactions, say many
    /// containers' masquerade rules added and removed at once), so that no rule is missed; a
    /// rule missed would, for one, leave a jump to a chain this crate then fails to delete
    /// (`EBUSY`). After 8 interrupted reads, `EINTR`.
    fn dump(&mut self, msg: u16, family: u8, attrs: &Attrs) -> Result<Vec<Vec<u8>>, NftError> {
        let mut last = NftError::Refused(nix::libc::EINTR);
        for _ in 0..8 {
            let seq = self.next_seq();
            let mut buf = Vec::new();
            message(
                &mut buf,
                nft_type(msg),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                family,
                attrs,
            );
            match self.transact(&buf, &[], &[seq], true) {
                Err(e) if e.errno() == Some(nix::libc::EINTR) => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    /// One `GET` request acknowledged: `true` if the object exists, `false` on ENOENT.
    fn exists(&mut self, msg: u16, family: u8, attrs: &Attrs) -> Result<bool, NftError> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        message(
            &mut buf,
            nft_type(msg),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family,
            attrs,
        );
        match self.transact(&buf, &[seq], &[], false) {
            Ok(_) => Ok(true),
            Err(NftError::Refused(e)) if e == nix::libc::ENOENT => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether table `table` of `family` exists.
    pub(crate) fn table_exists(&mut self, family: u8, table: &str) -> Result<bool, NftError> {
        let mut attrs = Attrs::default();
        attrs.string(1, table);
        self.exists(NFT_MSG_GETTABLE, family, &attrs)
    }

    /// Whether chain `chain` of table `table` exists.
    pub(crate) fn chain_exists(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
    ) -> Result<bool, NftError> {
        let mut attrs = Attrs::default();
        attrs.string(1, table).string(3, chain);
        self.exists(NFT_MSG_GETCHAIN, family, &attrs)
    }

    /// Every rule of `table`: chain, handle, jump target, comment.
    pub(crate) fn rules(&mut self, family: u8, table: &str) -> Result<Vec<SavedRule>, NftError> {
        let mut attrs = Attrs::default();
        attrs.string(1, table);
        let replies = match self.dump(NFT_MSG_GETRULE, family, &attrs) {
            Ok(r) => r,
            Err(NftError::Refused(e)) if e == nix::libc::ENOENT => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(replies
            .iter()
            .filter_map(|m| SavedRule::parse(m, table))
            .collect())
    }

    /// Applies `batch` as one transaction.
    pub(crate) fn apply(&mut self, batch: &Batch) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let begin = self.next_seq();
        message(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            &Attrs::default(),
        );
        let mut acks = Vec::new();
        for (kind, flags, family, attrs) in &batch.messages {
            let seq = self.next_seq();
            message(&mut buf, *kind, *flags, seq, *family, attrs);
            acks.push(seq);
        }
        let end = self.next_seq();
        message(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            0,
            &Attrs::default(),
        );
        self.transact(&buf, &acks, &[begin, end], false).map(drop)
    }
}

/// Raises a socket's send buffer to `bytes` (forced where allowed), for a big batch.
fn grow_send_buffer(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) {
    let size = bytes.min(i32::MAX as usize);
    if setsockopt(&fd, sockopt::SndBufForce, &size).is_err() {
        let _ = setsockopt(&fd, sockopt::SndBuf, &size);
    }
}

/// The changes of one transaction.
#[derive(Default)]
pub(crate) struct Batch {
    messages: Vec<(u16, u16, u8, Attrs)>,
}

/// A base chain of an `iptables-nft` table: its hook number and priority.
pub(crate) fn base_chain(table: &str, chain: &str) -> Option<(u32, i32)> {
    match (table, chain) {
        ("nat", "PREROUTING") => Some((0, -100)),
        ("nat", "INPUT") => Some((1, 100)),
        ("nat", "OUTPUT") => Some((3, -100)),
        ("nat", "POSTROUTING") => Some((4, 100)),
        _ => None,
    }
}

impl Batch {
    fn push(&mut self, msg: u16, flags: u16, family: u8, attrs: Attrs) {
        self.messages.push((
            nft_type(msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family,
            attrs,
        ));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Creates table `table` (as `iptables-nft` does: no flags).
    pub(crate) fn new_table(&mut self, family: u8, table: &str) {
        let mut a = Attrs::default();
        a.string(1, table).be32(2, 0);
        self.push(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, family, a);
    }

    /// Creates the base chain `chain` of `table` as `iptables-nft` does: its hook and
    /// priority, type `nat`, policy accept.
    pub(crate) fn new_base_chain(&mut self, family: u8, table: &str, chain: &str) {
        let Some((hook, priority)) = base_chain(table, chain) else {
            return;
        };
        let mut h = Attrs::default();
        h.be32(1, hook).be32(2, priority as u32);
        let mut a = Attrs::default();
        a.string(1, table)
            .string(3, chain)
            .nested(4, h)
            .be32(5, NF_ACCEPT)
            .string(7, table);
        self.push(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, family, a);
    }

    /// Creates the user chain `chain` of `table`.
    pub(crate) fn new_chain(&mut self, family: u8, table: &str, chain: &str) {
        let mut a = Attrs::default();
        a.string(1, table).string(3, chain);
        self.push(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL, family, a);
    }

    /// Appends `rule` to its chain of `table`.
    pub(crate) fn append(&mut self, table: &str, rule: &Rule) {
        let v6 = rule.is_ipv6();
        let mut a = Attrs::default();
        a.string(1, table)
            .string(2, &rule.chain)
            .nested(4, expressions(rule, v6));
        if let Some(proto) = rule.protocol {
            // NFTA_RULE_COMPAT: what xtables extensions read as the rule's protocol.
            let mut compat = Attrs::default();
            compat.be32(1, u32::from(proto.number())).be32(2, 0);
            a.nested(5, compat);
        }
        // Without NLM_F_APPEND (and no position) the kernel inserts at the top.
        let flags = if rule.insert {
            NLM_F_CREATE
        } else {
            NLM_F_CREATE | NLM_F_APPEND
        };
        self.push(NFT_MSG_NEWRULE, flags, family(v6), a);
    }

    /// Deletes the rule `handle` of `chain`.
    pub(crate) fn delete_rule(&mut self, family: u8, table: &str, chain: &str, handle: u64) {
        let mut a = Attrs::default();
        a.string(1, table).string(2, chain).be64(3, handle);
        self.push(NFT_MSG_DELRULE, 0, family, a);
    }

    /// Deletes chain `chain` with its rules (refused while anything jumps to it); with
    /// `only_if_empty`, refused (EBUSY) if it has rules.
    pub(crate) fn delete_chain(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
        only_if_empty: bool,
    ) {
        let mut a = Attrs::default();
        a.string(1, table).string(3, chain);
        let flags = if only_if_empty { NLM_F_NONREC } else { 0 };
        self.push(NFT_MSG_DELCHAIN, flags, family, a);
    }

    /// Deletes table `table`, refused (EBUSY) if it has any chain.
    pub(crate) fn delete_empty_table(&mut self, family: u8, table: &str) {
        let mut a = Attrs::default();
        a.string(1, table);
        self.push(NFT_MSG_DELTABLE, NLM_F_NONREC, family, a);
    }
}

impl Batch {
    /// Creates bridge-family table `table` with a `forward` base chain that drops ICMPv6
    /// messages of the given `types` forwarded from a port in link group `group` to another.
    pub(crate) fn new_port_group_filter(&mut self, table: &str, group: u32, types: &[u8]) {
        const CHAIN: &str = "forward";
        self.new_table(NFPROTO_BRIDGE, table);
        let mut h = Attrs::default();
        h.be32(1, NF_BR_FORWARD)
            .be32(2, NF_BR_PRI_FILTER_BRIDGED as u32);
        let mut c = Attrs::default();
        c.string(1, table)
            .string(3, CHAIN)
            .nested(4, h)
            .be32(5, NF_ACCEPT)
            .string(7, "filter");
        self.push(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE | NLM_F_EXCL,
            NFPROTO_BRIDGE,
            c,
        );
        for &kind in types {
            let mut list = Attrs::default();
            // The meta keys' register holds the group in host byte order.
            meta(&mut list, NFT_META_IIFGROUP);
            cmp(&mut list, false, &group.to_ne_bytes());
            meta(&mut list, NFT_META_OIFGROUP);
            cmp(&mut list, false, &group.to_ne_bytes());
            meta(&mut list, NFT_META_L4PROTO);
            cmp(&mut list, false, &[IPPROTO_ICMPV6]);
            payload(&mut list, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
            cmp(&mut list, false, &[kind]);
            // What it dropped shows in `nft list table bridge ...`.
            let mut counter = Attrs::default();
            counter.be64(1, 0).be64(2, 0);
            expr(&mut list, "counter", counter);
            let mut verdict = Attrs::default();
            verdict.be32(1, NF_DROP);
            let mut data = Attrs::default();
            data.nested(2, verdict);
            let mut i = Attrs::default();
            i.be32(1, NFT_REG_VERDICT).nested(2, data);
            expr(&mut list, "immediate", i);
            let mut a = Attrs::default();
            a.string(1, table).string(2, CHAIN).nested(4, list);
            self.push(
                NFT_MSG_NEWRULE,
                NLM_F_CREATE | NLM_F_APPEND,
                NFPROTO_BRIDGE,
                a,
            );
        }
    }

    /// Deletes table `table` with everything in it.
    pub(crate) fn delete_table(&mut self, family: u8, table: &str) {
        let mut a = Attrs::default();
        a.string(1, table);
        self.push(NFT_MSG_DELTABLE, 0, family, a);
    }
}

impl Socket {
    /// The names of every table of `family`.
    pub(crate) fn tables(&mut self, family: u8) -> Result<Vec<String>, NftError> {
        let replies = self.dump(NFT_MSG_GETTABLE, family, &Attrs::default())?;
        Ok(replies
            .iter()
            .filter_map(|m| {
                let message = NetlinkBuffer::new_checked(&m[..]).ok()?;
                // After the `nfgenmsg` (4 bytes): NFTA_TABLE_NAME is attribute 1.
                let attrs = message.payload().get(4..)?;
                attributes(attrs)
                    .into_iter()
                    .find(|(kind, _)| *kind == 1)
                    .map(|(_, v)| c_string(v))
            })
            .collect())
    }
}

/// A rule as a dump shows it: enough to find what belongs to whom.
#[derive(Debug, Clone)]
pub(crate) struct SavedRule {
    pub(crate) chain: String,
    pub(crate) handle: u64,
    /// The chain it jumps to, if its verdict is a jump.
    pub(crate) jump: Option<String>,
    /// Its `-m comment` text.
    pub(crate) comment: Option<String>,
}

/// The attributes of a netlink attribute list: (kind without flags, payload).
fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    out
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl SavedRule {
    fn parse(message: &[u8], table: &str) -> Option<SavedRule> {
        let buf = NetlinkBuffer::new_checked(message).ok()?;
        let payload = buf.payload().get(4..)?;
        let mut rule = SavedRule {
            chain: String::new(),
            handle: 0,
            jump: None,
            comment: None,
        };
        let mut in_table = false;
        for (kind, data) in attributes(payload) {
            match kind {
                1 => in_table = c_string(data) == table,
                2 => rule.chain = c_string(data),
                3 => rule.handle = u64::from_be_bytes(data.get(..8)?.try_into().ok()?),
                4 => {
                    for (_, elem) in attributes(data) {
                        let elem = attributes(elem);
                        let name = elem
                            .iter()
                            .find(|(k, _)| *k == 1)
                            .map(|(_, d)| c_string(d))
                            .unwrap_or_default();
                        let Some((_, body)) = elem.iter().find(|(k, _)| *k == 2) else {
                            continue;
                        };
                        let body = attributes(body);
                        let get = |k: u16| body.iter().find(|(kk, _)| *kk == k).map(|(_, d)| *d);
                        match name.as_str() {
                            "match" if get(1).map(c_string).as_deref() == Some("comment") => {
                                rule.comment = get(3).map(c_string);
                            }
                            "immediate" => {
                                // NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { CODE, CHAIN } }
                                let verdict = get(2)
                                    .map(attributes)
                                    .and_then(|d| d.into_iter().find(|(k, _)| *k == 2))
                                    .map(|(_, v)| attributes(v));
                                if let Some(v) = verdict {
                                    rule.jump =
                                        v.iter().find(|(k, _)| *k == 2).map(|(_, c)| c_string(c));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        (in_table && !rule.chain.is_empty()).then_some(rule)
    }
}
