//! Ownership and the reaper, probed adversarially: owners in other PID namespaces, a
//! `/run/netns` holding traps, hand-made links in this crate's link groups, a killed process
//! holding a veth pair, running out of file descriptors, the netlink thread started inside a
//! namespace, an `iptables` that leaves a child holding its pipes, two reapers at once, and bad
//! input that used to fail late or with a bare errno. Each is checked from outside (`ip -j`,
//! `iptables -S`, `/proc`).

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use netns_kit::{Bridge, IfName, MemberSpec, Namespace, NsName, VethPair, bridged, reap_blocking};

/// A child process of this test binary, spoken to line by line; killed by PID when dropped.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Kid {
    fn spawn(mut command: Command) -> Kid {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Kid {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    /// The rest of the first line the child prints that starts with `prefix`.
    fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the child ended before printing {prefix:?}");
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// Tells the child to go on (it waits for a line on stdin).
    fn go(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    fn wait_success(&mut self) {
        self.stdin.take();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the child failed: {status}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the parent's "go" line.
fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// `child(test, role)` run as pid 1 of a new PID namespace (`/proc` stays the machine's).
fn child_in_new_pid_ns(test: &str, role: &str) -> Command {
    let mut c = tool("unshare");
    c.args(["--pid", "--fork", "--kill-child", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role);
    c
}

fn sandbox_from_env() -> Namespace {
    Namespace::open_path(std::env::var("NK_SANDBOX").unwrap()).unwrap()
}

/// Starts child `c` with `host` as its sandbox (what [`sandbox_from_env`] opens there).
fn spawn_in(host: &Namespace, mut c: Command) -> Kid {
    c.env("NK_SANDBOX", proc_path(host));
    Kid::spawn(c)
}

/// Links of `ns` as `ip -j link` shows them: (name, group, alias).
fn links_outside(ns: &Namespace) -> Vec<(String, i64, Option<String>)> {
    ip_json(ns, &["link"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_owned(),
                l["group"]
                    .as_i64()
                    .or_else(|| l["group"].as_str().and_then(|g| g.parse().ok()))
                    .unwrap_or(0),
                l["ifalias"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// More than half of the 512 groups a process once had per pid: two such ranges always overlapped.
const NETWORKS: usize = 260;

#[test]
fn processes_in_different_pid_namespaces_never_share_names_or_link_groups() {
    const TEST: &str = "processes_in_different_pid_namespaces_never_share_names_or_link_groups";
    if let Some(role) = role() {
        assert_eq!(std::process::id(), 1, "pid 1 of its own PID namespace");
        let host = sandbox_from_env();
        let nets: Vec<_> = (0..NETWORKS)
            .map(|i| {
                bridged()
                    .host(&host)
                    .gateway(format!(
                        "10.{}.{}.{}/30",
                        120 + role.len(),
                        i / 64,
                        (i % 64) * 4 + 1
                    ))
                    .create_blocking()
                    .unwrap()
            })
            .collect();
        for net in &nets {
            println!("NET {} {}", net.bridge().name(), net.link_group());
        }
        println!("READY");
        wait_for_go();
        if role == "a" {
            drop(nets); // deleted one by one
        } else {
            std::process::exit(0); // left to the sandbox's end
        }
        return;
    }
    let host = Namespace::new_blocking().unwrap();
    let spawn = |role: &str| spawn_in(&host, child_in_new_pid_ns(TEST, role));
    let (mut a, mut b) = (spawn("a"), spawn("bb"));
    let read = |kid: &mut Kid| {
        let mut nets = Vec::new();
        loop {
            let line = kid.expect("");
            if line == "READY" {
                return nets;
            }
            if let Some(rest) = line.strip_prefix("NET ") {
                let (name, group) = rest.split_once(' ').unwrap();
                nets.push((name.to_owned(), group.parse::<u32>().unwrap()));
            }
        }
    };
    let (nets_a, nets_b) = (read(&mut a), read(&mut b));
    assert_eq!((nets_a.len(), nets_b.len()), (NETWORKS, NETWORKS));
    let groups_a: std::collections::HashSet<u32> = nets_a.iter().map(|n| n.1).collect();
    let shared = nets_b.iter().filter(|n| groups_a.contains(&n.1)).count();
    assert_eq!(
        shared, 0,
        "link groups shared between the two pid-1 processes"
    );
    // One tears its networks down; every bridge of the other stays.
    a.go();
    a.wait_success();
    let names = link_names(&host);
    let missing: Vec<_> = nets_b.iter().filter(|n| !names.contains(&n.0)).collect();
    assert!(
        missing.is_empty(),
        "{} of b's bridges vanished",
        missing.len()
    );
    assert!(nets_a.iter().all(|n| !names.contains(&n.0)));
    b.go();
    b.wait_success();
}

#[test]
fn a_reaper_in_another_pid_namespace_keeps_a_live_owners_objects() {
    let _reaper = common::reaper_lock();
    const TEST: &str = "a_reaper_in_another_pid_namespace_keeps_a_live_owners_objects";
    match role().as_deref() {
        Some("owner") => {
            let host = sandbox_from_env();
            let ns =
                Namespace::named_blocking(NsName::unique("nkpidns").unwrap().as_str()).unwrap();
            let br = Bridge::builder("ownbr")
                .namespace(&host)
                .accept_forward(true)
                .create_blocking()
                .unwrap();
            println!("NS {}", ns.name().unwrap());
            println!("READY");
            wait_for_go();
            drop((br, ns));
            return;
        }
        Some("reaper") => {
            let host = sandbox_from_env();
            let reaped = reap_blocking(&host).unwrap();
            println!(
                "REAPED {} {} {} {}",
                reaped.namespaces.len(),
                reaped.links.len(),
                reaped.firewall_rules.len(),
                reaped.errors.len()
            );
            return;
        }
        _ => {}
    }
    let host = Namespace::new_blocking().unwrap();
    assert!(
        outside(&host, "iptables", &["-w", "-P", "FORWARD", "DROP"])
            .status()
            .unwrap()
            .success()
    );
    let mut owner = spawn_in(&host, child_in_new_pid_ns(TEST, "owner"));
    let name = owner.expect("NS ");
    owner.expect("READY");
    let cleanup = IpNetnsCleanup(name.clone());
    let before = (
        netns_list("nkpidns"),
        link_names(&host),
        forward_rules(&host, "iptables"),
    );
    assert_eq!(before.2.len(), 2);
    // A reaper that is pid 1 of yet another PID namespace cannot judge the owner: keeps all.
    let mut reaper = spawn_in(&host, child_in_new_pid_ns(TEST, "reaper"));
    assert_eq!(reaper.expect("REAPED "), "0 0 0 0");
    reaper.wait_success();
    // The initial PID namespace sees the owner alive: keeps all too.
    let reaped = reap_blocking(&host).unwrap();
    assert!(reaped.is_empty(), "{reaped:?}");
    assert_eq!(
        (
            netns_list("nkpidns"),
            link_names(&host),
            forward_rules(&host, "iptables")
        ),
        before
    );
    // Once the owner is killed, the initial namespace's reaper removes everything.
    owner.kill();
    // (Its pid 1 dies of the kill a moment after `unshare` does.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reaped = reap_blocking(&host).unwrap();
    while reaped.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        reaped = reap_blocking(&host).unwrap();
    }
    assert!(reaped.errors.is_empty(), "{reaped:?}");
    assert_eq!(reaped.namespaces, std::slice::from_ref(&name));
    assert!(!netns_list("").contains(&name));
    assert_eq!(link_names(&host), ["lo"]);
    assert!(forward_rules(&host, "iptables").is_empty());
    drop(cleanup);
}

/// Removes a named namespace with `ip netns del` if a test fails before it is gone.
struct IpNetnsCleanup(String);

impl Drop for IpNetnsCleanup {
    fn drop(&mut self) {
        if netns_list("").contains(&self.0) {
            let _ = tool("ip").args(["netns", "del", &self.0]).status();
        }
    }
}

/// Files put in /run/netns by a test, removed when dropped.
struct Planted(Vec<std::path::PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn the_reaper_never_reads_a_fifo_a_device_or_a_huge_file_in_run_netns() {
    let _reaper = common::reaper_lock();
    const TEST: &str = "the_reaper_never_reads_a_fifo_a_device_or_a_huge_file_in_run_netns";
    if role().is_some() {
        let host = sandbox_from_env();
        let reaped = reap_blocking(&host).unwrap();
        let hwm = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
            .unwrap();
        println!(
            "REAPED {} errors {}",
            reaped.namespaces.len(),
            reaped.errors.len()
        );
        println!("HWM {hwm}");
        return;
    }
    std::fs::create_dir_all("/run/netns").unwrap();
    let dir = std::path::Path::new("/run/netns");
    let fifo = dir.join(NsName::unique("nkfifo").unwrap().as_str());
    let zero = dir.join(NsName::unique("nkzero").unwrap().as_str());
    let huge = dir.join(NsName::unique("nkhuge").unwrap().as_str());
    let planted = Planted(vec![fifo.clone(), zero.clone(), huge.clone()]);
    assert!(tool("mkfifo").arg(&fifo).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(3 << 30).unwrap(); // sparse: costs no disk
    std::fs::set_permissions(&huge, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host = Namespace::new_blocking().unwrap();
    let start = Instant::now();
    let mut kid = spawn_in(&host, child(TEST, "reaper"));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let reaped = kid.expect("REAPED ");
        let hwm = kid.expect("HWM ");
        kid.wait_success();
        let _ = tx.send((reaped, hwm));
    });
    let (reaped, hwm) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the reaper hung on a file in /run/netns");
    reader.join().unwrap();
    assert_eq!(reaped, "0 errors 0");
    let kib: u64 = hwm.trim_end_matches(" kB").trim().parse().unwrap();
    assert!(kib < 100_000, "the reaper used {kib} KiB");
    assert!(start.elapsed() < Duration::from_secs(30));
    for p in &planted.0 {
        assert!(
            std::fs::symlink_metadata(p).is_ok(),
            "{} was removed",
            p.display()
        );
    }
}

#[test]
fn hand_made_links_in_tagged_groups_are_never_reaped() {
    let _reaper = common::reaper_lock();
    let host = Namespace::new_blocking().unwrap();
    for args in [
        &["link", "add", "hand1", "type", "bridge"][..],
        &["link", "add", "hand2", "type", "bridge"],
        &["link", "set", "hand2", "alias", "my bridge"],
        &["link", "add", "hand3", "type", "veth", "peer", "hand4"],
    ] {
        assert!(
            outside(&host, "ip", args).status().unwrap().success(),
            "{args:?}"
        );
    }
    // `ip` refuses groups of 2^31 and above; plain rtnetlink, from inside, does not.
    host.run_blocking(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (connection, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(connection);
            for (name, group) in [
                ("hand1", 0x8000_0001u32),
                ("hand2", 0x8000_4000),
                ("hand3", u32::MAX),
                ("hand4", 0x8765_4321),
            ] {
                let msg = rtnetlink::LinkUnspec::new_with_name(name)
                    .link_group(group)
                    .build();
                handle.link().set(msg).execute().await.unwrap();
            }
        });
    })
    .unwrap();
    let before = links_outside(&host);
    let reaped = reap_blocking(&host).unwrap();
    assert!(reaped.is_empty(), "{reaped:?}");
    assert_eq!(links_outside(&host), before);
}

#[test]
fn both_ends_of_a_veth_pair_carry_the_mark_and_a_killed_owners_pair_is_reaped() {
    let _reaper = common::reaper_lock();
    const TEST: &str = "both_ends_of_a_veth_pair_carry_the_mark_and_a_killed_owners_pair_is_reaped";
    if role().is_some() {
        let host = sandbox_from_env();
        let _pairs: Vec<_> = (0..4)
            .map(|i| {
                VethPair::builder(format!("kv{i}a"), format!("kv{i}b"))
                    .namespace(&host)
                    .peer_namespace(&host)
                    .create_blocking()
                    .unwrap()
            })
            .collect();
        println!("READY");
        wait_for_go();
        return;
    }
    let host = Namespace::new_blocking().unwrap();
    let mut kid = spawn_in(&host, child(TEST, "owner"));
    kid.expect("READY");
    let links = links_outside(&host);
    assert_eq!(links.len(), 9);
    for (name, group, alias) in links.iter().filter(|l| l.0 != "lo") {
        assert!(
            alias
                .as_deref()
                .is_some_and(|a| a.starts_with("netns-kit:p")),
            "{name} has no mark: {alias:?}"
        );
        assert_eq!(*group, 0, "{name}");
        let qlen = ip_json(&host, &["link", "show", name])[0]["txqlen"].as_u64();
        assert_eq!(qlen, Some(1000), "{name}: the creation queue length stayed");
    }
    kid.kill();
    // Two reapers at once: between them everything goes, and neither reports an error.
    let (r1, r2) = std::thread::scope(|s| {
        let t1 = s.spawn(|| reap_blocking(&host).unwrap());
        let t2 = s.spawn(|| reap_blocking(&host).unwrap());
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert!(
        r1.errors.is_empty() && r2.errors.is_empty(),
        "{r1:?} {r2:?}"
    );
    assert!(r1.links.len() + r2.links.len() >= 4, "{r1:?} {r2:?}");
    assert_eq!(link_names(&host), ["lo"]);
}

#[test]
fn rules_are_removed_even_when_the_process_ran_out_of_file_descriptors() {
    const TEST: &str = "rules_are_removed_even_when_the_process_ran_out_of_file_descriptors";
    if role().is_some() {
        let host = sandbox_from_env();
        let br = Bridge::builder("fdbr")
            .namespace(&host)
            .accept_forward(true)
            .create_blocking()
            .unwrap();
        println!("RULES");
        // Use up every descriptor.
        let mut hog = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hog.push(f);
        }
        assert!(std::fs::File::open("/dev/null").is_err());
        drop(br);
        drop(hog);
        println!("DROPPED");
        return;
    }
    let host = Namespace::new_blocking().unwrap();
    assert!(
        outside(&host, "iptables", &["-w", "-P", "FORWARD", "DROP"])
            .status()
            .unwrap()
            .success()
    );
    let mut kid = spawn_in(&host, child(TEST, "owner"));
    kid.expect("RULES");
    kid.expect("DROPPED");
    kid.wait_success();
    assert!(forward_rules(&host, "iptables").is_empty());
    assert_eq!(link_names(&host), ["lo"]);
}

#[test]
fn the_netlink_thread_never_stays_in_a_callers_namespace() {
    const TEST: &str = "the_netlink_thread_never_stays_in_a_callers_namespace";
    if role().is_some() {
        // A fresh process: its first async netlink request is made inside `inner`.
        let host = sandbox_from_env();
        let inner = Namespace::new_blocking().unwrap();
        VethPair::builder("wit0", "wit1")
            .namespace(&host)
            .peer_namespace(&inner)
            .create_blocking()
            .unwrap()
            .keep();
        inner
            .run_blocking(|| {
                let here = Namespace::current().unwrap();
                futures::executor::block_on(here.links()).unwrap();
            })
            .unwrap();
        drop(inner);
        // Freed with its last handle, the witness pair with it.
        eventually("the namespace (and the witness) is freed", || {
            !link_names(&host).contains(&"wit0".to_owned())
        });
        println!("FREED");
        return;
    }
    let host = Namespace::new_blocking().unwrap();
    let mut kid = spawn_in(&host, child(TEST, "owner"));
    kid.expect("FREED");
    kid.wait_success();
}

#[test]
fn teardown_is_bounded_when_iptables_leaves_a_child_holding_its_pipes() {
    const TEST: &str = "teardown_is_bounded_when_iptables_leaves_a_child_holding_its_pipes";
    if role().is_some() {
        let host = sandbox_from_env();
        let br = Bridge::builder("slowbr")
            .namespace(&host)
            .accept_forward(true)
            .create_blocking()
            .unwrap();
        let start = Instant::now();
        drop(br);
        println!("DROP {}", start.elapsed().as_millis());
        return;
    }
    // An `iptables` (and `-save`) that succeed at once but leave a child holding stdout.
    let bin = std::env::temp_dir().join(format!("nk-fake-iptables-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    for (name, script) in [
        ("iptables", "#!/bin/sh\nsleep 300 &\nexit 0\n"),
        ("ip6tables", "#!/bin/sh\nexit 0\n"),
        (
            "iptables-save",
            "#!/bin/sh\necho '*filter'\nsleep 300 &\nexit 0\n",
        ),
        ("ip6tables-save", "#!/bin/sh\nexit 0\n"),
    ] {
        let path = bin.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let host = Namespace::new_blocking().unwrap();
    let mut c = child(TEST, "owner");
    c.env(
        "PATH",
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );
    let start = Instant::now();
    let mut kid = spawn_in(&host, c);
    let millis: u64 = kid.expect("DROP ").parse().unwrap();
    kid.wait_success();
    std::fs::remove_dir_all(&bin).unwrap();
    assert!(millis < 3000, "Drop took {millis} ms");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn weak_spots_get_clear_errors_before_anything_is_made() {
    let host = Namespace::new_blocking().unwrap();
    let net = |gw: &str| {
        bridged()
            .host(&host)
            .gateway(gw)
            .create_blocking()
            .map(drop)
            .unwrap_err()
    };
    for (gw, says) in [
        ("fe80::1/64", "link-local"),
        ("127.0.0.1/8", "loopback"),
        ("::1/128", "loopback"),
    ] {
        let e = net(gw);
        assert!(
            e.is_invalid_input() && e.to_string().contains(says),
            "{gw}: {e}"
        );
    }
    // More members than a bridge takes: refused at once, nothing made.
    let start = Instant::now();
    let e = bridged()
        .host(&host)
        .gateway("10.99.0.1/16")
        .members((0..1024).map(|i| {
            MemberSpec::new().address(format!("10.99.{}.{}/16", i / 200 + 1, i % 200 + 1))
        }))
        .create_blocking()
        .map(drop)
        .unwrap_err();
    assert!(
        e.is_invalid_input() && e.to_string().contains("1023"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    // Names that would garble output, or that the kernel reads as containing spaces.
    for name in ["a\nb", "esc\u{1b}[1m", "vethà", "del\u{7f}"] {
        let e = IfName::new(name).unwrap_err();
        assert!(e.is_invalid_input(), "{name:?}: {e}");
    }
    for name in ["a\nb", "esc\u{1b}[1m"] {
        let e = NsName::new(name).unwrap_err();
        assert!(e.is_invalid_input(), "{name:?}: {e}");
    }
    assert_eq!(link_names(&host), ["lo"]);
    // A member added after the bridge was deleted behind the network's back.
    let mut net = bridged()
        .host(&host)
        .bridge_name("gonebr")
        .gateway("10.98.0.1/24")
        .create_blocking()
        .unwrap();
    assert!(
        outside(&host, "ip", &["link", "del", "gonebr"])
            .status()
            .unwrap()
            .success()
    );
    let e = net
        .add_member_blocking(MemberSpec::new().address("10.98.0.2/24"))
        .map(drop)
        .unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains("gonebr"), "{e}");
    drop(net);
    assert_eq!(link_names(&host), ["lo"]);
}

#[test]
fn run_netns_is_mounted_once_when_two_processes_use_it_first_at_once() {
    const TEST: &str = "run_netns_is_mounted_once_when_two_processes_use_it_first_at_once";
    if role().is_some() {
        let ns = Namespace::named_blocking(NsName::unique("nkmnt").unwrap().as_str()).unwrap();
        drop(ns);
        return;
    }
    // In a private mount namespace whose /run is a fresh tmpfs with no netns directory yet;
    // eight processes name a namespace at the same moment. Mounts hidden under the new /run
    // (the machine's /run/netns, this binary's private one) are still listed in mountinfo:
    // only those on top of the new /run count.
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs /run
for i in 1 2 3 4 5 6 7 8; do "$0" {TEST} --exact --nocapture --test-threads=1 -q & done
wait
cat /proc/self/mountinfo"#
    );
    let out = tool("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(exe)
        .env(ROLE_ENV, "namer")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        mounts_on_top_of_last("/run", "/run/netns", &text),
        1,
        "/run/netns mounted more than once: {text}"
    );
}

/// In a mountinfo table: how many mounts at `path` sit on the last mount at `parent`, directly
/// or on one another.
fn mounts_on_top_of_last(parent: &str, path: &str, mountinfo: &str) -> usize {
    // Fields: mount id, parent id, major:minor, root, mount point, ...
    let rows: Vec<Vec<&str>> = mountinfo
        .lines()
        .map(|l| l.split(' ').collect())
        .filter(|f: &Vec<&str>| f.len() > 5)
        .collect();
    let Some(base) = rows.iter().rev().find(|f| f[4] == parent) else {
        panic!("no mount at {parent}: {mountinfo}");
    };
    let mut on_top = vec![base[0]];
    let mut count = 0;
    while let Some(next) = rows
        .iter()
        .find(|f| f[4] == path && on_top.contains(&f[1]) && !on_top.contains(&f[0]))
    {
        on_top.push(next[0]);
        count += 1;
    }
    count
}

#[tokio::test]
async fn ten_thousand_concurrent_requests_on_one_namespace_all_succeed() {
    let ns = Namespace::new().await.unwrap();
    let start = Instant::now();
    // Dumps and direct lookups mixed: the kernel runs one dump at a time per socket (EBUSY).
    let dumps = futures::future::join_all((0..5_000).map(|_| ns.links()));
    let lookups = futures::future::join_all((0..5_000).map(|_| ns.link_by_name("lo")));
    // A lost answer would leave its request waiting forever: fail instead of hanging the run.
    let (dumps, lookups) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(dumps, lookups)
    })
    .await
    .expect("some of the 10,000 requests were never answered within 60 s");
    let failed: Vec<String> = dumps
        .iter()
        .filter_map(|r| r.as_ref().err())
        .chain(lookups.iter().filter_map(|r| r.as_ref().err()))
        .map(ToString::to_string)
        .take(3)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(dumps.iter().all(|d| d.as_ref().unwrap().len() == 1));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_killed_owners_router_message_filter_is_reaped() {
    let _reaper = common::reaper_lock();
    const TEST: &str = "a_killed_owners_router_message_filter_is_reaped";
    if role().is_some() {
        let host = sandbox_from_env();
        let _net = netns_kit::bridged()
            .host(&host)
            .gateway("fd72::fe/64")
            .member(netns_kit::MemberSpec::new().address("fd72::1/64"))
            .create_blocking()
            .unwrap();
        println!("READY");
        wait_for_go();
        return;
    }
    let host = Namespace::new_blocking().unwrap();
    let mut kid = spawn_in(&host, child(TEST, "owner"));
    kid.expect("READY");
    assert_eq!(router_message_tables(&host).len(), 1);
    kid.kill();
    let reaped = reap_blocking(&host).unwrap();
    assert!(reaped.errors.is_empty(), "{reaped:?}");
    assert!(
        reaped
            .firewall_rules
            .iter()
            .any(|r| r.contains("netns-kit-rm-")),
        "{reaped:?}"
    );
    assert_eq!(router_message_tables(&host), Vec::<String>::new());
    assert_eq!(link_names(&host), ["lo"]);
}

#[test]
fn a_killed_owners_isolation_rules_are_reaped_and_kept_and_live_ones_stay() {
    let _reaper = common::reaper_lock();
    const TEST: &str = "a_killed_owners_isolation_rules_are_reaped_and_kept_and_live_ones_stay";
    // An isolated dual-stack network: its rules are in the `mangle` table (the mark on what
    // arrives on the bridge, the drop of what is forwarded to it), in both IP families.
    let isolated = |host: &Namespace, v4: &str, v6: &str| {
        bridged()
            .host(host)
            .gateway(format!("{v4}.1/24"))
            .gateway(format!("{v6}::1/64"))
            .member(
                MemberSpec::new()
                    .address(format!("{v4}.2/24"))
                    .address(format!("{v6}::2/64")),
            )
            .isolate(true)
            .create_blocking()
            .unwrap()
    };
    // Every rule with a comment (the crate's marks), per family, as `iptables-save` shows it.
    let marked_rules = |host: &Namespace| {
        ["iptables-save", "ip6tables-save"].map(|program| {
            saved(host, program)
                .lines()
                .filter(|l| l.contains("-m comment"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    if role().is_some() {
        let host = sandbox_from_env();
        // One network kept (its rules now carry the kept mark, and outlive the process), one
        // left to the kill.
        isolated(&host, "10.79.3", "fd79:3").keep();
        let _killed = isolated(&host, "10.79.2", "fd79:2");
        println!("READY");
        wait_for_go();
        return;
    }
    let host = Namespace::new_blocking().unwrap();
    // A live owner's network, in the same tables: never touched.
    let _live = isolated(&host, "10.79.1", "fd79:1");
    let live_rules = marked_rules(&host);
    let mut kid = spawn_in(&host, child(TEST, "owner"));
    kid.expect("READY");
    let all_rules = marked_rules(&host);
    for (family, rules) in all_rules.iter().enumerate() {
        // Two rules per network (PREROUTING, FORWARD), three networks.
        assert_eq!(rules.len(), 6, "family {family}: {rules:?}");
    }
    kid.kill();
    let reaped = reap_blocking(&host).unwrap();
    assert!(reaped.errors.is_empty(), "{reaped:?}");
    // The killed network's rules went, named as removed: PREROUTING and FORWARD, per family.
    for (program, chain) in [
        ("iptables", "PREROUTING"),
        ("iptables", "FORWARD"),
        ("ip6tables", "PREROUTING"),
        ("ip6tables", "FORWARD"),
    ] {
        let said = format!("{program} -t mangle -A {chain} ");
        assert_eq!(
            reaped
                .firewall_rules
                .iter()
                .filter(|r| r.starts_with(&said))
                .count(),
            1,
            "{said}: {reaped:?}"
        );
    }
    // What is left: the live owner's rules and the kept network's, as they were.
    let kept = |rules: &Vec<String>| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.contains("\"netns-kit:kept\""))
            .cloned()
            .collect()
    };
    for family in 0..2 {
        assert_eq!(kept(&all_rules[family]).len(), 2, "{all_rules:?}");
        let mut expected = live_rules[family].clone();
        expected.extend(kept(&all_rules[family]));
        expected.sort();
        let mut after = marked_rules(&host)[family].clone();
        after.sort();
        assert_eq!(after, expected, "family {family}");
    }
}
