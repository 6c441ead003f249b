//! macvlan, checked from outside: interfaces made directly inside container namespaces on a
//! parent link (`ip -d -j link`: kind, mode; nothing left in the parent's namespace), reaching
//! each other in `bridge` mode and not in `private` mode, reaching the parent's network in both;
//! bad input refused before anything is made; gone after the guard.

mod common;

use common::{ip_json, link_names, ping, sandbox};
use netns_kit::{Macvlan, MacvlanMode, Namespace, connect};

/// A parent link `lan0` in `host`, wired to a "rest of the network" namespace holding
/// 10.78.0.254/24.
async fn parent() -> (Namespace, Namespace, netns_kit::DirectLink) {
    let host = sandbox().await;
    let world = Namespace::new().await.unwrap();
    let wire = connect(&host, &world)
        .names("lan0", "lan0")
        .address("10.78.9.1/30", "10.78.9.2/30")
        .default_routes(false)
        .create()
        .await
        .unwrap();
    world
        .command("ip")
        .args(["addr", "add", "10.78.0.254/24", "dev", "lan0"])
        .status()
        .unwrap();
    (host, world, wire)
}

async fn macvlan_in(
    ns: &Namespace,
    parent: &netns_kit::Link,
    mode: MacvlanMode,
    address: &str,
) -> Macvlan {
    Macvlan::builder("mv0", parent)
        .mode(mode)
        .namespace(ns)
        .address(address)
        .create()
        .await
        .unwrap()
}

#[tokio::test]
async fn bridge_mode_macvlans_reach_each_other_and_the_parents_network() {
    let (host, _world, wire) = parent().await;
    let (c1, c2) = (
        Namespace::new().await.unwrap(),
        Namespace::new().await.unwrap(),
    );
    let m1 = macvlan_in(&c1, wire.link(), MacvlanMode::Bridge, "10.78.0.1/24").await;
    let _m2 = macvlan_in(&c2, wire.link(), MacvlanMode::Bridge, "10.78.0.2/24").await;
    let link = ip_json(&c1, &["-d", "link", "show", "dev", "mv0"]);
    assert_eq!(link[0]["linkinfo"]["info_kind"], "macvlan", "{link}");
    assert_eq!(link[0]["linkinfo"]["info_data"]["mode"], "bridge", "{link}");
    assert_eq!(link[0]["operstate"], "UP", "{link}");
    // Made directly inside: nothing new in the parent's namespace.
    assert_eq!(link_names(&host), ["lo", "lan0"]);
    assert!(
        ping(&c1, "10.78.0.2"),
        "macvlans of one parent in bridge mode"
    );
    assert!(ping(&c2, "10.78.0.254"), "the parent's network");
    drop(m1);
    assert_eq!(link_names(&c1), ["lo"]);
}

#[tokio::test]
async fn private_mode_macvlans_do_not_reach_each_other() {
    let (_host, _world, wire) = parent().await;
    let (c1, c2) = (
        Namespace::new().await.unwrap(),
        Namespace::new().await.unwrap(),
    );
    let _m1 = macvlan_in(&c1, wire.link(), MacvlanMode::Private, "10.78.0.1/24").await;
    let _m2 = macvlan_in(&c2, wire.link(), MacvlanMode::Private, "10.78.0.2/24").await;
    let link = ip_json(&c2, &["-d", "link", "show", "dev", "mv0"]);
    assert_eq!(
        link[0]["linkinfo"]["info_data"]["mode"], "private",
        "{link}"
    );
    assert!(ping(&c1, "10.78.0.254"));
    assert!(
        !ping(&c1, "10.78.0.2"),
        "private mode isolates macvlans of one parent"
    );
}

#[tokio::test]
async fn bad_macvlan_input_is_refused_and_leaves_nothing() {
    let (host, _world, wire) = parent().await;
    let c = Namespace::new().await.unwrap();
    let err = Macvlan::builder("bad/name", wire.link())
        .namespace(&c)
        .create()
        .await
        .unwrap_err();
    assert!(err.to_string().contains('/'), "{err}");
    let err = Macvlan::builder("mv0", wire.link())
        .namespace(&c)
        .address("10.78.0.1/24")
        .address("10.78.0.1/24")
        .create()
        .await
        .unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("twice"),
        "{err}"
    );
    // The kernel's refusal (an MTU over the parent's) rolls back: nothing left anywhere.
    let err = Macvlan::builder("mv0", wire.link())
        .namespace(&c)
        .mtu(9000)
        .address("10.78.0.1/24")
        .create()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("macvlan \"mv0\""), "{err}");
    assert_eq!(link_names(&c), ["lo"]);
    assert_eq!(link_names(&host), ["lo", "lan0"]);
}
