//! The main job: the two classic topologies — two namespaces joined by a veth pair, and
//! namespaces on a bridge whose address is their gateway — each built with one call,
//! connectivity proven with real ICMP echoes (round-trip times printed), then everything torn
//! down.
//!
//! ```sh
//! cargo run --example two_patterns              # inside a private namespace: safe anywhere
//! cargo run --example two_patterns -- --in-host # in the current namespace, like the scripts
//! ```
//!
//! By default everything is built inside a private "host" namespace this program creates, so it
//! changes nothing on the machine. With `--in-host` it works in the current namespace as the
//! classic shell recipe does: named namespaces `ns1`/`ns2` (visible to `ip netns list` while it
//! runs), a bridge `br0`, and — if [`forward_check`] says bridged traffic would be dropped, as on
//! a machine running Docker — scoped `iptables` FORWARD accept rules for `br0`. It removes
//! everything it added before exiting.
//!
//! The classic recipe uses 192.168.1.0/24; this uses 10.111.1.0/24 and fd11:1::/64 instead,
//! which are far less likely to clash with a real LAN when run with `--in-host`.

use std::{net::IpAddr, process::ExitCode, time::Duration, time::Instant};

use netns_kit::{MemberSpec, Namespace, bridged, connect, forward_check};

const TIMEOUT: Duration = Duration::from_secs(2);

async fn ping(from: &Namespace, who: &str, to: &str) -> netns_kit::Result<()> {
    let addr: IpAddr = to.parse().expect("a literal address");
    let rtt = from.ping(addr, TIMEOUT).await?;
    println!(
        "  ping {who} -> {to:<14} ok, rtt {:>7.3} ms",
        rtt.as_secs_f64() * 1e3
    );
    Ok(())
}

/// A namespace for a member: named like the classic recipe's in `--in-host` mode, anonymous
/// otherwise.
async fn member_ns(in_host: bool, name: &str) -> netns_kit::Result<Namespace> {
    if in_host {
        Namespace::named(name).await
    } else {
        Namespace::new().await
    }
}

async fn pattern_one(in_host: bool) -> netns_kit::Result<()> {
    println!("pattern 1: two namespaces joined directly by a veth pair");
    let start = Instant::now();
    let ns1 = member_ns(in_host, "ns1").await?;
    let ns2 = member_ns(in_host, "ns2").await?;
    let link = connect(&ns1, &ns2)
        .names("veth1", "veth2")
        .address("10.111.1.1/24", "10.111.1.2/24")
        .address("fd11:1::1/64", "fd11:1::2/64")
        .create()
        .await?;
    println!(
        "  built {} <-> {} in {:.2} ms",
        link.link(),
        link.peer(),
        start.elapsed().as_secs_f64() * 1e3
    );
    ping(&ns1, "ns1", "10.111.1.2").await?;
    ping(&ns2, "ns2", "10.111.1.1").await?;
    ping(&ns1, "ns1", "fd11:1::2").await?;
    ping(&ns2, "ns2", "fd11:1::1").await?;
    let start = Instant::now();
    link.delete().await?;
    ns1.delete().await?;
    ns2.delete().await?;
    println!(
        "  torn down in {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn pattern_two(host: &Namespace, in_host: bool) -> netns_kit::Result<()> {
    println!("pattern 2: namespaces on bridge br0, whose address is their gateway");
    let check = forward_check(host).await?;
    println!(
        "  FORWARD check in {}: bridge-nf-call-iptables={:?}, FORWARD policy={:?} -> {}",
        host,
        check.bridge_nf_call_iptables,
        check.ipv4_forward_policy,
        if check.needs_fix() {
            "bridged traffic would be dropped: adding scoped ACCEPT rules for br0"
        } else {
            "no fix needed"
        }
    );
    let start = Instant::now();
    let ns1 = member_ns(in_host, "ns1").await?;
    let ns2 = member_ns(in_host, "ns2").await?;
    let net = bridged()
        .host(host)
        .bridge_name("br0")
        .gateway("10.111.1.254/24")
        .gateway("fd11:1::fe/64")
        .accept_forward(check.needs_fix())
        .member(
            MemberSpec::owning(ns1)
                .address("10.111.1.1/24")
                .address("fd11:1::1/64")
                .peer_name("veth1-br"),
        )
        .member(
            MemberSpec::owning(ns2)
                .address("10.111.1.2/24")
                .address("fd11:1::2/64")
                .peer_name("veth2-br"),
        )
        .create()
        .await?;
    println!(
        "  built bridge {} with {} members in {:.2} ms",
        net.bridge(),
        net.members().len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    let (m1, m2) = (&net.members()[0], &net.members()[1]);
    ping(m1.namespace(), "ns1", "10.111.1.2").await?;
    ping(m2.namespace(), "ns2", "10.111.1.1").await?;
    ping(m1.namespace(), "ns1", "10.111.1.254").await?;
    ping(m1.namespace(), "ns1", "fd11:1::2").await?;
    ping(m2.namespace(), "ns2", "fd11:1::fe").await?;
    let start = Instant::now();
    net.delete().await?;
    println!(
        "  torn down in {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn run(in_host: bool) -> netns_kit::Result<()> {
    let host = if in_host {
        Namespace::current()?
    } else {
        Namespace::new().await?
    };
    println!("working in {}", host);
    pattern_one(in_host).await?;
    pattern_two(&host, in_host).await?;
    println!("done: both topologies built, connectivity proven, everything removed");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let in_host = match args.as_slice() {
        [] => false,
        [flag] if flag == "--in-host" => true,
        _ => {
            eprintln!("usage: two_patterns [--in-host]");
            return ExitCode::from(2);
        }
    };
    // Without root (and not asked to work in the current namespace): into a user namespace of
    // our own first, before any thread starts, where everything below is allowed.
    if !in_host && !nix::unistd::geteuid().is_root() {
        match netns_kit::userns::isolate() {
            Ok(how) => println!("not root: working in {how:?}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match futures::executor::block_on(run(in_host)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
