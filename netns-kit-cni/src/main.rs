//! `netns-kit-cni`: a CNI plugin interchangeable with the reference `bridge` plugin
//! (containernetworking-plugins), built on netns-kit's blocking API.
//!
//! A container runtime (containerd, CRI-O, Podman, nerdctl) runs it once per container and
//! command, with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` and
//! `CNI_ARGS` in the environment and the network configuration on stdin; it prints a result
//! or an error object on stdout (CNI spec 1.1.0; results also in the older formats the reference
//! plugin accepts, down to 0.1.0).
//!
//! The plugin is an ordinary user of the library: everything it does to interfaces, addresses
//! and routes goes through the public blocking API, which sends its netlink requests from the
//! calling thread without starting an async runtime — a short-lived process pays no start-up
//! for one. It runs in the runtime's (host) namespace and reaches into the container's through
//! the namespace file it is given, never by moving a thread of its own there except for the
//! container's sysctls and DEL's removal of the interface (`unlink`).
//!
//! Modules: `conf` (environment and configuration, checked before any change), `spec` (errors
//! and result formats), `delegate` (running the IPAM plugin), `hostlocal` (the `host-local`
//! IPAM plugin's work, done in-process), `masq` (`ipMasq` rules, through the library's `nat`
//! module), `bridge` (ADD and DEL), `unlink` (DEL's removal of the interface without waiting
//! for the kernel to free it) and `check` (CHECK, STATUS and GC).

mod bridge;
mod check;
mod conf;
mod delegate;
mod hostlocal;
mod masq;
mod spec;
mod unlink;

use std::io::{Read, Write};

use serde_json::{Value, json};

use crate::{
    conf::{Env, NetConf},
    spec::{CniError, SUPPORTED, code},
};

/// Runs the command; `Some` is the JSON to print.
fn run(stdin: &[u8], version: &mut String) -> Result<Option<Value>, CniError> {
    let env = Env::read()?;
    if env.command == "VERSION" {
        return Ok(Some(
            json!({ "cniVersion": "1.1.0", "supportedVersions": SUPPORTED }),
        ));
    }
    let conf = NetConf::parse(stdin, &env)?;
    version.clone_from(&conf.cni_version);
    match env.command.as_str() {
        "ADD" => bridge::add(&env, &conf, stdin).map(Some),
        "DEL" => bridge::del(&env, &conf, stdin).map(|()| None),
        "CHECK" => check::check(&env, &conf, stdin).map(|()| None),
        "STATUS" => check::status(&env, &conf, stdin).map(|()| None),
        "GC" => check::gc(&env, &conf, stdin).map(|()| None),
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("unknown CNI_COMMAND: {other}"),
        )),
    }
}

fn main() {
    // Run by hand, without a command: say what this is, as libcni's plugins do.
    if std::env::var("CNI_COMMAND").map_or(true, |c| c.is_empty()) {
        eprintln!(
            "CNI netns-kit-cni plugin version {}\nCNI protocol versions supported: {}",
            env!("CARGO_PKG_VERSION"),
            SUPPORTED.join(", ")
        );
        return;
    }
    let mut stdin = Vec::new();
    let mut version = "1.1.0".to_owned();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&stdin, &mut version),
        Err(e) => Err(CniError::new(
            code::IO,
            format!("error reading from stdin: {e}"),
        )),
    };
    let (out, status) = match outcome {
        Ok(Some(v)) => (Some(v), 0),
        Ok(None) => (None, 0),
        Err(e) => (Some(e.to_json(&version)), 1),
    };
    if let Some(v) = out {
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, &v);
        let _ = stdout.write_all(b"\n");
        let _ = stdout.flush();
    }
    unlink::reap();
    std::process::exit(status);
}
