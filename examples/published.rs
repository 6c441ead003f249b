//! A container runtime's day two, written only with the blocking API: after "give it `eth0`",
//! reaching out (masquerade), being reached (`-p 8080:80`, from another machine, from the
//! host, from `127.0.0.1` and from another container) and isolation from a second network.
//!
//! Everything happens inside a private "host" namespace the example makes (anonymous: it
//! vanishes with the process), whose firewall drops forwarded traffic as Docker's does
//! (`FORWARD` policy `DROP`). A "client" namespace on a cable plays another machine: it has a
//! route to the host only, never to the containers. Every check is made with `curl` and
//! `iptables-save`, tools outside the library:
//!
//! 1. network `cni0`-like: containers A (10.88.0.2, serving HTTP on port 80) and B, dual-stack,
//!    with the bridge's FORWARD accept rules (`forward_check` says they are needed);
//! 2. a second network, isolated from the first (both `isolate(true)`);
//! 3. masquerade for the first network, and host port 8080 published to A's port 80, also on
//!    127.0.0.1;
//! 4. curl from the client to the host's address, from the host to 127.0.0.1, from B to the
//!    gateway (hairpin), from A to a server on the client (which sees the host's address), and
//!    from the isolated network to A (which fails);
//! 5. everything dropped: `iptables-save` and `ip6tables-save` print what they printed before.
//!
//! Run with `cargo run --example published` (as root; `curl` and `iptables` installed).

use std::{
    io::{Read, Write},
    net::TcpListener,
};

use netns_kit::{
    MemberSpec, Namespace, bridged, connect, forward_check_blocking, nat::PortMapping,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `curl` run inside `ns`: the body, or why not.
fn curl(ns: &Namespace, url: &str) -> std::result::Result<String, String> {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "3", url])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A tiny HTTP server in `ns` on `port`, answering `NAME: hello, PEER` to every request.
fn serve(ns: &Namespace, port: u16, name: &'static str) -> Result<()> {
    let listener = ns.run_blocking(move || TcpListener::bind(("::", port)))??;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let peer = stream
                .peer_addr()
                .map(|a| a.ip().to_canonical().to_string());
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let body = format!("{name}: hello, {}\n", peer.unwrap_or_default());
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}

/// What `iptables-save` and `ip6tables-save` print in `ns`, without comments and counters.
fn saved(ns: &Namespace) -> Result<String> {
    let mut all = String::new();
    for program in ["iptables-save", "ip6tables-save"] {
        let out = ns.command(program).output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if !line.starts_with('#') {
                all.push_str(line.split(" [").next().unwrap_or(line));
                all.push('\n');
            }
        }
    }
    Ok(all)
}

fn main() -> Result<()> {
    let host = Namespace::new_blocking()?;
    host.set_sysctl_blocking("net.ipv4.ip_forward", "1")?;
    host.set_sysctl_blocking("net.ipv6.conf.all.forwarding", "1")?;
    // The firewall of a host running Docker.
    for program in ["iptables", "ip6tables"] {
        let status = host
            .command(program)
            .args(["-P", "FORWARD", "DROP"])
            .status()?;
        if !status.success() {
            return Err(format!("{program} -P FORWARD DROP failed").into());
        }
    }
    let before = saved(&host)?;

    // 1. The containers' network, and 2. a second one, isolated from it.
    let fix = forward_check_blocking(&host)?.needs_fix();
    println!("forward fix needed: {fix}");
    let net = bridged()
        .host(&host)
        .gateway("10.88.0.1/24")
        .gateway("fd88::1/64")
        .accept_forward(fix)
        .isolate(true)
        .nodad(true)
        .member(
            MemberSpec::new()
                .address("10.88.0.2/24")
                .address("fd88::2/64"),
        )
        .member(
            MemberSpec::new()
                .address("10.88.0.3/24")
                .address("fd88::3/64"),
        )
        .create_blocking()?;
    let other = bridged()
        .host(&host)
        .gateway("10.89.0.1/24")
        .accept_forward(fix)
        .isolate(true)
        .member(MemberSpec::new().address("10.89.0.2/24"))
        .create_blocking()?;
    let (a, b) = (net.members()[0].namespace(), net.members()[1].namespace());
    serve(a, 80, "A")?;

    // Another machine: a route to the host only.
    let client = Namespace::new_blocking()?;
    let _cable = connect(&host, &client)
        .address("10.9.0.1/24", "10.9.0.2/24")
        .default_routes(false)
        .create_blocking()?;
    serve(&client, 9000, "client")?;

    // 3. Reaching out and being reached.
    let masq = net.masquerade().create_blocking()?;
    let ports = net
        .publish()
        .map(PortMapping::tcp(8080, "10.88.0.2:80".parse()?))
        .map(PortMapping::tcp(8080, "[fd88::2]:80".parse()?))
        .localhost(true)
        .create_blocking()?;
    println!(
        "masquerade chain {:?}, ports chain {:?} ({:?})",
        masq.chains()[0],
        ports.chains()[0],
        ports.backend()
    );

    // 4. From outside the library: curl.
    let checks: [(&str, &Namespace, &str); 5] = [
        ("client -> host:8080", &client, "http://10.9.0.1:8080/"),
        ("host -> 127.0.0.1:8080", &host, "http://127.0.0.1:8080/"),
        ("B -> gateway:8080 (hairpin)", b, "http://10.88.0.1:8080/"),
        ("B -> [fd88::1]:8080 (hairpin)", b, "http://[fd88::1]:8080/"),
        ("A -> client:9000 (masquerade)", a, "http://10.9.0.2:9000/"),
    ];
    for (what, ns, url) in checks {
        let body = curl(ns, url).map_err(|e| format!("{what}: {e}"))?;
        println!("{what}: {body}");
    }
    match curl(other.members()[0].namespace(), "http://10.88.0.2:80/") {
        Ok(body) => return Err(format!("the isolated network reached A: {body}").into()),
        Err(_) => println!("isolated network -> A: unreachable"),
    }

    // 5. Everything goes, and the firewall is as it was.
    drop((ports, masq, net, other));
    let after = saved(&host)?;
    if after != before {
        return Err(format!("the firewall changed:\nbefore:\n{before}\nafter:\n{after}").into());
    }
    println!("iptables-save: the same before and after");
    println!("threads: {}", std::fs::read_dir("/proc/self/task")?.count());
    println!("published: ok");
    Ok(())
}
