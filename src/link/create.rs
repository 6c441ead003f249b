//! How the link guards create links: the request with rollback ([`create_link`]), the
//! creation group that finds a link whose answer was lost, and the teardown shared by guards
//! that own one whole link.

use super::handle::{Link, delete_link, delete_link_blocking};
use crate::{
    error::{Error, Result},
    name::IfName,
    netlink::{
        BLOCKING_TIMEOUT, KernelError, Nl, Reply,
        msg::{del_group, del_link, del_link_named, echoed_link, set_link},
    },
    netns::NsInner,
    owner,
};
use netlink_packet_route::{RouteNetlinkMessage, link::LinkMessage};
use std::sync::Arc;

/// Removes the ownership mark of link `index` in `ns` (for `keep()`, which cannot report
/// errors: they are logged).
pub(crate) fn unmark_blocking(ns: &NsInner, index: u32, label: impl FnOnce() -> String) {
    let label = label();
    if let Err(e) = ns.blocking_one(
        set_link(index, |b| b.alias(owner::UNMARKED_ALIAS)),
        "unmark",
        || label.clone(),
    ) {
        crate::trace::swallowed!(&label, &e);
    }
}

/// The link group a new link is created in.
///
/// A link is created in a group of its own — a fresh tagged group (see [`owner`]) — unless a
/// composite puts it in the group it owns. That has two uses, both about the moments before the
/// link has its guard: a [`PendingLink`] whose creation request is in flight when its future is
/// dropped can delete "the links of this group" without knowing the new link's ifindex and
/// without risking a same-named link of someone else; and a process killed before the link's
/// alias mark is set leaves a link whose group names its pid, which `reap` recognises. Right
/// after creation the link is moved to its final group (the one asked for, or 0) together with
/// setting its alias mark, in one request.
#[derive(Debug)]
pub(crate) struct CreationGroup {
    group: Option<u32>,
    temporary: bool,
    final_group: Option<u32>,
}

impl CreationGroup {
    /// For a link whose final group is `requested` (`None`: the default, 0).
    pub(crate) fn temporary(requested: Option<u32>) -> CreationGroup {
        match owner::allocate_group() {
            Some(group) => CreationGroup {
                group: Some(group),
                temporary: true,
                final_group: Some(requested.unwrap_or(0)),
            },
            // Every tagged group is in use by this process: create it where it belongs.
            None => CreationGroup {
                group: requested,
                temporary: false,
                final_group: None,
            },
        }
    }

    /// For a link of a composite that owns `group`.
    pub(crate) fn owned(group: u32) -> CreationGroup {
        CreationGroup {
            group: Some(group),
            temporary: false,
            final_group: None,
        }
    }

    /// The group to put in `RTM_NEWLINK`.
    pub(crate) fn create_in(&self) -> Option<u32> {
        self.group
    }

    /// The temporary group, which holds only the new link (and its peer).
    pub(crate) fn temporary_group(&self) -> Option<u32> {
        self.group.filter(|_| self.temporary)
    }

    /// The group to move the link to once created, if it must move.
    pub(crate) fn final_group(&self) -> Option<u32> {
        self.final_group
    }
}

impl Drop for CreationGroup {
    fn drop(&mut self) {
        if let Some(group) = self.temporary_group() {
            owner::release_group(group);
        }
    }
}

/// `RTM_SETLINK` that gives a new link its ownership mark (with `txqlen` in place of the
/// creation queue length) and/or moves it to its final group.
///
/// Send it while the link is still down, and bring the link up with a request of its own after
/// it: the kernel changes the queue length of a link that is up by deactivating its queues
/// (`dev_deactivate`), which waits for an expedited RCU grace period under the RTNL lock, and
/// within one request it applies the flags (`up`) before the queue length. Measured with
/// `perf` on 500-member bridged networks: one such wait per member, 40–90 ms per network
/// spent with every other netlink request of the host queued behind it.
pub(crate) fn settle_message(
    index: u32,
    mark: bool,
    group: Option<u32>,
    txqlen: u32,
) -> Option<RouteNetlinkMessage> {
    if !mark && group.is_none() {
        return None;
    }
    Some(set_link(index, |mut b| {
        if mark {
            b = b.alias(owner::marker()).txqueuelen(txqlen);
        }
        if let Some(group) = group {
            b = b.link_group(group);
        }
        b
    }))
}

/// A link just created, not yet handed to its guard: removed if the creation fails later or its
/// future is dropped — by ifindex once known; before that by its group if it is alone in one,
/// else by name.
///
/// The removal goes through `via`, the connection the creation request was sent on: requests
/// on one connection are handled in order, so the removal cannot overtake a creation request
/// still queued in user space when the creating future was dropped.
#[derive(Debug)]
pub(crate) struct PendingLink {
    pub(crate) ns: Arc<NsInner>,
    pub(crate) via: crate::netlink::Nl,
    pub(crate) name: IfName,
    pub(crate) index: Option<u32>,
    pub(crate) alone_in_group: Option<u32>,
}

impl PendingLink {
    fn message(&self) -> RouteNetlinkMessage {
        match (self.index, self.alone_in_group) {
            (Some(index), _) => del_link(index),
            (None, Some(group)) => del_group(group),
            (None, None) => del_link_named(self.name.as_str()),
        }
    }
}

impl crate::guard::Resource for PendingLink {
    const KIND: &'static str = "link";

    fn netns(&self) -> String {
        self.ns.label().to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "new interface {:?} in {}",
            self.name.as_str(),
            self.ns.label()
        )
    }

    async fn remove(&self) -> Result<()> {
        match self.via.send(self.message(), 0).ack().await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_error("roll back", self.describe())),
        }
    }

    fn remove_blocking(&self) -> Result<()> {
        match self
            .via
            .send(self.message(), 0)
            .ack_blocking(BLOCKING_TIMEOUT)
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into_error("roll back", self.describe())),
        }
    }
}

/// Sends `msg` (an `RTM_NEWLINK` for link `name`) on `nl`, the connection of `ns`, and returns
/// the new link under a [`PendingLink`] guard with its ifindex: from the kernel's echo, or a
/// direct lookup.
///
/// The guard is armed before the request goes out when the link is created alone in a group
/// (`alone_in_group`): if this future is dropped while the request is in flight, the link may
/// still be created, and the group finds it. If the kernel refuses, nothing was created and
/// nothing is armed.
pub(crate) async fn create_link(
    ns: &Arc<NsInner>,
    nl: &Nl,
    name: &IfName,
    msg: LinkMessage,
    alone_in_group: Option<u32>,
    object: impl Fn() -> String,
) -> Result<(crate::guard::Guard<PendingLink>, u32)> {
    use crate::guard::Guard;
    use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
    let pending = |group| {
        Guard::new(PendingLink {
            ns: ns.clone(),
            via: nl.clone(),
            name: name.clone(),
            index: None,
            alone_in_group: group,
        })
    };
    let in_flight = alone_in_group.map(|g| pending(Some(g)));
    let created = nl
        .send(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )
        .messages()
        .await;
    let created = match created {
        Ok(created) => created,
        Err(e) if e.from_kernel => {
            // Refused: nothing was created.
            in_flight.map(Guard::into_inner);
            return Err(e.into_error("create", object()));
        }
        Err(e) => {
            // The answer was lost: the link may exist. Its group finds it, if it has one.
            let e = e.into_error("create", object());
            return Err(match in_flight {
                Some(pending) => crate::guard::roll_back(pending, e).await,
                None => e,
            });
        }
    };
    // From here on the link exists: until its owner's guard takes over, `pending` deletes it
    // if a later step fails or this future is dropped.
    let mut pending = in_flight.unwrap_or_else(|| pending(None));
    let index = match echoed_link(&created) {
        Some((index, _)) => index,
        None => match nl.link_named(name.as_str()).await {
            Ok(msg) => msg.header.index,
            Err(e) => {
                let e = e.into_error("look up the new", object());
                return Err(crate::guard::roll_back(pending, e).await);
            }
        },
    };
    pending.get_mut().index = Some(index);
    Ok((pending, index))
}

/// The teardown of a guard that owns one whole link this crate made (a `Vxlan`, a
/// `Macvlan`): delete it, `what` naming it in errors.
pub(crate) async fn remove_own_link(link: &Link, what: String) -> Result<()> {
    delete_link(link.ns(), link.index(), || what).await
}

/// [`remove_own_link`] from synchronous code (for `Drop`); nothing to do when the namespace
/// dies with this crate's last handles anyway.
pub(crate) fn remove_own_link_blocking(link: &Link, what: String) -> Result<()> {
    if link.ns().is_doomed() {
        return Ok(());
    }
    delete_link_blocking(link.ns(), link.index(), || what)
}

/// `keep()` of such a guard: the link loses this process's ownership mark, the guard is
/// disarmed.
pub(crate) fn keep_own_link<R: crate::guard::Resource>(
    guard: &mut crate::guard::Guard<R>,
    link: fn(&R) -> &Link,
) {
    if guard.is_armed() {
        let link = link(guard.get());
        unmark_blocking(link.ns(), link.index(), || link.label());
        guard.disarm();
    }
}

/// Refuses a link group from the range this crate uses for its ownership marks.
pub(crate) fn check_group(group: Option<u32>, object: impl FnOnce() -> String) -> Result<()> {
    match group {
        Some(g) if crate::owner::is_tagged(g) => Err(Error::invalid(
            object(),
            format!("link group {g} is in the range reserved for netns-kit's marks (2^31 and up)"),
        )),
        _ => Ok(()),
    }
}

/// Waits for every pipelined request, each with its operation and object, and returns the
/// first error.
pub(crate) async fn await_all(pending: Vec<(Reply, &'static str, String)>) -> Result<()> {
    let results =
        futures::future::join_all(pending.into_iter().map(|(reply, op, label)| async move {
            reply.ack().await.map_err(|e| (e, op, label))
        }))
        .await;
    for result in results {
        if let Err((e, op, label)) = result {
            return Err(KernelError::into_error(e, op, label));
        }
    }
    Ok(())
}
