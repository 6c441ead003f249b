//! Impairment values from text, as a topology file or a command line gives them: `"50ms"`,
//! `"20%"`, `"10mbit"` — tc's own spellings — and the normal distribution's table.

use std::time::Duration;

use crate::error::{Error, Result};

/// `"20%"`, `"0.5%"`, `"20"`: the number (range checks are the caller's).
pub(super) fn percent(text: &str) -> Result<f64> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::invalid(
            format!("percentage {text:?}"),
            "write a number from 0 to 100, optionally followed by %, e.g. \"1.5%\"",
        )),
    }
}

/// `"10mbit"`, `"1.5gbit"`, `"500kbit"`, `"64000bit"`, `"64000"` (bits per second); also
/// `"10mbps"`-style bytes per second, as tc reads them: bits per second (range checks are the
/// caller's).
pub(super) fn rate(text: &str) -> Result<u64> {
    let bad = || {
        Error::invalid(
            format!("rate {text:?}"),
            "write a number and a unit: bit, kbit, mbit, gbit (bits per second) or bps, kbps, mbps, gbps (bytes per second), e.g. \"10mbit\"",
        )
    };
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let factor = match unit.trim() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(bad()),
    };
    let bits = (value * factor).round();
    if !bits.is_finite() || bits > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bits as u64)
}

/// `"50ms"`, `"1.5s"`, `"250us"`, `"100ns"`, `"2m"`. A bare number is refused: tc reads
/// `delay 50` as microseconds, which is too easy to misread.
#[cfg_attr(not(feature = "topology-file"), allow(dead_code))]
pub(crate) fn duration(text: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            format!("duration {text:?}"),
            "write a number and a unit: ns, us, ms, s or m, e.g. \"50ms\"",
        )
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// A duration as tc prints it: `50ms`, `1.5ms`, `2s`, `250us`.
pub(super) fn show_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let (value, unit) = if ns >= 1_000_000_000 && ns % 1_000_000 == 0 {
        (ns as f64 / 1e9, "s")
    } else if ns >= 1_000_000 {
        (ns as f64 / 1e6, "ms")
    } else if ns >= 1_000 {
        (ns as f64 / 1e3, "us")
    } else {
        (ns as f64, "ns")
    };
    format!("{value}{unit}")
}

/// A tc `.dist` file's table.
pub(super) fn dist_table(text: &str) -> Option<Vec<i16>> {
    let table: Vec<i16> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    (!table.is_empty() && table.len() <= 65536).then_some(table)
}

/// The normal distribution's table, as iproute2's `normal.c` makes `normal.dist`: the
/// inverse of the standard normal CDF at 4096 evenly spaced probabilities, in units of 1/8192,
/// clamped to `i16`.
pub(super) fn normal_table() -> Vec<i16> {
    const SIZE: usize = 4096;
    (0..SIZE)
        .map(|i| {
            // The middle of each of the 4096 slices of probability.
            let p = (i as f64 + 0.5) / SIZE as f64;
            (inverse_normal_cdf(p) * 8192.0)
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383_577_518_672_69e2,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_tc_spells_them_and_bad_ones_are_refused() {
        assert_eq!(percent("20%").unwrap(), 20.0);
        assert_eq!(percent(" 0.5 % ").unwrap(), 0.5);
        for bad in ["x", "NaN", "%"] {
            assert!(percent(bad).is_err(), "{bad}");
        }
        assert_eq!(rate("10mbit").unwrap(), 10_000_000);
        assert_eq!(rate("1.5Gbit").unwrap(), 1_500_000_000);
        assert_eq!(rate("1mbps").unwrap(), 8_000_000);
        assert_eq!(rate("64000").unwrap(), 64_000);
        for bad in ["10 parsecs", "fast", ""] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert_eq!(duration("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("250us").unwrap(), Duration::from_micros(250));
        assert!(duration("50").is_err() && duration("-5ms").is_err() && duration("ms").is_err());
        assert_eq!(show_duration(Duration::from_millis(50)), "50ms");
        assert_eq!(show_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(show_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn the_normal_table_is_symmetric_with_unit_spread() {
        let t = normal_table();
        assert_eq!(t.len(), 4096);
        assert_eq!(i32::from(t[0]), -i32::from(t[4095]));
        let mean = t.iter().map(|&v| f64::from(v)).sum::<f64>() / 4096.0;
        let sd = (t
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 4096.0)
            .sqrt();
        assert!(mean.abs() < 1.0, "{mean}");
        assert!(
            (sd / 8192.0 - 1.0).abs() < 0.02,
            "standard deviation {}",
            sd / 8192.0
        );
        assert_eq!(dist_table("# c\n1 -2\n 3"), Some(vec![1, -2, 3]));
        assert_eq!(dist_table("1 x"), None);
    }
}
