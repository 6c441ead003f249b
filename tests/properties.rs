//! Property tests of the name and address validators, with the kernel as the oracle: random
//! inputs never panic; a name or address is accepted exactly when the documented rules allow it;
//! every refusal quotes the input; and what the validators accept, the kernel accepts unchanged
//! (a link gets exactly the name asked for, an address exactly the address).

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use netns_kit::{Address, IfName, IntoIpNetwork, Namespace, NsName, VethPair};

/// Characters that exercise every rule, plus ordinary ones.
const ALPHABET: &[char] = &[
    'a', 'b', 'z', 'A', 'Z', '0', '9', '-', '_', '.', '/', ':', '%', ' ', '\t', '\n', '\0', '@',
    '+', '=', 'é', 'ß', '→', '\u{a0}', '\u{2003}',
];

fn random_name(rng: &mut Rng, max_len: usize) -> String {
    let len = rng.below(max_len as u64 + 1) as usize;
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect()
}

/// The interface-name rules, written independently of the library.
fn ifname_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| matches!(c, '/' | ':' | '%' | '\0') || c.is_whitespace())
}

/// The namespace-name rules.
fn nsname_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s != "." && s != ".." && !s.contains(['/', '\0'])
}

#[test]
fn interface_names_are_accepted_exactly_by_the_rules() {
    let mut rng = Rng::from_time("interface names");
    let mut accepted = 0;
    for _ in 0..20_000 {
        let name = random_name(&mut rng, 18);
        match IfName::new(&name) {
            Ok(n) => {
                assert!(ifname_ok(&name), "accepted {name:?}");
                assert_eq!(n.as_str(), name);
                accepted += 1;
            }
            Err(e) => {
                assert!(!ifname_ok(&name), "refused {name:?}: {e}");
                assert!(e.is_invalid_input());
                assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
            }
        }
    }
    assert!(
        accepted > 1000,
        "the generator should hit both sides ({accepted})"
    );
}

#[test]
fn namespace_names_are_accepted_exactly_by_the_rules() {
    let mut rng = Rng::from_time("namespace names");
    for _ in 0..20_000 {
        let mut name = random_name(&mut rng, 20);
        if rng.below(50) == 0 {
            name = "x".repeat(250 + rng.below(10) as usize);
        }
        match NsName::new(&name) {
            Ok(n) => {
                assert!(nsname_ok(&name), "accepted {name:?}");
                assert_eq!(n.as_str(), name);
            }
            Err(e) => {
                assert!(!nsname_ok(&name), "refused {name:?}: {e}");
                assert!(e.is_invalid_input());
            }
        }
    }
}

#[tokio::test]
async fn the_kernel_accepts_every_accepted_interface_name_unchanged() {
    let mut rng = Rng::from_time("kernel interface names");
    let ns = sandbox().await;
    let mut tried = 0;
    while tried < 60 {
        let name = random_name(&mut rng, 15);
        if IfName::new(&name).is_err() {
            continue;
        }
        tried += 1;
        let veth = VethPair::new(name.as_str(), "peer")
            .namespace(&ns)
            .create()
            .await
            .unwrap_or_else(|e| panic!("the kernel refused {name:?}: {e}"));
        let names = link_names(&ns);
        assert!(names.contains(&name), "{name:?} became {names:?}");
        veth.delete().await.unwrap();
    }
    assert_eq!(link_names(&ns), ["lo"]);
}

#[tokio::test]
async fn ip_netns_lists_every_accepted_namespace_name_unchanged() {
    let mut rng = Rng::from_time("kernel namespace names");
    let mut tried = 0;
    while tried < 10 {
        let name = format!("nkprop{}", random_name(&mut rng, 12));
        if NsName::new(&name).is_err() || name.contains(char::is_whitespace) {
            // (`ip netns list` prints one name per line, split at whitespace.)
            continue;
        }
        tried += 1;
        let ns = Namespace::named(name.as_str()).await.unwrap();
        assert!(netns_list().contains(&name), "{name:?}");
        assert!(std::path::Path::new("/run/netns").join(&name).exists());
        ns.delete().await.unwrap();
        assert!(!netns_list().contains(&name));
    }
}

/// The host-address rules for a random (address, prefix), written independently.
fn host_ok(ip: IpAddr, prefix: u8) -> bool {
    match ip {
        IpAddr::V4(a) => {
            if prefix > 32 || a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                return false;
            }
            if prefix >= 31 {
                return true;
            }
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let bits = u32::from(a);
            bits & !mask != 0 && bits | mask != u32::MAX
        }
        IpAddr::V6(a) => prefix <= 128 && !a.is_unspecified() && !a.is_multicast(),
    }
}

#[tokio::test]
async fn addresses_are_accepted_exactly_by_the_rules_and_the_kernel_agrees() {
    let mut rng = Rng::from_time("addresses");
    let ns = sandbox().await;
    let veth = VethPair::new("p0", "p1")
        .namespace(&ns)
        .create()
        .await
        .unwrap();
    let mut added = 0;
    for i in 0..3000 {
        let ip = if rng.below(2) == 0 {
            // Bias towards small host parts, so network/broadcast cases come up.
            let base = (rng.next() as u32) & 0xffff_ff00;
            let low = match rng.below(4) {
                0 => 0,
                1 => 255,
                _ => rng.below(256) as u32,
            };
            IpAddr::V4(Ipv4Addr::from(base | low))
        } else {
            let mut segs = [0u16; 8];
            for s in &mut segs {
                *s = if rng.below(3) == 0 {
                    0
                } else {
                    rng.next() as u16
                };
            }
            IpAddr::V6(Ipv6Addr::from(segs))
        };
        let prefix = rng.below(if ip.is_ipv4() { 36 } else { 132 }) as u8;
        let text = format!("{ip}/{prefix}");
        let valid_prefix = (ip, prefix).into_ip_network().is_ok();
        // Only a sample goes to the kernel; every input goes through the validator.
        let to_kernel = i % 25 == 0;
        let result = if to_kernel {
            Address::new(text.as_str())
                .nodad(true)
                .add(veth.link())
                .await
                .inspect(|_| added += 1)
        } else {
            // The validator alone: an address that passes it would be sent.
            match text.as_str().into_ip_network() {
                Ok(_) if host_ok(ip, prefix) => continue,
                Ok(_) | Err(_) => Address::new(text.as_str()).add(veth.link()).await,
            }
        };
        match result {
            Ok(a) => {
                assert!(valid_prefix && host_ok(ip, prefix), "accepted {text}");
                let shown = addrs(&ns, "p0");
                // Compared as addresses, not text: `ip` writes e.g. `::89.227.10.5` where Rust
                // writes `::59e3:a05`.
                let parsed: Vec<(IpAddr, u8)> = shown
                    .iter()
                    .filter_map(|s| {
                        let (ip, prefix) = s.split_once('/')?;
                        Some((ip.parse().ok()?, prefix.parse().ok()?))
                    })
                    .collect();
                let link_local = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
                if !link_local {
                    assert!(parsed.contains(&(ip, prefix)), "{text} shows as {shown:?}");
                }
                a.delete().await.unwrap();
            }
            Err(e) => {
                if valid_prefix && host_ok(ip, prefix) {
                    // The validator let it through: only the kernel may refuse it, and must
                    // have a reason (e.g. loopback or reserved ranges).
                    assert!(!e.is_invalid_input(), "refused valid {text}: {e}");
                } else {
                    assert!(e.is_invalid_input(), "{text}: {e:?}");
                    assert!(e.to_string().contains(&ip.to_string()), "{e}");
                }
            }
        }
    }
    assert!(added > 20, "the kernel was asked about {added} addresses");
    assert!(addrs(&ns, "p0").is_empty());
}
