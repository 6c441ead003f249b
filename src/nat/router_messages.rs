//! The filter that keeps a bridged network's members' messages *for routers* — MLD reports
//! and router solicitations — from the other members.
//!
//! # Why
//!
//! Every IPv6 interface announces the multicast groups it joins (MLD reports, to `ff02::16`)
//! and, with a link-local address, solicits routers (to `ff02::2`). A bridge floods both to every
//! port: the kernel's bridge never treats an MLDv2 report as for routers only, and without a
//! multicast querier nothing is registered. So N members cost on the order of N² deliveries,
//! each a trip through the receiving member's IPv6 stack (and `br_netfilter`'s ip6tables hooks
//! where that module is loaded). Measured on 500 members (`benches/README.md`): dual-stack
//! setup took 2.1–2.6× an IPv4-only one, 1.4–1.6× with this filter and link-local addresses
//! without DAD; with no multicast between members at all (ports' `mcast_flood` off, which
//! would break neighbour discovery) 1.1–1.3×. What is left is the bridge's copy of each message
//! per port, made before the forward hook drops it.
//!
//! Only routers, queriers and snooping switches listen to these messages, and a member is none
//! of those unless it says so: the gateway (the bridge itself) still gets them (they reach the
//! host through the bridge's input, not its forwarding path), and neighbour discovery, DAD
//! probes and everything else are untouched. What was tried first, and why not: a querier on the
//! bridge (`mcast_querier`) still floods MLDv2 reports and stops flooding unregistered IPv6
//! multicast, which broke neighbour discovery between members whose reports were sent before
//! their port was up; matching the bridge by name in a bridge-family rule (`meta ibrname`) is
//! refused by this kernel.
//!
//! # How
//!
//! One nf_tables table per network, family `bridge`, in the host namespace, named after the
//! network's link group ([`TABLE_PREFIX`] and the group in hex): a base chain on the `forward`
//! hook at priority -200 (before `br_netfilter`) drops ICMPv6 MLD reports and done messages
//! (types 131, 132, 143) and router solicitations (133) forwarded from a port in the network's
//! link group to another port in it — its members' host ends (a network with a VXLAN port, also
//! in that group, gets no filter: routers may be on the other side). A port of anyone else on
//! the bridge still gets them. One transaction makes it, one deletes it; the name says whose
//! group it is, so `reap` deletes the tables of dead owners' groups — judged, like a link's
//! group, only from the initial PID namespace, which sees every process.
//!
//! It is an optimisation: where nf_tables refuses (no `nf_tables` in the kernel, no
//! `CAP_NET_ADMIN`), the network is built without it and a `debug` event says why. The async
//! paths make and delete it on a library worker, as the other nf_tables work; a table made
//! for a caller that stopped waiting is deleted again.

use std::sync::Arc;

use super::{
    apply::socket_in,
    nft::{Batch, NFPROTO_BRIDGE},
};
use crate::{
    error::{Error, Result},
    netns::NsInner,
    owner,
};

/// The start of the tables' names; the link group in hex follows.
pub(crate) const TABLE_PREFIX: &str = "netns-kit-rm-";

/// ICMPv6 MLDv1 report and done, router solicitation, MLDv2 report.
const TYPES: [u8; 4] = [131, 132, 133, 143];

/// The installed filter of one network.
#[derive(Debug)]
pub(crate) struct RouterMessageFilter {
    ns: Arc<NsInner>,
    table: String,
}

impl RouterMessageFilter {
    /// Installs the filter for ports in link `group` in `ns`; `None` where nf_tables refuses.
    pub(crate) fn install(ns: &Arc<NsInner>, group: u32) -> Option<RouterMessageFilter> {
        let table = format!("{TABLE_PREFIX}{group:08x}");
        let mut batch = Batch::default();
        batch.new_port_group_filter(&table, group, &TYPES);
        let installed = socket_in(ns)
            .map_err(|e| e.to_string())
            .and_then(|mut sock| match sock.apply(&batch) {
                // No answer: it may be in place, so it is recorded (removing one that is not
                // is fine).
                Ok(()) | Err(super::nft::NftError::Uncertain) => Ok(()),
                Err(e) => Err(e.to_string()),
            });
        match installed {
            Ok(()) => Some(RouterMessageFilter {
                ns: ns.clone(),
                table,
            }),
            Err(e) => {
                tracing::debug!(
                    netns = %ns.label(),
                    error = %e,
                    "members' router messages are not filtered"
                );
                None
            }
        }
    }

    /// [`install`](Self::install) on a library worker (an async caller's thread is not blocked);
    /// removed again if the caller stopped waiting.
    pub(crate) async fn install_on_worker(
        ns: &Arc<NsInner>,
        group: u32,
    ) -> Option<RouterMessageFilter> {
        let ns = ns.clone();
        crate::sys::on_worker_cancellable(
            move |_| RouterMessageFilter::install(&ns, group),
            |installed: Option<RouterMessageFilter>| {
                if let Some(filter) = installed {
                    let _ = filter.remove();
                }
            },
        )
        .await
        .ok()
        .flatten()
    }

    /// [`remove`](Self::remove) on a library worker.
    pub(crate) async fn remove_on_worker(&self) -> Result<()> {
        let filter = RouterMessageFilter {
            ns: self.ns.clone(),
            table: self.table.clone(),
        };
        let object = format!("table bridge {} in {}", self.table, self.ns.label());
        crate::sys::on_worker(move || filter.remove())
            .await
            .map_err(|e| Error::os("delete", object, e))?
    }

    /// Deletes the filter (gone already is fine).
    pub(crate) fn remove(&self) -> Result<()> {
        let object = || format!("table bridge {} in {}", self.table, self.ns.label());
        let mut sock = socket_in(&self.ns)
            .map_err(|e| Error::os("open an nf_tables socket for", object(), e))?;
        let mut batch = Batch::default();
        batch.delete_table(NFPROTO_BRIDGE, &self.table);
        match sock.apply(&batch) {
            Ok(()) => Ok(()),
            Err(e) if e.errno() == Some(nix::libc::ENOENT) => Ok(()),
            Err(e) => Err(Error::os(
                "delete",
                object(),
                std::io::Error::other(e.to_string()),
            )),
        }
    }
}

/// Deletes, in `ns`, the filters of networks whose owner is gone: their tables' names, and the
/// errors.
pub(crate) fn reap(ns: &NsInner) -> (Vec<String>, Vec<Error>) {
    let object = || format!("bridge tables in {}", ns.label());
    let listed = socket_in(ns)
        .map_err(|e| Error::os("open an nf_tables socket for", object(), e))
        .and_then(|mut sock| {
            let tables = sock
                .tables(NFPROTO_BRIDGE)
                .map_err(|e| Error::os("list", object(), std::io::Error::other(e.to_string())))?;
            Ok((sock, tables))
        });
    let (mut sock, tables) = match listed {
        Ok(listed) => listed,
        // No nf_tables at all: there can be no table of ours.
        Err(_) if socket_in(ns).is_err() => return (Vec::new(), Vec::new()),
        Err(e) => return (Vec::new(), vec![e]),
    };
    let (mut removed, mut errors) = (Vec::new(), Vec::new());
    for table in tables {
        let Some(group) = table
            .strip_prefix(TABLE_PREFIX)
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        else {
            continue;
        };
        if !owner::is_dead_group(group) {
            continue;
        }
        let mut batch = Batch::default();
        batch.delete_table(NFPROTO_BRIDGE, &table);
        match sock.apply(&batch) {
            Ok(()) => removed.push(format!("nft table bridge {table}")),
            // Another reaper was faster.
            Err(e) if e.errno() == Some(nix::libc::ENOENT) => {}
            Err(e) => errors.push(Error::os(
                "delete",
                format!("table bridge {table} in {}", ns.label()),
                std::io::Error::other(e.to_string()),
            )),
        }
    }
    (removed, errors)
}
