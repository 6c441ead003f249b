//! Finding links: by name, by index, all of a namespace, a bridge's ports (`impl Namespace`).

use super::{handle::Link, info::LinkInfo};
use crate::{
    error::Result,
    name::IfName,
    netlink::msg::link_name,
    netns::{Namespace, NsInner},
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage},
};

impl Namespace {
    /// Looks up the link called `name` in this namespace (one direct request, no dump).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`](crate::Error::InvalidName) for a bad name;
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such link.
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
        Ok(self.link_and_info_by_name(name).await?.0)
    }

    /// [`link_by_name`](Self::link_by_name), with what the same answer says of the link.
    pub(crate) async fn link_and_info_by_name(
        &self,
        name: impl AsRef<str>,
    ) -> Result<(Link, LinkInfo)> {
        let name = IfName::new(name)?;
        let nl = self.inner().nl().await?;
        let msg = nl.link_named(name.as_str()).await.map_err(|e| {
            e.into_error(
                "look up",
                format!("interface {:?} in {}", name.as_str(), self.label()),
            )
        })?;
        let info = LinkInfo::from_message(&msg);
        Ok((
            Link::new(self.inner().clone(), msg.header.index, name).handed_out(),
            info,
        ))
    }

    /// The blocking form of [`link_by_name`](Self::link_by_name): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn link_by_name_blocking(&self, name: impl AsRef<str>) -> Result<Link> {
        crate::netlink::block_on(self.link_by_name(name))
    }

    /// Looks up the link with ifindex `index` in this namespace.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such link.
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
    /// [`Error::Os`](crate::Error::Os) if the dump fails.
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
        .dump(RouteNetlinkMessage::GetLink(
            crate::netlink::msg::without_stats(request),
        ))
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
