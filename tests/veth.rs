//! `VethPair`: ends in two namespaces, created in place, configured, up; the guard contract;
//! bad input and rollback. Checked with `ip -j` run through `nsenter`.

mod common;

use common::*;
use netns_kit::{MacAddr, Namespace, VethPair, VethPairBuilder};

#[tokio::test]
async fn ends_live_in_their_namespaces_configured_and_up() {
    let (a, b) = (sandbox().await, sandbox().await);
    let veth = VethPair::builder("va", "vb")
        .namespace(&a)
        .peer_namespace(&b)
        .mtu(1400)
        .mac("02:00:00:00:aa:01".parse().unwrap())
        .peer_mac("02:00:00:00:bb:01".parse().unwrap())
        .address("10.7.0.1/24")
        .address("fd07::1/64")
        .peer_address("10.7.0.2/24")
        .nodad(true)
        .create()
        .await
        .unwrap();
    assert_eq!(link_names(&a), ["lo", "va"]);
    assert_eq!(link_names(&b), ["lo", "vb"]);
    let va = link_json(&a, "va");
    let vb = link_json(&b, "vb");
    assert_eq!(va["linkinfo"]["info_kind"], "veth");
    assert_eq!(va["mtu"], 1400);
    assert_eq!(vb["mtu"], 1400);
    assert_eq!(va["address"], "02:00:00:00:aa:01");
    assert_eq!(vb["address"], "02:00:00:00:bb:01");
    assert!(has_flag(&va, "UP") && has_flag(&vb, "UP"));
    assert_eq!(va["operstate"], "UP");
    assert_eq!(veth.link().index(), va["ifindex"].as_u64().unwrap() as u32);
    assert_eq!(veth.peer().index(), vb["ifindex"].as_u64().unwrap() as u32);
    assert_eq!(addrs(&a, "va"), ["10.7.0.1/24", "fd07::1/64"]);
    assert_eq!(addrs(&b, "vb"), ["10.7.0.2/24"]);
    assert!(ping(&a, "10.7.0.2"));

    // The library's own view agrees.
    let info = veth.link().info().await.unwrap();
    assert_eq!(info.mac, Some(MacAddr([2, 0, 0, 0, 0xaa, 1])));
    assert_eq!(info.kind.as_deref(), Some("veth"));

    drop(veth);
    assert_eq!(link_names(&a), ["lo"]);
    assert_eq!(link_names(&b), ["lo"]);
}

#[tokio::test]
async fn delete_reports_and_already_gone_counts_as_deleted() {
    let ns = sandbox().await;
    let veth = VethPair::builder("x0", "x1")
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    // Someone deletes the peer behind our back: both ends are gone.
    assert!(
        outside(&ns, "ip", &["link", "del", "x1"])
            .status()
            .unwrap()
            .success()
    );
    veth.delete().await.unwrap();
    assert_eq!(link_names(&ns), ["lo"]);

    let veth = VethPair::builder("y0", "y1")
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    veth.delete().await.unwrap();
    assert_eq!(link_names(&ns), ["lo"]);
}

#[tokio::test]
async fn keep_leaves_the_pair() {
    let ns = sandbox().await;
    let kept = VethPair::builder("k0", "k1")
        .namespace(&ns)
        .create()
        .await
        .unwrap()
        .keep();
    let (a, b) = (kept.link().clone(), kept.peer().clone());
    drop(kept);
    let names = link_names(&ns);
    assert!(names.contains(&"k0".to_owned()) && names.contains(&"k1".to_owned()));
    a.delete().await.unwrap();
    b.delete().await.unwrap();
    assert_eq!(link_names(&ns), ["lo"]);
}

#[tokio::test]
async fn a_taken_name_is_already_exists_and_nothing_is_left() {
    let (a, b) = (sandbox().await, sandbox().await);
    let _first = VethPair::builder("dup0", "dup1")
        .namespace(&a)
        .peer_namespace(&b)
        .create()
        .await
        .unwrap();
    let err = VethPair::builder("dup0", "other")
        .namespace(&a)
        .peer_namespace(&b)
        .create()
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert!(err.to_string().contains("dup0"), "{err}");
    // Peer name taken in the peer's namespace.
    let err = VethPair::builder("fresh", "dup1")
        .namespace(&a)
        .peer_namespace(&b)
        .create()
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(link_names(&a), ["lo", "dup0"]);
    assert_eq!(link_names(&b), ["lo", "dup1"]);
}

#[tokio::test]
async fn a_failure_after_creation_rolls_the_pair_back() {
    let (a, b) = (sandbox().await, sandbox().await);
    // IPv6 disabled in b: the kernel refuses the peer's IPv6 address after the pair exists.
    b.set_sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        .await
        .unwrap();
    b.set_sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        .await
        .unwrap();
    let err = VethPair::builder("rb0", "rb1")
        .namespace(&a)
        .peer_namespace(&b)
        .address("10.8.0.1/24")
        .peer_address("fd08::2/64")
        .create()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fd08::2/64"), "{err}");
    assert_eq!(link_names(&a), ["lo"]);
    assert_eq!(link_names(&b), ["lo"]);
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_made() {
    let ns = sandbox().await;
    let cases: Vec<(VethPairBuilder, &str)> = vec![
        (VethPair::builder("", "b"), "empty"),
        (VethPair::builder("sixteen-bytes-xx", "b"), "longer than 15"),
        (VethPair::builder("a/b", "b"), "`/`"),
        (VethPair::builder("a b", "b"), "whitespace"),
        (VethPair::builder("a:1", "b"), "`:`"),
        (VethPair::builder("a", "a"), "same name"),
        (
            VethPair::builder("a", "b").address("10.0.0.0/24"),
            "network address",
        ),
        (
            VethPair::builder("a", "b").address("10.0.0.255/24"),
            "broadcast address",
        ),
        (
            VethPair::builder("a", "b").address("10.0.0.1/33"),
            "out of range",
        ),
        (
            VethPair::builder("a", "b")
                .address("10.0.0.1/24")
                .address("10.0.0.1/24"),
            "twice",
        ),
        (
            VethPair::builder("a", "b").mac(MacAddr([1, 0, 0, 0, 0, 1])),
            "multicast",
        ),
    ];
    for (builder, why) in cases {
        let err = builder.namespace(&ns).create().await.unwrap_err();
        assert!(err.is_invalid_input(), "{why}: {err:?}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    assert_eq!(link_names(&ns), ["lo"]);
}

#[tokio::test]
async fn a_namespace_deleted_from_elsewhere_still_tears_down_cleanly() {
    // `ip netns del` removes the name behind our back; the guard holds the namespace by fd, so
    // the pair is still there and still removed by the guard.
    let host = sandbox().await;
    let name = netns_kit::NsName::unique("nktest").unwrap();
    let named = Namespace::named(name.as_str()).await.unwrap();
    let veth = VethPair::builder("h0", "i0")
        .namespace(&host)
        .peer_namespace(&named)
        .create()
        .await
        .unwrap();
    assert!(
        tool("ip")
            .args(["netns", "del", name.as_str()])
            .status()
            .unwrap()
            .success()
    );
    assert!(!netns_list("").contains(&name.to_string()));
    assert!(link_names(&host).contains(&"h0".to_owned()));
    drop(named); // its name is gone already: nothing to unmount, no error
    veth.delete().await.unwrap();
    assert_eq!(link_names(&host), ["lo"]);
}
