#![allow(missing_docs)]
//! The per-test sandbox and checks made from outside the library.
//!
//! Every test builds its topology inside a fresh anonymous namespace of its own (its "host"),
//! so no test touches the namespace the test process started in, and tests running in parallel
//! cannot see each other. Checks run the system's tools (`ip -j`, `ping`, `readlink`) through
//! `nsenter --net=/proc/PID/fd/N`, not through this crate, so they do not trust the code under
//! test.
//!
//! Named namespaces live in `/run/netns`, which is shared by the whole machine: before `main`,
//! each test binary run as root moves into a mount namespace of its own with an empty tmpfs on
//! `/run/netns` (see [`private_run_netns`]), so what other programs (or an earlier `ip netns
//! add`) left there is invisible to it, and what it makes is invisible to them. Tests of one
//! binary still share that directory: they check only names with their own prefix, and the
//! tests that run the reaper (which scans all of it) take [`reaper_lock`].
#![allow(dead_code)]

use std::{
    os::fd::AsRawFd,
    process::Command,
    sync::{Condvar, Mutex},
};

use netns_kit::Namespace;
use serde_json::Value;

/// Runs [`private_run_netns`] when the test binary is loaded, before `main` starts any thread.
// SAFETY: `.init_array` entries are called once by the loader, before `main`, with no other
// thread running; the function takes no arguments, never unwinds (it only makes syscalls whose
// errors it ignores) and touches no Rust runtime state.
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static PRIVATE_RUN_NETNS: extern "C" fn() = private_run_netns;

/// Moves this test process into a new mount namespace whose `/run/netns` is an empty tmpfs.
///
/// It must run before any thread exists: `unshare(CLONE_NEWNS)` moves only the calling thread,
/// and threads inherit the mount namespace of the thread that starts them, so the test
/// harness's threads, the library's workers and every child process see the private directory.
/// Without root (the rootless and lab tests run as nobody too) it does nothing: those tests
/// make their own user and mount namespaces. A child a test starts from this binary (a test in a
/// role, see [`child`]) inherits the namespace and the variable [`PRIVATE_ENV`], and stays in
/// its parent's.
extern "C" fn private_run_netns() {
    use nix::{
        mount::{MsFlags, mount},
        sched::{CloneFlags, unshare},
    };
    if std::env::var_os(PRIVATE_ENV).is_some()
        || !nix::unistd::geteuid().is_root()
        || unshare(CloneFlags::CLONE_NEWNS).is_err()
    {
        return;
    }
    let none: Option<&str> = None;
    let private = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none);
    // (`ip netns add` creates `/run/netns` too when it is missing.)
    let own = private.is_ok()
        && std::fs::create_dir_all("/run/netns").is_ok()
        && mount(
            Some("tmpfs"),
            "/run/netns",
            Some("tmpfs"),
            MsFlags::empty(),
            none,
        )
        .is_ok();
    if !own {
        // The machine's `/run/netns` it is, as without this: say nothing to the children.
        return;
    }
    // SAFETY: no other thread exists yet (see above), so nothing reads the environment while
    // it changes.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(PRIVATE_ENV, "1")
    };
}

/// Set in a test process (and so in its children) that has its own `/run/netns`.
pub const PRIVATE_ENV: &str = "NETNS_KIT_TEST_PRIVATE_RUN_NETNS";

/// Serializes, within one test binary, the tests that run the reaper or leave named
/// namespaces of killed owners behind for it: the reaper scans all of `/run/netns`, so two such
/// tests at once would remove each other's leftovers. Held until the guard drops (also in an
/// async test, across `.await`s: each such test has a runtime of its own).
pub fn reaper_lock() -> ReaperLock {
    let mut busy = REAPER.0.lock().unwrap_or_else(|p| p.into_inner());
    while *busy {
        busy = REAPER.1.wait(busy).unwrap_or_else(|p| p.into_inner());
    }
    *busy = true;
    ReaperLock(())
}

static REAPER: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// The guard of [`reaper_lock`].
#[must_use]
pub struct ReaperLock(());

impl Drop for ReaperLock {
    fn drop(&mut self) {
        *REAPER.0.lock().unwrap_or_else(|p| p.into_inner()) = false;
        REAPER.1.notify_one();
    }
}

/// Entries of `/run/netns` (this test binary's own, see the module docs) whose name starts
/// with `prefix`, as `ip netns list` shows them.
pub fn netns_list(prefix: &str) -> Vec<String> {
    let out = tool("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The Debian package that provides `program`, for the one-line message when it is missing.
fn package_of(program: &str) -> &'static str {
    match program {
        "ip" | "bridge" | "tc" => "iproute2",
        "ping" => "iputils-ping",
        p if p.starts_with("ip6tables") || p.starts_with("iptables") => "iptables",
        "nsenter" | "unshare" | "setpriv" => "util-linux",
        "sysctl" => "procps",
        "tcpdump" => "tcpdump",
        "curl" => "curl",
        "nft" => "nftables",
        _ => "coreutils",
    }
}

/// A command for the system tool `program`. If the tool is not installed, the test stops here
/// with one line saying what to install, instead of failing somewhere inside.
pub fn tool(program: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        panic!(
            "the tests need `{program}`, which is not installed: install the `{}` package (e.g. `apt-get install {}`)",
            package_of(program),
            package_of(program)
        );
    }
    Command::new(program)
}

/// A fresh private namespace to act as this test's host.
pub async fn sandbox() -> Namespace {
    Namespace::new()
        .await
        .expect("create the test's sandbox namespace")
}

/// The path under /proc through which outside tools reach `ns`.
pub fn proc_path(ns: &Namespace) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd())
}

/// `nsenter --net=... PROGRAM ARGS`, a command run in `ns` without this crate's help.
pub fn outside(ns: &Namespace, program: &str, args: &[&str]) -> Command {
    tool(program); // named if missing, before nsenter would only say "No such file"
    let mut c = tool("nsenter");
    c.arg(format!("--net={}", proc_path(ns)))
        .arg("--")
        .arg(program)
        .args(args);
    c
}

/// Runs `ip -j ARGS` in `ns` from outside and parses its JSON.
pub fn ip_json(ns: &Namespace, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = outside(ns, "ip", &full).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {full:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON from ip {full:?}: {e}: {text}"))
}

/// Runs `nft -j ARGS` in `ns` from outside and parses its JSON.
#[allow(dead_code)]
pub fn nft_json(ns: &Namespace, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = outside(ns, "nft", &full).output().expect("run nft");
    assert!(
        out.status.success(),
        "nft {full:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from nft")
}

/// The names of the bridge-family tables in `ns` that filter a bridged network's router
/// messages (`netns-kit-rm-…`).
#[allow(dead_code)]
pub fn router_message_tables(ns: &Namespace) -> Vec<String> {
    nft_json(ns, &["list", "tables", "bridge"])["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["table"]["name"].as_str())
        .filter(|n| n.starts_with("netns-kit-rm-"))
        .map(str::to_owned)
        .collect()
}

/// Names of the links in `ns`, from `ip -j link`.
pub fn link_names(ns: &Namespace) -> Vec<String> {
    ip_json(ns, &["link"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

/// The JSON object of link `name` in `ns`.
pub fn link_json(ns: &Namespace, name: &str) -> Value {
    let all = ip_json(ns, &["-d", "link", "show", "dev", name]);
    all[0].clone()
}

/// `ADDR/PREFIX` strings of the global addresses of `dev` in `ns`.
pub fn addrs(ns: &Namespace, dev: &str) -> Vec<String> {
    let v = ip_json(ns, &["addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for info in v[0]["addr_info"].as_array().into_iter().flatten() {
        if info["scope"] == "global" {
            out.push(format!(
                "{}/{}",
                info["local"].as_str().unwrap(),
                info["prefixlen"]
            ));
        }
    }
    out
}

/// Whether a real `ping` from `ns` to `addr` gets an answer within a second or two.
pub fn ping(ns: &Namespace, addr: &str) -> bool {
    outside(ns, "ping", &["-c", "1", "-W", "2", "-q", addr])
        .output()
        .expect("run ping")
        .status
        .success()
}

/// The inode of the namespace at `path` (a `/proc/.../ns/net` link or a `/run/netns` bind
/// mount), as an outside `stat -L` reports it.
pub fn inode_outside(path: &str) -> u64 {
    let out = tool("stat")
        .args(["-L", "-c", "%i", path])
        .output()
        .expect("stat");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "stat {path} said {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Waits (bounded) until `cond` holds; for the kernel's asynchronous namespace cleanup.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A namespace made with `ip netns add` (not by this crate), deleted with `ip netns del` when
/// dropped, even if the test panics.
pub struct IpNetns(pub String);

impl IpNetns {
    pub fn add(name: &str) -> IpNetns {
        let ok = tool("ip").args(["netns", "add", name]).status().unwrap();
        assert!(ok.success(), "ip netns add {name}");
        IpNetns(name.to_owned())
    }
}

impl Drop for IpNetns {
    fn drop(&mut self) {
        let _ = tool("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A real TCP round trip: a server bound to `addr:port` inside `server`, a client connecting
/// from inside `client`; returns whether the bytes came back.
pub fn tcp_echo(server: &Namespace, client: &Namespace, addr: std::net::IpAddr) -> bool {
    use std::io::{Read, Write};
    let listener = server
        .run_blocking(move || std::net::TcpListener::bind((addr, 0)))
        .unwrap()
        .expect("bind inside the server namespace");
    let port = listener.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let ok = client
        .run_blocking(move || {
            let timeout = std::time::Duration::from_secs(3);
            let Ok(mut c) = std::net::TcpStream::connect_timeout(&(addr, port).into(), timeout)
            else {
                return false;
            };
            c.set_read_timeout(Some(timeout)).unwrap();
            c.write_all(b"hello").unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).is_ok() && &buf == b"hello"
        })
        .unwrap();
    if ok {
        serve.join().unwrap();
    }
    ok
}

/// Runs `ip -j ADDR/ROUTE ...` style queries and returns the `dst` of every route.
pub fn routes(ns: &Namespace, v6: bool) -> Vec<Value> {
    let args: &[&str] = if v6 { &["-6", "route"] } else { &["route"] };
    ip_json(ns, args).as_array().unwrap().clone()
}

/// Whether `flags` (a JSON array from `ip -j link`) contains `flag`.
pub fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"].as_array().unwrap().iter().any(|f| f == flag)
}

/// The environment variable that makes a test run as a child process in a given role.
pub const ROLE_ENV: &str = "NETNS_KIT_TEST_ROLE";

/// The role this test process plays, if it was started by [`child`].
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A command that re-runs test `test` of this test binary, alone, as a child in role `role`
/// (the test checks [`role`] first and acts as the child).
pub fn child(test: &str, role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role);
    c
}

/// A small deterministic-per-seed random generator (xorshift64*), so tests need no extra crate.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock (or `NETNS_KIT_TEST_SEED`), printed so a failing run can be
    /// replayed with that variable.
    pub fn from_time(what: &str) -> Rng {
        let seed = std::env::var("NETNS_KIT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        println!("{what}: seed {seed}");
        Rng(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Entries of /run/netns whose name starts with `prefix`.
pub fn run_netns_entries(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// What `program` (`iptables-save`/`ip6tables-save`) prints in `ns`, without comments and
/// counters: every table that exists, with its chains, policies and rules.
pub fn saved(ns: &Namespace, program: &str) -> String {
    let out = outside(ns, program, &[]).output().unwrap();
    assert!(out.status.success(), "{program}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `-A FORWARD ...` rules of `program` (`iptables`/`ip6tables`) in `ns`.
pub fn forward_rules(ns: &Namespace, program: &str) -> Vec<String> {
    let out = outside(ns, program, &["-w", "-S", "FORWARD"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A"))
        .map(str::to_owned)
        .collect()
}

/// Runs `f` on a new thread inside `ns` (a plain `setns`, not this crate).
pub fn in_ns<T: Send + 'static>(
    ns: &Namespace,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    use std::os::fd::AsFd;
    let fd = ns.as_fd().try_clone_to_owned().unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
}

/// A TCP server in `ns` on `port` (all addresses, IPv4 and IPv6) that answers one connection:
/// reads a line and writes it back. Listening when this returns.
pub fn tcp_echo_once(ns: &Namespace, port: u16) -> std::thread::JoinHandle<()> {
    use std::io::{BufRead, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = in_ns(ns, move || {
        let listener = std::net::TcpListener::bind(("::", port)).unwrap();
        tx.send(()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .unwrap();
        (&stream).write_all(line.as_bytes()).unwrap();
    });
    rx.recv().unwrap();
    handle
}

/// A TCP connection from `ns` to `addr:port` that sends a line and reads it back: a real
/// round trip through whatever lies between.
pub fn tcp_round_trip(ns: &Namespace, addr: &str, port: u16) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let to: std::net::SocketAddr = std::net::SocketAddr::new(addr.parse().unwrap(), port);
    in_ns(ns, move || {
        let timeout = std::time::Duration::from_secs(3);
        let stream =
            std::net::TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("{to}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        (&stream)
            .write_all(b"hello across\n")
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line == "hello across\n" {
            Ok(())
        } else {
            Err(format!("{to} answered {line:?}"))
        }
    })
    .join()
    .unwrap()
}

/// A sysctl of `ns` as an outside `cat /proc/sys/...` reads it (`net.ipv4.ip_forward`).
pub fn sysctl_outside(ns: &Namespace, key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let out = outside(ns, "cat", &[&path]).output().expect("run cat");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An example of the package whose test this is, built by `cargo test` next to the test
/// binaries (`target/debug/deps/TEST-HASH` -> `target/debug/examples/NAME`).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}
