//! The relay: frames a [diversion](super::divert) hands to user space go through an
//! [engine](super::engine) and back into the link; packet captures are read here too.
//!
//! # Threads
//!
//! Every diverted link and every capture of the process is served by a small pool of relay
//! threads (`netns-kit-relay`), at most one per CPU and never more than [`MAX_THREADS`]: a lab
//! with a hundred impaired links runs on the same few threads as one with two. A new link goes
//! to the thread serving the fewest; a thread whose last link went away exits, so a process
//! that impairs nothing has no relay thread.
//!
//! Each thread waits in `epoll(7)` on its links' TAP devices and capture sockets, an `eventfd`
//! that brings it new links, and one `timerfd` armed (with `TFD_TIMER_ABSTIME`, nanosecond
//! resolution) for the earliest frame any of its engines holds back, so a 50 ms delay is 50 ms
//! and not "the next millisecond tick after". Frames are read without blocking until the
//! device is empty (at most [`BURST`] per wake-up and device, for fairness), so a burst leaves
//! the device's own queue at once and waits in the engine's bounded queue instead.
//!
//! Removing a link is a command the thread answers once it has closed the diversion, so when
//! the guard's `Drop` returns the link is direct again and nothing of it is left.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufWriter, Write},
    net::IpAddr,
    os::fd::{AsFd, OwnedFd},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

use nix::{
    fcntl::{FcntlArg, OFlag, fcntl},
    sys::{
        epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
        eventfd::{EfdFlags, EventFd},
        time::TimeSpec,
        timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
    },
};

use super::{
    Impairment,
    divert::Diversion,
    engine::{Counters, Engine},
};
use crate::sys;

/// The most relay threads a process runs.
pub(crate) const MAX_THREADS: usize = 4;

/// The most frames read from one device per wake-up.
const BURST: usize = 256;

/// The `virtio_net_hdr` in front of each frame of a TAP opened with `IFF_VNET_HDR`.
pub(crate) const VNET_HDR: usize = 10;

/// What a diverted link should do now; changed by the guards, read by the relay thread.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// Whether an [`Impaired`](super::Impaired) guard owns `impairment`.
    pub(crate) impaired: bool,
    pub(crate) impairment: Impairment,
    /// Frames to drop before the engine sees them (partitions), by who set them.
    pub(crate) blocks: Vec<(u64, Block)>,
}

/// What a partition drops of the frames a link carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// Everything.
    All,
    /// IP packets (and ARP requests) to these addresses.
    To(Vec<IpAddr>),
}

impl Block {
    fn drops(&self, frame: &[u8]) -> bool {
        match self {
            Block::All => true,
            Block::To(addresses) => destination(frame).is_some_and(|d| addresses.contains(&d)),
        }
    }
}

/// The IPv4/IPv6 destination of an Ethernet frame (behind the vnet header), or the address an
/// ARP packet asks for.
fn destination(frame: &[u8]) -> Option<IpAddr> {
    let eth = frame.get(VNET_HDR..)?;
    let mut kind = u16::from_be_bytes([*eth.get(12)?, *eth.get(13)?]);
    let mut l3 = 14;
    if kind == 0x8100 {
        kind = u16::from_be_bytes([*eth.get(16)?, *eth.get(17)?]);
        l3 = 18;
    }
    let p = eth.get(l3..)?;
    let bytes = |at: usize, n: usize| p.get(at..at + n);
    match kind {
        0x0800 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes(16, 4)?).ok()?)),
        0x86dd => Some(IpAddr::from(<[u8; 16]>::try_from(bytes(24, 16)?).ok()?)),
        0x0806 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes(24, 4)?).ok()?)),
        _ => None,
    }
}

/// State shared by a link's guards and the relay thread serving it.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    settings: Mutex<Settings>,
    /// Bumped on every change of `settings`, so the thread re-reads them only then.
    generation: AtomicU64,
    counters: Mutex<Counters>,
}

impl Shared {
    /// Changes the settings; the relay applies them before the next frame it reads.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Settings)) {
        change(&mut lock(&self.settings));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// What the relay counted so far.
    pub(crate) fn counters(&self) -> Counters {
        *lock(&self.counters)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a relay thread serves.
enum Job {
    Relay {
        diversion: Diversion,
        shared: Arc<Shared>,
        seed: u64,
    },
    Capture {
        socket: OwnedFd,
        out: BufWriter<File>,
        packets: Arc<AtomicU64>,
    },
}

enum Command {
    /// Take the job; the reply says whether it could be watched.
    Add(u64, Job, mpsc::Sender<io::Result<()>>),
    /// Remove the job; the reply carries a capture's flush result and the job's diversion, to
    /// be undone by the caller (closing devices waits for the kernel, which would hold up every
    /// other link the thread serves).
    Remove(u64, mpsc::Sender<Removed>),
    Exit,
}

/// What a removed job hands back.
type Removed = (io::Result<()>, Option<Diversion>);

struct WorkerEntry {
    id: u64,
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    jobs: usize,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct PoolState {
    workers: Vec<WorkerEntry>,
    next_id: u64,
}

static POOL: Mutex<PoolState> = Mutex::new(PoolState {
    workers: Vec::new(),
    next_id: 1,
});

/// The most threads this process uses: its CPUs, at most [`MAX_THREADS`].
fn thread_limit() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
}

/// A job on a relay thread; dropping it removes the job there and waits until it is gone.
#[derive(Debug)]
pub(crate) struct Handle {
    worker: u64,
    job: u64,
}

impl Handle {
    /// Removes the job now; the error is a capture's failed flush.
    pub(crate) fn remove(mut self) -> io::Result<()> {
        let result = remove(self.worker, self.job);
        self.job = 0;
        result
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.job != 0 {
            let _ = remove(self.worker, self.job);
        }
    }
}

/// Relays `diversion` with `shared`'s settings on a relay thread.
pub(crate) fn relay(diversion: Diversion, shared: Arc<Shared>, seed: u64) -> io::Result<Handle> {
    fcntl(&diversion.tap, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    add(Job::Relay {
        diversion,
        shared,
        seed,
    })
}

/// Writes what `socket` (a packet socket, non-blocking) receives to `out` as pcap, on a relay
/// thread; `packets` counts what was written.
pub(crate) fn capture(
    socket: OwnedFd,
    mut out: BufWriter<File>,
    packets: Arc<AtomicU64>,
) -> io::Result<Handle> {
    super::pcap::write_header(&mut out)?;
    add(Job::Capture {
        socket,
        out,
        packets,
    })
}

fn add(job: Job) -> io::Result<Handle> {
    let (reply, answer) = mpsc::channel();
    let (worker, id) = {
        let mut pool = lock(&POOL);
        let id = pool.next_id;
        pool.next_id += 1;
        let least = pool
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.jobs)
            .map(|(i, w)| (i, w.jobs));
        let at = match least {
            Some((i, jobs)) if jobs == 0 || pool.workers.len() >= thread_limit() => i,
            _ => {
                let worker = spawn_worker(id)?;
                pool.workers.push(worker);
                pool.workers.len() - 1
            }
        };
        let worker = &mut pool.workers[at];
        worker
            .commands
            .send(Command::Add(id, job, reply))
            .map_err(|_| io::Error::other("the relay thread is gone"))?;
        worker.wake.write(1)?;
        worker.jobs += 1;
        (worker.id, id)
    };
    let handle = Handle { worker, job: id };
    // Dropping the handle on error removes the job's count again (and the thread if idle).
    answer
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the relay thread is gone")))?;
    Ok(handle)
}

fn spawn_worker(id: u64) -> io::Result<WorkerEntry> {
    let wake = Arc::new(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    let (commands, inbox) = mpsc::channel();
    let thread = {
        let wake = wake.clone();
        std::thread::Builder::new()
            .name("netns-kit-relay".into())
            .spawn(move || {
                if let Err(e) = Worker::new(wake, inbox).and_then(Worker::run) {
                    // Its links are direct again (their diversions closed with it); later
                    // jobs go to another thread.
                    lock(&POOL).workers.retain(|w| w.id != id);
                    tracing::warn!(target: "netns_kit::impair", "relay thread failed: {e}");
                }
            })?
    };
    Ok(WorkerEntry {
        id,
        commands,
        wake,
        jobs: 0,
        thread: Some(thread),
    })
}

fn remove(worker: u64, job: u64) -> io::Result<()> {
    let (reply, answer) = mpsc::channel();
    let exiting = {
        let mut pool = lock(&POOL);
        let Some(at) = pool.workers.iter().position(|w| w.id == worker) else {
            return Ok(());
        };
        let entry = &mut pool.workers[at];
        let _ = entry.commands.send(Command::Remove(job, reply));
        entry.jobs = entry.jobs.saturating_sub(1);
        if entry.jobs == 0 {
            let _ = entry.commands.send(Command::Exit);
            let _ = entry.wake.write(1);
            Some(pool.workers.swap_remove(at))
        } else {
            let _ = entry.wake.write(1);
            None
        }
    };
    // The answer comes once the thread no longer uses the job's devices (or is gone).
    let (result, diversion) = answer.recv().unwrap_or((Ok(()), None));
    drop(diversion);
    if let Some(mut entry) = exiting {
        if let Some(thread) = entry.thread.take() {
            let _ = thread.join();
        }
    }
    result
}

/// A relay thread's state.
struct Worker {
    epoll: Epoll,
    wake: Arc<EventFd>,
    timer: TimerFd,
    inbox: mpsc::Receiver<Command>,
    jobs: HashMap<u64, Running>,
    buf: Vec<u8>,
}

/// A job as the thread runs it.
enum Running {
    Relay {
        diversion: Diversion,
        shared: Arc<Shared>,
        engine: Box<Engine>,
        generation: u64,
        blocks: Vec<Block>,
    },
    Capture {
        socket: OwnedFd,
        out: BufWriter<File>,
        packets: Arc<AtomicU64>,
    },
}

const WAKE: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;

impl Worker {
    fn new(wake: Arc<EventFd>, inbox: mpsc::Receiver<Command>) -> io::Result<Worker> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
        )?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        epoll.add(timer.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;
        Ok(Worker {
            epoll,
            wake,
            timer,
            inbox,
            jobs: HashMap::new(),
            buf: vec![0; 1 << 17],
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for event in &events[..n] {
                match event.data() {
                    WAKE => {
                        let _ = self.wake.read();
                        if !self.commands()? {
                            return Ok(());
                        }
                    }
                    TIMER => {
                        let _ = nix::unistd::read(&self.timer, &mut [0u8; 8]);
                    }
                    job if event
                        .events()
                        .intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) =>
                    {
                        // The device went away underneath (deleted from outside): stop
                        // watching it rather than spin; the job stays until its guard goes.
                        self.unwatch(job);
                    }
                    job => self.readable(job),
                }
            }
            self.send_due()?;
        }
    }

    /// Takes the commands waiting; false on `Exit`.
    fn commands(&mut self) -> io::Result<bool> {
        while let Ok(command) = self.inbox.try_recv() {
            match command {
                Command::Add(id, job, reply) => {
                    let running = match job {
                        Job::Relay {
                            diversion,
                            shared,
                            seed,
                        } => Running::Relay {
                            diversion,
                            shared,
                            engine: Box::new(
                                Engine::new(Impairment::default(), seed).with_header(VNET_HDR),
                            ),
                            generation: u64::MAX,
                            blocks: Vec::new(),
                        },
                        Job::Capture {
                            socket,
                            out,
                            packets,
                        } => Running::Capture {
                            socket,
                            out,
                            packets,
                        },
                    };
                    let fd = match &running {
                        Running::Relay { diversion, .. } => diversion.tap.as_fd(),
                        Running::Capture { socket, .. } => socket.as_fd(),
                    };
                    let watched = self
                        .epoll
                        .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, id))
                        .map_err(io::Error::from);
                    if watched.is_ok() {
                        self.jobs.insert(id, running);
                    }
                    let _ = reply.send(watched);
                }
                Command::Remove(id, reply) => {
                    let removed = match self.jobs.remove(&id) {
                        Some(Running::Capture {
                            socket,
                            mut out,
                            packets,
                        }) => {
                            // What is still in the socket is part of the capture (bounded:
                            // a flood does not hold the thread).
                            drain_capture(&socket, &mut out, &mut self.buf, 65_536, Some(&packets));
                            let _ = self.epoll.delete(socket.as_fd());
                            (out.flush(), None)
                        }
                        Some(Running::Relay { diversion, .. }) => {
                            let _ = self.epoll.delete(diversion.tap.as_fd());
                            (Ok(()), Some(diversion))
                        }
                        None => (Ok(()), None),
                    };
                    let _ = reply.send(removed);
                }
                Command::Exit => return Ok(false),
            }
        }
        Ok(true)
    }

    fn unwatch(&mut self, id: u64) {
        let fd = match self.jobs.get(&id) {
            Some(Running::Relay { diversion, .. }) => diversion.tap.as_fd(),
            Some(Running::Capture { socket, .. }) => socket.as_fd(),
            None => return,
        };
        let _ = self.epoll.delete(fd);
    }

    fn readable(&mut self, id: u64) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match job {
            Running::Capture {
                socket,
                out,
                packets,
            } => drain_capture(socket, out, &mut self.buf, BURST, Some(packets)),
            Running::Relay {
                diversion,
                shared,
                engine,
                generation,
                blocks,
            } => {
                refresh(shared, engine, generation, blocks);
                let now = sys::monotonic_ns();
                for _ in 0..BURST {
                    match nix::unistd::read(&diversion.tap, &mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let frame = &self.buf[..n];
                            if blocks.iter().any(|b| b.drops(frame)) {
                                engine.counters.received += 1;
                                engine.counters.lost += 1;
                            } else if engine.passes_through() {
                                // Nothing to do to it: straight back, no copy, no queue.
                                let _ = nix::unistd::write(&diversion.tap, frame);
                                engine.passed();
                            } else {
                                engine.push(now, frame.to_vec());
                            }
                        }
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => break,
                    }
                }
                *lock(&shared.counters) = engine.counters;
            }
        }
    }

    /// Sends what is due and arms the timer for what is next.
    fn send_due(&mut self) -> io::Result<()> {
        let now = sys::monotonic_ns();
        let mut next: Option<u64> = None;
        for job in self.jobs.values_mut() {
            let Running::Relay {
                diversion,
                shared,
                engine,
                generation,
                blocks,
            } = job
            else {
                continue;
            };
            refresh(shared, engine, generation, blocks);
            let mut sent = false;
            while let Some(frame) = engine.pop_due(now) {
                // A frame the device refuses (its queue full, the link gone) is lost, as on
                // a wire.
                let _ = nix::unistd::write(&diversion.tap, &frame);
                sent = true;
            }
            if sent {
                *lock(&shared.counters) = engine.counters;
            }
            if let Some(due) = engine.next_due() {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        match next {
            Some(due) => self.timer.set(
                Expiration::OneShot(TimeSpec::from_duration(std::time::Duration::from_nanos(
                    due.max(1),
                ))),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )?,
            None => self.timer.unset()?,
        }
        Ok(())
    }
}

/// Applies the guards' latest settings to a relayed link, if they changed.
fn refresh(shared: &Shared, engine: &mut Engine, generation: &mut u64, blocks: &mut Vec<Block>) {
    let now = shared.generation.load(Ordering::Acquire);
    if now == *generation {
        return;
    }
    *generation = now;
    let settings = lock(&shared.settings);
    engine.reconfigure(settings.impairment.clone());
    *blocks = settings.blocks.iter().map(|(_, b)| b.clone()).collect();
}

/// Reads up to `max` packets from a capture socket into the pcap file.
fn drain_capture(
    socket: &OwnedFd,
    out: &mut BufWriter<File>,
    buf: &mut [u8],
    max: usize,
    packets: Option<&Arc<AtomicU64>>,
) {
    let mut count = 0;
    while count < max {
        match nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            buf,
            nix::sys::socket::MsgFlags::MSG_TRUNC | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(len) => {
                let kept = len.min(buf.len());
                if super::pcap::write_record(out, &buf[..kept], len).is_err() {
                    return;
                }
                count += 1;
                if let Some(p) = packets {
                    p.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        impair::{Loss, Percent, divert::divert, system_ping},
        link::veth::VethPair,
        netlink::block_on,
        netns::Namespace,
    };

    #[test]
    fn destinations_are_read_from_ipv4_ipv6_and_arp() {
        let mut v4 = vec![0u8; VNET_HDR + 14 + 20];
        v4[VNET_HDR + 12..VNET_HDR + 14].copy_from_slice(&[0x08, 0x00]);
        v4[VNET_HDR + 14 + 16..].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(destination(&v4), Some("10.1.2.3".parse().unwrap()));
        let mut v6 = vec![0u8; VNET_HDR + 14 + 40];
        v6[VNET_HDR + 12..VNET_HDR + 14].copy_from_slice(&[0x86, 0xdd]);
        v6[VNET_HDR + 14 + 24] = 0xfd;
        v6[VNET_HDR + 14 + 39] = 2;
        assert_eq!(destination(&v6), Some("fd00::2".parse().unwrap()));
        let mut arp = vec![0u8; VNET_HDR + 14 + 28];
        arp[VNET_HDR + 12..VNET_HDR + 14].copy_from_slice(&[0x08, 0x06]);
        arp[VNET_HDR + 14 + 24..].copy_from_slice(&[10, 0, 0, 9]);
        assert_eq!(destination(&arp), Some("10.0.0.9".parse().unwrap()));
        assert_eq!(destination(&v4[..VNET_HDR + 20]), None, "a short frame");
    }

    /// A delay on A's side shows in the system `ping`'s round trip; 100 % loss stops it; once
    /// the relay is gone the link is direct again.
    #[test]
    fn a_relayed_link_is_delayed_or_cut_as_its_settings_say() {
        let (a, b) = match (Namespace::new_blocking(), Namespace::new_blocking()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) if e.is_permission_denied() => return,
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        };
        let cable = VethPair::builder("nkr0", "nkr1")
            .namespace(&a)
            .address("10.82.0.1/24")
            .peer_namespace(&b)
            .peer_address("10.82.0.2/24")
            .create_blocking()
            .unwrap();
        let to_b = "10.82.0.2";
        let direct = system_ping(&a, to_b).expect("direct ping");
        let shared = Arc::new(Shared::default());
        shared.update(|s| s.impairment.delay = Duration::from_millis(50));
        let diversion = block_on(divert(&a, cable.link().index(), false, &|| {
            "test link".into()
        }))
        .unwrap();
        let handle = relay(diversion, shared.clone(), 1).unwrap();
        let rtt = system_ping(&a, to_b).expect("ping with 50 ms one way");
        assert!(
            rtt >= Duration::from_millis(50) && rtt < Duration::from_millis(60),
            "round trip {rtt:?} with 50 ms one way (direct: {direct:?})"
        );
        // The relay publishes its counters after it has sent: the reply can be back first.
        let counted = |what: fn(&Counters) -> u64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while what(&shared.counters()) == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            what(&shared.counters()) >= 1
        };
        assert!(counted(|c| c.sent), "{:?}", shared.counters());
        shared.update(|s| {
            s.impairment = Impairment {
                loss: Loss::Random {
                    p: Percent::new(100.0).unwrap(),
                    correlation: Percent::default(),
                },
                ..Impairment::default()
            }
        });
        assert_eq!(system_ping(&a, to_b), None, "a reply through 100 % loss");
        assert!(counted(|c| c.lost), "{:?}", shared.counters());
        handle.remove().unwrap();
        let again = system_ping(&a, to_b).expect("ping once the relay is gone");
        assert!(again < Duration::from_millis(20), "{again:?}");
    }
}
