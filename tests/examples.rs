//! The examples, run as a newcomer would: the main job (`two_patterns`) in its default private mode
//! and in `--in-host` mode inside a throw-away namespace set up to look like a host whose firewall
//! drops forwarded traffic (as Docker's does), and the two step-by-step examples.

mod common;

use std::process::Command;

use common::{example, tool};

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn two_patterns_builds_both_patterns_and_proves_connectivity() {
    let out = run(&mut Command::new(example("two_patterns")));
    assert!(out.contains("pattern 1"), "{out}");
    assert!(out.contains("pattern 2"), "{out}");
    assert_eq!(out.matches(" ok, rtt ").count(), 9, "{out}");
    assert!(out.contains("no fix needed"), "{out}");
    assert!(out.contains("done: both topologies built"), "{out}");
}

/// Runs `two_patterns --in-host` in a new network and mount namespace with a private /run/netns and
/// `FORWARD` policies set to DROP, and checks the "host" is exactly as before afterwards.
#[test]
fn two_patterns_in_host_applies_the_forward_fix_and_leaves_the_host_as_it_was() {
    let script = r#"
        set -e
        mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
        ip link set lo up
        iptables -w -P FORWARD DROP
        ip6tables -w -P FORWARD DROP
        fp() { ip -d link; ip addr; ip route; ip -6 route; iptables-save | grep -v '^#' | sed 's/\[[0-9:]*\]//'; ip6tables-save | grep -v '^#' | sed 's/\[[0-9:]*\]//'; ls -A /run/netns; }
        before=$(fp)
        "$1" --in-host
        after=$(fp)
        if [ "$before" = "$after" ]; then echo HOST-UNCHANGED; else diff <(echo "$before") <(echo "$after"); exit 1; fi
    "#;
    for needed in [
        "ip",
        "iptables",
        "ip6tables",
        "iptables-save",
        "ip6tables-save",
        "mount",
    ] {
        tool(needed);
    }
    let out = run(tool("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
            "sh",
        ])
        .arg(example("two_patterns")));
    assert!(out.contains("bridged traffic would be dropped"), "{out}");
    assert_eq!(out.matches(" ok, rtt ").count(), 9, "{out}");
    assert!(out.contains("namespace \"ns1\""), "{out}");
    assert!(out.contains("HOST-UNCHANGED"), "{out}");
}

#[test]
fn step_by_step_examples_run() {
    let out = run(&mut Command::new(example("veth_pair")));
    assert!(
        out.contains("ns1 -> 10.111.1.2") && out.contains("torn down"),
        "{out}"
    );
    let out = run(&mut Command::new(example("bridge")));
    assert!(
        out.contains("ns1 -> 10.111.1.254") && out.contains("torn down"),
        "{out}"
    );
}

/// The runtime example, blocking API only: wired by pid and by name, connectivity proved, then
/// unwired by a second process, in a private namespace; with no async runtime and at most one
/// library thread (the worker that enters the containers' namespaces).
#[test]
fn runtime_example_wires_and_unwires_with_one_library_thread() {
    let out = run(&mut Command::new(example("runtime")));
    assert!(out.contains("runtime: ok"), "{out}");
    assert_eq!(out.matches(": ok, rtt ").count(), 2, "{out}");
    assert!(out.contains("delete A (pid"), "{out}");
    assert!(out.contains("namespace removed"), "{out}");
    assert!(out.contains("after delete: 0 ports on cni0"), "{out}");
    let threads: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("threads after wiring: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no thread count in {out}"));
    assert!(threads <= 2, "{threads} threads: {out}");
}

#[test]
fn routed_reaches_across_subnets_with_ping_and_tcp() {
    let out = run(&mut Command::new(example("routed")));
    assert!(out.contains("routed network (2 LANs, 1 link)"), "{out}");
    assert!(
        out.contains("forwarding in the router: ipv4=1 ipv6=1"),
        "{out}"
    );
    assert_eq!(out.matches(" ok, rtt ").count(), 6, "{out}");
    assert!(out.contains("you said SELECT 1"), "{out}");
    assert!(out.contains("done: routed network built"), "{out}");
}

#[test]
fn lab_builds_hosts_and_a_router_uses_them_and_is_kept_on_failure() {
    let out = run(&mut Command::new(example("lab")));
    assert!(out.contains("lab ready in"), "{out}");
    assert_eq!(out.matches(" ok\n").count(), 4, "{out}");
    assert!(out.contains("stored snapshot-1"), "{out}");
    assert!(out.contains("done: lab built, used and removed"), "{out}");
    // Kept on failure, in a throw-away mount namespace with a private /run/netns.
    let script = r#"
        set -e
        mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
        if NETNS_KIT_KEEP=1 "$1" --fail 2>&1; then echo UNEXPECTED-SUCCESS; exit 1; fi
        echo "KEPT: $(ls /run/netns | wc -l)"
        "$1" --reap
        echo "LEFT: $(ls /run/netns | wc -l)"
    "#;
    let out = run(tool("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "bash",
            "-c",
            script,
            "bash",
        ])
        .arg(example("lab")));
    assert!(out.contains("its network is kept"), "{out}");
    assert!(out.contains("KEPT: 9"), "{out}");
    assert!(out.contains("reaped 9 kept namespaces"), "{out}");
    assert!(out.contains("LEFT: 0"), "{out}");
}

#[test]
fn lab_builds_the_example_topology_file() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/topology.toml");
    let out = run(Command::new(example("lab")).args(["--topology", file]));
    assert!(out.contains("built "), "{out}");
    assert!(
        out.contains("r1      10.40.1.1/24 fd40:1::1/64 10.40.2.1/24 fd40:2::1/64"),
        "{out}"
    );
    // Everyone on the two LANs reaches everyone else through r1 (5 hosts + r1: 30 pairs), and
    // db1 reaches backup over its link; backup, cabled to db1 only, reaches no LAN address.
    assert!(out.contains("reachability: 31 pairs answered"), "{out}");
}

#[test]
fn two_hosts_spans_one_network_over_vxlan() {
    let out = run(&mut Command::new(example("two_hosts")));
    assert!(out.contains("members' MTU 1450"), "{out}");
    assert_eq!(out.matches(" ok, rtt ").count(), 8, "{out}");
    assert!(
        out.contains("1 MiB by TCP from A to B: 1048576 bytes, identical"),
        "{out}"
    );
    assert!(out.contains("two_hosts: ok"), "{out}");
}

#[test]
fn two_patterns_and_lab_run_without_root() {
    for name in ["two_patterns", "lab"] {
        let out = run(tool("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(example(name)));
        assert!(
            out.contains("not root: working in UserNamespace"),
            "{name}: {out}"
        );
        assert!(out.contains("done: "), "{name}: {out}");
    }
}

/// The impaired example as the issue gives it: five hosts, 50 ms and 20 % loss on what each
/// sends, 200 pings from the first to the last — a round trip of about 100 ms and about
/// 0.8² = 64 % of the pings answered (0.52 to 0.76 is far beyond the 99 % interval).
#[test]
fn impaired_delays_and_loses_what_the_hosts_send() {
    let out = run(Command::new(example("impaired")).args([
        "--hosts",
        "5",
        "--delay",
        "50ms",
        "--loss",
        "20%",
        "--count",
        "200",
        "--capture",
    ]));
    let line = out
        .lines()
        .find(|l| l.starts_with("impaired: "))
        .unwrap_or_else(|| panic!("no result line in {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |key: &str| -> f64 {
        let at = words.iter().position(|w| *w == key).unwrap();
        words[at + 1].parse().unwrap()
    };
    let (sent, received, avg) = (number("sent"), number("received"), number("avg_rtt_ms"));
    assert_eq!(sent, 200.0, "{out}");
    assert!((0.52..=0.76).contains(&(received / sent)), "{out}");
    assert!((95.0..=130.0).contains(&avg), "{out}");
    assert!(out.contains("backend: "), "{out}");
    let capture = out
        .lines()
        .find_map(|l| l.strip_prefix("capture: "))
        .unwrap_or_else(|| panic!("no capture line in {out}"));
    let path = capture.split(" packets in ").nth(1).unwrap();
    let read = tool("tcpdump")
        .args(["-n", "-r", path, "icmp"])
        .output()
        .unwrap();
    assert!(read.status.success());
    let icmp = String::from_utf8_lossy(&read.stdout).lines().count();
    // The last host's link saw what reached it and what it answered.
    assert!(
        icmp as f64 >= received * 2.0,
        "{icmp} ICMP packets in the capture: {out}"
    );
    std::fs::remove_file(path).unwrap();
}

/// The impaired example's partition: no answer while cut off, every answer once healed.
#[test]
fn impaired_partitions_and_heals() {
    let out = run(Command::new(example("impaired")).args([
        "--hosts",
        "3",
        "--count",
        "5",
        "--partition",
    ]));
    assert!(out.contains("partitioned: 0 of 3 pings answered"), "{out}");
    assert!(out.contains("healed: 3 of 3 pings answered"), "{out}");
}

/// A runtime's day two, blocking API only: published ports reached with `curl` from another
/// namespace, the host, 127.0.0.1 and another member (masqueraded), a masquerade seen from
/// outside, an isolated network kept out, and `iptables-save` the same before and after.
#[test]
fn published_example_reaches_the_member_every_way_and_leaves_the_firewall_as_it_was() {
    tool("curl");
    let out = run(&mut Command::new(example("published")));
    for line in [
        "client -> host:8080: A: hello, 10.9.0.2",
        "host -> 127.0.0.1:8080: A: hello, 10.88.0.1",
        "B -> gateway:8080 (hairpin): A: hello, 10.88.0.1",
        "B -> [fd88::1]:8080 (hairpin): A: hello, fd88::1",
        "A -> client:9000 (masquerade): client: hello, 10.9.0.1",
        "isolated network -> A: unreachable",
        "iptables-save: the same before and after",
        "published: ok",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}
