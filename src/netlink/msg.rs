//! Building and reading rtnetlink messages: the small helpers every object module needs (links
//! by index, name or group, addresses, echoed answers), written once here so that the object
//! modules above never need each other.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressHeaderFlags, AddressMessage},
    link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkExtentMask, LinkMessage},
};
use rtnetlink::{
    AddressMessageBuilder, LinkMessageBuilder, LinkUnspec,
    packet_core::{NLM_F_CREATE, NLM_F_EXCL},
};

use super::framing::KernelError;

/// `RTM_SETLINK` for link `index`, with what `f` adds.
pub(crate) fn set_link(
    index: u32,
    f: impl FnOnce(LinkMessageBuilder<LinkUnspec>) -> LinkMessageBuilder<LinkUnspec>,
) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(f(LinkUnspec::new_with_index(index)).build())
}

/// `RTM_SETLINK` for the link called `name`, with what `f` adds.
pub(crate) fn set_link_named(
    name: &str,
    f: impl FnOnce(LinkMessageBuilder<LinkUnspec>) -> LinkMessageBuilder<LinkUnspec>,
) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(f(LinkUnspec::new_with_name(name)).build())
}

/// `RTM_DELLINK` for link `index`.
pub(crate) fn del_link(index: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build())
}

/// `RTM_DELLINK` for every link of `group` (what `ip link del group N` sends): one kernel
/// batch.
pub(crate) fn del_group(group: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelLink(
        LinkMessageBuilder::<LinkUnspec>::default()
            .link_group(group)
            .build(),
    )
}

/// `RTM_DELLINK` for the link called `name`.
pub(crate) fn del_link_named(name: &str) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelLink(LinkUnspec::new_with_name(name).build())
}

/// `RTM_GETLINK` for the link called `name` (a direct lookup, no dump).
pub(crate) fn get_link_named(name: &str) -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetLink(without_stats(LinkUnspec::new_with_name(name).build()))
}

/// `RTM_GETLINK` for link `index`.
pub(crate) fn get_link(index: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetLink(without_stats(LinkUnspec::new_with_index(index).build()))
}

/// `request`, an `RTM_GETLINK` (a lookup or a dump), asking the kernel to skip the statistics
/// it can skip (`RTEXT_FILTER_SKIP_STATS`, as `ip link show` asks without `-s`): the crate reads
/// none. On this crate's development kernel (6.18) that leaves out the IPv6 counters
/// (`IFLA_INET6_STATS`, `IFLA_INET6_ICMP6STATS`): a bridge's answer is 1,516 bytes instead of
/// 1,884, less for the kernel to fill and for the crate to parse; the link's own counters
/// (`IFLA_STATS64`) still come. A kernel that does not know the flag ignores it.
pub(crate) fn without_stats(mut request: LinkMessage) -> LinkMessage {
    request
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    request
}

/// The first link in an answer, or `ENODEV` if there is none.
pub(crate) fn first_link(messages: Vec<RouteNetlinkMessage>) -> Result<LinkMessage, KernelError> {
    messages
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .ok_or(KernelError {
            errno: nix::libc::ENODEV,
            detail: None,
            from_kernel: false,
        })
}

/// The name in a link message.
pub(crate) fn link_name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// The ifindex of a link the kernel echoed back (`NLM_F_ECHO`), and its peer's (`IFLA_LINK`,
/// for a veth end: the other end's ifindex, in the other end's namespace).
pub(crate) fn echoed_link(messages: &[RouteNetlinkMessage]) -> Option<(u32, Option<u32>)> {
    messages.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(link) if link.header.index > 0 => {
            let peer = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Link(peer) if *peer > 0 => Some(*peer),
                _ => None,
            });
            Some((link.header.index, peer))
        }
        _ => None,
    })
}

/// The attribute that stops IPv6 from giving a link a link-local address (`addrgenmode none`).
/// Without an address, a link sends no duplicate-address detection, MLD report or router
/// solicitation. This matters on a bridge: such multicast is flooded to every port, so N members
/// each announcing themselves cost on the order of N² deliveries (measured: 1000 members took
/// ~10× longer to set up with it). It cannot be given when the link is created: the kernel only
/// accepts it for an existing link.
pub(crate) fn no_link_local(index: u32) -> RouteNetlinkMessage {
    quiet(LinkUnspec::new_with_index(index).build())
}

/// [`no_link_local`] for the link named `name`.
pub(crate) fn no_link_local_named(name: &str) -> RouteNetlinkMessage {
    quiet(LinkUnspec::new_with_name(name).build())
}

fn quiet(mut msg: LinkMessage) -> RouteNetlinkMessage {
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    RouteNetlinkMessage::SetLink(msg)
}

fn address_message(index: u32, net: &IpNetwork) -> AddressMessage {
    match net {
        IpNetwork::V4(n) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(n.ip(), n.prefix())
            .build(),
        IpNetwork::V6(n) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(n.ip(), n.prefix())
            .build(),
    }
}

/// `RTM_NEWADDR` for `net` on link `index`, and the flags to send it with. With `nodad`, an
/// IPv6 address skips duplicate-address detection (`IFA_F_NODAD`) and is usable at once.
pub(crate) fn add_address(index: u32, net: &IpNetwork, nodad: bool) -> (RouteNetlinkMessage, u16) {
    let mut msg = address_message(index, net);
    if nodad && net.is_ipv6() {
        msg.header.flags |= AddressHeaderFlags::Nodad;
    }
    (
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// The address protocol (`IFA_PROTO`, `ip address ... proto N`) that marks a gateway address
/// this crate put on a bridge it does not own, shared by the networks on that bridge: the
/// last of them to go removes it, whichever added it (another process's, too).
pub(crate) const SHARED_GATEWAY_PROTO: u8 = 0x6e;

/// [`add_address`] for a gateway address shared by networks on one bridge
/// ([`SHARED_GATEWAY_PROTO`]).
pub(crate) fn add_shared_gateway(
    index: u32,
    net: &IpNetwork,
    nodad: bool,
) -> (RouteNetlinkMessage, u16) {
    let (mut message, flags) = add_address(index, net, nodad);
    if let RouteNetlinkMessage::NewAddress(msg) = &mut message {
        msg.attributes
            .push(netlink_packet_route::address::AddressAttribute::Protocol(
                SHARED_GATEWAY_PROTO.into(),
            ));
    }
    (message, flags)
}

/// `RTM_DELADDR` for `net` on link `index`.
pub(crate) fn del_address(index: u32, net: &IpNetwork) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelAddress(address_message(index, net))
}

/// Sets the interface index of an address request built before the index was known.
pub(crate) fn with_index(msg: RouteNetlinkMessage, index: u32) -> RouteNetlinkMessage {
    match msg {
        RouteNetlinkMessage::NewAddress(mut a) => {
            a.header.index = index;
            RouteNetlinkMessage::NewAddress(a)
        }
        other => other,
    }
}
