//! The [`Link`] handle: a link known by namespace and ifindex, with the operations common to
//! every kind of link, and its deletion.

use super::info::{LinkInfo, MacAddr, check_mac};
use crate::{
    error::{Error, Result},
    name::IfName,
    netlink::msg::{del_link, set_link},
    netns::{Namespace, NsInner},
};
use netlink_packet_route::RouteNetlinkMessage;
use std::{fmt, sync::Arc};

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
/// let lo = ns.link_by_name("lo").await?;
/// lo.set_mtu(9000).await?;
/// assert_eq!(lo.info().await?.mtu, Some(9000));
/// # Ok(()) }
/// ```
pub struct Link {
    ns: Arc<NsInner>,
    index: u32,
    name: IfName,
}

impl Clone for Link {
    /// A second handle to the same link. It keeps the namespace alive as long as it exists,
    /// which this crate takes into account: guards of objects in that namespace then always
    /// delete them explicitly.
    fn clone(&self) -> Link {
        self.ns.mark_escaped();
        self.dup()
    }
}

impl fmt::Display for Link {
    /// How errors name the link, e.g. `interface "veth0" in namespace "ns1"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interface {:?} in {}",
            self.name.as_str(),
            self.ns.label()
        )
    }
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

/// Deletes link `index` in `ns`; "already gone" is success.
pub(crate) async fn delete_link(
    ns: &NsInner,
    index: u32,
    label: impl FnOnce() -> String,
) -> Result<()> {
    let nl = ns.nl().await?;
    match nl.send(del_link(index), 0).ack().await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into_error("delete", label())),
    }
}

/// Deletes link `index` in `ns` from synchronous code (for `Drop`); "already gone" is success.
pub(crate) fn delete_link_blocking(
    ns: &NsInner,
    index: u32,
    label: impl FnOnce() -> String,
) -> Result<()> {
    ns.blocking_one(del_link(index), "delete", label)
}

/// The label errors use for an address on a link.
pub(crate) fn address_label(net: &ipnetwork::IpNetwork, link: &Link) -> String {
    format!("address {net} on {}", link.label())
}

impl Link {
    pub(crate) fn new(ns: Arc<NsInner>, index: u32, name: IfName) -> Link {
        Link { ns, index, name }
    }

    /// A copy for this crate's own bookkeeping (a guard's), which does not count as handed out.
    pub(crate) fn dup(&self) -> Link {
        Link {
            ns: self.ns.clone(),
            index: self.index,
            name: self.name.clone(),
        }
    }

    /// This handle, given to the caller: it may keep the namespace alive (see `Clone`).
    pub(crate) fn handed_out(self) -> Link {
        self.ns.mark_escaped();
        self
    }

    pub(crate) fn ns(&self) -> &Arc<NsInner> {
        &self.ns
    }

    /// How errors name this link (its `Display`).
    pub(crate) fn label(&self) -> String {
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
    #[doc(alias = "ip link show")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn info(&self) -> Result<LinkInfo> {
        let nl = self.ns.nl().await?;
        let msg = nl
            .link(self.index)
            .await
            .map_err(|e| e.into_error("look up", self.label()))?;
        Ok(LinkInfo::from_message(&msg))
    }

    /// The blocking form of [`info`](Self::info): the same work, checks and errors, on the calling
    /// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
    /// it from async code.
    pub fn info_blocking(&self) -> Result<LinkInfo> {
        crate::netlink::block_on(self.info())
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_up(&self) -> Result<()> {
        self.set("bring up", set_link(self.index, |b| b.up())).await
    }

    /// The blocking form of [`set_up`](Self::set_up): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn set_up_blocking(&self) -> Result<()> {
        crate::netlink::block_on(self.set_up())
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
    #[doc(alias = "ip link set down")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_down(&self) -> Result<()> {
        self.set("take down", set_link(self.index, |b| b.down()))
            .await
    }

    /// The blocking form of [`set_down`](Self::set_down): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn set_down_blocking(&self) -> Result<()> {
        crate::netlink::block_on(self.set_down())
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
    #[doc(alias = "ip link set mtu")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.set("set the MTU of", set_link(self.index, |b| b.mtu(mtu)))
            .await
    }

    /// The blocking form of [`set_mtu`](Self::set_mtu): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn set_mtu_blocking(&self, mtu: u32) -> Result<()> {
        crate::netlink::block_on(self.set_mtu(mtu))
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
    #[doc(alias = "ip link set address")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_mac(&self, mac: MacAddr) -> Result<()> {
        check_mac(&mac, || self.label())?;
        self.set(
            "set the MAC address of",
            set_link(self.index, |b| b.address(mac.0.to_vec())),
        )
        .await
    }

    /// The blocking form of [`set_mac`](Self::set_mac): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn set_mac_blocking(&self, mac: MacAddr) -> Result<()> {
        crate::netlink::block_on(self.set_mac(mac))
    }

    /// Turns promiscuous mode on or off, like `ip link set NAME promisc on|off`.
    ///
    /// # Errors
    ///
    /// As for [`set_up`](Link::set_up).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    #[doc(alias = "ip link set promisc")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_promisc(&self, on: bool) -> Result<()> {
        self.set(
            "set promiscuous mode of",
            set_link(self.index, |b| b.promiscuous(on)),
        )
        .await
    }

    /// The blocking form of [`set_promisc`](Self::set_promisc): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn set_promisc_blocking(&self, on: bool) -> Result<()> {
        crate::netlink::block_on(self.set_promisc(on))
    }

    /// Turns hairpin mode of this bridge port on or off, like
    /// `ip link set NAME type bridge_slave hairpin on|off` (`bridge link set dev NAME
    /// hairpin on`): the bridge may then send a frame back out of the port it came in by,
    /// so a container can reach itself through a service address.
    ///
    /// # Errors
    ///
    /// The kernel's refusal if the link is not a bridge port; otherwise as for
    /// [`set_up`](Link::set_up).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    #[doc(alias = "bridge link set hairpin")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_hairpin(&self, on: bool) -> Result<()> {
        use netlink_packet_route::link::{InfoBridgePort, InfoPortData, InfoPortKind};
        // Port options travel in `RTM_NEWLINK` (on an existing link, without `NLM_F_CREATE`):
        // the kernel ignores `IFLA_LINKINFO` in `RTM_SETLINK`.
        let msg = rtnetlink::LinkUnspec::new_with_index(self.index)
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )]))
            .build();
        self.set("set hairpin mode of", RouteNetlinkMessage::NewLink(msg))
            .await
    }

    /// The blocking form of [`set_hairpin`](Self::set_hairpin): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn set_hairpin_blocking(&self, on: bool) -> Result<()> {
        crate::netlink::block_on(self.set_hairpin(on))
    }

    /// Adds VLAN `vid` to this bridge port, like `bridge vlan add dev NAME vid VID [pvid]
    /// [untagged]`: with `pvid`, untagged frames entering the port belong to `vid`; with
    /// `untagged`, frames of `vid` leave it untagged. It takes effect on a bridge with VLAN
    /// filtering on ([`BridgeBuilder::vlan_filtering`](crate::BridgeBuilder::vlan_filtering)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a VLAN id outside 1–4094, before any request; the kernel's
    /// refusal if the link is not a bridge port; otherwise as for [`set_up`](Link::set_up).
    ///
    /// # Cancel safety
    ///
    /// As for [`set_up`](Link::set_up).
    #[doc(alias = "bridge vlan add")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_bridge_vlan(&self, vid: u16, pvid: bool, untagged: bool) -> Result<()> {
        use netlink_packet_route::{
            AddressFamily,
            link::{AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute},
        };
        if !(1..=4094).contains(&vid) {
            return Err(Error::invalid(
                self.label(),
                format!("VLAN id {vid} is outside 1-4094"),
            ));
        }
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let info = BridgeVlanInfo { flags, vid };
        self.set(
            "add a VLAN to",
            set_link(self.index, |b| {
                b.interface_family(AddressFamily::Bridge)
                    .append_extra_attribute(LinkAttribute::AfSpecBridge(vec![
                        AfSpecBridge::VlanInfo(info),
                    ]))
            }),
        )
        .await
    }

    /// The blocking form of [`add_bridge_vlan`](Self::add_bridge_vlan): the same work, checks and
    /// errors, on the calling thread without an async runtime (see [the blocking
    /// API](crate#blocking-api)). Do not call it from async code.
    pub fn add_bridge_vlan_blocking(&self, vid: u16, pvid: bool, untagged: bool) -> Result<()> {
        crate::netlink::block_on(self.add_bridge_vlan(vid, pvid, untagged))
    }

    /// Makes this link a port of `controller` (a bridge), like
    /// `ip link set NAME master BRIDGE`; public as [`Bridge::add_port`](crate::Bridge::add_port).
    pub(crate) async fn set_controller(&self, controller: &Link) -> Result<()> {
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

    /// Detaches the link from its controller, like `ip link set NAME nomaster`; public as
    /// [`Bridge::remove_port`](crate::Bridge::remove_port).
    pub(crate) async fn set_no_controller(&self) -> Result<()> {
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn delete(self) -> Result<()> {
        delete_link(&self.ns, self.index, || self.label()).await
    }

    /// The blocking form of [`delete`](Self::delete): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }
}
