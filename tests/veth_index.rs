//! A veth pair whose ends live in different namespaces gets explicit interface indexes (2^24
//! and up, see `pair_indexes` in src/link/veth.rs); when another link already holds the next
//! ones (`EBUSY`), the pair is made with the indexes after them. Alone in its binary: the
//! indexes come from a counter of the process, which tests running in parallel would share.

mod common;

use common::{ip_json, outside};
use netns_kit::{MemberSpec, Namespace, VethPair, bridged};

fn index_of(ns: &Namespace, dev: &str) -> u64 {
    ip_json(ns, &["link", "show", "dev", dev])[0]["ifindex"]
        .as_u64()
        .unwrap()
}

/// Someone else's link in `ns` takes interface index `index` (made by `ip`, not this crate).
fn occupy(ns: &Namespace, index: u64, name: &str) {
    let index = index.to_string();
    let peer = format!("{name}p");
    let args = [
        "link", "add", name, "index", &index, "type", "veth", "peer", "name", &peer,
    ];
    assert!(outside(ns, "ip", &args).status().unwrap().success());
}

#[test]
fn taken_explicit_indexes_are_skipped() {
    let (a, b) = (
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
    );
    let first = VethPair::builder("p0", "q0")
        .namespace(&a)
        .peer_namespace(&b)
        .create_blocking()
        .unwrap();
    let base = index_of(&a, "p0");
    assert!(base >= 1 << 24, "explicit indexes start at 2^24: {base}");
    assert_eq!(index_of(&b, "q0"), base + 1);
    // Someone else's link takes the index the next pair would get.
    occupy(&a, base + 2, "other");
    let second = VethPair::builder("p1", "q1")
        .namespace(&a)
        .peer_namespace(&b)
        .create_blocking()
        .unwrap();
    assert_eq!(
        index_of(&a, "p1"),
        base + 4,
        "the next free pair of indexes"
    );
    assert_eq!(index_of(&b, "q1"), base + 5);

    // A bridged network's member: its host end (the odd index) meets a taken one in the host.
    occupy(&a, base + 7, "other2");
    let net = bridged()
        .host(&a)
        .gateway("10.190.0.1/24")
        .member(MemberSpec::new().address("10.190.0.2/24"))
        .create_blocking()
        .unwrap();
    let host_end = net.members()[0].peer().name().to_owned();
    assert_eq!(
        index_of(&a, &host_end),
        base + 9,
        "the next free pair of indexes"
    );
    drop((first, second, net));
}
