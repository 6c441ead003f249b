//! The classic recipe's second script, step by step with the typed builders: two namespaces, each
//! joined by a veth pair to bridge `br0`, whose address is their default gateway. Each call is
//! preceded by the classic recipe's command it replaces.
//!
//! ```sh
//! cargo run --example bridge
//! ```
//!
//! Everything happens inside a private "host" namespace created here, so the machine's own
//! network is never touched, and everything is torn down at the end.

use std::time::Duration;

use netns_kit::{Bridge, Namespace, Route, VethPair, forward_check};

async fn run() -> netns_kit::Result<()> {
    let host = Namespace::new().await?;

    // ip netns add ns1
    // ip netns add ns2
    let ns1 = Namespace::new().await?;
    let ns2 = Namespace::new().await?;

    // The classic recipe's "iptables -A FORWARD -i br0 -j ACCEPT (reason unknown)": bridged frames
    // pass through the iptables FORWARD chain when br_netfilter is on; ask whether its policy would
    // drop them here, and if so let the bridge insert scoped rules (removed with it).
    let check = forward_check(&host).await?;
    println!("FORWARD fix needed: {}", check.needs_fix());

    // brctl addbr br0
    // ip addr add 10.111.1.254/24 dev br0
    // ip link set dev br0 up
    let br0 = Bridge::builder("br0")
        .namespace(&host)
        .address("10.111.1.254/24")
        .accept_forward(check.needs_fix())
        .create()
        .await?;

    // ip link add veth1 type veth peer name veth1-br
    // ip link set veth1-br up
    // brctl addif br0 veth1-br
    // ip link set veth1 netns ns1
    // (Here veth1 is created directly inside ns1 and veth1-br directly on the bridge.)
    let veth1 = VethPair::builder("veth1-br", "veth1")
        .namespace(&host)
        .controller(br0.link())
        .peer_namespace(&ns1)
        .create()
        .await?;
    // ip link add veth2 type veth peer name veth2-br ... (the same for ns2, attached afterwards
    // with `attach`, like `brctl addif`)
    let veth2 = VethPair::builder("veth2-br", "veth2")
        .namespace(&host)
        .peer_namespace(&ns2)
        .create()
        .await?;
    br0.add_port(veth2.link()).await?;

    // ip netns exec ns1 ip addr add 10.111.1.1/24 dev veth1
    // ip netns exec ns1 ip link set veth1 up   (already up)
    let _a1 = veth1.peer().add_address("10.111.1.1/24").await?;
    // ip netns exec ns2 ip addr add 10.111.1.2/24 dev veth2
    let _a2 = veth2.peer().add_address("10.111.1.2/24").await?;

    // ip netns exec ns1 ip route add default via 10.111.1.254
    // ip netns exec ns2 ip route add default via 10.111.1.254
    let gw = "10.111.1.254".parse().unwrap();
    let _r1 = Route::builder(Route::DEFAULT_V4)
        .via(gw)
        .namespace(&ns1)
        .create()
        .await?;
    let _r2 = Route::builder(Route::DEFAULT_V4)
        .via(gw)
        .namespace(&ns2)
        .create()
        .await?;

    for (from, name, to) in [
        (&ns1, "ns1", "10.111.1.2"),
        (&ns2, "ns2", "10.111.1.1"),
        (&ns1, "ns1", "10.111.1.254"),
    ] {
        let rtt = from
            .ping(to.parse().unwrap(), Duration::from_secs(2))
            .await?;
        println!("{name} -> {to}: {:.3} ms", rtt.as_secs_f64() * 1e3);
    }
    println!(
        "ports of br0: {:?}",
        br0.ports()
            .await?
            .iter()
            .map(|p| &p.name)
            .collect::<Vec<_>>()
    );

    // teardown: iptables -D FORWARD ...; ip netns del ns1; ip netns del ns2; ip link del br0
    // The guards do it when they go out of scope: routes, addresses, veths, the bridge (with
    // its rules), then the namespaces.
    Ok(())
}

fn main() -> std::process::ExitCode {
    match futures::executor::block_on(run()) {
        Ok(()) => {
            println!("torn down");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
