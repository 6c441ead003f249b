//! `bridged().isolate(true)`: two isolated networks on one host namespace cannot reach each
//! other, either way, while each reaches its gateway and a network that is not isolated;
//! checked with real pings and `iptables-save -t mangle` before and after.

mod common;

use common::*;
use netns_kit::{BridgedNetwork, MemberSpec, Namespace, bridged};

fn mangle(host: &Namespace) -> String {
    mangle_of(host, "iptables-save")
}

fn mangle_of(host: &Namespace, program: &str) -> String {
    let out = outside(host, program, &["-t", "mangle"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn network(host: &Namespace, n: u8, isolate: bool) -> BridgedNetwork {
    bridged()
        .host(host)
        .gateway(format!("10.96.{n}.1/24").as_str())
        .isolate(isolate)
        .member(MemberSpec::new().address(format!("10.96.{n}.2/24").as_str()))
        .create()
        .await
        .unwrap()
}

#[tokio::test]
async fn isolated_networks_cannot_reach_each_other_either_way() {
    let host = sandbox().await;
    host.set_sysctl("net.ipv4.ip_forward", "1").await.unwrap();
    let before = mangle(&host);
    // Everything the tools show: the isolation rules' `mangle` table must go with them.
    let all_before = (
        saved(&host, "iptables-save"),
        saved(&host, "ip6tables-save"),
    );
    // Not isolated: routed through the host namespace, they reach each other.
    let (a, b) = (
        network(&host, 1, false).await,
        network(&host, 2, false).await,
    );
    assert!(
        ping(a.members()[0].namespace(), "10.96.2.2"),
        "no route between the networks"
    );
    drop((a, b));
    let (a, b) = (network(&host, 1, true).await, network(&host, 2, true).await);
    let c = network(&host, 3, false).await;
    let (a_ns, b_ns) = (a.members()[0].namespace(), b.members()[0].namespace());
    assert!(
        !ping(a_ns, "10.96.2.2"),
        "an isolated network reached another"
    );
    assert!(
        !ping(b_ns, "10.96.1.2"),
        "an isolated network reached another (back)"
    );
    assert!(
        ping(a_ns, "10.96.1.1") && ping(b_ns, "10.96.2.1"),
        "own gateways"
    );
    let c_ns = c.members()[0].namespace();
    assert!(
        ping(a_ns, "10.96.3.2") && ping(c_ns, "10.96.2.2"),
        "a network not isolated"
    );
    let rules = mangle(&host);
    // IPv4-only networks: no IPv6 rules.
    let v6 = mangle_of(&host, "ip6tables-save");
    assert!(!v6.contains("-j MARK") && !v6.contains("-j DROP"), "{v6}");
    assert_eq!(rules.matches("-j MARK").count(), 2, "{rules}");
    assert_eq!(rules.matches("-j DROP").count(), 2, "{rules}");
    drop((a, b, c));
    assert_eq!(mangle(&host), before, "isolation rules left behind");
    assert_eq!(
        (
            saved(&host, "iptables-save"),
            saved(&host, "ip6tables-save")
        ),
        all_before,
        "the mangle table the rules created was left behind"
    );
}
