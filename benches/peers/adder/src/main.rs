//! `adder`: joins the network namespace at `NK_NETNS` to the existing bridge `cni0` with the
//! address `NK_ADDR` (`ADDRESS/PREFIX`) and the gateway `NK_GW` (an address, of the same prefix),
//! keeps it, and with `NK_REPORT` set prints its thread count and peak RSS in KiB (`VmHWM`), as
//! the topology bench's own runtime child does. With `NETNS_KIT_BENCH_WIRED=1` it prints the time
//! from `main` to wired on stderr, and of each step.

use std::time::Instant;

use netns_kit::{Bridge, MemberSpec, Namespace, bridged};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = add() {
        eprintln!("adder: error: {e}");
        std::process::exit(1);
    }
}

fn add() -> Result<()> {
    let begin = Instant::now();
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let container = Namespace::open_path(var("NK_NETNS")?)?;
    let host = Namespace::current()?;
    let address = var("NK_ADDR")?;
    let prefix = address
        .split_once('/')
        .ok_or("NK_ADDR: not ADDRESS/PREFIX")?
        .1;
    let opened = begin.elapsed();
    let cni0 = Bridge::open_blocking(&host, "cni0")?;
    let bridge = begin.elapsed();
    let network = bridged()
        .existing_bridge(&cni0)
        .gateway(format!("{}/{prefix}", var("NK_GW")?))
        .member(MemberSpec::in_namespace(&container).address(address))
        .create_blocking()?;
    let created = begin.elapsed();
    network.keep();
    let wired = begin.elapsed();
    if std::env::var("NETNS_KIT_BENCH_WIRED").is_ok_and(|v| !v.is_empty() && v != "0") {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "main to wired: {:.3} ms (namespaces {:.3}, bridge opened {:.3}, created {:.3}, kept {:.3})",
            ms(wired),
            ms(opened),
            ms(bridge - opened),
            ms(created - bridge),
            ms(wired - created)
        );
    }
    // Only where asked (`NK_REPORT`): the bench's timed runs do the ADD alone.
    if std::env::var_os("NK_REPORT").is_none() {
        return Ok(());
    }
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or("no VmHWM in /proc/self/status")?;
    println!("{threads} {hwm}");
    Ok(())
}
