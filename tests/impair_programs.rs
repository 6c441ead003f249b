//! The eBPF programs behind user-space impairments, checked from outside the library with `tc`
//! and `/proc`: a network's impaired members share the program on their links (one loaded
//! copy, not one each), each member's TAP has a program of its own (it names the member's
//! link), and once the network is gone the process holds no program at all. A test binary of
//! its own: it counts the process's open program descriptors, which the other impairment
//! tests (in `tests/impair.rs`, threads of another process) cannot change.

mod common;

use std::collections::HashSet;

use common::*;
use netns_kit::{
    MemberSpec, Namespace, bridged,
    impair::{Backend, Impairment},
};

/// The id and name of the eBPF program of the one `bpf` filter on `dev`'s `side` (`egress`,
/// `ingress`) in `ns`, from `tc -j filter show`.
fn filter_program(ns: &Namespace, dev: &str, side: &str) -> (u64, String) {
    let out = outside(ns, "tc", &["-j", "filter", "show", "dev", dev, side])
        .output()
        .expect("run tc");
    assert!(
        out.status.success(),
        "tc filter show dev {dev} {side}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let filters: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from tc");
    let programs: Vec<(u64, String)> = filters
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let prog = &f["options"]["prog"];
            Some((prog["id"].as_u64()?, prog["name"].as_str()?.to_owned()))
        })
        .collect();
    assert_eq!(
        programs.len(),
        1,
        "one bpf filter on {dev} {side}: {filters}"
    );
    programs[0].clone()
}

/// How many eBPF programs this process holds open (`anon_inode:bpf-prog` in `/proc/self/fd`).
fn open_programs() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy() == "anon_inode:bpf-prog")
        .count()
}

#[tokio::test]
async fn impaired_members_share_their_links_program_and_none_is_left_after() {
    let host = sandbox().await;
    assert_eq!(open_programs(), 0, "programs open before the test");
    let impairment = Impairment::new()
        .delay(std::time::Duration::from_millis(1))
        .backend(Backend::UserSpace);
    let net = bridged()
        .host(&host)
        .gateway("10.96.0.1/24")
        .members((2..6).map(|i| {
            MemberSpec::new()
                .address(format!("10.96.0.{i}/24"))
                .impair(impairment.clone())
        }))
        .create()
        .await
        .unwrap();
    let mut divert = HashSet::new();
    let mut back = HashSet::new();
    for member in net.members() {
        let ns = member.namespace();
        let (id, name) = filter_program(ns, member.link().name(), "egress");
        assert_eq!(name, "nk_divert");
        divert.insert(id);
        // The member's TAP (`nkdivN`).
        let tap = link_names(ns)
            .into_iter()
            .find(|n| n.starts_with("nkdiv"))
            .expect("the member's TAP");
        let (id, name) = filter_program(ns, &tap, "ingress");
        assert_eq!(name, "nk_return");
        back.insert(id);
    }
    assert_eq!(divert.len(), 1, "the members' links share one program");
    assert_eq!(back.len(), 4, "each member's TAP has its own program");
    // The members still reach each other through their relays.
    let ping = outside(
        net.members()[0].namespace(),
        "ping",
        &["-c1", "-W2", "10.96.0.5"],
    )
    .output()
    .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    drop(net);
    assert_eq!(open_programs(), 0, "programs still open after the network");
    assert_eq!(link_names(&host), ["lo"]);
}
