//! Link impairment: the values a misbehaving network is described with — delay and jitter,
//! loss (random, or the Gilbert–Elliott state models), duplication, reordering, corruption, a
//! rate with a queue limit — checked when they are given, and the kernel's own form of them,
//! the `netem` qdisc ([`netem`]), encoded over rtnetlink without a `tc` process.
//!
//! # Why two backends
//!
//! `netem` is the reference: every option here means what it means in tc-netem(8). Many kernels
//! tests run on lack it (built without `CONFIG_NET_SCH_NETEM`, or without the extra modules
//! package), and so does the one this crate is developed on, which refuses `netem` with
//! "Specified qdisc kind is unknown". Its messages are therefore checked byte for byte against
//! what `tc` sends (`tests/fixtures/netem/`, captured with `strace` where the kernel refuses
//! them), and the same values drive a user-space path on kernels without it.
//!
//! The values here are crate-internal until the user-space path lands; the encoder and its
//! byte-for-byte checks come first.

#![allow(dead_code)]

pub(crate) mod divert;
pub(crate) mod engine;
pub(crate) mod netem;
pub(crate) mod relay;

use std::time::Duration;

use crate::error::{Error, Result};

/// A probability, 0 to 100 %.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub(crate) struct Percent(f64);

impl Percent {
    /// `value` percent; refused outside 0..=100 (and NaN).
    pub(crate) fn new(value: f64) -> Result<Percent> {
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
    pub(crate) fn get(self) -> f64 {
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

/// A link rate, with the per-packet overheads netem can account for (tc-netem(8) `rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Bits per second (> 0).
    pub(crate) bits_per_second: u64,
    /// Bytes added to (or, negative, removed from) each packet's size.
    pub(crate) packet_overhead: i32,
    /// Size of a link-layer cell (ATM: 53); 0 for none.
    pub(crate) cell_size: u32,
    /// Bytes added to each cell.
    pub(crate) cell_overhead: i32,
}

impl Rate {
    /// `bits_per_second`, no overheads; refused when 0 or under 8 bit/s (netem counts bytes).
    pub(crate) fn new(bits_per_second: u64) -> Result<Rate> {
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
}

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) enum Loss {
    /// None.
    #[default]
    None,
    /// Each packet with probability `p`; `correlation` ties each draw to the previous one.
    Random { p: Percent, correlation: Percent },
    /// The 4-state Markov model (tc-netem(8) `loss state`): transition probabilities p13, p31,
    /// p32, p23, p14.
    State {
        p13: Percent,
        p31: Percent,
        p32: Percent,
        p23: Percent,
        p14: Percent,
    },
    /// The Gilbert–Elliott model (tc-netem(8) `loss gemodel`): `p` good→bad, `r` bad→good,
    /// `h` the probability that a packet survives in the bad state, `k` that it is lost in
    /// the good one.
    GilbertElliott {
        p: Percent,
        r: Percent,
        h: Percent,
        k: Percent,
    },
}

/// Everything a link can be made to do wrong, for the packets it sends.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Impairment {
    pub(crate) delay: Duration,
    pub(crate) jitter: Duration,
    pub(crate) delay_correlation: Percent,
    /// The shape of the jitter: a table of 4096 values in units of `jitter / 8192` (netem's
    /// `NETEM_DIST_SCALE`), as `tc` reads from its `.dist` files; none: uniform.
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
}

impl Impairment {
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
        if let Some(table) = &self.distribution {
            if table.is_empty() {
                return bad("a delay distribution table is empty");
            }
        }
        Ok(())
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
