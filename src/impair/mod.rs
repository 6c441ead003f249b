//! Networks that misbehave: delay and jitter, loss (random, correlated, Gilbert–Elliott),
//! duplication, reordering, corruption, a rate with a queue limit — per link and direction,
//! partitions between hosts, and packet captures, all as guards that undo themselves.
//!
//! ```no_run
//! use std::time::Duration;
//! use netns_kit::impair::{Direction, Impairment, Percent};
//!
//! # fn demo(link: &netns_kit::Link) -> netns_kit::Result<()> {
//! let wan = Impairment::new()
//!     .delay(Duration::from_millis(40))
//!     .jitter(Duration::from_millis(4))
//!     .loss(Percent::new(1.0)?);
//! let guard = link.impair_blocking(Direction::Outbound, &wan)?;
//! println!("{guard}"); // delay 40ms 4ms loss 1% on interface "eth0" in ..., outbound (netem)
//! let cut = link.cut_blocking()?; // a partition: silently dropped, the link stays up
//! cut.heal();
//! let capture = link.capture_blocking("/tmp/eth0.pcap")?; // tcpdump -r reads it
//! # Ok(()) }
//! ```
//!
//! | You want | Call |
//! |---|---|
//! | what an interface sends (or receives) to misbehave | [`Link::impair`](crate::Link::impair) → [`Impaired`] |
//! | a network's member impaired from its first packet | [`MemberSpec::impair`](crate::MemberSpec::impair) |
//! | change it later | [`Impaired::set`] |
//! | two sets of hosts unable to reach each other | [`partition`] → [`Partition`] |
//! | one link cut | [`Link::cut`](crate::Link::cut) |
//! | a pcap of what a link carried | [`Link::capture`](crate::Link::capture) → [`Capture`] |
//! | the same per host in a test lab | [`Lab::impair`](crate::lab::Lab::impair), [`Lab::partition`](crate::lab::Lab::partition), [`Lab::capture`](crate::lab::Lab::capture), `[impair.HOST]` in a [topology file](crate::lab::Topology) |
//!
//! Every link the crate makes has a [`Link`](crate::Link) handle: a veth end
//! ([`VethPair::link`](crate::VethPair::link)), a member's interface
//! ([`Member::link`](crate::Member::link)), a direct link's ends, a lab host's interfaces.
//! Values are typed ([`Duration`], [`Percent`], [`Rate`]) and mean what they mean in
//! tc-netem(8); what no backend can do (a jitter without a delay, 101 %) is refused with
//! [`Error::InvalidInput`] before anything is touched.
//!
//! # Two backends
//!
//! [`Backend::Auto`] (the default) picks, and [`Impaired::backend`], the guard's `Display` and
//! a `netns_kit::impair` trace event say which it picked:
//!
//! * **netem**: the kernel's `netem` qdisc as the interface's root qdisc, set over rtnetlink (no
//!   `tc` process) — for [`Direction::Outbound`] where the kernel has it. Its messages are the
//!   ones `tc qdisc add … netem …` sends, byte for byte (checked against 28 `strace` captures
//!   of `tc` in `tests/fixtures/netem/`, since the kernel this crate is developed on has no
//!   netem). It needs `CAP_NET_ADMIN` over the interface's namespace, which a user namespace
//!   that owns the namespace has.
//! * **user space**: where the kernel has no netem (the first refusal is remembered), for
//!   [`Direction::Inbound`], or when asked. The interface's frames are diverted in the kernel
//!   to a TAP device beside it and relayed by a thread of this crate, which applies netem's own
//!   rules (the same order of decisions, correlated draws, `tabledist` jitter, rate accounting
//!   and queue limit) and sends each frame on as if the interface had.
//!
//! # The user-space path
//!
//! Why divert an existing link rather than build impairable links (two TAPs) from the start:
//! "set when the link is created or changed at any time later" then holds for every link the
//! crate makes, a runtime's included, and an unimpaired link pays nothing — it is a plain veth
//! until the first impairment. The diversion is two tiny eBPF programs: on the interface,
//! "redirect to the TAP unless the frame is marked"; on the TAP, "mark, and redirect back".
//! Where the interface's namespace may outlive the process, the interface's program is attached
//! with TCX (kernel 6.6+), which lives exactly as long as its file descriptor, so the link is
//! direct again even if the process is killed; in an anonymous namespace the process made,
//! which dies with it, a classic `clsact` filter does it at a fraction of the cost (a TCX attach
//! waits for an RCU grace period: 12–20 ms here, against about 1.4 ms for a whole diversion
//! with classic filters).
//!
//! * **Threads.** All diverted links and captures of a process share at most one relay thread
//!   per CPU, never more than four (`netns-kit-relay`); a hundred impaired links run on the
//!   same threads as one. A thread exits when its last link goes. Timers are `timerfd`s with
//!   nanosecond resolution, so a delay is not rounded to a millisecond tick.
//! * **Throughput.** The TAP carries `virtio_net_hdr`s with checksum and segmentation offloads,
//!   so a 64 KiB TCP segment crosses in one read. Options that draw per packet (loss,
//!   duplication, corruption, reordering) turn the offloads off, so each frame is one packet on
//!   the wire, as netem sees it.
//! * **Memory.** The queue is bounded as netem's is, by `limit` frames (1000 by default); a
//!   full queue drops. With offloads a frame may be a 64 KiB segment, so a direction holds at
//!   most `limit` × 64 KiB.
//! * **Privileges.** Loading the eBPF programs needs `CAP_BPF` (or `CAP_SYS_ADMIN`) in the
//!   initial user namespace — root. In a user namespace (rootless) only the netem backend can
//!   work, on a kernel that has netem; without it, [`Link::impair`](crate::Link::impair) fails
//!   with [`Error::Unsupported`] saying so. The TAP needs read and write access to
//!   `/dev/net/tun`.
//!
//! Partitions and [`Link::cut`](crate::Link::cut) use the same relay (a frame to the other
//! side is dropped before the impairment sees it), so they need root as well; captures need
//! only `CAP_NET_RAW` where the link is.

pub(crate) mod capture;
pub(crate) mod divert;
pub(crate) mod engine;
mod guard;
pub(crate) mod netem;
pub(crate) mod parse;
mod partition;
mod pcap;
pub(crate) mod relay;

pub use capture::Capture;
pub use engine::Counters;
pub use guard::Impaired;
pub(crate) use partition::host_interfaces;
pub use partition::{Partition, partition, partition_blocking};

use std::{fmt, time::Duration};

use crate::error::{Error, Result};

/// A probability, 0 to 100 %. Parsed from `"20%"`, `"0.5%"` or `"20"`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(f64);

impl Percent {
    /// `value` percent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] outside 0..=100 (and for NaN).
    pub fn new(value: f64) -> Result<Percent> {
        if (0.0..=100.0).contains(&value) {
            Ok(Percent(value))
        } else {
            Err(Error::invalid(
                format!("percentage {value}"),
                "a probability is from 0 to 100 %",
            ))
        }
    }

    /// The value, 0 to 100.
    pub fn get(self) -> f64 {
        self.0
    }

    /// As the kernel takes a probability: 0..=100 % scaled to 0..=`u32::MAX`, rounded to the
    /// nearest (ties to even), as `tc` does.
    pub(crate) fn scaled(self) -> u32 {
        (self.0 / 100.0 * f64::from(u32::MAX)).round_ties_even() as u32
    }

    pub(crate) fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl std::str::FromStr for Percent {
    type Err = Error;
    fn from_str(text: &str) -> Result<Percent> {
        Percent::new(parse::percent(text)?)
    }
}

/// A link rate in bits per second, with the per-packet overheads netem can account for
/// (tc-netem(8) `rate`). Parsed from `"10mbit"`, `"1gbit"`, `"500kbit"`, `"64000bit"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub(crate) bits_per_second: u64,
    pub(crate) packet_overhead: i32,
    pub(crate) cell_size: u32,
    pub(crate) cell_overhead: i32,
}

impl Rate {
    /// `bits_per_second`, no overheads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] under 8 bit/s (netem counts bytes).
    pub fn new(bits_per_second: u64) -> Result<Rate> {
        if bits_per_second < 8 {
            return Err(Error::invalid(
                format!("rate {bits_per_second} bit/s"),
                "a rate is at least 8 bit/s (one byte per second)",
            ));
        }
        Ok(Rate {
            bits_per_second,
            packet_overhead: 0,
            cell_size: 0,
            cell_overhead: 0,
        })
    }

    /// The rate in bits per second.
    pub fn bits_per_second(self) -> u64 {
        self.bits_per_second
    }

    /// Bytes added to (or, negative, removed from) each packet's size before its time on the
    /// wire is computed.
    pub fn packet_overhead(mut self, bytes: i32) -> Rate {
        self.packet_overhead = bytes;
        self
    }

    /// A link layer of `size`-byte cells with `overhead` bytes each (ATM: 53 and 5): packets
    /// take whole cells.
    pub fn cells(mut self, size: u32, overhead: i32) -> Rate {
        self.cell_size = size;
        self.cell_overhead = overhead;
        self
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bits_per_second;
        match b {
            _ if b >= 1_000_000_000 && b % 1_000_000_000 == 0 => {
                write!(f, "{}gbit", b / 1_000_000_000)
            }
            _ if b >= 1_000_000 && b % 1_000_000 == 0 => write!(f, "{}mbit", b / 1_000_000),
            _ if b >= 1_000 && b % 1_000 == 0 => write!(f, "{}kbit", b / 1_000),
            _ => write!(f, "{b}bit"),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = Error;
    fn from_str(text: &str) -> Result<Rate> {
        Rate::new(parse::rate(text)?)
    }
}

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Loss {
    /// None.
    #[default]
    None,
    /// Each packet with probability `p`; `correlation` ties each draw to the previous one
    /// (tc-netem(8) `loss random P CORRELATION`).
    Random {
        /// The chance of each packet.
        p: Percent,
        /// How much a draw depends on the previous one.
        correlation: Percent,
    },
    /// The 4-state Markov model (tc-netem(8) `loss state`): transition probabilities.
    State {
        /// Good reception to good loss (isolated losses).
        p13: Percent,
        /// Good loss back to good reception.
        p31: Percent,
        /// Good loss to a burst.
        p32: Percent,
        /// Within a burst, loss to burst reception.
        p23: Percent,
        /// Good reception to burst loss.
        p14: Percent,
    },
    /// The Gilbert–Elliott model (tc-netem(8) `loss gemodel`).
    GilbertElliott {
        /// Good state to bad.
        p: Percent,
        /// Bad state to good.
        r: Percent,
        /// The chance that a packet survives in the bad state (100 %: Gilbert's model).
        h: Percent,
        /// The chance that a packet is lost in the good state.
        k: Percent,
    },
}

/// The shape of the jitter around the delay.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// Uniform in `delay ± jitter` (netem's default).
    #[default]
    Uniform,
    /// Normal, with `jitter` as its standard deviation (`tc ... distribution normal`; the
    /// table is computed here, as iproute2's `normal.c` does).
    Normal,
    /// A table of 4096 values in units of `jitter / 8192`, as `tc` reads from its `.dist`
    /// files (`/usr/lib/tc/*.dist`: see [`Distribution::from_tc_file`]).
    Table(Vec<i16>),
}

impl Distribution {
    /// Reads one of `tc`'s distribution files (`pareto.dist`, `paretonormal.dist`, your own
    /// from `maketable`): whitespace-separated integers, `#` comments.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] (or [`Error::NotFound`]) when it cannot be read, [`Error::InvalidInput`]
    /// when it is not a table.
    pub fn from_tc_file(path: impl AsRef<std::path::Path>) -> Result<Distribution> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::os("read", format!("distribution file {}", path.display()), e))?;
        parse::dist_table(&text)
            .map(Distribution::Table)
            .ok_or_else(|| Error::invalid(format!("distribution file {}", path.display()), "not a tc distribution table (integers from -32768 to 32767, 1 to 65536 of them)"))
    }

    fn table(&self) -> Option<Vec<i16>> {
        match self {
            Distribution::Uniform => None,
            Distribution::Normal => Some(parse::normal_table()),
            Distribution::Table(t) => Some(t.clone()),
        }
    }
}

/// Which direction of a link an impairment acts on, seen from the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// What the interface sends (netem's place: its root qdisc).
    Outbound,
    /// What the interface receives.
    Inbound,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        })
    }
}

/// Which mechanism carries out an impairment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The kernel's netem where it can (outbound, kernel with `sch_netem`), else user space.
    #[default]
    Auto,
    /// The kernel's `netem` qdisc, set over rtnetlink (no `tc` process); outbound only.
    Netem,
    /// Frames diverted in the kernel to a relay thread of this library, which applies the
    /// impairment (see the [module docs](self#the-user-space-path)).
    UserSpace,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Netem => "netem",
            Backend::UserSpace => "user space",
        })
    }
}

/// Everything a link can be made to do wrong, in one direction: built with the methods below,
/// applied with [`Link::impair`](crate::Link::impair). Every option means what it means in
/// tc-netem(8).
///
/// ```
/// use std::time::Duration;
/// use netns_kit::impair::{Impairment, Percent, Rate};
///
/// # fn main() -> netns_kit::Result<()> {
/// let wan = Impairment::new()
///     .delay(Duration::from_millis(40))
///     .jitter(Duration::from_millis(5))
///     .loss(Percent::new(1.0)?)
///     .rate("10mbit".parse::<Rate>()?);
/// assert_eq!(wan.to_string(), "delay 40ms 5ms loss 1% rate 10mbit");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Impairment {
    pub(crate) delay: Duration,
    pub(crate) jitter: Duration,
    pub(crate) delay_correlation: Percent,
    /// The shape of the jitter: a table of values in units of `jitter / 8192` (netem's
    /// `NETEM_DIST_SCALE`); none: uniform.
    pub(crate) distribution: Option<Vec<i16>>,
    pub(crate) loss: Loss,
    pub(crate) duplicate: Percent,
    pub(crate) duplicate_correlation: Percent,
    /// Reordering: this share of packets (with that correlation) is sent at once, the rest
    /// delayed; with `gap`, every `gap`-th packet.
    pub(crate) reorder: Option<(Percent, Percent)>,
    pub(crate) gap: u32,
    pub(crate) corrupt: Option<(Percent, Percent)>,
    pub(crate) rate: Option<Rate>,
    /// The queue limit in packets (netem's default: 1000): a full queue drops.
    pub(crate) limit: Option<u32>,
    /// Mark packets (ECN CE) instead of dropping them where the loss model would.
    pub(crate) ecn: bool,
    pub(crate) backend: Backend,
}

impl Impairment {
    /// Nothing wrong yet: a link with this impairment works as if it had none.
    pub fn new() -> Impairment {
        Impairment::default()
    }

    /// Each packet waits this long (tc-netem(8) `delay`; at most about 275 s).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The delay varies by up to this much, as [`distribution`](Self::distribution) says
    /// (uniform by default); needs a delay.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// How much each packet's delay depends on the previous one's.
    pub fn delay_correlation(mut self, correlation: Percent) -> Self {
        self.delay_correlation = correlation;
        self
    }

    /// The shape of the jitter.
    pub fn distribution(mut self, distribution: Distribution) -> Self {
        self.distribution = distribution.table();
        self
    }

    /// Each packet is lost with this probability (independently).
    pub fn loss(mut self, p: Percent) -> Self {
        self.loss = if p.is_zero() {
            Loss::None
        } else {
            Loss::Random {
                p,
                correlation: Percent::default(),
            }
        };
        self
    }

    /// Packets are lost as `model` says (correlated, 4-state, Gilbert–Elliott).
    pub fn loss_model(mut self, model: Loss) -> Self {
        self.loss = model;
        self
    }

    /// Each packet is sent twice with this probability.
    pub fn duplicate(mut self, p: Percent) -> Self {
        self.duplicate = p;
        self
    }

    /// This share of packets goes out at once, ahead of the delayed rest (needs a delay);
    /// see [`reorder_gap`](Self::reorder_gap).
    pub fn reorder(mut self, p: Percent) -> Self {
        self.reorder = Some((p, self.reorder.map_or(Percent::default(), |r| r.1)));
        self
    }

    /// With [`reorder`](Self::reorder): only every `gap`-th packet may go out at once.
    pub fn reorder_gap(mut self, gap: u32) -> Self {
        self.gap = gap;
        self
    }

    /// One bit of a packet is flipped with this probability.
    pub fn corrupt(mut self, p: Percent) -> Self {
        self.corrupt = Some((p, Percent::default()));
        self
    }

    /// Packets leave no faster than `rate`.
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// At most `packets` wait (netem's `limit`, 1000 by default); one more is dropped.
    pub fn limit(mut self, packets: u32) -> Self {
        self.limit = Some(packets);
        self
    }

    /// Packets the loss model picks are marked ECN CE instead of dropped, where they can be.
    pub fn ecn(mut self) -> Self {
        self.ecn = true;
        self
    }

    /// Which mechanism to use (default: [`Backend::Auto`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Whether anything is asked for at all.
    pub fn is_none(&self) -> bool {
        Impairment {
            backend: self.backend,
            ..Impairment::default()
        } == *self
    }

    /// Whether an option draws per packet (loss, duplication, corruption, reordering), which
    /// the user-space path can only honour one wire packet per frame.
    pub(crate) fn per_packet(&self) -> bool {
        self.loss != Loss::None
            || !self.duplicate.is_zero()
            || self.corrupt.is_some()
            || self.reorder.is_some()
    }

    /// Checks what no backend could do: jitter or a distribution without a delay to vary,
    /// reordering without a delay, a gap without reordering, ECN without a loss model.
    pub(crate) fn validate(&self, object: impl Fn() -> String) -> Result<()> {
        let bad = |reason: &str| Err(Error::invalid(object(), reason));
        if self.distribution.is_some() && self.jitter.is_zero() {
            return bad("a delay distribution needs a jitter to shape");
        }
        if !self.jitter.is_zero() && self.delay.is_zero() {
            return bad("a jitter needs a delay to vary (it would make no packet late)");
        }
        if self.reorder.is_some() && self.delay.is_zero() {
            return bad("reordering needs a delay: the reordered packets are the ones not delayed");
        }
        if self.gap != 0 && self.reorder.is_none() {
            return bad("a reorder gap needs a reorder probability");
        }
        if self.ecn && self.loss == Loss::None {
            return bad("ECN marks what a loss model would drop: give a loss");
        }
        if self.limit == Some(0) {
            return bad("a queue limit of 0 packets drops everything: give at least 1");
        }
        if self.delay.max(self.jitter) > Duration::from_secs(274) {
            return bad("netem times are at most about 274 s");
        }
        if let Some(table) = &self.distribution {
            if table.is_empty() || table.len() > 65536 {
                return bad("a delay distribution table has 1 to 65536 values");
            }
        }
        Ok(())
    }
}

impl fmt::Display for Impairment {
    /// In `tc qdisc ... netem` words: `delay 50ms 10ms loss 20% rate 10mbit`; `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::new();
        if !self.delay.is_zero() {
            words.push(format!("delay {}", parse::show_duration(self.delay)));
            if !self.jitter.is_zero() {
                words.push(parse::show_duration(self.jitter));
            }
            if self.distribution.is_some() {
                words.push("distribution table".into());
            }
        }
        match self.loss {
            Loss::None => {}
            Loss::Random { p, correlation } if correlation.is_zero() => {
                words.push(format!("loss {p}"))
            }
            Loss::Random { p, correlation } => words.push(format!("loss {p} {correlation}")),
            Loss::State {
                p13,
                p31,
                p32,
                p23,
                p14,
            } => words.push(format!("loss state {p13} {p31} {p32} {p23} {p14}")),
            Loss::GilbertElliott { p, r, h, k } => {
                words.push(format!("loss gemodel {p} {r} {h} {k}"))
            }
        }
        if !self.duplicate.is_zero() {
            words.push(format!("duplicate {}", self.duplicate));
        }
        if let Some((p, _)) = self.reorder {
            words.push(format!("reorder {p}"));
            if self.gap != 0 {
                words.push(format!("gap {}", self.gap));
            }
        }
        if let Some((p, _)) = self.corrupt {
            words.push(format!("corrupt {p}"));
        }
        if let Some(rate) = self.rate {
            words.push(format!("rate {rate}"));
        }
        if let Some(limit) = self.limit {
            words.push(format!("limit {limit}"));
        }
        if self.ecn {
            words.push("ecn".into());
        }
        if words.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&words.join(" "))
        }
    }
}

#[cfg(test)]
/// One `ping` (the system's, run inside `ns`): the round trip, or `None` without a reply
/// within a second.
pub(crate) fn system_ping(ns: &crate::netns::Namespace, to: &str) -> Option<std::time::Duration> {
    let out = ns
        .command("ping")
        .args(["-c1", "-W1", "-n", to])
        .output()
        .expect("run ping (package iputils-ping)");
    let text = String::from_utf8_lossy(&out.stdout);
    let ms: f64 = text
        .split("time=")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    out.status
        .success()
        .then(|| std::time::Duration::from_secs_f64(ms / 1000.0))
}
