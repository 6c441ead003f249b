//! The nlink side of `benches/peers.sh`: `nlink-peer bridged|named N ROUNDS` builds a bridge
//! `br0` (10.100.255.254/16) in the current namespace and N members, each a namespace with a veth
//! pair to the bridge, its address and default route, with nlink 0.33's own API as its user
//! would (members concurrently, one task each, on one shared host connection); then deletes it
//! all, until only `lo` is left. One line per round: `nlink SCENARIO N=n setup_ms=.. teardown_ms=..`.
//!
//! nlink has no anonymous namespaces: both scenarios make named ones (`m{i}` under
//! /run/netns). The teardown deletes the names and lets the kernel remove what was in them, as
//! nlink's `lab` module does (`NLINK_BENCH_TEARDOWN=links` deletes each host end first: ~37 ms
//! each, one after another). Run only inside a throw-away network and mount namespace, as
//! `benches/peers.sh` does.
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nlink::netlink::link::{BridgeLink, LinkCreateExt, VethLink};
use nlink::netlink::namespace::{self, Netns};
use nlink::{Connection, Ipv4Address, Ipv4Route, Route};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const GW: Ipv4Addr = Ipv4Addr::new(10, 100, 255, 254);

fn member_addr(i: usize) -> Ipv4Addr {
    let k = i + 1;
    Ipv4Addr::new(10, 100, (k / 250) as u8, (k % 250 + 1) as u8)
}

/// Setup: bridge in the current ns, then all members concurrently
/// (one tokio task each, sharing one host Connection).
async fn setup(n: usize) -> Res<Vec<String>> {
    let host = Arc::new(Connection::<Route>::new()?);
    // br0 created already up (IFF_UP in the RTM_NEWLINK), then its address.
    host.add_link(BridgeLink::new("br0").up()).await?;
    host.add_address(Ipv4Address::new("br0", GW, 16)).await?;

    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let host = host.clone();
        tasks.push(tokio::spawn(async move { member_up(&host, i).await }));
    }
    let mut names = Vec::with_capacity(n);
    for t in tasks {
        names.push(t.await??);
    }
    Ok(names)
}

async fn member_up(host: &Connection<Route>, i: usize) -> Res<String> {
    let name = format!("m{i}");
    // Named netns (bind mount under /run/netns); blocking call -> blocking pool.
    let nm = name.clone();
    let ns: Netns = tokio::task::spawn_blocking(move || Netns::create(&nm)).await??;
    // veth: host end vh{i} enslaved to br0 and up at creation; peer eth0 in the member.
    host.add_link(
        VethLink::new(format!("vh{i}"), "eth0")
            .peer_netns_fd(&ns)
            .master("br0")
            .up(),
    )
    .await?;
    let conn = Connection::<Route>::new_in(&ns)?;
    conn.set_link_up("lo").await?;
    conn.set_link_up("eth0").await?;
    conn.add_address(Ipv4Address::new("eth0", member_addr(i), 16))
        .await?;
    conn.add_route(Ipv4Route::default_route().gateway(GW))
        .await?;
    drop(conn);
    drop(ns); // joins the handle's worker thread; the name keeps the ns alive
    Ok(name)
}

/// Teardown: per member concurrently, delete the host veth end (takes the
/// peer with it) and the netns name; then br0; then poll `ip -j link`.
async fn teardown(names: Vec<String>) -> Res<()> {
    let host = Arc::new(Connection::<Route>::new()?);
    // NLINK_BENCH_TEARDOWN=links: del_link each host veth end first (one
    // RTM_DELLINK each, serialized by the kernel); default "ns": only delete
    // the netns names (as nlink::lab's Drop does) and let the kernel's
    // netns cleanup remove the veths, then wait for them via `ip -j link`.
    let del_links = std::env::var("NLINK_BENCH_TEARDOWN").as_deref() == Ok("links");
    let mut tasks = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            if del_links {
                host.del_link(format!("vh{i}")).await?;
            }
            tokio::task::spawn_blocking(move || namespace::delete(&name)).await??;
            Res::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let t_members = Instant::now();
    host.del_link("br0").await?;
    let t_br = Instant::now();
    let mut polls = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("ip").args(["-j", "link"]).output()?;
        if !out.status.success() {
            return Err(format!(
                "ip -j link failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let names: Vec<&str> = v
            .as_array()
            .ok_or("ip -j link: not an array")?
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .collect();
        polls += 1;
        if names == ["lo"] {
            if std::env::var_os("NLINK_BENCH_DEBUG").is_some() {
                eprintln!(
                    "debug: br0 del {:.1} ms, ip -j link polls={} {:.1} ms",
                    (t_br - t_members).as_secs_f64() * 1e3,
                    polls,
                    t_br.elapsed().as_secs_f64() * 1e3
                );
            }
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("teardown: host still has {names:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn verify() -> Res<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", "m0", "ping", "-c1", "-W1", &GW.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "verify: ping from m0 failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    eprintln!("verify: ip netns exec m0 ping -c1 -W1 {GW}: ok");
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("nlink-peer: error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: nlink-peer <bridged|named> <N> <rounds>".into());
    }
    let scenario = args[1].as_str();
    if scenario != "bridged" && scenario != "named" {
        return Err(format!("unknown scenario {scenario}").into());
    }
    let n: usize = args[2].parse()?;
    let rounds: usize = args[3].parse()?;
    if n == 0 || n > 62_000 {
        return Err("N must be 1..=62000".into());
    }
    if scenario == "bridged" {
        eprintln!(
            "note: nlink 0.33 has no anonymous-netns API; 'bridged' uses named m{{i}} under /run/netns (same as 'named')"
        );
    }
    for r in 0..rounds {
        let t0 = Instant::now();
        let names = setup(n).await?;
        let setup_ms = t0.elapsed().as_secs_f64() * 1e3;
        if r == 0 {
            verify()?;
        }
        let t1 = Instant::now();
        teardown(names).await?;
        let teardown_ms = t1.elapsed().as_secs_f64() * 1e3;
        let left = std::fs::read_dir("/run/netns")?.count();
        if left != 0 {
            return Err(format!("{left} entries left in /run/netns").into());
        }
        println!("nlink {scenario} N={n} setup_ms={setup_ms:.1} teardown_ms={teardown_ms:.1}");
    }
    Ok(())
}
