//! The router pattern, checked from outside: reachability across subnets with `ping` and TCP,
//! members' default routes via the router, forwarding on in the router only (and put back on a
//! given router), bad input refused before anything is made, everything gone afterwards.

mod common;

use common::{ip_json, link_names, ping, sysctl_outside, tcp_echo_once, tcp_round_trip};
use netns_kit::{MemberSpec, Namespace, RouterLink, VethPair, bridged, routed};

/// What a routed network must never change in the namespace the test process runs in (read
/// only: links and forwarding).
fn current_state() -> (Vec<String>, String, String) {
    let current = Namespace::current().unwrap();
    (
        link_names(&current),
        sysctl_outside(&current, "net.ipv4.ip_forward"),
        sysctl_outside(&current, "net.ipv6.conf.all.forwarding"),
    )
}

/// The gateway of the default route of `ns` for `family` (`-4`/`-6`), as `ip route` shows it.
fn default_gateway(ns: &Namespace, family: &str) -> Option<String> {
    let routes = ip_json(ns, &[family, "route", "show", "default"]);
    routes[0]["gateway"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn two_lans_and_a_link_reach_each_other_through_the_router() {
    let before = current_state();
    let db = Namespace::new().await.unwrap();
    let net = routed()
        .lan(
            bridged()
                .bridge_name("lan-a")
                .gateway("10.160.1.1/24")
                .gateway("fd60:1::1/64")
                .member(
                    MemberSpec::new()
                        .address("10.160.1.2/24")
                        .address("fd60:1::2/64"),
                )
                .member(
                    MemberSpec::new()
                        .address("10.160.1.3/24")
                        .address("fd60:1::3/64"),
                ),
        )
        .lan(
            bridged()
                .bridge_name("lan-b")
                .gateway("10.160.2.1/24")
                .gateway("fd60:2::1/64")
                .member(
                    MemberSpec::new()
                        .address("10.160.2.2/24")
                        .address("fd60:2::2/64"),
                ),
        )
        .link(
            RouterLink::to(&db)
                .names("to-db", "eth0")
                .address("10.160.3.1/30", "10.160.3.2/30")
                .address("fd60:3::1/64", "fd60:3::2/64"),
        )
        .create()
        .await
        .unwrap();
    assert!(net.is_router_owned());
    let router = net.router();
    let a1 = net.lans()[0].members()[0].namespace();
    let b1 = net.lans()[1].members()[0].namespace();

    // Forwarding on in the router, and nowhere else.
    assert_eq!(sysctl_outside(router, "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl_outside(router, "net.ipv6.conf.all.forwarding"), "1");
    for ns in [a1, b1, &db] {
        assert_eq!(sysctl_outside(ns, "net.ipv4.ip_forward"), "0");
        assert_eq!(sysctl_outside(ns, "net.ipv6.conf.all.forwarding"), "0");
    }
    // The router holds both bridges, their three ports and its end of the link.
    let links = ip_json(router, &["link"]);
    let mut own: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["master"].is_null())
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    own.sort();
    assert_eq!(own, ["lan-a", "lan-b", "lo", "to-db"]);
    assert_eq!(links.as_array().unwrap().len(), 4 + 3);
    assert_eq!(current_state(), before, "the test's own namespace changed");
    // Default routes point at the router's address on each subnet.
    assert_eq!(default_gateway(a1, "-4").as_deref(), Some("10.160.1.1"));
    assert_eq!(default_gateway(a1, "-6").as_deref(), Some("fd60:1::1"));
    assert_eq!(default_gateway(&db, "-4").as_deref(), Some("10.160.3.1"));
    assert_eq!(default_gateway(&db, "-6").as_deref(), Some("fd60:3::1"));
    assert_eq!(
        default_gateway(router, "-4"),
        None,
        "the router needs no default route"
    );

    // Across subnets, both IP versions, with ping and TCP.
    for (from, to) in [
        (a1, "10.160.2.2"),
        (a1, "fd60:2::2"),
        (b1, "10.160.3.2"),
        (b1, "fd60:3::2"),
        (&db, "10.160.1.3"),
        (&db, "fd60:1::3"),
    ] {
        assert!(ping(from, to), "no ping to {to}");
    }
    let server = tcp_echo_once(&db, 7400);
    tcp_round_trip(a1, "10.160.3.2", 7400).unwrap();
    server.join().unwrap();
    let server = tcp_echo_once(b1, 7401);
    tcp_round_trip(&db, "fd60:2::2", 7401).unwrap();
    server.join().unwrap();

    // Teardown: the far end of the link is gone from `db`; the router and members go too.
    net.delete().await.unwrap();
    assert_eq!(link_names(&db), ["lo"]);
    assert_eq!(current_state(), before, "the test's own namespace changed");
}

#[test]
fn networks_sharing_a_router_restore_its_settings_when_the_last_goes() {
    let router = Namespace::new_blocking().unwrap();
    let (h1, h2, h3, h4) = (
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
    );
    // An interface of the router's own, forwarding on by itself while the router is not.
    let own = VethPair::builder("own0", "own1")
        .namespace(&router)
        .create_blocking()
        .unwrap();
    router
        .set_sysctl_blocking("net.ipv4.conf.own0.forwarding", "1")
        .unwrap();
    let network = |a: &Namespace, b: &Namespace, n: u8| {
        routed()
            .router(&router)
            .link(RouterLink::to(a).address(format!("10.164.{n}.1/24"), format!("10.164.{n}.2/24")))
            .link(RouterLink::to(b).address(
                format!("10.164.{}.1/24", n + 1),
                format!("10.164.{}.2/24", n + 1),
            ))
            .create_blocking()
            .unwrap()
    };
    let first = network(&h1, &h2, 1);
    let second = network(&h3, &h4, 3);
    assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "1");
    drop(first);
    // The second network still routes.
    assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "1");
    assert!(ping(&h3, "10.164.4.2"));
    drop(second);
    assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "0");
    // Writing ip_forward rewrote every interface's setting; the router's own is put back.
    assert_eq!(
        sysctl_outside(&router, "net.ipv4.conf.own0.forwarding"),
        "1"
    );
    drop(own);
}

#[test]
fn a_given_router_gets_its_forwarding_settings_back() {
    let router = Namespace::new_blocking().unwrap();
    let host = Namespace::new_blocking().unwrap();
    assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "0");
    let net = routed()
        .router(&router)
        .lan(
            bridged()
                .gateway("10.161.1.1/24")
                .member(MemberSpec::new().address("10.161.1.2/24")),
        )
        .link(RouterLink::to(&host).address("10.161.2.1/24", "10.161.2.2/24"))
        .create_blocking()
        .unwrap();
    assert!(!net.is_router_owned());
    assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "1");
    // IPv4 only: IPv6 forwarding is left alone.
    assert_eq!(sysctl_outside(&router, "net.ipv6.conf.all.forwarding"), "0");
    let m = net.lans()[0].members()[0].namespace();
    assert!(ping(m, "10.161.2.2"));
    drop(net);
    assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "0");
    assert_eq!(link_names(&router), ["lo"]);
    assert_eq!(link_names(&host), ["lo"]);
}

#[test]
fn the_router_is_torn_down_during_a_panic() {
    let router = Namespace::new_blocking().unwrap();
    let host = Namespace::new_blocking().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _net = routed()
            .router(&router)
            .link(RouterLink::to(&host).address("10.162.1.1/30", "10.162.1.2/30"))
            .lan(
                bridged()
                    .gateway("10.162.2.1/24")
                    .member(MemberSpec::new().address("10.162.2.2/24")),
            )
            .create_blocking()
            .unwrap();
        panic!("the test failed");
    }));
    assert!(result.is_err());
    assert_eq!(link_names(&router), ["lo"]);
    assert_eq!(link_names(&host), ["lo"]);
    assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "0");
}

#[test]
fn bad_input_is_refused_before_anything_is_made() {
    let router = Namespace::new_blocking().unwrap();
    let host = Namespace::new_blocking().unwrap();
    let lan = |gw: &str| {
        bridged()
            .gateway(gw)
            .member(MemberSpec::new().address(gw.replace(".1/", ".2/")))
    };
    let cases = [
        (
            routed().router(&router).lan(lan("10.163.1.1/24")),
            "two or more subnets",
        ),
        (
            routed()
                .router(&router)
                .lan(lan("10.163.1.1/24"))
                .lan(lan("10.163.1.1/16")),
            "overlap",
        ),
        (
            routed()
                .router(&router)
                .lan(lan("10.163.1.1/24"))
                .link(RouterLink::to(&host).address("10.163.0.1/16", "10.163.0.2/16")),
            "overlap",
        ),
        (
            routed()
                .router(&router)
                .lan(lan("10.163.1.1/24").host(&host))
                .lan(lan("10.163.2.1/24")),
            "lives in the router",
        ),
        (
            routed()
                .router(&router)
                .lan(lan("10.163.1.1/24"))
                .link(RouterLink::to(&host)),
            "address pair",
        ),
        (
            routed()
                .router(&router)
                .lan(lan("10.163.1.1/24"))
                .link(RouterLink::to(&host).address("10.163.2.1/24", "fd63::2/64")),
            "different IP versions",
        ),
    ];
    for (builder, says) in cases {
        let err = builder.create_blocking().unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            err.to_string().contains(says),
            "{err:?} should say {says:?}"
        );
        assert_eq!(link_names(&router), ["lo"], "after {err}");
        assert_eq!(link_names(&host), ["lo"], "after {err}");
        assert_eq!(sysctl_outside(&router, "net.ipv4.ip_forward"), "0");
    }
}
