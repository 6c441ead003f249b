//! Bad input, table-driven: each case must give a typed error that names the object (or, for
//! the idempotent ones, succeed), never panic, and leave nothing behind — checked afterwards with
//! `ip -j link` in the sandbox and `ip netns list`.

mod common;

use std::{future::Future, pin::Pin, process::Command};

use common::*;
use netns_kit::{
    Address, Bridge, IfName, MemberSpec, Namespace, NsName, Result, Route, VethPair, bridged,
    connect,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Refused before the kernel was asked anything.
    Invalid,
    NotFound,
    AlreadyExists,
    /// Succeeds: "already gone" counts as done.
    Ok,
}

type Case<'a> = (
    &'static str,
    Pin<Box<dyn Future<Output = Result<()>> + 'a>>,
    Expect,
    String,
);

fn ok<T>(r: Result<T>) -> Result<()> {
    r.map(drop)
}

/// What is wrong with one case's outcome, if anything.
fn check(label: &str, result: Result<()>, expect: Expect, names: &str) -> Option<String> {
    match (expect, result) {
        (Expect::Ok, Ok(())) => None,
        (Expect::Ok, Err(e)) => Some(format!("{label}: expected success, got {e:?}")),
        (_, Ok(())) => Some(format!("{label}: expected {expect:?}, got success")),
        (expect, Err(e)) => {
            let kind_ok = match expect {
                Expect::Invalid => e.is_invalid_input(),
                Expect::NotFound => e.is_not_found(),
                Expect::AlreadyExists => e.is_already_exists(),
                Expect::Ok => unreachable!(),
            };
            let text = e.to_string();
            if !kind_ok {
                Some(format!("{label}: expected {expect:?}, got {e:?}"))
            } else if !text.contains(names) {
                Some(format!("{label}: {text:?} does not name {names:?}"))
            } else {
                None
            }
        }
    }
}

#[tokio::test]
async fn bad_inputs_give_typed_errors_and_leave_nothing() {
    let sb = sandbox().await;
    let other = sandbox().await;
    // Names this test could leave: its own `nkbad…`/`nkgone…`, or any not made by `NsName::unique`.
    let ours = || {
        netns_list("")
            .into_iter()
            .filter(|n| !n.starts_with("nk") || n.starts_with("nkbad") || n.starts_with("nkgone"))
            .collect::<Vec<_>>()
    };
    let before_netns = ours();
    // Things that exist, to collide with.
    let existing_ns = Namespace::named(NsName::unique("nkbad").unwrap().as_str())
        .await
        .unwrap();
    let existing_name = existing_ns.name().unwrap().to_owned();
    let veth = VethPair::builder("taken0", "taken1")
        .namespace(&sb)
        .address("10.95.0.1/24")
        .create()
        .await
        .unwrap();
    let _route = Route::builder(Route::DEFAULT_V4)
        .via("10.95.0.2".parse().unwrap())
        .namespace(&sb)
        .create()
        .await
        .unwrap();
    let _br = Bridge::builder("takenbr")
        .namespace(&sb)
        .create()
        .await
        .unwrap();
    let elsewhere = VethPair::builder("far0", "far1")
        .namespace(&other)
        .create()
        .await
        .unwrap();
    let regular_file = std::env::temp_dir().join(format!("nk-not-a-ns-{}", std::process::id()));
    std::fs::write(&regular_file, b"").unwrap();
    let dead_pid = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    // A named namespace deleted from elsewhere.
    let gone = Namespace::named(NsName::unique("nkgone").unwrap().as_str())
        .await
        .unwrap();
    let gone_name = gone.name().unwrap().to_owned();
    assert!(
        tool("ip")
            .args(["netns", "del", &gone_name])
            .status()
            .unwrap()
            .success()
    );
    let long_ns = "n".repeat(256);
    let veth_in = |name: &str| VethPair::builder(name, "peer").namespace(&sb).create();
    let member = |a: &str| MemberSpec::new().address(a);
    let net = || bridged().host(&sb).gateway("10.96.0.254/24");
    let lo = sb.link_by_name("lo").await.unwrap();

    let cases: Vec<Case<'_>> = vec![
        // Interface names.
        (
            "empty interface name",
            Box::pin(async { ok(veth_in("").await) }),
            Expect::Invalid,
            "\"\"".into(),
        ),
        (
            "16-byte interface name",
            Box::pin(async { ok(veth_in("sixteen-bytes-xx").await) }),
            Expect::Invalid,
            "sixteen-bytes-xx".into(),
        ),
        (
            "interface name with /",
            Box::pin(async { ok(veth_in("a/b").await) }),
            Expect::Invalid,
            "a/b".into(),
        ),
        (
            "interface name with a space",
            Box::pin(async { ok(veth_in("a b").await) }),
            Expect::Invalid,
            "a b".into(),
        ),
        (
            "interface name with a tab",
            Box::pin(async { ok(veth_in("a\tb").await) }),
            Expect::Invalid,
            "whitespace".into(),
        ),
        (
            "interface name with :",
            Box::pin(async { ok(veth_in("eth0:1").await) }),
            Expect::Invalid,
            "eth0:1".into(),
        ),
        (
            "interface name with NUL",
            Box::pin(async { ok(veth_in("a\0b").await) }),
            Expect::Invalid,
            "NUL".into(),
        ),
        (
            "interface name .",
            Box::pin(async { ok(veth_in(".").await) }),
            Expect::Invalid,
            "\".\"".into(),
        ),
        (
            "interface name ..",
            Box::pin(async { ok(veth_in("..").await) }),
            Expect::Invalid,
            "\"..\"".into(),
        ),
        (
            "interface name with %",
            Box::pin(async { ok(veth_in("veth%d").await) }),
            Expect::Invalid,
            "veth%d".into(),
        ),
        (
            "bridge name too long",
            Box::pin(async {
                ok(Bridge::builder("a-very-long-bridge")
                    .namespace(&sb)
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "a-very-long-bridge".into(),
        ),
        (
            "unique-name prefix too long",
            Box::pin(async { ok(IfName::unique("toolong")) }),
            Expect::Invalid,
            "toolong".into(),
        ),
        // Namespace names and paths.
        (
            "namespace name starting with -",
            Box::pin(async { ok(Namespace::named("-n").await) }),
            Expect::Invalid,
            "-n".into(),
        ),
        (
            "namespace name of a space",
            Box::pin(async { ok(Namespace::named(" ").await) }),
            Expect::Invalid,
            "whitespace".into(),
        ),
        (
            "namespace name with /",
            Box::pin(async { ok(Namespace::named("a/b").await) }),
            Expect::Invalid,
            "a/b".into(),
        ),
        (
            "namespace name ..",
            Box::pin(async { ok(Namespace::named("..").await) }),
            Expect::Invalid,
            "\"..\"".into(),
        ),
        (
            "namespace name escaping /run/netns",
            Box::pin(async { ok(Namespace::named("../../etc/x").await) }),
            Expect::Invalid,
            "../../etc/x".into(),
        ),
        (
            "namespace name with NUL",
            Box::pin(async { ok(Namespace::named("a\0b").await) }),
            Expect::Invalid,
            "NUL".into(),
        ),
        (
            "namespace name of 256 bytes",
            Box::pin(async { ok(Namespace::named(long_ns.as_str()).await) }),
            Expect::Invalid,
            "longer than 255".into(),
        ),
        (
            "empty namespace name",
            Box::pin(async { ok(Namespace::named("").await) }),
            Expect::Invalid,
            "empty".into(),
        ),
        (
            "opening a bad namespace name",
            Box::pin(async { ok(Namespace::open("../x")) }),
            Expect::Invalid,
            "../x".into(),
        ),
        (
            "a path that is a regular file",
            Box::pin(async { ok(Namespace::open_path(&regular_file)) }),
            Expect::Invalid,
            "nk-not-a-ns".into(),
        ),
        (
            "a path that is another namespace type",
            Box::pin(async { ok(Namespace::open_path("/proc/self/ns/uts")) }),
            Expect::Invalid,
            "/proc/self/ns/uts".into(),
        ),
        (
            "a path that does not exist",
            Box::pin(async { ok(Namespace::open_path("/nonexistent/ns")) }),
            Expect::NotFound,
            "/nonexistent/ns".into(),
        ),
        (
            "a pid that does not exist",
            Box::pin(async { ok(Namespace::from_pid(dead_pid)) }),
            Expect::NotFound,
            format!("process {dead_pid}"),
        ),
        (
            "a namespace deleted from elsewhere, by name",
            Box::pin(async { ok(Namespace::open(&gone_name)) }),
            Expect::NotFound,
            gone_name.clone(),
        ),
        (
            "a sysctl outside net.*",
            Box::pin(async { ok(sb.set_sysctl("kernel.hostname", "x").await) }),
            Expect::Invalid,
            "kernel.hostname".into(),
        ),
        (
            "a sysctl escaping /proc/sys/net",
            Box::pin(async { ok(sb.sysctl("net.ipv4....").await) }),
            Expect::Invalid,
            "net.ipv4....".into(),
        ),
        // IPv4/IPv6 mixes.
        (
            "route: v4 destination, v6 gateway",
            Box::pin(async {
                ok(Route::builder("10.9.0.0/16")
                    .via("fd10:9::1".parse().unwrap())
                    .namespace(&sb)
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "fd10:9::1".into(),
        ),
        (
            "route: v6 destination, v4 gateway",
            Box::pin(async {
                ok(Route::builder("fd09::/64")
                    .via("10.95.0.2".parse().unwrap())
                    .namespace(&sb)
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "10.95.0.2".into(),
        ),
        (
            "direct link: v4 end, v6 end",
            Box::pin(async {
                ok(connect(&sb, &other)
                    .address("10.9.0.1/24", "fd09::2/64")
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "fd09::2/64".into(),
        ),
        (
            "bridged member: v6 address, v4-only gateway",
            Box::pin(async { ok(net().member(member("fd96::1/64")).create().await) }),
            Expect::Invalid,
            "fd96::1/64".into(),
        ),
        // Prefixes out of range and host-address rules.
        (
            "address /33",
            Box::pin(async { ok(lo.add_address("10.9.0.1/33").await) }),
            Expect::Invalid,
            "10.9.0.1/33".into(),
        ),
        (
            "address /129",
            Box::pin(async { ok(Address::builder(&lo, "fd09::1/129").create().await) }),
            Expect::Invalid,
            "fd09::1/129".into(),
        ),
        (
            "route /40",
            Box::pin(async {
                ok(Route::builder("10.9.0.0/40")
                    .via("10.95.0.2".parse().unwrap())
                    .namespace(&sb)
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "10.9.0.0/40".into(),
        ),
        (
            "address: network address",
            Box::pin(async { ok(lo.add_address("10.9.0.0/24").await) }),
            Expect::Invalid,
            "10.9.0.0".into(),
        ),
        (
            "address with a /0 prefix",
            Box::pin(async { ok(lo.add_address("10.9.0.7/0").await) }),
            Expect::Invalid,
            "/0 prefix".into(),
        ),
        (
            "IPv4-mapped IPv6 address",
            Box::pin(async { ok(lo.add_address("::ffff:10.9.0.7/128").await) }),
            Expect::Invalid,
            "IPv4-mapped".into(),
        ),
        (
            "address: broadcast address",
            Box::pin(async { ok(lo.add_address("10.9.0.255/24").await) }),
            Expect::Invalid,
            "10.9.0.255".into(),
        ),
        (
            "route with host bits",
            Box::pin(async {
                ok(Route::builder("10.9.0.1/16")
                    .via("10.95.0.2".parse().unwrap())
                    .namespace(&sb)
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "10.9.0.1/16".into(),
        ),
        (
            "route with a device in another namespace",
            Box::pin(async {
                ok(Route::builder("10.9.0.0/16")
                    .dev(elsewhere.link())
                    .namespace(&sb)
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "far0".into(),
        ),
        (
            "multicast MAC",
            Box::pin(async {
                ok(VethPair::builder("m0", "m1")
                    .namespace(&sb)
                    .mac("01:00:5e:00:00:01".parse().unwrap())
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "01:00:5e:00:00:01".into(),
        ),
        (
            "unparsable MAC",
            Box::pin(async { ok("02:00:zz:00:00:01".parse::<netns_kit::MacAddr>()) }),
            Expect::Invalid,
            "02:00:zz:00:00:01".into(),
        ),
        // Bridged networks.
        (
            "gateway outside the subnet of a member",
            Box::pin(async { ok(net().member(member("10.97.0.1/24")).create().await) }),
            Expect::Invalid,
            "10.96.0.0/24".into(),
        ),
        (
            "member on the gateway's address",
            Box::pin(async { ok(net().member(member("10.96.0.254/24")).create().await) }),
            Expect::Invalid,
            "10.96.0.254".into(),
        ),
        (
            "duplicate member addresses",
            Box::pin(async {
                ok(net()
                    .member(member("10.96.0.1/24"))
                    .member(member("10.96.0.1/24"))
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "10.96.0.1".into(),
        ),
        (
            "duplicate member host names",
            Box::pin(async {
                ok(net()
                    .member(member("10.96.0.1/24").peer_name("dup"))
                    .member(member("10.96.0.2/24").peer_name("dup"))
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "\"dup\"".into(),
        ),
        (
            "the host as a member",
            Box::pin(async {
                ok(net()
                    .member(MemberSpec::in_namespace(&sb).address("10.96.0.1/24"))
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "host namespace".into(),
        ),
        (
            "no gateway",
            Box::pin(async {
                ok(bridged()
                    .host(&sb)
                    .member(member("10.96.0.1/24"))
                    .create()
                    .await)
            }),
            Expect::Invalid,
            "gateway".into(),
        ),
        // Things that already exist.
        (
            "an interface that exists",
            Box::pin(async { ok(veth_in("taken0").await) }),
            Expect::AlreadyExists,
            "taken0".into(),
        ),
        (
            "a bridge that exists",
            Box::pin(async { ok(Bridge::builder("takenbr").namespace(&sb).create().await) }),
            Expect::AlreadyExists,
            "takenbr".into(),
        ),
        (
            "a namespace that exists",
            Box::pin(async { ok(Namespace::named(&existing_name).await) }),
            Expect::AlreadyExists,
            existing_name.clone(),
        ),
        (
            "an address that exists",
            Box::pin(async { ok(veth.link().add_address("10.95.0.1/24").await) }),
            Expect::AlreadyExists,
            "10.95.0.1/24".into(),
        ),
        (
            "a route that exists",
            Box::pin(async {
                ok(Route::builder(Route::DEFAULT_V4)
                    .via("10.95.0.2".parse().unwrap())
                    .namespace(&sb)
                    .create()
                    .await)
            }),
            Expect::AlreadyExists,
            "default route".into(),
        ),
        (
            "a member interface name taken",
            Box::pin(async {
                ok(net()
                    .bridge_name("takenbr")
                    .member(member("10.96.0.1/24"))
                    .create()
                    .await)
            }),
            Expect::AlreadyExists,
            "takenbr".into(),
        ),
        // Deleting twice, and operations on things gone from elsewhere: success.
        (
            "removing an address twice",
            Box::pin(async {
                veth.link().remove_address("10.95.0.9/24").await?;
                veth.link().remove_address("10.95.0.9/24").await
            }),
            Expect::Ok,
            String::new(),
        ),
        (
            "deleting a link twice",
            Box::pin(async {
                let v = VethPair::builder("twice0", "twice1")
                    .namespace(&sb)
                    .create()
                    .await?;
                let a = v.keep().link().clone();
                a.clone().delete().await?;
                a.delete().await
            }),
            Expect::Ok,
            String::new(),
        ),
        (
            "using a handle whose name was deleted elsewhere",
            Box::pin(async { ok(gone.links().await) }),
            Expect::Ok,
            String::new(),
        ),
    ];
    // Every case runs; the failures are reported together.
    let count = cases.len();
    let mut failures = Vec::new();
    for (label, future, expect, names) in cases {
        let result = future.await;
        failures.extend(check(label, result, expect, &names));
    }
    assert!(
        failures.is_empty(),
        "{} of {count} bad-input cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    std::fs::remove_file(&regular_file).unwrap();
    drop((veth, elsewhere, gone, existing_ns));
    let mut left = link_names(&sb);
    left.sort();
    assert_eq!(
        left,
        ["lo", "takenbr"],
        "only the test's own bridge is left"
    );
    assert_eq!(ours(), before_netns);
}

/// A second network with the subnet of one already in the host namespace is refused before
/// anything is made (two equal routes: the kernel would use one, cutting the other network off
/// without a word); the first keeps working. A wider or narrower subnet is not a clash.
#[tokio::test]
async fn a_second_network_on_the_same_subnet_is_refused() {
    let host = sandbox().await;
    let first = bridged()
        .host(&host)
        .gateway("10.77.0.1/24")
        .member(MemberSpec::new().address("10.77.0.2/24"))
        .create()
        .await
        .unwrap();
    let before = link_names(&host);
    let e = bridged()
        .host(&host)
        .gateway("10.77.0.254/24")
        .member(MemberSpec::new().address("10.77.0.3/24"))
        .create()
        .await
        .unwrap_err();
    assert!(e.is_invalid_input(), "{e}");
    assert!(e.to_string().contains("10.77.0.0/24"), "{e}");
    assert_eq!(link_names(&host), before, "something was made: {e}");
    assert!(ping(first.members()[0].namespace(), "10.77.0.1"));
    let narrower = bridged()
        .host(&host)
        .gateway("10.77.0.129/25")
        .create()
        .await;
    assert!(narrower.is_ok(), "{narrower:?}");
}
