//! IP addresses on links: IPv4 and IPv6, the [`Address`] guard, and listings.
//!
//! IPv6 addresses are normally *tentative* for about a second after being added while the
//! kernel runs duplicate-address detection (DAD); a tentative address cannot be bound or used as
//! a source. [`AddressBuilder::nodad`] sets `IFA_F_NODAD` so the address is usable at once — what
//! tests on private networks want, and what the topology functions do by default.
//!
//! Builders accept addresses as anything implementing [`IntoIpNetwork`] (see
//! [`ip`](crate::ip)).

use std::fmt;

use ipnetwork::IpNetwork;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressHeaderFlags, AddressMessage},
};

use crate::{
    error::Result,
    guard::{Guard, Resource},
    ip::{IntoIpNetwork, validate_host},
    link::{Link, address_label},
    netlink::msg::{add_address, del_address},
    netns::Namespace,
    trace,
};

/// Builds an [`Address`]; see [`Address::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct AddressBuilder {
    link: Link,
    net: Result<IpNetwork>,
    nodad: bool,
}

impl AddressBuilder {
    /// For IPv6: skip duplicate-address detection (`IFA_F_NODAD`, `ip addr add ... nodad`), so
    /// the address is usable at once instead of after ~1 s. No effect on IPv4.
    pub fn nodad(mut self, nodad: bool) -> Self {
        self.nodad = nodad;
        self
    }

    /// The span of `create`: what is being created, and where.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "address",
            self.net.as_ref().map_or_else(
                |_| "an address".to_owned(),
                |net| address_label(net, &self.link)
            ),
            self.link.ns().label().to_owned(),
        )
    }

    /// Adds the address to the link, like `ip addr add ADDRESS dev LINK`.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidInput`](crate::Error::InvalidInput) before any request for an
    ///   unparsable address or one that cannot be a host address (see [`Address::builder`]);
    /// * [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the link already has it;
    /// * [`Error::NotFound`](crate::Error::NotFound) if the link is gone.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the request is sent; if the future is then dropped the address may be
    /// added with no guard to remove it (it goes with its link).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// use netns_kit::Address;
    /// let addr = Address::builder(&link, "fd10::1/64").nodad(true).create().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip addr add")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<Address> {
        let span = self.create_span();
        trace::timed(span, async move {
            let net = self.net?;
            let link = self.link;
            validate_host(&net, || address_label(&net, &link))?;
            let nl = link.ns().nl().await?;
            let (msg, flags) = add_address(link.index(), &net, self.nodad);
            nl.send(msg, flags)
                .ack()
                .await
                .map_err(|e| e.into_error("add", address_label(&net, &link)))?;
            Ok(Address(Guard::new(AddrResource { link, net })))
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<Address> {
        crate::netlink::block_on(self.create())
    }
}

#[derive(Debug)]
struct AddrResource {
    link: Link,
    net: IpNetwork,
}

impl Resource for AddrResource {
    const KIND: &'static str = "address";

    fn netns(&self) -> String {
        self.link.ns().label().to_owned()
    }

    fn describe(&self) -> String {
        address_label(&self.net, &self.link)
    }

    async fn remove(&self) -> Result<()> {
        let nl = self.link.ns().nl().await?;
        match nl
            .send(del_address(self.link.index(), &self.net), 0)
            .ack()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_error("remove", self.describe())),
        }
    }

    fn remove_blocking(&self) -> Result<()> {
        if self.link.ns().is_doomed() {
            return Ok(());
        }
        self.link
            .ns()
            .blocking_one(del_address(self.link.index(), &self.net), "remove", || {
                self.describe()
            })
    }
}

/// An address on a link; the guard removes it (see the [guard contract](crate#guards)).
/// `Display` names it: `address 10.1.0.1/24 on interface "eth0" in namespace "ns1"`.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
/// use netns_kit::Address;
///
/// let a = Address::builder(&link, "10.1.0.1/24").create().await?;
/// assert_eq!(a.network().to_string(), "10.1.0.1/24");
/// a.delete().await?; // or drop it, or a.keep() to leave it
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Address(Guard<AddrResource>);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.get().describe())
    }
}

impl Address {
    /// Starts building address `net` on `link`. IPv4 host addresses equal to the network or
    /// broadcast address of a prefix shorter than /31, and unspecified or multicast addresses,
    /// are rejected by [`create`](AddressBuilder::create).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// let err = netns_kit::Address::builder(&link, "10.0.0.0/24").create().await.unwrap_err();
    /// assert!(err.is_invalid_input());
    /// # Ok(()) }
    /// ```
    pub fn builder(link: &Link, net: impl IntoIpNetwork) -> AddressBuilder {
        AddressBuilder {
            link: link.dup(),
            net: net.into_ip_network(),
            nodad: false,
        }
    }

    /// The address and prefix length.
    pub fn network(&self) -> IpNetwork {
        self.0.get().net
    }

    /// The link it is on.
    pub fn link(&self) -> &Link {
        &self.0.get().link
    }

    /// Removes the address now and reports errors; an address already gone (or whose link
    /// is gone) counts as removed. After [`keep`](Self::keep) it removes nothing.
    ///
    /// # Errors
    ///
    /// The kernel's refusal, e.g. [`Error::PermissionDenied`](crate::Error::PermissionDenied).
    ///
    /// # Cancel safety
    ///
    /// Once polled, the removal is sent and carried out even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(a: netns_kit::Address) -> netns_kit::Result<()> {
    /// a.delete().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip addr del")]
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

    /// Disarms the guard: the address stays after the guard is gone (see
    /// [the guard contract](crate#guards)). Returns the same, now inert, guard.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(a: netns_kit::Address) {
    /// let a = a.keep();
    /// println!("{a} stays");
    /// # }
    /// ```
    pub fn keep(mut self) -> Self {
        self.0.disarm();
        self
    }
}

/// One address of a link, as `ip addr show` reports it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
/// for a in link.addresses().await? {
///     if a.address.is_ipv6() && !a.link_local && !a.tentative {
///         println!("usable: {}", a.address);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddressInfo {
    /// The ifindex of the link it is on.
    pub index: u32,
    /// The address and prefix length.
    pub address: IpNetwork,
    /// Still undergoing duplicate-address detection (IPv6), so not yet usable.
    pub tentative: bool,
    /// Link-scoped (e.g. an IPv6 `fe80::` address).
    pub link_local: bool,
    /// A gateway address networks of this crate share on a bridge they do not own.
    pub(crate) shared_gateway: bool,
}

impl AddressInfo {
    fn from_message(msg: &AddressMessage) -> Option<AddressInfo> {
        let mut local = None;
        let mut address = None;
        let mut tentative = msg.header.flags.contains(AddressHeaderFlags::Tentative);
        let mut shared_gateway = false;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Protocol(p) => {
                    shared_gateway = u8::from(*p) == crate::netlink::msg::SHARED_GATEWAY_PROTO;
                }
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Flags(f) => {
                    tentative |= f.contains(netlink_packet_route::address::AddressFlags::Tentative)
                }
                _ => {}
            }
        }
        let ip = local.or(address)?;
        let address = IpNetwork::new(ip, msg.header.prefix_len).ok()?;
        Some(AddressInfo {
            index: msg.header.index,
            address,
            tentative,
            shared_gateway,
            link_local: matches!(
                msg.header.scope,
                netlink_packet_route::address::AddressScope::Link
            ),
        })
    }
}

async fn dump_addresses(
    ns: &crate::netns::NsInner,
    label: impl FnOnce() -> String,
) -> Result<Vec<AddressInfo>> {
    let nl = ns.nl().await?;
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Unspec;
    let msgs = nl
        .dump(RouteNetlinkMessage::GetAddress(msg))
        .messages()
        .await
        .map_err(|e| e.into_error("list the addresses of", label()))?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => AddressInfo::from_message(a),
            _ => None,
        })
        .collect())
}

impl Link {
    /// Adds `net` to this link with default options; shorthand for
    /// `Address::builder(&link, net).create()`. See [`AddressBuilder::create`].
    ///
    /// # Errors
    ///
    /// As for [`AddressBuilder::create`].
    ///
    /// # Cancel safety
    ///
    /// As for [`AddressBuilder::create`].
    #[doc(alias = "ip addr add")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn add_address(&self, net: impl IntoIpNetwork) -> Result<Address> {
        Address::builder(self, net).create().await
    }

    /// The blocking form of [`add_address`](Self::add_address): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn add_address_blocking(&self, net: impl IntoIpNetwork) -> Result<Address> {
        crate::netlink::block_on(self.add_address(net))
    }

    /// Removes `net` from this link, like `ip addr del ADDRESS dev LINK`, whoever added it.
    /// An address that is not there counts as removed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an unparsable address; the
    /// kernel's refusal otherwise.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the removal is sent and carried out even if the future is dropped.
    #[doc(alias = "ip addr del")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn remove_address(&self, net: impl IntoIpNetwork) -> Result<()> {
        let net = net.into_ip_network()?;
        AddrResource {
            link: self.dup(),
            net,
        }
        .remove()
        .await
    }

    /// The blocking form of [`remove_address`](Self::remove_address): the same work, checks and
    /// errors, on the calling thread without an async runtime (see [the blocking
    /// API](crate#blocking-api)). Do not call it from async code.
    pub fn remove_address_blocking(&self, net: impl IntoIpNetwork) -> Result<()> {
        crate::netlink::block_on(self.remove_address(net))
    }

    /// Lists this link's addresses (IPv4 and IPv6, link-local ones included), like
    /// `ip addr show dev LINK`.
    ///
    /// Taken while other processes change addresses, the listing is read again while the kernel
    /// says it changed as it was sent, so an address there throughout is listed once (the kernel
    /// sends addresses by their place in each interface's list, and an address removed
    /// meanwhile would make another be skipped or sent twice) — unless it kept changing through
    /// all of 8 reads, when the last is returned.
    ///
    /// # Errors
    ///
    /// [`Error::Os`](crate::Error::Os) if the listing fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    #[doc(alias = "ip addr show dev")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn addresses(&self) -> Result<Vec<AddressInfo>> {
        let index = self.index();
        let mut all = dump_addresses(self.ns(), || self.to_string()).await?;
        all.retain(|a| a.index == index);
        Ok(all)
    }

    /// The blocking form of [`addresses`](Self::addresses): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do
    /// not call it from async code.
    pub fn addresses_blocking(&self) -> Result<Vec<AddressInfo>> {
        crate::netlink::block_on(self.addresses())
    }
}

impl Namespace {
    /// Lists every address in this namespace (one dump), like `ip addr show`.
    ///
    /// Taken while other processes change addresses, the listing is read again while the kernel
    /// says it changed as it was sent, so an address there throughout is listed once (the kernel
    /// sends addresses by their place in each interface's list, and an address removed
    /// meanwhile would make another be skipped or sent twice) — unless it kept changing through
    /// all of 8 reads, when the last is returned.
    ///
    /// # Errors
    ///
    /// [`Error::Os`](crate::Error::Os) if the listing fails.
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
    /// assert!(ns.addresses().await?.iter().any(|a| a.address.to_string() == "127.0.0.1/8"));
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip addr show")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn addresses(&self) -> Result<Vec<AddressInfo>> {
        dump_addresses(self.inner(), || self.to_string()).await
    }

    /// The blocking form of [`addresses`](Self::addresses): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do
    /// not call it from async code.
    pub fn addresses_blocking(&self) -> Result<Vec<AddressInfo>> {
        crate::netlink::block_on(self.addresses())
    }
}
