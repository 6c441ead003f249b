//! Ready on return: what `create` returns carries traffic at once. Checked from outside, right
//! after `create` returns, with no wait in between, while other threads build the same thing (as
//! parallel tests do, which is when the kernel is late): every interface is operationally up
//! with a real queueing discipline, every bridge port forwards, and every `nodad` IPv6 address
//! can be found by its neighbours (its solicited-node multicast group is joined). And the very
//! first TCP connections, made the instant `create` returns from threads already waiting inside
//! the namespaces, get through at the first try.

mod common;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use common::{in_ns, ip_json};
use netns_kit::{MemberSpec, Namespace, RouterLink, bridged, connect, routed};

/// Threads building at once, and rounds each.
const THREADS: usize = 8;
const ROUNDS: usize = 4;

/// What is not ready about interface `dev` in `ns`, if anything. A bridge's own operational
/// state is not looked at (it forwards whatever its carrier says; the kernel reports its
/// carrier late on purpose), only its addresses.
fn not_ready(ns: &Namespace, dev: &str, port: bool, ipv6: Option<Ipv6Addr>) -> Vec<String> {
    let mut problems = Vec::new();
    let link = ip_json(ns, &["-d", "link", "show", "dev", dev]);
    let link = &link[0];
    let bridge = link["linkinfo"]["info_kind"] == "bridge";
    if !bridge && link["operstate"] != "UP" {
        problems.push(format!("{dev}: operstate {}", link["operstate"]));
    }
    if !bridge && link["qdisc"] == "noop" {
        problems.push(format!("{dev}: no queueing discipline yet (noop)"));
    }
    if port {
        let state = &link["linkinfo"]["info_slave_data"]["state"];
        if state != "forwarding" {
            problems.push(format!("{dev}: bridge port state {state}"));
        }
    }
    if let Some(address) = ipv6 {
        let o = address.octets();
        let group = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(o[13]),
            u16::from_be_bytes([o[14], o[15]]),
        );
        let groups = ip_json(ns, &["maddr", "show", "dev", dev]);
        let joined = groups[0]["maddr"].as_array().is_some_and(|list| {
            list.iter().any(|m| {
                m["address"]
                    .as_str()
                    .and_then(|a| a.parse::<Ipv6Addr>().ok())
                    .is_some_and(|a| a == group)
            })
        });
        if !joined {
            problems.push(format!("{dev}: {address}'s group {group} not joined"));
        }
    }
    problems
}

/// The port the listeners use.
const PORT: u16 = 7300;

/// A listener on every address of `ns` (IPv4 and IPv6), bound before any address exists;
/// accepts until [`stop`] connects from `::1` (the library sets `lo` up in a new namespace).
fn listen(ns: &Namespace) -> std::thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel();
    let handle = in_ns(ns, move || {
        let listener = TcpListener::bind(("::", PORT)).unwrap();
        tx.send(()).unwrap();
        while let Ok((_, peer)) = listener.accept() {
            if peer.ip() == IpAddr::from(Ipv6Addr::LOCALHOST) {
                break;
            }
        }
    });
    rx.recv().unwrap();
    handle
}

/// Ends a [`listen`] thread.
fn stop(ns: &Namespace, listener: std::thread::JoinHandle<()>) {
    in_ns(ns, || {
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv6Addr::LOCALHOST, PORT)),
            Duration::from_secs(1),
        );
    })
    .join()
    .unwrap();
    listener.join().unwrap();
}

/// A thread inside `ns` that, when told, connects to each of `targets` once, with one try: a
/// lost first packet (or neighbour request, or SYN) is retried by the kernel only after a
/// second, so 900 ms — thousands of times a normal round trip here, yet under the retry — tells
/// a lost first packet apart.
fn connector(
    ns: &Namespace,
    targets: Vec<IpAddr>,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<Vec<String>>) {
    let (go, rx) = mpsc::channel::<()>();
    let handle = in_ns(ns, move || {
        rx.recv().unwrap();
        targets
            .into_iter()
            .filter_map(|to| {
                TcpStream::connect_timeout(
                    &SocketAddr::from((to, PORT)),
                    Duration::from_millis(500),
                )
                .err()
                .map(|e| format!("first TCP connection to {to} failed: {e}"))
            })
            .collect()
    });
    (go, handle)
}

fn direct_round(t: usize, r: usize) -> Vec<String> {
    let a = Namespace::new_blocking().unwrap();
    let b = Namespace::new_blocking().unwrap();
    let subnet = t * ROUNDS + r;
    let (a4, b4) = (format!("10.150.{subnet}.1"), format!("10.150.{subnet}.2"));
    let (a6, b6) = (format!("fd15:{subnet:x}::1"), format!("fd15:{subnet:x}::2"));
    let listener = listen(&b);
    let (go, connects) = connector(&a, vec![b4.parse().unwrap(), b6.parse().unwrap()]);
    let link = connect(&a, &b)
        .names("left", "right")
        .address(format!("{a4}/24"), format!("{b4}/24"))
        .address(format!("{a6}/64"), format!("{b6}/64"))
        .create_blocking()
        .unwrap();
    go.send(()).unwrap();
    let mut problems = connects.join().unwrap();
    problems.extend(not_ready(&a, "left", false, a6.parse().ok()));
    problems.extend(not_ready(&b, "right", false, b6.parse().ok()));
    stop(&b, listener);
    drop(link);
    problems
}

fn bridged_round(t: usize, r: usize) -> Vec<String> {
    let host = Namespace::new_blocking().unwrap();
    let spaces: Vec<Namespace> = (0..3).map(|_| Namespace::new_blocking().unwrap()).collect();
    let subnet = t * ROUNDS + r;
    let v4 = |i: u8| format!("10.151.{subnet}.{i}");
    let v6 = |i: u8| format!("fd16:{subnet:x}::{i:x}");
    // Member 0 connects to member 1 (IPv4), member 2 (IPv6) and the gateway (both).
    let listeners = [listen(&spaces[1]), listen(&spaces[2]), listen(&host)];
    let targets = [v4(2), v6(3), v4(254), v6(254)];
    let (go, connects) = connector(
        &spaces[0],
        targets.iter().map(|t| t.parse().unwrap()).collect(),
    );
    let net = bridged()
        .host(&host)
        .bridge_name("br0")
        .gateway(format!("{}/24", v4(254)))
        .gateway(format!("{}/64", v6(254)))
        .members(spaces.iter().zip(1u8..).map(|(ns, i)| {
            MemberSpec::in_namespace(ns)
                .address(format!("{}/24", v4(i)))
                .address(format!("{}/64", v6(i)))
        }))
        .create_blocking()
        .unwrap();
    go.send(()).unwrap();
    let mut problems: Vec<String> = connects
        .join()
        .unwrap()
        .into_iter()
        .map(|p| format!("bridged: {p}"))
        .collect();
    problems.extend(not_ready(&host, "br0", false, v6(254).parse().ok()));
    for (m, i) in net.members().iter().zip(1u8..) {
        problems.extend(not_ready(
            m.namespace(),
            m.link().name(),
            false,
            v6(i).parse().ok(),
        ));
        problems.extend(not_ready(&host, m.peer().name(), true, None));
    }
    let [l1, l2, lh] = listeners;
    stop(&spaces[1], l1);
    stop(&spaces[2], l2);
    stop(&host, lh);
    drop(net);
    problems
}

/// A runtime adding one container: IPv4 only, a bridge that exists, a container namespace
/// that exists, the blocking API. `create` then asks the links' state on its own connections
/// and starts no wait when they are up already (see `member::ready_already`).
fn runtime_round(t: usize, r: usize) -> Vec<String> {
    let host = Namespace::new_blocking().unwrap();
    let container = Namespace::new_blocking().unwrap();
    let subnet = t * ROUNDS + r;
    let gw = format!("10.152.{subnet}.1");
    let cni0 = netns_kit::Bridge::builder("cni0")
        .namespace(&host)
        .address(format!("{gw}/24"))
        .create_blocking()
        .unwrap();
    let listener = listen(&host);
    let (go, connects) = connector(&container, vec![gw.parse().unwrap()]);
    let net = bridged()
        .existing_bridge(&cni0)
        .gateway(format!("{gw}/24"))
        .member(MemberSpec::in_namespace(&container).address(format!("10.152.{subnet}.2/24")))
        .create_blocking()
        .unwrap();
    go.send(()).unwrap();
    let mut problems: Vec<String> = connects
        .join()
        .unwrap()
        .into_iter()
        .map(|p| format!("runtime: {p}"))
        .collect();
    for m in net.members() {
        problems.extend(not_ready(m.namespace(), m.link().name(), false, None));
        problems.extend(not_ready(&host, m.peer().name(), true, None));
    }
    stop(&host, listener);
    drop((net, cni0));
    problems
}

fn routed_round(t: usize, r: usize) -> Vec<String> {
    let (a, b, c) = (
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
        Namespace::new_blocking().unwrap(),
    );
    let subnet = t * ROUNDS + r;
    let listeners = [listen(&b), listen(&c)];
    let targets = [
        format!("10.152.{subnet}.2"),
        format!("fd17:{subnet:x}:1::2"),
        format!("10.153.{subnet}.2"),
        format!("fd18:{subnet:x}::2"),
    ];
    let (go, connects) = connector(&a, targets.iter().map(|t| t.parse().unwrap()).collect());
    let lan = |ns: &Namespace, n: u8| {
        bridged()
            .gateway(format!("10.15{}.{subnet}.1/24", 1 + n))
            .gateway(format!("fd17:{subnet:x}:{n}::1/64"))
            .member(
                MemberSpec::in_namespace(ns)
                    .address(format!("10.15{}.{subnet}.2/24", 1 + n))
                    .address(format!("fd17:{subnet:x}:{n}::2/64")),
            )
    };
    let net = routed()
        .lan(lan(&a, 0))
        .lan(lan(&b, 1))
        .link(
            RouterLink::to(&c)
                .address(
                    format!("10.153.{subnet}.1/24"),
                    format!("10.153.{subnet}.2/24"),
                )
                .address(
                    format!("fd18:{subnet:x}::1/64"),
                    format!("fd18:{subnet:x}::2/64"),
                ),
        )
        .create_blocking()
        .unwrap();
    go.send(()).unwrap();
    let problems = connects
        .join()
        .unwrap()
        .into_iter()
        .map(|p| format!("routed: {p}"))
        .collect();
    let [lb, lc] = listeners;
    stop(&b, lb);
    stop(&c, lc);
    drop(net);
    problems
}

/// Every `WARN` event of the crate (such as "links not up after 5s": a readiness wait that
/// ran into its timeout, which the connects alone would not notice), as "target: message".
fn warnings() -> Vec<String> {
    use std::sync::{Arc, Mutex, OnceLock};
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

    #[derive(Clone, Default)]
    struct Warnings(Arc<Mutex<Vec<String>>>);
    struct Message(String);
    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    impl<S: tracing::Subscriber> Layer<S> for Warnings {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let meta = event.metadata();
            if *meta.level() == tracing::Level::WARN && meta.target().starts_with("netns_kit") {
                let mut message = Message(String::new());
                event.record(&mut message);
                self.0.lock().unwrap().push(message.0);
            }
        }
    }
    static WARNINGS: OnceLock<Warnings> = OnceLock::new();
    WARNINGS
        .get_or_init(|| {
            let w = Warnings::default();
            tracing_subscriber::registry().with(w.clone()).init();
            w
        })
        .0
        .lock()
        .unwrap()
        .clone()
}

#[test]
fn what_create_returns_carries_traffic_at_once_under_parallel_load() {
    assert!(warnings().is_empty());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .flat_map(|r| {
                        let mut p = direct_round(t, r);
                        p.extend(bridged_round(t, r));
                        p.extend(routed_round(t, r));
                        p.extend(runtime_round(t, r));
                        p
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let problems: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        problems.is_empty(),
        "not ready when create returned ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
    let warned = warnings();
    assert!(
        warned.is_empty(),
        "the readiness wait gave up or failed: {warned:?}"
    );
}
