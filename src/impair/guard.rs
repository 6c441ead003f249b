//! The impairment guard: [`Link::impair`] picks the backend, applies the impairment, and the
//! returned [`Impaired`] changes it later or takes it away when dropped.
//!
//! A link direction diverted through user space is one relay job however many guards use it
//! (an impairment and a partition on the same interface share it): the jobs are kept in a
//! registry by namespace, ifindex and direction, and the last guard to go removes the
//! diversion.

use std::{
    fmt,
    os::fd::{AsFd, OwnedFd},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use netlink_packet_route::RouteNetlinkMessage;

use super::{
    Backend, Counters, Direction, Impairment,
    divert::divert,
    netem::{self, Psched, Verb},
    relay::{self, Shared},
};
use crate::{
    error::{Error, Result},
    link::Link,
    netns::Namespace,
};

/// Set once the kernel said it has no netem qdisc: later impairments go to user space at once.
static NETEM_MISSING: AtomicBool = AtomicBool::new(false);

type Key = ((u64, u64), u32, Direction);

/// A link direction diverted through a relay job; shared by the guards that use it.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) shared: Arc<Shared>,
    /// The diversion's [`left`](super::divert::Diversion::left).
    left: Arc<AtomicBool>,
    handle: Mutex<Option<relay::Handle>>,
    /// A second descriptor of the TAP, to switch its offloads from the caller's thread
    /// (`TUNSETOFFLOAD` takes the RTNL lock, which must not hold up the relay thread).
    tap: OwnedFd,
}

impl Channel {
    /// Sets the impairment the relay applies, and the TAP's offloads to match: off for
    /// options drawn per packet, so that each frame is one packet on the wire.
    pub(crate) fn impair(&self, impairment: Option<&Impairment>) {
        let per_packet = impairment.is_some_and(Impairment::per_packet);
        // Best effort: with the offloads left on, the impairment still applies, per segment.
        let _ = crate::sys::set_tap_offloads(self.tap.as_fd(), !per_packet);
        self.shared.update(|s| {
            s.impaired = impairment.is_some();
            s.impairment = impairment.cloned().unwrap_or_default();
        });
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // The relay job goes first (the link is direct again), then the TAP with `tap`.
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(handle);
    }
}

static CHANNELS: Mutex<Vec<(Key, Weak<Channel>)>> = Mutex::new(Vec::new());

fn registered(channels: &[(Key, Weak<Channel>)], key: &Key) -> Option<Arc<Channel>> {
    channels
        .iter()
        .filter(|(k, _)| k == key)
        .find_map(|(_, c)| c.upgrade())
}

/// The relay job diverting `direction` of `link`, made if there is none yet.
pub(crate) async fn channel(link: &Link, direction: Direction) -> Result<Arc<Channel>> {
    let key = (link.ns().id(), link.index(), direction);
    let lock = || CHANNELS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(channel) = registered(&lock(), &key) {
        return Ok(channel);
    }
    // One diversion of a link direction is made at a time, so two callers never divert it
    // twice; different links are diverted concurrently (a network's members are built so).
    type Making = std::collections::HashMap<Key, Arc<futures::lock::Mutex<()>>>;
    static MAKING: Mutex<Option<Making>> = Mutex::new(None);
    let slot = MAKING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Making::new)
        .entry(key)
        .or_default()
        .clone();
    struct Done(Key, Arc<futures::lock::Mutex<()>>);
    impl Drop for Done {
        fn drop(&mut self) {
            let mut making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
            // The map's reference and this one: nobody else waits for this key.
            if Arc::strong_count(&self.1) <= 2 {
                if let Some(map) = making.as_mut() {
                    map.remove(&self.0);
                }
            }
        }
    }
    let done = Done(key, slot);
    let _making = done.1.lock().await;
    if let Some(channel) = registered(&lock(), &key) {
        return Ok(channel);
    }
    let ns = Namespace::view(link.ns().clone());
    let label = || link.label();
    let diversion = divert(&ns, link.index(), direction == Direction::Inbound, &label).await?;
    let mut channels = lock();
    static SEED: AtomicU64 = AtomicU64::new(0);
    let seed = crate::sys::monotonic_ns() ^ SEED.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    let shared = Arc::new(Shared::default());
    let tap = diversion
        .tap
        .try_clone()
        .map_err(|e| Error::os("start the relay for", link.label(), e))?;
    let left = diversion.left.clone();
    let handle = relay::relay(diversion, shared.clone(), seed)
        .map_err(|e| Error::os("start the relay for", link.label(), e))?;
    let channel = Arc::new(Channel {
        shared,
        left,
        handle: Mutex::new(Some(handle)),
        tap,
    });
    channels.retain(|(_, c)| c.strong_count() > 0);
    channels.push((key, Arc::downgrade(&channel)));
    Ok(channel)
}

/// An impairment in force on one direction of a link; dropping it takes the impairment away
/// (see [`Link::impair`]).
pub struct Impaired {
    link: Link,
    direction: Direction,
    /// The impairment in force (changed through `&self`, so a guard held inside another
    /// object — a network's member — can be changed too).
    impairment: Mutex<Impairment>,
    state: State,
}

enum State {
    Netem,
    UserSpace(Arc<Channel>),
    Gone,
}

impl fmt::Debug for Impaired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impaired")
            .field("link", &self.link)
            .field("direction", &self.direction)
            .field("impairment", &self.impairment().to_string())
            .field("backend", &self.backend())
            .finish()
    }
}

impl fmt::Display for Impaired {
    /// `delay 50ms loss 20% on interface "eth0" in namespace "ns1", outbound (user space)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}, {} ({})",
            self.impairment(),
            self.link.label(),
            self.direction,
            self.backend()
        )
    }
}

fn netem_missing(link: &Link) -> Error {
    Error::Unsupported {
        op: "impair",
        object: link.label(),
        reason: "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, module sch_netem): use Backend::Auto or Backend::UserSpace".into(),
    }
}

impl Link {
    /// Makes this link misbehave in one `direction` as `impairment` says, until the returned
    /// guard is dropped; [`Impaired::set`] changes it meanwhile.
    ///
    /// The backend is the kernel's `netem` qdisc for [`Direction::Outbound`] where the kernel
    /// has it, else (and for [`Direction::Inbound`]) the user-space relay; see the
    /// [`impair`](crate::impair) module. [`Impaired::backend`] says which, and so do its
    /// `Display` and the `netns_kit::impair` trace.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an impossible impairment (a jitter without a delay, ...);
    /// [`Error::AlreadyExists`] when this direction is impaired already, or has a root qdisc
    /// of the user's; [`Error::Unsupported`] when neither backend can work here (no netem,
    /// and no privilege to load the relay's eBPF programs), naming what would make it
    /// possible. Nothing is left behind on error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use netns_kit::impair::{Direction, Impairment, Percent};
    ///
    /// # fn demo(link: &netns_kit::Link) -> netns_kit::Result<()> {
    /// let slow = Impairment::new().delay(Duration::from_millis(50)).loss(Percent::new(2.0)?);
    /// let guard = link.impair_blocking(Direction::Outbound, &slow)?;
    /// println!("{guard}"); // delay 50ms loss 2% on interface ... (user space)
    /// drop(guard); // the link is as before
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn impair(&self, direction: Direction, impairment: &Impairment) -> Result<Impaired> {
        let object = || format!("impairment of {}, {direction}", self.label());
        impairment.validate(object)?;
        let backend = impairment.backend;
        let inbound = direction == Direction::Inbound;
        if backend == Backend::Netem && inbound {
            return Err(Error::Unsupported {
                op: "impair",
                object: object(),
                reason: "netem acts on what an interface sends: impair the other end's outbound direction, or use Backend::Auto or Backend::UserSpace".into(),
            });
        }
        let try_netem = match backend {
            Backend::Netem => true,
            Backend::Auto => !inbound && !NETEM_MISSING.load(Ordering::Relaxed),
            _ => false,
        };
        if try_netem {
            match self.netem(Verb::Add, impairment).await {
                Ok(()) => return Ok(self.guard(direction, impairment, State::Netem)),
                Err(e) if e.errno() == Some(nix::libc::ENOENT) => {
                    NETEM_MISSING.store(true, Ordering::Relaxed);
                    tracing::debug!(target: "netns_kit::impair", "no netem qdisc in this kernel: impairing in user space");
                    if backend == Backend::Netem {
                        return Err(netem_missing(self));
                    }
                }
                Err(Error::AlreadyExists {
                    op,
                    object,
                    detail,
                    source,
                    ..
                }) => {
                    return Err(Error::AlreadyExists {
                        op,
                        object,
                        detail,
                        hint: Some(
                            "its root qdisc is set already (an impairment, or the user's own): change an impairment with Impaired::set",
                        ),
                        source,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let channel = channel(self, direction).await?;
        let mut taken = false;
        channel.shared.update(|s| {
            taken = s.impaired;
            s.impaired = true;
        });
        if taken {
            return Err(Error::AlreadyExists {
                op: "impair",
                object: object(),
                detail: None,
                hint: Some(
                    "this direction is impaired already: change it with Impaired::set, or drop that guard first",
                ),
                source: std::io::Error::from_raw_os_error(nix::libc::EEXIST),
            });
        }
        channel.impair(Some(impairment));
        Ok(self.guard(direction, impairment, State::UserSpace(channel)))
    }

    /// The blocking form of [`impair`](Self::impair): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn impair_blocking(
        &self,
        direction: Direction,
        impairment: &Impairment,
    ) -> Result<Impaired> {
        crate::netlink::block_on(self.impair(direction, impairment))
    }

    fn guard(&self, direction: Direction, impairment: &Impairment, state: State) -> Impaired {
        let guard = Impaired {
            link: self.dup(),
            direction,
            impairment: Mutex::new(impairment.clone()),
            state,
        };
        tracing::debug!(target: "netns_kit::impair", "impaired: {guard}");
        guard
    }

    /// Sends netem's request for this link.
    async fn netem(&self, verb: Verb, impairment: &Impairment) -> Result<()> {
        let label = self.label();
        let (msg, flags) = netem::request(self.index(), verb, impairment, Psched::here())
            .ok_or_else(|| {
                Error::invalid(
                    label.clone(),
                    "a time is too long for netem (over about 274 s)",
                )
            })?;
        let nl = self.ns().nl().await?;
        nl.send(RouteNetlinkMessage::NewQueueDiscipline(msg), flags)
            .ack()
            .await
            .map_err(|e| e.into_error("impair", label))
    }
}

impl Impaired {
    /// The mechanism in force: [`Backend::Netem`] or [`Backend::UserSpace`].
    pub fn backend(&self) -> Backend {
        match self.state {
            State::Netem => Backend::Netem,
            _ => Backend::UserSpace,
        }
    }

    /// The direction impaired.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The impairment in force.
    pub fn impairment(&self) -> Impairment {
        self.impairment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the user-space relay did to the frames so far (`None` with netem, whose counters
    /// `tc -s qdisc` shows).
    pub fn counters(&self) -> Option<Counters> {
        match &self.state {
            State::UserSpace(c) => Some(c.shared.counters()),
            _ => None,
        }
    }

    /// Changes the impairment in force, on the same backend (frames already delayed keep
    /// their departure times, as with `tc qdisc change`). Its [`Backend`] choice is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an impossible impairment (the old one stays); the kernel's
    /// error for netem.
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set(&self, impairment: &Impairment) -> Result<()> {
        impairment
            .validate(|| format!("impairment of {}, {}", self.link.label(), self.direction))?;
        match &self.state {
            State::Netem => self.link.netem(Verb::Change, impairment).await?,
            State::UserSpace(c) => c.impair(Some(impairment)),
            State::Gone => {}
        }
        *self.impairment.lock().unwrap_or_else(|e| e.into_inner()) = impairment.clone();
        tracing::debug!(target: "netns_kit::impair", "changed: {self}");
        Ok(())
    }

    /// The blocking form of [`set`](Self::set): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn set_blocking(&self, impairment: &Impairment) -> Result<()> {
        crate::netlink::block_on(self.set(impairment))
    }

    /// Takes the impairment away now and reports errors (dropping does the same, silently).
    /// A link whose namespace is gone counts as cleared.
    ///
    /// # Errors
    ///
    /// The kernel's error when netem's qdisc cannot be removed.
    pub fn clear(mut self) -> Result<()> {
        self.take_away()
    }

    /// For a network tearing down the member this impairment is on, after it deleted the
    /// member's link and closed the namespace it owned: when this guard (and any other on the
    /// same link) goes, its TAP is left to the kernel to delete with the namespace if nothing
    /// outside the crate holds that (see `divert::Diversion`).
    pub(crate) fn leave_to_namespace(&self) {
        if let State::UserSpace(channel) = &self.state {
            channel.left.store(true, Ordering::Release);
        }
    }

    fn take_away(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Netem => {
                let label = self.link.label();
                let msg = RouteNetlinkMessage::DelQueueDiscipline(netem::delete_request(
                    self.link.index(),
                ));
                self.link
                    .ns()
                    .blocking_one(msg, "clear the impairment of", || label)
            }
            State::UserSpace(channel) => {
                channel.impair(None);
                drop(channel);
                Ok(())
            }
            State::Gone => Ok(()),
        }
    }
}

impl Drop for Impaired {
    fn drop(&mut self) {
        if let Err(e) = self.take_away() {
            tracing::warn!(target: "netns_kit::impair", "{e}");
        }
    }
}
