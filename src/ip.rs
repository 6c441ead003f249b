//! IP address values: what builders accept as an address with a prefix length
//! ([`IntoIpNetwork`]), and the checks every builder that takes an address shares.
//!
//! Builders accept addresses as anything implementing [`IntoIpNetwork`]: `ipnetwork` values, an
//! `(IpAddr, prefix)` pair, or strings such as `"10.0.0.1/24"`. A string that does not parse is
//! reported by the builder's terminal call, so chains of setters stay infallible.

use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::error::{Error, Result};

/// Values a builder accepts as an address with prefix length: `ipnetwork`'s types, an
/// `(IpAddr, prefix)` pair, or a string like `"10.0.0.1/24"` / `"fd10:1::1/64"`.
///
/// # Examples
///
/// ```
/// use netns_kit::IntoIpNetwork;
///
/// assert_eq!(
///     "10.0.0.1/24".into_ip_network()?.to_string(),
///     "10.0.0.1/24"
/// );
/// assert!("10.0.0.1/33".into_ip_network().is_err());
/// # Ok::<(), netns_kit::Error>(())
/// ```
pub trait IntoIpNetwork {
    /// Converts, or says what is wrong.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a string that is not an address with a prefix length in
    /// range.
    fn into_ip_network(self) -> Result<IpNetwork>;
}

impl IntoIpNetwork for IpNetwork {
    fn into_ip_network(self) -> Result<IpNetwork> {
        Ok(self)
    }
}

impl IntoIpNetwork for Ipv4Network {
    fn into_ip_network(self) -> Result<IpNetwork> {
        Ok(IpNetwork::V4(self))
    }
}

impl IntoIpNetwork for Ipv6Network {
    fn into_ip_network(self) -> Result<IpNetwork> {
        Ok(IpNetwork::V6(self))
    }
}

impl IntoIpNetwork for (IpAddr, u8) {
    fn into_ip_network(self) -> Result<IpNetwork> {
        IpNetwork::new(self.0, self.1).map_err(|_| {
            Error::invalid(
                format!("address {}/{}", self.0, self.1),
                format!(
                    "prefix length {} is out of range (at most {})",
                    self.1,
                    if self.0.is_ipv4() { 32 } else { 128 }
                ),
            )
        })
    }
}

impl IntoIpNetwork for &str {
    fn into_ip_network(self) -> Result<IpNetwork> {
        let bad = |reason: &str| Error::invalid(format!("address {self:?}"), reason);
        let (ip, prefix) = self
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.0.0.1/24"))?;
        let ip: IpAddr = ip.parse().map_err(|_| bad("not an IPv4 or IPv6 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length is not a number from 0 to 128"))?;
        (ip, prefix).into_ip_network()
    }
}

impl IntoIpNetwork for String {
    fn into_ip_network(self) -> Result<IpNetwork> {
        self.as_str().into_ip_network()
    }
}

impl IntoIpNetwork for &String {
    fn into_ip_network(self) -> Result<IpNetwork> {
        self.as_str().into_ip_network()
    }
}

/// The host addresses a builder was given, each checked ([`validate_host`]) and none twice,
/// in order; the first parse error a setter stored, if any.
pub(crate) fn host_addresses(
    given: Vec<Result<IpNetwork>>,
    object: impl Fn() -> String,
) -> Result<Vec<IpNetwork>> {
    let mut addresses = Vec::with_capacity(given.len());
    for net in given {
        let net = net?;
        validate_host(&net, &object)?;
        if addresses.contains(&net) {
            return Err(crate::error::Error::invalid(
                object(),
                format!("address {net} is given twice"),
            ));
        }
        addresses.push(net);
    }
    Ok(addresses)
}

/// Checks that `net` can be a host address: not unspecified, multicast or broadcast, and for
/// IPv4 prefixes shorter than /31 neither the network nor the broadcast address; not an
/// IPv4-mapped IPv6 address; and not with a /0 prefix (every address on-link: the kernel
/// refuses what follows with a bare `ENETUNREACH`).
pub(crate) fn validate_host(net: &IpNetwork, object: impl FnOnce() -> String) -> Result<()> {
    if net.prefix() == 0 {
        return Err(Error::invalid(
            object(),
            format!(
                "{net} has a /0 prefix, which puts every address on this link; give the subnet's \
                 prefix (e.g. {}/24)",
                net.ip()
            ),
        ));
    }
    let reason = match net {
        IpNetwork::V4(n) => {
            let ip = n.ip();
            if ip.is_unspecified() {
                Some("0.0.0.0 is not a host address".to_owned())
            } else if ip.is_multicast() {
                Some(format!("{ip} is a multicast address"))
            } else if ip.is_broadcast() {
                Some(format!("{ip} is the limited broadcast address"))
            } else if n.prefix() < 31 && ip == n.network() {
                Some(format!(
                    "{ip} is the network address of {}/{}; pick a host address",
                    n.network(),
                    n.prefix()
                ))
            } else if n.prefix() < 31 && ip == n.broadcast() {
                Some(format!(
                    "{ip} is the broadcast address of {}/{}; pick a host address",
                    n.network(),
                    n.prefix()
                ))
            } else {
                None
            }
        }
        IpNetwork::V6(n) => {
            let ip = n.ip();
            if ip.is_unspecified() {
                Some(":: is not a host address".to_owned())
            } else if ip.is_multicast() {
                Some(format!("{ip} is a multicast address"))
            } else {
                ip.to_ipv4_mapped().map(|v4| {
                    format!(
                        "{ip} is an IPv4-mapped IPv6 address, which no interface uses; give \
                         {v4} as an IPv4 address"
                    )
                })
            }
        }
    };
    match reason {
        Some(reason) => Err(Error::invalid(object(), reason)),
        None => Ok(()),
    }
}

/// Checks that `net` can be a network's address that others route through (a gateway, the
/// ends of a direct link): not loopback, whose packets never leave a namespace, and not IPv6
/// link-local, which every interface has already and which needs an interface to be reached.
pub(crate) fn validate_routable(net: &IpNetwork, object: impl FnOnce() -> String) -> Result<()> {
    let reason = match net.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Some(format!(
            "{ip} is a loopback address (127.0.0.0/8), which never leaves a namespace"
        )),
        IpAddr::V6(ip) if ip.is_loopback() => Some("::1 is the loopback address".to_owned()),
        IpAddr::V6(ip) if ip.is_unicast_link_local() => Some(format!(
            "{ip} is link-local (fe80::/10): every interface has one already; use a unique local address (fd00::/8)"
        )),
        _ => None,
    };
    match reason {
        Some(reason) => Err(Error::invalid(object(), reason)),
        None => Ok(()),
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
