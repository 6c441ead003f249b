//! `ipam::HostLocal` against the reference `host-local` plugin, run on the same store: what one
//! leases the other sees and releases, and both hand out addresses in the same order.

use std::{io::Write, net::IpAddr, process::Stdio};

use netns_kit::{
    Error,
    ipam::{HostLocal, IpRange},
};
use serde_json::{Value, json};

const PLUGIN: &str = "/usr/lib/cni/host-local";

fn have_plugin(test: &str) -> bool {
    if std::path::Path::new(PLUGIN).exists() {
        return true;
    }
    assert!(
        std::env::var_os("NETNS_KIT_NO_SKIP").is_none_or(|v| v != "1"),
        "{test}: {PLUGIN} is missing (apt-get install containernetworking-plugins)"
    );
    println!("skipped {test}: {PLUGIN} is missing (apt-get install containernetworking-plugins)");
    false
}

fn plugin(command: &str, id: &str, dir: &std::path::Path) -> Value {
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "lab",
        "ipam": {
            "type": "host-local",
            "dataDir": dir,
            "ranges": [[{"subnet": "10.78.0.0/24", "rangeEnd": "10.78.0.4"}], [{"subnet": "fd78::/64"}]]
        }
    });
    let mut child = std::process::Command::new(PLUGIN)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn store(dir: &std::path::Path) -> HostLocal {
    HostLocal::new(
        dir,
        "lab",
        vec![
            vec![
                IpRange::new("10.78.0.0/24")
                    .unwrap()
                    .end("10.78.0.4".parse().unwrap())
                    .unwrap(),
            ],
            vec![IpRange::new("fd78::/64").unwrap()],
        ],
    )
    .unwrap()
}

#[test]
fn leases_are_shared_with_the_reference_plugin() {
    if !have_plugin("leases_are_shared_with_the_reference_plugin") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netns-kit-ipam-{}", std::process::id()));
    let ours = store(&dir);
    let first = ours.allocate("c1", "eth0", &[]).unwrap();
    assert_eq!(first[0].address.to_string(), "10.78.0.2/24");
    assert_eq!(first[0].gateway, "10.78.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(first[1].address.to_string(), "fd78::2/64");
    // The plugin goes on after ours (round robin), and ours after it.
    let theirs = plugin("ADD", "c2", &dir);
    assert_eq!(theirs["ips"][0]["address"], "10.78.0.3/24", "{theirs}");
    let third = ours.allocate("c3", "eth0", &[]).unwrap();
    assert_eq!(third[0].address.to_string(), "10.78.0.4/24");
    // Exhausted (.2 to .4): ours says what the plugin says.
    let full = plugin("ADD", "c4", &dir);
    let e = ours.allocate("c4", "eth0", &[]).unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(
        full["msg"]
            .as_str()
            .unwrap()
            .ends_with(&e.to_string().replace("cannot allocate from range 0: ", "")),
        "{full} vs {e}"
    );
    // Nothing half-made: the failed allocation left no IPv6 lease for c4.
    assert!(ours.leases().unwrap().iter().all(|(_, id, _)| id != "c4"));
    // Each releases the other's.
    assert_eq!(plugin("DEL", "c1", &dir), Value::Null);
    assert_eq!(ours.release("c2", "eth0").unwrap().len(), 2);
    let mut left: Vec<String> = ours
        .leases()
        .unwrap()
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    left.sort();
    assert_eq!(left, ["c3", "c3"]);
    // A requested address, taken and free.
    let e = ours
        .allocate("c5", "eth0", &["10.78.0.4".parse().unwrap()])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("requested IP address 10.78.0.4 is not available"),
        "{e}"
    );
    let asked = ours
        .allocate("c5", "eth0", &["10.78.0.2".parse().unwrap()])
        .unwrap();
    assert_eq!(asked[0].address.to_string(), "10.78.0.2/24");
    // The file format: id, CR LF, interface name.
    assert_eq!(
        std::fs::read_to_string(dir.join("lab/10.78.0.2")).unwrap(),
        "c5\r\neth0"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_ranges_are_refused_naming_what() {
    for (subnet, says) in [
        ("10.78.0.5/24", "host bits set"),
        ("10.78.0.0/31", "too small"),
        ("10.78.0.0/33", "10.78.0.0/33"),
    ] {
        let e = IpRange::new(subnet).unwrap_err();
        assert!(
            matches!(e, Error::InvalidInput { .. }) && e.to_string().contains(says),
            "{e}"
        );
    }
    let e = IpRange::new("10.78.0.0/24")
        .unwrap()
        .start("10.79.0.1".parse().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("not in network"), "{e}");
    let e = HostLocal::new(
        "/tmp",
        "x",
        vec![vec![
            IpRange::new("10.78.0.0/24").unwrap(),
            IpRange::new("10.78.0.0/25").unwrap(),
        ]],
    )
    .unwrap_err();
    assert!(e.to_string().contains("overlap"), "{e}");
    let e = HostLocal::new(
        "/tmp",
        "x",
        vec![vec![
            IpRange::new("10.78.0.0/24").unwrap(),
            IpRange::new("fd78::/64").unwrap(),
        ]],
    )
    .unwrap_err();
    assert!(e.to_string().contains("mixed"), "{e}");
    let e = HostLocal::new(
        "/tmp",
        "../x",
        vec![vec![IpRange::new("10.78.0.0/24").unwrap()]],
    )
    .unwrap_err();
    assert!(e.to_string().contains("path component"), "{e}");
}

/// Leases in the plugin's older format (the container id only) count as the container's and
/// are released as the plugin releases them: once per range set, when no new-style lease of
/// the container is left.
#[test]
fn old_id_only_leases_are_released_as_the_plugin_does() {
    let dir = std::env::temp_dir().join(format!("netns-kit-ipam-old-{}", std::process::id()));
    let two_sets = store(&dir);
    std::fs::create_dir_all(dir.join("lab")).unwrap();
    let lease = |name: &str, text: &str| std::fs::write(dir.join("lab").join(name), text).unwrap();
    lease("10.78.0.3", "c9");
    // A second allocation in that set is refused: the old lease counts as the container's.
    let e = two_sets.allocate("c9", "eth0", &[]).unwrap_err();
    assert!(e.to_string().contains("duplicate allocation"), "{e}");
    lease("10.78.0.2", "c9\r\neth0");
    lease("fd78::2", "c9\r\neth0");
    // Two range sets: the new leases and the old one.
    assert_eq!(two_sets.release("c9", "eth0").unwrap().len(), 3);
    // One range set: the old lease stays while a new-style one was found, and goes next time.
    let one_set = HostLocal::new(
        &dir,
        "lab",
        vec![vec![IpRange::new("10.78.0.0/24").unwrap()]],
    )
    .unwrap();
    lease("10.78.0.9", "c8");
    lease("10.78.0.5", "c8\r\neth0");
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(one_set.release("c8", "eth0").unwrap(), [ip("10.78.0.5")]);
    assert_eq!(one_set.release("c8", "eth0").unwrap(), [ip("10.78.0.9")]);
    let _ = std::fs::remove_dir_all(&dir);
}
