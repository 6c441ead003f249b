//! Links (network interfaces): the [`Link`] handle with the operations common to every kind,
//! [`LinkInfo`] snapshots, lookups, and the [`VethPair`](crate::VethPair) and
//! [`Bridge`](crate::Bridge) guards.
//!
//! A [`Link`] is identified by its namespace and **ifindex**, not by its name: a name can be
//! reused by someone else after the link is gone, an ifindex is allocated cyclically by the
//! kernel. Lookups by name are a single `RTM_GETLINK` carrying `IFLA_IFNAME`, answered directly
//! by the kernel; nothing here dumps every link of a namespace except [`Namespace::links`], which
//! exists to list them.

pub(crate) mod bridge;
pub(crate) mod veth;

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, State},
};
use rtnetlink::LinkUnspec;

use crate::{
    error::{Error, Result},
    name::IfName,
    netlink::{KernelError, Nl},
    netns::{BLOCKING_TIMEOUT, Namespace, NsInner},
};

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

/// The operational state of a link (RFC 2863), as `ip link` shows it.
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
/// let lo = ns.link("lo").await?.info().await?;
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

/// A handle to an existing link in some namespace: what the operations common to every kind of
/// link (up/down, MTU, MAC, controller, addresses, delete) act on.
///
/// A `Link` does not own the link: dropping it deletes nothing. The guards that do own links
/// ([`VethPair`](crate::VethPair), [`Bridge`](crate::Bridge)) hand out `&Link`s. A `Link` keeps
/// its namespace alive while it exists.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// let ns = netns_kit::Namespace::new().await?;
/// let lo = ns.link("lo").await?;
/// lo.set_mtu(9000).await?;
/// assert_eq!(lo.info().await?.mtu, Some(9000));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Link {
    ns: Arc<NsInner>,
    index: u32,
    name: IfName,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("name", &self.name.as_str())
            .field("index", &self.index)
            .field("namespace", &self.ns.label())
            .finish()
    }
}

fn set_link(
    index: u32,
    f: impl FnOnce(
        rtnetlink::LinkMessageBuilder<LinkUnspec>,
    ) -> rtnetlink::LinkMessageBuilder<LinkUnspec>,
) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(f(LinkUnspec::new_with_index(index)).build())
}

pub(crate) fn del_link_message(index: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build())
}

/// Deletes link `index` in `ns` over the async connection; "already gone" is success.
pub(crate) async fn delete_link(
    ns: &NsInner,
    index: u32,
    label: impl FnOnce() -> String,
) -> Result<()> {
    let nl = ns.nl().await?;
    match nl.send(del_link_message(index), 0).ack().await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into_error("delete", label())),
    }
}

/// Deletes link `index` in `ns` over a blocking socket (for `Drop`); "already gone" is success.
pub(crate) fn delete_link_blocking(
    ns: &NsInner,
    index: u32,
    label: impl FnOnce() -> String,
) -> Result<()> {
    blocking_one(
        ns,
        del_link_message(index),
        BLOCKING_TIMEOUT,
        "delete",
        label,
    )
}

/// Sends one request over a blocking socket in `ns`; "already gone" is success.
pub(crate) fn blocking_one(
    ns: &NsInner,
    msg: RouteNetlinkMessage,
    timeout: Duration,
    op: &'static str,
    label: impl FnOnce() -> String,
) -> Result<()> {
    match ns.blocking_acks(vec![(msg, 0)], timeout) {
        Err(e) => Err(Error::os(op, label(), e)),
        Ok(answers) => match answers.into_iter().next() {
            Some(Err(e)) if !e.is_not_found() => Err(e.into_error(op, label())),
            _ => Ok(()),
        },
    }
}

/// Looks up a link by name with one direct `RTM_GETLINK` (no dump).
pub(crate) async fn get_by_name(
    nl: &Nl,
    name: &str,
) -> std::result::Result<LinkMessage, KernelError> {
    let msg = LinkUnspec::new_with_name(name).build();
    first_link(
        nl.send(RouteNetlinkMessage::GetLink(msg), 0)
            .messages()
            .await?,
    )
}

async fn get_by_index(nl: &Nl, index: u32) -> std::result::Result<LinkMessage, KernelError> {
    let msg = LinkUnspec::new_with_index(index).build();
    first_link(
        nl.send(RouteNetlinkMessage::GetLink(msg), 0)
            .messages()
            .await?,
    )
}

fn first_link(messages: Vec<RouteNetlinkMessage>) -> std::result::Result<LinkMessage, KernelError> {
    messages
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .ok_or(KernelError {
            errno: nix::libc::ENODEV,
            detail: None,
        })
}

pub(crate) fn link_name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

impl Link {
    pub(crate) fn new(ns: Arc<NsInner>, index: u32, name: IfName) -> Link {
        Link { ns, index, name }
    }

    pub(crate) fn ns(&self) -> &Arc<NsInner> {
        &self.ns
    }

    /// How errors name this link, e.g. `interface "veth0" in namespace "ns1"`.
    pub fn label(&self) -> String {
        format!("interface {:?} in {}", self.name.as_str(), self.ns.label())
    }

    /// The ifindex.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The name the link had when this handle was made.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Whether this link lives in `ns`.
    pub fn is_in(&self, ns: &Namespace) -> bool {
        Arc::ptr_eq(&self.ns, ns.inner()) || self.ns.id() == ns.inner().id()
    }

    pub(crate) fn same_ns(&self, other: &Link) -> bool {
        self.ns.id() == other.ns.id()
    }

    async fn set(&self, op: &'static str, msg: RouteNetlinkMessage) -> Result<()> {
        let nl = self.ns.nl().await?;
        nl.send(msg, 0)
            .ack()
            .await
            .map_err(|e| e.into_error(op, self.label()))
    }

    /// A fresh snapshot of the link.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the link is gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// println!("{:?}", link.info().await?.oper_state);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link show")]
    pub async fn info(&self) -> Result<LinkInfo> {
        let nl = self.ns.nl().await?;
        let msg = get_by_index(&nl, self.index)
            .await
            .map_err(|e| e.into_error("look up", self.label()))?;
        Ok(LinkInfo::from_message(&msg))
    }

    /// Brings the link up, like `ip link set NAME up`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the link is gone; [`Error::PermissionDenied`] without
    /// `CAP_NET_ADMIN`.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the request is sent and carried out even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// link.set_up().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link set up")]
    pub async fn set_up(&self) -> Result<()> {
        self.set("bring up", set_link(self.index, |b| b.up())).await
    }

    /// Takes the link down, like `ip link set NAME down`.
    ///
    /// # Errors
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// link.set_down().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link set down")]
    pub async fn set_down(&self) -> Result<()> {
        self.set("take down", set_link(self.index, |b| b.down()))
            .await
    }

    /// Sets the MTU, like `ip link set NAME mtu N`.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] (`EINVAL`) if the link does not support that MTU, and as for
    /// [`set_up`](Link::set_up).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// link.set_mtu(1400).await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link set mtu")]
    pub async fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.set("set the MTU of", set_link(self.index, |b| b.mtu(mtu)))
            .await
    }

    /// Sets the hardware address, like `ip link set NAME address MAC`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a multicast MAC address; otherwise as for
    /// [`set_up`](Link::set_up).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// link.set_mac("02:00:00:00:00:01".parse()?).await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link set address")]
    pub async fn set_mac(&self, mac: MacAddr) -> Result<()> {
        check_mac(&mac, || self.label())?;
        self.set(
            "set the MAC address of",
            set_link(self.index, |b| b.address(mac.0.to_vec())),
        )
        .await
    }

    /// Makes this link a port of `controller` (a bridge), like
    /// `ip link set NAME master BRIDGE`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if the two links are in different namespaces; the kernel's
    /// refusal otherwise (e.g. `EBUSY` if it already has a controller, or `ELOOP`).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(port: netns_kit::Link, bridge: netns_kit::Link) -> netns_kit::Result<()> {
    /// port.set_controller(&bridge).await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link set master")]
    pub async fn set_controller(&self, controller: &Link) -> Result<()> {
        if !self.same_ns(controller) {
            return Err(Error::invalid(
                self.label(),
                format!(
                    "cannot attach it to {}: a port must be in its bridge's namespace",
                    controller.label()
                ),
            ));
        }
        let index = controller.index;
        self.set("attach", set_link(self.index, |b| b.controller(index)))
            .await
            .map_err(|e| match e {
                Error::NotFound { .. } => Error::invalid(
                    self.label(),
                    format!("{} or the link itself no longer exists", controller.label()),
                ),
                e => e,
            })
    }

    /// Detaches the link from its controller, like `ip link set NAME nomaster`.
    ///
    /// # Errors
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(port: netns_kit::Link) -> netns_kit::Result<()> {
    /// port.set_no_controller().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link set nomaster")]
    pub async fn set_no_controller(&self) -> Result<()> {
        self.set("detach", set_link(self.index, |b| b.nocontroller()))
            .await
    }

    /// Deletes the link, like `ip link del NAME` (deleting a veth end deletes its peer). A link
    /// that is already gone counts as deleted.
    ///
    /// This acts on any link, including ones this crate did not create; a guard's own
    /// `delete` is usually what you want.
    ///
    /// # Errors
    ///
    /// The kernel's refusal, e.g. [`Error::PermissionDenied`] or `EOPNOTSUPP` for `lo`.
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// link.delete().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link del")]
    pub async fn delete(self) -> Result<()> {
        delete_link(&self.ns, self.index, || self.label()).await
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

impl Namespace {
    /// Looks up the link called `name` in this namespace (one direct request, no dump).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad name; [`Error::NotFound`] if there is no such link.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// assert_eq!(ns.link("lo").await?.index(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn link(&self, name: &str) -> Result<Link> {
        let name = IfName::new(name)?;
        let nl = self.inner().nl().await?;
        let msg = get_by_name(&nl, name.as_str()).await.map_err(|e| {
            e.into_error(
                "look up",
                format!("interface {:?} in {}", name.as_str(), self.label()),
            )
        })?;
        Ok(Link::new(self.inner().clone(), msg.header.index, name))
    }

    /// Looks up the link with ifindex `index` in this namespace.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such link.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// assert_eq!(ns.link_by_index(1).await?.name(), "lo");
    /// # Ok(()) }
    /// ```
    pub async fn link_by_index(&self, index: u32) -> Result<Link> {
        let nl = self.inner().nl().await?;
        let msg = get_by_index(&nl, index).await.map_err(|e| {
            e.into_error("look up", format!("interface #{index} in {}", self.label()))
        })?;
        let name = IfName::new(link_name(&msg).unwrap_or_default())?;
        Ok(Link::new(self.inner().clone(), index, name))
    }

    /// Lists every link of this namespace (one dump), like `ip link show`.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the dump fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let names: Vec<_> = ns.links().await?.into_iter().map(|l| l.name).collect();
    /// assert_eq!(names, ["lo"]);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link show")]
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        dump_links(self.inner()).await
    }
}

/// Lists every link of `ns` (one dump).
pub(crate) async fn dump_links(ns: &NsInner) -> Result<Vec<LinkInfo>> {
    let nl = ns.nl().await?;
    let msgs = nl
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .messages()
        .await
        .map_err(|e| e.into_error("list the links of", ns.label()))?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(LinkInfo::from_message(l)),
            _ => None,
        })
        .collect())
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
