//! [`Bridge`]: a Linux software bridge (bridge(8)), the switch the classic bridged recipe plugs
//! its veths into.
//!
//! The bridge is created up, with its MTU/MAC, in one `RTM_NEWLINK` echoed back for its ifindex;
//! its addresses (typically the gateway of the network behind it) follow, pipelined. STP is off
//! (the kernel default), so a port forwards as soon as it is attached and up.

use std::{fmt, sync::Arc};

use ipnetwork::IpNetwork;
use rtnetlink::{LinkBridge, LinkMessageBuilder};

use super::{
    CreationGroup, Link, LinkInfo, MacAddr, address_label, await_all, check_group, check_mac,
    create_link, delete_link, delete_link_blocking, settle_message, unmark_blocking,
};
use crate::{
    error::{Error, Result},
    firewall::ForwardRules,
    guard::{self, Guard, Resource},
    ip::{IntoIpNetwork, host_addresses},
    name::IfName,
    netlink::msg::{add_address, set_link},
    netns::{Namespace, NsInner},
    owner, trace,
};

/// What an `AlreadyExists` for a bridge's name adds: a runtime's second container meets it.
const JOIN_HINT: &str = "to join an existing bridge, open it with `Bridge::open` and pass it \
                         to `bridged().existing_bridge(..)`";

/// Builds a [`Bridge`]; see [`Bridge::builder`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Bridge, BridgeBuilder, Namespace};
///
/// let host = Namespace::new().await?;
/// let builder: BridgeBuilder = Bridge::builder("br0").namespace(&host);
/// let br = builder.address("10.0.2.254/24").create().await?;
/// # Ok(()) }
/// ```

#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct BridgeBuilder {
    name: String,
    ns: Option<Arc<NsInner>>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    addresses: Vec<Result<IpNetwork>>,
    nodad: bool,
    accept_forward: bool,
    vlan_filtering: bool,
    group: Option<u32>,
    owned_group: Option<u32>,
}

impl BridgeBuilder {
    /// Creates the bridge in `ns` (default: the caller's current namespace).
    pub fn namespace(mut self, ns: &Namespace) -> Self {
        self.ns = Some(ns.inner().clone());
        self
    }

    /// The bridge's MTU (`mtu N`).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// The bridge's MAC address (`address MAC`). Without one the bridge gets a random locally
    /// administered MAC of its own at creation, so that, unlike a bridge made with `ip link add
    /// … type bridge`, its MAC does not change as ports come and go.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Adds an address to the bridge, typically the gateway of the network behind it
    /// (`ip addr add 10.1.1.254/24 dev br0`). May be called several times.
    pub fn address(mut self, net: impl IntoIpNetwork) -> Self {
        self.addresses.push(net.into_ip_network());
        self
    }

    /// Adds IPv6 addresses without duplicate-address detection (default: off). With IPv6
    /// addresses, the bridge's link-local address skips it too (`accept_dad` 0 on the bridge):
    /// a router needs a usable link-local address to resolve neighbours for forwarded packets,
    /// which would otherwise fail for the first second or two.
    pub fn nodad(mut self, nodad: bool) -> Self {
        self.nodad = nodad;
        self
    }

    /// Puts the bridge in link group `group` (`group N`); see
    /// [`VethPairBuilder::link_group`](crate::VethPairBuilder::link_group) (groups from 2³¹ up are
    /// refused).
    pub fn link_group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }

    /// Creates the bridge as the first link of `group`, a group a composite owns and deletes
    /// (see [`CreationGroup`]).
    pub(crate) fn owned_group(mut self, group: u32) -> Self {
        self.owned_group = Some(group);
        self
    }

    /// Inserts `iptables` rules that accept forwarded traffic into and out of this bridge,
    /// removed with the bridge — the scoped version of the classic recipe's
    /// `iptables -A FORWARD -i br0 -j ACCEPT`. See [the crate docs](crate#the-forward-mystery)
    /// for why it is needed and [`forward_check`](crate::forward_check) to find out whether it
    /// is. Default: off.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let host = netns_kit::Namespace::current()?;
    /// let check = netns_kit::forward_check(&host).await?;
    /// let br = netns_kit::Bridge::builder("br0")
    ///     .namespace(&host)
    ///     .accept_forward(check.needs_fix())
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn accept_forward(mut self, on: bool) -> Self {
        self.accept_forward = on;
        self
    }

    /// Turns VLAN filtering on (`vlan_filtering 1`; default: off): frames are then forwarded
    /// only between ports of the same VLAN, which each port gets with
    /// [`Link::add_bridge_vlan`].
    pub fn vlan_filtering(mut self, on: bool) -> Self {
        self.vlan_filtering = on;
        self
    }

    /// The span of `create`: what is being created, and where.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "bridge",
            format!("bridge {:?}", self.name),
            self.ns.as_ref().map_or_else(
                || "the current namespace".to_owned(),
                |ns| ns.label().to_owned()
            ),
        )
    }

    /// Creates the bridge, up, with its addresses.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidName`]/[`Error::InvalidInput`] for bad input, before any request;
    /// * [`Error::AlreadyExists`] if the name is taken (the existing link is untouched); its
    ///   message says how to join an existing bridge instead ([`Bridge::open`], then
    ///   [`existing_bridge`](crate::BridgedNetworkBuilder::existing_bridge));
    /// * [`Error::Command`] if [`accept_forward`](BridgeBuilder::accept_forward) is on and
    ///   `iptables` is missing or fails;
    /// * the kernel's refusal otherwise.
    ///
    /// If anything fails after the bridge was created, it is deleted again before the error is
    /// returned.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future removes whatever was already made, even a bridge whose creation
    /// request was still in flight (see the [crate docs](crate#resource-leaking)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(host: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let br = netns_kit::Bridge::builder("br0")
    ///     .namespace(&host)
    ///     .address("10.1.1.254/24")
    ///     .create()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link add type bridge")]
    #[doc(alias = "brctl addbr")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    // Over 80 lines on purpose: every step after the request (mark, addresses, link-local,
    // rules) rolls back the same `pending` guard, and reads best as one sequence.
    pub async fn create(self) -> Result<Bridge> {
        let span = self.create_span();
        trace::timed(span, async move {
            let name = IfName::new(&self.name)?;
            let ns = match self.ns {
                Some(ns) => ns,
                None => crate::netns::current_inner()?,
            };
            let object = || format!("bridge {:?} in {}", name.as_str(), ns.label());
            if let Some(mac) = &self.mac {
                check_mac(mac, object)?;
            }
            check_group(self.group, object)?;
            let addresses = host_addresses(self.addresses, object)?;

            // Created down (`LinkBridge::new` would add `up`): marked, then up (see
            // `settle_message`).
            let mut msg = LinkMessageBuilder::<LinkBridge>::new(name.as_str())
                .txqueuelen(owner::CREATION_TXQLEN);
            if let Some(mtu) = self.mtu {
                msg = msg.mtu(mtu);
            }
            // A MAC of its own from the start (given, or a random local one): a bridge whose
            // MAC was never set takes its lowest port's, and changes it when that port goes —
            // which breaks every neighbour's idea of the gateway.
            let mac = self.mac.unwrap_or_else(super::info::random_mac);
            msg = msg.address(mac.0.to_vec());
            if self.vlan_filtering {
                msg = msg.vlan_filtering(true);
            }
            let creation = match self.owned_group {
                Some(group) => CreationGroup::owned(group),
                None => CreationGroup::temporary(self.group),
            };
            if let Some(group) = creation.create_in() {
                msg = msg.link_group(group);
            }
            let nl = ns.nl().await?;
            // The bridge is alone in its group (temporary, or the composite's, of which it is the
            // first link), which finds it if this future is dropped while the request is in flight.
            let alone_in = creation.temporary_group().or(self.owned_group);
            let (pending, index) = create_link(&ns, &nl, &name, msg.build(), alone_in, object)
                .await
                .map_err(|e| e.with_hint(JOIN_HINT))?;
            let link = Link::new(ns.clone(), index, name.clone());

            // The ownership mark, for `reap` (the kernel ignores an alias in RTM_NEWLINK), and the
            // move out of the temporary group.
            let mut requests: Vec<_> =
                settle_message(index, true, creation.final_group(), owner::DEFAULT_TXQLEN)
                    .map(|msg| (nl.send(msg, 0), "mark", object()))
                    .into_iter()
                    .collect();
            requests.push((
                nl.send(set_link(index, |b| b.up()), 0),
                "bring up",
                object(),
            ));
            requests.extend(addresses.iter().map(|net| {
                let (m, flags) = add_address(index, net, self.nodad);
                (nl.send(m, flags), "add", address_label(net, &link))
            }));
            if let Err(e) = await_all(requests).await {
                return Err(guard::roll_back(pending, e).await);
            }
            let mut fast_link_local = false;
            if self.nodad && addresses.iter().any(IpNetwork::is_ipv6) {
                // Its link-local address, made when the first port brings the carrier, is
                // usable at once too (see `nodad`). Best effort: where `/proc/sys` is
                // read-only (a container) the address only takes the usual second or two.
                let key = format!(
                    "net.ipv6.conf.{}.accept_dad",
                    name.as_str().replace('.', "/")
                );
                match Namespace::view(ns.clone()).set_sysctl(&key, "0").await {
                    Ok(()) => fast_link_local = true,
                    Err(e) => crate::trace::swallowed!(&object(), &e),
                }
            }
            let rules = if self.accept_forward {
                let rules = Guard::new(ForwardRules::for_bridge(link.ns(), link.name()));
                if let Err(e) = rules.get().insert().await {
                    let e = guard::roll_back(rules, e).await;
                    return Err(guard::roll_back(pending, e).await);
                }
                Some(rules.into_inner())
            } else {
                None
            };
            pending.into_inner();
            Ok(Bridge(Guard::new(BridgeResource {
                link,
                rules,
                opened: false,
                fast_link_local,
            })))
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<Bridge> {
        crate::netlink::block_on(self.create())
    }
}

#[derive(Debug)]
pub(crate) struct BridgeResource {
    link: Link,
    rules: Option<ForwardRules>,
    /// Found by [`Bridge::open`]: only the rules this crate added are removed.
    opened: bool,
    /// Whether its link-local address skips duplicate-address detection (see `nodad`).
    fast_link_local: bool,
}

impl Resource for BridgeResource {
    const KIND: &'static str = "bridge";

    fn netns(&self) -> String {
        self.link.ns().label().to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "bridge {:?} in {}",
            self.link.name(),
            self.link.ns().label()
        )
    }

    async fn remove(&self) -> Result<()> {
        // Keep going after a failure and report everything.
        let what = self.describe();
        let mut errors = Vec::new();
        if let Some(rules) = &self.rules {
            if let Err(e) = rules.remove().await {
                errors.push(e);
            }
        }
        if self.opened {
            // Not ours: only the rules are.
        } else if let Err(e) = delete_link(self.link.ns(), self.link.index(), || what.clone()).await
        {
            errors.push(e);
        }
        Error::collect(what, errors)
    }

    fn remove_blocking(&self) -> Result<()> {
        if self.link.ns().is_doomed() {
            return Ok(());
        }
        let what = self.describe();
        let mut errors = Vec::new();
        if let Some(rules) = &self.rules {
            if let Err(e) = rules.remove_blocking() {
                errors.push(e);
            }
        }
        if self.opened {
            // Not ours: only the rules are.
        } else if let Err(e) =
            delete_link_blocking(self.link.ns(), self.link.index(), || what.clone())
        {
            errors.push(e);
        }
        Error::collect(what, errors)
    }
}

/// A bridge; the guard deletes it, with the firewall rules it added, if any (see the
/// [guard contract](crate#guards)). Deleting a bridge detaches its ports; it does not delete
/// them. A bridge found with [`Bridge::open`] is never deleted. `Display` names it:
/// `bridge "br0" in namespace "host"`.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Bridge, Namespace, VethPair};
///
/// let host = Namespace::new().await?;
/// let br = Bridge::builder("br0").namespace(&host).address("10.0.0.254/24").create().await?;
/// let guest = Namespace::new().await?;
/// let veth = VethPair::builder("veth1-br", "eth0")
///     .namespace(&host)
///     .controller(br.link())
///     .peer_namespace(&guest)
///     .peer_address("10.0.0.1/24")
///     .create()
///     .await?;
/// assert_eq!(br.ports().await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Bridge(Guard<BridgeResource>);

impl fmt::Display for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.get().describe())
    }
}

impl Bridge {
    /// Starts building a bridge called `name`, like `ip link add NAME type bridge` (or
    /// `brctl addbr NAME`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(ns: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let br = netns_kit::Bridge::builder("br0").namespace(&ns).create().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(name: impl AsRef<str>) -> BridgeBuilder {
        BridgeBuilder {
            name: name.as_ref().to_owned(),
            ns: None,
            mtu: None,
            mac: None,
            addresses: Vec::new(),
            nodad: false,
            accept_forward: false,
            vlan_filtering: false,
            group: None,
            owned_group: None,
        }
    }

    /// Opens the existing bridge called `name` in `ns` (made by anyone: another process,
    /// `ip link add`, a container runtime). The guard never deletes it, nor anything it did
    /// not add itself (the FORWARD rules of
    /// [`enable_accept_forward`](Bridge::enable_accept_forward) are removed with the guard).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no link `name` in `ns`;
    /// [`Error::InvalidInput`] if it is not a bridge.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Bridge, Namespace};
    /// let cni0 = Bridge::open(&Namespace::current()?, "cni0").await?;
    /// println!("{cni0} has {} ports", cni0.ports().await?.len());
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn open(ns: &Namespace, name: impl AsRef<str>) -> Result<Bridge> {
        // One lookup gives both the handle and what it is.
        let (link, info) = ns.link_and_info_by_name(name).await?;
        if info.kind.as_deref() != Some("bridge") {
            return Err(Error::invalid(
                link.label(),
                format!(
                    "it is a {} link, not a bridge",
                    info.kind.as_deref().unwrap_or("kindless")
                ),
            ));
        }
        Ok(Bridge(Guard::new(BridgeResource {
            link,
            rules: None,
            opened: true,
            fast_link_local: false,
        })))
    }

    /// The blocking form of [`open`](Self::open): the same work, checks and errors, on the calling
    /// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
    /// it from async code.
    pub fn open_blocking(ns: &Namespace, name: impl AsRef<str>) -> Result<Bridge> {
        crate::netlink::block_on(Self::open(ns, name))
    }

    /// The bridge interface itself.
    pub fn link(&self) -> &Link {
        &self.0.get().link
    }

    /// Whether this bridge has `iptables` FORWARD accept rules of this crate
    /// ([`BridgeBuilder::accept_forward`], [`enable_accept_forward`](Self::enable_accept_forward)).
    pub fn accept_forward_enabled(&self) -> bool {
        self.0.get().rules.is_some()
    }

    /// Inserts the FORWARD accept rules of [`BridgeBuilder::accept_forward`] now, into each
    /// IP family's `filter` table that exists and does not have them yet (so calling it again
    /// after a firewall appeared adds what is now needed, and nothing twice); they are
    /// removed with the guard (also for an [opened](Bridge::open) bridge, which itself is
    /// never deleted). A family without a `filter` table cannot drop bridged traffic and
    /// gets no rules: creating the table would outlive the rules (see
    /// [the crate docs](crate#the-forward-mystery)).
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if `iptables` is missing or fails.
    ///
    /// # Cancel safety
    ///
    /// If dropped while `iptables` runs, the rules inserted so far are removed again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::{Bridge, Namespace, forward_check};
    /// let host = Namespace::current()?;
    /// let mut br = Bridge::builder("br0").namespace(&host).create().await?;
    /// // Later: Docker started and set the FORWARD policy to DROP.
    /// if !br.accept_forward_enabled() && forward_check(&host).await?.needs_fix() {
    ///     br.enable_accept_forward().await?;
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "iptables -I FORWARD")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn enable_accept_forward(&mut self) -> Result<()> {
        match &self.0.get().rules {
            // Inserted before: only the families that got a table since.
            Some(rules) => rules.insert().await,
            None => {
                let rules = Guard::new(ForwardRules::for_bridge(
                    self.link().ns(),
                    self.link().name(),
                ));
                if let Err(e) = rules.get().insert().await {
                    return Err(guard::roll_back(rules, e).await);
                }
                self.0.get_mut().rules = Some(rules.into_inner());
                Ok(())
            }
        }
    }

    /// The blocking form of [`enable_accept_forward`](Self::enable_accept_forward): the same work,
    /// checks and errors, on the calling thread without an async runtime (see [the blocking
    /// API](crate#blocking-api)). Do not call it from async code.
    pub fn enable_accept_forward_blocking(&mut self) -> Result<()> {
        crate::netlink::block_on(self.enable_accept_forward())
    }

    /// Makes `port` (any link in the bridge's namespace) a port of this bridge, like
    /// `ip link set PORT master BRIDGE` or `brctl addif BRIDGE PORT`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if `port` is not in the bridge's namespace or is gone; the
    /// kernel's refusal otherwise (e.g. `EBUSY` if it already has a controller, or `ELOOP`).
    ///
    /// # Cancel safety
    ///
    /// Once polled, the request is sent and carried out even if the future is dropped.
    #[doc(alias = "brctl addif")]
    #[doc(alias = "ip link set master")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_port(&self, port: &Link) -> Result<()> {
        port.set_controller(self.link()).await
    }

    /// The blocking form of [`add_port`](Self::add_port): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn add_port_blocking(&self, port: &Link) -> Result<()> {
        crate::netlink::block_on(self.add_port(port))
    }

    /// Detaches `port` from this bridge, like `ip link set PORT nomaster` or
    /// `brctl delif BRIDGE PORT`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if `port` is not a port of this bridge.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the request is sent and carried out even if the future is dropped.
    #[doc(alias = "brctl delif")]
    #[doc(alias = "ip link set nomaster")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn remove_port(&self, port: &Link) -> Result<()> {
        let info = port.info().await?;
        if !port.same_ns(self.link()) || info.controller != Some(self.link().index()) {
            return Err(Error::invalid(
                port.label(),
                format!("it is not a port of {}", self.link().label()),
            ));
        }
        port.set_no_controller().await
    }

    /// The blocking form of [`remove_port`](Self::remove_port): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn remove_port_blocking(&self, port: &Link) -> Result<()> {
        crate::netlink::block_on(self.remove_port(port))
    }

    /// Lists the bridge's ports (one dump, filtered by the kernel).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the listing fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    #[doc(alias = "bridge link show")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn ports(&self) -> Result<Vec<LinkInfo>> {
        super::dump_ports(self.link().ns(), self.link().index()).await
    }

    /// The blocking form of [`ports`](Self::ports): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn ports_blocking(&self) -> Result<Vec<LinkInfo>> {
        crate::netlink::block_on(self.ports())
    }

    /// Deletes the bridge (and its firewall rules) now and reports every error met; teardown
    /// goes on after a failure.
    ///
    /// # Errors
    ///
    /// The kernel's or `iptables`' refusals, several as [`Error::Teardown`]. A bridge already
    /// gone is not an error.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the deletion is sent and carried out even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(br: netns_kit::Bridge) -> netns_kit::Result<()> {
    /// br.delete().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip link del")]
    #[doc(alias = "brctl delbr")]
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

    /// Disarms the guard: the bridge (and its firewall rules) stay after the guard is gone,
    /// and no longer carry this process's ownership mark (see
    /// [the guard contract](crate#guards)). Returns the same, now inert, guard.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(host: netns_kit::Namespace) -> netns_kit::Result<()> {
    /// let br = netns_kit::Bridge::builder("cni0").namespace(&host).create().await?.keep();
    /// drop(br); // cni0 stays
    /// # Ok(()) }
    /// ```
    pub fn keep(mut self) -> Self {
        if self.0.is_armed() {
            let resource = self.0.get_mut();
            if !resource.opened {
                let link = &resource.link;
                unmark_blocking(link.ns(), link.index(), || link.label());
            }
            if let Some(rules) = &mut resource.rules {
                rules.keep_blocking();
            }
            self.0.disarm();
        }
        self
    }

    /// Disarms the guard and hands over what it owned, for composites that tear it down
    /// themselves: the link, its FORWARD rules, and whether its link-local address skips
    /// duplicate-address detection.
    pub(crate) fn into_parts(self) -> (Link, Option<ForwardRules>, bool) {
        let BridgeResource {
            link,
            rules,
            fast_link_local,
            ..
        } = self.0.into_inner();
        (link, rules, fast_link_local)
    }
}
