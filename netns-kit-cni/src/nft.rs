//! The masquerade rules written straight to nf_tables over netlink, as `iptables-nft` writes
//! them — one batch, no `iptables-restore` process (which costs a node ~2.5 ms per ADD, most of
//! it reading back the whole ruleset before it changes anything).
//!
//! The rules must stay `iptables` rules: `iptables-save` shows them, and the reference plugin's
//! `iptables -D` removes them. `iptables-nft` reads a rule back by parsing its expressions, so
//! these are built exactly as `iptables-nft` 1.8 builds them (`nft --debug=netlink` shows the
//! same): the address as a `payload` load of the bytes its prefix covers (`bitwise` with the
//! mask when the prefix is not a whole number of bytes) and a `cmp`; the comment as the xtables
//! `comment` match (revision 0, a 256-byte `xt_comment_info`); a `counter`; then an
//! `immediate` verdict (`accept`, `jump CHAIN`) or the xtables `MASQUERADE` target
//! (revision 0, with one empty range). `tests/cni.rs` compares `iptables-save` of these with
//! the reference's and has the reference delete them.
//!
//! It is used only where it is sure to be right: when `iptables` in `PATH` is the nf_tables
//! variant, and the `nat` table with its `POSTROUTING` chain already exists (made by
//! `iptables-nft` itself, with its base chains, the first time anything used it). Otherwise —
//! and on any refusal — the caller falls back to `iptables-restore`. The batch is one
//! transaction: either every rule is in place or none is.

use std::{net::IpAddr, os::fd::AsRawFd, path::Path};

use netlink_packet_core::{DefaultNla, Emitable, ErrorBuffer, NetlinkBuffer};
use netns_kit::ipnetwork::IpNetwork;
use nix::sys::{
    socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
        setsockopt, socket, sockopt,
    },
    time::TimeVal,
};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NETLINK_HEADER_LEN: usize = 16;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_REG_1: u32 = 1;
const NFT_REG_VERDICT: u32 = 0;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: u32 = (-3i32) as u32;
/// `XT_MAX_COMMENT_LEN`: the size of `xt_comment_info`.
const COMMENT_LEN: usize = 256;

/// What a rule matches: the source or destination address within `net`, or not.
#[derive(Debug, Clone, Copy)]
pub struct AddressMatch {
    pub source: bool,
    pub net: IpNetwork,
    pub negate: bool,
}

/// What a rule does.
#[derive(Debug, Clone)]
pub enum Verdict {
    Accept,
    Jump(String),
    Masquerade,
}

/// One rule, appended to `chain` of the `nat` table.
#[derive(Debug, Clone)]
pub struct Rule {
    pub chain: String,
    pub address: AddressMatch,
    pub comment: String,
    pub verdict: Verdict,
}

/// Whether the `iptables` a runtime's tools run is the nf_tables variant: the link chain from
/// `PATH` (`iptables` -> `/etc/alternatives/iptables` -> `xtables-nft-multi`) says so.
pub fn iptables_is_nft() -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    let Some(found) = std::env::split_paths(&path)
        .map(|d| d.join("iptables"))
        .find(|p| p.exists())
    else {
        return false;
    };
    let mut current = found;
    for _ in 0..8 {
        let name = current
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains("nft") {
            return true;
        }
        if name.contains("legacy") {
            return false;
        }
        match std::fs::read_link(&current) {
            Ok(next) => {
                current = if next.is_absolute() {
                    next
                } else {
                    current
                        .parent()
                        .unwrap_or_else(|| Path::new("/"))
                        .join(next)
                };
            }
            Err(_) => return false,
        }
    }
    false
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

/// The expressions of `rule`, as `iptables-nft` makes them.
fn expressions(rule: &Rule) -> Attrs {
    let mut list = Attrs::default();
    let a = rule.address;
    let v6 = a.net.is_ipv6();
    let offset = match (v6, a.source) {
        (false, true) => 12,
        (false, false) => 16,
        (true, true) => 8,
        (true, false) => 24,
    };
    let addr = address_bytes(a.net.network());
    let mask = address_bytes(a.net.mask());
    // iptables' add_addr(): the leading whole 0xff bytes of the mask, unless a partial byte
    // follows, in which case the full address with a bitwise mask.
    let whole = mask.iter().take_while(|b| **b == 0xff).count();
    let bitwise = mask[whole..].iter().any(|b| *b != 0);
    let len = if bitwise { mask.len() } else { whole };
    let mut p = Attrs::default();
    p.be32(1, NFT_REG_1)
        .be32(2, NFT_PAYLOAD_NETWORK_HEADER)
        .be32(3, offset)
        .be32(4, len as u32);
    expr(&mut list, "payload", p);
    if bitwise {
        let mut b = Attrs::default();
        b.be32(1, NFT_REG_1).be32(2, NFT_REG_1).be32(3, len as u32);
        data_value(4, &mask[..len], &mut b);
        data_value(5, &vec![0u8; len], &mut b);
        expr(&mut list, "bitwise", b);
    }
    let mut c = Attrs::default();
    c.be32(1, NFT_REG_1)
        .be32(2, if a.negate { NFT_CMP_NEQ } else { NFT_CMP_EQ });
    data_value(3, &addr[..len], &mut c);
    expr(&mut list, "cmp", c);

    let mut info = vec![0u8; COMMENT_LEN];
    info[..rule.comment.len()].copy_from_slice(rule.comment.as_bytes());
    let mut m = Attrs::default();
    m.string(1, "comment").be32(2, 0).raw(3, &info);
    expr(&mut list, "match", m);

    let mut counter = Attrs::default();
    counter.be64(1, 0).be64(2, 0);
    expr(&mut list, "counter", counter);

    match &rule.verdict {
        Verdict::Accept | Verdict::Jump(_) => {
            let mut verdict = Attrs::default();
            match &rule.verdict {
                Verdict::Jump(chain) => {
                    verdict.be32(1, NFT_JUMP).string(2, chain);
                }
                _ => {
                    verdict.be32(1, NF_ACCEPT);
                }
            }
            let mut data = Attrs::default();
            data.nested(2, verdict);
            let mut i = Attrs::default();
            i.be32(1, NFT_REG_VERDICT).nested(2, data);
            expr(&mut list, "immediate", i);
        }
        Verdict::Masquerade => {
            // IPv4: `nf_nat_ipv4_multi_range_compat` with rangesize 1 (20 bytes); IPv6:
            // `nf_nat_range` (40 bytes); both padded to 8 as xtables aligns them.
            let info = if v6 {
                vec![0u8; 40]
            } else {
                let mut i = vec![0u8; 24];
                i[..4].copy_from_slice(&1u32.to_ne_bytes());
                i
            };
            let mut t = Attrs::default();
            t.string(1, "MASQUERADE").be32(2, 0).raw(3, &info);
            expr(&mut list, "target", t);
        }
    }
    list
}

/// A netlink message: header, `nfgenmsg`, attributes.
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &Attrs,
) {
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

/// Why the rules were not written here (the caller then uses `iptables-restore`).
#[derive(Debug)]
pub enum NotWritten {
    /// Not this path's case: no `nat` table or `POSTROUTING` chain yet, a comment too long for
    /// the match, the chain already there.
    Unsuitable,
    /// The kernel refused, with this errno.
    Refused(i32),
    /// No answer came in time after the batch was sent: it may or may not be in place, so
    /// writing the rules another way could duplicate them.
    Uncertain,
}

/// How long to wait for the kernel's answers, per receive: the batch is small and the kernel
/// answers at once, so this only bounds a wait that would otherwise have no end.
const RECEIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `buf` and reads the answers to the sequence numbers in `acks`; the first error.
fn transact(buf: &[u8], acks: &[u32]) -> Result<Vec<Vec<u8>>, NotWritten> {
    let refused = |e: nix::Error| NotWritten::Refused(e as i32);
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(refused)?;
    let timeout = TimeVal::new(RECEIVE_TIMEOUT.as_secs() as _, 0);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(refused)?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(refused)?;
    send(fd.as_raw_fd(), buf, MsgFlags::empty()).map_err(refused)?;
    let mut pending: Vec<u32> = acks.to_vec();
    let mut replies = Vec::new();
    let mut first_error = None;
    let mut rbuf = vec![0u8; 65536];
    while !pending.is_empty() {
        // A timeout (EAGAIN) after the batch went out leaves its outcome unknown.
        let n = recv(fd.as_raw_fd(), &mut rbuf, MsgFlags::empty()).map_err(|e| match e {
            nix::Error::EAGAIN => NotWritten::Uncertain,
            e => refused(e),
        })?;
        let mut rest = &rbuf[..n];
        while let Ok(message) = NetlinkBuffer::new_checked(rest) {
            let len = message.length() as usize;
            if message.message_type() == NLMSG_ERROR {
                if let Ok(error) = ErrorBuffer::new_checked(message.payload()) {
                    if let Some(code) = error.code() {
                        first_error.get_or_insert(-code.get());
                    }
                }
                pending.retain(|s| *s != message.sequence_number());
            } else {
                replies.push(rest[..len].to_vec());
            }
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        }
        if first_error.is_some() {
            break;
        }
    }
    match first_error {
        Some(errno) => Err(NotWritten::Refused(errno)),
        None => Ok(replies),
    }
}

/// Whether `chain` exists in table `nat` of `family`.
fn chain_exists(family: u8, chain: &str) -> Result<bool, NotWritten> {
    let mut attrs = Attrs::default();
    attrs.string(1, "nat").string(3, chain);
    let mut buf = Vec::new();
    message(
        &mut buf,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN,
        NLM_F_REQUEST | NLM_F_ACK,
        1,
        family,
        0,
        &attrs,
    );
    match transact(&buf, &[1]) {
        Ok(_) => Ok(true),
        Err(NotWritten::Refused(e)) if e == nix::libc::ENOENT => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates user chain `chain` in table `nat` and appends `rules`, in one transaction, for the
/// family of the rules' addresses.
pub fn write(chain: &str, rules: &[Rule]) -> Result<(), NotWritten> {
    let Some(first) = rules.first() else {
        return Ok(());
    };
    let family = if first.address.net.is_ipv6() {
        NFPROTO_IPV6
    } else {
        NFPROTO_IPV4
    };
    if rules.iter().any(|r| r.comment.len() >= COMMENT_LEN) {
        return Err(NotWritten::Unsuitable);
    }
    if !chain_exists(family, "POSTROUTING")? || chain_exists(family, chain)? {
        return Err(NotWritten::Unsuitable);
    }
    let mut buf = Vec::new();
    let mut seq = 1;
    let mut acks = Vec::new();
    message(
        &mut buf,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &Attrs::default(),
    );
    seq += 1;
    let mut c = Attrs::default();
    c.string(1, "nat").string(3, chain);
    message(
        &mut buf,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        family,
        0,
        &c,
    );
    acks.push(seq);
    for rule in rules {
        seq += 1;
        let mut r = Attrs::default();
        r.string(1, "nat")
            .string(2, &rule.chain)
            .nested(4, expressions(rule));
        message(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
            seq,
            family,
            0,
            &r,
        );
        acks.push(seq);
    }
    seq += 1;
    message(
        &mut buf,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &Attrs::default(),
    );
    transact(&buf, &acks).map(drop)
}
