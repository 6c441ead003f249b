//! [`Vxlan`]: a VXLAN tunnel endpoint (`ip link add type vxlan`), the port that stretches a
//! bridge across machines: Ethernet frames go out as UDP datagrams to the other machines'
//! endpoints, over the "underlay" network they share.
//!
//! Where frames go is the endpoint's forwarding database: for unicast remotes, one all-zeros
//! entry per remote (`bridge fdb append 00:00:00:00:00:00 dev vx dst REMOTE`) makes the kernel send
//! broadcast and unknown frames to every remote (head-end replication, what flannel and Docker's
//! overlay do); the endpoint then learns which MAC is behind which remote from what it receives.
//! With a multicast group instead, the underlay's multicast does the replication and needs an
//! underlay interface. Every frame costs 50 bytes of headers on an IPv4 underlay (70 on IPv6),
//! so the links behind the endpoint need an MTU that much smaller than the underlay's (the
//! bridged pattern does this by itself; see
//! [`BridgedNetworkBuilder::vxlan`](crate::BridgedNetworkBuilder::vxlan)).

use std::{net::IpAddr, sync::Arc};

use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
};
use rtnetlink::{
    LinkVxlan,
    packet_core::{NLM_F_APPEND, NLM_F_CREATE},
};

use super::{
    CreationGroup, Link, check_group, create_link, remove_own_link, remove_own_link_blocking,
    settle_message,
};
use crate::{
    error::{Error, Result},
    guard::{self, Guard, Resource},
    name::IfName,
    netns::{Namespace, NsInner},
    owner, trace,
};

/// The IANA port for VXLAN, the kernel's default too.
pub const VXLAN_PORT: u16 = 4789;

/// Bytes of headers VXLAN adds to each frame over an IPv4 underlay (outer IPv4 20, UDP 8,
/// VXLAN 8, inner Ethernet 14); 20 more over IPv6.
pub const VXLAN_OVERHEAD_V4: u32 = 50;

/// Builds a [`Vxlan`]; see [`Vxlan::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct VxlanBuilder {
    name: String,
    vni: u32,
    ns: Option<Arc<NsInner>>,
    local: Option<IpAddr>,
    remotes: Vec<IpAddr>,
    group: Option<IpAddr>,
    underlay: Option<Link>,
    port: u16,
    learning: bool,
    mtu: Option<u32>,
    controller: Option<Link>,
    group_id: Option<u32>,
    /// A composite's link group (see `owner`), instead of `group_id`.
    owned_group: Option<u32>,
}

impl VxlanBuilder {
    /// Creates the endpoint in `ns` (default: the caller's current namespace).
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.ns = Some(ns.inner().clone());
        self
    }

    /// The local underlay address the datagrams come from (`local`).
    pub fn local(mut self, addr: IpAddr) -> Self {
        self.local = Some(addr);
        self
    }

    /// Adds a unicast remote endpoint (`bridge fdb append 00:00:00:00:00:00 ... dst REMOTE`);
    /// call once per remote.
    pub fn remote(mut self, addr: IpAddr) -> Self {
        self.remotes.push(addr);
        self
    }

    /// Sends broadcast and unknown frames to multicast group `addr` instead of to unicast
    /// remotes (`group`); needs an [`underlay`](Self::underlay) interface.
    pub fn multicast_group(mut self, addr: IpAddr) -> Self {
        self.group = Some(addr);
        self
    }

    /// The underlay interface the datagrams leave by (`dev`), in the endpoint's namespace.
    pub fn underlay(mut self, link: &Link) -> Self {
        self.underlay = Some(link.clone());
        self
    }

    /// The UDP port (`dstport`; default [`VXLAN_PORT`], 4789).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Whether the endpoint learns which MAC is behind which remote from what it receives
    /// (`learning`, the default) or knows only its static entries (`nolearning`).
    pub fn learning(mut self, on: bool) -> Self {
        self.learning = on;
        self
    }

    /// The endpoint's MTU (default: the kernel's, the underlay's minus the overhead).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Makes the endpoint a port of `bridge` (`master`), in the same namespace.
    pub fn controller(mut self, bridge: &Link) -> Self {
        self.controller = Some(bridge.clone());
        self
    }

    /// Puts the endpoint in link group `group`.
    pub fn link_group(mut self, group: u32) -> Self {
        self.group_id = Some(group);
        self
    }

    /// Creates the endpoint in `group`, a composite's own link group, which removes it.
    pub(crate) fn owned_group(mut self, group: u32) -> Self {
        self.owned_group = Some(group);
        self
    }

    fn create_span(&self) -> tracing::Span {
        let ns = self.ns.as_ref().map_or_else(
            || "the current namespace".to_owned(),
            |ns| ns.label().to_owned(),
        );
        trace::op!(
            "create",
            "vxlan",
            format!("vxlan {:?} (VNI {})", self.name, self.vni),
            ns,
        )
    }

    /// Checks everything that can be checked before a request; `ns_id` is the namespace the
    /// endpoint will be made in.
    pub(crate) fn validate_in(&self, ns_id: (u64, u64), object: &dyn Fn() -> String) -> Result<()> {
        if self.vni >= 1 << 24 {
            return Err(Error::invalid(
                object(),
                format!("VNI {} does not fit in 24 bits (0 to 16777215)", self.vni),
            ));
        }
        if self.port == 0 {
            return Err(Error::invalid(object(), "UDP port 0"));
        }
        if self.group.is_some() && !self.remotes.is_empty() {
            return Err(Error::invalid(
                object(),
                "give either a multicast group or unicast remotes, not both",
            ));
        }
        if let Some(group) = self.group {
            if !group.is_multicast() {
                return Err(Error::invalid(
                    object(),
                    format!("group {group} is not a multicast address"),
                ));
            }
            if self.underlay.is_none() {
                return Err(Error::invalid(
                    object(),
                    "a multicast group needs an underlay interface (`.underlay(&link)`)",
                ));
            }
        }
        let version = |a: &IpAddr| a.is_ipv4();
        let mut all = self.local.iter().chain(&self.remotes).chain(&self.group);
        if let Some(first) = all.next() {
            if let Some(other) = all.clone().find(|a| version(a) != version(first)) {
                return Err(Error::invalid(
                    object(),
                    format!("{first} and {other} are of different IP versions"),
                ));
            }
        }
        for (i, remote) in self.remotes.iter().enumerate() {
            if remote.is_unspecified() || remote.is_multicast() {
                return Err(Error::invalid(
                    object(),
                    format!("remote {remote} is not a unicast address"),
                ));
            }
            if self.remotes[..i].contains(remote) {
                return Err(Error::invalid(
                    object(),
                    format!("remote {remote} is given twice"),
                ));
            }
            if Some(*remote) == self.local {
                return Err(Error::invalid(
                    object(),
                    format!("remote {remote} is the local address"),
                ));
            }
        }
        for (what, link) in [("underlay", &self.underlay), ("bridge", &self.controller)] {
            if let Some(link) = link {
                if link.ns().id() != ns_id {
                    return Err(Error::invalid(
                        object(),
                        format!("its {what} {} is in another namespace", link.label()),
                    ));
                }
            }
        }
        check_group(self.group_id, object)
    }

    /// Creates the endpoint, up, with an all-zeros forwarding entry per remote, and attached
    /// to its bridge if one was given.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidName`]/[`Error::InvalidInput`] before any request: a VNI over 24
    ///   bits, port 0, both a group and remotes, a group that is not multicast or without an
    ///   underlay, addresses of mixed IP versions, a remote twice or equal to the local
    ///   address, an underlay or bridge in another namespace;
    /// * [`Error::AlreadyExists`] if the name is taken (or the VNI and port are, by another
    ///   endpoint of the namespace);
    /// * the kernel's refusal otherwise (a kernel without VXLAN: "Unknown device type").
    ///
    /// Whatever was made is removed again before the error is returned.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future removes whatever was already made.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     host: netns_kit::Namespace,
    /// #     eth0: netns_kit::Link,
    /// # ) -> netns_kit::Result<()> {
    /// use netns_kit::Vxlan;
    /// let vx = Vxlan::builder("vx42", 42)
    ///     .namespace(&host)
    ///     .local("192.168.50.1".parse().unwrap())
    ///     .remote("192.168.50.2".parse().unwrap())
    ///     .remote("192.168.50.3".parse().unwrap())
    ///     .underlay(&eth0)
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link add type vxlan")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    // Over 80 lines on purpose: validation, the request and the forwarding entries share one
    // rollback guard and read best as one sequence.
    pub async fn create(self) -> Result<Vxlan> {
        let span = self.create_span();
        trace::timed(span, async move {
            let name = IfName::new(&self.name)?;
            let ns = match &self.ns {
                Some(ns) => ns.clone(),
                None => crate::netns::current_inner()?,
            };
            let object = || {
                format!(
                    "vxlan {:?} (VNI {}) in {}",
                    name.as_str(),
                    self.vni,
                    ns.label()
                )
            };
            self.validate_in(ns.id(), &object)?;

            let mut msg = LinkVxlan::new(name.as_str(), self.vni)
                .port(self.port)
                .learning(self.learning)
                .txqueuelen(owner::CREATION_TXQLEN);
            match self.local {
                Some(IpAddr::V4(a)) => msg = msg.local(a),
                Some(IpAddr::V6(a)) => msg = msg.local6(a),
                None => {}
            }
            match self.group {
                Some(IpAddr::V4(a)) => msg = msg.group(a),
                Some(IpAddr::V6(a)) => msg = msg.group6(a),
                None => {}
            }
            if let Some(underlay) = &self.underlay {
                msg = msg.dev(underlay.index());
            }
            if let Some(mtu) = self.mtu {
                msg = msg.mtu(mtu);
            }
            if let Some(bridge) = &self.controller {
                msg = msg.controller(bridge.index());
            }
            let creation = match self.owned_group {
                Some(group) => CreationGroup::owned(group),
                None => CreationGroup::temporary(self.group_id),
            };
            if let Some(group) = creation.create_in() {
                msg = msg.link_group(group);
            }
            let nl = ns.nl().await?;
            let (pending, index) = create_link(
                &ns,
                &nl,
                &name,
                msg.build(),
                creation.temporary_group(),
                object,
            )
            .await?;
            let link = Link::new(ns.clone(), index, name.clone());
            // Marked while down, then up (see `settle_message`).
            let mut requests: Vec<_> =
                settle_message(index, true, creation.final_group(), owner::DEFAULT_TXQLEN)
                    .map(|m| (nl.send(m, 0), "mark", object()))
                    .into_iter()
                    .collect();
            requests.push((
                nl.send(crate::netlink::msg::set_link(index, |b| b.up()), 0),
                "bring up",
                object(),
            ));
            requests.extend(self.remotes.iter().map(|remote| {
                (
                    nl.send(fdb_message(index, *remote), NLM_F_CREATE | NLM_F_APPEND),
                    "add a forwarding entry to",
                    format!("{} for remote {remote}", object()),
                )
            }));
            if let Err(e) = super::await_all(requests).await {
                return Err(guard::roll_back(pending, e).await);
            }
            pending.into_inner();
            Ok(Vxlan(Guard::new(VxlanResource {
                link,
                vni: self.vni,
                local: self.local,
                remotes: self.remotes,
            })))
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<Vxlan> {
        crate::netlink::block_on(self.create())
    }
}

/// The all-zeros forwarding entry that sends broadcast and unknown frames to `remote`.
pub(crate) fn fdb_message(index: u32, remote: IpAddr) -> RouteNetlinkMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
    msg.attributes
        .push(NeighbourAttribute::Destination(match remote {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    RouteNetlinkMessage::NewNeighbour(msg)
}

/// The same entry, for removal.
fn fdb_delete_message(index: u32, remote: IpAddr) -> RouteNetlinkMessage {
    match fdb_message(index, remote) {
        RouteNetlinkMessage::NewNeighbour(msg) => RouteNetlinkMessage::DelNeighbour(msg),
        other => other,
    }
}

#[derive(Debug)]
pub(crate) struct VxlanResource {
    link: Link,
    vni: u32,
    local: Option<IpAddr>,
    remotes: Vec<IpAddr>,
}

impl Resource for VxlanResource {
    const KIND: &'static str = "vxlan";

    fn netns(&self) -> String {
        self.link.ns().label().to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "vxlan {:?} (VNI {}) in {}",
            self.link.name(),
            self.vni,
            self.link.ns().label()
        )
    }

    async fn remove(&self) -> Result<()> {
        remove_own_link(&self.link, self.describe()).await
    }

    fn remove_blocking(&self) -> Result<()> {
        remove_own_link_blocking(&self.link, self.describe())
    }
}

/// A VXLAN endpoint made by [`Vxlan::builder`]; the guard deletes it (with its forwarding
/// entries) when dropped or [deleted](Vxlan::delete), see the [guard contract](crate#guards).
#[derive(Debug)]
pub struct Vxlan(Guard<VxlanResource>);

impl std::fmt::Display for Vxlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.get().describe())
    }
}

impl Vxlan {
    /// Starts building endpoint `name` for VXLAN network identifier `vni` (0 to 2^24 - 1).
    pub fn builder(name: impl AsRef<str>, vni: u32) -> VxlanBuilder {
        VxlanBuilder {
            name: name.as_ref().to_owned(),
            vni,
            ns: None,
            local: None,
            remotes: Vec::new(),
            group: None,
            underlay: None,
            port: VXLAN_PORT,
            learning: true,
            mtu: None,
            controller: None,
            group_id: None,
            owned_group: None,
        }
    }

    /// The endpoint's interface.
    pub fn link(&self) -> &Link {
        &self.0.get().link
    }

    /// The VXLAN network identifier.
    pub fn vni(&self) -> u32 {
        self.0.get().vni
    }

    /// The unicast remotes, in the order added.
    pub fn remotes(&self) -> &[IpAddr] {
        &self.0.get().remotes
    }

    /// Adds a unicast remote at run time (a machine joining the overlay).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a remote already there, not unicast, or of the other IP
    /// version; the kernel's refusal otherwise.
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_remote(&mut self, remote: IpAddr) -> Result<()> {
        let what = self.0.get().describe();
        let resource = self.0.get();
        let version_of = resource.local.or_else(|| resource.remotes.first().copied());
        if resource.remotes.contains(&remote)
            || remote.is_unspecified()
            || remote.is_multicast()
            || version_of.is_some_and(|p| p.is_ipv4() != remote.is_ipv4())
            || resource.local == Some(remote)
        {
            return Err(Error::invalid(
                what,
                format!(
                    "remote {remote} is already there, the local address, not unicast, or of the other IP version"
                ),
            ));
        }
        let nl = resource.link.ns().nl().await?;
        nl.send(
            fdb_message(resource.link.index(), remote),
            NLM_F_CREATE | NLM_F_APPEND,
        )
        .ack()
        .await
        .map_err(|e| {
            e.into_error(
                "add a forwarding entry to",
                format!("{what} for remote {remote}"),
            )
        })?;
        self.0.get_mut().remotes.push(remote);
        Ok(())
    }

    /// The blocking form of [`add_remote`](Self::add_remote): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do
    /// not call it from async code.
    pub fn add_remote_blocking(&mut self, remote: IpAddr) -> Result<()> {
        crate::netlink::block_on(self.add_remote(remote))
    }

    /// Removes a unicast remote at run time.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]-like kernel refusal if the entry is gone; [`Error::InvalidInput`]
    /// if it is not a remote of this endpoint.
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn remove_remote(&mut self, remote: IpAddr) -> Result<()> {
        let what = self.0.get().describe();
        let resource = self.0.get();
        if !resource.remotes.contains(&remote) {
            return Err(Error::invalid(
                what,
                format!("{remote} is not one of its remotes"),
            ));
        }
        let nl = resource.link.ns().nl().await?;
        nl.send(fdb_delete_message(resource.link.index(), remote), 0)
            .ack()
            .await
            .map_err(|e| {
                e.into_error(
                    "remove a forwarding entry from",
                    format!("{what} for remote {remote}"),
                )
            })?;
        self.0.get_mut().remotes.retain(|p| *p != remote);
        Ok(())
    }

    /// The blocking form of [`remove_remote`](Self::remove_remote): the same work, checks and
    /// errors, on the calling thread without an async runtime (see [the blocking
    /// API](crate#blocking-api)). Do not call it from async code.
    pub fn remove_remote_blocking(&mut self, remote: IpAddr) -> Result<()> {
        crate::netlink::block_on(self.remove_remote(remote))
    }

    /// Deletes the endpoint now and reports errors (dropping does the same, silently).
    ///
    /// # Errors
    ///
    /// The kernel's refusal; an endpoint already gone is not an error.
    #[doc(alias = "ip link del")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// The blocking form of [`delete`](Self::delete): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }

    /// Disarms the guard and hands over the link, for composites that remove it themselves.
    pub(crate) fn into_link(self) -> Link {
        self.0.into_inner().link
    }

    /// Disarms the guard: the endpoint stays after the guard is gone, without this process's
    /// ownership mark (see [the guard contract](crate#guards)). Returns the same, now inert,
    /// guard.
    pub fn keep(mut self) -> Self {
        super::keep_own_link(&mut self.0, |r| &r.link);
        self
    }
}
