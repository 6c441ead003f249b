//! The router pattern in one call: two LANs (bridges in a router namespace, dual-stack) and a
//! point-to-point link from the router to a database host, with forwarding on in the router
//! only. Proves reachability across subnets with the in-process ping and a real TCP round trip,
//! using the blocking API (no async runtime).
//!
//! ```sh
//! cargo run --example routed
//! ```
//!
//! Everything lives in namespaces created here (the router is a new anonymous namespace), so the
//! machine's own network is never touched, and everything is torn down at the end.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use netns_kit::{MemberSpec, Namespace, RouterLink, bridged, routed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = Namespace::new_blocking()?;
    let start = Instant::now();
    let net = routed()
        .lan(
            bridged()
                .bridge_name("lan-a")
                .gateway("10.20.1.1/24")
                .gateway("fd20:1::1/64")
                .member(
                    MemberSpec::new()
                        .address("10.20.1.2/24")
                        .address("fd20:1::2/64"),
                )
                .member(
                    MemberSpec::new()
                        .address("10.20.1.3/24")
                        .address("fd20:1::3/64"),
                ),
        )
        .lan(
            bridged()
                .bridge_name("lan-b")
                .gateway("10.20.2.1/24")
                .gateway("fd20:2::1/64")
                .member(
                    MemberSpec::new()
                        .address("10.20.2.2/24")
                        .address("fd20:2::2/64"),
                ),
        )
        .link(
            RouterLink::to(&db)
                .names("to-db", "eth0")
                .address("10.20.3.1/30", "10.20.3.2/30")
                .address("fd20:3::1/64", "fd20:3::2/64"),
        )
        .create_blocking()?;
    println!("built {net} in {:.2?}", start.elapsed());
    println!(
        "  forwarding in the router: ipv4={} ipv6={}",
        net.router().sysctl_blocking("net.ipv4.ip_forward")?,
        net.router()
            .sysctl_blocking("net.ipv6.conf.all.forwarding")?
    );

    let a = net.lans()[0].members()[0].namespace();
    let b = net.lans()[1].members()[0].namespace();
    for (from, name, to) in [
        (a, "lan-a member", "10.20.2.2"),
        (a, "lan-a member", "fd20:2::2"),
        (b, "lan-b member", "10.20.3.2"),
        (b, "lan-b member", "fd20:3::2"),
        (&db, "db", "10.20.1.3"),
        (&db, "db", "fd20:1::3"),
    ] {
        let rtt = from.ping_blocking(to.parse()?, Duration::from_secs(1))?;
        println!(
            "  ping {name:<12} -> {to:<10} ok, rtt {:7.3} ms",
            rtt.as_secs_f64() * 1e3
        );
    }

    // A TCP server in `db`, a client on LAN A: a real connection through the router.
    let listener = db.run_blocking(|| TcpListener::bind(("::", 5432)))??;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (stream, peer) = listener.accept()?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        (&stream).write_all(format!("hello {}, you said {line}", peer.ip()).as_bytes())
    });
    let db_address: IpAddr = "fd20:3::2".parse()?;
    let stream = a.run_blocking(move || TcpStream::connect((db_address, 5432)))??;
    (&stream).write_all(b"SELECT 1\n")?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    server.join().expect("server thread")?;
    print!("  tcp lan-a member -> [{db_address}]:5432: {answer}");

    let start = Instant::now();
    net.delete_blocking()?;
    println!("torn down in {:.2?}", start.elapsed());
    println!("done: routed network built, reachability proven, everything removed");
    Ok(())
}
