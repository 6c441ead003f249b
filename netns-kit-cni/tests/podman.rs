//! Podman 4 (CNI backend), a real client, runs containers on a network whose `bridge` plugin is
//! this one — installed under that name in a plugin directory searched first (the README's
//! recipe) — and on the reference: `podman network inspect` shows the subnet, a second network
//! on it is refused, a published port answers from the host's address and from 127.0.0.1, a
//! container pings its gateway, and `podman rm` leaves no veth, lease or masquerade chain. All
//! inside a private network and mount namespace (`tests/podman.sh` says what Podman needs
//! there). Skipped with a line where Podman or a static busybox is missing.

use std::{path::Path, process::Command};

const OURS: &str = env!("CARGO_BIN_EXE_netns-kit-cni");

fn have_podman(test: &str) -> bool {
    let missing: Vec<&str> = [
        ("podman", "/usr/bin/podman"),
        ("busybox-static", "/bin/busybox"),
        ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ]
    .into_iter()
    .filter(|(_, path)| !Path::new(path).exists())
    .map(|(package, _)| package)
    .collect();
    if missing.is_empty() {
        return true;
    }
    let line = format!(
        "{test}: not installed: {} (apt-get install {})",
        missing.join(", "),
        missing.join(" ")
    );
    assert!(
        std::env::var_os("NETNS_KIT_NO_SKIP").is_none_or(|v| v != "1"),
        "{line}"
    );
    println!("skipped {line}");
    false
}

fn podman(mode: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/podman.sh");
    let out = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
        ])
        .arg(&script)
        .arg(mode)
        .env("OURS", OURS)
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "podman ({mode}) failed:\n{text}");
    text
}

#[test]
fn podman_runs_containers_on_either_plugin_and_leaves_nothing() {
    if !have_podman("podman_runs_containers_on_either_plugin_and_leaves_nothing") {
        return;
    }
    for mode in ["ours", "reference"] {
        let out = podman(mode);
        for line in [
            "inspect: 10.90.0.0/24",
            "conflict: refused",
            "published: hello from podman",
            "localhost: hello from podman",
            "ping gateway: ok",
            "veths left: 0",
            "leases left: 0",
            "masquerade chains left: 0",
        ] {
            assert!(out.contains(line), "{mode}: missing {line:?} in:\n{out}");
        }
        if mode == "ours" {
            // Podman ran this plugin (through the test's logging wrapper), not the reference.
            assert!(out.contains("ours ran: ADD DEL"), "{out}");
        }
    }
}
