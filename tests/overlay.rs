//! VXLAN and a bridged network spanning "machines" (namespaces joined by an underlay), checked
//! from outside: `ip -d -j link` (kind, VNI, port, local, bridge, MTU), `bridge -j fdb` (one
//! all-zeros entry per remote), pings between every pair of members on different machines, 1 MiB
//! by TCP byte for byte; bad input refused before anything is made.

mod common;

use std::{
    io::{Read, Write},
    net::IpAddr,
};

use common::{in_ns, ip_json, link_names, outside, ping};
use netns_kit::{BridgedNetwork, MemberSpec, Namespace, Vxlan, bridged};
use serde_json::Value;

/// `bridge -j fdb show dev DEV` in `ns`: the remotes of the all-zeros entries.
fn flood_remotes(ns: &Namespace, dev: &str) -> Vec<String> {
    let out = outside(ns, "bridge", &["-j", "fdb", "show", "dev", dev])
        .output()
        .unwrap();
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    let mut remotes: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mac"] == "00:00:00:00:00:00")
        .filter_map(|e| e["dst"].as_str().map(str::to_owned))
        .collect();
    remotes.sort();
    remotes
}

/// The VXLAN port of bridge `bridge` in `ns`, as `ip -d -j link` shows it.
fn vxlan_port(ns: &Namespace, bridge: &str) -> Value {
    let links = ip_json(ns, &["-d", "link", "show", "master", bridge]);
    links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["linkinfo"]["info_kind"] == "vxlan")
        .unwrap_or_else(|| panic!("no vxlan port on {bridge}: {links}"))
        .clone()
}

/// `n` machines on one underlay LAN (a bridge in a "switch" namespace), addresses 10.97.0.1..n.
fn machines(n: usize) -> (Vec<Namespace>, Namespace, BridgedNetwork) {
    let switch = Namespace::new_blocking().unwrap();
    let hosts: Vec<Namespace> = (0..n).map(|_| Namespace::new_blocking().unwrap()).collect();
    let underlay = bridged()
        .host(&switch)
        .gateway("10.97.0.254/24")
        .members(hosts.iter().enumerate().map(|(i, h)| {
            MemberSpec::in_namespace(h)
                .link_name("wire")
                .address(format!("10.97.0.{}/24", i + 1))
        }))
        .create_blocking()
        .unwrap();
    (hosts, switch, underlay)
}

fn underlay_ip(i: usize) -> IpAddr {
    format!("10.97.0.{}", i + 1).parse().unwrap()
}

/// Machine `i`'s half of 10.42.0.0/24 (gateway .(i+1), members .(10i+11) and .(10i+12)), with
/// a VXLAN port towards every other machine.
fn half(hosts: &[Namespace], i: usize) -> BridgedNetwork {
    let remotes = (0..hosts.len()).filter(|&j| j != i).map(underlay_ip);
    bridged()
        .host(&hosts[i])
        .bridge_name("br42")
        .gateway(format!("10.42.0.{}/24", i + 1))
        .vxlan(42, underlay_ip(i), remotes)
        .members(
            (0..2).map(|m| MemberSpec::new().address(format!("10.42.0.{}/24", 10 * i + 11 + m))),
        )
        .create_blocking()
        .unwrap()
}

/// Every member pings every member of every other machine.
fn all_pairs_ping(nets: &[BridgedNetwork]) {
    for (i, here) in nets.iter().enumerate() {
        for (j, there) in nets.iter().enumerate() {
            if i == j {
                continue;
            }
            for from in here.members() {
                for to in there.members() {
                    let to = to.addresses()[0].ip().to_string();
                    assert!(
                        ping(from.namespace(), &to),
                        "machine {i} -> {to} on machine {j}"
                    );
                }
            }
        }
    }
}

#[test]
fn one_network_spans_two_machines_and_carries_a_mebibyte() {
    let (hosts, _switch, _underlay) = machines(2);
    let nets: Vec<BridgedNetwork> = (0..2).map(|i| half(&hosts, i)).collect();

    // From outside: the VXLAN port on each machine's bridge.
    let vx = vxlan_port(&hosts[0], "br42");
    let data = &vx["linkinfo"]["info_data"];
    assert_eq!(data["id"], 42, "{vx}");
    assert_eq!(data["port"], 4789, "{vx}");
    assert_eq!(data["local"], "10.97.0.1", "{vx}");
    assert_eq!(vx["mtu"], 1450, "{vx}");
    let vx_name = vx["ifname"].as_str().unwrap().to_owned();
    assert_eq!(flood_remotes(&hosts[0], &vx_name), ["10.97.0.2"]);
    let member = ip_json(
        nets[0].members()[0].namespace(),
        &["link", "show", "dev", "eth0"],
    );
    assert_eq!(member[0]["mtu"], 1450, "members leave room for the headers");

    all_pairs_ping(&nets);

    // 1 MiB by TCP from machine 0 to machine 1, byte for byte.
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = in_ns(nets[1].members()[0].namespace(), move || {
        let listener = std::net::TcpListener::bind(("0.0.0.0", 7600)).unwrap();
        tx.send(()).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        got
    });
    rx.recv().unwrap();
    let sent = data.clone();
    in_ns(nets[0].members()[1].namespace(), move || {
        let mut stream = std::net::TcpStream::connect(("10.42.0.21", 7600)).unwrap();
        stream.write_all(&sent).unwrap();
    })
    .join()
    .unwrap();
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the mebibyte arrived changed");

    // Teardown removes the port with the network; the underlay stays until it goes too.
    drop(nets);
    assert_eq!(link_names(&hosts[0]), ["lo", "wire"]);
}

#[test]
fn three_machines_reach_each_other() {
    let (hosts, _switch, _underlay) = machines(3);
    let nets: Vec<BridgedNetwork> = (0..3).map(|i| half(&hosts, i)).collect();
    let vx = vxlan_port(&hosts[2], "br42");
    assert_eq!(
        flood_remotes(&hosts[2], vx["ifname"].as_str().unwrap()),
        ["10.97.0.1", "10.97.0.2"]
    );
    all_pairs_ping(&nets);
}

#[test]
fn a_vxlan_endpoint_on_its_own_and_its_remotes_at_run_time() {
    let host = Namespace::new_blocking().unwrap();
    let mut vx = Vxlan::builder("vx7", 7)
        .namespace(&host)
        .local("10.96.0.1".parse().unwrap())
        .remote("10.96.0.2".parse().unwrap())
        .learning(false)
        .port(4790)
        .create_blocking()
        .unwrap();
    let link = ip_json(&host, &["-d", "link", "show", "dev", "vx7"]);
    let data = &link[0]["linkinfo"]["info_data"];
    assert_eq!(data["id"], 7, "{link}");
    assert_eq!(data["port"], 4790, "{link}");
    assert_eq!(data["learning"], false, "{link}");
    assert_eq!(flood_remotes(&host, "vx7"), ["10.96.0.2"]);
    vx.add_remote_blocking("10.96.0.3".parse().unwrap())
        .unwrap();
    assert_eq!(flood_remotes(&host, "vx7"), ["10.96.0.2", "10.96.0.3"]);
    vx.remove_remote_blocking("10.96.0.2".parse().unwrap())
        .unwrap();
    assert_eq!(flood_remotes(&host, "vx7"), ["10.96.0.3"]);
    let err = vx
        .add_remote_blocking("10.96.0.3".parse().unwrap())
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    drop(vx);
    assert_eq!(link_names(&host), ["lo"]);
}

#[test]
fn bad_vxlan_input_is_refused_before_anything_is_made() {
    let host = Namespace::new_blocking().unwrap();
    let elsewhere = Namespace::new_blocking().unwrap();
    let other_bridge = netns_kit::Bridge::builder("brx")
        .namespace(&elsewhere)
        .create_blocking()
        .unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let cases = [
        (Vxlan::builder("vx1", 1 << 24), "24 bits"),
        (Vxlan::builder("vx1", 1).port(0), "port 0"),
        (
            Vxlan::builder("vx1", 1)
                .multicast_group(ip("239.1.1.1"))
                .remote(ip("10.96.0.2")),
            "not both",
        ),
        (
            Vxlan::builder("vx1", 1).multicast_group(ip("10.96.0.9")),
            "not a multicast",
        ),
        (
            Vxlan::builder("vx1", 1).multicast_group(ip("239.1.1.1")),
            "underlay",
        ),
        (
            Vxlan::builder("vx1", 1)
                .local(ip("10.96.0.1"))
                .remote(ip("fd96::2")),
            "different IP versions",
        ),
        (
            Vxlan::builder("vx1", 1)
                .local(ip("10.96.0.1"))
                .remote(ip("10.96.0.1")),
            "the local address",
        ),
        (
            Vxlan::builder("vx1", 1)
                .remote(ip("10.96.0.2"))
                .remote(ip("10.96.0.2")),
            "twice",
        ),
        (Vxlan::builder("vx1/x", 1), "/"),
        // A bridge in another namespace than the endpoint's.
        (
            Vxlan::builder("vx1", 1).controller(other_bridge.link()),
            "in another namespace",
        ),
    ];
    for (builder, says) in cases {
        let err = builder.namespace(&host).create_blocking().unwrap_err();
        assert!(err.to_string().contains(says), "{err} should say {says:?}");
        assert_eq!(link_names(&host), ["lo"], "after {err}");
    }
    // A spanning network's VXLAN input is checked before its bridge is made.
    let err = bridged()
        .host(&host)
        .bridge_name("brv")
        .gateway("10.42.0.1/24")
        .vxlan(1 << 24, ip("10.96.0.1"), [ip("10.96.0.2")])
        .create_blocking()
        .unwrap_err();
    assert!(err.to_string().contains("24 bits"), "{err}");
    assert_eq!(link_names(&host), ["lo"]);
    // A spanning network needs its own bridge.
    let bridge = netns_kit::Bridge::builder("br0")
        .namespace(&host)
        .create_blocking()
        .unwrap();
    let err = bridged()
        .host(&host)
        .existing_bridge(&bridge)
        .gateway("10.42.0.1/24")
        .vxlan(42, ip("10.96.0.1"), [ip("10.96.0.2")])
        .create_blocking()
        .unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("VXLAN"),
        "{err}"
    );
}

#[test]
fn a_kept_spanning_network_unmarks_its_vxlan_port_and_ipv6_underlays_get_room() {
    let host = Namespace::new_blocking().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // An IPv6 underlay: 20 more bytes of headers, so 1430.
    let net = bridged()
        .host(&host)
        .bridge_name("br6")
        .gateway("10.43.0.1/24")
        .vxlan(43, ip("fd97::1"), [ip("fd97::2")])
        .member(MemberSpec::new().address("10.43.0.2/24"))
        .create_blocking()
        .unwrap();
    let member = ip_json(
        net.members()[0].namespace(),
        &["link", "show", "dev", "eth0"],
    );
    assert_eq!(member[0]["mtu"], 1430, "{member}");
    // Kept: the port is out of the network's link group and its ownership mark is gone, like
    // the bridge's and the members' ends' (so no later network's teardown, and no reaper,
    // removes it, and nothing of this crate is left on it).
    let net = net.keep();
    let vx = vxlan_port(&host, "br6");
    assert_eq!(vx["group"], "default", "{vx}");
    assert!(vx.get("ifalias").is_none(), "{vx}");
    drop(net);
    // Still there after the guard: kept.
    let links = ip_json(&host, &["-d", "link", "show", "master", "br6"]);
    assert!(
        links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["linkinfo"]["info_kind"] == "vxlan"),
        "{links}"
    );
}
