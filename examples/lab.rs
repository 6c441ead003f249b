//! What a test author writes: a lab with five named hosts on one LAN and a router to a second
//! subnet, a server in one host and a client in another, all gone at the end.
//!
//! ```sh
//! cargo run --example lab                      # build, prove, tear down
//! NETNS_KIT_KEEP=1 cargo run --example lab -- --fail   # fail at the end: the lab is kept
//! cargo run --example lab -- --reap            # remove kept labs
//! cargo run --example lab -- --topology examples/topology.toml   # a lab from a file
//! ```
//!
//! Everything lives in namespaces the lab creates; the machine's own network is never touched.
//! Without the privileges to make namespaces, the lab is skipped and says why.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    time::Instant,
};

use netns_kit::{MemberSpec, bridged, lab::Lab, routed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without root: into a user namespace of our own first, before any thread starts.
    if !nix::unistd::geteuid().is_root() {
        println!("not root: working in {:?}", netns_kit::userns::isolate()?);
    }
    if std::env::args().any(|a| a == "--reap") {
        let removed = netns_kit::lab::reap_kept_blocking()?;
        println!("reaped {} kept namespaces: {removed:?}", removed.len());
        return Ok(());
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--topology") {
        let path = args.get(i + 1).ok_or("--topology needs a file")?;
        return from_file(path);
    }
    let start = Instant::now();
    let Some(mut lab) = Lab::or_skip_blocking("lab_example")? else {
        return Ok(());
    };
    // Five hosts on one dual-stack LAN: gateway .1, hosts .2 to .6.
    lab.add_lan_blocking(
        ["10.30.0.0/24", "fd30::/64"],
        ["db1", "db2", "db3", "app", "probe"],
    )?;
    // A router joining the LAN of `app2` and the LAN of `backup`.
    for host in ["router", "app2", "backup"] {
        lab.add_host_blocking(host)?;
    }
    let member = |lab: &Lab, host: &str, address: &str| -> netns_kit::Result<MemberSpec> {
        Ok(MemberSpec::in_namespace(lab.host(host)?).address(address))
    };
    let net = routed()
        .router(lab.host("router")?)
        .lan(
            bridged()
                .gateway("10.31.1.1/24")
                .member(member(&lab, "app2", "10.31.1.2/24")?),
        )
        .lan(
            bridged()
                .gateway("10.31.2.1/24")
                .member(member(&lab, "backup", "10.31.2.2/24")?),
        );
    lab.add_routed_blocking(net)?;
    println!(
        "lab ready in {:.2?}: hosts {:?}",
        start.elapsed(),
        lab.hosts().collect::<Vec<_>>()
    );

    // Every host of the LAN answers a ping from `probe`, with the system's ping.
    for host in ["db1", "db2", "db3", "app"] {
        let address = lab.address(host, 4)?;
        let ok = lab
            .command("probe", "ping")?
            .args(["-c", "1", "-W", "1", "-q", &address.to_string()])
            .output()?
            .status
            .success();
        println!(
            "  probe -> {host:<6} {address:<12} {}",
            if ok { "ok" } else { "LOST" }
        );
    }

    // A server in `backup`, a client in `app2`: through the router.
    let listener = lab
        .host("backup")?
        .run_blocking(|| TcpListener::bind(("0.0.0.0", 9000)))??;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (stream, _) = listener.accept()?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        (&stream).write_all(format!("stored {line}").as_bytes())
    });
    let backup = lab.address("backup", 4)?;
    let stream = lab
        .host("app2")?
        .run_blocking(move || TcpStream::connect((backup, 9000)))??;
    (&stream).write_all(b"snapshot-1\n")?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    server.join().expect("server thread")?;
    print!("  app2 -> backup {backup}:9000: {answer}");

    if std::env::args().any(|a| a == "--fail") {
        panic!("failing on purpose (--fail): with NETNS_KIT_KEEP=1 the lab is kept");
    }
    drop(lab);
    println!(
        "done: lab built, used and removed in {:.2?}",
        start.elapsed()
    );
    Ok(())
}

/// Builds the lab a topology file describes, prints every host's addresses, and pings from
/// every host to every other host's first IPv4 address (the reachability matrix).
fn from_file(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let topology = netns_kit::lab::Topology::from_file(path)?;
    let Some(mut lab) = Lab::or_skip_blocking("topology_example")? else {
        return Ok(());
    };
    let start = Instant::now();
    lab.add_topology_blocking(&topology)?;
    println!("built {path} in {:.2?}", start.elapsed());
    let hosts: Vec<String> = lab.hosts().map(str::to_owned).collect();
    for host in &hosts {
        let addresses: Vec<String> = lab
            .addresses(host)?
            .iter()
            .map(ToString::to_string)
            .collect();
        println!("  {host:<7} {}", addresses.join(" "));
    }
    let (mut ok, mut lost) = (0, Vec::new());
    for from in &hosts {
        for to in &hosts {
            let Ok(address) = lab.address(to, 4) else {
                continue;
            };
            if from == to {
                continue;
            }
            let answered = lab
                .command(from, "ping")?
                .args(["-c", "1", "-W", "1", "-q", &address.to_string()])
                .output()?
                .status
                .success();
            if answered {
                ok += 1;
            } else {
                lost.push(format!("{from}->{to}"));
            }
        }
    }
    println!("reachability: {ok} pairs answered, unreachable: {lost:?}");
    Ok(())
}
