//! The classic recipe's first script, step by step with the typed builders: two namespaces joined
//! directly by a veth pair. Each call is preceded by the classic recipe's command it replaces.
//!
//! ```sh
//! cargo run --example veth_pair
//! ```
//!
//! The namespaces are anonymous (they need no name and cannot leak); everything is torn down
//! when the guards go out of scope at the end of `main`, in reverse order of creation.

use std::time::Duration;

use netns_kit::{Namespace, Route, VethPair};

async fn run() -> netns_kit::Result<()> {
    // ip netns add ns1
    // ip netns add ns2
    let ns1 = Namespace::new().await?;
    let ns2 = Namespace::new().await?;

    // ip link add veth1 type veth peer name veth2
    // ip link set veth1 netns ns1
    // ip link set veth2 netns ns2
    // (Here each end is created directly inside its namespace instead of being moved there.)
    let veth = VethPair::builder("veth1", "veth2")
        .namespace(&ns1)
        .peer_namespace(&ns2)
        .up(false) // the recipe brings them up separately, below
        .create()
        .await?;

    // ip netns exec ns1 ip addr add 10.111.1.1/24 dev veth1
    // ip netns exec ns1 ip link set veth1 up
    let a1 = veth.link().add_address("10.111.1.1/24").await?;
    veth.link().set_up().await?;

    // ip netns exec ns2 ip addr add 10.111.1.2/24 dev veth2
    // ip netns exec ns2 ip link set veth2 up
    let a2 = veth.peer().add_address("10.111.1.2/24").await?;
    veth.peer().set_up().await?;

    // ip netns exec ns1 ip route add default via 10.111.1.2
    // ip netns exec ns2 ip route add default via 10.111.1.1
    let r1 = Route::builder(Route::DEFAULT_V4)
        .via("10.111.1.2".parse().unwrap())
        .namespace(&ns1)
        .create()
        .await?;
    let r2 = Route::builder(Route::DEFAULT_V4)
        .via("10.111.1.1".parse().unwrap())
        .namespace(&ns2)
        .create()
        .await?;

    // ip netns exec ns1 ping -c1 10.111.1.2
    let rtt = ns1
        .ping("10.111.1.2".parse().unwrap(), Duration::from_secs(2))
        .await?;
    println!("ns1 -> 10.111.1.2: {:.3} ms", rtt.as_secs_f64() * 1e3);
    let rtt = ns2
        .ping("10.111.1.1".parse().unwrap(), Duration::from_secs(2))
        .await?;
    println!("ns2 -> 10.111.1.1: {:.3} ms", rtt.as_secs_f64() * 1e3);

    // teardown: ip netns del ns1; ip netns del ns2
    // Explicitly here, to report errors; dropping the guards would do the same silently.
    r1.delete().await?;
    r2.delete().await?;
    a1.delete().await?;
    a2.delete().await?;
    veth.delete().await?;
    ns1.delete().await?;
    ns2.delete().await?;
    println!("torn down");
    Ok(())
}

fn main() -> std::process::ExitCode {
    match futures::executor::block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
