//! What a link is, as values: [`MacAddr`], [`OperState`] and [`LinkInfo`] snapshots.

use crate::error::{Error, Result};
use netlink_packet_route::link::{
    LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, State,
};
use std::{fmt, str::FromStr};

/// An Ethernet (MAC) address.
///
/// # Examples
///
/// ```
/// use netns_kit::MacAddr;
///
/// let mac: MacAddr = "02:00:00:00:00:01".parse()?;
/// assert_eq!(mac.to_string(), "02:00:00:00:00:01");
/// assert!(mac.is_locally_administered());
/// # Ok::<(), netns_kit::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether the address is unicast and locally administered (the kind to pick by hand:
    /// first byte `x2`, `x6`, `xA` or `xE`).
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0 && self.0[0] & 0x01 == 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
    fn from_str(s: &str) -> Result<MacAddr> {
        let bad = || {
            Error::invalid(
                format!("MAC address {s:?}"),
                "expected six hex bytes like 02:00:00:00:00:01",
            )
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

/// A random locally administered unicast MAC address (`02:…`).
pub(crate) fn random_mac() -> MacAddr {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS per process; the serial makes calls differ.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SERIAL.fetch_add(1, Ordering::Relaxed));
    let bits = h.finish().to_le_bytes();
    MacAddr([0x02, bits[0], bits[1], bits[2], bits[3], bits[4]])
}

/// The operational state of a link (RFC 2863), as `ip link` shows it.
///
/// # Examples
///
/// ```
/// use netns_kit::OperState;
///
/// fn ready(state: OperState) -> bool {
///     // `lo` reports UNKNOWN: it has no carrier to lose.
///     matches!(state, OperState::Up | OperState::Unknown)
/// }
/// assert!(ready(OperState::Up));
/// assert!(!ready(OperState::LowerLayerDown));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperState {
    /// `UP`: ready to pass packets.
    Up,
    /// `DOWN`.
    Down,
    /// `LOWERLAYERDOWN`: e.g. a veth whose peer is down.
    LowerLayerDown,
    /// `UNKNOWN`: e.g. `lo`, which has no carrier notion.
    Unknown,
    /// Any other state.
    Other,
}

/// A snapshot of one link, as `ip -d link show` would report it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// let ns = netns_kit::Namespace::new().await?;
/// let lo = ns.link_by_name("lo").await?.info().await?;
/// assert!(lo.up);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkInfo {
    /// The ifindex.
    pub index: u32,
    /// The name.
    pub name: String,
    /// The link kind (`"veth"`, `"bridge"`, ...); `None` for kindless links such as `lo`.
    pub kind: Option<String>,
    /// Administratively up (`IFF_UP`, what `ip link set up` sets).
    pub up: bool,
    /// Operational state.
    pub oper_state: OperState,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address, for Ethernet-like links.
    pub mac: Option<MacAddr>,
    /// The ifindex of the controller (the bridge it is a port of), if any.
    pub controller: Option<u32>,
    /// The alias (`ip link set NAME alias TEXT`), if set.
    pub alias: Option<String>,
    /// The link group (`ip link set NAME group N`; 0 is the default group).
    pub group: u32,
    /// The transmit queue length (`qlen` in `ip link`).
    pub txqlen: Option<u32>,
    /// The ifindex of the link this one is tied to (`IFLA_LINK`: a veth's peer, a macvlan's or
    /// VXLAN's lower link), which may be in another namespace (`veth0@if7` in `ip link`).
    pub link: Option<u32>,
}

impl LinkInfo {
    pub(crate) fn from_message(msg: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            oper_state: OperState::Other,
            mtu: None,
            mac: None,
            controller: None,
            alias: None,
            group: 0,
            txqlen: None,
            link: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => info.name = n.clone(),
                LinkAttribute::Mtu(m) => info.mtu = Some(*m),
                LinkAttribute::Address(a) if a.len() == 6 => {
                    let mut b = [0u8; 6];
                    b.copy_from_slice(a);
                    info.mac = Some(MacAddr(b));
                }
                LinkAttribute::Controller(c) => info.controller = Some(*c),
                LinkAttribute::IfAlias(a) => info.alias = Some(a.clone()),
                LinkAttribute::Group(g) => info.group = *g,
                LinkAttribute::TxQueueLen(q) => info.txqlen = Some(*q),
                LinkAttribute::Link(l) => info.link = Some(*l),
                LinkAttribute::OperState(s) => {
                    info.oper_state = match s {
                        State::Up => OperState::Up,
                        State::Down => OperState::Down,
                        State::LowerLayerDown => OperState::LowerLayerDown,
                        State::Unknown => OperState::Unknown,
                        _ => OperState::Other,
                    }
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let NlLinkInfo::Kind(kind) = i {
                            info.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }
}

pub(crate) fn check_mac(mac: &MacAddr, label: impl FnOnce() -> String) -> Result<()> {
    if mac.0[0] & 0x01 != 0 {
        return Err(Error::invalid(
            label(),
            format!("MAC address {mac} is a multicast address"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "02:AB:cd:00:0f:1".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:cd:00:0f:01");
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("zz:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02-00-00-00-00-01".parse::<MacAddr>().is_ok());
        assert!(check_mac(&MacAddr([1, 0, 0, 0, 0, 0]), || "x".into()).is_err());
    }
}
