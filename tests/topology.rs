//! The classic recipe's two patterns: what `ip -j` shows, real `ping` and TCP across them (IPv4 and
//! IPv6, the IPv6 one without waiting for DAD), adding and removing members, bad input, and
//! teardown that leaves nothing.

mod common;

use std::{net::IpAddr, time::Duration};

use common::*;
use netns_kit::{MemberSpec, Namespace, bridged, connect};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn direct_link_is_what_the_shell_recipe_builds_and_carries_ping_and_tcp() {
    let (ns1, ns2) = (sandbox().await, sandbox().await);
    let link = connect(&ns1, &ns2)
        .names("veth1", "veth2")
        .address("10.61.0.1/24", "10.61.0.2/24")
        .address("fd61::1/64", "fd61::2/64")
        .create()
        .await
        .unwrap();
    assert_eq!(link_names(&ns1), ["lo", "veth1"]);
    assert_eq!(link_names(&ns2), ["lo", "veth2"]);
    assert_eq!(addrs(&ns1, "veth1"), ["10.61.0.1/24", "fd61::1/64"]);
    assert_eq!(addrs(&ns2, "veth2"), ["10.61.0.2/24", "fd61::2/64"]);
    for (ns, v4gw, v6gw) in [
        (&ns1, "10.61.0.2", "fd61::2"),
        (&ns2, "10.61.0.1", "fd61::1"),
    ] {
        let v4 = routes(ns, false);
        let d = v4
            .iter()
            .find(|r| r["dst"] == "default")
            .expect("v4 default");
        assert_eq!(d["gateway"], v4gw);
        let v6 = routes(ns, true);
        let d = v6
            .iter()
            .find(|r| r["dst"] == "default")
            .expect("v6 default");
        assert_eq!(d["gateway"], v6gw);
    }
    // Immediately usable, IPv6 included (no DAD wait): the real ping binary, and TCP.
    assert!(ping(&ns1, "10.61.0.2"));
    assert!(ping(&ns2, "fd61::1"));
    assert!(tcp_echo(&ns2, &ns1, ip("10.61.0.2")));
    assert!(tcp_echo(&ns1, &ns2, ip("fd61::1")));
    // And the in-process prober agrees.
    ns1.ping(ip("fd61::2"), Duration::from_secs(2))
        .await
        .unwrap();
    drop(link);
    assert_eq!(link_names(&ns1), ["lo"]);
    assert_eq!(link_names(&ns2), ["lo"]);
}

#[tokio::test]
async fn direct_link_delete_leaves_nothing_and_routes_are_optional() {
    let (ns1, ns2) = (sandbox().await, sandbox().await);
    let link = connect(&ns1, &ns2)
        .address("10.62.0.1/30", "10.62.0.2/30")
        .default_routes(false)
        .create()
        .await
        .unwrap();
    assert!(routes(&ns1, false).iter().all(|r| r["dst"] != "default"));
    assert!(ping(&ns1, "10.62.0.2"));
    link.delete().await.unwrap();
    assert_eq!(link_names(&ns1), ["lo"]);
    assert_eq!(link_names(&ns2), ["lo"]);
}

#[tokio::test]
async fn direct_link_bad_input_leaves_nothing() {
    let (ns1, ns2) = (sandbox().await, sandbox().await);
    let cases = [
        (connect(&ns1, &ns2), "give each end an address"),
        (
            connect(&ns1, &ns2).address("10.0.0.1/24", "fd10:9::2/64"),
            "different IP versions",
        ),
        (
            connect(&ns1, &ns2).address("10.0.0.1/24", "10.0.1.2/24"),
            "not on the same subnet",
        ),
        (
            connect(&ns1, &ns2).address("10.0.0.1/24", "10.0.0.1/24"),
            "both ends would have",
        ),
        (
            connect(&ns1, &ns2)
                .address("10.0.0.1/24", "10.0.0.2/24")
                .address("10.0.1.1/24", "10.0.1.2/24"),
            "one address pair per IP version",
        ),
        (
            connect(&ns1, &ns2)
                .address("10.0.0.1/24", "10.0.0.2/24")
                .names("a-name-too-long-x", "b"),
            "longer than 15",
        ),
    ];
    for (builder, why) in cases {
        let err = builder.create().await.unwrap_err();
        assert!(err.is_invalid_input(), "{why}: {err:?}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    assert_eq!(link_names(&ns1), ["lo"]);
    assert_eq!(link_names(&ns2), ["lo"]);
}

#[tokio::test]
async fn bridged_network_is_what_the_shell_recipe_builds_and_carries_ping_and_tcp() {
    let host = sandbox().await;
    let net = bridged()
        .host(&host)
        .bridge_name("br0")
        .gateway("10.63.0.254/24")
        .gateway("fd63::fe/64")
        .member(
            MemberSpec::new()
                .address("10.63.0.1/24")
                .address("fd63::1/64"),
        )
        .member(
            MemberSpec::new()
                .address("10.63.0.2/24")
                .address("fd63::2/64"),
        )
        .member(MemberSpec::new().address("10.63.0.3/24"))
        .create()
        .await
        .unwrap();
    assert_eq!(addrs(&host, "br0"), ["10.63.0.254/24", "fd63::fe/64"]);
    let ports: Vec<String> = ip_json(&host, &["link", "show", "master", "br0"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ports.len(), 3);
    for m in net.members() {
        assert!(ports.contains(&m.peer().name().to_owned()));
        let j = link_json(&host, m.peer().name());
        assert!(has_flag(&j, "UP"));
        assert_eq!(
            j["group"],
            (net.link_group() as i32).to_string(),
            "ip prints groups signed"
        );
        let ns = m.namespace();
        assert_eq!(link_names(ns), ["lo", "eth0"]);
        assert_eq!(
            link_json(ns, "eth0")["group"],
            "default",
            "left its temporary group"
        );
        let expected: Vec<String> = m.addresses().iter().map(ToString::to_string).collect();
        assert_eq!(addrs(ns, "eth0"), expected);
        let v4 = routes(ns, false);
        assert_eq!(
            v4.iter().find(|r| r["dst"] == "default").unwrap()["gateway"],
            "10.63.0.254"
        );
    }
    let v6 = routes(net.members()[0].namespace(), true);
    assert_eq!(
        v6.iter().find(|r| r["dst"] == "default").unwrap()["gateway"],
        "fd63::fe"
    );

    let (m1, m2, m3) = (&net.members()[0], &net.members()[1], &net.members()[2]);
    assert!(ping(m1.namespace(), "10.63.0.2"));
    assert!(ping(m3.namespace(), "10.63.0.1"));
    assert!(ping(m1.namespace(), "10.63.0.254"));
    assert!(ping(m2.namespace(), "fd63::1"));
    assert!(tcp_echo(m2.namespace(), m1.namespace(), ip("10.63.0.2")));
    assert!(tcp_echo(m1.namespace(), m2.namespace(), ip("fd63::1")));
    // A server on the gateway, in the host namespace.
    assert!(tcp_echo(&host, m3.namespace(), ip("10.63.0.254")));
    drop(net);
    assert_eq!(link_names(&host), ["lo"]);
}

#[tokio::test]
async fn members_can_join_and_leave_a_live_network() {
    let host = sandbox().await;
    let mut net = bridged()
        .host(&host)
        .gateway("10.64.0.1/24")
        .member(MemberSpec::new().address("10.64.0.2/24"))
        .create()
        .await
        .unwrap();
    let existing = Namespace::new().await.unwrap();
    let joined = net
        .add_member(
            MemberSpec::in_namespace(&existing)
                .address("10.64.0.3/24")
                .link_name("lan0"),
        )
        .await
        .unwrap();
    assert_eq!(joined.link().name(), "lan0");
    assert_eq!(link_names(&existing), ["lo", "lan0"]);
    assert!(ping(&existing, "10.64.0.2"));
    assert_eq!(net.members().len(), 2);

    // A duplicate address is refused and changes nothing.
    let err = net
        .add_member(MemberSpec::new().address("10.64.0.3/24"))
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(net.members().len(), 2);
    assert_eq!(link_names(&host).len(), 4); // lo, bridge, two host ends

    // Leaving: the borrowed namespace is left intact, with only its lo.
    net.remove_member(ip("10.64.0.3")).await.unwrap();
    assert_eq!(link_names(&existing), ["lo"]);
    assert_eq!(net.members().len(), 1);
    assert_eq!(link_names(&host).len(), 3);
    // Its address can be reused now.
    net.add_member(MemberSpec::new().address("10.64.0.3/24"))
        .await
        .unwrap();
    assert!(ping(net.members()[1].namespace(), "10.64.0.2"));
    let err = net.remove_member(ip("10.64.0.99")).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");

    net.delete().await.unwrap();
    assert_eq!(link_names(&host), ["lo"]);
    assert_eq!(link_names(&existing), ["lo"]);
}

#[tokio::test]
async fn bridged_bad_input_is_refused_before_anything_is_made() {
    let host = sandbox().await;
    let existing = Namespace::new().await.unwrap();
    let base = || bridged().host(&host).gateway("10.65.0.1/24");
    let cases = [
        (bridged().host(&host), "gateway address"),
        (
            base().member(MemberSpec::new().address("10.66.0.2/24")),
            "not in the gateway's subnet",
        ),
        (
            base().member(MemberSpec::new().address("10.65.0.1/24")),
            "gateway's address",
        ),
        (
            base()
                .member(MemberSpec::new().address("10.65.0.2/24"))
                .member(MemberSpec::new().address("10.65.0.2/24")),
            "already another member's address",
        ),
        (
            base()
                .member(MemberSpec::new().address("10.65.0.2/24").peer_name("same"))
                .member(MemberSpec::new().address("10.65.0.3/24").peer_name("same")),
            "already another member's",
        ),
        (
            base()
                .member(MemberSpec::in_namespace(&existing).address("10.65.0.2/24"))
                .member(MemberSpec::in_namespace(&existing).address("10.65.0.3/24")),
            "already a member",
        ),
        (
            base().member(MemberSpec::new().address("fd65::2/64")),
            "no IPv6 gateway",
        ),
        (base().member(MemberSpec::new()), "needs an address"),
        (base().gateway("10.67.0.1/24"), "one gateway per IP version"),
        (
            base().bridge_name("a-bridge-name-too-long"),
            "longer than 15",
        ),
        (
            base().member(MemberSpec::new().address("10.65.0.2/24").link_name("eth/0")),
            "`/`",
        ),
        (
            base().member(MemberSpec::new().address("10.65.0.255/24")),
            "broadcast address",
        ),
    ];
    for (builder, why) in cases {
        let err = builder.create().await.unwrap_err();
        assert!(err.is_invalid_input(), "{why}: {err:?}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    assert_eq!(link_names(&host), ["lo"]);
    assert_eq!(link_names(&existing), ["lo"]);
}

#[tokio::test]
async fn a_kernel_refusal_half_way_rolls_everything_back() {
    let host = sandbox().await;
    // The 4th of 5 members lives in a namespace where its interface name is already taken.
    let crowded = Namespace::new().await.unwrap();
    let _squatter = netns_kit::VethPair::builder("eth0", "other")
        .namespace(&crowded)
        .create()
        .await
        .unwrap();
    let err = bridged()
        .host(&host)
        .gateway("10.68.0.1/24")
        .members((2..=6).map(|i| {
            if i == 5 {
                MemberSpec::in_namespace(&crowded).address(format!("10.68.0.{i}/24"))
            } else {
                MemberSpec::new().address(format!("10.68.0.{i}/24"))
            }
        }))
        .create()
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(link_names(&host), ["lo"]);
    let mut left = link_names(&crowded);
    left.sort();
    assert_eq!(left, ["eth0", "lo", "other"]);
}

#[tokio::test]
async fn members_of_an_ipv4_only_network_keep_ipv6_quiet_and_ports_have_none() {
    let host = sandbox().await;
    let v4 = bridged()
        .host(&host)
        .bridge_name("br4")
        .gateway("10.69.0.254/24")
        .member(MemberSpec::new().address("10.69.0.1/24"))
        .create()
        .await
        .unwrap();
    let m = &v4.members()[0];
    let inside = ip_json(m.namespace(), &["-6", "addr", "show", "dev", "eth0"]);
    let v6 = inside[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        v6.is_empty(),
        "an IPv4-only member got IPv6 addresses: {v6:?}"
    );
    // The bridge port (host end) has no IPv6 address and makes none (it has no link-local
    // address to announce: the bridge would flood that to every port).
    assert!(ping(m.namespace(), "10.69.0.254"));
    let port = m.peer().name().to_owned();
    let link = ip_json(&host, &["-d", "link", "show", "dev", &port]);
    assert_eq!(link[0]["inet6_addr_gen_mode"], "none", "{link}");
    // Both ends: one queue each way (no kernel reduction from one per CPU, which waits under
    // the RTNL lock), and the kernel's default queue length back after the creation mark.
    let inside = ip_json(m.namespace(), &["-d", "link", "show", "dev", "eth0"]);
    for end in [&link[0], &inside[0]] {
        assert_eq!(end["num_tx_queues"], 1, "{end}");
        assert_eq!(end["num_rx_queues"], 1, "{end}");
        assert_eq!(end["txqlen"], 1000, "{end}");
        assert_eq!(end["operstate"], "UP", "{end}");
    }
    let addrs = ip_json(&host, &["-6", "addr", "show", "dev", &port]);
    let v6 = addrs[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(v6.is_empty(), "a bridge port got IPv6 addresses: {v6:?}");

    // A dual-stack network's members have their link-local address, as usual.
    let dual = bridged()
        .host(&host)
        .bridge_name("br6")
        .gateway("10.70.0.254/24")
        .gateway("fd70::fe/64")
        .member(
            MemberSpec::new()
                .address("10.70.0.1/24")
                .address("fd70::1/64"),
        )
        .create()
        .await
        .unwrap();
    let inside = ip_json(
        dual.members()[0].namespace(),
        &["-6", "addr", "show", "dev", "eth0"],
    );
    let scopes: Vec<String> = inside[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["scope"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        scopes.contains(&"link".to_owned()) && scopes.contains(&"global".to_owned()),
        "{scopes:?}"
    );
}

#[tokio::test]
async fn guards_inside_a_namespace_whose_handle_is_gone_leave_it_to_the_kernel() {
    // A witness veth from the sandbox into `inner` shows when `inner` is freed.
    let host = sandbox().await;
    let inner = Namespace::new().await.unwrap();
    netns_kit::VethPair::builder("wit0", "wit1")
        .namespace(&host)
        .peer_namespace(&inner)
        .create()
        .await
        .unwrap()
        .keep();
    let (a, b) = (
        Namespace::new().await.unwrap(),
        Namespace::new().await.unwrap(),
    );
    let link = connect(&a, &b)
        .address("10.71.0.1/30", "10.71.0.2/30")
        .create()
        .await
        .unwrap();
    let br = netns_kit::Bridge::builder("brx")
        .namespace(&inner)
        .address("10.72.0.1/24")
        .create()
        .await
        .unwrap();
    // Handles first, then the guards: the guards hold the namespaces until they go, and then
    // the kernel frees them with everything inside.
    drop((inner, a, b));
    assert!(
        link_names(&host).contains(&"wit0".to_owned()),
        "held by the bridge guard"
    );
    drop(br);
    drop(link);
    eventually("the namespace to be freed with its bridge", || {
        !link_names(&host).contains(&"wit0".to_owned())
    });
}

/// The packets the rules of bridge-family table `table` in `ns` counted, and the link groups
/// they match (`meta iifgroup`).
fn filter_counts(ns: &Namespace, table: &str) -> (u64, Vec<String>) {
    let v = nft_json(ns, &["list", "table", "bridge", table]);
    let (mut packets, mut groups) = (0, Vec::new());
    for rule in v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
    {
        for e in rule["expr"].as_array().unwrap() {
            if let Some(n) = e["counter"]["packets"].as_u64() {
                packets += n;
            }
            let key = &e["match"]["left"]["meta"]["key"];
            if key == "iifgroup" || key == "oifgroup" {
                groups.push(e["match"]["right"].to_string());
            }
        }
    }
    (packets, groups)
}

#[tokio::test]
async fn members_router_messages_are_dropped_between_members_unless_turned_off() {
    for filter in [true, false] {
        let host = sandbox().await;
        let mut net = bridged()
            .host(&host)
            .bridge_name("brm")
            .gateway("10.71.0.254/24")
            .gateway("fd71::fe/64")
            .filter_router_messages(filter)
            .member(
                MemberSpec::new()
                    .address("10.71.0.1/24")
                    .address("fd71::1/64"),
            )
            .member(
                MemberSpec::new()
                    .address("10.71.0.2/24")
                    .address("fd71::2/64"),
            )
            .create()
            .await
            .unwrap();
        assert_eq!(router_message_tables(&host).len(), usize::from(filter));
        let third = net
            .add_member(
                MemberSpec::new()
                    .address("10.71.0.3/24")
                    .address("fd71::3/64"),
            )
            .await
            .unwrap();
        // Its link-local address skipped DAD with the filter: usable within half a second
        // (the kernel clears the flag on a work item); DAD takes a second or more otherwise.
        let tentative = || {
            let addrs = ip_json(third.namespace(), &["-6", "addr", "show", "dev", "eth0"]);
            let link_local = addrs[0]["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["scope"] == "link")
                .cloned()
                .expect("a link-local address");
            link_local.get("tentative").is_some()
        };
        let mut waited = 0;
        while tentative() && waited < 500 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 50;
        }
        assert_eq!(!tentative(), filter, "filter {filter}: after {waited} ms");
        // A member that joins a group says so at once (an MLD report, to the gateway). Another
        // member receives it only without the filter (its IPv6 layer counts the multicast it
        // gets, `Ip6InMcastPkts`, before dropping what it has not joined); with it, the
        // filter's rules count what they dropped. Five joins, 0.3 s apart.
        let multicast_at_first = || -> u64 {
            let out = outside(
                net.members()[0].namespace(),
                "cat",
                &["/proc/self/net/snmp6"],
            )
            .output()
            .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Ip6InMcastPkts"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap()
        };
        let table = router_message_tables(&host).first().cloned();
        const JOINS: u64 = 5;
        let before = multicast_at_first();
        for i in 0..JOINS {
            let address = format!("fd71::3{i}/64");
            let joined = outside(
                net.members()[2].namespace(),
                "ip",
                &["addr", "add", &address, "dev", "eth0", "nodad"],
            )
            .status()
            .unwrap();
            assert!(joined.success());
            std::thread::sleep(Duration::from_millis(300));
        }
        let got = multicast_at_first() - before;
        if let Some(table) = &table {
            assert!(
                filter_counts(&host, table).0 >= JOINS,
                "{:?}",
                filter_counts(&host, table)
            );
            assert!(
                got < JOINS,
                "a member got another's reports: {got} multicast packets"
            );
            // The rules match the network's link group, which every member's host end is in.
            let port = net.members()[2].peer().name().to_owned();
            // `ip` shows the group as a signed number, nft as an unsigned one.
            let group: i64 = link_json(&host, &port)["group"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let group = (group as i32 as u32).to_string();
            let (_, groups) = filter_counts(&host, table);
            assert_eq!(groups, vec![group; 8], "the rules' groups and the port's");
        } else {
            assert!(
                got >= JOINS,
                "without the filter only {got} multicast packets came"
            );
        }
        // Neighbour discovery between members and with the gateway is untouched.
        let (first, third) = (net.members()[0].namespace(), net.members()[2].namespace());
        assert!(ping(first, "fd71::3"), "filter {filter}");
        assert!(ping(third, "fd71::2"), "filter {filter}");
        assert!(ping(third, "fd71::fe"), "filter {filter}");
        drop(net);
        assert!(router_message_tables(&host).is_empty(), "left behind");
    }
}
