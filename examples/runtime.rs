//! A container runtime's whole network flow, written only with the blocking API (no async
//! runtime is started; the example prints how many threads the process has).
//!
//! 1. The runtime owns a bridge, `cni0`, with the containers' gateway 10.88.0.1/16.
//! 2. **create**: container A is a process started in a new network namespace (its "init");
//!    the runtime opens that namespace by pid and gives it `eth0` on `cni0` with an address and
//!    a default route. Container B gets a named namespace (`/run/netns/...`). Both are kept:
//!    they outlive the process that wired them.
//! 3. Connectivity is proved from inside: A pings B and the gateway.
//! 4. **delete**, from a second, fresh process (this example run again as `runtime del ...`),
//!    the way a runtime's delete command runs: A's interface is removed through a handle opened
//!    by pid, B's namespace is removed by name. The bridge and its address stay.
//! 5. The example removes its own bridge and container process, and prints `runtime: ok`.
//!
//! By default everything happens inside a private network and mount namespace (the example
//! re-executes itself under `unshare`), so the machine is untouched. With `--in-host` it works
//! in the current namespace (as root), refuses to touch an existing `cni0`, and removes
//! everything it made.
//!
//! Run with `cargo run --example runtime [-- --in-host]`.

use std::{
    net::{IpAddr, Ipv4Addr},
    process::{Child, Command},
    time::Duration,
};

use netns_kit::{Bridge, MemberSpec, Namespace, NsName, bridged};

const PRIVATE_ENV: &str = "NETNS_KIT_EXAMPLE_PRIVATE";
const GATEWAY: &str = "10.88.0.1/16";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("del") {
        return delete(&args[1..]);
    }
    let in_host = args.iter().any(|a| a == "--in-host");
    if !in_host && std::env::var_os(PRIVATE_ENV).is_none() {
        return rerun_privately();
    }
    let host = Namespace::current()?;
    if host.link_by_name_blocking("cni0").is_ok() {
        return Err(
            "cni0 already exists here; this example will not share a real runtime's bridge".into(),
        );
    }

    // 1. The runtime's bridge, made once and kept (a runtime's daemon or its first container
    //    would do this).
    let cni0 = Bridge::builder("cni0")
        .namespace(&host)
        .address(GATEWAY)
        .create_blocking()?
        .keep();
    println!("{cni0} (kept); threads: {}", threads());

    // 2. create: container A by pid, container B by name.
    let mut init = Command::new("unshare")
        .args(["--net", "sleep", "300"])
        .spawn()?;
    let result = wire_and_check(&host, &init);
    let _ = init.kill();
    let _ = init.wait();
    // 5. The example's own bridge.
    host.link_by_name_blocking("cni0")?.delete_blocking()?;
    result?;
    println!("runtime: ok");
    Ok(())
}

fn wire_and_check(host: &Namespace, init: &Child) -> Result<()> {
    let pid = init.id();
    let container_a = wait_for_own_namespace(pid)?;
    let cni0 = Bridge::open_blocking(host, "cni0")?;
    let wired_a = bridged()
        .existing_bridge(&cni0)
        .gateway(GATEWAY)
        .member(MemberSpec::in_namespace(&container_a).address("10.88.0.2/16"))
        .create_blocking()?
        .keep();
    println!("create A (pid {pid}): {}", wired_a.members()[0]);

    let name = NsName::unique("ctr")?;
    let container_b = Namespace::named_blocking(name.as_str())?.keep();
    let wired_b = bridged()
        .existing_bridge(&cni0)
        .gateway(GATEWAY)
        .member(MemberSpec::in_namespace(&container_b).address("10.88.0.3/16"))
        .create_blocking()?
        .keep();
    println!("create B ({name}): {}", wired_b.members()[0]);
    println!("threads after wiring: {}", threads());

    // 3. From inside A: B and the gateway answer.
    for target in [Ipv4Addr::new(10, 88, 0, 3), Ipv4Addr::new(10, 88, 0, 1)] {
        let rtt = container_a.ping_blocking(IpAddr::V4(target), Duration::from_secs(2))?;
        println!("  A -> {target}: ok, rtt {:.3} ms", rtt.as_secs_f64() * 1e3);
    }
    println!("  ports on cni0: {}", cni0.ports_blocking()?.len());
    drop((wired_a, wired_b, container_a, container_b));

    // 4. delete, from another process with fresh handles.
    let me = std::env::current_exe()?;
    let status = Command::new(me)
        .args(["del", "--pid", &pid.to_string(), "--name", name.as_str()])
        .status()?;
    if !status.success() {
        return Err(format!("`runtime del` failed: {status}").into());
    }
    // A removed namespace is freed by the kernel shortly after its name goes (asynchronously,
    // as after `ip netns del`), and B's veth pair with it: wait for that, bounded.
    let mut left = cni0.ports_blocking()?.len();
    for _ in 0..5000 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        left = cni0.ports_blocking()?.len();
    }
    println!("after delete: {left} ports on cni0; {cni0} and its address stay");
    if left != 0 {
        return Err(format!("{left} ports left on cni0").into());
    }
    Ok(())
}

/// `runtime del --pid PID --name NAME`: what a runtime's delete command does, in a process of
/// its own.
fn delete(args: &[String]) -> Result<()> {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .ok_or(format!("missing {flag}"))
    };
    let pid: u32 = value("--pid")?.parse()?;
    // A's namespace lives as long as its process: remove just the interface.
    Namespace::from_pid(pid)?
        .link_by_name_blocking("eth0")?
        .delete_blocking()?;
    println!("delete A (pid {pid}): eth0 removed");
    // B's namespace exists only by its name: removing the name frees it, and its veth pair.
    let name = value("--name")?;
    Namespace::delete_named(name)?;
    println!("delete B ({name}): namespace removed");
    Ok(())
}

/// Waits until process `pid` runs in a network namespace other than ours (`unshare` has
/// exec'd its command) and opens it.
fn wait_for_own_namespace(pid: u32) -> Result<Namespace> {
    let ours = Namespace::current()?;
    for _ in 0..500 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            let ns = Namespace::from_pid(pid)?;
            if ns != ours {
                return Ok(ns);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!("process {pid} never got a namespace of its own").into())
}

/// The number of threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Runs this example again inside a private network and mount namespace with its own
/// `/run/netns`, so nothing on the machine changes.
fn rerun_privately() -> Result<()> {
    let me = std::env::current_exe()?;
    let script = r#"mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns && ip link set lo up && exec "$0" "$@""#;
    let status = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ])
        .arg(me)
        .args(std::env::args().skip(1))
        .env(PRIVATE_ENV, "1")
        .status()?;
    std::process::exit(status.code().unwrap_or(1));
}
