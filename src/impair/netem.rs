//! The `netem` qdisc's rtnetlink message, built as iproute2's `tc` builds it, so that the
//! kernel sees exactly what `tc qdisc add dev DEV root netem ...` would send.
//!
//! `TCA_OPTIONS` of netem is not a plain nest: a 24-byte `struct tc_netem_qopt` (latency,
//! limit, loss, gap, duplicate, jitter) comes first, and the `TCA_NETEM_*` attributes follow
//! it. Times in the struct are in the packet scheduler's ticks, converted with the ratios the
//! kernel publishes in `/proc/net/psched` (64 ns a tick on current kernels); probabilities are
//! 0..=100 % scaled to 0..=`u32::MAX`. The attributes go in `tc`'s order: correlations, reorder,
//! ECN, corruption, the loss model (the only nested one), rate (64-bit first when the byte rate
//! does not fit 32 bits), the delay distribution.
//!
//! Where `tc` 6.1 has a quirk, this does what the option means instead: a duplicate correlation
//! given alone is sent (`tc` drops it). The checks in this module's tests compare with
//! `tests/fixtures/netem/`, captured from `tc` with `strace`; the fixtures of that quirk, of
//! `slot` (not offered here) and of distributions read from `tc`'s own tables are not compared.

use std::sync::OnceLock;

use netlink_packet_route::tc::TcMessage;
use rtnetlink::packet_core::{DefaultNla, Emitable};

use super::{Impairment, Loss};

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const TCA_NETEM_CORR: u16 = 1;
const TCA_NETEM_DELAY_DIST: u16 = 2;
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_LOSS: u16 = 5;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_ECN: u16 = 7;
const TCA_NETEM_RATE64: u16 = 8;
const NETEM_LOSS_GI: u16 = 1;
const NETEM_LOSS_GE: u16 = 2;

/// netem's default queue limit, in packets, which `tc` always sends.
pub(crate) const DEFAULT_LIMIT: u32 = 1000;

/// The packet scheduler's clock: `/proc/net/psched`'s first three words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Psched {
    t2us: u64,
    us2t: u64,
    clock_res: u64,
}

impl Psched {
    /// What every kernel since 2.6.31 publishes: 1000, 64 (ns per tick), 1000000.
    pub(crate) const CURRENT: Psched = Psched {
        t2us: 1000,
        us2t: 64,
        clock_res: 1_000_000,
    };

    /// Parses `/proc/net/psched` (four hexadecimal words).
    pub(crate) fn parse(text: &str) -> Option<Psched> {
        let mut words = text.split_whitespace().map(|w| u64::from_str_radix(w, 16));
        let (t2us, us2t, clock_res) = (
            words.next()?.ok()?,
            words.next()?.ok()?,
            words.next()?.ok()?,
        );
        if us2t == 0 {
            return None;
        }
        // `tc`'s compatibility rule for kernels of 2.6.x with a nanosecond clock.
        let t2us = if clock_res == 1_000_000_000 {
            us2t
        } else {
            t2us
        };
        Some(Psched {
            t2us,
            us2t,
            clock_res,
        })
    }

    /// This kernel's clock (read once), or [`CURRENT`](Self::CURRENT) if it cannot be read.
    pub(crate) fn here() -> Psched {
        static HERE: OnceLock<Psched> = OnceLock::new();
        *HERE.get_or_init(|| {
            std::fs::read_to_string("/proc/net/psched")
                .ok()
                .and_then(|t| Psched::parse(&t))
                .unwrap_or(Psched::CURRENT)
        })
    }

    /// `micros` in ticks, truncated as `tc` truncates; `None` past `u32::MAX` ticks (about
    /// 275 s).
    pub(crate) fn ticks(self, micros: u64) -> Option<u32> {
        let ticks = u128::from(micros) * u128::from(self.t2us) * u128::from(self.clock_res)
            / (u128::from(self.us2t) * 1_000_000);
        u32::try_from(ticks).ok()
    }
}

/// How the qdisc request changes what is there, as `tc qdisc add|change|replace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Add,
    Change,
    /// `tc qdisc replace`; checked against tc's bytes, not used by the guards (which never
    /// replace a qdisc they did not make).
    #[cfg_attr(not(test), allow(dead_code))]
    Replace,
}

/// The request for `tc qdisc VERB dev IFINDEX root netem ...`, as `tc` 6.1 would send it (its
/// header's sequence number and port id aside, which the transport sets). `None` when a time
/// is too long for netem (over about 275 s).
pub(crate) fn request(
    ifindex: u32,
    verb: Verb,
    impairment: &Impairment,
    psched: Psched,
) -> Option<(TcMessage, u16)> {
    use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = u32::MAX.into(); // TC_H_ROOT
    let options = options(impairment, psched)?;
    msg.attributes
        .push(netlink_packet_route::tc::TcAttribute::Other(
            DefaultNla::new(TCA_KIND, b"netem\0".to_vec()),
        ));
    msg.attributes
        .push(netlink_packet_route::tc::TcAttribute::Other(
            DefaultNla::new(TCA_OPTIONS, options),
        ));
    let flags = match verb {
        Verb::Add => NLM_F_CREATE | NLM_F_EXCL,
        Verb::Change => 0,
        Verb::Replace => NLM_F_CREATE | NLM_F_REPLACE,
    };
    Some((msg, flags))
}

/// The payload of netem's `TCA_OPTIONS`: `struct tc_netem_qopt`, then the attributes.
pub(crate) fn options(impairment: &Impairment, psched: Psched) -> Option<Vec<u8>> {
    let i = impairment;
    let ticks = |d: std::time::Duration| psched.ticks(u64::try_from(d.as_micros()).ok()?);
    let (random_loss, loss_correlation) = match i.loss {
        Loss::Random { p, correlation } => (p.scaled(), correlation.scaled()),
        _ => (0, 0),
    };
    let gap = match i.reorder {
        Some(_) if i.gap == 0 => 1,
        _ => i.gap,
    };
    let mut out = Vec::with_capacity(64);
    for word in [
        ticks(i.delay)?,
        i.limit.unwrap_or(DEFAULT_LIMIT),
        random_loss,
        gap,
        i.duplicate.scaled(),
        ticks(i.jitter)?,
    ] {
        out.extend_from_slice(&word.to_ne_bytes());
    }
    let mut attrs: Vec<DefaultNla> = Vec::new();
    let words = |values: &[u32]| {
        values
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect::<Vec<u8>>()
    };
    let reorder_correlation = i.reorder.map_or(0, |(_, c)| c.scaled());
    let any_correlation = !i.delay_correlation.is_zero()
        || loss_correlation != 0
        || !i.duplicate_correlation.is_zero()
        || reorder_correlation != 0;
    if any_correlation {
        attrs.push(DefaultNla::new(
            TCA_NETEM_CORR,
            words(&[
                i.delay_correlation.scaled(),
                loss_correlation,
                i.duplicate_correlation.scaled(),
            ]),
        ));
    }
    if let Some((p, c)) = i.reorder {
        attrs.push(DefaultNla::new(
            TCA_NETEM_REORDER,
            words(&[p.scaled(), c.scaled()]),
        ));
    }
    if i.ecn {
        attrs.push(DefaultNla::new(TCA_NETEM_ECN, words(&[1])));
    }
    if let Some((p, c)) = i.corrupt {
        attrs.push(DefaultNla::new(
            TCA_NETEM_CORRUPT,
            words(&[p.scaled(), c.scaled()]),
        ));
    }
    let model = match i.loss {
        Loss::State {
            p13,
            p31,
            p32,
            p23,
            p14,
        } => Some(DefaultNla::new(
            NETEM_LOSS_GI,
            // The kernel's order (`struct tc_netem_gimodel`): p13, p31, p32, p14, p23.
            words(&[
                p13.scaled(),
                p31.scaled(),
                p32.scaled(),
                p14.scaled(),
                p23.scaled(),
            ]),
        )),
        Loss::GilbertElliott { p, r, h, k } => Some(DefaultNla::new(
            NETEM_LOSS_GE,
            words(&[p.scaled(), r.scaled(), h.scaled(), k.scaled()]),
        )),
        _ => None,
    };
    if let Some(model) = model {
        attrs.push(DefaultNla::new(
            TCA_NETEM_LOSS | NLA_F_NESTED,
            emit(&[model]),
        ));
    }
    if let Some(rate) = i.rate {
        let bytes = rate.bits_per_second / 8;
        let rate32 = match u32::try_from(bytes) {
            Ok(r) => r,
            Err(_) => {
                attrs.push(DefaultNla::new(
                    TCA_NETEM_RATE64,
                    bytes.to_ne_bytes().to_vec(),
                ));
                u32::MAX
            }
        };
        let mut payload = rate32.to_ne_bytes().to_vec();
        payload.extend_from_slice(&rate.packet_overhead.to_ne_bytes());
        payload.extend_from_slice(&rate.cell_size.to_ne_bytes());
        payload.extend_from_slice(&rate.cell_overhead.to_ne_bytes());
        attrs.push(DefaultNla::new(TCA_NETEM_RATE, payload));
    }
    if let Some(table) = &i.distribution {
        let bytes = table.iter().flat_map(|v| v.to_ne_bytes()).collect();
        attrs.push(DefaultNla::new(TCA_NETEM_DELAY_DIST, bytes));
    }
    out.extend_from_slice(&emit(&attrs));
    Some(out)
}

fn emit(attrs: &[DefaultNla]) -> Vec<u8> {
    let mut out = vec![0u8; attrs.buffer_len()];
    attrs.emit(&mut out);
    out
}

/// The request that removes the root qdisc of `ifindex` (`tc qdisc del dev DEV root`): no
/// attributes.
pub(crate) fn delete_request(ifindex: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = u32::MAX.into();
    msg
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use netlink_packet_route::RouteNetlinkMessage;
    use rtnetlink::packet_core::{
        NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };

    use super::*;
    use crate::impair::{Percent, Rate};

    fn pct(v: f64) -> Percent {
        Percent::new(v).unwrap()
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A fixture: the `tc` command, the psched it ran with, and the bytes it sent.
    fn fixture(name: &str) -> (String, Psched, Vec<u8>) {
        let path = format!("{}/tests/fixtures/netem/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut lines = text.lines();
        let command = lines.next().unwrap().trim_start_matches("# ").to_owned();
        assert_eq!(lines.next(), Some("# ifindex 3"), "{name}");
        let psched = lines.next().unwrap().trim_start_matches("# psched ");
        let psched = Psched::parse(psched).unwrap();
        let hex: String = lines.filter(|l| !l.starts_with('#')).collect();
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        (command, psched, bytes)
    }

    fn bytes_of(message: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        message.finalize();
        let mut buf = vec![0u8; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    /// Compares with a fixture, the sequence number and port id aside.
    fn same_as_tc(name: &str, verb: Verb, impairment: Impairment) {
        let (command, psched, expected) = fixture(name);
        let (msg, flags) = request(3, verb, &impairment, psched).unwrap();
        let mut ours = bytes_of(RouteNetlinkMessage::NewQueueDiscipline(msg), flags);
        let mut theirs = expected;
        for b in [&mut ours, &mut theirs] {
            if b.len() >= 16 {
                b[8..16].fill(0);
            }
        }
        assert_eq!(
            hex(&ours),
            hex(&theirs),
            "{name} ({command}): ours first, then tc's"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .chunks(16)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn delay_jitter_correlation_limit() {
        same_as_tc(
            "01-delay.txt",
            Verb::Add,
            Impairment {
                delay: ms(10),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "02-delay-jitter.txt",
            Verb::Add,
            Impairment {
                delay: ms(100),
                jitter: ms(10),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "03-delay-jitter-correlation.txt",
            Verb::Add,
            Impairment {
                delay: ms(100),
                jitter: ms(10),
                delay_correlation: pct(25.0),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "15-limit-delay.txt",
            Verb::Add,
            Impairment {
                delay: ms(25),
                limit: Some(5000),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "22-delay-sub-tick.txt",
            Verb::Add,
            Impairment {
                delay: ms(1),
                jitter: Duration::from_micros(33),
                ..Impairment::default()
            },
        );
    }

    #[test]
    fn loss_models() {
        same_as_tc(
            "06-loss.txt",
            Verb::Add,
            Impairment {
                loss: Loss::Random {
                    p: pct(2.0),
                    correlation: Percent::default(),
                },
                ..Impairment::default()
            },
        );
        same_as_tc(
            "07-loss-correlation.txt",
            Verb::Add,
            Impairment {
                loss: Loss::Random {
                    p: pct(2.0),
                    correlation: pct(25.0),
                },
                ..Impairment::default()
            },
        );
        same_as_tc(
            "08-loss-state.txt",
            Verb::Add,
            Impairment {
                loss: Loss::State {
                    p13: pct(1.0),
                    p31: pct(10.0),
                    p32: pct(70.0),
                    p23: pct(0.1),
                    p14: Percent::default(),
                },
                ..Impairment::default()
            },
        );
        // `tc`'s third argument is 1 - h: 70 % there is h = 30 % here.
        let h = Percent(100.0 - 70.0);
        let (_, psched, theirs) = fixture("09-loss-gemodel.txt");
        let (msg, flags) = request(
            3,
            Verb::Add,
            &Impairment {
                loss: Loss::GilbertElliott {
                    p: pct(1.0),
                    r: pct(10.0),
                    h,
                    k: pct(0.1),
                },
                ..Impairment::default()
            },
            psched,
        )
        .unwrap();
        let ours = bytes_of(RouteNetlinkMessage::NewQueueDiscipline(msg), flags);
        // `tc` stores h as `u32::MAX - scaled(70 %)`, which can differ from `scaled(30 %)` by
        // one in the last place: compare all but that word, then the word within one.
        assert_eq!(ours.len(), theirs.len());
        let h_at = ours.len() - 8;
        assert_eq!(ours[16..h_at], theirs[16..h_at]);
        let word = |b: &[u8]| u32::from_ne_bytes(b[h_at..h_at + 4].try_into().unwrap());
        assert!(word(&ours).abs_diff(word(&theirs)) <= 1);
        assert_eq!(ours[h_at + 4..], theirs[h_at + 4..]);
        same_as_tc(
            "18-ecn.txt",
            Verb::Add,
            Impairment {
                loss: Loss::Random {
                    p: pct(1.0),
                    correlation: Percent::default(),
                },
                ecn: true,
                ..Impairment::default()
            },
        );
    }

    #[test]
    fn duplicate_corrupt_reorder() {
        same_as_tc(
            "10-duplicate.txt",
            Verb::Add,
            Impairment {
                duplicate: pct(1.0),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "11-corrupt.txt",
            Verb::Add,
            Impairment {
                corrupt: Some((pct(0.1), Percent::default())),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "12-reorder-gap.txt",
            Verb::Add,
            Impairment {
                delay: ms(10),
                reorder: Some((pct(25.0), pct(50.0))),
                gap: 5,
                ..Impairment::default()
            },
        );
        same_as_tc(
            "27-delay-duplicate-correlation.txt",
            Verb::Add,
            Impairment {
                delay: ms(10),
                jitter: ms(5),
                delay_correlation: pct(25.0),
                duplicate: pct(1.0),
                duplicate_correlation: pct(50.0),
                ..Impairment::default()
            },
        );
    }

    #[test]
    fn rates() {
        same_as_tc(
            "13-rate.txt",
            Verb::Add,
            Impairment {
                rate: Some(Rate::new(10_000_000).unwrap()),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "14-rate-overhead.txt",
            Verb::Add,
            Impairment {
                rate: Some(Rate {
                    packet_overhead: 20,
                    cell_size: 100,
                    cell_overhead: 5,
                    ..Rate::new(10_000_000).unwrap()
                }),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "19-rate64.txt",
            Verb::Add,
            Impairment {
                rate: Some(Rate::new(40_000_000_000).unwrap()),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "16-combined.txt",
            Verb::Add,
            Impairment {
                delay: ms(100),
                jitter: ms(10),
                loss: Loss::Random {
                    p: pct(1.0),
                    correlation: Percent::default(),
                },
                duplicate: pct(1.0),
                corrupt: Some((pct(0.1), Percent::default())),
                rate: Some(Rate::new(1_000_000_000).unwrap()),
                ..Impairment::default()
            },
        );
    }

    #[test]
    fn change_replace_and_delete() {
        same_as_tc(
            "24-change.txt",
            Verb::Change,
            Impairment {
                delay: ms(20),
                ..Impairment::default()
            },
        );
        same_as_tc(
            "25-replace.txt",
            Verb::Replace,
            Impairment {
                delay: ms(10),
                ..Impairment::default()
            },
        );
        let (_, _, mut theirs) = fixture("26-del.txt");
        let mut ours = bytes_of(
            RouteNetlinkMessage::DelQueueDiscipline(delete_request(3)),
            0,
        );
        theirs[8..16].fill(0);
        ours[8..16].fill(0);
        assert_eq!(hex(&ours), hex(&theirs));
    }

    #[test]
    fn ticks_percentages_and_limits() {
        let p = Psched::CURRENT;
        assert_eq!(p.ticks(10_000), Some(156_250));
        assert_eq!(p.ticks(33), Some(515));
        assert_eq!(p.ticks(274_877_906), Some(4_294_967_281));
        assert_eq!(p.ticks(274_877_907), None);
        assert_eq!(pct(1.0).scaled(), 42_949_673);
        assert_eq!(pct(25.0).scaled(), 0x4000_0000);
        assert_eq!(pct(100.0).scaled(), u32::MAX);
        assert!(Percent::new(100.5).is_err());
        assert!(Percent::new(-1.0).is_err());
        assert!(Percent::new(f64::NAN).is_err());
        assert!(Rate::new(7).is_err());
        let too_long = Impairment {
            delay: Duration::from_secs(300),
            ..Impairment::default()
        };
        assert!(request(3, Verb::Add, &too_long, p).is_none());
    }
}
