//! The blocking API's threads: a plain `fn main` (this test has no harness, so no thread of its
//! own besides `main`) builds a bridged network of four members, drops everything, and within a
//! second has only its main thread again: the library's idle workers and relay threads exit (the
//! members' links are impaired and captured meanwhile), and the blocking API
//! starts no async runtime. Work in the caller's own namespace needs no library thread at all.
//! A runtime's one-container ADD leaves one worker and no other.

use std::time::{Duration, Instant};

use netns_kit::{
    MemberSpec, Namespace, bridged,
    impair::{Direction, Impairment},
};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // A sysctl of the caller's own namespace is read on the calling thread (read only: the
    // namespace this test started in is never changed).
    let own = Namespace::current().unwrap();
    own.sysctl_blocking("net.ipv4.ip_forward").unwrap();
    assert_eq!(
        threads(),
        1,
        "reading the own namespace's sysctl started a thread"
    );
    drop(own);
    let host = match Namespace::new_blocking() {
        Ok(host) => host,
        Err(e)
            if e.is_permission_denied()
                && std::env::var("NETNS_KIT_NO_SKIP").as_deref() != Ok("1") =>
        {
            println!("threads: skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(threads(), 2, "one worker made the host namespace");
    let net = bridged()
        .host(&host)
        .gateway("10.0.77.1/24")
        .members((2..6).map(|i| MemberSpec::new().address(format!("10.0.77.{i}/24"))))
        .create_blocking()
        .unwrap();
    let busy = threads();
    println!("threads with a bridged network of 4 members: {busy}");
    assert!(busy <= 5, "{busy} threads: at most 4 workers, by CPU count");
    // Every member's link impaired in user space and captured: a few relay threads, whatever
    // the number of links, gone with the last guard.
    let guards: Vec<_> = net
        .members()
        .iter()
        .map(|m| {
            m.link()
                .impair_blocking(
                    Direction::Inbound,
                    &Impairment::new().delay(Duration::from_millis(1)),
                )
                .unwrap()
        })
        .collect();
    let pcap = std::env::temp_dir().join(format!("nk-threads-{}.pcap", std::process::id()));
    let capture = net.members()[0].link().capture_blocking(&pcap).unwrap();
    let relays = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "netns-kit-relay")
        .count();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("relay threads for 4 impaired links and a capture: {relays} ({cpus} CPUs)");
    assert!(
        (1..=cpus.min(4)).contains(&relays),
        "{relays} relay threads"
    );
    drop(guards);
    capture.stop().unwrap();
    std::fs::remove_file(&pcap).unwrap();
    drop(net);
    drop(host);
    let start = Instant::now();
    while threads() > 1 && start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = threads();
    println!(
        "threads 1 s after everything was dropped: {left} (after {} ms)",
        start.elapsed().as_millis()
    );
    assert_eq!(left, 1, "the library's idle threads did not exit");
    one_container_add_starts_one_worker();
    println!("threads: 1 passed, 0 failed");
}

/// A runtime's ADD (one existing namespace joined to an existing bridge) with no worker alive
/// before leaves exactly one: the one started early, beside the checks, takes the member's
/// job (whether one more could be started for the job is `sys`'s unit test).
fn one_container_add_starts_one_worker() {
    let host = Namespace::new_blocking().unwrap();
    let container = Namespace::new_blocking().unwrap();
    let cni0 = netns_kit::Bridge::builder("cni0")
        .namespace(&host)
        .address("10.0.78.1/24")
        .create_blocking()
        .unwrap();
    let start = Instant::now();
    while threads() > 1 && start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(threads(), 1, "the library's idle threads did not exit");
    let net = bridged()
        .existing_bridge(&cni0)
        .gateway("10.0.78.1/24")
        .member(MemberSpec::in_namespace(&container).address("10.0.78.2/24"))
        .create_blocking()
        .unwrap();
    let during = threads();
    println!("threads after a one-container ADD with no worker alive before: {during}");
    assert_eq!(during, 2, "one worker for the one member's job");
    drop(net);
}
