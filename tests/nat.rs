//! `nat`: masquerade and published ports, checked from outside — real TCP connections through
//! the published port (from another namespace, from the host itself, from `127.0.0.1`, from
//! another member), the peer address a server outside sees, `iptables-save` and `nft list
//! ruleset` before and after, and the rules compared with the ones `iptables` itself writes.

mod common;

use std::{
    io::{BufRead, Write},
    net::{IpAddr, SocketAddr},
};

use common::*;
use netns_kit::{
    BridgedNetwork, DirectLink, Error, MemberSpec, Namespace, bridged, connect,
    nat::{self, Backend, PortMapping, Protocol},
};

/// Everything the tools show of `ns`'s firewall: both `-save`s and `nft list ruleset`.
fn firewall(ns: &Namespace) -> String {
    let nft = outside(ns, "nft", &["-s", "list", "ruleset"])
        .output()
        .unwrap();
    format!(
        "{}\n{}\n{}",
        saved(ns, "iptables-save"),
        saved(ns, "ip6tables-save"),
        String::from_utf8_lossy(&nft.stdout)
    )
}

/// A TCP server in `ns` on `port` (IPv4 and IPv6) answering each connection with the line
/// `NAME from PEER`, for as long as the test runs.
fn serve(ns: &Namespace, port: u16, name: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    drop(in_ns(ns, move || {
        let listener = std::net::TcpListener::bind(("::", port)).unwrap();
        tx.send(()).unwrap();
        for stream in listener.incoming().flatten() {
            let peer = match stream.peer_addr().unwrap().ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            let _ = (&stream).write_all(format!("{name} from {peer}\n").as_bytes());
        }
    }));
    rx.recv().unwrap();
}

/// Connects from `ns` to `addr:port` and reads the server's line.
fn fetch(ns: &Namespace, addr: &str, port: u16) -> Result<String, String> {
    let to = SocketAddr::new(addr.parse().unwrap(), port);
    in_ns(ns, move || {
        let timeout = std::time::Duration::from_secs(3);
        let stream =
            std::net::TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("{to}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| format!("{to}: {e}"))?;
        Ok(line.trim().to_owned())
    })
    .join()
    .unwrap()
}

/// A host with a dual-stack bridged network (members .2 and .3, `10.0.N.0/24` and
/// `fd40:N::/64`) and an "outside" namespace on a cable (`10.9.N.1` host, `.2` outside),
/// forwarding on, a `FORWARD` policy of `DROP` and the bridge's accept rules.
struct World {
    net: BridgedNetwork,
    _cable: DirectLink,
    outside: Namespace,
    host: Namespace,
}

async fn world(n: u8) -> World {
    let host = sandbox().await;
    let outside_ns = Namespace::new().await.unwrap();
    for (key, value) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
    ] {
        host.set_sysctl(key, value).await.unwrap();
    }
    // A FORWARD policy of DROP, as Docker leaves it.
    for program in ["iptables", "ip6tables"] {
        assert!(
            outside(&host, program, &["-P", "FORWARD", "DROP"])
                .status()
                .unwrap()
                .success()
        );
    }
    let net = bridged()
        .host(&host)
        .gateway(format!("10.0.{n}.1/24").as_str())
        .gateway(format!("fd40:{n}::1/64").as_str())
        .accept_forward(true)
        .nodad(true)
        .member(
            MemberSpec::new()
                .address(format!("10.0.{n}.2/24").as_str())
                .address(format!("fd40:{n}::2/64").as_str()),
        )
        .member(
            MemberSpec::new()
                .address(format!("10.0.{n}.3/24").as_str())
                .address(format!("fd40:{n}::3/64").as_str()),
        )
        .create()
        .await
        .unwrap();
    let cable = connect(&host, &outside_ns)
        .address(
            format!("10.9.{n}.1/24").as_str(),
            format!("10.9.{n}.2/24").as_str(),
        )
        .address(
            format!("fd49:{n}::1/64").as_str(),
            format!("fd49:{n}::2/64").as_str(),
        )
        .nodad(true)
        .default_routes(false)
        .create()
        .await
        .unwrap();
    World {
        net,
        _cable: cable,
        outside: outside_ns,
        host,
    }
}

#[tokio::test]
async fn published_ports_are_reached_from_outside_the_host_localhost_and_other_members() {
    let w = world(61).await;
    let before = firewall(&w.host);
    let member = w.net.members()[0].namespace();
    serve(member, 80, "web");
    serve(member, 7003, "web-7003");
    // A masquerade too: its exempt-network ACCEPT must not end POSTROUTING before the
    // hairpin's masquerade.
    let masq = w.net.masquerade().create().await.unwrap();
    // The outside namespace has a route to the host only (no route to the members).
    let ports = w
        .net
        .publish()
        .map(PortMapping::tcp(8080, "10.0.61.2:80".parse().unwrap()))
        .map(PortMapping::tcp(8080, "[fd40:61::2]:80".parse().unwrap()))
        .map(PortMapping::new(
            Protocol::Tcp,
            9000..=9009,
            "10.0.61.2".parse().unwrap(),
            7000,
        ))
        .localhost(true)
        .create()
        .await
        .unwrap();
    assert_eq!(ports.backend(), Backend::detect());
    // A range onto other ports maps in order: 9003 to 7003.
    assert_eq!(
        fetch(&w.outside, "10.9.61.1", 9003).unwrap(),
        "web-7003 from 10.9.61.2"
    );
    // From another host, to the host's address: the member sees the client's own address.
    assert_eq!(
        fetch(&w.outside, "10.9.61.1", 8080).unwrap(),
        "web from 10.9.61.2"
    );
    assert_eq!(
        fetch(&w.outside, "fd49:61::1", 8080).unwrap(),
        "web from fd49:61::2"
    );
    // From the host itself, to each of its addresses and to 127.0.0.1 (route_localnet).
    for addr in ["10.9.61.1", "10.0.61.1", "127.0.0.1", "fd49:61::1"] {
        let line = fetch(&w.host, addr, 8080).unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert!(line.starts_with("web from "), "{addr}: {line}");
    }
    assert_eq!(
        sysctl_outside(
            &w.host,
            &format!("net.ipv4.conf.{}.route_localnet", w.net.bridge().name())
        ),
        "1"
    );
    // Hairpin: another member through the host's address, answered through the host.
    let other = w.net.members()[1].namespace();
    assert_eq!(
        fetch(other, "10.9.61.1", 8080).unwrap(),
        "web from 10.0.61.1"
    );
    assert_eq!(
        fetch(other, "10.0.61.1", 8080).unwrap(),
        "web from 10.0.61.1"
    );
    assert_eq!(
        fetch(other, "fd40:61::1", 8080).unwrap(),
        "web from fd40:61::1"
    );
    // The rules are iptables rules, in nat.
    let nat = saved(&w.host, "iptables-save");
    let chain = &ports.chains()[0];
    assert!(
        nat.contains(&format!(
            "-A {chain} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.61.2:80"
        )),
        "{nat}"
    );
    ports.delete().await.unwrap();
    masq.delete().await.unwrap();
    assert!(fetch(&w.outside, "10.9.61.1", 8080).is_err());
    assert_eq!(
        sysctl_outside(
            &w.host,
            &format!("net.ipv4.conf.{}.route_localnet", w.net.bridge().name())
        ),
        "0"
    );
    assert_eq!(firewall(&w.host), before, "the firewall changed for good");
}

#[tokio::test]
async fn masquerade_gives_members_the_hosts_address_outside() {
    let w = world(62).await;
    let before = firewall(&w.host);
    serve(&w.outside, 9000, "outside");
    let member = w.net.members()[0].namespace();
    // Without it, the outside namespace has no route back to the members.
    assert!(fetch(member, "10.9.62.2", 9000).is_err());
    let masq = w.net.masquerade().create().await.unwrap();
    assert_eq!(
        fetch(member, "10.9.62.2", 9000).unwrap(),
        "outside from 10.9.62.1"
    );
    assert_eq!(
        fetch(member, "fd49:62::2", 9000).unwrap(),
        "outside from fd49:62::1"
    );
    // Members among themselves keep their addresses (the exempt network).
    serve(member, 81, "member");
    assert_eq!(
        fetch(w.net.members()[1].namespace(), "10.0.62.2", 81).unwrap(),
        "member from 10.0.62.3"
    );
    let chain = masq.chains()[0].clone();
    let nat = saved(&w.host, "iptables-save");
    assert!(
        nat.contains(&format!("-A {chain} ! -d 224.0.0.0/4"))
            && nat.contains("-A POSTROUTING -s 10.0.62.0/24"),
        "{nat}"
    );
    drop(masq);
    assert_eq!(firewall(&w.host), before, "the firewall changed for good");
}

/// The rules as `iptables` itself writes them: the same lines given to `iptables-restore` in a
/// second namespace give the same `iptables-save` and the same `nft list ruleset` (which shows
/// the kernel's expressions).
#[tokio::test]
async fn rules_are_the_ones_iptables_writes() {
    let ours = sandbox().await;
    let theirs = sandbox().await;
    let ports = nat::publish()
        .host(&ours)
        .map(
            PortMapping::tcp(8080, "10.0.63.2:80".parse().unwrap())
                .host_address("10.9.63.1".parse().unwrap()),
        )
        .map(PortMapping::new(
            Protocol::Udp,
            9000..=9009,
            "10.0.63.2".parse().unwrap(),
            7000,
        ))
        .map(PortMapping::tcp(8443, "[fd40:63::2]:443".parse().unwrap()))
        .hairpin("10.0.63.0/25")
        .hairpin("fd40:63::/64")
        .localhost(true)
        .via("lo")
        .backend(Backend::Nftables)
        .create()
        .await
        .unwrap();
    let masq = nat::masquerade()
        .host(&ours)
        .source("10.0.63.0/24")
        .source("fd40:63::/64")
        .exempt("10.0.0.0/8")
        .chain("CNI-0123456789abcdef01234567")
        .comment("name: \"net\" id: \"c1\"")
        .backend(Backend::Nftables)
        .create()
        .await
        .unwrap();
    // What ours wrote, replayed by iptables-restore in the other namespace.
    for (save, restore) in [
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ] {
        let out = outside(&ours, save, &["-t", "nat"]).output().unwrap();
        // Without `:INPUT ACCEPT`: iptables-restore would create that base chain, which
        // nothing here uses (iptables-nft creates base chains when a rule needs them).
        let script: String = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(":INPUT "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut child = outside(&theirs, restore, &[])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "{restore} refused:\n{script}"
        );
    }
    let normalize = |ns: &Namespace| {
        // Handles differ with the order of creation; nothing else may.
        firewall(ns)
            .lines()
            .map(|l| l.split(" # handle").next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (a, b) = (normalize(&ours), normalize(&theirs));
    let mut a_sorted = a.clone();
    let mut b_sorted = b.clone();
    a_sorted.sort();
    b_sorted.sort();
    assert_eq!(
        a_sorted,
        b_sorted,
        "ours:\n{}\n\ntheirs:\n{}",
        a.join("\n"),
        b.join("\n")
    );
    // And the expressions byte for byte, as nft's netlink debug output prints them.
    let debug = |ns: &Namespace| {
        let out = outside(ns, "nft", &["--debug=netlink", "list", "ruleset"])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with('['))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(debug(&ours), debug(&theirs));
    drop((ports, masq));
    assert_eq!(
        firewall(&ours),
        "\n\n",
        "a fresh namespace's firewall is empty again"
    );
}

/// Someone else's `nat` table, with a rule and a chain, is left exactly as it was (the base
/// chains made for ours, `PREROUTING` and `OUTPUT`, go again); and `iptables -D`, as the
/// reference plugin runs it, removes a rule we wrote.
#[tokio::test]
async fn others_rules_stay_and_iptables_removes_ours() {
    let host = sandbox().await;
    for args in [
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.7.0.0/16",
            "-j",
            "MASQUERADE",
        ][..],
        &["-t", "nat", "-N", "THEIRS"],
    ] {
        assert!(outside(&host, "iptables", args).status().unwrap().success());
    }
    let before = firewall(&host);
    let masq = nat::masquerade()
        .host(&host)
        .source("10.0.64.0/24")
        .create()
        .await
        .unwrap();
    let ports = nat::publish()
        .host(&host)
        .map(PortMapping::tcp(8080, "10.0.64.2:80".parse().unwrap()))
        .create()
        .await
        .unwrap();
    let chain = masq.chains()[0].clone();
    // iptables -D, as the reference plugin removes its rules.
    let line = saved(&host, "iptables-save")
        .lines()
        .find(|l| l.starts_with(&format!("-A {chain} ! -d")))
        .unwrap()
        .to_owned();
    let mut args: Vec<String> = vec!["-t".into(), "nat".into()];
    args.extend(shell_words(&line.replacen("-A ", "-D ", 1)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = outside(&host, "iptables", &args).output().unwrap();
    assert!(out.status.success(), "iptables -D: {out:?}");
    drop((masq, ports));
    assert_eq!(firewall(&host), before);
}

/// `iptables-save` words, quotes undone.
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => cur.extend(chars.next()),
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

#[tokio::test]
async fn a_kept_guards_chain_is_removed_by_name() {
    let host = sandbox().await;
    let masq = nat::masquerade()
        .host(&host)
        .source("10.0.65.0/24")
        .create()
        .await
        .unwrap()
        .keep();
    let chain = masq.chains()[0].clone();
    drop(masq);
    // Published ports with a hairpin: a tagged POSTROUTING rule outside the chain.
    let ports = nat::publish()
        .host(&host)
        .map(PortMapping::tcp(8080, "10.0.65.2:80".parse().unwrap()))
        .hairpin("10.0.65.0/24")
        .create()
        .await
        .unwrap()
        .keep();
    let ports_chain = ports.chains()[0].clone();
    drop(ports);
    assert!(saved(&host, "iptables-save").contains(&chain));
    assert!(nat::remove_chain(&host, &chain).await.unwrap());
    assert!(!nat::remove_chain(&host, &chain).await.unwrap());
    assert!(nat::remove_chain(&host, &ports_chain).await.unwrap());
    // Every rule gone, the jumps and the tagged masquerade; what was created for the kept
    // guards (the table, its base chains) stays: nobody owns it now.
    let left = saved(&host, "iptables-save");
    assert!(!left.lines().any(|l| l.starts_with("-A")), "{left}");
    assert!(
        !left.contains(&chain) && !left.contains(&ports_chain),
        "{left}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_what_and_leaves_nothing() {
    let host = sandbox().await;
    let before = firewall(&host);
    let member: SocketAddr = "10.0.66.2:80".parse().unwrap();
    let cases: Vec<(nat::PublishBuilder, &str)> = vec![
        (nat::publish().host(&host), "no port mapping"),
        (
            nat::publish().host(&host).map(PortMapping::tcp(0, member)),
            "port 0",
        ),
        (
            nat::publish().host(&host).map(PortMapping::new(
                Protocol::Tcp,
                9000..=9010,
                member.ip(),
                65530,
            )),
            "past 65535",
        ),
        (
            nat::publish()
                .host(&host)
                .map(PortMapping::tcp(8080, member))
                .map(PortMapping::tcp(8080, "10.0.66.3:80".parse().unwrap())),
            "overlap",
        ),
        (
            nat::publish()
                .host(&host)
                .map(PortMapping::tcp(8080, member).host_address("fd00::1".parse().unwrap())),
            "different IP versions",
        ),
        (
            nat::publish()
                .host(&host)
                .map(PortMapping::tcp(8080, "127.0.0.1:80".parse().unwrap())),
            "loopback",
        ),
        (
            nat::publish()
                .host(&host)
                .map(PortMapping::tcp(8080, member))
                .localhost(true),
            "via",
        ),
        (nat::publish().map(PortMapping::tcp(8080, member)), ".host"),
        (
            nat::publish()
                .host(&host)
                .map(PortMapping::tcp(8080, member).host_address("127.0.0.1".parse().unwrap())),
            "loopback address",
        ),
    ];
    for (builder, says) in cases {
        let e = builder.create().await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidInput { .. }) && e.to_string().contains(says),
            "{says}: {e}"
        );
    }
    for (builder, says) in [
        (nat::masquerade().host(&host), "no source"),
        (
            nat::masquerade().host(&host).source("0.0.0.0/0"),
            "every address",
        ),
        (
            nat::masquerade()
                .host(&host)
                .source("10.0.66.0/24")
                .chain("A-CHAIN-NAME-FAR-TOO-LONG-FOR-IPTABLES"),
            "chain name",
        ),
        (
            nat::masquerade().host(&host).source("10.0.66.0/33"),
            "10.0.66.0/33",
        ),
    ] {
        let e = builder.create().await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidInput { .. }) && e.to_string().contains(says),
            "{says}: {e}"
        );
    }
    // A chain name already in use: refused, and the first set is untouched.
    let first = nat::masquerade()
        .host(&host)
        .source("10.0.66.0/24")
        .chain("NK-TWICE")
        .create()
        .await
        .unwrap();
    let with_first = firewall(&host);
    let e = nat::masquerade()
        .host(&host)
        .source("10.0.67.0/24")
        .chain("NK-TWICE")
        .create()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(firewall(&host), with_first);
    drop(first);
    assert_eq!(firewall(&host), before);
}

/// The `iptables-restore` backend (what a host whose `iptables` is the legacy one gets), run
/// here through this host's `iptables-restore`: the same rules, reached the same ways, and none
/// left after the guards go (the `nat` table `iptables-restore` made stays, as documented).
#[tokio::test]
async fn the_iptables_restore_backend_writes_and_removes_the_same_rules() {
    let w = world(67).await;
    let member = w.net.members()[0].namespace();
    serve(member, 80, "web");
    serve(member, 7002, "web-7002");
    serve(&w.outside, 9000, "outside");
    let masq = w
        .net
        .masquerade()
        .backend(Backend::IptablesRestore)
        .create()
        .await
        .unwrap();
    let ports = w
        .net
        .publish()
        .map(PortMapping::tcp(8080, "10.0.67.2:80".parse().unwrap()))
        .map(PortMapping::tcp(8080, "[fd40:67::2]:80".parse().unwrap()))
        .map(PortMapping::new(
            Protocol::Tcp,
            9000..=9009,
            "10.0.67.2".parse().unwrap(),
            7000,
        ))
        .localhost(true)
        .backend(Backend::IptablesRestore)
        .create()
        .await
        .unwrap();
    assert_eq!(ports.backend(), Backend::IptablesRestore);
    assert_eq!(
        fetch(&w.outside, "10.9.67.1", 8080).unwrap(),
        "web from 10.9.67.2"
    );
    assert_eq!(
        fetch(&w.outside, "fd49:67::1", 8080).unwrap(),
        "web from fd49:67::2"
    );
    assert_eq!(
        fetch(&w.outside, "10.9.67.1", 9002).unwrap(),
        "web-7002 from 10.9.67.2"
    );
    assert!(
        fetch(&w.host, "127.0.0.1", 8080)
            .unwrap()
            .starts_with("web from ")
    );
    let other = w.net.members()[1].namespace();
    assert_eq!(
        fetch(other, "10.0.67.1", 8080).unwrap(),
        "web from 10.0.67.1"
    );
    assert_eq!(
        fetch(member, "10.9.67.2", 9000).unwrap(),
        "outside from 10.9.67.1"
    );
    // A second set with the chain name of the first: refused, the first untouched.
    let chain = masq.chains()[0].clone();
    let e = nat::masquerade()
        .host(&w.host)
        .source("10.0.68.0/24")
        .chain(chain.as_str())
        .backend(Backend::IptablesRestore)
        .create()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    drop((ports, masq));
    for program in ["iptables-save", "ip6tables-save"] {
        let left = saved(&w.host, program);
        let nat: Vec<&str> = left
            .lines()
            .skip_while(|l| *l != "*nat")
            .take_while(|l| *l != "COMMIT")
            .filter(|l| l.starts_with('-') || (l.starts_with(':') && l.contains("NK-")))
            .collect();
        assert!(nat.is_empty(), "{program}: {nat:?}");
    }
    assert!(fetch(&w.outside, "10.9.67.1", 8080).is_err());
}

/// Two masquerades given the same comment: removing one by name leaves the other whole.
#[tokio::test]
async fn remove_chain_leaves_another_set_with_the_same_comment() {
    let host = sandbox().await;
    let make = |net: &'static str, chain: &'static str| {
        nat::masquerade()
            .host(&host)
            .source(net)
            .chain(chain)
            .comment("myapp")
            .create()
    };
    let a = make("10.0.69.0/24", "NK-SAME-A").await.unwrap().keep();
    let b = make("10.0.70.0/24", "NK-SAME-B").await.unwrap();
    let with_b = |saved: &str| saved.lines().filter(|l| l.contains("NK-SAME-B")).count();
    let before = with_b(&saved(&host, "iptables-save"));
    assert!(nat::remove_chain(&host, "NK-SAME-A").await.unwrap());
    let after = saved(&host, "iptables-save");
    assert_eq!(with_b(&after), before, "{after}");
    assert!(!after.contains("NK-SAME-A"), "{after}");
    drop((a, b));
}
