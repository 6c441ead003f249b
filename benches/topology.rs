//! netns-kit side by side with iproute2 and the CNI reference `bridge` plugin, on the same work,
//! in the same run:
//!
//! * **pattern 1** (two namespaces joined by a veth pair, addresses, default routes, one ping,
//!   teardown): netns-kit vs the classic recipe's shell script (one `ip` process per command) vs
//!   `ip -batch` (veth peers created directly in their namespaces);
//! * **bridged network of N members** (`NETNS_KIT_BENCH_N`, default `1,10,100,500,1000`): setup,
//!   and teardown until the kernel has really removed the members' veths: netns-kit vs
//!   `ip -batch` (host side in one batch, one `ip -n NS -batch` per namespace);
//! * per-member ADD and DEL of the CNI `bridge` plugin with `host-local` IPAM, `ipMasq` off, for
//!   N up to 100;
//! * **runtime ADD**: what a container runtime's create command does, as one short-lived process
//!   timed from exec to exit: open `cni0` (which exists), join a container namespace (which
//!   exists) to it with an address and a default route, keep it, exit. The bench runs itself
//!   again in that role, once with the blocking API (no async runtime) and once with the async
//!   API on a current-thread Tokio runtime, against the CNI reference `bridge` plugin with
//!   `static` IPAM (it runs the IPAM plugin as a second process: that is how CNI works) on the
//!   same work. Reported with each process's peak RSS and, for ours, its threads at exit, both
//!   from extra untimed runs (ours report their own `VmHWM` there, so the timed runs do the ADD
//!   alone; the plugin's is sampled from `/proc` while it runs, so it is a lower bound —
//!   `wait4`'s `ru_maxrss` would not do: it keeps the parent's size from before `exec`); ratio
//!   lines
//!   `ratio runtime N=1 add netns-kit-blocking/cni-bridge: <value>`. Where
//!   `NETNS_KIT_BENCH_ADDER` names `benches/peers/adder` (`benches/peers.sh --runtime` builds
//!   it), a third netns-kit child, "netns-kit-shipped": the same blocking ADD in a binary built
//!   the way a runtime would ship a short-lived one (no Tokio, optimised for size, fat LTO,
//!   linked statically, as the plugin, a Go program, is), with the line
//!   `ratio runtime N=1 add netns-kit-shipped/cni-bridge: <value>` (and
//!   `... netns-kit-shipped/floor-guarded` where `NETNS_KIT_BENCH_FLOOR` names the floor);
//! * **overlay**: one network of N members (N up to 100) spanning two machines (namespaces
//!   joined by an underlay veth) over VXLAN, netns-kit's `bridged().vxlan(..)` on each against
//!   `ip -batch` + `bridge fdb append`; ratio line `ratio overlay N=<n> setup netns-kit/ip-batch`;
//! * **dual-stack**: the bridged setup at N=500 (or the largest size below) with IPv4 only,
//!   dual-stack, and dual-stack without members' link-local addresses; ratio lines
//!   `ratio bridged N=<n> setup dual-stack/ipv4-only: <value>`. Where `NETNS_KIT_BENCH_FLOOR`
//!   names `benches/peers/floor`, the floor's own builds of the same two networks alternate
//!   with them (`floor-peer bridged` and `floor-peer dual-stack`, each in a network namespace
//!   of its own: no library, the same IPv6 work and router-message filter), for the line
//!   `ratio bridged N=<n> setup floor dual-stack/ipv4-only: <value>`, what dual-stack costs
//!   the kernel itself here (the floor waits for no readiness and makes its filter before its
//!   clock starts, so this is a reference, not a bound on netns-kit's ratio);
//! * **tracing overhead**: the bridged setup at N=100 (or the largest size below) with no
//!   subscriber at all, then with a `tracing-subscriber` `fmt` layer at `debug` recording every
//!   span of the crate (span-close events with durations, formatted into a sink), interleaved
//!   with runs where that layer is filtered off; reported as
//!   `ratio bridged N=<n> setup traced/untraced: <value>` (traced against no subscriber).
//!
//! * **impairment, user-space path**: TCP throughput over a veth pair, plain against the same
//!   link diverted through the user-space relay (no impairment, so it measures the path itself),
//!   with segmentation offloads and without (what a per-packet option such as loss turns off),
//!   alternating, with the relay thread's CPU time; ratio lines
//!   `ratio userspace-link/veth tcp-throughput: <value>` (goal ≥ 0.6). The relay's memory with
//!   a 25 ms delay under a bulk transfer (peak RSS growth). And the bridged setup at N=100 (or
//!   the largest size below) plain against the same with every member impaired from its
//!   creation (`MemberSpec::impair`): `ratio bridged N=<n> setup impairable/plain: <value>`
//!   (goal ≤ 1.5), and the two networks' teardown (the network's drop):
//!   `ratio bridged N=<n> teardown impairable/plain: <value>`.
//!
//! Everything runs inside a private network and mount namespace (the bench re-executes itself
//! under `unshare --net --mount`, with a private `/run/netns`), so it changes nothing on the
//! machine. The soft open-file limit is set to 1024 for the netns-kit runs, to show 1000 members
//! held at once within the default limit, and the resident memory per held member is reported.
//!
//! It prints a table of medians (with min–max) and one line per comparison:
//! `ratio <scenario> N=<n> <phase> netns-kit/<other>: <value>` (below 1: netns-kit is faster).
//!
//! Run with `cargo bench --bench topology` (as root, with the packages `.ci/test --deps` installs).
//! One scenario alone: `-- --publish`, `-- --runtime`, `-- --impairment`, `-- --impairable N`,
//! `-- --dual-stack N`,
//! `-- --profile N [--blocking]` (see
//! benches/README.md), and `-- --peer bridged|named N ROUNDS` (the netns-kit side of
//! `benches/peers.sh`).

use std::{
    io::Write,
    net::IpAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netns_kit::{Bridge, MemberSpec, Namespace, bridged, connect};

const INNER_ENV: &str = "NETNS_KIT_BENCH_INNER";
/// Set when the bench runs itself as a runtime's ADD process (`blocking` or `async`).
const ROLE_ENV: &str = "NETNS_KIT_BENCH_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        return runtime_add_child(&role);
    }
    if std::env::var_os(INNER_ENV).is_none() {
        // Re-run inside a throw-away network + mount namespace.
        let me = std::env::current_exe().unwrap();
        let status = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .arg(me)
            .args(std::env::args().skip(1))
            .env(INNER_ENV, "1")
            .status()
            .expect("run unshare");
        std::process::exit(status.code().unwrap_or(1));
    }
    // As a host has them: its own `/run/netns`, and sysfs for its namespace (where the crate
    // reads what netlink does not carry, such as whether a bridge's MAC was set already).
    sh(
        "mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns && mount -t sysfs sysfs /sys && ip link set lo up",
    );
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        let n = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(100);
        return profile(n, args.iter().any(|a| a == "--blocking"));
    }
    if let Some(i) = args.iter().position(|a| a == "--peer") {
        let arg = |k: usize| args.get(i + k).cloned().unwrap_or_default();
        let n = arg(2).parse().unwrap_or(100);
        let rounds = arg(3).parse().unwrap_or(1);
        return peer(arg(1) == "named", n, rounds);
    }
    if let Some(i) = args.iter().position(|a| a == "--dual-stack") {
        let mut report = Report::default();
        let n = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(500);
        match args.get(i + 2).map(String::as_str) {
            Some(variant) if !variant.starts_with('-') => dual_stack_only(n, variant),
            _ => dual_stack(&mut report, n),
        }
        return report.print();
    }
    if let Some(i) = args.iter().position(|a| a == "--impairable") {
        let mut report = Report::default();
        impairable_setup(
            &mut report,
            args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(100),
        );
        return report.print();
    }
    if args.iter().any(|a| a == "--runtime") {
        let mut report = Report::default();
        runtime_add(&mut report);
        return report.print();
    }
    if args.iter().any(|a| a == "--impairment") {
        let mut report = Report::default();
        impairment(&mut report);
        return report.print();
    }
    if args.iter().any(|a| a == "--publish") {
        let mut report = Report::default();
        publish(&mut report, 100);
        return report.print();
    }
    let sizes: Vec<usize> = std::env::var("NETNS_KIT_BENCH_N")
        .unwrap_or_else(|_| "1,10,100,500,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "netns-kit benchmark: {} CPUs, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        String::from_utf8_lossy(&Command::new("uname").arg("-r").output().unwrap().stdout).trim()
    );
    let mut report = Report::default();
    pattern_one(&mut report);
    // Before the large networks: after them the kernel frees a thousand namespaces for many
    // seconds, and this scenario's few-millisecond children were slower and more spread by it
    // (shipped 3.49 ms, up to 11.9, the plugin up to 19.2, against 2.5–3.0 and 13 alone).
    runtime_add(&mut report);
    for &n in &sizes {
        bridged_network(&mut report, n);
    }
    for &n in sizes.iter().filter(|&&n| n <= 100) {
        cni(&mut report, n);
    }
    if let Some(&n) = sizes.iter().filter(|&&n| (2..=100).contains(&n)).max() {
        overlay(&mut report, n);
    }
    if let Some(&n) = sizes.iter().filter(|&&n| n <= 500).max() {
        dual_stack(&mut report, n);
    }
    if let Some(&n) = sizes.iter().filter(|&&n| n <= 100).max() {
        tracing_overhead(&mut report, n);
    }
    publish(&mut report, 100);
    impairment(&mut report);
    if let Some(&n) = sizes.iter().filter(|&&n| n <= 100).max() {
        impairable_setup(&mut report, n);
    }
    report.print();
}

// ---------------------------------------------------------------------------------------------
// Measurement bookkeeping.

#[derive(Default)]
struct Report {
    rows: Vec<(String, String, Vec<Duration>)>,
    ratios: Vec<String>,
    notes: Vec<String>,
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Report {
    fn add(&mut self, scenario: &str, tool: &str, samples: Vec<Duration>) {
        let (lo, hi) = (samples.iter().min().unwrap(), samples.iter().max().unwrap());
        println!(
            "  {scenario:<38} {tool:<14} median {:>9.2} ms  (min {:.2}, max {:.2}, n={})",
            ms(median(&samples)),
            ms(*lo),
            ms(*hi),
            samples.len()
        );
        self.rows.push((scenario.into(), tool.into(), samples));
    }

    fn ratio(
        &mut self,
        scenario: &str,
        n: usize,
        phase: &str,
        ours: &[Duration],
        other: &str,
        theirs: &[Duration],
    ) {
        let value = median(ours).as_secs_f64() / median(theirs).as_secs_f64();
        self.ratios.push(format!(
            "ratio {scenario} N={n} {phase} netns-kit/{other}: {value:.2}"
        ));
    }

    fn note(&mut self, text: String) {
        println!("  {text}");
        self.notes.push(text);
    }

    fn print(&self) {
        println!("\n| scenario | tool | median ms | min–max ms | runs |");
        println!("| --- | --- | ---: | ---: | ---: |");
        for (scenario, tool, samples) in &self.rows {
            println!(
                "| {scenario} | {tool} | {:.2} | {:.2}–{:.2} | {} |",
                ms(median(samples)),
                ms(*samples.iter().min().unwrap()),
                ms(*samples.iter().max().unwrap()),
                samples.len()
            );
        }
        println!();
        for note in &self.notes {
            println!("{note}");
        }
        for ratio in &self.ratios {
            println!("{ratio}");
        }
    }
}

fn sh(script: &str) {
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "failed: {script}");
}

/// Runs `ip [args] -batch -` with `commands` on stdin.
fn ip_batch(args: &[&str], commands: &str) {
    let mut child = Command::new("ip")
        .args(args)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "ip -batch failed:\n{commands}"
    );
}

/// Waits until the current namespace has exactly `expected` links (the kernel removes the
/// links of deleted namespaces asynchronously).
fn wait_for_links(expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
        let count = out.stdout.iter().filter(|&&b| b == b'\n').count();
        if count == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "links never went away ({count} left)"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Lets the kernel finish the asynchronous cleanup of namespaces freed by the previous run, so
/// every measured run starts from a quiet machine.
fn settle(n: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LAST: AtomicUsize = AtomicUsize::new(0);
    let size = LAST.swap(n, Ordering::Relaxed).max(n);
    std::thread::sleep(Duration::from_millis(500 + 3 * size as u64));
}

/// Bytes of heap in use (glibc's `mallinfo2`: small-block and mmapped allocations).
fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics and returns them by value.
    #[allow(unsafe_code)]
    let info = unsafe { nix::libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn set_nofile_soft(limit: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, limit.min(hard), hard).unwrap();
    soft
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ---------------------------------------------------------------------------------------------
// Pattern 1.

const P1_RUNS: usize = 11;

fn pattern_one(report: &mut Report) {
    println!("pattern 1: two namespaces, a veth pair, addresses, default routes, one ping");
    let rt = runtime();
    let (mut kit_setup, mut kit_down) = (Vec::new(), Vec::new());
    let (mut script_setup, mut script_down) = (Vec::new(), Vec::new());
    let (mut batch_setup, mut batch_down) = (Vec::new(), Vec::new());
    for _ in 0..P1_RUNS {
        // netns-kit
        settle(2);
        let start = Instant::now();
        let (ns1, ns2, link) = rt.block_on(async {
            let (ns1, ns2) = futures::future::try_join(Namespace::new(), Namespace::new())
                .await
                .unwrap();
            let link = connect(&ns1, &ns2)
                .names("veth1", "veth2")
                .address("10.111.1.1/24", "10.111.1.2/24")
                .create()
                .await
                .unwrap();
            ns1.ping("10.111.1.2".parse().unwrap(), Duration::from_secs(2))
                .await
                .unwrap();
            (ns1, ns2, link)
        });
        kit_setup.push(start.elapsed());
        let start = Instant::now();
        rt.block_on(async {
            // Namespaces first, then drop the link's guard: it leaves the link to the kernel,
            // which deletes it with the namespaces in one batch (as after `ip netns del`),
            // instead of a 15-40 ms deletion of its own.
            ns1.delete().await.unwrap();
            ns2.delete().await.unwrap();
            drop(link);
        });
        kit_down.push(start.elapsed());

        // The classic recipe's script: one process per command.
        settle(2);
        let start = Instant::now();
        sh("ip netns add ns1
            ip netns add ns2
            ip link add veth1 type veth peer name veth2
            ip link set veth1 netns ns1
            ip link set veth2 netns ns2
            ip netns exec ns1 ip addr add 10.111.1.1/24 dev veth1
            ip netns exec ns1 ip link set veth1 up
            ip netns exec ns2 ip addr add 10.111.1.2/24 dev veth2
            ip netns exec ns2 ip link set veth2 up
            ip netns exec ns1 ip route add default via 10.111.1.2
            ip netns exec ns2 ip route add default via 10.111.1.1
            ip netns exec ns1 ping -c1 -W2 -q 10.111.1.2 >/dev/null");
        script_setup.push(start.elapsed());
        let start = Instant::now();
        sh("ip netns del ns1; ip netns del ns2");
        script_down.push(start.elapsed());
        wait_for_links(1);

        // ip -batch: peers created in their namespaces, one batch per namespace.
        settle(2);
        let start = Instant::now();
        ip_batch(
            &[],
            "netns add ns1\nnetns add ns2\n\
             link add veth1 netns ns1 type veth peer name veth2 netns ns2\n",
        );
        ip_batch(
            &["-n", "ns1"],
            "link set lo up\naddr add 10.111.1.1/24 dev veth1\nlink set veth1 up\n\
             route add default via 10.111.1.2\n",
        );
        ip_batch(
            &["-n", "ns2"],
            "link set lo up\naddr add 10.111.1.2/24 dev veth2\nlink set veth2 up\n\
             route add default via 10.111.1.1\n",
        );
        sh("ip netns exec ns1 ping -c1 -W2 -q 10.111.1.2 >/dev/null");
        batch_setup.push(start.elapsed());
        let start = Instant::now();
        ip_batch(&[], "netns del ns1\nnetns del ns2\n");
        batch_down.push(start.elapsed());
        wait_for_links(1);
    }
    report.add("pattern1 setup+ping", "netns-kit", kit_setup.clone());
    report.add("pattern1 setup+ping", "shell-script", script_setup.clone());
    report.add("pattern1 setup+ping", "ip-batch", batch_setup.clone());
    report.add("pattern1 teardown", "netns-kit", kit_down.clone());
    report.add("pattern1 teardown", "shell-script", script_down.clone());
    report.add("pattern1 teardown", "ip-batch", batch_down.clone());
    report.ratio(
        "pattern1",
        2,
        "setup+ping",
        &kit_setup,
        "shell-script",
        &script_setup,
    );
    report.ratio(
        "pattern1",
        2,
        "setup+ping",
        &kit_setup,
        "ip-batch",
        &batch_setup,
    );
    report.ratio(
        "pattern1",
        2,
        "teardown",
        &kit_down,
        "shell-script",
        &script_down,
    );
    report.ratio(
        "pattern1",
        2,
        "teardown",
        &kit_down,
        "ip-batch",
        &batch_down,
    );
}

// ---------------------------------------------------------------------------------------------
// A bridged network of N members.

fn runs_for(n: usize) -> usize {
    match n {
        0..=10 => 11,
        11..=100 => 7,
        _ => 5,
    }
}

fn member_address(i: usize) -> String {
    format!("10.{}.{}.{}/16", 100, (i + 1) / 250, (i + 1) % 250 + 1)
}

fn bridged_network(report: &mut Report, n: usize) {
    println!("bridged network, N={n}");
    let rt = runtime();
    let (mut kit_setup, mut kit_down) = (Vec::new(), Vec::new());
    let (mut batch_setup, mut batch_down) = (Vec::new(), Vec::new());
    let mut per_member_rss = Vec::new();
    let mut per_member_heap = Vec::new();
    let mut fds_held = 0;
    for _ in 0..runs_for(n) {
        // netns-kit, holding N members within a soft limit of 1024 open files.
        settle(n);
        let old_limit = set_nofile_soft(1024);
        let rss_before = rss_kib();
        let heap_before = heap_bytes();
        let host = Namespace::current().unwrap();
        let start = Instant::now();
        let net = rt
            .block_on(
                bridged()
                    .host(&host)
                    .bridge_name("br0")
                    .gateway("10.100.255.254/16")
                    .members((0..n).map(|i| MemberSpec::new().address(member_address(i))))
                    .create(),
            )
            .unwrap();
        kit_setup.push(start.elapsed());
        per_member_rss.push(rss_kib().saturating_sub(rss_before) as f64 / n as f64);
        per_member_heap.push(heap_bytes().saturating_sub(heap_before) as f64 / n as f64);
        fds_held = open_fds();
        let start = Instant::now();
        rt.block_on(net.delete()).unwrap();
        // The group deletion removed every member veth synchronously; wait anyway, as for ip.
        wait_for_links(1);
        kit_down.push(start.elapsed());
        drop(host);
        set_nofile_soft(old_limit);

        // ip -batch: host side in one batch, then one `ip -n NS -batch` per namespace.
        settle(n);
        let start = Instant::now();
        let mut host_batch = String::from(
            "link add br0 type bridge\naddr add 10.100.255.254/16 dev br0\nlink set br0 up\n",
        );
        for i in 0..n {
            host_batch.push_str(&format!(
                "netns add m{i}\nlink add h{i} master br0 up type veth peer name eth0 netns m{i}\n"
            ));
        }
        ip_batch(&[], &host_batch);
        for i in 0..n {
            ip_batch(
                &["-n", &format!("m{i}")],
                &format!(
                    "link set lo up\nlink set eth0 up\naddr add {} dev eth0\n\
                     route add default via 10.100.255.254\n",
                    member_address(i)
                ),
            );
        }
        batch_setup.push(start.elapsed());
        let start = Instant::now();
        let mut down = String::new();
        for i in 0..n {
            down.push_str(&format!("netns del m{i}\n"));
        }
        down.push_str("link del br0\n");
        ip_batch(&[], &down);
        wait_for_links(1);
        batch_down.push(start.elapsed());
    }
    let scenario = format!("bridged N={n}");
    report.add(&format!("{scenario} setup"), "netns-kit", kit_setup.clone());
    report.add(
        &format!("{scenario} setup"),
        "ip-batch",
        batch_setup.clone(),
    );
    report.add(
        &format!("{scenario} teardown"),
        "netns-kit",
        kit_down.clone(),
    );
    report.add(
        &format!("{scenario} teardown"),
        "ip-batch",
        batch_down.clone(),
    );
    let per = |v: &[Duration]| ms(median(v)) / n as f64;
    report.note(format!(
        "bridged N={n}: per member setup netns-kit {:.3} ms, ip-batch {:.3} ms; teardown netns-kit {:.1} ms total ({:.3} ms/member); {fds_held} fds open while holding {n} members (soft limit 1024); per held member: {:.1} KiB resident (first run), {:.0} bytes of heap",
        per(&kit_setup),
        per(&batch_setup),
        ms(median(&kit_down)),
        per(&kit_down),
        per_member_rss[0],
        per_member_heap.iter().cloned().fold(f64::NAN, f64::max),
    ));
    report.ratio("bridged", n, "setup", &kit_setup, "ip-batch", &batch_setup);
    report.ratio("bridged", n, "teardown", &kit_down, "ip-batch", &batch_down);
}

/// `--peer bridged|named N ROUNDS`: the work of the nlink peer program (`benches/peers/nlink`,
/// run side by side by `benches/peers.sh`), one line per round in its format: a bridge `br0`
/// in this namespace, N members (anonymous namespaces, or named `m{i}` under `/run/netns`),
/// each with its address and default route, ready; then all of it deleted, until only `lo` is
/// left (and, named, `/run/netns` is empty).
fn peer(named: bool, n: usize, rounds: usize) {
    let rt = runtime();
    let scenario = if named { "named" } else { "bridged" };
    set_nofile_soft(u64::MAX);
    for _ in 0..rounds {
        settle(n);
        let host = Namespace::current().unwrap();
        let start = Instant::now();
        let net = rt.block_on(async {
            let members: Vec<MemberSpec> = if named {
                let spaces = futures::future::try_join_all(
                    (0..n).map(|i| Namespace::named(format!("m{i}"))),
                )
                .await
                .unwrap();
                spaces
                    .into_iter()
                    .enumerate()
                    .map(|(i, ns)| MemberSpec::owning(ns).address(member_address(i)))
                    .collect()
            } else {
                (0..n)
                    .map(|i| MemberSpec::new().address(member_address(i)))
                    .collect()
            };
            // No IPv6 link-local addresses on the members' interfaces: the default for
            // namespaces the network makes on an IPv4-only network, asked for here for the
            // named ones it is handed (see `BridgedBuilder::link_local_ipv6`).
            bridged()
                .host(&host)
                .bridge_name("br0")
                .gateway("10.100.255.254/16")
                .link_local_ipv6(false)
                .members(members)
                .create()
                .await
                .unwrap()
        });
        let setup = start.elapsed();
        let start = Instant::now();
        rt.block_on(net.delete()).unwrap();
        wait_for_links(1);
        let teardown = start.elapsed();
        let left = std::fs::read_dir("/run/netns").unwrap().count();
        assert_eq!(left, 0, "{left} names left in /run/netns");
        println!(
            "netns-kit {scenario} N={n} setup_ms={:.1} teardown_ms={:.1}",
            ms(setup),
            ms(teardown)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime ADD: one short-lived process per container.

const RUNTIME_GATEWAY: &str = "10.102.0.1/16";
/// Runs per child. The children's medians moved by up to a tenth from one run of the bench to
/// the next with 15 (the plugin's from 7.8 to 9.9 ms); more runs, and each run's children in
/// another order (none always follows the same one), steady them.
const RUNTIME_RUNS: usize = 40;

/// The child: joins the namespace at `NK_NETNS` to the existing `cni0` with address `NK_ADDR`,
/// keeps it, and with `NK_REPORT` set prints its thread count and peak RSS.
fn runtime_add_child(role: &str) {
    let begin = Instant::now();
    // `NETNS_KIT_BENCH_SPANS=1`: the time of each of the crate's steps, on stderr.
    let spans = std::env::var("NETNS_KIT_BENCH_SPANS").is_ok_and(|v| !v.is_empty() && v != "0");
    if spans {
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry()
            .with(
                SpanTimes.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    meta.target().starts_with("netns_kit")
                })),
            )
            .init();
    }
    let netns = std::env::var("NK_NETNS").unwrap();
    let address = std::env::var("NK_ADDR").unwrap();
    let host = Namespace::current().unwrap();
    let container = Namespace::open_path(&netns).unwrap();
    match role {
        "blocking" => {
            let cni0 = Bridge::open_blocking(&host, "cni0").unwrap();
            bridged()
                .existing_bridge(&cni0)
                .gateway(RUNTIME_GATEWAY)
                .member(MemberSpec::in_namespace(&container).address(address))
                .create_blocking()
                .unwrap()
                .keep();
        }
        _ => {
            let rt = runtime();
            rt.block_on(async {
                let cni0 = Bridge::open(&host, "cni0").await.unwrap();
                bridged()
                    .existing_bridge(&cni0)
                    .gateway(RUNTIME_GATEWAY)
                    .member(MemberSpec::in_namespace(&container).address(address))
                    .create()
                    .await
                    .unwrap()
                    .keep();
            });
        }
    }
    // `NETNS_KIT_BENCH_WIRED=1`: only the time from `main` to wired, with no subscriber (as
    // `floor-peer runtime` prints it), to split a run's time into the work and the process's
    // start and exit.
    let wired = begin.elapsed();
    if spans || std::env::var("NETNS_KIT_BENCH_WIRED").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!("main to wired: {:.3} ms", ms(wired));
    }
    if spans {
        for (name, (count, total)) in SPANS.lock().unwrap().iter() {
            eprintln!("  {name:<32} {count:>3} {:>8.3} ms", ms(*total));
        }
    }
    // Only in the untimed runs that ask (`NK_REPORT`): the timed ones do the ADD alone, as the
    // floor and the plugin do.
    if std::env::var_os("NK_REPORT").is_some() {
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
        println!("{threads} {}", vm_hwm_kib(std::process::id()).unwrap());
    }
}

/// The peak resident set of process `pid` so far, in KiB (`VmHWM`).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Runs the CNI bridge plugin's ADD for `name` with `address`, and the child.
fn cni_add_child(name: &str, address: &str) -> std::process::Child {
    let config = format!(
        r#"{{"cniVersion":"1.0.0","name":"nkrt","type":"bridge","bridge":"cni0","isGateway":true,"ipam":{{"type":"static","addresses":[{{"address":"{address}/16","gateway":"10.102.0.1"}}],"routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#
    );
    let mut child = Command::new(format!("{CNI_DIR}/bridge"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", name)
        .env("CNI_NETNS", format!("/run/netns/{name}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    child
}

fn runtime_add(report: &mut Report) {
    let cni = std::path::Path::new(CNI_DIR).join("bridge").exists();
    println!("runtime ADD: one process per container, exec to exit");
    sh(&format!(
        "ip link add cni0 type bridge && ip addr add {RUNTIME_GATEWAY} dev cni0 && ip link set cni0 up"
    ));
    let me = std::env::current_exe().unwrap();
    let mut samples: Vec<(&str, Vec<Duration>, Vec<u64>)> = vec![
        ("netns-kit-blocking", Vec::new(), Vec::new()),
        ("netns-kit-async", Vec::new(), Vec::new()),
        ("cni-bridge", Vec::new(), Vec::new()),
    ];
    // The kernel's floor for this work (`benches/peers/floor`, no library, `floor-peer
    // runtime`), where `NETNS_KIT_BENCH_FLOOR` names it (`benches/peers.sh --runtime` does).
    let floor = std::env::var_os("NETNS_KIT_BENCH_FLOOR").map(std::path::PathBuf::from);
    if floor.is_some() {
        samples.push(("floor", Vec::new(), Vec::new()));
        samples.push(("floor-guarded", Vec::new(), Vec::new()));
    }
    // netns-kit's blocking API in a binary built the way a runtime would ship a short-lived
    // one (`benches/peers/adder`: no Tokio, optimised for size, fat LTO, linked statically), where
    // `NETNS_KIT_BENCH_ADDER` names it (`benches/peers.sh --runtime` does).
    let adder = std::env::var_os("NETNS_KIT_BENCH_ADDER").map(std::path::PathBuf::from);
    if adder.is_some() {
        samples.push(("netns-kit-shipped", Vec::new(), Vec::new()));
    }
    // One ADD process of `tool` for namespace `name`, with `address`; netns-kit's children print
    // their thread count and peak RSS where `report` (untimed runs only).
    let spawn = |tool: &str, name: &str, address: &str, report: bool| {
        let netns = format!("/run/netns/{name}");
        let gateway = RUNTIME_GATEWAY.split('/').next().unwrap();
        let mut command = match tool {
            "cni-bridge" => return cni_add_child(name, address),
            "floor" | "floor-guarded" => {
                let mut c = Command::new(floor.as_ref().unwrap());
                c.arg("runtime")
                    .args((tool == "floor-guarded").then_some("--guarded"))
                    .env("NK_GW", gateway);
                c
            }
            "netns-kit-shipped" => {
                let mut c = Command::new(adder.as_ref().unwrap());
                c.env("NK_GW", gateway);
                c
            }
            role => {
                let mut c = Command::new(&me);
                c.env(ROLE_ENV, role.trim_start_matches("netns-kit-"));
                c
            }
        };
        command
            .env("NK_NETNS", &netns)
            .env("NK_ADDR", format!("{address}/16"));
        if report {
            command.env("NK_REPORT", "1").stdout(Stdio::piped());
        } else {
            command.env_remove("NK_REPORT");
        }
        command.spawn().unwrap()
    };
    let mut threads: Vec<(&str, u64)> = Vec::new();
    for run in 0..RUNTIME_RUNS {
        let count = samples.len();
        for i in 0..count {
            let (tool, times, _) = &mut samples[(i + run) % count];
            if *tool == "cni-bridge" && !cni {
                continue;
            }
            let name = format!("rt{run}");
            sh(&format!("ip netns add {name}"));
            settle(1);
            let address = format!("10.102.1.{}", run + 2);
            let start = Instant::now();
            let status = spawn(tool, &name, &address, false).wait().unwrap();
            times.push(start.elapsed());
            assert!(status.success(), "{tool}: the ADD process failed");
            // The container is wired: its default route goes via the gateway.
            let route = Command::new("ip")
                .args(["-n", &name, "route", "show", "default"])
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&route.stdout).contains("10.102.0.1"),
                "{tool} did not wire {name}"
            );
            sh(&format!("ip netns del {name}"));
        }
    }
    // netns-kit's children report their own threads at exit and peak RSS (untimed runs).
    for (tool, _, rss) in samples.iter_mut() {
        if !tool.starts_with("netns-kit") {
            continue;
        }
        for run in 0..5 {
            let name = format!("rtr{run}");
            sh(&format!("ip netns add {name}"));
            let out = spawn(tool, &name, &format!("10.102.3.{}", run + 2), true)
                .wait_with_output()
                .unwrap();
            assert!(out.status.success(), "{tool}: the ADD process failed");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap());
            let (t, hwm) = (fields.next().unwrap(), fields.next().unwrap());
            rss.push(hwm);
            if run == 0 {
                threads.push((tool, t));
            }
            sh(&format!("ip netns del {name}"));
        }
    }
    if cni {
        // The plugin's peak RSS, sampled while it runs (untimed runs).
        let rss = &mut samples
            .iter_mut()
            .find(|(tool, _, _)| *tool == "cni-bridge")
            .unwrap()
            .2;
        for run in 0..5 {
            let name = format!("rtm{run}");
            sh(&format!("ip netns add {name}"));
            let mut child = cni_add_child(&name, &format!("10.102.2.{}", run + 2));
            let mut peak = 0;
            while child.try_wait().unwrap().is_none() {
                peak = peak.max(vm_hwm_kib(child.id()).unwrap_or(0));
                std::thread::sleep(Duration::from_micros(100));
            }
            rss.push(peak);
            sh(&format!("ip netns del {name}"));
        }
    }
    sh("ip link del cni0");
    wait_for_links(1);
    for (tool, times, rss) in &samples {
        if times.is_empty() {
            continue;
        }
        report.add("runtime N=1 ADD (exec to exit)", tool, times.clone());
        let mut rss = rss.clone();
        rss.sort();
        if rss.is_empty() {
            continue;
        }
        let sampled = if *tool == "cni-bridge" {
            " (sampled: at least)"
        } else {
            ""
        };
        report.note(format!(
            "runtime ADD {tool}: peak RSS median {} KiB{sampled}{}",
            rss[rss.len() / 2],
            threads
                .iter()
                .find(|(t, _)| t == tool)
                .map_or(String::new(), |(_, n)| format!(", {n} threads at exit"))
        ));
    }
    if !cni {
        report.note(format!(
            "runtime ADD: cni-bridge skipped, {CNI_DIR}/bridge is not installed"
        ));
        return;
    }
    let median_of =
        |tool: &str| median(&samples.iter().find(|(t, _, _)| *t == tool).unwrap().1).as_secs_f64();
    let mut pairs = vec![
        ("netns-kit-blocking", "cni-bridge"),
        ("netns-kit-async", "cni-bridge"),
    ];
    if floor.is_some() {
        pairs.extend([
            ("floor", "cni-bridge"),
            ("netns-kit-blocking", "floor"),
            ("floor-guarded", "cni-bridge"),
            ("netns-kit-blocking", "floor-guarded"),
        ]);
    }
    if adder.is_some() {
        pairs.push(("netns-kit-shipped", "cni-bridge"));
        if floor.is_some() {
            pairs.push(("netns-kit-shipped", "floor-guarded"));
        }
    }
    for (tool, other) in pairs {
        report.ratios.push(format!(
            "ratio runtime N=1 add {tool}/{other}: {:.2}",
            median_of(tool) / median_of(other)
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Tracing overhead.

/// Whether the bench's subscriber records the crate's spans (read by its filter on every span:
/// the filter reports "sometimes" interest, so no callsite caches the answer).
static TRACING_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One network of `n` members spanning two machines over VXLAN (`n/2` members on each):
/// netns-kit (`bridged().vxlan(...)` on each host) against `ip -batch` (per host one batch for
/// the members' namespaces, one for the bridge, the VXLAN port and the members' veths, one
/// `bridge fdb append` for the peer, one batch per member namespace). The machines and their
/// underlay link are made before the clock starts, for both.
fn overlay(report: &mut Report, n: usize) {
    println!("overlay: one network across two machines, N={n}");
    let runs = runs_for(n).min(7);
    let half = n / 2;
    let address = |i: usize| format!("10.101.{}.{}/16", i / 250, i % 250 + 1);
    let (mut kit, mut batch) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        // netns-kit.
        settle(n);
        let (a, b) = (
            Namespace::new_blocking().unwrap(),
            Namespace::new_blocking().unwrap(),
        );
        let wire = connect(&a, &b)
            .names("wire", "wire")
            .address("10.99.0.1/24", "10.99.0.2/24")
            .default_routes(false)
            .create_blocking()
            .unwrap();
        let ips: [IpAddr; 2] = ["10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap()];
        let start = Instant::now();
        let nets: Vec<_> = [(&a, 0), (&b, 1)]
            .into_iter()
            .map(|(host, side)| {
                bridged()
                    .host(host)
                    .bridge_name("br0")
                    .gateway(format!("10.101.255.{}/16", 254 - side))
                    .vxlan(42, ips[side], [ips[1 - side]])
                    .members(
                        (side * half..(side + 1) * half)
                            .map(|i| MemberSpec::new().address(address(i))),
                    )
                    .create_blocking()
                    .unwrap()
            })
            .collect();
        kit.push(start.elapsed());
        drop((nets, wire, a, b));

        // ip -batch.
        settle(n);
        sh(
            "ip netns add ha && ip netns add hb && ip link add wire netns ha type veth peer name wire netns hb \
            && ip -n ha addr add 10.99.0.1/24 dev wire && ip -n hb addr add 10.99.0.2/24 dev wire \
            && ip -n ha link set wire up && ip -n hb link set wire up",
        );
        let start = Instant::now();
        for (host, side) in [("ha", 0), ("hb", 1)] {
            let (local, peer) = (ips[side], ips[1 - side]);
            let mut commands = format!(
                "link add br0 mtu 1450 type bridge\naddr add 10.101.255.{}/16 dev br0\nlink set br0 up\n\
                 link add vx0 mtu 1450 type vxlan id 42 local {local} dstport 4789\nlink set vx0 master br0 up\n",
                254 - side
            );
            // Namespaces first, from outside `host` (`ip -n` cannot `netns add` in a batch).
            let mut spaces = String::new();
            for i in side * half..(side + 1) * half {
                spaces.push_str(&format!("netns add m{i}\n"));
                commands.push_str(&format!(
                    "link add h{i} mtu 1450 master br0 up type veth peer name eth0 mtu 1450 netns m{i}\n"
                ));
            }
            ip_batch(&[], &spaces);
            ip_batch(&["-n", host], &commands);
            sh(&format!(
                "bridge -n {host} fdb append 00:00:00:00:00:00 dev vx0 dst {peer}"
            ));
            for i in side * half..(side + 1) * half {
                ip_batch(
                    &["-n", &format!("m{i}")],
                    &format!(
                        "link set lo up\nlink set eth0 up\naddr add {} dev eth0\nroute add default via 10.101.255.{}\n",
                        address(i),
                        254 - side
                    ),
                );
            }
        }
        batch.push(start.elapsed());
        let mut down = String::new();
        for i in 0..2 * half {
            down.push_str(&format!("netns del m{i}\n"));
        }
        down.push_str("netns del ha\nnetns del hb\n");
        ip_batch(&[], &down);
    }
    let scenario = format!("overlay N={n} setup");
    report.add(&scenario, "netns-kit", kit.clone());
    report.add(&scenario, "ip-batch", batch.clone());
    report.ratio("overlay", n, "setup", &kit, "ip-batch", &batch);
}

/// Dual-stack against IPv4-only: the bridged setup at N=500 (or the largest size below), each
/// member with an IPv4 address only, then with an IPv6 address too — once with the default
/// (members keep their link-local address), once with `link_local_ipv6(false)` — interleaved.
/// N published ports (`nat::publish`, one guard) against `iptables-restore --noflush` of the
/// same rules (what a runtime scripting `iptables` would run: one process for the lot), each in
/// a fresh namespace whose `nat` table and base chains exist already (as on any host that ran a
/// container), alternating; removal timed too. A third line: ours in a namespace without a
/// `nat` table, which it creates and deletes again (unregistering the base chains' hooks waits
/// for an RCU grace period; `iptables-restore` leaves the table behind instead).
fn publish(report: &mut Report, n: usize) {
    use netns_kit::nat::{self, PortMapping};
    println!("published ports, N={n}");
    let runs = 15;
    let to = |i: usize| -> std::net::SocketAddr {
        format!("10.100.{}.{}:80", i / 250, i % 250 + 2)
            .parse()
            .unwrap()
    };
    // A namespace whose nat table has the base chains the rules use.
    let host_with_table = |table: bool| {
        let host = Namespace::new_blocking().unwrap();
        if table {
            for chain in ["PREROUTING", "OUTPUT", "POSTROUTING"] {
                for op in ["-A", "-D"] {
                    let ok = host
                        .command("iptables")
                        .args([
                            "-t",
                            "nat",
                            op,
                            chain,
                            "-s",
                            "10.255.255.254",
                            "-j",
                            "RETURN",
                        ])
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok);
                }
            }
        }
        host
    };
    let ours = |table: bool| {
        let host = host_with_table(table);
        let start = Instant::now();
        let ports = nat::publish()
            .host(&host)
            .hairpin("10.100.0.0/16")
            .maps((0..n).map(|i| PortMapping::tcp(10000 + i as u16, to(i))))
            .create_blocking()
            .unwrap();
        let add = start.elapsed();
        let start = Instant::now();
        ports.delete_blocking().unwrap();
        (add, start.elapsed())
    };
    let theirs = || {
        let host = host_with_table(true);
        let mut script = String::from(
            "*nat\n:NK-BENCH - [0:0]\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j NK-BENCH\n\
             -A OUTPUT -m addrtype --dst-type LOCAL -j NK-BENCH\n\
             -I POSTROUTING -m mark --mark 0x2000/0x2000 -j MASQUERADE\n",
        );
        for i in 0..n {
            let port = 10000 + i;
            script.push_str(&format!(
                "-A NK-BENCH -s 10.100.0.0/16 -p tcp -m tcp --dport {port} -j MARK --set-xmark 0x2000/0x2000\n\
                 -A NK-BENCH -p tcp -m tcp --dport {port} -j DNAT --to-destination {}\n",
                to(i)
            ));
        }
        script.push_str("COMMIT\n");
        let removal = "*nat\n-D PREROUTING -m addrtype --dst-type LOCAL -j NK-BENCH\n\
                       -D OUTPUT -m addrtype --dst-type LOCAL -j NK-BENCH\n\
                       -D POSTROUTING -m mark --mark 0x2000/0x2000 -j MASQUERADE\n\
                       -F NK-BENCH\n-X NK-BENCH\nCOMMIT\n";
        let restore = |input: &str| {
            let mut child = host
                .command("iptables-restore")
                .arg("--noflush")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        };
        let start = Instant::now();
        restore(&script);
        let add = start.elapsed();
        let start = Instant::now();
        restore(removal);
        (add, start.elapsed())
    };
    let mut add = [Vec::new(), Vec::new(), Vec::new()];
    let mut del = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..runs {
        for turn in 0..3 {
            let which = (round + turn) % 3;
            let (a, d) = match which {
                0 => ours(true),
                1 => theirs(),
                _ => ours(false),
            };
            add[which].push(a);
            del[which].push(d);
        }
    }
    let scenario = format!("publish N={n} ports");
    for (phase, samples) in [("add", &add), ("remove", &del)] {
        for (which, tool) in [
            (0, "netns-kit"),
            (1, "iptables-restore"),
            (2, "netns-kit, no table"),
        ] {
            report.add(&format!("{scenario} {phase}"), tool, samples[which].clone());
        }
    }
    report.ratio(
        "publish",
        n,
        "ports add",
        &add[0],
        "iptables-restore",
        &add[1],
    );
    report.ratio(
        "publish",
        n,
        "ports remove",
        &del[0],
        "iptables-restore",
        &del[1],
    );
}

fn dual_stack(report: &mut Report, n: usize) {
    println!("dual-stack against IPv4-only, bridged N={n}");
    let runs = runs_for(n).max(3);
    let setup = |ipv6, link_local| dual_stack_setup(n, ipv6, link_local);
    let (mut v4, mut dual, mut quiet) = (Vec::new(), Vec::new(), Vec::new());
    // The kernel's floor for both networks, where `NETNS_KIT_BENCH_FLOOR` names it.
    let floor = std::env::var_os("NETNS_KIT_BENCH_FLOOR").map(std::path::PathBuf::from);
    let (mut floor_v4, mut floor_dual) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        v4.push(setup(false, None));
        dual.push(setup(true, None));
        quiet.push(setup(true, Some(false)));
        if let Some(floor) = &floor {
            floor_v4.push(floor_setup(floor, "bridged", n));
            floor_dual.push(floor_setup(floor, "dual-stack", n));
        }
    }
    // `NETNS_KIT_BENCH_SPANS=1`: one more run of each, with the crate's steps timed.
    if std::env::var("NETNS_KIT_BENCH_SPANS").is_ok_and(|v| !v.is_empty() && v != "0") {
        use tracing_subscriber::prelude::*;
        let _ = tracing_subscriber::registry()
            .with(
                SpanTimes.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    meta.target().starts_with("netns_kit")
                })),
            )
            .try_init();
        for (name, ipv6, link_local) in [
            ("ipv4-only", false, None),
            ("dual-stack", true, None),
            ("dual, no fe80", true, Some(false)),
        ] {
            SPANS.lock().unwrap().clear();
            let took = setup(ipv6, link_local);
            println!("  {name}: {:.1} ms", ms(took));
            for (span, (count, total)) in SPANS.lock().unwrap().iter() {
                if span.starts_with("network") || span.starts_with("member") {
                    println!("    {span:<34} {count:>5} {:>10.1} ms", ms(*total));
                }
            }
        }
    }
    let scenario = format!("bridged N={n} setup");
    report.add(&scenario, "ipv4-only", v4.clone());
    report.add(&scenario, "dual-stack", dual.clone());
    report.add(&scenario, "dual, no fe80", quiet.clone());
    for (name, runs) in [("dual-stack", &dual), ("dual-stack-no-link-local", &quiet)] {
        let value = median(runs).as_secs_f64() / median(&v4).as_secs_f64();
        report.ratios.push(format!(
            "ratio bridged N={n} setup {name}/ipv4-only: {value:.2}"
        ));
    }
    if floor.is_some() {
        report.add(&scenario, "floor ipv4-only", floor_v4.clone());
        report.add(&scenario, "floor dual", floor_dual.clone());
        let value = median(&floor_dual).as_secs_f64() / median(&floor_v4).as_secs_f64();
        report.ratios.push(format!(
            "ratio bridged N={n} setup floor dual-stack/ipv4-only: {value:.2}"
        ));
    }
}

/// One build of `n` members by the kernel's floor (`floor-peer SCENARIO N 1`, `bridged` or
/// `dual-stack`), in a network namespace of its own; its setup time as it reports it.
fn floor_setup(floor: &std::path::Path, scenario: &str, n: usize) -> Duration {
    settle(n);
    let out = Command::new("unshare")
        .arg("--net")
        .arg(floor)
        .args([scenario, &n.to_string(), "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "floor-peer {scenario} {n} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let setup_ms: f64 = text
        .split_whitespace()
        .find_map(|f| f.strip_prefix("setup_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("floor-peer {scenario}: no setup_ms in {text:?}"));
    Duration::from_secs_f64(setup_ms / 1e3)
}

/// `-- --dual-stack N VARIANT`: one variant alone (`ipv4-only`, `dual-stack` or `no-fe80`),
/// five builds, each build's time printed: for `perf record -a` of one variant.
fn dual_stack_only(n: usize, variant: &str) {
    let (ipv6, link_local) = match variant {
        "ipv4-only" => (false, None),
        "dual-stack" => (true, None),
        "no-fe80" => (true, Some(false)),
        other => panic!("unknown variant {other:?}: ipv4-only, dual-stack or no-fe80"),
    };
    for _ in 0..5 {
        println!(
            "  {variant}: {:.1} ms",
            ms(dual_stack_setup(n, ipv6, link_local))
        );
    }
}

/// One bridged build of `n` members for the dual-stack scenario, timed; torn down after.
fn dual_stack_setup(n: usize, ipv6: bool, link_local: Option<bool>) -> Duration {
    settle(n);
    let host = Namespace::new_blocking().unwrap();
    let start = Instant::now();
    let mut net = bridged().host(&host).gateway("10.100.255.254/16");
    if ipv6 {
        net = net.gateway("fd64::ffff/64");
    }
    if let Some(on) = link_local {
        net = net.link_local_ipv6(on);
    }
    let net = net
        .members((0..n).map(|i| {
            let m = MemberSpec::new().address(member_address(i));
            if ipv6 {
                m.address(format!("fd64::{:x}/64", i + 1))
            } else {
                m
            }
        }))
        .create_blocking()
        .unwrap();
    let took = start.elapsed();
    drop((net, host));
    took
}

fn tracing_overhead(report: &mut Report, n: usize) {
    use std::sync::atomic::Ordering;
    use tracing_subscriber::{Layer, filter::filter_fn, fmt::format::FmtSpan, prelude::*};

    println!("tracing overhead, bridged N={n}");
    let rt = runtime();
    let runs = runs_for(n).max(3);
    let setup = || {
        settle(n);
        let host = Namespace::new_blocking().unwrap();
        let start = Instant::now();
        let net = rt
            .block_on(
                bridged()
                    .host(&host)
                    .gateway("10.100.255.254/16")
                    .members((0..n).map(|i| MemberSpec::new().address(member_address(i))))
                    .create(),
            )
            .unwrap();
        let took = start.elapsed();
        drop((net, host));
        took
    };
    let none: Vec<Duration> = (0..runs).map(|_| setup()).collect();
    // A global subscriber (members are built on library threads, which a thread-local default
    // would not reach); installed once, then switched per run.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_span_events(FmtSpan::CLOSE)
        .with_filter(filter_fn(|meta| {
            TRACING_ON.load(Ordering::Relaxed)
                && meta.target().starts_with("netns_kit")
                && *meta.level() <= tracing::Level::DEBUG
        }));
    if tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_err()
    {
        report.note("tracing overhead: a subscriber was already installed; skipped".into());
        return;
    }
    let (mut traced, mut off) = (Vec::new(), Vec::new());
    for run in 0..2 * runs {
        let on = run % 2 == 0;
        TRACING_ON.store(on, Ordering::Relaxed);
        let took = setup();
        if on { &mut traced } else { &mut off }.push(took);
    }
    TRACING_ON.store(false, Ordering::Relaxed);
    let scenario = format!("bridged N={n} setup");
    report.add(&scenario, "no subscriber", none.clone());
    report.add(&scenario, "fmt, info", traced.clone());
    report.add(&scenario, "fmt, filtered", off);
    let value = median(&traced).as_secs_f64() / median(&none).as_secs_f64();
    report.ratios.push(format!(
        "ratio bridged N={n} setup traced/untraced: {value:.2}"
    ));
}

// ---------------------------------------------------------------------------------------------
// The CNI reference bridge plugin.

const CNI_DIR: &str = "/usr/lib/cni";

fn cni_config(data_dir: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"nkbench","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.101.0.0/16","dataDir":"{data_dir}"}}}}"#
    )
}

fn cni_call(command: &str, container: &str, netns: &str, config: &str) {
    let mut child = Command::new(format!("{CNI_DIR}/bridge"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CNI bridge plugin (package containernetworking-plugins)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "CNI {command} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cni(report: &mut Report, n: usize) {
    if !std::path::Path::new(CNI_DIR).join("bridge").exists() {
        report.note(format!(
            "cni N={n}: skipped, {CNI_DIR}/bridge is not installed"
        ));
        return;
    }
    println!("CNI bridge plugin, N={n}");
    let rt = runtime();
    let data_dir = format!("/run/netns-kit-bench-ipam-{}", std::process::id());
    let config = cni_config(&data_dir);
    let (mut add, mut del) = (Vec::new(), Vec::new());
    let (mut kit_add, mut kit_del) = (Vec::new(), Vec::new());
    for _ in 0..runs_for(n).min(5) {
        // Namespaces exist before ADD, as a runtime would have them.
        sh(&format!(
            "for i in $(seq 0 {}); do ip netns add c$i; done",
            n - 1
        ));
        settle(n);
        let start = Instant::now();
        for i in 0..n {
            cni_call(
                "ADD",
                &format!("c{i}"),
                &format!("/run/netns/c{i}"),
                &config,
            );
        }
        add.push(start.elapsed() / n as u32);
        let start = Instant::now();
        for i in 0..n {
            cni_call(
                "DEL",
                &format!("c{i}"),
                &format!("/run/netns/c{i}"),
                &config,
            );
        }
        del.push(start.elapsed() / n as u32);
        sh(&format!(
            "for i in $(seq 0 {}); do ip netns del c$i; done; ip link del cni0",
            n - 1
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        wait_for_links(1);

        // The same work with netns-kit: existing namespaces joined one by one, then removed
        // one by one (what a runtime's ADD/DEL does).
        sh(&format!(
            "for i in $(seq 0 {}); do ip netns add c$i; done",
            n - 1
        ));
        settle(n);
        let (a, d) = rt.block_on(async {
            let host = Namespace::current().unwrap();
            let mut net = bridged()
                .host(&host)
                .bridge_name("cni0")
                .gateway("10.101.0.1/16")
                .create()
                .await
                .unwrap();
            let nss: Vec<Namespace> = (0..n)
                .map(|i| Namespace::open(format!("c{i}")).unwrap())
                .collect();
            let start = Instant::now();
            for (i, ns) in nss.iter().enumerate() {
                net.add_member(MemberSpec::in_namespace(ns).address(format!(
                    "10.101.{}.{}/16",
                    (i + 2) / 250,
                    (i + 2) % 250 + 1
                )))
                .await
                .unwrap();
            }
            let a = start.elapsed() / n as u32;
            let start = Instant::now();
            for i in 0..n {
                let ip: IpAddr = format!("10.101.{}.{}", (i + 2) / 250, (i + 2) % 250 + 1)
                    .parse()
                    .unwrap();
                net.remove_member(ip).await.unwrap();
            }
            let d = start.elapsed() / n as u32;
            net.delete().await.unwrap();
            (a, d)
        });
        kit_add.push(a);
        kit_del.push(d);
        sh(&format!(
            "for i in $(seq 0 {}); do ip netns del c$i; done",
            n - 1
        ));
        wait_for_links(1);
    }
    let scenario = format!("cni N={n} per member");
    report.add(&format!("{scenario} ADD"), "netns-kit", kit_add.clone());
    report.add(&format!("{scenario} ADD"), "cni-bridge", add.clone());
    report.add(&format!("{scenario} DEL"), "netns-kit", kit_del.clone());
    report.add(&format!("{scenario} DEL"), "cni-bridge", del.clone());
    report.ratio("cni", n, "add", &kit_add, "cni-bridge", &add);
    report.ratio("cni", n, "del", &kit_del, "cni-bridge", &del);
}

// ---------------------------------------------------------------------------------------------
// Impairment: the user-space path's cost.

/// The CPU time (user + system) of this process's threads named `netns-kit-relay`.
fn relay_cpu() -> Duration {
    let tick = 100.0; // USER_HZ
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "netns-kit-relay" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        total += ticks / tick;
    }
    Duration::from_secs_f64(total)
}

/// Sends `bytes` over one TCP connection from `a` to `to` (in `b`); the time until the receiver
/// has them all.
fn tcp_transfer(a: &Namespace, b: &Namespace, to: IpAddr, bytes: usize) -> Duration {
    use std::io::Read;
    let listener = b
        .run_blocking(|| std::net::TcpListener::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < bytes {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed at {got} of {bytes}");
            got += n;
        }
        Instant::now()
    });
    let start = Instant::now();
    let mut stream = a
        .run_blocking(move || std::net::TcpStream::connect((to, port)))
        .unwrap()
        .unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        stream.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    server.join().unwrap() - start
}

fn impairment(report: &mut Report) {
    use netns_kit::impair::{Backend, Direction, Impairment, Percent};
    println!("impairment: the user-space path against a plain veth");
    let (a, b) = (
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
    );
    let link = connect(&a, &b)
        .address("10.120.0.1/24", "10.120.0.2/24")
        .create_blocking()
        .unwrap();
    let to: IpAddr = "10.120.0.2".parse().unwrap();
    let bytes = 400 << 20;
    let gbit = |d: Duration| bytes as f64 * 8.0 / d.as_secs_f64() / 1e9;
    tcp_transfer(&a, &b, to, 16 << 20); // warm up
    let relay = Impairment::new().backend(Backend::UserSpace);
    // A per-packet option that changes nothing measurable: the offloads go off.
    let per_packet = relay.clone().loss(Percent::new(0.0001).unwrap());
    let (mut plain, mut diverted, mut segmented) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu, mut busy) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        plain.push(tcp_transfer(&a, &b, to, bytes));
        let guard = link
            .link()
            .impair_blocking(Direction::Outbound, &relay)
            .unwrap();
        let back = link
            .peer()
            .impair_blocking(Direction::Outbound, &relay)
            .unwrap();
        let before = relay_cpu();
        let took = tcp_transfer(&a, &b, to, bytes);
        cpu += relay_cpu() - before;
        busy += took;
        diverted.push(took);
        drop((guard, back));
        let guard = link
            .link()
            .impair_blocking(Direction::Outbound, &per_packet)
            .unwrap();
        segmented.push(tcp_transfer(&a, &b, to, bytes / 4) * 4);
        drop(guard);
    }
    report.add("tcp 400 MiB", "veth", plain.clone());
    report.add("tcp 400 MiB", "user space", diverted.clone());
    report.add("tcp 400 MiB", "no offloads", segmented.clone());
    report.note(format!(
        "tcp throughput: veth {:.2} Gbit/s, user-space link {:.2} Gbit/s (relay threads busy {:.0} % of one CPU meanwhile), without offloads {:.2} Gbit/s",
        gbit(median(&plain)),
        gbit(median(&diverted)),
        cpu.as_secs_f64() / busy.as_secs_f64() * 100.0,
        gbit(median(&segmented)),
    ));
    let ratio = |ours: &[Duration]| median(&plain).as_secs_f64() / median(ours).as_secs_f64();
    report.ratios.push(format!(
        "ratio userspace-link/veth tcp-throughput: {:.2} (goal >= 0.6)",
        ratio(&diverted)
    ));
    report.ratios.push(format!(
        "ratio userspace-link-no-offloads/veth tcp-throughput: {:.2}",
        ratio(&segmented)
    ));
    // Memory: a bulk transfer through a 25 ms delay fills the queue (at most `limit` frames).
    let before = vm_hwm_kib(std::process::id()).unwrap_or(0);
    let delayed = Impairment::new()
        .delay(Duration::from_millis(25))
        .backend(Backend::UserSpace);
    let guard = link
        .link()
        .impair_blocking(Direction::Outbound, &delayed)
        .unwrap();
    let took = tcp_transfer(&a, &b, to, 200 << 20);
    drop(guard);
    let after = vm_hwm_kib(std::process::id()).unwrap_or(0);
    report.note(format!(
        "relay memory: a 200 MiB transfer through a 25 ms delay ({:.2} Gbit/s) raised the peak RSS by {} MiB (to {} MiB)",
        (200u64 << 20) as f64 * 8.0 / took.as_secs_f64() / 1e9,
        after.saturating_sub(before) / 1024,
        after / 1024
    ));
    drop((link, a, b));
}

fn impairable_setup(report: &mut Report, n: usize) {
    use netns_kit::impair::{Backend, Impairment};
    println!("bridged N={n}: plain against every member impaired from its creation");
    let runs = runs_for(n).max(3);
    let setup = |impair: bool| {
        settle(n);
        let host = Namespace::new_blocking().unwrap();
        let start = Instant::now();
        // Impaired from their first packet: the diversion is part of building each member.
        let imp = Impairment::new()
            .delay(Duration::from_millis(1))
            .backend(Backend::UserSpace);
        let net = bridged()
            .host(&host)
            .gateway("10.100.255.254/16")
            .members((0..n).map(|i| {
                let m = MemberSpec::new().address(member_address(i));
                if impair { m.impair(imp.clone()) } else { m }
            }))
            .create_blocking()
            .unwrap();
        let took = start.elapsed();
        let start = Instant::now();
        drop(net);
        let teardown = start.elapsed();
        drop(host);
        (took, teardown)
    };
    let (mut plain, mut impaired) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(setup(false));
        impaired.push(setup(true));
    }
    for (phase, pick) in [("setup", 0), ("teardown", 1)] {
        let times = |runs: &[(Duration, Duration)]| -> Vec<Duration> {
            runs.iter()
                .map(|r| if pick == 0 { r.0 } else { r.1 })
                .collect()
        };
        let (plain, impaired) = (times(&plain), times(&impaired));
        let scenario = format!("bridged N={n} {phase}");
        report.add(&scenario, "plain", plain.clone());
        report.add(&scenario, "impaired", impaired.clone());
        let value = median(&impaired).as_secs_f64() / median(&plain).as_secs_f64();
        let goal = if pick == 0 { " (goal <= 1.5)" } else { "" };
        report.ratios.push(format!(
            "ratio bridged N={n} {phase} impairable/plain: {value:.2}{goal}"
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Profile: where a member's time goes (`-- --profile N [--blocking]`, see benches/README.md).

/// Wall time and count of every span of the crate, by span name.
static SPANS: std::sync::Mutex<std::collections::BTreeMap<&'static str, (u64, Duration)>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

struct SpanTimes;

impl<S> tracing_subscriber::Layer<S> for SpanTimes
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Instant::now());
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(start) = span.extensions().get::<Instant>().copied() else {
            return;
        };
        let mut spans = SPANS.lock().unwrap();
        let entry = spans.entry(span.metadata().name()).or_default();
        entry.0 += 1;
        entry.1 += start.elapsed();
    }
}

/// Builds one bridged network of `n` members (after one unmeasured warm-up run) with every
/// span of the crate timed, and prints the time per step and per member. Run under
/// `strace -f -c` (benches/profile.sh) for the syscalls and netlink messages per member.
fn profile(n: usize, blocking: bool) {
    use tracing_subscriber::prelude::*;
    let build = |rt: &tokio::runtime::Runtime| {
        let host = Namespace::new_blocking().unwrap();
        let start = Instant::now();
        let builder = bridged()
            .host(&host)
            .gateway("10.100.255.254/16")
            .members((0..n).map(|i| MemberSpec::new().address(member_address(i))));
        let net = if blocking {
            builder.create_blocking().unwrap()
        } else {
            rt.block_on(builder.create()).unwrap()
        };
        let took = start.elapsed();
        drop((net, host));
        took
    };
    let rt = runtime();
    build(&rt);
    settle(n);
    tracing_subscriber::registry()
        .with(
            SpanTimes.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("netns_kit")
            })),
        )
        .init();
    SPANS.lock().unwrap().clear();
    let took = build(&rt);
    let api = if blocking { "blocking" } else { "async" };
    println!(
        "profile: bridged N={n} setup ({api}) {:.1} ms, {:.3} ms per member",
        ms(took),
        ms(took) / n as f64
    );
    println!(
        "  {:<24} {:>7} {:>11} {:>16}",
        "span", "count", "total ms", "per member µs"
    );
    for (name, (count, total)) in SPANS.lock().unwrap().iter() {
        println!(
            "  {name:<24} {count:>7} {:>11.1} {:>16.1}",
            ms(*total),
            total.as_secs_f64() * 1e6 / n as f64
        );
    }
}
