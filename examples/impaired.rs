//! A network that misbehaves: hosts on one LAN whose links delay and lose what they send, and
//! a ping across it that shows what that does.
//!
//! ```sh
//! cargo run --example impaired -- --hosts 5 --delay 50ms --loss 20% --count 200
//! # impaired: sent 200 received 128 avg_rtt_ms 100.4
//! cargo run --example impaired -- --delay 20ms --jitter 5ms --rate 10mbit --capture
//! cargo run --example impaired -- --hosts 3 --partition
//! ```
//!
//! Each host's link gets the delay and loss on what the host sends, so a ping from the first
//! host to the last crosses two impaired directions: a round trip of about twice the delay,
//! and replies for about (1 − loss)² of the requests. With `--capture`, the last host's link
//! is captured to a pcap file (its path is printed; `tcpdump -r` reads it). With
//! `--partition`, the first host is then cut off from the last (silently: no reply, no ICMP
//! error), and healed.
//!
//! Everything lives in a lab (private namespaces); the machine's own network is never touched.
//! On a kernel without the netem qdisc the impairment runs in user space; the line `backend:`
//! says which.

use std::{process::ExitCode, time::Duration};

use netns_kit::{
    impair::{Impairment, Percent, Rate},
    lab::Lab,
};

struct Args {
    hosts: usize,
    impairment: Impairment,
    count: u32,
    capture: bool,
    partition: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        hosts: 5,
        impairment: Impairment::new(),
        count: 100,
        capture: false,
        partition: false,
    };
    let mut it = std::env::args().skip(1);
    let duration = |v: &str| -> Result<Duration, String> {
        let ms = v
            .strip_suffix("ms")
            .ok_or_else(|| format!("{v:?}: give milliseconds, e.g. 50ms"))?;
        ms.parse::<f64>()
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .map_err(|e| format!("{v:?}: {e}"))
    };
    while let Some(flag) = it.next() {
        if flag == "--capture" {
            args.capture = true;
            continue;
        }
        if flag == "--partition" {
            args.partition = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let imp = std::mem::take(&mut args.impairment);
        args.impairment = match flag.as_str() {
            "--hosts" => {
                args.hosts = value.parse().map_err(|e| format!("--hosts: {e}"))?;
                imp
            }
            "--count" => {
                args.count = value.parse().map_err(|e| format!("--count: {e}"))?;
                imp
            }
            "--delay" => imp.delay(duration(&value)?),
            "--jitter" => imp.jitter(duration(&value)?),
            "--loss" => imp.loss(value.parse::<Percent>().map_err(|e| e.to_string())?),
            "--rate" => imp.rate(value.parse::<Rate>().map_err(|e| e.to_string())?),
            other => return Err(format!("unknown option {other}")),
        };
    }
    if !(2..=250).contains(&args.hosts) {
        return Err("--hosts: from 2 to 250".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("impaired: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("impaired: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let Some(mut lab) = Lab::or_skip_blocking("impaired_example")? else {
        return Ok(());
    };
    let hosts: Vec<String> = (1..=args.hosts).map(|i| format!("h{i}")).collect();
    lab.add_lan_blocking(["10.60.0.0/24", "fd60::/64"], &hosts)?;
    for host in &hosts {
        lab.impair_blocking(host, &args.impairment)?;
    }
    let (first, last) = (&hosts[0], &hosts[hosts.len() - 1]);
    if let Some(guard) = lab.impairments(first).next() {
        println!("backend: {}", guard.backend());
    }
    let capture = if args.capture {
        let path = std::env::temp_dir().join(format!("impaired-{last}.pcap"));
        Some(
            lab.host(last)?
                .link_by_name_blocking("eth0")?
                .capture_blocking(path)?,
        )
    } else {
        None
    };
    println!("impairment of each host's link: {}", args.impairment);
    let to = lab.address(last, 4)?;
    // Resolve the neighbours first (ARP crosses the impaired links too, and would hold the
    // first pings back): a few single pings until one is answered.
    for _ in 0..10 {
        let warm = lab
            .command(first, "ping")?
            .args(["-n", "-q", "-c1", "-W2", &to.to_string()])
            .output()?;
        if warm.status.success() {
            break;
        }
    }
    let out = lab
        .command(first, "ping")?
        .args(["-n", "-q", "-i", "0.02", "-W", "2"])
        .args(["-c", &args.count.to_string(), &to.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let number_before = |word: &str| -> Option<u32> {
        let at = text.find(word)?;
        text[..at].split_whitespace().last()?.parse().ok()
    };
    let sent = number_before(" packets transmitted").ok_or_else(|| format!("ping said: {text}"))?;
    let received = number_before(" received").unwrap_or(0);
    let avg = text
        .split("rtt min/avg/max/mdev = ")
        .nth(1)
        .and_then(|t| t.split('/').nth(1))
        .and_then(|t| t.parse::<f64>().ok());
    match avg {
        Some(avg) => println!("impaired: sent {sent} received {received} avg_rtt_ms {avg:.1}"),
        None => println!("impaired: sent {sent} received {received} avg_rtt_ms -"),
    }
    if args.partition {
        let answered = |lab: &Lab| -> Result<usize, Box<dyn std::error::Error>> {
            let out = lab
                .command(first, "ping")?
                .args(["-n", "-c", "3", "-i", "0.2", "-W", "1", &to.to_string()])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(text.lines().filter(|l| l.contains(" bytes from ")).count())
        };
        lab.partition_blocking(&[first.as_str()], &[last.as_str()])?;
        println!("partitioned: {} of 3 pings answered", answered(&lab)?);
        lab.heal();
        println!("healed: {} of 3 pings answered", answered(&lab)?);
    }
    if let Some(capture) = capture {
        let path = capture.path().to_path_buf();
        let packets = capture.stop()?;
        println!("capture: {packets} packets in {}", path.display());
    }
    Ok(())
}
