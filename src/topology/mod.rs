//! The two classic ways of joining network namespaces, as composable async functions built from
//! the link, address and route layer, each returning one guard that owns everything it made:
//!
//! * [`connect`] — two namespaces joined directly by a veth pair ("a cable"), an address on
//!   each end, default routes via the peer ([`DirectLink`]), built from the
//!   [`VethPair`](crate::VethPair) and
//!   [`Route`](crate::Route) builders;
//! * [`bridged`] — a bridge holding the gateway address(es) in a host namespace, and for each
//!   member namespace a veth whose inside end (`eth0`) has the member's address and a default
//!   route via the gateway ([`BridgedNetwork`]), built from the [`Bridge`](crate::Bridge) builder
//!   and, for its members, from the same messages those builders send, batched (see `member`).
//!
//! * [`routed`] — a router namespace joining two or more subnets, each a bridged network whose
//!   bridge lives in the router or a direct link from it, with forwarding on in the router only
//!   ([`RoutedNetwork`]).
//!
//! All validate everything before the first request, roll back what they made if a later step
//! fails, and return one guard owning everything they made.
//!
//! # Fast teardown of a bridged network
//!
//! Deleting a link costs the kernel 15–35 ms (it waits for RCU grace periods); deleting a
//! network's links one by one would cost that per member. Instead the bridge and every member's
//! host-side veth end are created in one **link group** (`ip link ... group N`), and teardown is
//! a single `RTM_DELLINK` for the group: the kernel unregisters them all in one batch (one set of
//! grace periods), and deleting a veth end deletes its peer inside the member namespace. The
//! group number (see [`owner`](crate::owner)) is unique among this process's live networks and
//! encodes its owner, which also marks the links for `reap` from the moment they exist. Member
//! namespaces the network created are then closed, which frees them.
//!
//! Measured (`benches/topology.rs`, 2 vCPUs): 1000 members are torn down in ~0.7 s, against
//! ~1.8 s for `ip -batch` deleting their namespaces; a lone bridge costs ~40 ms to delete
//! whatever deletes it, which bounds a small network's teardown.
//!
//! # What bounds setting up members
//!
//! Up to 8 members are in flight: namespace creation runs on the library's worker threads while
//! the host's requests go out. Every link, address and route change takes the kernel's global
//! `rtnl_lock` (`perf` shows 12–17% of samples spinning on it during a 1000-member setup), so
//! two cores give ~1.3 ms per member rather than half of it. The per-member cost still grows
//! with N, because the kernel's bridge does O(ports) work per new port (`br_add_if` walks all
//! ports and the forwarding database, the adjacency list is searched linearly, peer namespace
//! ids are looked up by walking an idr): ~1.2 ms per member at N=100, ~1.6 ms at N=1000. Two
//! growths were avoidable and are avoided: every member's IPv6 start-up traffic flooded to every
//! port (see [`BridgedNetworkBuilder::link_local_ipv6`]; it made 1000 members cost ~18 ms each),
//! and the bridge recomputing its MAC and MTU from all ports at each join (it gets fixed ones).
//!
//! # Layout
//!
//! * `direct` — [`connect`] and [`DirectLink`];
//! * `bridged` — [`bridged`], [`BridgedNetwork`];
//! * `member` — [`MemberSpec`], [`Member`], and the job that builds one member of a bridged
//!   network, in named steps;
//! * `routed` — [`routed`], [`RoutedNetwork`], [`RouterLink`].

mod bridged;
mod direct;
mod member;
mod routed;

pub use bridged::{BridgedNetwork, BridgedNetworkBuilder, Member, MemberSpec, bridged};
pub use direct::{DirectLink, DirectLinkBuilder, connect};
pub use routed::{RoutedNetwork, RoutedNetworkBuilder, RouterLink, routed};
