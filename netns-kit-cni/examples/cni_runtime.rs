//! `netns-kit-cni` driven the way containerd, CRI-O or Podman drive a CNI plugin list: a
//! miniature runtime that reads a `.conflist`, finds each plugin by its `type` in `CNI_PATH`,
//! and runs the list for one container — ADD in order (each plugin getting the previous one's
//! result as `prevResult`), CHECK of the interface plugin, DEL in reverse order — then shows that
//! the container reached its gateway and that DEL left nothing.
//!
//! ```sh
//! cargo build -p netns-kit-cni                                # builds target/debug/netns-kit-cni
//! cargo run -p netns-kit-cni --example cni_runtime [-- FILE.conflist]
//! ```
//!
//! The default list is `examples/cni/netns-kit.conflist` (this plugin, then the reference
//! `portmap`, `firewall` and `tuning`); `CNI_PATH` defaults to the directory cargo built the
//! plugin into, then `/usr/lib/cni` (the reference plugins, Debian's
//! `containernetworking-plugins`). Everything happens inside a private network and mount
//! namespace (the example re-executes itself under `unshare`), and `host-local` keeps its
//! leases in a temporary directory, so nothing on the machine changes.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

const PRIVATE_ENV: &str = "NETNS_KIT_EXAMPLE_PRIVATE";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    if std::env::var_os(PRIVATE_ENV).is_none() {
        let status = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .env(PRIVATE_ENV, "1")
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let file = std::env::args().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cni/netns-kit.conflist"),
        PathBuf::from,
    );
    let list: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    let cni_path = std::env::var("CNI_PATH").unwrap_or_else(|_| {
        // target/debug/examples/cni_runtime -> target/debug, where cargo puts the plugin.
        let exe = std::env::current_exe().unwrap();
        let built = exe.parent().and_then(Path::parent).unwrap().to_owned();
        format!("{}:/usr/lib/cni", built.display())
    });
    let leases = std::env::temp_dir().join(format!("netns-kit-cni-example-{}", std::process::id()));
    let outcome = run(&list, &cni_path, &leases);
    let _ = std::fs::remove_dir_all(&leases);
    outcome?;
    println!("cni_runtime: ok");
    Ok(())
}

fn run(list: &Value, cni_path: &str, leases: &Path) -> Result<()> {
    sh("ip link set lo up")?;
    // The container: a process in a network namespace of its own, as a runtime's sandbox.
    let mut sandbox = Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()?;
    let result = (|| -> Result<()> {
        let netns = wait_for_own_namespace(sandbox.id())?;
        let plugins = list["plugins"]
            .as_array()
            .ok_or("the list has no \"plugins\"")?;
        let mut prev: Option<Value> = None;
        for p in plugins {
            let conf = plugin_conf(list, p, prev.as_ref(), leases);
            let out = exec(p, cni_path, "ADD", &netns, &conf)?;
            println!("ADD {:<14} -> {}", p["type"].as_str().unwrap_or("?"), out);
            prev = Some(out);
        }
        let result = prev.ok_or("empty plugin list")?;
        let gateway = result["ips"][0]["gateway"]
            .as_str()
            .ok_or("no gateway in the result")?;
        let ping = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["ping", "-c", "1", "-W", "2", "-q", gateway])
            .output()?;
        println!(
            "container -> gateway {gateway}: {}",
            if ping.status.success() {
                "ok"
            } else {
                "no answer"
            }
        );
        if !ping.status.success() {
            return Err("the container cannot reach its gateway".into());
        }
        // libcni would CHECK every plugin of the list; the reference `portmap` 1.1.1 fails its
        // own CHECK whatever plugin comes before it (it looks for an IPv6 chain it never
        // made), so this runtime checks the interface plugin.
        let first = &plugins[0];
        exec(
            first,
            cni_path,
            "CHECK",
            &netns,
            &plugin_conf(list, first, Some(&result), leases),
        )?;
        println!(
            "CHECK {}: the container is wired as the result says",
            first["type"]
        );
        for p in plugins.iter().rev() {
            let conf = plugin_conf(list, p, Some(&result), leases);
            exec(p, cni_path, "DEL", &netns, &conf)?;
        }
        let left = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["ip", "-o", "link"])
            .output()?;
        let links = String::from_utf8_lossy(&left.stdout).lines().count();
        println!("DEL: {links} link(s) left in the container (its lo)");
        if links != 1 {
            return Err("DEL left interfaces in the container".into());
        }
        Ok(())
    })();
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    result
}

/// What libcni gives each plugin of a list: the list's name and version, the previous result,
/// and the runtime's values for the capabilities it declares (here a port mapping).
fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>, leases: &Path) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    if conf["ipam"]["type"] == "host-local" && conf["ipam"].get("dataDir").is_none() {
        conf["ipam"]["dataDir"] = json!(leases);
    }
    if conf["capabilities"]["portMappings"] == true {
        conf["runtimeConfig"] =
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    }
    conf
}

/// Runs one plugin as a runtime does: found in `CNI_PATH`, the `CNI_*` variables set, the
/// configuration on stdin; its result (or `null`), or its error object as the error.
fn exec(plugin: &Value, cni_path: &str, command: &str, netns: &str, conf: &Value) -> Result<Value> {
    let name = plugin["type"].as_str().ok_or("a plugin without \"type\"")?;
    let path = cni_path
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!("plugin {name:?} is not in CNI_PATH {cni_path} (run `cargo build -p netns-kit-cni`; the reference plugins come with `containernetworking-plugins`)")
        })?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "example")
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{name} {command} failed: {text}").into());
    }
    Ok(if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

/// Waits until process `pid` runs in a network namespace other than ours; its path.
fn wait_for_own_namespace(pid: u32) -> Result<String> {
    let ours = std::fs::read_link("/proc/self/ns/net")?;
    for _ in 0..500 {
        let path = format!("/proc/{pid}/ns/net");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" && std::fs::read_link(&path)? != ours {
            return Ok(path);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Err(format!("process {pid} never got a namespace of its own").into())
}

fn sh(script: &str) -> Result<()> {
    let status = Command::new("sh").arg("-c").arg(script).status()?;
    if !status.success() {
        return Err(format!("failed: {script}").into());
    }
    Ok(())
}
