//! One bridged network spanning two "machines" over VXLAN: two host namespaces joined by an
//! underlay link (a veth pair standing for the wire between two machines), each running its
//! half of network 10.42.0.0/24 — a bridge with a VXLAN port towards the other machine, and two
//! members. Every member pings every member on the other machine, and 1 MiB crosses by TCP,
//! byte for byte. Prints `two_hosts: ok` at the end.
//!
//! ```sh
//! cargo run --example two_hosts
//! ```
//!
//! Everything happens in namespaces created here (the "machines" too), so the machine's own
//! network is never touched, and everything is torn down at the end.

use std::{
    io::{Read, Write},
    net::{IpAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use netns_kit::{MemberSpec, Namespace, bridged, connect};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let (a, b) = (Namespace::new_blocking()?, Namespace::new_blocking()?);
    // The underlay: the wire between the two machines.
    let underlay = connect(&a, &b)
        .names("wire", "wire")
        .address("10.99.0.1/24", "10.99.0.2/24")
        .default_routes(false)
        .create_blocking()?;
    let (ip_a, ip_b): (IpAddr, IpAddr) = ("10.99.0.1".parse()?, "10.99.0.2".parse()?);
    // Each machine's half of 10.42.0.0/24, VNI 42, with a VXLAN port towards the other.
    let half = |host: &Namespace, gateway: &str, local: IpAddr, peer: IpAddr, first: u8| {
        bridged()
            .host(host)
            .bridge_name("br42")
            .gateway(gateway)
            .vxlan(42, local, [peer])
            .members(
                (first..first + 2).map(|i| MemberSpec::new().address(format!("10.42.0.{i}/24"))),
            )
            .create_blocking()
    };
    let net_a = half(&a, "10.42.0.1/24", ip_a, ip_b, 11)?;
    let net_b = half(&b, "10.42.0.2/24", ip_b, ip_a, 21)?;
    println!(
        "built two machines and one network across them in {:.2?}",
        start.elapsed()
    );
    println!(
        "  members' MTU {} (1500 less 50 bytes of VXLAN headers)",
        net_a.members()[0].link().info_blocking()?.mtu.unwrap_or(0)
    );

    let mut pings = 0;
    for (here, there) in [(&net_a, &net_b), (&net_b, &net_a)] {
        for from in here.members() {
            for to in there.members() {
                let rtt = from
                    .namespace()
                    .ping_blocking(to.addresses()[0].ip(), Duration::from_secs(2))?;
                println!(
                    "  {} -> {} ok, rtt {:.3} ms",
                    from.addresses()[0].ip(),
                    to.addresses()[0].ip(),
                    rtt.as_secs_f64() * 1e3
                );
                pings += 1;
            }
        }
    }

    // 1 MiB from a member on machine A to a member on machine B, checked byte for byte.
    let data: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let receiver = net_b.members()[1].namespace();
    let listener = receiver.run_blocking(|| TcpListener::bind(("0.0.0.0", 7000)))??;
    let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut stream, _) = listener.accept()?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got)?;
        Ok(got)
    });
    let to = net_b.members()[1].addresses()[0].ip();
    let sent = data.clone();
    net_a.members()[0]
        .namespace()
        .run_blocking(move || -> std::io::Result<()> {
            let mut stream = TcpStream::connect((to, 7000))?;
            stream.write_all(&sent)
        })??;
    let got = server.join().expect("receiver thread")?;
    if got != data {
        return Err(format!(
            "{} of {} bytes arrived, not the same",
            got.len(),
            data.len()
        )
        .into());
    }
    println!("  1 MiB by TCP from A to B: {} bytes, identical", got.len());

    drop((net_a, net_b, underlay));
    println!(
        "two_hosts: ok ({pings} pings, {:.2?} in all)",
        start.elapsed()
    );
    Ok(())
}
