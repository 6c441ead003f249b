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
pub(crate) mod macvlan;
pub(crate) mod veth;
pub(crate) mod vxlan;

use std::{fmt, str::FromStr, sync::Arc};

use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, State},
};

use crate::{
    error::{Error, Result},
    name::IfName,
    netlink::{
        BLOCKING_TIMEOUT, KernelError, Nl, Reply,
        msg::{del_group, del_link, del_link_named, echoed_link, link_name, set_link},
    },
    netns::{Namespace, NsInner},
    owner,
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

/// Removes the ownership mark of link `index` in `ns` (for `keep()`, which cannot report
/// errors: they are logged).
pub(crate) fn unmark_blocking(ns: &NsInner, index: u32, label: impl FnOnce() -> String) {
    let label = label();
    if let Err(e) = ns.blocking_one(
        set_link(index, |b| b.alias(owner::UNMARKED_ALIAS)),
        "unmark",
        || label.clone(),
    ) {
        crate::trace::swallowed(&label, &e);
    }
}

/// The link group a new link is created in.
///
/// A link is created in a group of its own — a fresh tagged group (see [`owner`]) — unless a
/// composite puts it in the group it owns. That has two uses, both about the moments before the
/// link has its guard: a [`PendingLink`] whose creation request is in flight when its future is
/// dropped can delete "the links of this group" without knowing the new link's ifindex and
/// without risking a same-named link of someone else; and a process killed before the link's
/// alias mark is set leaves a link whose group names its pid, which `reap` recognises. Right
/// after creation the link is moved to its final group (the one asked for, or 0) together with
/// setting its alias mark, in one request.
#[derive(Debug)]
pub(crate) struct CreationGroup {
    group: Option<u32>,
    temporary: bool,
    final_group: Option<u32>,
}

impl CreationGroup {
    /// For a link whose final group is `requested` (`None`: the default, 0).
    pub(crate) fn temporary(requested: Option<u32>) -> CreationGroup {
        match owner::allocate_group() {
            Some(group) => CreationGroup {
                group: Some(group),
                temporary: true,
                final_group: Some(requested.unwrap_or(0)),
            },
            // Every tagged group is in use by this process: create it where it belongs.
            None => CreationGroup {
                group: requested,
                temporary: false,
                final_group: None,
            },
        }
    }

    /// For a link of a composite that owns `group`.
    pub(crate) fn owned(group: u32) -> CreationGroup {
        CreationGroup {
            group: Some(group),
            temporary: false,
            final_group: None,
        }
    }

    /// The group to put in `RTM_NEWLINK`.
    pub(crate) fn create_in(&self) -> Option<u32> {
        self.group
    }

    /// The temporary group, which holds only the new link (and its peer).
    pub(crate) fn temporary_group(&self) -> Option<u32> {
        self.group.filter(|_| self.temporary)
    }

    /// The group to move the link to once created, if it must move.
    pub(crate) fn final_group(&self) -> Option<u32> {
        self.final_group
    }
}

impl Drop for CreationGroup {
    fn drop(&mut self) {
        if let Some(group) = self.temporary_group() {
            owner::release_group(group);
        }
    }
}

/// `RTM_SETLINK` that gives a new link its ownership mark (with `txqlen` in place of the
/// creation queue length) and/or moves it to its final group.
pub(crate) fn settle_message(
    index: u32,
    mark: bool,
    group: Option<u32>,
    txqlen: u32,
) -> Option<RouteNetlinkMessage> {
    if !mark && group.is_none() {
        return None;
    }
    Some(set_link(index, |mut b| {
        if mark {
            b = b.alias(owner::marker()).txqueuelen(txqlen);
        }
        if let Some(group) = group {
            b = b.link_group(group);
        }
        b
    }))
}

/// A link just created, not yet handed to its guard: removed if the creation fails later or its
/// future is dropped — by ifindex once known; before that by its group if it is alone in one,
/// else by name.
///
/// The removal goes through `via`, the connection the creation request was sent on: requests
/// on one connection are handled in order, so the removal cannot overtake a creation request
/// still queued in user space when the creating future was dropped.
#[derive(Debug)]
pub(crate) struct PendingLink {
    pub(crate) ns: Arc<NsInner>,
    pub(crate) via: crate::netlink::Nl,
    pub(crate) name: IfName,
    pub(crate) index: Option<u32>,
    pub(crate) alone_in_group: Option<u32>,
}

impl PendingLink {
    fn message(&self) -> RouteNetlinkMessage {
        match (self.index, self.alone_in_group) {
            (Some(index), _) => del_link(index),
            (None, Some(group)) => del_group(group),
            (None, None) => del_link_named(self.name.as_str()),
        }
    }
}

impl crate::guard::Resource for PendingLink {
    const KIND: &'static str = "link";

    fn netns(&self) -> String {
        self.ns.label().to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "new interface {:?} in {}",
            self.name.as_str(),
            self.ns.label()
        )
    }

    async fn remove(&self) -> Result<()> {
        match self.via.send(self.message(), 0).ack().await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_error("roll back", self.describe())),
        }
    }

    fn remove_blocking(&self) -> Result<()> {
        match self
            .via
            .send(self.message(), 0)
            .ack_blocking(BLOCKING_TIMEOUT)
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_error("roll back", self.describe())),
        }
    }
}

/// Sends `msg` (an `RTM_NEWLINK` for link `name`) on `nl`, the connection of `ns`, and returns
/// the new link under a [`PendingLink`] guard with its ifindex: from the kernel's echo, or a
/// direct lookup.
///
/// The guard is armed before the request goes out when the link is created alone in a group
/// (`alone_in_group`): if this future is dropped while the request is in flight, the link may
/// still be created, and the group finds it. If the kernel refuses, nothing was created and
/// nothing is armed.
pub(crate) async fn create_link(
    ns: &Arc<NsInner>,
    nl: &Nl,
    name: &IfName,
    msg: LinkMessage,
    alone_in_group: Option<u32>,
    object: impl Fn() -> String,
) -> Result<(crate::guard::Guard<PendingLink>, u32)> {
    use crate::guard::Guard;
    use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
    let pending = |group| {
        Guard::new(PendingLink {
            ns: ns.clone(),
            via: nl.clone(),
            name: name.clone(),
            index: None,
            alone_in_group: group,
        })
    };
    let in_flight = alone_in_group.map(|g| pending(Some(g)));
    let created = nl
        .send(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )
        .messages()
        .await;
    let created = match created {
        Ok(created) => created,
        Err(e) if e.from_kernel => {
            // Refused: nothing was created.
            in_flight.map(Guard::into_inner);
            return Err(e.into_error("create", object()));
        }
        Err(e) => {
            // The answer was lost: the link may exist. Its group finds it, if it has one.
            let e = e.into_error("create", object());
            return Err(match in_flight {
                Some(pending) => crate::guard::roll_back(pending, e).await,
                None => e,
            });
        }
    };
    // From here on the link exists: until its owner's guard takes over, `pending` deletes it
    // if a later step fails or this future is dropped.
    let mut pending = in_flight.unwrap_or_else(|| pending(None));
    let index = match echoed_link(&created) {
        Some((index, _)) => index,
        None => match nl.link_named(name.as_str()).await {
            Ok(msg) => msg.header.index,
            Err(e) => {
                let e = e.into_error("look up the new", object());
                return Err(crate::guard::roll_back(pending, e).await);
            }
        },
    };
    pending.get_mut().index = Some(index);
    Ok((pending, index))
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

/// The teardown of a guard that owns one whole link this crate made (a `Vxlan`, a
/// `Macvlan`): delete it, `what` naming it in errors.
pub(crate) async fn remove_own_link(link: &Link, what: String) -> Result<()> {
    delete_link(link.ns(), link.index(), || what).await
}

/// [`remove_own_link`] from synchronous code (for `Drop`); nothing to do when the namespace
/// dies with this crate's last handles anyway.
pub(crate) fn remove_own_link_blocking(link: &Link, what: String) -> Result<()> {
    if link.ns().is_doomed() {
        return Ok(());
    }
    delete_link_blocking(link.ns(), link.index(), || what)
}

/// `keep()` of such a guard: the link loses this process's ownership mark, the guard is
/// disarmed.
pub(crate) fn keep_own_link<R: crate::guard::Resource>(
    guard: &mut crate::guard::Guard<R>,
    link: fn(&R) -> &Link,
) {
    if guard.is_armed() {
        let link = link(guard.get());
        unmark_blocking(link.ns(), link.index(), || link.label());
        guard.disarm();
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

/// Refuses a link group from the range this crate uses for its ownership marks.
pub(crate) fn check_group(group: Option<u32>, object: impl FnOnce() -> String) -> Result<()> {
    match group {
        Some(g) if crate::owner::is_tagged(g) => Err(Error::invalid(
            object(),
            format!("link group {g} is in the range reserved for netns-kit's marks (2^31 and up)"),
        )),
        _ => Ok(()),
    }
}

/// Waits for every pipelined request, each with its operation and object, and returns the
/// first error.
pub(crate) async fn await_all(pending: Vec<(Reply, &'static str, String)>) -> Result<()> {
    let results =
        futures::future::join_all(pending.into_iter().map(|(reply, op, label)| async move {
            reply.ack().await.map_err(|e| (e, op, label))
        }))
        .await;
    for result in results {
        if let Err((e, op, label)) = result {
            return Err(KernelError::into_error(e, op, label));
        }
    }
    Ok(())
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
    /// assert_eq!(ns.link_by_name("lo").await?.index(), 1);
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn link_by_name(&self, name: impl AsRef<str>) -> Result<Link> {
        let name = IfName::new(name)?;
        let nl = self.inner().nl().await?;
        let msg = nl.link_named(name.as_str()).await.map_err(|e| {
            e.into_error(
                "look up",
                format!("interface {:?} in {}", name.as_str(), self.label()),
            )
        })?;
        Ok(Link::new(self.inner().clone(), msg.header.index, name).handed_out())
    }

    /// The blocking form of [`link_by_name`](Self::link_by_name): the same work, checks and errors, on the calling
    /// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
    /// it from async code.
    pub fn link_by_name_blocking(&self, name: impl AsRef<str>) -> Result<Link> {
        crate::netlink::block_on(self.link_by_name(name))
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn link_by_index(&self, index: u32) -> Result<Link> {
        let nl = self.inner().nl().await?;
        let msg = nl.link(index).await.map_err(|e| {
            e.into_error("look up", format!("interface #{index} in {}", self.label()))
        })?;
        let name = IfName::new(link_name(&msg).unwrap_or_default())?;
        Ok(Link::new(self.inner().clone(), index, name).handed_out())
    }

    /// The blocking form of [`link_by_index`](Self::link_by_index): the same work, checks and
    /// errors, on the calling thread without an async runtime (see [the blocking
    /// API](crate#blocking-api)). Do not call it from async code.
    pub fn link_by_index_blocking(&self, index: u32) -> Result<Link> {
        crate::netlink::block_on(self.link_by_index(index))
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
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        dump_links(self.inner()).await
    }

    /// The blocking form of [`links`](Self::links): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn links_blocking(&self) -> Result<Vec<LinkInfo>> {
        crate::netlink::block_on(self.links())
    }
}

/// Lists every link of `ns` (one dump).
pub(crate) async fn dump_links(ns: &NsInner) -> Result<Vec<LinkInfo>> {
    dump_links_filtered(ns, LinkMessage::default()).await
}

/// Lists the ports of bridge `controller` in `ns`: one dump that the kernel filters
/// (`IFLA_MASTER` in the request, as `ip link show master BRIDGE` sends).
pub(crate) async fn dump_ports(ns: &NsInner, controller: u32) -> Result<Vec<LinkInfo>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Controller(controller));
    let mut ports = dump_links_filtered(ns, msg).await?;
    // Kernels that ignore the filter still answer correctly.
    ports.retain(|l| l.controller == Some(controller));
    Ok(ports)
}

async fn dump_links_filtered(ns: &NsInner, request: LinkMessage) -> Result<Vec<LinkInfo>> {
    let nl = ns.nl().await?;
    let msgs = nl
        .dump(RouteNetlinkMessage::GetLink(request))
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
