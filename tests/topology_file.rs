//! A lab from a topology file (`examples/topology.toml`), checked from outside: every host's
//! addresses and routes (`ip -j`), the router's forwarding, the link's interface names, pings
//! across the router and over the link; the JSON form reads the same; mistakes are refused
//! before anything is made, naming what is wrong.
#![cfg(feature = "topology-file")]

mod common;

use common::{ip_json, ping, sysctl_outside};
use netns_kit::lab::{Lab, Topology};

fn example() -> Topology {
    Topology::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/topology.toml"
    ))
    .unwrap()
}

/// `ADDR/PREFIX` of every global address of `dev` in the lab host `host`.
fn global_addresses(lab: &Lab, host: &str, dev: &str) -> Vec<String> {
    let v = ip_json(lab.host(host).unwrap(), &["addr", "show", "dev", dev]);
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[test]
fn the_example_file_builds_a_routed_lab_with_a_link() {
    let mut lab = Lab::new_blocking("topology_file").unwrap();
    lab.add_topology_blocking(&example()).unwrap();
    assert_eq!(
        lab.hosts().collect::<Vec<_>>(),
        ["backup", "web1", "web2", "web3", "r1", "db1", "db2"]
    );
    assert_eq!(
        global_addresses(&lab, "web3", "eth0"),
        ["10.40.1.4/24", "fd40:1::4/64"]
    );
    assert_eq!(
        global_addresses(&lab, "db1", "eth0"),
        ["10.40.2.2/24", "fd40:2::2/64"]
    );
    assert_eq!(global_addresses(&lab, "db1", "to-backup"), ["10.40.9.1/30"]);
    assert_eq!(global_addresses(&lab, "backup", "to-db1"), ["10.40.9.2/30"]);
    let routes = ip_json(
        lab.host("web1").unwrap(),
        &["-6", "route", "show", "default"],
    );
    assert_eq!(routes[0]["gateway"], "fd40:1::1");
    // A link adds no default route: backup has none.
    let routes = ip_json(
        lab.host("backup").unwrap(),
        &["-4", "route", "show", "default"],
    );
    assert_eq!(routes, serde_json::json!([]));
    let r1 = lab.host("r1").unwrap();
    assert_eq!(sysctl_outside(r1, "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl_outside(r1, "net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(
        sysctl_outside(lab.host("db1").unwrap(), "net.ipv4.ip_forward"),
        "0"
    );
    assert!(ping(lab.host("web1").unwrap(), "10.40.2.3"));
    assert!(ping(lab.host("db2").unwrap(), "fd40:1::2"));
    assert!(ping(lab.host("backup").unwrap(), "10.40.9.1"));
}

#[test]
fn json_describes_the_same_topology() {
    let toml = example();
    let json = serde_json::to_string(&toml).unwrap();
    assert_eq!(Topology::from_json(&json).unwrap(), toml);
    let dir = std::env::temp_dir().join(format!("netns-kit-topology-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lab.json");
    std::fs::write(&path, &json).unwrap();
    assert_eq!(Topology::from_file(&path).unwrap(), toml);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mistakes_are_refused_before_anything_is_made() {
    let cases: &[(&str, &str)] = &[
        (
            "[[lan]]\nsubnet = [\"10.1.0.0/24\"]\nhosts = [\"a\"]\n",
            "unknown field `subnet`",
        ),
        (
            "[[lan]]\nsubnets = [\"10.1.0.0/33\"]\nhosts = [\"a\"]\n",
            "10.1.0.0/33",
        ),
        (
            "[[lan]]\nsubnets = [\"10.1.0.0/30\"]\nhosts = [\"a\", \"b\"]\n",
            "too small",
        ),
        (
            "[[lan]]\nsubnets = [\"10.1.0.0/24\"]\nhosts = [\"a\"]\n[[lan]]\nsubnets = [\"10.2.0.0/24\"]\nhosts = [\"a\"]\n",
            "is on LAN 0 too",
        ),
        (
            "[[lan]]\nsubnets = [\"10.1.0.0/24\"]\nhosts = [\"a\"]\nrouter = \"r\"\n",
            "two or more LANs",
        ),
        (
            "[[lan]]\nsubnets = [\"10.1.0.0/24\"]\nhosts = [\"r\"]\nrouter = \"r\"\n[[lan]]\nsubnets = [\"10.2.0.0/24\"]\nhosts = [\"b\"]\nrouter = \"r\"\n",
            "not a member",
        ),
        (
            "[[link]]\na = \"x\"\nb = \"x\"\nsubnets = [\"10.1.0.0/30\"]\n",
            "same host",
        ),
        (
            "[[link]]\na = \"x\"\nb = \"y\"\nsubnets = []\n",
            "give it a subnet",
        ),
        ("hosts = [\"good\", \"bad name\"]\n", "letters, digits"),
    ];
    let mut lab = Lab::new_blocking("topology_mistakes").unwrap();
    for (text, says) in cases {
        let err = Topology::from_toml(text)
            .and_then(|t| lab.add_topology_blocking(&t))
            .unwrap_err();
        assert!(err.is_invalid_input(), "{text}: {err}");
        assert!(
            err.to_string().contains(says),
            "{text}: {err} should say {says:?}"
        );
    }
    // Nothing was made, not even the good host of the last case.
    assert_eq!(lab.hosts().count(), 0);
    let links = ip_json(lab.namespace(), &["link"]);
    assert_eq!(links.as_array().unwrap().len(), 1, "{links}");
}
