//! `Bridge`: creation with the gateway address, ports, the guard contract, and the FORWARD fix
//! proven with a real `ping` under `iptables -P FORWARD DROP`. Checked with `ip -j` and
//! `iptables -S` run through `nsenter`.

mod common;

use common::*;
use netns_kit::{Bridge, Namespace, Route, VethPair, forward_check};

fn ports(host: &Namespace, bridge: &str) -> Vec<String> {
    ip_json(host, &["link", "show", "master", bridge])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn bridge_is_up_with_its_address_and_gone_after_drop() {
    let host = sandbox().await;
    let br = Bridge::builder("br0")
        .namespace(&host)
        .address("10.20.0.254/24")
        .address("fd20::fe/64")
        .nodad(true)
        .mtu(1450)
        .create()
        .await
        .unwrap();
    let j = link_json(&host, "br0");
    assert_eq!(j["linkinfo"]["info_kind"], "bridge");
    assert!(has_flag(&j, "UP"));
    assert_eq!(j["mtu"], 1450);
    assert_eq!(addrs(&host, "br0"), ["10.20.0.254/24", "fd20::fe/64"]);
    assert_eq!(br.link().name(), "br0");
    drop(br);
    assert_eq!(link_names(&host), ["lo"]);
}

#[tokio::test]
async fn ports_attach_and_detach() {
    let host = sandbox().await;
    let br = Bridge::builder("br1")
        .namespace(&host)
        .create()
        .await
        .unwrap();
    let v1 = VethPair::builder("p1", "p1b")
        .namespace(&host)
        .controller(br.link())
        .create()
        .await
        .unwrap();
    let v2 = VethPair::builder("p2", "p2b")
        .namespace(&host)
        .create()
        .await
        .unwrap();
    assert_eq!(ports(&host, "br1"), ["p1"]);
    br.add_port(v2.link()).await.unwrap();
    assert_eq!(ports(&host, "br1"), ["p1", "p2"]);
    let listed: Vec<String> = br
        .ports()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(listed, ["p1", "p2"]);
    br.remove_port(v1.link()).await.unwrap();
    assert_eq!(ports(&host, "br1"), ["p2"]);
    let err = br.remove_port(v1.link()).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    // Deleting the bridge leaves its ports (they belong to their own guards).
    br.delete().await.unwrap();
    assert!(link_names(&host).contains(&"p2".to_owned()));
    drop((v1, v2));
    assert_eq!(link_names(&host), ["lo"]);
}

#[tokio::test]
async fn a_taken_bridge_name_is_already_exists_and_the_original_stays() {
    let host = sandbox().await;
    let _br = Bridge::builder("brx")
        .namespace(&host)
        .address("10.21.0.1/24")
        .create()
        .await
        .unwrap();
    let err = Bridge::builder("brx")
        .namespace(&host)
        .address("10.22.0.1/24")
        .create()
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    // The runtime's second container meets this: the message says how to join instead.
    let text = err.to_string();
    assert!(
        text.contains("Bridge::open") && text.contains("existing_bridge"),
        "{text}"
    );
    assert_eq!(addrs(&host, "brx"), ["10.21.0.1/24"]);
    // Joining it that way works, and leaves the bridge when the network goes.
    let brx = Bridge::open(&host, "brx").await.unwrap();
    let member = netns_kit::MemberSpec::new().address("10.21.0.2/24");
    let net = netns_kit::bridged()
        .host(&host)
        .existing_bridge(&brx)
        .gateway("10.21.0.1/24")
        .member(member)
        .create()
        .await
        .unwrap();
    assert_eq!(ports(&host, "brx").len(), 1);
    drop(net);
    assert_eq!(addrs(&host, "brx"), ["10.21.0.1/24"]);
}

#[tokio::test]
async fn an_address_the_kernel_refuses_rolls_the_bridge_back() {
    let host = sandbox().await;
    host.set_sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        .await
        .unwrap();
    let err = Bridge::builder("brr")
        .namespace(&host)
        .address("10.23.0.1/24")
        .address("fd23::1/64")
        .create()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fd23::1/64"), "{err}");
    assert_eq!(link_names(&host), ["lo"]);
}

/// Two namespaces on a bridge in `host`, as in the classic recipe's second script.
async fn recipe_two(
    host: &Namespace,
    accept_forward: bool,
) -> (Bridge, Vec<Namespace>, Vec<VethPair>, Vec<Route>) {
    let br = Bridge::builder("br0")
        .namespace(host)
        .address("10.30.0.254/24")
        .accept_forward(accept_forward)
        .create()
        .await
        .unwrap();
    let mut nss = Vec::new();
    let mut veths = Vec::new();
    let mut routes = Vec::new();
    for i in 1..=2 {
        let ns = Namespace::new().await.unwrap();
        let v = VethPair::builder(format!("veth{i}-br"), "eth0")
            .namespace(host)
            .controller(br.link())
            .peer_namespace(&ns)
            .peer_address(format!("10.30.0.{i}/24"))
            .create()
            .await
            .unwrap();
        routes.push(
            Route::builder(Route::DEFAULT_V4)
                .via("10.30.0.254".parse().unwrap())
                .namespace(&ns)
                .create()
                .await
                .unwrap(),
        );
        nss.push(ns);
        veths.push(v);
    }
    (br, nss, veths, routes)
}

#[tokio::test]
async fn the_forward_fix_makes_bridged_traffic_pass_under_a_drop_policy_and_leaves_no_rule() {
    let host = sandbox().await;
    for program in ["iptables", "ip6tables"] {
        assert!(
            outside(&host, program, &["-w", "-P", "FORWARD", "DROP"])
                .status()
                .unwrap()
                .success()
        );
    }
    // Something like Docker's trailing reject rule: appended rules would never be reached.
    assert!(
        outside(&host, "iptables", &["-w", "-A", "FORWARD", "-j", "REJECT"])
            .status()
            .unwrap()
            .success()
    );
    let check = forward_check(&host).await.unwrap();
    assert_eq!(check.bridge_nf_call_iptables, Some(true));
    assert_eq!(check.ipv4_forward_policy.as_deref(), Some("DROP"));
    assert!(check.needs_fix());

    // Without the fix: bridged traffic between the two namespaces is dropped.
    let (br, nss, veths, routes) = recipe_two(&host, false).await;
    assert!(!br.accept_forward_enabled());
    assert!(
        !ping(&nss[0], "10.30.0.2"),
        "bridged ping passed without the fix"
    );
    drop((routes, veths, nss, br));

    // With it: the ping passes, and the rules are inserted before the REJECT.
    let (br, nss, veths, routes) = recipe_two(&host, true).await;
    assert!(br.accept_forward_enabled());
    assert!(
        ping(&nss[0], "10.30.0.2"),
        "bridged ping failed with the fix"
    );
    let rules = forward_rules(&host, "iptables");
    assert_eq!(rules.len(), 3, "{rules:?}");
    assert!(
        rules[0].contains("-o br0") && rules[0].contains("netns-kit:"),
        "{rules:?}"
    );
    assert!(
        rules[1].contains("-i br0") && rules[1].contains("-j ACCEPT"),
        "{rules:?}"
    );
    assert_eq!(
        rules[2],
        "-A FORWARD -j REJECT --reject-with icmp-port-unreachable"
    );
    assert_eq!(forward_rules(&host, "ip6tables").len(), 2);
    drop((routes, veths, nss, br));

    // Gone with the bridge; the user's own rule and policy stay.
    assert_eq!(
        forward_rules(&host, "iptables"),
        ["-A FORWARD -j REJECT --reject-with icmp-port-unreachable"]
    );
    assert!(forward_rules(&host, "ip6tables").is_empty());
    assert!(forward_check(&host).await.unwrap().needs_fix());
    assert_eq!(link_names(&host), ["lo"]);
}

#[tokio::test]
async fn a_fresh_namespace_needs_no_forward_fix() {
    let host = sandbox().await;
    let check = forward_check(&host).await.unwrap();
    assert!(!check.needs_fix(), "{check:?}");
    let (_br, nss, _veths, _routes) = recipe_two(&host, false).await;
    assert!(ping(&nss[0], "10.30.0.2"));
    assert!(ping(&nss[1], "10.30.0.254"));
}

#[tokio::test]
async fn accept_forward_can_be_added_later_and_goes_with_delete() {
    let host = sandbox().await;
    let mut br = Bridge::builder("brl")
        .namespace(&host)
        .create()
        .await
        .unwrap();
    // A firewall appears after the bridge (IPv4 only: no IPv6 filter table).
    assert!(
        outside(&host, "iptables", &["-w", "-P", "FORWARD", "DROP"])
            .status()
            .unwrap()
            .success()
    );
    let before = (
        saved(&host, "iptables-save"),
        saved(&host, "ip6tables-save"),
    );
    br.enable_accept_forward().await.unwrap();
    br.enable_accept_forward().await.unwrap(); // idempotent
    assert_eq!(forward_rules(&host, "iptables").len(), 2);
    // No IPv6 table was there, and none was made.
    assert_eq!(saved(&host, "ip6tables-save"), "");
    br.delete().await.unwrap();
    assert!(forward_rules(&host, "iptables").is_empty());
    assert_eq!(
        (
            saved(&host, "iptables-save"),
            saved(&host, "ip6tables-save")
        ),
        before
    );
    assert_eq!(link_names(&host), ["lo"]);
}

/// The port and link options a CNI plugin needs, each checked with `ip -j -d` and `bridge -j`:
/// promiscuous mode, hairpin mode, a veth's queue length, a route's protocol, and a kept link
/// carrying no mark of this crate.
#[test]
fn promisc_hairpin_txqlen_proto_and_kept_links_unmarked() {
    let host = Namespace::new_blocking().unwrap();
    let br = Bridge::builder("br5")
        .namespace(&host)
        .create_blocking()
        .unwrap()
        .keep();
    br.link().set_promisc_blocking(true).unwrap();
    assert_eq!(link_json(&host, "br5")["promiscuity"], 1);
    br.link().set_promisc_blocking(false).unwrap();
    assert_eq!(link_json(&host, "br5")["promiscuity"], 0);
    assert!(
        link_json(&host, "br5").get("ifalias").is_none(),
        "kept, unmarked"
    );

    let c = Namespace::new_blocking().unwrap();
    let pair = VethPair::builder("port5", "eth0")
        .namespace(&host)
        .peer_namespace(&c)
        .controller(br.link())
        .txqlen(0)
        .create_blocking()
        .unwrap();
    let hairpin = |host: &Namespace| {
        let out = outside(
            host,
            "bridge",
            &["-j", "-d", "link", "show", "dev", "port5"],
        )
        .output()
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["hairpin"].clone()
    };
    assert_eq!(hairpin(&host), false);
    pair.link().set_hairpin_blocking(true).unwrap();
    assert_eq!(hairpin(&host), true);
    // `ip` leaves out a queue length of 0.
    assert!(link_json(&host, "port5").get("txqlen").is_none());
    assert!(link_json(&c, "eth0").get("txqlen").is_none());
    // Hairpin mode is a port's: on a link that is none, the kernel's refusal names it.
    let e = br.link().set_hairpin_blocking(true).unwrap_err();
    assert!(e.to_string().contains("br5"), "{e}");

    let _address = pair.peer().add_address_blocking("10.55.0.2/24").unwrap();
    let boot = Route::builder("10.56.0.0/16".parse::<ipnetwork::Ipv4Network>().unwrap())
        .namespace(&c)
        .via("10.55.0.1".parse().unwrap())
        .proto(3)
        .create_blocking()
        .unwrap();
    // `ip -j` leaves out the default protocol, `boot`: filter by it instead.
    for (proto, found) in [("boot", 1), ("static", 0)] {
        let routes = ip_json(&c, &["route", "show", "10.56.0.0/16", "proto", proto]);
        assert_eq!(
            routes.as_array().unwrap().len(),
            found,
            "proto {proto}: {routes}"
        );
    }
    boot.delete_blocking().unwrap();
    assert_eq!(
        ip_json(&c, &["route", "show", "10.56.0.0/16"]),
        serde_json::json!([])
    );
    let e = Route::builder("10.57.0.0/16".parse::<ipnetwork::Ipv4Network>().unwrap())
        .namespace(&c)
        .via("10.55.0.1".parse().unwrap())
        .proto(2)
        .create_blocking()
        .unwrap_err();
    assert!(
        e.is_invalid_input() && e.to_string().contains("proto 2"),
        "{e}"
    );
    // `exclusive(false)`: a second route to the connected prefix goes in front (`ip route
    // prepend`), where the default refuses it; `scope(0)`: global although it has no gateway.
    let net = || "10.55.0.0/24".parse::<ipnetwork::Ipv4Network>().unwrap();
    let refused = Route::builder(net())
        .namespace(&c)
        .via("10.55.0.9".parse().unwrap())
        .create_blocking()
        .unwrap_err();
    assert!(refused.is_already_exists(), "{refused}");
    let prepended = Route::builder(net())
        .namespace(&c)
        .via("10.55.0.9".parse().unwrap())
        .exclusive(false)
        .create_blocking()
        .unwrap();
    let routes = ip_json(&c, &["route", "show", "10.55.0.0/24"]);
    assert_eq!(routes.as_array().unwrap().len(), 2, "{routes}");
    assert_eq!(routes[0]["gateway"], "10.55.0.9", "in front: {routes}");
    prepended.delete_blocking().unwrap();
    assert_eq!(
        ip_json(&c, &["route", "show", "10.55.0.0/24"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let global = Route::builder("10.58.0.0/16".parse::<ipnetwork::Ipv4Network>().unwrap())
        .namespace(&c)
        .dev(pair.peer())
        .scope(0)
        .create_blocking()
        .unwrap();
    let routes = ip_json(&c, &["route", "show", "10.58.0.0/16"]);
    assert!(
        routes[0].get("scope").is_none(),
        "global scope is not shown: {routes}"
    );
    let link = ip_json(&c, &["route", "show", "10.58.0.0/16", "scope", "global"]);
    assert_eq!(link.as_array().unwrap().len(), 1, "{link}");
    drop(global);
    let kept = pair.keep();
    assert!(link_json(&host, "port5").get("ifalias").is_none());
    assert!(link_json(&c, "eth0").get("ifalias").is_none());
    drop(kept);
}
