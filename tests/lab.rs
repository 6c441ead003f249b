//! The public lab for test authors, checked from outside: hosts by name on a LAN and behind a
//! router, commands and processes run in hosts, everything gone afterwards; a failing test's
//! lab kept as named namespaces with `NETNS_KIT_KEEP=1` and removed by `reap_kept`; skip or
//! fail without privileges.
//!
//! The keep and skip checks run this test binary again (its `#[ignore]`d `inner_*` tests) in a
//! throw-away mount namespace with a private `/run/netns`, or as `nobody`.

mod common;

use common::{ip_json, link_names, ping, proc_path, tcp_echo_once, tcp_round_trip, tool};
use netns_kit::{MemberSpec, Namespace, bridged, connect, lab::Lab, routed};

netns_kit::isolated_test!(
    hosts_on_a_lan_run_commands_and_servers_and_are_gone_afterwards,
    {
        let mut lab = Lab::new_blocking("lan_test").unwrap();
        let lan = lab
            .add_lan_blocking(["10.170.0.0/24", "fd70::/64"], ["db1", "db2", "app"])
            .unwrap();
        assert_eq!(lan.gateways()[0].to_string(), "10.170.0.1/24");
        assert_eq!(lab.hosts().collect::<Vec<_>>(), ["db1", "db2", "app"]);
        assert_eq!(lab.address("db1", 4).unwrap().to_string(), "10.170.0.2");
        assert_eq!(lab.address("app", 6).unwrap().to_string(), "fd70::4");
        // From outside: each host has its address and a default route via the gateway.
        let db2 = lab.host("db2").unwrap();
        let routes = ip_json(db2, &["-4", "route", "show", "default"]);
        assert_eq!(routes[0]["gateway"], "10.170.0.1");
        let app = lab.host("app").unwrap();
        assert!(ping(app, "10.170.0.2"));
        assert!(ping(app, "fd70::3"));
        // A command runs inside its host.
        let out = lab
            .command("db1", "ip")
            .unwrap()
            .args(["-br", "-4", "addr", "show", "dev", "eth0"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("10.170.0.2/24"));
        // A process the lab owns runs in its host's namespace (as /proc shows), and dies with it.
        let pid = lab
            .spawn(lab.command("db2", "sleep").unwrap().arg("60"))
            .unwrap()
            .id();
        let inode =
            |path: &str| std::fs::metadata(path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_eq!(
            inode(&format!("/proc/{pid}/ns/net")).unwrap(),
            lab.host("db2").unwrap().inode()
        );
        // A TCP server in one host, a client in another.
        let server = tcp_echo_once(lab.host("db1").unwrap(), 7500);
        tcp_round_trip(lab.host("app").unwrap(), "10.170.0.2", 7500).unwrap();
        server.join().unwrap();

        // Unknown names are clear errors.
        let err = lab.host("db9").unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains("db9"),
            "{err}"
        );
        let err = lab.add_host_blocking("db1").unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        let err = lab.add_host_blocking("no/slash").unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        // A host has one LAN: a second is refused before anything is made.
        let err = lab
            .add_lan_blocking(["10.174.0.0/24"], ["web", "db1"])
            .unwrap_err();
        assert!(
            err.to_string().contains("is on a LAN of this lab already"),
            "{err}"
        );
        assert!(
            lab.host("web").is_err(),
            "a host of the refused LAN was made"
        );

        // A second handle on a host outlives the lab: the host is empty afterwards.
        let db1_again = Namespace::open_path(proc_path(lab.host("db1").unwrap())).unwrap();
        let private_host = Namespace::open_path(proc_path(lab.namespace())).unwrap();
        drop(lab);
        assert_eq!(link_names(&db1_again), ["lo"]);
        assert_eq!(link_names(&private_host), ["lo"]);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "the lab's process {pid} still runs"
        );
    }
);

netns_kit::isolated_test!(a_lab_holds_a_router_and_a_direct_link_too, {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut lab = Lab::new("router_test").await.unwrap();
            for host in ["r1", "web", "db", "probe"] {
                lab.add_host(host).await.unwrap();
            }
            let net = routed()
                .router(lab.host("r1").unwrap())
                .lan(bridged().gateway("10.171.1.1/24").member(
                    MemberSpec::in_namespace(lab.host("web").unwrap()).address("10.171.1.2/24"),
                ))
                .lan(bridged().gateway("10.171.2.1/24").member(
                    MemberSpec::in_namespace(lab.host("db").unwrap()).address("10.171.2.2/24"),
                ));
            lab.add_routed(net).await.unwrap();
            let link = connect(lab.host("probe").unwrap(), lab.host("web").unwrap())
                .names("p0", "p0")
                .address("10.171.9.1/30", "10.171.9.2/30")
                .default_routes(false);
            lab.add_link(link).await.unwrap();
            assert_eq!(lab.address("db", 4).unwrap().to_string(), "10.171.2.2");
            assert_eq!(lab.address("probe", 4).unwrap().to_string(), "10.171.9.1");
            let router_addresses: Vec<String> = lab
                .addresses("r1")
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(router_addresses, ["10.171.1.1/24", "10.171.2.1/24"]);
            assert!(ping(lab.host("web").unwrap(), "10.171.2.2"));
            assert!(ping(lab.host("probe").unwrap(), "10.171.9.2"));
            assert_eq!(
                common::sysctl_outside(lab.host("r1").unwrap(), "net.ipv4.ip_forward"),
                "1"
            );
        });
});

/// A command running `exe` as uid 65534 without capabilities: through `setpriv` when this
/// process is root, as it is otherwise (already unprivileged).
fn as_nobody(exe: &std::path::Path) -> std::process::Command {
    if nix::unistd::geteuid().is_root() {
        let mut cmd = tool("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(exe);
        cmd
    } else {
        std::process::Command::new(exe)
    }
}

/// Runs `script` with `$1` = this test binary in a new mount namespace with a private
/// `/run/netns`; returns its output, and whether it succeeded.
fn in_private_run_netns(script: &str, env: &[(&str, &str)]) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    tool("ip");
    let mut cmd = tool("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "bash", "-c"])
        .arg(format!(
            "set -e; mkdir -p /run/netns; mount -t tmpfs tmpfs /run/netns; {script}"
        ))
        .arg("bash")
        .arg(exe);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

netns_kit::isolated_test!(
    a_failing_tests_lab_is_kept_with_keep_set_and_reaped_later,
    {
        let script = r#"
        # A stranger's namespace with a lab-like name: reap_kept must leave it alone.
        ip netns add nklab-stranger
        if NETNS_KIT_KEEP=1 "$1" --ignored --exact inner_failing_lab --nocapture --test-threads 1 2>&1; then
            echo "UNEXPECTED: the failing test passed"; exit 1
        fi
        echo "LIST: $(ls /run/netns | sort | tr '\n' ' ')"
        echo "DB1: $(ip -n nklab-kept_lab-db1 -br -4 addr show dev eth0)"
        # The kept network still works: step in and ping.
        ip netns exec nklab-kept_lab-app ping -c 1 -W 2 10.172.0.2 >/dev/null && echo "STEP-IN PING OK"
        "$1" --ignored --exact inner_reap --nocapture --test-threads 1 2>&1
        echo "AFTER: $(ls /run/netns | sort | tr '\n' ' ')"
    "#;
        let (ok, out) = in_private_run_netns(script, &[]);
        assert!(ok, "{out}");
        assert!(
            out.contains("netns-kit lab kept_lab: the test failed; its network is kept"),
            "{out}"
        );
        assert!(
            out.contains("ip netns exec nklab-kept_lab-db1 bash"),
            "{out}"
        );
        assert!(
            out.contains("nsenter --net=/run/netns/nklab-kept_lab-app bash"),
            "{out}"
        );
        assert!(
        out.contains(
            "LIST: nklab-kept_lab-app nklab-kept_lab-db1 nklab-kept_lab-lab.host nklab-kept_lab-member.1 nklab-stranger"
        ),
        "{out}"
    );
        assert!(out.contains("10.172.0.2/24"), "{out}");
        assert!(out.contains("STEP-IN PING OK"), "{out}");
        assert!(out.contains("REAPED: [\"nklab-kept_lab-"), "{out}");
        assert!(
            out.contains("AFTER: nklab-stranger \n") || out.contains("AFTER: nklab-stranger "),
            "{out}"
        );
    }
);

netns_kit::isolated_test!(without_keep_a_failing_tests_lab_is_gone, {
    let script = r#"
        if "$1" --ignored --exact inner_failing_lab --nocapture --test-threads 1 2>&1; then
            echo "UNEXPECTED: the failing test passed"; exit 1
        fi
        echo "LIST: [$(ls -A /run/netns | tr '\n' ' ')]"
    "#;
    let (ok, out) = in_private_run_netns(script, &[("NETNS_KIT_KEEP", "0")]);
    assert!(ok, "{out}");
    assert!(out.contains("LIST: []"), "{out}");
    assert!(!out.contains("is kept"), "{out}");
});

#[test]
fn without_privileges_a_lab_is_skipped_with_the_reason_or_fails_when_told() {
    let exe = std::env::current_exe().unwrap();
    let run = |no_skip: bool| {
        let mut cmd = as_nobody(&exe);
        cmd.args(["--ignored", "--exact", "inner_skip", "--nocapture"]);
        if no_skip {
            cmd.env("NETNS_KIT_NO_SKIP", "1");
        } else {
            cmd.env_remove("NETNS_KIT_NO_SKIP");
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(false);
    assert!(ok, "{out}");
    assert!(
        out.contains("netns-kit lab unprivileged: skipped:"),
        "{out}"
    );
    assert!(out.contains("CAP_NET_ADMIN"), "{out}");
    assert!(out.contains("SKIPPED-AS-TOLD"), "{out}");
    let (ok, out) = run(true);
    assert!(!ok, "{out}");
    assert!(out.contains("CAP_NET_ADMIN"), "{out}");
}

/// Run by the keep tests: a lab, then a failing assertion.
#[test]
#[ignore = "run by a_failing_tests_lab_is_kept_with_keep_set_and_reaped_later"]
fn inner_failing_lab() {
    let mut lab = Lab::new_blocking("kept_lab").unwrap();
    lab.add_lan_blocking(["10.172.0.0/24"], ["db1", "app"])
        .unwrap();
    // A namespace the lab does not own (never named by it), and one its network made (named).
    let outsider = Namespace::new_blocking().unwrap();
    lab.add_bridged_blocking(
        bridged()
            .gateway("10.173.0.1/24")
            .member(MemberSpec::in_namespace(&outsider).address("10.173.0.2/24"))
            .member(MemberSpec::new().address("10.173.0.3/24")),
    )
    .unwrap();
    assert_eq!(1 + 1, 3, "the test under test fails");
}

/// Run by the keep test: removes the kept labs.
#[test]
#[ignore = "run by a_failing_tests_lab_is_kept_with_keep_set_and_reaped_later"]
fn inner_reap() {
    let removed = netns_kit::lab::reap_kept_blocking().unwrap();
    println!("REAPED: {removed:?}");
}

/// Run as nobody by the privileges test.
#[test]
#[ignore = "run by without_privileges_a_lab_is_skipped_with_the_reason_or_fails_when_told"]
fn inner_skip() {
    let Some(_lab) = Lab::or_skip_blocking("unprivileged").unwrap() else {
        println!("SKIPPED-AS-TOLD");
        return;
    };
    panic!("a lab was made without privileges");
}

netns_kit::isolated_test!(a_lab_in_an_isolated_test, {
    let mut lab = Lab::new_blocking("isolated_test").unwrap();
    lab.add_lan_blocking(["10.175.0.0/24"], ["a", "b"]).unwrap();
    assert!(ping(lab.host("a").unwrap(), "10.175.0.3"));
    println!(
        "ISOLATED-BODY in-child={}",
        std::env::var_os(netns_kit::lab::ISOLATED_ENV).is_some()
    );
});

/// Run by the test below: an isolated body that fails.
#[test]
#[ignore = "run by an_isolated_test_runs_without_root_in_a_user_namespace"]
fn inner_isolated_failure() {
    netns_kit::lab::run_isolated(concat!(module_path!(), "::inner_isolated_failure"), || {
        panic!("BODY-FAILED on purpose")
    });
}

#[test]
fn an_isolated_test_runs_without_root_in_a_user_namespace() {
    let exe = std::env::current_exe().unwrap();
    let run = |args: &[&str]| {
        let out = as_nobody(&exe).args(args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(&["--exact", "a_lab_in_an_isolated_test", "--nocapture"]);
    assert!(ok, "{out}");
    assert!(out.contains("ISOLATED-BODY in-child=true"), "{out}");
    let (ok, out) = run(&["--exact", "inner_isolated_failure", "--include-ignored"]);
    assert!(!ok, "{out}");
    assert!(out.contains("failed in its user namespace"), "{out}");
    assert!(out.contains("BODY-FAILED on purpose"), "{out}");
}

/// The child: a lab with a server started by `Lab::spawn`; prints the server's pid, then waits
/// to be killed.
#[test]
#[ignore]
fn inner_spawn_then_killed() {
    let mut lab = Lab::new_blocking("spawn_killed").unwrap();
    lab.add_host_blocking("srv").unwrap();
    let mut sleeper = lab.command("srv", "sleep").unwrap();
    let pid = lab.spawn(sleeper.arg("600")).unwrap().id();
    println!("NK pid {pid}");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// A process started with `Lab::spawn` does not outlive a test killed with SIGKILL (it would
/// otherwise keep running, reparented, and hold its host's namespace).
#[test]
fn a_spawned_process_dies_with_a_test_killed_by_sigkill() {
    use std::io::BufRead;
    if !nix::unistd::geteuid().is_root() {
        // `.ci/run` also runs this binary as nobody, where a lab cannot be made outside a user
        // namespace; the root run checks it.
        println!("skipped: needs root (a lab in the test's own namespaces)");
        return;
    }
    let mut child = common::child("inner_spawn_then_killed", "spawn")
        .arg("--ignored")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let pid: i32 = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("NK pid ").map(|p| p.trim().parse().unwrap()))
        .expect("the child printed its server's pid");
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive(pid), "the server runs");
    // Only the child this test started, by its pid.
    child.kill().unwrap();
    child.wait().unwrap();
    common::eventually("the spawned server to be gone", || !alive(pid));
}
