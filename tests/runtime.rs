//! A container runtime's flows, with the blocking API only (as a synchronous runtime or a CNI
//! plugin uses it): removing a kept named namespace, joining a bridge the runtime already owns
//! (also from several processes at once), the FORWARD fix on a live network with no trace left,
//! wiring a process's namespace by pid, then unwiring it from a fresh handle, and a bridge MAC
//! pinned once, not again by every network that joins (which flushed the host's neighbours).
//!
//! Everything is checked from outside: `ip -j`, `bridge -j`, `ip netns list`, `nsenter`,
//! `iptables-save`/`ip6tables-save`, a real `ping`.

mod common;

use std::process::{Child, Command};

use common::*;
use netns_kit::{Bridge, MemberSpec, Namespace, NsName, bridged};

/// A sandbox "host" with a bridge `cni0` made by `ip` (not by this crate), up, holding
/// 10.88.0.1/16, as a runtime would have it.
fn host_with_cni0() -> Namespace {
    let host = Namespace::new_blocking().unwrap();
    for args in [
        &["link", "add", "cni0", "type", "bridge"][..],
        &["addr", "add", "10.88.0.1/16", "dev", "cni0"],
        &["link", "set", "cni0", "up"],
    ] {
        assert!(outside(&host, "ip", args).status().unwrap().success());
    }
    host
}

/// The names of the ports of `bridge` in `ns`, as `bridge -j link` lists them.
fn ports(ns: &Namespace, bridge: &str) -> Vec<String> {
    let out = outside(ns, "bridge", &["-j", "link", "show"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["master"] == bridge)
        .map(|p| p["ifname"].as_str().unwrap().to_owned())
        .collect()
}

/// `cni0`'s addresses, as `ip -j addr` shows them.
fn cni0_addrs(host: &Namespace) -> Vec<String> {
    addrs(host, "cni0")
}

#[test]
fn remove_takes_a_name_made_elsewhere_and_refuses_what_is_not_a_namespace() {
    let name = NsName::unique("nkrm").unwrap().to_string();
    let made = IpNetns::add(&name);
    // An opened handle's delete() only closes it.
    Namespace::open(&name).unwrap().delete_blocking().unwrap();
    assert!(netns_list("").contains(&name));
    Namespace::delete_named(&name).unwrap();
    assert!(!netns_list("").contains(&name));
    assert!(!std::path::Path::new("/run/netns").join(&name).exists());
    std::mem::forget(made); // already gone

    let err = Namespace::delete_named(&name).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&name), "{err}");

    // A plain file in /run/netns is not a namespace: refused and left alone.
    let fake = NsName::unique("nkfake").unwrap().to_string();
    let path = std::path::Path::new("/run/netns").join(&fake);
    std::fs::write(&path, b"not a namespace").unwrap();
    let err = Namespace::delete_named(&fake).unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains(&fake), "{err}");
    assert!(path.exists());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_network_on_an_existing_bridge_removes_only_what_it_added() {
    let host = host_with_cni0();
    let before = ip_json(&host, &["link", "show", "cni0"]);
    let cni0 = Bridge::open_blocking(&host, "cni0").unwrap();
    let net = bridged()
        .existing_bridge(&cni0)
        .gateway("10.88.0.1/16") // already there: stays
        .gateway("fd88::1/64") // not there: added, then removed
        .member(
            MemberSpec::new()
                .address("10.88.0.5/16")
                .address("fd88::5/64"),
        )
        .member(
            MemberSpec::new()
                .address("10.88.0.6/16")
                .address("fd88::6/64"),
        )
        .create_blocking()
        .unwrap();
    assert_eq!(ports(&host, "cni0").len(), 2);
    assert_eq!(cni0_addrs(&host), ["10.88.0.1/16", "fd88::1/64"]);
    let first = net.members()[0].namespace();
    assert!(ping(first, "10.88.0.6"));
    assert!(ping(first, "10.88.0.1"));
    assert!(ping(first, "fd88::6"));
    net.delete_blocking().unwrap();

    assert!(ports(&host, "cni0").is_empty());
    assert_eq!(cni0_addrs(&host), ["10.88.0.1/16"]);
    let after = ip_json(&host, &["link", "show", "cni0"]);
    // Its MAC too (pinned when the network joined it); not its carrier, which a bridge loses
    // with its last port.
    for key in ["ifindex", "address", "mtu", "group", "master", "ifalias"] {
        assert_eq!(after[0][key], before[0][key], "{key}");
    }
    assert!(has_flag(&after[0], "UP"));
    // The opened bridge's guard never deletes it.
    drop(cni0);
    assert_eq!(link_names(&host), ["lo", "cni0"]);
}

#[test]
fn an_existing_bridge_is_checked_before_anything_is_made() {
    let host = host_with_cni0();
    let cni0 = Bridge::open_blocking(&host, "cni0").unwrap();
    let err = bridged()
        .existing_bridge(&cni0)
        .bridge_name("br9")
        .gateway("10.88.0.1/16")
        .create_blocking()
        .unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("cni0"),
        "{err}"
    );
    let other = Namespace::new_blocking().unwrap();
    let err = bridged()
        .host(&other)
        .existing_bridge(&cni0)
        .gateway("10.88.0.1/16")
        .create_blocking()
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    // Deleted behind our back: named as gone.
    assert!(
        outside(&host, "ip", &["link", "del", "cni0"])
            .status()
            .unwrap()
            .success()
    );
    let err = bridged()
        .existing_bridge(&cni0)
        .gateway("10.88.0.1/16")
        .member(MemberSpec::new().address("10.88.0.5/16"))
        .create_blocking()
        .unwrap_err();
    assert!(
        err.is_not_found() && err.to_string().contains("cni0"),
        "{err}"
    );
    assert_eq!(link_names(&host), ["lo"]);
    let err = Bridge::open_blocking(&host, "cni0").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = Bridge::open_blocking(&host, "lo").unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}

/// The child's part of [`several_processes_join_one_bridge_at_once`]: joins `MEMBERS` named
/// namespaces to `cni0` in the host given by path, keeps them, prints their names.
const MEMBERS: usize = 4;

#[test]
fn several_processes_join_one_bridge_at_once() {
    if let Some(role) = role() {
        let (path, index) = role.split_once(';').unwrap();
        let index: usize = index.parse().unwrap();
        let host = Namespace::open_path(path).unwrap();
        let cni0 = Bridge::open_blocking(&host, "cni0").unwrap();
        let mut builder = bridged().existing_bridge(&cni0).gateway("10.88.0.1/16");
        for m in 0..MEMBERS {
            let ns = Namespace::named_blocking(NsName::unique("nkrt").unwrap().as_str())
                .unwrap()
                .keep();
            println!("NS {}", ns.name().unwrap());
            builder = builder.member(MemberSpec::in_namespace(&ns).address(format!(
                "10.88.{}.{}/16",
                index + 1,
                m + 1
            )));
        }
        builder.create_blocking().unwrap().keep();
        return;
    }
    let host = host_with_cni0();
    let path = proc_path(&host);
    let children: Vec<Child> = (0..4)
        .map(|i| {
            child(
                "several_processes_join_one_bridge_at_once",
                &format!("{path};{i}"),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut names = Vec::new();
    let mut failures = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        names.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("NS "))
                .map(str::to_owned),
        );
        if !out.status.success() {
            failures.push(text);
        }
    }
    // Removed as a runtime's delete would, even if an assertion below fails.
    struct Remove(Vec<String>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for name in &self.0 {
                let _ = Namespace::delete_named(name);
            }
        }
    }
    let kept = Remove(names);
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(kept.0.len(), 4 * MEMBERS);
    assert_eq!(ports(&host, "cni0").len(), 4 * MEMBERS);
    // Across processes' networks: a member of the first reaches one of the last.
    let first = Namespace::open(&kept.0[0]).unwrap();
    assert!(ping(&first, "10.88.4.4"));
    assert!(ping(&first, "10.88.0.1"));
    drop(first);
    for name in &kept.0 {
        Namespace::delete_named(name).unwrap();
    }
    eventually("the removed members' ports are gone", || {
        ports(&host, "cni0").is_empty()
    });
    assert_eq!(cni0_addrs(&host), ["10.88.0.1/16"]);
    assert_eq!(link_names(&host), ["lo", "cni0"]);
}

#[test]
fn the_forward_fix_on_a_live_network_leaves_no_trace() {
    let host = Namespace::new_blocking().unwrap();
    let fresh = (
        saved(&host, "iptables-save"),
        saved(&host, "ip6tables-save"),
    );
    assert_eq!(fresh, (String::new(), String::new()));
    // Asked for where no firewall exists: nothing to insert, nothing created.
    let net = bridged()
        .host(&host)
        .gateway("10.89.0.1/24")
        .accept_forward(true)
        .member(MemberSpec::new().address("10.89.0.2/24"))
        .create_blocking()
        .unwrap();
    assert!(net.accept_forward_enabled());
    net.delete_blocking().unwrap();
    assert_eq!(
        (
            saved(&host, "iptables-save"),
            saved(&host, "ip6tables-save")
        ),
        fresh
    );

    // A firewall that drops forwarded IPv4 appears after the network was made.
    let mut net = bridged()
        .host(&host)
        .bridge_name("brlive")
        .gateway("10.89.0.1/24")
        .member(MemberSpec::new().address("10.89.0.2/24"))
        .member(MemberSpec::new().address("10.89.0.3/24"))
        .create_blocking()
        .unwrap();
    let ping_from_first =
        |net: &netns_kit::BridgedNetwork, addr: &str| ping(net.members()[0].namespace(), addr);
    assert!(ping_from_first(&net, "10.89.0.3"));
    assert!(
        outside(&host, "iptables", &["-w", "-P", "FORWARD", "DROP"])
            .status()
            .unwrap()
            .success()
    );
    let v4_before = saved(&host, "iptables-save");
    assert!(
        !ping_from_first(&net, "10.89.0.3"),
        "the policy should drop bridged traffic"
    );
    net.enable_accept_forward_blocking().unwrap();
    assert!(ping_from_first(&net, "10.89.0.3"));
    let rules = forward_rules(&host, "iptables");
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules.iter().all(|r| r.contains("brlive")), "{rules:?}");
    assert_eq!(
        saved(&host, "ip6tables-save"),
        "",
        "no IPv6 table may appear"
    );

    // Then IPv6 gets a firewall too: asking again adds only what is missing.
    assert!(
        outside(&host, "ip6tables", &["-w", "-P", "FORWARD", "DROP"])
            .status()
            .unwrap()
            .success()
    );
    let v6_before = saved(&host, "ip6tables-save");
    net.enable_accept_forward_blocking().unwrap();
    assert_eq!(forward_rules(&host, "iptables").len(), 2);
    assert_eq!(forward_rules(&host, "ip6tables").len(), 2);
    net.delete_blocking().unwrap();
    assert_eq!(saved(&host, "iptables-save"), v4_before);
    assert_eq!(saved(&host, "ip6tables-save"), v6_before);
}

/// A process in a network namespace of its own, as a container's first process is; killed by
/// pid when dropped.
struct Container(Child);

impl Container {
    fn start() -> Container {
        let child = tool("unshare")
            .args(["--net", "sleep", "60"])
            .spawn()
            .unwrap();
        let pid = child.id();
        // Wait until the child is in its own namespace (unshare has exec'd sleep).
        eventually("the container process has its namespace", || {
            std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
                != std::fs::read_link("/proc/self/ns/net").ok()
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
        });
        Container(child)
    }

    fn nsenter(&self, args: &[&str]) -> Command {
        let mut c = tool("nsenter");
        c.args(["-t", &self.0.id().to_string(), "-n", "--"])
            .args(args);
        c
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_process_is_wired_by_pid_and_unwired_from_a_fresh_handle() {
    let host = host_with_cni0();
    let container = Container::start();
    let pid = container.0.id();
    {
        // "create": open the container's namespace by pid, wire it, keep it, exit.
        let ns = Namespace::from_pid(pid).unwrap();
        let cni0 = Bridge::open_blocking(&host, "cni0").unwrap();
        bridged()
            .existing_bridge(&cni0)
            .gateway("10.88.0.1/16")
            .member(MemberSpec::in_namespace(&ns).address("10.88.0.7/16"))
            .create_blocking()
            .unwrap()
            .keep();
    }
    let out = container
        .nsenter(&["ip", "-j", "addr", "show", "eth0"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.88.0.7"),
        "{v}"
    );
    let mut ping = container.nsenter(&["ping", "-c", "1", "-W", "2", "-q", "10.88.0.1"]);
    assert!(ping.status().unwrap().success());
    let route = container
        .nsenter(&["ip", "-j", "route", "show", "default"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&route.stdout).contains("10.88.0.1"));
    assert_eq!(ports(&host, "cni0").len(), 1);

    // "delete", as a second process would: a fresh handle by pid, the interface by name.
    let ns = Namespace::from_pid(pid).unwrap();
    ns.link_by_name_blocking("eth0")
        .unwrap()
        .delete_blocking()
        .unwrap();
    assert!(ports(&host, "cni0").is_empty());
    assert_eq!(link_names(&host), ["lo", "cni0"]);
    assert_eq!(cni0_addrs(&host), ["10.88.0.1/16"]);
}

/// Two networks on one existing bridge (a runtime's `cni0` without a gateway yet): when the
/// first goes, the bridge keeps its MAC and the gateway address the first added, and the
/// second's members still reach the gateway at once; the last one to go removes the shared
/// gateway. (Before, the bridge's MAC followed its lowest port and the gateway went with the
/// network that added it.)
#[test]
fn two_networks_share_an_existing_bridge_and_its_gateway_until_the_last_goes() {
    let host = Namespace::new_blocking().unwrap();
    for args in [
        &["link", "add", "cni0", "type", "bridge"][..],
        &["link", "set", "cni0", "up"],
    ] {
        assert!(outside(&host, "ip", args).status().unwrap().success());
    }
    let cni0 = Bridge::open_blocking(&host, "cni0").unwrap();
    let network = |member: &str| {
        bridged()
            .existing_bridge(&cni0)
            .gateway("10.89.0.1/24")
            .member(MemberSpec::new().address(member))
            .create_blocking()
            .unwrap()
    };
    let first = network("10.89.0.2/24");
    // The first network's port gets the lowest MAC there is, which a bridge whose MAC was never
    // set would take (and lose when the port goes).
    first.members()[0]
        .peer()
        .set_mac_blocking("02:00:00:00:00:01".parse().unwrap())
        .unwrap();
    let second = network("10.89.0.3/24");
    let mac = |host: &Namespace| ip_json(host, &["link", "show", "cni0"])[0]["address"].clone();
    let pinned = mac(&host);
    let gateway_addrs = |host: &Namespace| -> Vec<String> {
        addrs(host, "cni0")
            .into_iter()
            .filter(|a| !a.starts_with("fe80"))
            .collect()
    };
    assert_eq!(gateway_addrs(&host), ["10.89.0.1/24"]);
    let member = second.members()[0].namespace();
    assert!(ping(member, "10.89.0.1"));
    first.delete_blocking().unwrap();
    assert_eq!(
        mac(&host),
        pinned,
        "the bridge's MAC changed when a network left"
    );
    assert_eq!(
        gateway_addrs(&host),
        ["10.89.0.1/24"],
        "the shared gateway went"
    );
    assert!(
        ping(member, "10.89.0.1"),
        "the gateway is unreachable after the first left"
    );
    second.delete_blocking().unwrap();
    assert!(
        gateway_addrs(&host).is_empty(),
        "the last network left the gateway"
    );
    assert!(ports(&host, "cni0").is_empty());
}

/// A runtime's bridge whose gateway address is the runtime's own (no shared gateway of this
/// crate on it): the first network pins the bridge's MAC, and a second one joining later does
/// not set it again, which would make the kernel flush the host's neighbour entries of every
/// container on the bridge. The kernel's `addr_assign_type` is read from sysfs, so this runs
/// as a child in a network and mount namespace of its own with sysfs mounted for it.
#[test]
fn a_pinned_bridge_mac_is_not_set_again_by_the_next_network() {
    const TEST: &str = "a_pinned_bridge_mac_is_not_set_again_by_the_next_network";
    if role().as_deref() == Some("pinned-mac") {
        use nix::mount::{MsFlags, mount};
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount sysfs for this namespace");
        let ip = |args: &[&str]| {
            assert!(
                tool("ip").args(args).status().unwrap().success(),
                "ip {args:?}"
            );
        };
        ip(&["link", "add", "cni0", "type", "bridge"]);
        ip(&["addr", "add", "10.88.0.1/16", "dev", "cni0"]);
        ip(&["link", "set", "cni0", "up"]);
        let host = Namespace::current().unwrap();
        let cni0 = Bridge::open_blocking(&host, "cni0").unwrap();
        let network = |member: &str| {
            bridged()
                .existing_bridge(&cni0)
                .gateway("10.88.0.1/16")
                .member(MemberSpec::new().address(member))
                .create_blocking()
                .unwrap()
        };
        let assign_type = || std::fs::read_to_string("/sys/class/net/cni0/addr_assign_type");
        let first = network("10.88.0.2/16");
        assert_eq!(
            assign_type().unwrap().trim(),
            "3",
            "the first network pinned the MAC"
        );
        let mac = || ip_json(&host, &["link", "show", "cni0"])[0]["address"].clone();
        let pinned = mac();
        assert!(
            tool("ping")
                .args(["-c1", "-W2", "10.88.0.2"])
                .status()
                .unwrap()
                .success()
        );
        let neighbours = || {
            ip_json(&host, &["neigh", "show", "dev", "cni0"])
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["dst"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        assert_eq!(neighbours(), ["10.88.0.2"]);
        let second = network("10.88.0.3/16");
        assert_eq!(
            neighbours(),
            ["10.88.0.2"],
            "the second network flushed the host's neighbour entries on cni0"
        );
        assert_eq!(mac(), pinned);
        assert!(ping(second.members()[0].namespace(), "10.88.0.1"));
        drop((first, second));
        return;
    }
    let status = tool("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, "pinned-mac")
        .status()
        .unwrap();
    assert!(status.success(), "the child failed: {status}");
}
