//! The `netns-kit-cni` plugin, driven exactly as a container runtime drives a CNI plugin — the
//! executable run with the `CNI_*` environment and the configuration on stdin — side by side
//! with the reference `bridge` plugin (containernetworking-plugins, under `/usr/lib/cni`).
//!
//! Each plugin runs inside a test sandbox of its own (`nsenter --net=...`), which stands for
//! the node's namespace; containers are anonymous namespaces handed over as `/proc/PID/fd/N`
//! paths, and host-local keeps its leases in a temporary directory. Everything is checked from
//! outside, with `ip -j`, `bridge -j`, `tc -j`, `iptables-save` and `/proc/sys`.
//!
//! Without the reference plugins (they also provide the IPAM plugins both use) the tests say
//! so in one line and pass, unless `NETNS_KIT_NO_SKIP=1`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
};

use common::{outside, proc_path, saved, sysctl_outside, tool};
use netns_kit::Namespace;
use serde_json::{Value, json};

const OURS: &str = env!("CARGO_BIN_EXE_netns-kit-cni");
const CNI_DIR: &str = "/usr/lib/cni";

/// Whether the reference plugins are installed; if not, says why the test is skipped.
fn have_reference(test: &str) -> bool {
    let missing: Vec<&str> = [
        "bridge",
        "host-local",
        "firewall",
        "portmap",
        "bandwidth",
        "tuning",
    ]
    .into_iter()
    .filter(|p| !Path::new(CNI_DIR).join(p).is_file())
    .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test}: skipped: the reference CNI plugins ({}) are not in {CNI_DIR}: install the \
         `containernetworking-plugins` package",
        missing.join(", ")
    );
    if std::env::var(netns_kit::lab::NO_SKIP_ENV).is_ok_and(|v| v == "1") {
        panic!("{why}");
    }
    eprintln!("{why}");
    false
}

fn reference() -> String {
    format!("{CNI_DIR}/bridge")
}

/// A node: a sandbox namespace and a directory for host-local's leases.
struct Node {
    ns: Namespace,
    data: PathBuf,
}

impl Node {
    fn new() -> Node {
        let ns = Namespace::new_blocking().expect("sandbox");
        let data = std::env::temp_dir().join(format!(
            "netns-kit-cni-test-{}-{}",
            std::process::id(),
            ns.inode()
        ));
        std::fs::create_dir_all(&data).unwrap();
        Node { ns, data }
    }

    /// A node whose `nat` tables `iptables`/`ip6tables` have already made (as on any node that
    /// ran a container before): the plugin then writes its masquerade rules over netlink
    /// instead of running `iptables-restore`.
    fn with_nat_tables() -> Node {
        let node = Node::new();
        // A rule added and deleted leaves the table with its POSTROUTING chain, as any use
        // of `iptables -t nat` does.
        for (program, source) in [("iptables", "10.255.255.254"), ("ip6tables", "fdff::fe")] {
            for op in ["-A", "-D"] {
                let args = ["-t", "nat", op, "POSTROUTING", "-s", source, "-j", "RETURN"];
                let ok = outside(&node.ns, program, &args)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "{program} {args:?}");
            }
        }
        node
    }

    /// [`Node::with_nat_tables`] or [`Node::new`].
    fn with_nat_tables_if(tables: bool) -> Node {
        if tables {
            Node::with_nat_tables()
        } else {
            Node::new()
        }
    }

    /// host-local's lease files of network `net` (none but its own bookkeeping when empty).
    fn leases(&self, net: &str) -> Vec<String> {
        std::fs::read_dir(self.data.join(net))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// What a plugin run printed and how it ended.
#[derive(Debug)]
struct Outcome {
    ok: bool,
    out: Value,
    stderr: String,
}

impl Outcome {
    #[track_caller]
    fn expect_ok(self, what: &str) -> Value {
        assert!(self.ok, "{what} failed: {} {}", self.out, self.stderr);
        self.out
    }
}

/// Runs `plugin` for `command` in `node`'s namespace as a runtime does.
fn cni(
    node: &Node,
    plugin: &str,
    command: &str,
    id: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
) -> Outcome {
    let mut cmd = outside(&node.ns, plugin, &[]);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_DIR)
        .env_remove("CNI_ARGS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    Outcome {
        ok: out.status.success(),
        out: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        },
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The configuration most runtimes use: a gateway bridge, masquerade, dual-stack host-local.
fn typical(node: &Node, version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "testnet",
        "type": "bridge",
        "bridge": "cni0",
        "isDefaultGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "dataDir": node.data,
            "ranges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd88::/64"}]]
        }
    })
}

/// Removes what legitimately differs between two runs: generated interface names and indexes,
/// MAC addresses (and the link-local addresses and bridge ids made from them), timers and
/// counters, and the moment-dependent `tentative` flag of link-local addresses.
fn normalize(v: &mut Value) {
    const DROP: &[&str] = &[
        "ifindex",
        "link_index",
        "link",
        "address",
        "broadcast",
        "perm_address",
        "link_netnsid",
        "stats64",
        "bridge_id",
        "root_id",
        "designated_root",
        "designated_bridge",
        "id",
        "no",
        "designated_port",
        "designated_cost",
        "root_port",
        "root_path_cost",
        "valid_life_time",
        "preferred_life_time",
        "altnames",
        "parentbus",
        "parentdev",
    ];
    match v {
        Value::Object(o) => {
            o.retain(|k, _| !DROP.contains(&k.as_str()) && !k.ends_with("_timer"));
            // Whether duplicate address detection has finished (it needs the bridge's carrier,
            // which comes and goes with its ports) depends on timing, not on the plugin.
            o.remove("tentative");
            let link_local = o
                .get("local")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("fe80:"));
            if link_local {
                o.insert("local".into(), Value::String("fe80::(from the MAC)".into()));
            }
            for (_, x) in o.iter_mut() {
                normalize(x);
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                normalize(x);
            }
        }
        Value::String(s)
            if s.len() == 12
                && s.starts_with("veth")
                && s[4..].chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            *s = "veth(generated)".into();
        }
        _ => {}
    }
}

fn ip(ns: &Namespace, args: &[&str]) -> Value {
    common::ip_json(ns, args)
}

/// Waits until every link's operational state agrees with its carrier. The kernel updates a
/// bridge's operational state after its carrier, from a queue it works through at most once a
/// second, so right after a port comes or goes `ip` may still show the old state; that moment
/// is the kernel's, not a plugin's.
fn settle(ns: &Namespace) {
    common::eventually("operational states to follow the carriers", || {
        ip(ns, &["link"]).as_array().unwrap().iter().all(|l| {
            let carrier = common::has_flag(l, "LOWER_UP");
            let up = matches!(l["operstate"].as_str(), Some("UP" | "UNKNOWN"));
            !common::has_flag(l, "UP") || carrier == up
        })
    });
}

/// Everything ADD and DEL may change in the node and the containers, normalized.
fn snapshot(node: &Node, containers: &[&Namespace], ifname: &str) -> Value {
    let host = &node.ns;
    settle(host);
    for c in containers {
        settle(c);
    }
    let mut links = ip(host, &["-d", "link"]);
    // Generated names differ, so order by what is left.
    let mut snap = json!({
        "links": links.take(),
        "addrs": ip(host, &["addr"]),
        "routes4": ip(host, &["-4", "route", "show", "table", "main"]),
        "routes6": ip(host, &["-6", "route", "show", "table", "main"]),
        "bridge_links": ip_tool(host, "bridge", &["-j", "-d", "link"]),
        "bridge_vlans": ip_tool(host, "bridge", &["-j", "vlan", "show"]),
        "qdiscs": ip_tool(host, "tc", &["-j", "qdisc", "show"]),
        "iptables": saved(host, "iptables-save"),
        "ip6tables": saved(host, "ip6tables-save"),
        "ip_forward": sysctl_outside(host, "net.ipv4.ip_forward"),
        "ipv6_forwarding": sysctl_outside(host, "net.ipv6.conf.all.forwarding"),
        "cni0_accept_ra": sysctl_outside(host, "net.ipv6.conf.cni0.accept_ra"),
        "leases": node.leases("testnet").len(),
    });
    let mut inside = Vec::new();
    for c in containers {
        inside.push(json!({
            "links": ip(c, &["-d", "link"]),
            "addrs": ip(c, &["addr"]),
            "routes4": ip(c, &["-4", "route", "show", "table", "main"]),
            "routes6": ip(c, &["-6", "route", "show", "table", "main"]),
            "accept_dad": sysctl_outside(c, &format!("net.ipv6.conf.{ifname}.accept_dad")),
            "arp_notify": sysctl_outside(c, &format!("net.ipv4.conf.{ifname}.arp_notify")),
        }));
    }
    snap["containers"] = Value::Array(inside);
    normalize(&mut snap);
    sort_arrays(&mut snap);
    snap
}

/// Sorts every array of objects by its JSON text, so generated names' order does not matter.
fn sort_arrays(v: &mut Value) {
    match v {
        Value::Array(a) => {
            for x in a.iter_mut() {
                sort_arrays(x);
            }
            a.sort_by_key(|x| x.to_string());
        }
        Value::Object(o) => {
            for (_, x) in o.iter_mut() {
                sort_arrays(x);
            }
        }
        _ => {}
    }
}

fn ip_tool(ns: &Namespace, program: &str, args: &[&str]) -> Value {
    let out = outside(ns, program, args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        Value::Array(vec![])
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned()))
    }
}

/// Asserts two snapshots are equal, showing `diff -u` of the two.
#[track_caller]
fn assert_same(what: &str, reference: &Value, ours: &Value) {
    if reference == ours {
        return;
    }
    let dir = std::env::temp_dir();
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id());
    let (a, b) = (
        dir.join(format!("cni-reference-{tag}.json")),
        dir.join(format!("cni-netns-kit-{tag}.json")),
    );
    std::fs::write(&a, serde_json::to_string_pretty(reference).unwrap()).unwrap();
    std::fs::write(&b, serde_json::to_string_pretty(ours).unwrap()).unwrap();
    let diff = tool("diff").arg("-u").arg(&a).arg(&b).output().unwrap();
    panic!(
        "{what}: the state differs from the reference plugin's (- reference, + netns-kit; both \
         kept as {} and {}):\n{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&diff.stdout)
    );
}

/// The result with generated names and MACs removed.
fn normalized_result(mut v: Value) -> Value {
    if let Some(list) = v["interfaces"].as_array_mut() {
        for i in list {
            let o = i.as_object_mut().unwrap();
            o.remove("mac");
            // The container's namespace path, different in each run.
            if o.contains_key("sandbox") {
                o.insert("sandbox".into(), json!("(the container)"));
            }
            normalize(i);
        }
    }
    v
}

/// Whether this kernel's bridges can filter VLANs (the `vlan` key needs it).
fn kernel_has_bridge_vlans() -> bool {
    let ns = Namespace::new_blocking().unwrap();
    outside(
        &ns,
        "ip",
        &[
            "link",
            "add",
            "brv",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ],
    )
    .output()
    .unwrap()
    .status
    .success()
}

/// ADDs one container with `conf` through `plugin` in a fresh node; returns the node, the
/// container, the result and the state.
fn add_one(plugin: &str, conf: impl Fn(&Node) -> Value) -> (Node, Namespace, Value, Value) {
    add_one_on(Node::new(), plugin, conf)
}

/// [`add_one`] on `node`.
fn add_one_on(
    node: Node,
    plugin: &str,
    conf: impl Fn(&Node) -> Value,
) -> (Node, Namespace, Value, Value) {
    let c = Namespace::new_blocking().unwrap();
    let result = cni(
        &node,
        plugin,
        "ADD",
        "ctr1",
        &proc_path(&c),
        "eth0",
        &conf(&node),
    )
    .expect_ok(&format!("ADD by {plugin}"));
    let state = snapshot(&node, &[&c], "eth0");
    (node, c, result, state)
}

#[test]
fn add_and_del_leave_the_same_state_as_the_reference_plugin() {
    if !have_reference("add_and_del_leave_the_same_state_as_the_reference_plugin") {
        return;
    }
    type Conf = fn(&Node) -> Value;
    let configs: Vec<(&str, Conf)> = vec![
        ("gateway, masquerade, dual-stack, hairpin", |n| {
            typical(n, "1.0.0")
        }),
        (
            "layer 2 only (no ipam)",
            |_| json!({"cniVersion": "1.0.0", "name": "testnet", "type": "bridge", "bridge": "cni0"}),
        ),
        ("isGateway without default route, mtu, promiscMode", |n| {
            json!({
                "cniVersion": "0.4.0", "name": "testnet", "type": "bridge", "bridge": "cni0",
                "isGateway": true, "mtu": 1400, "promiscMode": true,
                "ipam": {"type": "host-local", "dataDir": n.data, "subnet": "10.89.0.0/24",
                         "routes": [{"dst": "10.90.0.0/16"}, {"dst": "10.91.0.0/16", "gw": "10.89.0.254"}]}
            })
        }),
        (
            "no gateway: a route without one, a route to its own subnet",
            |_| {
                json!({
                    "cniVersion": "1.0.0", "name": "testnet", "type": "bridge", "bridge": "cni0",
                    "ipam": {"type": "static", "addresses": [{"address": "10.93.0.5/24"}],
                             "routes": [{"dst": "10.94.0.0/16"}, {"dst": "10.93.0.0/24", "gw": "10.93.0.254"}]}
                })
            },
        ),
        ("static ipam, old result format", |_| {
            json!({
                "cniVersion": "0.3.1", "name": "testnet", "type": "bridge", "bridge": "cni0",
                "isGateway": true, "forceAddress": true,
                "ipam": {"type": "static", "addresses": [{"address": "10.92.0.5/24", "gateway": "10.92.0.1"}],
                         "routes": [{"dst": "0.0.0.0/0"}]}
            })
        }),
    ];
    // On a fresh node, and on one whose iptables `nat` tables exist already.
    let runs = configs.iter().flat_map(|c| [(c, false), (c, true)]);
    for ((what, conf), tables) in runs {
        let (conf, what) = (
            *conf,
            format!("{what}{}", if tables { " (nat tables there)" } else { "" }),
        );
        let node = || Node::with_nat_tables_if(tables);
        let (ref_node, ref_c, ref_result, ref_state) = add_one_on(node(), &reference(), conf);
        let (our_node, our_c, our_result, our_state) = add_one_on(node(), OURS, conf);
        assert_same(&format!("{what}: after ADD"), &ref_state, &our_state);
        assert_same(
            &format!("{what}: ADD's result"),
            &normalized_result(ref_result),
            &normalized_result(our_result),
        );
        for (node, c, plugin) in [
            (&ref_node, &ref_c, reference()),
            (&our_node, &our_c, OURS.to_owned()),
        ] {
            cni(
                node,
                &plugin,
                "DEL",
                "ctr1",
                &proc_path(c),
                "eth0",
                &conf(node),
            )
            .expect_ok(&format!("{what}: DEL by {plugin}"));
        }
        let ref_after = snapshot(&ref_node, &[&ref_c], "eth0");
        let our_after = snapshot(&our_node, &[&our_c], "eth0");
        assert_same(&format!("{what}: after DEL"), &ref_after, &our_after);
    }
}

/// `vlan`: the same ports and VLANs as the reference where the kernel has bridge VLAN
/// filtering; where it has not, both plugins refuse, and this one leaves nothing behind.
#[test]
fn vlan_like_the_reference_or_refused_by_the_kernel() {
    if !have_reference("vlan_like_the_reference_or_refused_by_the_kernel") {
        return;
    }
    let conf = |n: &Node| {
        json!({
            "cniVersion": "1.0.0", "name": "testnet", "type": "bridge", "bridge": "cni0", "vlan": 100,
            "ipam": {"type": "host-local", "dataDir": n.data, "subnet": "10.93.0.0/24"}
        })
    };
    if kernel_has_bridge_vlans() {
        let (_n1, _c1, _, ref_state) = add_one(&reference(), conf);
        let (_n2, _c2, _, our_state) = add_one(OURS, conf);
        assert_same("vlan: after ADD", &ref_state, &our_state);
        return;
    }
    for plugin in [reference(), OURS.to_owned()] {
        let node = Node::new();
        let c = Namespace::new_blocking().unwrap();
        let out = cni(
            &node,
            &plugin,
            "ADD",
            "ctr1",
            &proc_path(&c),
            "eth0",
            &conf(&node),
        );
        assert!(
            !out.ok,
            "{plugin} made a VLAN bridge on a kernel without them"
        );
        if plugin == OURS {
            assert!(
                out.out["msg"].as_str().unwrap().contains("cni0"),
                "{}",
                out.out
            );
            assert_eq!(common::link_names(&node.ns), ["lo"]);
            assert_eq!(common::link_names(&c), ["lo"]);
            assert!(node.leases("testnet").is_empty());
        }
    }
}

#[test]
fn a_container_added_by_one_plugin_is_deleted_cleanly_by_the_other() {
    if !have_reference("a_container_added_by_one_plugin_is_deleted_cleanly_by_the_other") {
        return;
    }
    let conf = |n: &Node| typical(n, "1.0.0");
    for tables in [false, true] {
        deleted_cleanly_by_the_other(conf, tables);
    }
}

/// One plugin adds, the other deletes, on a fresh node or one whose `nat` tables exist (where
/// this plugin writes its rules over netlink).
fn deleted_cleanly_by_the_other(conf: fn(&Node) -> Value, tables: bool) {
    let fresh = || Node::with_nat_tables_if(tables);
    // What DEL by the adding plugin itself leaves, as the yardstick.
    let (node, c, _, _) = add_one_on(fresh(), &reference(), conf);
    cni(
        &node,
        &reference(),
        "DEL",
        "ctr1",
        &proc_path(&c),
        "eth0",
        &conf(&node),
    )
    .expect_ok("DEL");
    let clean = snapshot(&node, &[&c], "eth0");
    for (adder, deleter) in [
        (reference(), OURS.to_owned()),
        (OURS.to_owned(), reference()),
    ] {
        let (node, c, _, _) = add_one_on(fresh(), &adder, conf);
        cni(
            &node,
            &deleter,
            "DEL",
            "ctr1",
            &proc_path(&c),
            "eth0",
            &conf(&node),
        )
        .expect_ok(&format!("DEL by {deleter} of what {adder} added"));
        let after = snapshot(&node, &[&c], "eth0");
        assert_same(
            &format!("added by {adder}, deleted by {deleter} (nat tables there: {tables})"),
            &clean,
            &after,
        );
        assert!(node.leases("testnet").is_empty());
        assert!(!saved(&node.ns, "iptables-save").contains("CNI-"));
    }
}

/// libcni's way of running a plugin list: each plugin gets the list's name and version, the
/// previous plugin's result as `prevResult`, and its capabilities' runtime configuration.
fn run_chain(node: &Node, bridge: &str, command: &str, netns: &str, prev: Option<Value>) -> Value {
    let plugins = [
        (
            bridge.to_owned(),
            json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
            "ipam": {"type": "host-local", "dataDir": node.data, "subnet": "10.88.0.0/16"}}),
        ),
        (
            format!("{CNI_DIR}/firewall"),
            json!({"type": "firewall", "backend": "iptables"}),
        ),
        (
            format!("{CNI_DIR}/portmap"),
            json!({"type": "portmap", "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}),
        ),
        (
            format!("{CNI_DIR}/bandwidth"),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true},
            "runtimeConfig": {"bandwidth": {"ingressRate": 1000000, "ingressBurst": 100000,
                                            "egressRate": 1000000, "egressBurst": 100000}}}),
        ),
        (
            format!("{CNI_DIR}/tuning"),
            json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}}),
        ),
    ];
    let mut order: Vec<usize> = (0..plugins.len()).collect();
    if command == "DEL" {
        order.reverse();
    }
    let mut result = prev;
    for i in order {
        let (plugin, conf) = &plugins[i];
        let mut conf = conf.clone();
        conf["cniVersion"] = json!("1.0.0");
        conf["name"] = json!("testnet");
        if let Some(prev) = &result {
            conf["prevResult"] = prev.clone();
        }
        let out = cni(node, plugin, command, "ctr1", netns, "eth0", &conf)
            .expect_ok(&format!("{command} by {plugin} in a chain after {bridge}"));
        if command == "ADD" {
            result = Some(out);
        }
    }
    result.unwrap_or(Value::Null)
}

#[test]
fn the_reference_meta_plugins_chain_after_it() {
    if !have_reference("the_reference_meta_plugins_chain_after_it") {
        return;
    }
    let mut states = Vec::new();
    for bridge in [reference(), OURS.to_owned()] {
        let node = Node::new();
        let c = Namespace::new_blocking().unwrap();
        let netns = proc_path(&c);
        let before = snapshot(&node, &[&c], "eth0");
        let result = run_chain(&node, &bridge, "ADD", &netns, None);
        let added = snapshot(&node, &[&c], "eth0");
        // Each meta plugin did its job on this plugin's result.
        let nat = saved(&node.ns, "iptables-save");
        assert!(
            nat.contains("--dport 8080") && nat.contains("DNAT"),
            "portmap: {nat}"
        );
        assert!(nat.contains("CNI-FORWARD"), "firewall: {nat}");
        let qdiscs = ip_tool(&node.ns, "tc", &["-j", "qdisc", "show"]).to_string();
        assert!(qdiscs.contains("\"tbf\""), "bandwidth: {qdiscs}");
        assert_eq!(
            sysctl_outside(&c, "net.ipv4.conf.eth0.rp_filter"),
            "2",
            "tuning"
        );
        run_chain(&node, &bridge, "DEL", &netns, Some(result));
        let deleted = snapshot(&node, &[&c], "eth0");
        assert!(!saved(&node.ns, "iptables-save").contains("8080"));
        states.push((before, added, deleted));
    }
    let (r, o) = (&states[0], &states[1]);
    assert_same("chain: after ADD", &r.1, &o.1);
    assert_same("chain: after DEL", &r.2, &o.2);
}

#[test]
fn del_is_idempotent() {
    if !have_reference("del_is_idempotent") {
        return;
    }
    let conf = |n: &Node| typical(n, "1.1.0");
    let (node, c, _, _) = add_one(OURS, conf);
    let path = proc_path(&c);
    let clean_links = || common::link_names(&node.ns);
    // Twice in a row.
    for round in 0..2 {
        let out = cni(&node, OURS, "DEL", "ctr1", &path, "eth0", &conf(&node));
        assert!(out.ok && out.out.is_null(), "DEL #{round}: {out:?}");
    }
    assert_eq!(clean_links(), ["lo", "cni0"]);
    assert!(node.leases("testnet").is_empty());
    assert!(!saved(&node.ns, "iptables-save").contains("CNI-"));

    // After the namespace is gone (its only process killed, so its path is gone too — never a
    // reused fd number another test's namespace could have): the masquerade rules and the
    // lease go all the same.
    let node = Node::new();
    let mut sandbox = tool("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()
        .unwrap();
    let path = format!("/proc/{}/ns/net", sandbox.id());
    common::eventually("the sandbox to have its own namespace", || {
        std::fs::read_link(&path).ok() != std::fs::read_link("/proc/self/ns/net").ok()
    });
    cni(&node, OURS, "ADD", "ctr1", &path, "eth0", &conf(&node)).expect_ok("ADD");
    assert!(saved(&node.ns, "iptables-save").contains("CNI-"));
    sandbox.kill().unwrap();
    sandbox.wait().unwrap();
    assert!(!Path::new(&path).exists());
    let out = cni(&node, OURS, "DEL", "ctr1", &path, "eth0", &conf(&node));
    assert!(out.ok, "DEL after the namespace is gone: {out:?}");
    assert!(node.leases("testnet").is_empty());
    assert!(!saved(&node.ns, "iptables-save").contains("CNI-"));
    assert!(!saved(&node.ns, "ip6tables-save").contains("CNI-"));
    common::eventually("the veth pair to go with its namespace", || {
        clean_links() == ["lo", "cni0"]
    });

    // With IPv4 flushed from the interface (or no address at all: a SIGKILL during ADD), DEL
    // still removes the masquerade rules of both families: the configuration says which.
    let node = Node::new();
    let c = Namespace::new_blocking().unwrap();
    let path = proc_path(&c);
    cni(&node, OURS, "ADD", "ctr3", &path, "eth0", &conf(&node)).expect_ok("ADD");
    assert!(saved(&node.ns, "iptables-save").contains("CNI-"));
    assert!(saved(&node.ns, "ip6tables-save").contains("CNI-"));
    let flushed = c
        .command("ip")
        .args(["-4", "addr", "flush", "dev", "eth0"])
        .status();
    assert!(flushed.unwrap().success());
    let out = cni(&node, OURS, "DEL", "ctr3", &path, "eth0", &conf(&node));
    assert!(out.ok, "DEL with IPv4 flushed: {out:?}");
    assert!(!saved(&node.ns, "iptables-save").contains("CNI-"));
    assert!(!saved(&node.ns, "ip6tables-save").contains("CNI-"));

    // With a partial configuration, with no namespace given, and both.
    let c = Namespace::new_blocking().unwrap();
    let partial = json!({"cniVersion": "1.0.0", "name": "testnet", "type": "bridge"});
    for (conf, netns) in [
        (&partial, proc_path(&c)),
        (&partial, String::new()),
        (&conf(&node), String::new()),
    ] {
        let out = cni(&node, OURS, "DEL", "ctr2", &netns, "eth0", conf);
        assert!(out.ok, "DEL with {conf} and CNI_NETNS {netns:?}: {out:?}");
    }
}

/// DEL answers as soon as the kernel has removed the interface (it does not wait for the kernel
/// to free it; see src/unlink.rs): when it returns, both ends are gone from `ip link` and the
/// same interface name can be added again at once; a removal the kernel refuses is still an
/// error.
#[test]
fn del_returns_with_the_interface_gone_and_reports_a_refusal() {
    if !have_reference("del_returns_with_the_interface_gone_and_reports_a_refusal") {
        return;
    }
    let conf = |n: &Node| typical(n, "1.1.0");
    let (node, c, _, _) = add_one(OURS, conf);
    let path = proc_path(&c);
    for round in 0..3 {
        cni(&node, OURS, "DEL", "ctr1", &path, "eth0", &conf(&node)).expect_ok("DEL");
        assert_eq!(
            common::link_names(&node.ns),
            ["lo", "cni0"],
            "round {round}"
        );
        assert_eq!(common::link_names(&c), ["lo"], "round {round}");
        assert!(node.leases("testnet").is_empty());
        cni(&node, OURS, "ADD", "ctr1", &path, "eth0", &conf(&node)).expect_ok("ADD again");
        assert_eq!(common::link_names(&c), ["lo", "eth0"], "round {round}");
    }
    cni(&node, OURS, "DEL", "ctr1", &path, "eth0", &conf(&node)).expect_ok("DEL");
    // The loopback interface cannot be removed: the kernel's refusal is DEL's error.
    let out = cni(&node, OURS, "DEL", "ctr1", &path, "lo", &conf(&node));
    assert!(!out.ok, "DEL of lo: {out:?}");
    assert_eq!(out.out["code"], 999, "{out:?}");
    // Worded as the reference words it.
    assert_eq!(
        out.out["msg"], "failed to delete \"lo\": operation not supported",
        "{out:?}"
    );
    assert_eq!(common::link_names(&c), ["lo"]);
}

/// A node starting a burst of pods: 32 ADDs at once on one bridge, then 16 DELs interleaved
/// with 16 new ADDs, then 32 DELs at once. Every call succeeds, no address is live twice, and
/// nothing is left.
#[test]
fn thirty_two_adds_then_thirty_two_dels_at_once() {
    if !have_reference("thirty_two_adds_then_thirty_two_dels_at_once") {
        return;
    }
    let node = Node::new();
    let conf = typical(&node, "1.0.0");
    let containers: Vec<Namespace> = (0..48)
        .map(|_| Namespace::new_blocking().unwrap())
        .collect();
    // Runs `command` for the containers of `which` at once, each from a thread of its own.
    let run_all = |which: &[(usize, &str)]| -> Vec<(usize, Outcome)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = which
                .iter()
                .map(|&(i, command)| {
                    let (node, conf, c) = (&node, &conf, &containers[i]);
                    s.spawn(move || {
                        let id = format!("ctr{i}");
                        (
                            i,
                            cni(node, OURS, command, &id, &proc_path(c), "eth0", conf),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let addresses_of = |outcomes: Vec<(usize, Outcome)>| -> Vec<(usize, String)> {
        let mut addresses = Vec::new();
        for (i, a) in outcomes {
            let result = a.expect_ok(&format!("ADD #{i}"));
            for ip in result["ips"].as_array().unwrap() {
                addresses.push((i, ip["address"].as_str().unwrap().to_owned()));
            }
        }
        addresses
    };
    let assert_unique = |addresses: &[(usize, String)]| {
        let mut unique: Vec<&String> = addresses.iter().map(|(_, a)| a).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            addresses.len(),
            "an address was handed out twice: {addresses:?}"
        );
    };
    let adds: Vec<(usize, &str)> = (0..32).map(|i| (i, "ADD")).collect();
    let mut live = addresses_of(run_all(&adds));
    assert_eq!(live.len(), 64);
    assert_unique(&live);
    let ports = ip_tool(&node.ns, "bridge", &["-j", "link"]);
    assert_eq!(ports.as_array().unwrap().len(), 32, "{ports}");
    // One gateway address per family on the bridge, however the ADDs raced.
    assert_eq!(
        common::addrs(&node.ns, "cni0"),
        ["10.88.0.1/16", "fd88::1/64"]
    );
    // Every container answers from its address, through the bridge.
    let first = live.iter().find(|(_, a)| a.starts_with("10.")).unwrap();
    let first = first.1.split('/').next().unwrap().to_owned();
    assert!(common::ping(&containers[31], &first));

    // Pods come and go at once: 16 DELs and 16 new ADDs interleaved.
    let mixed: Vec<(usize, &str)> = (0..16)
        .map(|i| (i, "DEL"))
        .chain((32..48).map(|i| (i, "ADD")))
        .collect();
    let outcomes = run_all(&mixed);
    let (deleted, added): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|(i, _)| *i < 16);
    for (i, d) in deleted {
        d.expect_ok(&format!("DEL #{i}"));
    }
    live.retain(|(i, _)| *i >= 16);
    live.extend(addresses_of(added));
    assert_eq!(live.len(), 64);
    assert_unique(&live);
    let postrouting = saved(&node.ns, "iptables-save")
        .lines()
        .filter(|l| l.starts_with("-A POSTROUTING"))
        .count();
    assert_eq!(postrouting, 32, "one masquerade jump per live container");

    let dels: Vec<(usize, &str)> = (16..48).map(|i| (i, "DEL")).collect();
    for (i, d) in run_all(&dels) {
        d.expect_ok(&format!("DEL #{i}"));
    }
    assert_eq!(common::link_names(&node.ns), ["lo", "cni0"]);
    for c in &containers {
        assert_eq!(common::link_names(c), ["lo"]);
    }
    assert!(node.leases("testnet").is_empty());
    assert!(!saved(&node.ns, "iptables-save").contains("CNI-"));
    assert!(!saved(&node.ns, "ip6tables-save").contains("CNI-"));
}

#[test]
fn check_passes_on_what_add_made_and_fails_once_it_changed() {
    if !have_reference("check_passes_on_what_add_made_and_fails_once_it_changed") {
        return;
    }
    // 1.0.0: the reference plugin checks too, and it knows no 1.1.0.
    let (node, c, result, _) = add_one(OURS, |n| typical(n, "1.0.0"));
    let mut conf = typical(&node, "1.0.0");
    conf["prevResult"] = result;
    let path = proc_path(&c);
    let out = cni(&node, OURS, "CHECK", "ctr1", &path, "eth0", &conf);
    assert!(out.ok, "{out:?}");
    // The reference plugin agrees that the container is wired as the result says.
    let out = cni(&node, &reference(), "CHECK", "ctr1", &path, "eth0", &conf);
    assert!(out.ok, "reference CHECK: {out:?}");
    let out = outside(&c, "ip", &["route", "del", "default"])
        .status()
        .unwrap();
    assert!(out.success());
    let out = cni(&node, OURS, "CHECK", "ctr1", &path, "eth0", &conf);
    assert!(!out.ok, "CHECK passed without the default route");
    assert!(
        out.out["msg"].as_str().unwrap().contains("route"),
        "{}",
        out.out
    );
    cni(&node, OURS, "DEL", "ctr1", &path, "eth0", &conf).expect_ok("DEL");
}

#[test]
fn bad_input_is_a_cni_error_and_leaves_nothing() {
    if !have_reference("bad_input_is_a_cni_error_and_leaves_nothing") {
        return;
    }
    let node = Node::new();
    let c = Namespace::new_blocking().unwrap();
    let path = proc_path(&c);
    let base = typical(&node, "1.0.0");
    let with = |k: &str, v: Value| {
        let mut conf = base.clone();
        conf[k] = v;
        conf
    };
    let cases: Vec<(Value, u64, &str)> = vec![
        (
            with("cniVersion", json!("9.9.9")),
            1,
            "incompatible CNI versions",
        ),
        (with("mtu", json!(20)), 7, "invalid mtu 20"),
        (with("mtu", json!("big")), 7, "invalid mtu"),
        (
            with("promiscMode", json!(true)),
            7,
            "hairpin mode and promiscuous mode",
        ),
        (with("macspoofchk", json!(true)), 2, "macspoofchk"),
        (
            with("bridge", json!("a-name-far-too-long")),
            7,
            "invalid bridge name",
        ),
        (
            with("runtimeConfig", json!({"mac": "01:00:00:00:00:01"})),
            7,
            "multicast",
        ),
        (
            with("ipam", json!({"type": "no-such-ipam"})),
            999,
            "no-such-ipam",
        ),
        (
            with("ipam", json!({"type": "host-local"})),
            999,
            "no IP ranges",
        ),
        (json!("not an object"), 6, "failed to load netconf"),
        (
            with("name", json!("no spaces")),
            7,
            "invalid characters found in network name",
        ),
        (
            with("dns", json!("8.8.8.8")),
            6,
            "failed to load netconf: dns: invalid type",
        ),
        (
            with("args", json!({"cni": {"mac": 5}})),
            6,
            "failed to load netconf: args.cni.mac: invalid type",
        ),
        (
            json!({"cniVersion": "0.2.0", "name": "testnet", "type": "bridge"}),
            999,
            "no valid IP addresses",
        ),
    ];
    for (conf, code, text) in cases {
        let out = cni(&node, OURS, "ADD", "ctr1", &path, "eth0", &conf);
        assert!(!out.ok, "ADD accepted {conf}");
        assert_eq!(out.out["code"], code, "{conf}: {}", out.out);
        let msg = out.out["msg"].as_str().unwrap();
        assert!(msg.contains(text), "{conf}: {msg:?} does not say {text:?}");
        assert_eq!(common::link_names(&c), ["lo"], "{conf} left an interface");
        assert!(!saved(&node.ns, "iptables-save").contains("CNI-"));
        assert!(node.leases("testnet").is_empty(), "{conf} left a lease");
    }
    // A missing variable, an unknown command, a namespace that does not exist.
    let mut cmd = outside(&node.ns, OURS, &[]);
    let out = cmd
        .env("CNI_COMMAND", "ADD")
        .env_remove("CNI_NETNS")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 4, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("CNI_NETNS"), "{v}");
    let out = cni(&node, OURS, "FROB", "ctr1", &path, "eth0", &base);
    assert_eq!(out.out["code"], 4, "{:?}", out);
    let out = cni(&node, OURS, "ADD", "no/slashes", &path, "eth0", &base);
    assert_eq!(out.out["code"], 4, "{:?}", out);
    assert!(
        out.out["msg"].as_str().unwrap().contains("containerID"),
        "{:?}",
        out
    );
    let out = cni(
        &node,
        OURS,
        "ADD",
        "ctr1",
        "/proc/self/no-such-ns",
        "eth0",
        &base,
    );
    assert_eq!(out.out["code"], 3, "{:?}", out);
    assert!(
        out.out["msg"]
            .as_str()
            .unwrap()
            .contains("/proc/self/no-such-ns")
    );
    // The interface name is taken in the container: nothing of ours is left either.
    let taken = outside(
        &c,
        "ip",
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "other",
        ],
    )
    .status()
    .unwrap();
    assert!(taken.success());
    let out = cni(&node, OURS, "ADD", "ctr1", &path, "eth0", &base);
    assert!(!out.ok);
    assert!(
        out.out["msg"].as_str().unwrap().contains("eth0"),
        "{}",
        out.out
    );
    assert_eq!(common::link_names(&node.ns), ["lo", "cni0"]);

    // `cni0` is something else than a bridge: refused after the IPAM plugin (started early)
    // handed out an address, which is released again.
    let node = Node::new();
    let c = Namespace::new_blocking().unwrap();
    let made = outside(
        &node.ns,
        "ip",
        &[
            "link", "add", "cni0", "type", "veth", "peer", "name", "cni0p",
        ],
    )
    .status()
    .unwrap();
    assert!(made.success());
    let out = cni(
        &node,
        OURS,
        "ADD",
        "ctr1",
        &proc_path(&c),
        "eth0",
        &typical(&node, "1.0.0"),
    );
    assert_eq!(
        out.out["msg"], "\"cni0\" already exists but is not a bridge",
        "{}",
        out.out
    );
    assert!(
        node.leases("testnet").is_empty(),
        "the lease was not released"
    );
    assert_eq!(common::link_names(&c), ["lo"]);
    assert_eq!(common::link_names(&node.ns).len(), 3, "lo, cni0, cni0p");
}

/// A failure after the masquerade rules and the lease were made: the bridge already has
/// another IPv4 address and `forceAddress` is off. The error says so, and the veth pair, the
/// lease and the rules are all gone again.
#[test]
fn a_late_failure_undoes_everything_but_the_bridge() {
    if !have_reference("a_late_failure_undoes_everything_but_the_bridge") {
        return;
    }
    let node = Node::new();
    for args in [
        &["link", "add", "cni0", "type", "bridge"][..],
        &["addr", "add", "10.99.0.1/24", "dev", "cni0"],
        &["link", "set", "cni0", "up"],
    ] {
        assert!(outside(&node.ns, "ip", args).status().unwrap().success());
    }
    let c = Namespace::new_blocking().unwrap();
    let out = cni(
        &node,
        OURS,
        "ADD",
        "ctr1",
        &proc_path(&c),
        "eth0",
        &typical(&node, "1.0.0"),
    );
    assert!(!out.ok, "ADD succeeded on a bridge with another gateway");
    let msg = out.out["msg"].as_str().unwrap();
    assert!(
        msg.contains("\"cni0\" already has an IP address different from 10.88.0.1/16"),
        "{msg}"
    );
    assert_eq!(common::link_names(&c), ["lo"]);
    assert_eq!(common::link_names(&node.ns), ["lo", "cni0"]);
    assert_eq!(common::addrs(&node.ns, "cni0"), ["10.99.0.1/24"]);
    assert!(node.leases("testnet").is_empty());
    for program in ["iptables-save", "ip6tables-save"] {
        let rules = saved(&node.ns, program);
        assert!(
            !rules.contains("CNI-") && !rules.contains("ctr1"),
            "{program}: {rules}"
        );
    }
}

#[test]
fn version_status_and_gc() {
    if !have_reference("version_status_and_gc") {
        return;
    }
    let node = Node::new();
    let out = cni(
        &node,
        OURS,
        "VERSION",
        "",
        "",
        "",
        &json!({"cniVersion": "1.1.0"}),
    );
    let versions = out.expect_ok("VERSION")["supportedVersions"].clone();
    for v in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            versions.as_array().unwrap().contains(&json!(v)),
            "{versions}"
        );
    }
    let conf = typical(&node, "1.1.0");
    let out = cni(&node, OURS, "STATUS", "", "", "", &conf);
    assert!(out.ok && out.out.is_null(), "STATUS: {out:?}");
    let mut missing = conf.clone();
    missing["ipam"]["type"] = json!("no-such-ipam");
    let out = cni(&node, OURS, "STATUS", "", "", "", &missing);
    assert_eq!(out.out["code"], 50, "{out:?}");
    let out = cni(&node, OURS, "STATUS", "", "", "", &typical(&node, "1.0.0"));
    assert_eq!(out.out["code"], 1, "STATUS needs 1.1.0: {out:?}");

    // Two containers; GC told only the first is still valid removes the second's rules.
    let (c1, c2) = (
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
    );
    for (id, c) in [("keep-me", &c1), ("stale", &c2)] {
        cni(&node, OURS, "ADD", id, &proc_path(c), "eth0", &conf).expect_ok("ADD");
    }
    let out = cni(&node, OURS, "GC", "", "", "", &conf);
    assert_eq!(
        out.out["code"], 7,
        "GC without the list of valid attachments: {out:?}"
    );
    assert!(
        saved(&node.ns, "iptables-save").contains("stale"),
        "GC without a list removed rules"
    );
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep-me", "ifname": "eth0"}]);
    let out = cni(&node, OURS, "GC", "", "", "", &gc);
    assert!(out.ok, "GC: {out:?}");
    let nat = saved(&node.ns, "iptables-save");
    assert!(nat.contains("id: \\\"keep-me\\\""), "{nat}");
    assert!(!nat.contains("stale"), "{nat}");
    assert!(!saved(&node.ns, "ip6tables-save").contains("stale"));
}

#[test]
fn results_in_every_version_the_reference_writes() {
    if !have_reference("results_in_every_version_the_reference_writes") {
        return;
    }
    for version in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let (_n1, _c1, ref_result, _) = add_one(&reference(), |n| typical(n, version));
        let (_n2, _c2, our_result, _) = add_one(OURS, |n| typical(n, version));
        assert_same(
            &format!("result in {version}"),
            &normalized_result(ref_result),
            &normalized_result(our_result),
        );
    }
}

/// `cni_runtime`: the plugin run as a runtime runs a plugin list (with the reference
/// `portmap`, `firewall` and `tuning` after it) — ADD, a ping to the gateway, CHECK, DEL.
#[test]
fn cni_runtime_runs_the_plugin_list_and_leaves_nothing() {
    if !have_reference("cni_runtime_runs_the_plugin_list_and_leaves_nothing") {
        return;
    }
    let plugin = std::path::Path::new(env!("CARGO_BIN_EXE_netns-kit-cni"));
    let cni_path = format!("{}:/usr/lib/cni", plugin.parent().unwrap().display());
    let out = std::process::Command::new(common::example("cni_runtime"))
        .env("CNI_PATH", cni_path)
        .output()
        .unwrap();
    let ok = out.status.success();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok, "cni_runtime failed:\n{out}");
    assert_eq!(out.matches("ADD ").count(), 4, "{out}");
    assert!(out.contains("container -> gateway 10.88.0.1: ok"), "{out}");
    assert!(out.contains("CHECK \"netns-kit-cni\""), "{out}");
    assert!(out.contains("1 link(s) left"), "{out}");
    assert!(out.contains("cni_runtime: ok"), "{out}");
}

/// host-local in-process and the reference `host-local` plugin share one store: leases made by
/// either are seen and released by the other, round robin carries on across them, a requested
/// address and exhaustion end the same way.
#[test]
fn host_local_leases_are_shared_with_the_reference_plugin() {
    if !have_reference("host_local_leases_are_shared_with_the_reference_plugin") {
        return;
    }
    let node = Node::new();
    let conf = |ipam: Value| {
        json!({
            "cniVersion": "1.0.0",
            "name": "leases",
            "type": "bridge",
            "bridge": "cni9",
            "isGateway": true,
            "ipam": ipam,
        })
    };
    let ranges = conf(json!({
        "type": "host-local",
        "dataDir": node.data,
        "ranges": [
            [{"subnet": "10.77.0.0/29", "rangeStart": "10.77.0.2", "rangeEnd": "10.77.0.5"}],
            [{"subnet": "fd77::/64", "rangeStart": "fd77::10", "rangeEnd": "fd77::13"}]
        ],
        "routes": [{"dst": "0.0.0.0/0"}]
    }));
    let containers: Vec<Namespace> = (0..5).map(|_| Namespace::new_blocking().unwrap()).collect();
    let plugins = [OURS.to_owned(), reference()];
    let add = |i: usize, plugin: &str, conf: &Value| {
        cni(
            &node,
            plugin,
            "ADD",
            &format!("ctr{i}"),
            &proc_path(&containers[i]),
            "eth0",
            conf,
        )
    };
    let addresses = |result: &Value| -> Vec<String> {
        result["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ip| ip["address"].as_str().unwrap().to_owned())
            .collect()
    };
    // Alternating plugins hand out the addresses in order, IPv4 and IPv6.
    let mut seen = Vec::new();
    for i in 0..4 {
        let out = add(i, &plugins[i % 2], &ranges).expect_ok(&format!("ADD ctr{i}"));
        seen.push(addresses(&out));
    }
    assert_eq!(
        seen,
        vec![
            vec!["10.77.0.2/29", "fd77::10/64"],
            vec!["10.77.0.3/29", "fd77::11/64"],
            vec!["10.77.0.4/29", "fd77::12/64"],
            vec!["10.77.0.5/29", "fd77::13/64"],
        ]
    );
    // Exhausted: both say the same.
    let errors: Vec<Value> = plugins
        .iter()
        .map(|p| {
            let o = add(4, p, &ranges);
            assert!(!o.ok, "{p} allocated from a full range");
            o.out
        })
        .collect();
    assert_eq!(errors[0]["msg"], errors[1]["msg"]);
    assert_eq!(errors[0]["code"], errors[1]["code"]);
    assert_eq!(errors[0]["code"], 999);
    assert!(
        errors[0]["msg"]
            .as_str()
            .unwrap()
            .contains("no IP addresses available in range set: 10.77.0.2-10.77.0.5"),
        "{}",
        errors[0]
    );
    // Each plugin deletes what the other added; the leases go.
    for i in 0..4 {
        let deleter = &plugins[(i + 1) % 2];
        cni(
            &node,
            deleter,
            "DEL",
            &format!("ctr{i}"),
            &proc_path(&containers[i]),
            "eth0",
            &ranges,
        )
        .expect_ok(&format!("DEL ctr{i} by {deleter}"));
    }
    assert!(
        node.leases("leases").is_empty(),
        "{:?}",
        node.leases("leases")
    );
    // A requested address (`args.cni.ips`, as `podman run --ip` sends it), and the same
    // address asked of the other plugin while taken.
    let mut asked = ranges.clone();
    asked["args"] = json!({"cni": {"ips": ["10.77.0.4"]}});
    for (first, second) in [(0, 1), (1, 0)] {
        let out = add(0, &plugins[first], &asked).expect_ok("ADD with a requested address");
        assert_eq!(addresses(&out)[0], "10.77.0.4/29");
        let taken = add(1, &plugins[second], &asked);
        assert!(!taken.ok);
        assert!(
            taken.out["msg"]
                .as_str()
                .unwrap()
                .contains("requested IP address 10.77.0.4 is not available"),
            "{}",
            taken.out
        );
        cni(
            &node,
            &plugins[second],
            "DEL",
            "ctr0",
            &proc_path(&containers[0]),
            "eth0",
            &asked,
        )
        .expect_ok("DEL");
        cni(
            &node,
            &plugins[second],
            "DEL",
            "ctr1",
            &proc_path(&containers[1]),
            "eth0",
            &asked,
        )
        .expect_ok("DEL");
    }
    assert!(
        node.leases("leases").is_empty(),
        "{:?}",
        node.leases("leases")
    );
}

/// The reference's DEL leaves a container's masquerade chain when the container's namespace is
/// already gone; an ADD of the same container id (a restarted container) then finds the chain
/// there. This plugin replaces it, as the reference reuses it.
#[test]
fn add_replaces_a_masquerade_chain_left_behind() {
    if !have_reference("add_replaces_a_masquerade_chain_left_behind") {
        return;
    }
    let node = Node::new();
    let conf = typical(&node, "1.0.0");
    {
        let c = Namespace::new_blocking().unwrap();
        cni(
            &node,
            &reference(),
            "ADD",
            "ctr1",
            &proc_path(&c),
            "eth0",
            &conf,
        )
        .expect_ok("ADD");
        drop(c); // the container's namespace is gone before DEL
    }
    cni(&node, &reference(), "DEL", "ctr1", "", "eth0", &conf).expect_ok("DEL");
    let left = saved(&node.ns, "iptables-save");
    assert!(
        left.lines().any(|l| l.starts_with(":CNI-")),
        "the reference no longer leaves the chain: {left}"
    );
    let c = Namespace::new_blocking().unwrap();
    let result = cni(&node, OURS, "ADD", "ctr1", &proc_path(&c), "eth0", &conf);
    let out = result.expect_ok("ADD again by ours");
    assert!(out["ips"].as_array().is_some_and(|a| !a.is_empty()));
    cni(&node, OURS, "DEL", "ctr1", &proc_path(&c), "eth0", &conf).expect_ok("DEL by ours");
    let after = saved(&node.ns, "iptables-save");
    assert!(
        !after.contains(":CNI-") || after.contains(":CNI-HOSTPORT"),
        "{after}"
    );
}

/// A second ADD of a container whose interface is there already is refused before any address
/// is handed out: the lease of the first stays the only one, and a DEL still releases it.
#[test]
fn a_second_add_of_the_same_interface_is_refused_and_leases_nothing() {
    let node = Node::new();
    let conf = typical(&node, "1.0.0");
    let c = Namespace::new_blocking().unwrap();
    cni(&node, OURS, "ADD", "ctr1", &proc_path(&c), "eth0", &conf).expect_ok("ADD");
    let leases = node.leases("testnet");
    assert_eq!(leases.len(), 2, "{leases:?}"); // IPv4 and IPv6
    let again = cni(&node, OURS, "ADD", "ctr1", &proc_path(&c), "eth0", &conf);
    assert!(!again.ok);
    assert!(
        again.out["msg"]
            .as_str()
            .is_some_and(|m| m.contains("container veth name provided (eth0) already exists")),
        "{}",
        again.out
    );
    assert_eq!(node.leases("testnet"), leases);
    cni(&node, OURS, "DEL", "ctr1", &proc_path(&c), "eth0", &conf).expect_ok("DEL");
    assert!(node.leases("testnet").is_empty());
}
