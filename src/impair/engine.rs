//! What an impaired link does to the frames it carries, decided in user space with netem's own
//! rules, for the path that works without `sch_netem`: for each frame, loss (random with
//! correlation, or the 4-state and Gilbert–Elliott models), duplication, corruption, the queue
//! limit, a delay with jitter (uniform or shaped by a distribution table), reordering and a rate;
//! then the frames leave in the order of their departure times.
//!
//! It is pure logic over nanosecond timestamps and a seeded generator, so it can be tested
//! without a device and replayed. The rules follow sch_netem's (`netem_enqueue`): the same
//! order of decisions, the same correlated draws, the same `tabledist` for jitter, the same rate
//! accounting (a frame waits for the one before it to be sent, plus its own time on the wire).
//!
//! The queue is bounded as netem's is: at most `limit` frames (1000 by default) wait; a frame
//! that finds it full is dropped. With segmentation offload a frame can be a 64 KiB segment, so
//! the queue holds at most `limit` × 64 KiB.

use std::collections::BinaryHeap;

use super::{Impairment, Loss, netem::DEFAULT_LIMIT};

/// netem's `NETEM_DIST_SCALE`: a distribution table holds values in units of `sigma / 8192`.
const DIST_SCALE: i64 = 8192;

/// A small fast generator (xorshift64*), seeded per link so a run can be replayed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that nearby seeds start far apart; never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

/// A correlated random source (netem's `crndstate`): each draw leans on the previous one by
/// `rho` (0: independent).
#[derive(Debug, Clone, Default)]
struct Correlated {
    rho: u32,
    last: u32,
}

impl Correlated {
    fn new(rho: u32) -> Correlated {
        Correlated { rho, last: 0 }
    }

    fn draw(&mut self, rng: &mut Rng) -> u32 {
        let value = u64::from(rng.next_u32());
        if self.rho == 0 {
            return value as u32;
        }
        let rho = u64::from(self.rho) + 1;
        let answer = ((value * ((1u64 << 32) - rho) + u64::from(self.last) * rho) >> 32) as u32;
        self.last = answer;
        answer
    }
}

/// Where a state model of loss is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossState {
    /// 4-state: sending in a gap (good) period; Gilbert–Elliott: the good state.
    GoodTx,
    /// 4-state: sending in a burst period; Gilbert–Elliott: the bad state.
    BadTx,
    /// 4-state: losing in a burst.
    BurstLoss,
    /// 4-state: an isolated loss in a gap.
    GapLoss,
}

/// A frame waiting to leave.
#[derive(Debug)]
struct Waiting {
    at: u64,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    // The earliest departure first (a max-heap, reversed); equal times in arrival order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// What the user-space path did to a link direction's frames so far
/// ([`Impaired::counters`](super::Impaired::counters)). A frame is one packet on the wire, or
/// with segmentation offload (no per-packet option set) a segment of up to 64 KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Frames the link handed over.
    pub received: u64,
    /// Frames sent on (duplicates included).
    pub sent: u64,
    /// Frames lost (the loss model, or a partition).
    pub lost: u64,
    /// Frames sent twice.
    pub duplicated: u64,
    /// Frames with a bit flipped.
    pub corrupted: u64,
    /// Frames sent ahead of the delayed ones.
    pub reordered: u64,
    /// Frames dropped because the queue was full (the limit).
    pub overlimit: u64,
}

/// One direction of an impaired link.
#[derive(Debug)]
pub(crate) struct Engine {
    imp: Impairment,
    rng: Rng,
    delay_cor: Correlated,
    loss_cor: Correlated,
    dup_cor: Correlated,
    reorder_cor: Correlated,
    corrupt_cor: Correlated,
    state: LossState,
    /// Frames since the last reordered one (netem's `counter`).
    counter: u32,
    queue: BinaryHeap<Waiting>,
    seq: u64,
    /// When the last frame queued in order leaves (for the rate).
    tail_at: Option<u64>,
    /// Bytes in front of each frame that are not on the wire (the relay's `virtio_net_hdr`):
    /// never corrupted, not counted by the rate.
    header: usize,
    pub(crate) counters: Counters,
}

impl Engine {
    /// An engine for `imp` (already validated), drawing from a generator seeded with `seed`.
    pub(crate) fn new(imp: Impairment, seed: u64) -> Engine {
        let rho = |p: super::Percent| p.scaled();
        let loss_rho = match imp.loss {
            Loss::Random { correlation, .. } => correlation.scaled(),
            _ => 0,
        };
        Engine {
            delay_cor: Correlated::new(rho(imp.delay_correlation)),
            loss_cor: Correlated::new(loss_rho),
            dup_cor: Correlated::new(rho(imp.duplicate_correlation)),
            reorder_cor: Correlated::new(imp.reorder.map_or(0, |(_, c)| c.scaled())),
            corrupt_cor: Correlated::new(imp.corrupt.map_or(0, |(_, c)| c.scaled())),
            imp,
            rng: Rng::new(seed),
            state: LossState::GoodTx,
            counter: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            tail_at: None,
            header: 0,
            counters: Counters::default(),
        }
    }

    /// The bytes `frame` takes on the wire: without the header in front, and for a segment
    /// the relay gets whole (a `virtio_net_hdr` with a GSO type), with the headers each of its
    /// packets repeats, as netem's `qdisc_pkt_len` counts them.
    fn wire_len(&self, frame: &[u8]) -> usize {
        let len = frame.len().saturating_sub(self.header);
        if self.header < 10 || frame.len() < 10 || frame[1] == 0 {
            return len;
        }
        // struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
        let hdr_len = usize::from(u16::from_ne_bytes([frame[2], frame[3]]));
        let gso_size = usize::from(u16::from_ne_bytes([frame[4], frame[5]]));
        if gso_size == 0 || hdr_len >= len {
            return len;
        }
        let segments = (len - hdr_len).div_ceil(gso_size);
        len + (segments.saturating_sub(1)) * hdr_len
    }

    /// The same engine for frames with `header` bytes in front that are not on the wire.
    pub(crate) fn with_header(mut self, header: usize) -> Engine {
        self.header = header;
        self
    }

    /// Changes what the engine does from now on; what waits keeps its departure time, as
    /// `tc qdisc change` leaves netem's queue alone.
    pub(crate) fn reconfigure(&mut self, imp: Impairment) {
        let fresh = Engine::new(imp, u64::from(self.rng.next_u32()));
        let Engine {
            queue,
            seq,
            tail_at,
            counters,
            header,
            ..
        } = std::mem::replace(self, fresh);
        self.queue = queue;
        self.seq = seq;
        self.tail_at = tail_at;
        self.counters = counters;
        self.header = header;
    }

    /// Whether a frame pushed now would leave at once, unchanged, in order: nothing is asked
    /// of the engine and nothing waits. The relay then writes it straight back, without
    /// copying it into the queue.
    pub(crate) fn passes_through(&self) -> bool {
        self.queue.is_empty() && self.imp.is_none()
    }

    /// Counts a frame that passed straight through (see [`passes_through`](Self::passes_through)).
    pub(crate) fn passed(&mut self) {
        self.counters.received += 1;
        self.counters.sent += 1;
    }

    /// The frames waiting.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// When the next frame is due, if any waits.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|w| w.at)
    }

    /// The next frame due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.queue.peek()?.at > now {
            return None;
        }
        self.counters.sent += 1;
        self.queue.pop().map(|w| w.frame)
    }

    /// Takes `frame`, arriving at `now` (ns), and queues what netem would send of it: nothing
    /// (lost, or the queue full), it, or it and a duplicate.
    pub(crate) fn push(&mut self, now: u64, frame: Vec<u8>) {
        self.counters.received += 1;
        self.enqueue(now, frame, true);
    }

    /// netem's order: the duplication draw, the loss draw, then (a duplicate goes through all
    /// of it again, without duplication) corruption and the queue.
    fn enqueue(&mut self, now: u64, mut frame: Vec<u8>, may_duplicate: bool) {
        let mut copies = 1;
        if may_duplicate
            && !self.imp.duplicate.is_zero()
            && self.imp.duplicate.scaled() >= self.dup_cor.draw(&mut self.rng)
        {
            copies += 1;
        }
        if self.lost() {
            copies -= 1;
        }
        if copies == 0 {
            self.counters.lost += 1;
            return;
        }
        if copies == 2 {
            self.counters.duplicated += 1;
            self.enqueue(now, frame.clone(), false);
        }
        if let Some((p, _)) = self.imp.corrupt {
            let wire = frame.len().saturating_sub(self.header);
            if wire > 0 && p.scaled() >= self.corrupt_cor.draw(&mut self.rng) {
                let at = self.header + self.rng.next_u32() as usize % wire;
                frame[at] ^= 1 << (self.rng.next_u32() % 8);
                self.counters.corrupted += 1;
            }
        }
        self.queue_one(now, frame);
    }

    fn queue_one(&mut self, now: u64, frame: Vec<u8>) {
        let limit = self.imp.limit.unwrap_or(DEFAULT_LIMIT) as usize;
        if self.queue.len() >= limit {
            self.counters.overlimit += 1;
            return;
        }
        self.seq += 1;
        let reorder_now = match self.imp.reorder {
            Some((p, _)) => {
                let gap = self.imp.gap.max(1);
                self.counter + 1 >= gap && p.scaled() >= self.reorder_cor.draw(&mut self.rng)
            }
            None => false,
        };
        let at = if reorder_now {
            // Sent at once, ahead of the delayed ones.
            self.counter = 0;
            self.counters.reordered += 1;
            now
        } else {
            self.counter = self.counter.saturating_add(1);
            let mut delay = self.delay();
            let mut start = now;
            if let Some(rate) = self.imp.rate {
                if let Some(tail) = self.tail_at.filter(|&t| t > now) {
                    // Wait for the frame before to be on the wire.
                    delay = delay.saturating_sub(tail - now);
                    start = tail;
                }
                delay += wire_time(self.wire_len(&frame), rate);
            }
            let at = start + delay;
            if self.imp.rate.is_some() {
                self.tail_at = Some(at);
            }
            at
        };
        self.queue.push(Waiting {
            at,
            seq: self.seq,
            frame,
        });
    }

    /// A delay for the next frame: `delay` ± `jitter`, shaped by the distribution table.
    fn delay(&mut self) -> u64 {
        let mu = self.imp.delay.as_nanos().min(i64::MAX as u128) as i64;
        let sigma = self.imp.jitter.as_nanos().min(i32::MAX as u128) as i64;
        if sigma == 0 {
            return mu.max(0) as u64;
        }
        let rnd = i64::from(self.delay_cor.draw(&mut self.rng));
        let value = match &self.imp.distribution {
            None => (rnd % (2 * sigma)) + mu - sigma,
            Some(table) => {
                let t = i64::from(table[(rnd as usize) % table.len()]);
                let mut x = (sigma % DIST_SCALE) * t;
                x += if x >= 0 {
                    DIST_SCALE / 2
                } else {
                    -DIST_SCALE / 2
                };
                x / DIST_SCALE + (sigma / DIST_SCALE) * t + mu
            }
        };
        value.max(0) as u64
    }

    /// Whether the loss model drops this frame.
    fn lost(&mut self) -> bool {
        match self.imp.loss {
            Loss::None => false,
            Loss::Random { p, .. } => {
                !p.is_zero() && p.scaled() >= self.loss_cor.draw(&mut self.rng)
            }
            Loss::State {
                p13,
                p31,
                p32,
                p23,
                p14,
            } => self.four_state(
                p13.scaled(),
                p31.scaled(),
                p32.scaled(),
                p14.scaled(),
                p23.scaled(),
            ),
            Loss::GilbertElliott { p, r, h, k } => {
                self.gilbert_elliott(p.scaled(), r.scaled(), h.scaled(), k.scaled())
            }
        }
    }

    /// The 4-state Markov model (netem `loss_4state`): a1 = p13, a2 = p31, a3 = p32,
    /// a4 = p14, a5 = p23.
    fn four_state(&mut self, a1: u32, a2: u32, a3: u32, a4: u32, a5: u32) -> bool {
        let rnd = self.rng.next_u32();
        let (a1, a2, a3, a4, a5) = (
            u64::from(a1),
            u64::from(a2),
            u64::from(a3),
            u64::from(a4),
            u64::from(a5),
        );
        let r = u64::from(rnd);
        match self.state {
            LossState::GoodTx => {
                if r < a4 {
                    self.state = LossState::GapLoss;
                    return true;
                } else if a4 < r && r < a1 + a4 {
                    self.state = LossState::BurstLoss;
                    return true;
                }
            }
            LossState::BadTx => {
                if r < a5 {
                    self.state = LossState::BurstLoss;
                    return true;
                }
            }
            LossState::BurstLoss => {
                if r < a3 {
                    self.state = LossState::BadTx;
                } else if a2 + a3 > r {
                    self.state = LossState::GoodTx;
                } else {
                    return true;
                }
            }
            LossState::GapLoss => self.state = LossState::GoodTx,
        }
        false
    }

    /// The Gilbert–Elliott model (netem `loss_gilb_ell`): `p` good → bad, `r` bad → good, `h`
    /// the chance a frame gets through in the bad state, `k` that it is lost in the good one.
    fn gilbert_elliott(&mut self, p: u32, r: u32, h: u32, k: u32) -> bool {
        match self.state {
            LossState::BadTx => {
                if self.rng.next_u32() < r {
                    self.state = LossState::GoodTx;
                }
                self.rng.next_u32() > h
            }
            _ => {
                if self.rng.next_u32() < p {
                    self.state = LossState::BadTx;
                }
                self.rng.next_u32() < k
            }
        }
    }
}

/// How long `len` bytes take at `rate`, with its overheads (netem `packet_time_ns`).
fn wire_time(len: usize, rate: super::Rate) -> u64 {
    let mut len = len as i64 + i64::from(rate.packet_overhead);
    if rate.cell_size > 0 {
        let cell = i64::from(rate.cell_size);
        let cells = (len.max(0) + cell - 1) / cell;
        len = cells * (cell + i64::from(rate.cell_overhead));
    }
    let bytes_per_second = (rate.bits_per_second / 8).max(1);
    (len.max(0) as u128 * 1_000_000_000 / u128::from(bytes_per_second)) as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::impair::{Percent, Rate};

    const MS: u64 = 1_000_000;

    fn pct(v: f64) -> Percent {
        Percent::new(v).unwrap()
    }

    /// Pushes `n` frames of `len` bytes, one every `every` ns, and drains as they come due;
    /// returns (frame number, departure) of what left, in order.
    fn run(imp: Impairment, n: u64, len: usize, every: u64) -> (Vec<(u64, u64)>, Counters) {
        let mut e = Engine::new(imp, 7);
        let mut out = Vec::new();
        let mut now = 0;
        let number = |f: Vec<u8>| u64::from_ne_bytes(f[..8].try_into().unwrap());
        for i in 0..n {
            now = i * every;
            while let Some(at) = e.next_due().filter(|&at| at <= now) {
                out.push((number(e.pop_due(now).unwrap()), at));
            }
            let mut frame = vec![0u8; len.max(8)];
            frame[..8].copy_from_slice(&i.to_ne_bytes());
            e.push(now, frame);
        }
        while let Some(at) = e.next_due() {
            now = now.max(at);
            out.push((number(e.pop_due(now).unwrap()), at));
        }
        (out, e.counters)
    }

    /// Whether `k` successes of `n` draws fit probability `p` (99 % normal interval).
    fn binomial_ok(k: u64, n: u64, p: f64) -> bool {
        let (n, k) = (n as f64, k as f64);
        let sd = (n * p * (1.0 - p)).sqrt();
        (k - n * p).abs() <= 2.576 * sd + 1.0
    }

    #[test]
    fn a_fixed_delay_delays_every_frame_by_it() {
        let imp = Impairment {
            delay: Duration::from_millis(50),
            ..Impairment::default()
        };
        let (out, c) = run(imp, 100, 100, MS);
        assert_eq!(c.sent, 100);
        for (i, at) in out {
            assert_eq!(at, i * MS + 50 * MS);
        }
    }

    #[test]
    fn random_loss_fits_the_binomial_interval() {
        for p in [1.0, 20.0, 50.0] {
            let imp = Impairment {
                loss: Loss::Random {
                    p: pct(p),
                    correlation: Percent::default(),
                },
                ..Impairment::default()
            };
            let (_, c) = run(imp, 20_000, 64, 1000);
            assert!(
                binomial_ok(c.lost, 20_000, p / 100.0),
                "{p} %: lost {}",
                c.lost
            );
            assert_eq!(c.sent + c.lost, 20_000);
        }
    }

    #[test]
    fn correlated_loss_comes_in_longer_runs() {
        let runs = |correlation: f64| {
            let imp = Impairment {
                loss: Loss::Random {
                    p: pct(20.0),
                    correlation: pct(correlation),
                },
                ..Impairment::default()
            };
            let (out, c) = run(imp, 20_000, 64, 1000);
            // Gaps in the sequence are loss bursts: their mean length.
            let mut bursts = 0;
            let mut prev = None;
            for (i, _) in out {
                if let Some(p) = prev {
                    if i > p + 1 {
                        bursts += 1;
                    }
                }
                prev = Some(i);
            }
            c.lost as f64 / bursts.max(1) as f64
        };
        assert!(
            runs(90.0) > 1.5 * runs(0.0),
            "{} vs {}",
            runs(90.0),
            runs(0.0)
        );
    }

    #[test]
    fn gilbert_elliott_loses_at_its_stationary_rate() {
        // p = 5 % good->bad, r = 20 % bad->good: bad 1/5 of the time; in it, h = 30 % get
        // through; k = 1 % lost in the good state. Loss = 0.2 * 0.7 + 0.8 * 0.01 = 0.148.
        let imp = Impairment {
            loss: Loss::GilbertElliott {
                p: pct(5.0),
                r: pct(20.0),
                h: pct(30.0),
                k: pct(1.0),
            },
            ..Impairment::default()
        };
        let (_, c) = run(imp, 50_000, 64, 1000);
        let rate = c.lost as f64 / 50_000.0;
        assert!((rate - 0.148).abs() < 0.02, "{rate}");
    }

    #[test]
    fn uniform_jitter_stays_within_its_bounds_around_the_delay() {
        let imp = Impairment {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            ..Impairment::default()
        };
        let (out, _) = run(imp, 10_000, 64, MS);
        let delays: Vec<i64> = out
            .iter()
            .map(|&(i, at)| at as i64 - (i * MS) as i64)
            .collect();
        assert!(
            delays
                .iter()
                .all(|&d| (40 * MS as i64..60 * MS as i64).contains(&d))
        );
        let mean = delays.iter().sum::<i64>() as f64 / delays.len() as f64;
        assert!((mean - 50e6).abs() < 0.5e6, "{mean}");
    }

    #[test]
    fn a_rate_spaces_frames_by_their_time_on_the_wire() {
        // 10 Mbit/s: a 1250-byte frame takes 1 ms; offered every 0.1 ms, they leave 1 ms apart.
        let imp = Impairment {
            rate: Some(Rate::new(10_000_000).unwrap()),
            ..Impairment::default()
        };
        let (out, c) = run(imp, 200, 1250, MS / 10);
        assert_eq!(c.sent, 200);
        for w in out.windows(2) {
            assert_eq!(w[1].1 - w[0].1, MS, "{w:?}");
        }
    }

    #[test]
    fn a_full_queue_drops_and_the_queue_stays_bounded() {
        let imp = Impairment {
            delay: Duration::from_secs(1),
            limit: Some(100),
            ..Impairment::default()
        };
        let mut e = Engine::new(imp, 1);
        for i in 0..150 {
            e.push(i, vec![0; 64]);
        }
        assert_eq!(e.queued(), 100);
        assert_eq!(e.counters.overlimit, 50);
    }

    #[test]
    fn duplication_and_corruption() {
        let imp = Impairment {
            duplicate: pct(100.0),
            ..Impairment::default()
        };
        let (out, c) = run(imp, 100, 64, MS);
        assert_eq!((out.len(), c.duplicated), (200, 100));
        let imp = Impairment {
            corrupt: Some((pct(100.0), Percent::default())),
            ..Impairment::default()
        };
        let mut e = Engine::new(imp, 3);
        e.push(0, vec![0u8; 64]);
        let f = e.pop_due(0).unwrap();
        assert_eq!(
            f.iter().map(|b| b.count_ones()).sum::<u32>(),
            1,
            "one bit flipped"
        );
    }

    #[test]
    fn reordering_sends_every_gap_th_frame_at_once() {
        let imp = Impairment {
            delay: Duration::from_millis(10),
            reorder: Some((pct(100.0), Percent::default())),
            gap: 5,
            ..Impairment::default()
        };
        let (out, c) = run(imp, 100, 64, MS);
        assert_eq!(c.reordered, 20);
        // Frames 4, 9, 14, ... leave when they arrive, ahead of those sent before them.
        for (i, at) in &out {
            let expected = if i % 5 == 4 { i * MS } else { i * MS + 10 * MS };
            assert_eq!(*at, expected, "frame {i}");
        }
    }
}
