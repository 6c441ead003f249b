//! `Route`: default and prefix routes, v4 and v6, via a gateway and/or a device, metric; the
//! guard contract; bad input. Checked with `ip -j route` through `nsenter`.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use netns_kit::{Namespace, Route, VethPair};

async fn wired(ns: &Namespace) -> VethPair {
    VethPair::builder("r0", "r1")
        .namespace(ns)
        .address("10.50.0.1/24")
        .address("fd50::1/64")
        .nodad(true)
        .create()
        .await
        .unwrap()
}

fn find<'a>(routes: &'a [serde_json::Value], dst: &str) -> Option<&'a serde_json::Value> {
    routes.iter().find(|r| r["dst"] == dst)
}

#[tokio::test]
async fn default_routes_v4_and_v6_via_a_gateway() {
    let ns = sandbox().await;
    let _veth = wired(&ns).await;
    let r4 = Route::builder(Route::DEFAULT_V4)
        .via(Ipv4Addr::new(10, 50, 0, 2))
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    let r6 = Route::builder(Route::DEFAULT_V6)
        .via("fd50::2".parse::<Ipv6Addr>().unwrap())
        .metric(100)
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    let v4 = routes(&ns, false);
    let d4 = find(&v4, "default").expect("IPv4 default route");
    assert_eq!(d4["gateway"], "10.50.0.2");
    assert_eq!(d4["dev"], "r0");
    let v6 = routes(&ns, true);
    let d6 = find(&v6, "default").expect("IPv6 default route");
    assert_eq!(d6["gateway"], "fd50::2");
    assert_eq!(d6["metric"], 100);
    assert!(r4.destination().prefix() == 0 && r6.gateway().is_some());
    let listed = ns.routes().await.unwrap();
    assert_eq!(listed.iter().filter(|r| r.is_default()).count(), 2);

    drop(r4);
    assert!(find(&routes(&ns, false), "default").is_none());
    r6.delete().await.unwrap();
    assert!(find(&routes(&ns, true), "default").is_none());
}

#[tokio::test]
async fn prefix_routes_via_a_device_or_a_gateway() {
    let ns = sandbox().await;
    let veth = wired(&ns).await;
    let on_link = Route::builder("10.51.0.0/16".parse::<ipnetwork::Ipv4Network>().unwrap())
        .dev(veth.link())
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    let via = Route::builder("10.52.0.0/16")
        .via("10.50.0.9".parse().unwrap())
        .table(254)
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    let v4 = routes(&ns, false);
    let r = find(&v4, "10.51.0.0/16").unwrap();
    assert_eq!(r["dev"], "r0");
    assert_eq!(r["scope"], "link");
    assert_eq!(find(&v4, "10.52.0.0/16").unwrap()["gateway"], "10.50.0.9");
    drop((on_link, via));
    let v4 = routes(&ns, false);
    assert!(find(&v4, "10.51.0.0/16").is_none() && find(&v4, "10.52.0.0/16").is_none());
}

#[tokio::test]
async fn a_route_whose_device_is_gone_counts_as_removed() {
    let ns = sandbox().await;
    let veth = wired(&ns).await;
    let r = Route::builder(Route::DEFAULT_V4)
        .via(Ipv4Addr::new(10, 50, 0, 2))
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    veth.delete().await.unwrap();
    r.delete().await.unwrap();
}

#[tokio::test]
async fn bad_routes_are_refused_before_any_request() {
    let ns = sandbox().await;
    let veth = wired(&ns).await;
    let other = sandbox().await;
    let elsewhere = VethPair::builder("o0", "o1")
        .namespace(&other)
        .create()
        .await
        .unwrap();
    let cases = [
        (
            Route::builder("10.60.0.0/16").via("fd50::2".parse().unwrap()),
            "different IP families",
        ),
        (
            Route::builder("fd60::/64").via("10.50.0.2".parse().unwrap()),
            "different IP families",
        ),
        (
            Route::builder("10.60.0.1/16").via("10.50.0.2".parse().unwrap()),
            "host bits",
        ),
        (Route::builder("10.60.0.0/16"), "needs a gateway"),
        (
            Route::builder("10.60.0.0/40").via("10.50.0.2".parse().unwrap()),
            "out of range",
        ),
        (
            Route::builder("10.60.0.0/16").dev(elsewhere.link()),
            "another namespace",
        ),
        (
            Route::builder("::/0").via("fe80::1".parse().unwrap()),
            "link-local gateway",
        ),
        (
            Route::builder("10.60.0.0/16").via("224.0.0.1".parse().unwrap()),
            "cannot be a gateway",
        ),
    ];
    for (builder, why) in cases {
        let err = builder.namespace(&ns).create().await.unwrap_err();
        assert!(err.is_invalid_input(), "{why}: {err:?}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    assert!(find(&routes(&ns, false), "10.60.0.0/16").is_none());
    drop(veth);
}

#[tokio::test]
async fn the_kernels_refusal_is_typed_and_explained() {
    let ns = sandbox().await;
    let _veth = wired(&ns).await;
    // A gateway on no connected network.
    let err = Route::builder(Route::DEFAULT_V4)
        .via(Ipv4Addr::new(10, 99, 0, 1))
        .namespace(&ns)
        .create()
        .await
        .unwrap_err();
    assert_eq!(err.errno(), Some(nix::libc::ENETUNREACH), "{err}");
    assert!(err.to_string().contains("default route"), "{err}");
    // The same route twice.
    let _r = Route::builder(Route::DEFAULT_V4)
        .via(Ipv4Addr::new(10, 50, 0, 2))
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    let err = Route::builder(Route::DEFAULT_V4)
        .via(Ipv4Addr::new(10, 50, 0, 2))
        .namespace(&ns)
        .create()
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
}
