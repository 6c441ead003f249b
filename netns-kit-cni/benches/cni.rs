//! `netns-kit-cni` against the reference CNI `bridge` plugin (containernetworking-plugins, in
//! `/usr/lib/cni`) on the same configuration, timed as a runtime experiences it: from `exec` to
//! exit of the plugin process, per container.
//!
//! The configuration is what container engines ship for their default network: a gateway
//! bridge with hairpin mode and `host-local` IPAM (the reference runs that plugin from
//! `CNI_PATH` as a second process; netns-kit-cni does its work in-process), with masquerade
//! (`ipMasq`) off and on (`NETNS_KIT_BENCH_CNI_MASQ`, default `false,true`). For N containers (`NETNS_KIT_BENCH_CNI_N`,
//! default `1,32`) each round makes a fresh node namespace, adds one container untimed (the
//! bridge is made then, as by a node's first pod), then ADDs the N containers one after the
//! other, then DELs them; the two plugins take turns, round by round. A round's figure is its
//! mean per container; the table shows the median of the rounds, and the ratio lines
//!
//! `ratio cni N=<n> add ipMasq=<bool> netns-kit/cni-bridge: <value> (goal <= 0.3)`
//! `ratio cni N=<n> del ipMasq=<bool> netns-kit/cni-bridge: <value> (goal <= 0.6)`
//!
//! compare those medians (below 1: netns-kit is faster).
//!
//! The plugin measured is the one `cargo bench` builds (dynamically linked), or the binary
//! named by `NETNS_KIT_BENCH_CNI_PLUGIN`: the README installs it statically linked (a
//! `static-pie`, which starts about 0.35 ms sooner than the dynamic build on this VM, as
//! `perf stat -r 500` of `CNI_COMMAND=VERSION` shows), so
//!
//! `RUSTFLAGS="-C target-feature=+crt-static" cargo install --path netns-kit-cni --root /tmp/cni \`
//! `  --target "$(rustc -vV | sed -n 's/host: //p')"`
//! `NETNS_KIT_BENCH_CNI_PLUGIN=/tmp/cni/bin/netns-kit-cni cargo bench -p netns-kit-cni --bench cni`
//!
//! measures what a runtime runs. The output names the binary measured and how it is linked.
//!
//! Everything runs in a private network and mount namespace (the bench re-executes itself under
//! `unshare`); the plugins run in per-round node namespaces inside it. Run with
//! `cargo bench -p netns-kit-cni --bench cni` (as root, with `containernetworking-plugins`).

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netns_kit::Namespace;

const INNER_ENV: &str = "NETNS_KIT_BENCH_INNER";
const OURS: &str = env!("CARGO_BIN_EXE_netns-kit-cni");
const CNI_DIR: &str = "/usr/lib/cni";

fn main() {
    if std::env::var_os(INNER_ENV).is_none() {
        let status = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env(INNER_ENV, "1")
            .status()
            .expect("run unshare");
        std::process::exit(status.code().unwrap_or(1));
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let reference = format!("{CNI_DIR}/bridge");
    for needed in [&reference, &format!("{CNI_DIR}/host-local")] {
        if !Path::new(needed).is_file() {
            println!(
                "cni bench: skipped: {needed} is missing: install the `containernetworking-plugins` package"
            );
            return;
        }
    }
    let sizes: Vec<usize> = std::env::var("NETNS_KIT_BENCH_CNI_N")
        .unwrap_or_else(|_| "1,32".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "netns-kit-cni benchmark: {} CPUs, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        String::from_utf8_lossy(&Command::new("uname").arg("-r").output().unwrap().stdout).trim()
    );
    let masq: Vec<bool> = std::env::var("NETNS_KIT_BENCH_CNI_MASQ")
        .unwrap_or_else(|_| "false,true".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let ours = std::env::var("NETNS_KIT_BENCH_CNI_PLUGIN").unwrap_or_else(|_| OURS.to_owned());
    println!(
        "netns-kit-cni: {ours} ({})",
        if dynamic(&ours) {
            "dynamically linked"
        } else {
            "statically linked"
        }
    );
    let mut ratios = Vec::new();
    for n in sizes {
        for &ip_masq in &masq {
            let rounds = if n <= 4 { 15 } else { 4 };
            let (mut add, mut del) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
            for round in 0..rounds {
                for turn in 0..2 {
                    // Alternate which plugin goes first.
                    let which = (round + turn) % 2;
                    let plugin = if which == 0 {
                        ours.as_str()
                    } else {
                        reference.as_str()
                    };
                    let (a, d) = one_round(plugin, n, ip_masq);
                    add[which].push(a);
                    del[which].push(d);
                }
            }
            for (phase, samples, goal) in [("add", &add, 0.3), ("del", &del, 0.6)] {
                for (which, name) in [(0, "netns-kit-cni"), (1, "cni-bridge")] {
                    let s = &samples[which];
                    println!(
                        "  cni N={n:<3} ipMasq={ip_masq:<5} {phase}  {name:<14} median {:>7.2} ms per container  (min {:.2}, max {:.2}, rounds {})",
                        ms(median(s)),
                        ms(*s.iter().min().unwrap()),
                        ms(*s.iter().max().unwrap()),
                        s.len()
                    );
                }
                let value = median(&samples[0]).as_secs_f64() / median(&samples[1]).as_secs_f64();
                ratios.push(format!(
                    "ratio cni N={n} {phase} ipMasq={ip_masq} netns-kit/cni-bridge: {value:.2} (goal <= {goal})"
                ));
            }
        }
    }
    println!();
    for r in ratios {
        println!("{r}");
    }
}

/// Whether the ELF executable at `path` names a program interpreter (`PT_INTERP`): the dynamic
/// loader that maps its shared libraries at every start.
fn dynamic(path: &str) -> bool {
    let elf = std::fs::read(path).expect("read the plugin");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One round: a fresh node, one untimed container, then N timed ADDs and N timed DELs; the
/// mean per container of each.
fn one_round(plugin: &str, n: usize, ip_masq: bool) -> (Duration, Duration) {
    let node = Namespace::new_blocking().expect("node namespace");
    let data = std::env::temp_dir().join(format!("netns-kit-cni-bench-{}", node.inode()));
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"bench","type":"bridge","bridge":"cni0","isGateway":true,
            "ipMasq":{ip_masq},"hairpinMode":true,
            "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.88.0.0/16"}}]]}}}}"#,
        data.display()
    );
    let containers: Vec<Namespace> = (0..=n)
        .map(|_| Namespace::new_blocking().expect("container namespace"))
        .collect();
    let path = |c: &Namespace| {
        format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            std::os::fd::AsRawFd::as_raw_fd(c)
        )
    };
    let run = |command: &str, i: usize| -> Duration {
        let c = &containers[i];
        let netns = path(c);
        let conf = conf.clone();
        let plugin = plugin.to_owned();
        let command = command.to_owned();
        // The plugin is started from a thread inside the node namespace, so it runs there.
        node.run_blocking(move || {
            let start = Instant::now();
            let mut child = Command::new(&plugin)
                .env("CNI_COMMAND", &command)
                .env("CNI_CONTAINERID", format!("bench{i}"))
                .env("CNI_NETNS", &netns)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", CNI_DIR)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run the plugin");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(conf.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "{plugin} {command} failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            took
        })
        .expect("run in the node namespace")
    };
    // The node's first container makes the bridge: not timed.
    run("ADD", n);
    let add: Duration = (0..n).map(|i| run("ADD", i)).sum();
    let del: Duration = (0..n).map(|i| run("DEL", i)).sum();
    run("DEL", n);
    let _ = std::fs::remove_dir_all(&data);
    drop((containers, node));
    // The kernel frees the round's namespaces in a worker of its own, which would otherwise run
    // during the next round's measurements: let it finish first.
    std::thread::sleep(Duration::from_millis(300 + 10 * n as u64));
    (add / n as u32, del / n as u32)
}
