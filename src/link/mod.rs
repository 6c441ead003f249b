//! Links (network interfaces): the [`Link`] handle with the operations common to every kind,
//! [`LinkInfo`] snapshots, lookups, and the [`VethPair`](crate::VethPair) and
//! [`Bridge`](crate::Bridge) guards.
//!
//! A [`Link`] is identified by its namespace and **ifindex**, not by its name: a name can be
//! reused by someone else after the link is gone, an ifindex is allocated cyclically by the
//! kernel. Lookups by name are a single `RTM_GETLINK` carrying `IFLA_IFNAME`, answered directly
//! by the kernel; nothing here dumps every link of a namespace except [`Namespace::links`], which
//! exists to list them.

//!
//! Files: `info` (the value types), `handle` (the [`Link`] handle and its operations),
//! `lookup` (finding links in a namespace), `create` (how the guards below create links and
//! roll back), then one file per kind of link: `veth`, `bridge`, `vxlan`, `macvlan`.

pub(crate) mod bridge;
mod create;
mod handle;
mod info;
pub(crate) mod lookup;
pub(crate) mod macvlan;
pub(crate) mod veth;
pub(crate) mod vxlan;

pub(crate) use create::{
    CreationGroup, PendingLink, await_all, check_group, create_link, keep_own_link,
    remove_own_link, remove_own_link_blocking, settle_message, unmark_blocking,
};
pub use handle::Link;
pub(crate) use handle::{address_label, delete_link, delete_link_blocking};
pub use info::{LinkInfo, MacAddr, OperState};
pub(crate) use info::{check_mac, random_mac};
pub(crate) use lookup::{dump_links, dump_ports};
