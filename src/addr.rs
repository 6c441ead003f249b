//! IP addresses on links: IPv4 and IPv6, the [`Address`] guard, listings, and the validation
//! shared by every builder that takes an address.
//!
//! IPv6 addresses are normally *tentative* for about a second after being added while the
//! kernel runs duplicate-address detection (DAD); a tentative address cannot be bound or used as
//! a source. [`AddressBuilder::nodad`] sets `IFA_F_NODAD` so the address is usable at once — what
//! tests on private networks want, and what the topology functions do by default.
//!
//! Builders accept addresses as anything implementing [`IntoIpNetwork`] (see
//! [`ip`](crate::ip)).

use ipnetwork::IpNetwork;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressHeaderFlags, AddressMessage},
};

use crate::{
    error::Result,
    guard::{Guard, Resource},
    ip::{IntoIpNetwork, validate_host},
    link::Link,
    netlink::msg::{add_address, del_address},
    netns::Namespace,
};

/// The label errors use for an address on a link.
pub(crate) fn label(net: &IpNetwork, link: &Link) -> String {
    format!("address {net} on {}", link.label())
}

/// Builds an [`Address`]; see [`Address::new`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
/// use netns_kit::{Address, AddressBuilder};
///
/// let builder: AddressBuilder = Address::new("fd10::2/64").nodad(true);
/// let addr = builder.add(&link).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `.add(&link).await`"]
pub struct AddressBuilder {
    net: Result<IpNetwork>,
    nodad: bool,
}

impl AddressBuilder {
    /// For IPv6: skip duplicate-address detection (`IFA_F_NODAD`, `ip addr add ... nodad`), so
    /// the address is usable at once instead of after ~1 s. No effect on IPv4.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// let a = netns_kit::Address::new("fd10::1/64").nodad(true).add(&link).await?;
    /// link.set_up().await?;
    /// // Usable at once: no ~1 s wait for duplicate-address detection.
    /// # Ok(()) }
    /// ```
    pub fn nodad(mut self, nodad: bool) -> Self {
        self.nodad = nodad;
        self
    }

    /// Adds the address to `link`, like `ip addr add ADDRESS dev LINK`.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidInput`](crate::Error::InvalidInput) before any request for an unparsable address or one that cannot
    ///   be a host address (see [`Address::new`]);
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
    /// let addr = Address::new("fd10::1/64").nodad(true).add(&link).await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip addr add")]
    pub async fn add(self, link: &Link) -> Result<Address> {
        let net = self.net?;
        validate_host(&net, || label(&net, link))?;
        let nl = link.ns().nl().await?;
        let (msg, flags) = add_address(link.index(), &net, self.nodad);
        nl.send(msg, flags)
            .ack()
            .await
            .map_err(|e| e.into_error("add", label(&net, link)))?;
        Ok(Address(Guard::new(AddrResource {
            link: link.dup(),
            net,
        })))
    }
}

#[derive(Debug)]
struct AddrResource {
    link: Link,
    net: IpNetwork,
}

impl Resource for AddrResource {
    fn describe(&self) -> String {
        label(&self.net, &self.link)
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
///
/// # Examples
///
/// ```no_run
/// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
/// use netns_kit::Address;
///
/// let a = Address::new("10.1.0.1/24").add(&link).await?;
/// assert_eq!(a.network().to_string(), "10.1.0.1/24");
/// a.delete().await?; // or drop it, or a.keep() to leave it
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Address(Guard<AddrResource>);

impl Address {
    /// Starts building an address. IPv4 host addresses equal to the network or broadcast
    /// address of a prefix shorter than /31, and unspecified or multicast addresses, are
    /// rejected when it is added.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// let err = netns_kit::Address::new("10.0.0.0/24").add(&link).await.unwrap_err();
    /// assert!(err.is_invalid_input());
    /// # Ok(()) }
    /// ```
    pub fn new(net: impl IntoIpNetwork) -> AddressBuilder {
        AddressBuilder {
            net: net.into_ip_network(),
            nodad: false,
        }
    }

    /// The address and prefix length.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// let a = netns_kit::Address::new("10.1.0.1/24").add(&link).await?;
    /// assert_eq!(a.network().ip().to_string(), "10.1.0.1");
    /// assert_eq!(a.network().prefix(), 24);
    /// # Ok(()) }
    /// ```
    pub fn network(&self) -> IpNetwork {
        self.0.get().net
    }

    /// The link it is on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(eth0: netns_kit::Link) -> netns_kit::Result<()> {
    /// let a = netns_kit::Address::new("10.1.0.1/24").add(&eth0).await?;
    /// assert_eq!(a.link().index(), eth0.index());
    /// println!("{} is on {}", a.network(), a.link().name());
    /// # Ok(()) }
    /// ```
    pub fn link(&self) -> &Link {
        &self.0.get().link
    }

    /// Removes the address now and reports errors; an address already gone (or whose link is
    /// gone) counts as removed.
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
    pub async fn delete(self) -> Result<()> {
        self.0.delete().await
    }

    /// Disarms the guard: the address stays after the guard is gone. Returns the address.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(a: netns_kit::Address) {
    /// let net = a.keep();
    /// # }
    /// ```
    pub fn keep(self) -> IpNetwork {
        self.0.keep().net
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
}

impl AddressInfo {
    fn from_message(msg: &AddressMessage) -> Option<AddressInfo> {
        let mut local = None;
        let mut address = None;
        let mut tentative = msg.header.flags.contains(AddressHeaderFlags::Tentative);
        for attr in &msg.attributes {
            match attr {
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
    /// `Address::new(net).add(&link)`. See [`AddressBuilder::add`].
    ///
    /// # Errors
    ///
    /// As for [`AddressBuilder::add`].
    ///
    /// # Cancel safety
    ///
    /// As for [`AddressBuilder::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// let a = link.add_address("10.7.7.1/24").await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip addr add")]
    pub async fn add_address(&self, net: impl IntoIpNetwork) -> Result<Address> {
        Address::new(net).add(self).await
    }

    /// Removes `net` from this link, like `ip addr del ADDRESS dev LINK`, whoever added it. An
    /// address that is not there counts as removed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for an unparsable address; the kernel's refusal otherwise.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the removal is sent and carried out even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// link.remove_address("10.7.7.1/24").await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip addr del")]
    pub async fn remove_address(&self, net: impl IntoIpNetwork) -> Result<()> {
        let net = net.into_ip_network()?;
        AddrResource {
            link: self.dup(),
            net,
        }
        .remove()
        .await
    }

    /// Lists this link's addresses (IPv4 and IPv6, link-local ones included).
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
    /// # async fn demo(link: netns_kit::Link) -> netns_kit::Result<()> {
    /// for a in link.addresses().await? {
    ///     println!("{}", a.address);
    /// }
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip addr show dev")]
    pub async fn addresses(&self) -> Result<Vec<AddressInfo>> {
        let index = self.index();
        let mut all = dump_addresses(self.ns(), || self.label()).await?;
        all.retain(|a| a.index == index);
        Ok(all)
    }
}

impl Namespace {
    /// Lists every address in this namespace (one dump), like `ip addr show`.
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
    pub async fn addresses(&self) -> Result<Vec<AddressInfo>> {
        dump_addresses(self.inner(), || self.label().to_owned()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> Result<()> {
        let net = s.into_ip_network()?;
        validate_host(&net, || s.to_owned())
    }

    #[test]
    fn host_address_rules() {
        assert!(check("10.0.0.1/24").is_ok());
        assert!(check("10.0.0.0/24").is_err());
        assert!(check("10.0.0.255/24").is_err());
        assert!(check("10.0.0.0/31").is_ok());
        assert!(check("10.0.0.1/31").is_ok());
        assert!(check("10.0.0.7/32").is_ok());
        assert!(check("0.0.0.0/8").is_err());
        assert!(check("224.0.0.1/4").is_err());
        assert!(check("fd10:1::/64").is_ok());
        assert!(check("::/0").is_err());
        assert!(check("ff02::1/64").is_err());
    }

    #[test]
    fn string_forms() {
        assert!("10.0.0.1/33".into_ip_network().is_err());
        assert!("fd10::1/129".into_ip_network().is_err());
        assert!("10.0.0.1".into_ip_network().is_err());
        assert!("10.0.0.1/x".into_ip_network().is_err());
        assert!("nope/24".into_ip_network().is_err());
        assert_eq!(
            "fd10::1/64".into_ip_network().unwrap(),
            "fd10::1/64".parse::<IpNetwork>().unwrap()
        );
    }
}
