//! `podman run --rm --network X --rootfs DIR /bin/true` with this plugin installed as `bridge`
//! against the reference `bridge` plugin, alternating run by run in one private network and
//! mount namespace (`tests/podman.sh bench N`, `NETNS_KIT_BENCH_PODMAN_N` runs each, default
//! 15): the whole container start and removal as a Podman user sees it, of which the plugin is
//! one part. Prints the medians and `ratio podman run netns-kit/cni-bridge: <value>`. Skipped
//! with a line without Podman and a static busybox.

use std::{path::Path, process::Command};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for needed in ["/usr/bin/podman", "/bin/busybox", "/usr/lib/cni/bridge"] {
        if !Path::new(needed).exists() {
            println!(
                "podman bench: skipped: {needed} is missing (apt-get install podman busybox-static containernetworking-plugins)"
            );
            return;
        }
    }
    let n = std::env::var("NETNS_KIT_BENCH_PODMAN_N").unwrap_or_else(|_| "15".into());
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
        .args(["bench", &n])
        .env("OURS", env!("CARGO_BIN_EXE_netns-kit-cni"))
        .output()
        .expect("run unshare");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["run", who, micros] = words[..] {
            let ms = micros.parse::<f64>().unwrap_or(0.0) / 1e3;
            if who == "ours" {
                ours.push(ms);
            } else {
                theirs.push(ms);
            }
        }
    }
    if ours.is_empty() || theirs.is_empty() {
        println!("podman bench: no runs (NETNS_KIT_BENCH_PODMAN_N={n})");
        return;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "  podman run --rm  netns-kit-cni  median {a:.1} ms  (runs {})",
        ours.len()
    );
    println!(
        "  podman run --rm  cni-bridge     median {b:.1} ms  (runs {})",
        theirs.len()
    );
    println!("ratio podman run netns-kit/cni-bridge: {:.2}", a / b);
}
