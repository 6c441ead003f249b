//! What works without root, each row checked from outside (`ip -j`, `ip netns`, `iptables-save`,
//! a real `ping`, `cat /proc/sys/...`): this binary calls `userns::isolate()` first thing —
//! before any thread exists, which is why it has its own `main` (`harness = false` in
//! Cargo.toml) — then runs the checks. `cargo test` runs it as root (new network and mount
//! namespaces); `.ci/run` runs it again as uid 65534 with no capabilities (a user namespace
//! too):
//!
//! ```sh
//! setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
//!     target/debug/deps/rootless-HASH
//! ```

mod common;

use std::{panic::AssertUnwindSafe, process::Command, time::Duration};

use common::{ip_json, link_names, outside, ping, sysctl_outside, tool};
use netns_kit::{MemberSpec, Namespace, VethPair, bridged, lab::Lab, userns};

/// The checks, by name: the rows of the table in the crate docs (`userns`).
const CHECKS: &[(&str, fn())] = &[
    ("anonymous_namespaces", anonymous_namespaces),
    ("named_namespaces_in_a_private_run_netns", named_namespaces),
    ("veth_pairs", veth_pairs),
    (
        "bridges_addresses_routes_and_ping",
        bridges_addresses_routes_and_ping,
    ),
    ("commands_inside", commands_inside),
    ("sysctls", sysctls),
    ("the_forward_fix", the_forward_fix),
    ("a_lab", a_lab),
    ("reap", reap),
    ("isolate_refuses_a_process_with_threads", threads_refused),
];

fn main() {
    if std::env::var_os("NK_ROOTLESS_THREADS").is_some() {
        return threads_child();
    }
    if let Some(path) = std::env::var_os("NK_ROOTLESS_LEAVE") {
        return leave_a_bridge(std::path::Path::new(&path));
    }
    // The parts of libtest's command line that `cargo test` and `cargo nextest` use: `--list`
    // (answered without isolating: nothing runs), `--exact`, `--ignored`, and filters.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let takes_value = ["--format", "--test-threads", "--color", "--skip", "-Z"];
    let mut filters = Vec::new();
    let mut skip_next = false;
    for arg in &args {
        if skip_next {
            skip_next = false;
        } else if takes_value.contains(&arg.as_str()) {
            skip_next = true;
        } else if !arg.starts_with('-') {
            filters.push(arg.clone());
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    let only_ignored = args.iter().any(|a| a == "--ignored");
    let chosen: Vec<_> = CHECKS
        .iter()
        .filter(|(name, _)| {
            !only_ignored
                && (filters.is_empty()
                    || filters.iter().any(|f| {
                        if exact {
                            name == f
                        } else {
                            name.contains(f.as_str())
                        }
                    }))
        })
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &chosen {
            println!("{name}: test");
        }
        return;
    }
    let isolation = match userns::isolate() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("rootless: cannot isolate this process: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "rootless: isolated as {isolation:?} (euid {})",
        nix::unistd::geteuid()
    );
    println!("\nrunning {} tests", chosen.len());
    let mut failed = Vec::new();
    for (name, check) in &chosen {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(check));
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        chosen.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

/// A fresh namespace for one check (the isolated process's own is not used).
fn sandbox() -> Namespace {
    Namespace::new_blocking().unwrap()
}

fn anonymous_namespaces() {
    let ns = sandbox();
    assert_eq!(link_names(&ns), ["lo"]);
    let lo = ip_json(&ns, &["link", "show", "dev", "lo"]);
    assert!(
        lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{lo}"
    );
}

fn named_namespaces() {
    let ns = Namespace::named_blocking("rootless-1").unwrap();
    let list =
        String::from_utf8(tool("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    assert!(list.contains("rootless-1"), "{list}");
    drop(ns);
    let list =
        String::from_utf8(tool("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    assert!(!list.contains("rootless-1"), "{list}");
}

fn veth_pairs() {
    let (a, b) = (sandbox(), sandbox());
    let pair = VethPair::builder("va", "vb")
        .namespace(&a)
        .address("10.180.0.1/24")
        .peer_namespace(&b)
        .peer_address("10.180.0.2/24")
        .create_blocking()
        .unwrap();
    assert_eq!(link_names(&b), ["lo", "vb"]);
    assert!(ping(&a, "10.180.0.2"));
    drop(pair);
    assert_eq!(link_names(&a), ["lo"]);
}

fn bridges_addresses_routes_and_ping() {
    let host = sandbox();
    let net = bridged()
        .host(&host)
        .gateway("10.181.0.1/24")
        .gateway("fd81::1/64")
        .member(
            MemberSpec::new()
                .address("10.181.0.2/24")
                .address("fd81::2/64"),
        )
        .member(
            MemberSpec::new()
                .address("10.181.0.3/24")
                .address("fd81::3/64"),
        )
        .create_blocking()
        .unwrap();
    let m = net.members()[0].namespace();
    let routes = ip_json(m, &["-6", "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "fd81::1", "{routes}");
    assert!(ping(m, "10.181.0.3"));
    assert!(ping(m, "fd81::1"));
    // The crate's own ping (an ICMP socket inside the namespace).
    m.ping_blocking("10.181.0.3".parse().unwrap(), Duration::from_secs(2))
        .unwrap();
}

fn commands_inside() {
    let ns = sandbox();
    let out = ns.command("ip").args(["-br", "link"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("lo"),
        "{out:?}"
    );
    let seen = ns
        .run_blocking(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
        .unwrap();
    assert_eq!(seen.to_string_lossy(), format!("net:[{}]", ns.inode()));
}

fn sysctls() {
    let ns = sandbox();
    ns.set_sysctl_blocking("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(sysctl_outside(&ns, "net.ipv4.ip_forward"), "1");
    assert_eq!(
        ns.sysctl_blocking("net.ipv4.ip_forward").unwrap().trim(),
        "1"
    );
}

fn forward_rules(ns: &Namespace) -> Vec<String> {
    let out = outside(ns, "iptables-save", &[]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A FORWARD"))
        .map(str::to_owned)
        .collect()
}

fn the_forward_fix() {
    let host = sandbox();
    assert!(
        outside(&host, "iptables", &["-w", "-P", "FORWARD", "DROP"])
            .status()
            .unwrap()
            .success()
    );
    let net = bridged()
        .host(&host)
        .bridge_name("br0")
        .gateway("10.182.0.1/24")
        .accept_forward(true)
        .member(MemberSpec::new().address("10.182.0.2/24"))
        .member(MemberSpec::new().address("10.182.0.3/24"))
        .create_blocking()
        .unwrap();
    let rules = forward_rules(&host);
    assert!(
        rules
            .iter()
            .any(|r| r.contains("-i br0") && r.contains("-j ACCEPT")),
        "{rules:?}"
    );
    assert!(ping(net.members()[0].namespace(), "10.182.0.3"));
    drop(net);
    assert_eq!(forward_rules(&host), Vec::<String>::new());
}

fn a_lab() {
    let mut lab = Lab::new_blocking("rootless_lab").unwrap();
    lab.add_lan_blocking(["10.183.0.0/24"], ["a", "b"]).unwrap();
    assert!(ping(lab.host("a").unwrap(), "10.183.0.3"));
}

/// Run with `NK_ROOTLESS_LEAVE` set: makes a bridge in that namespace and exits without
/// removing it, as a crashed program would.
fn leave_a_bridge(path: &std::path::Path) {
    let ns = Namespace::open_path(path).unwrap();
    let bridge = netns_kit::Bridge::builder("left0")
        .namespace(&ns)
        .create_blocking()
        .unwrap();
    std::mem::forget(bridge);
    std::process::exit(0);
}

fn reap() {
    let host = sandbox();
    let status = Command::new(std::env::current_exe().unwrap())
        .env("NK_ROOTLESS_LEAVE", common::proc_path(&host))
        .status()
        .unwrap();
    assert!(status.success());
    let mut names = link_names(&host);
    names.sort();
    assert_eq!(names, ["left0", "lo"], "the child's bridge is there");
    let reaped = netns_kit::reap_blocking(&host).unwrap();
    assert_eq!(reaped.links.len(), 1, "{reaped:?}");
    assert_eq!(link_names(&host), ["lo"]);
}

/// Run with `NK_ROOTLESS_THREADS` set: starts a thread, then asks to isolate.
fn threads_child() {
    let _t = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(5)));
    match userns::isolate() {
        Ok(i) => println!("ISOLATED {i:?}"),
        Err(e) => println!("REFUSED {e}"),
    }
}

fn threads_refused() {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("NK_ROOTLESS_THREADS", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REFUSED") && text.contains("2 threads"),
        "{text}"
    );
}
