//! `ipMasq`: the reference plugins' masquerade rules, written so that either plugin removes the
//! other's.
//!
//! The rules are the reference's (containernetworking-plugins `ip.SetupIPMasq`), in the `nat`
//! table: a chain per container, named `CNI-` + the first 24 hex digits of the SHA-512 of
//! network name and container id, reached from `POSTROUTING` by the container's address; in
//! it, the container's own network is accepted and everything else but multicast is
//! masqueraded. Every rule carries the comment `name: "NET" id: "ID"` (Go's `%q` quoting).
//!
//! The reference runs `iptables` once per check and per rule (eight runs for one IPv4
//! address). Here the library's [`nat::masquerade`] writes them in one transaction per IP
//! family — over nf_tables netlink where `iptables` is the nf_tables variant (no process at
//! all), else by one `iptables-restore --noflush` — and [`nat::remove_chain`] removes them:
//! one dump and one transaction per family. Teardown finds the rules by their chain, not by the
//! container's addresses, so it also works after the container's namespace is gone (where the
//! reference leaves them). `GC` reads `iptables-save` to find every chain of the network.

use std::process::{Child, Command};

use netns_kit::ipnetwork::IpNetwork;
use sha2::{Digest, Sha512};

use netns_kit::{Namespace, nat};

use crate::delegate::spawn_fed;

use crate::spec::{CniError, Result, code};

/// The reference's chain name for container `id` on network `name`.
pub fn chain_name(name: &str, id: &str) -> String {
    let digest = Sha512::digest(format!("{name}{id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("CNI-{}", &hex[..24])
}

/// Go's `%q` of `s` (what the reference's comments are made with).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The reference's rule comment for container `id` on network `name`.
pub fn comment(name: &str, id: &str) -> String {
    format!("name: {} id: {}", go_quote(name), go_quote(id))
}

fn tool(v6: bool, base: &str) -> String {
    if v6 {
        format!("ip6{base}")
    } else {
        format!("ip{base}")
    }
}

/// A program started with its input written; see [`Pending::wait`].
#[derive(Debug)]
pub struct Pending {
    program: String,
    args: Vec<String>,
    input: Option<String>,
    child: Child,
}

/// Starts `program args` with `input` on stdin (a few rules: far less than a pipe holds).
fn spawn(program: &str, args: &[&str], input: Option<&str>) -> Result<Pending> {
    let child =
        spawn_fed(Command::new(program).args(args), input.map(str::as_bytes)).map_err(|e| {
            CniError::new(
                code::IO,
                format!("failed to run {program} (is the iptables package installed?): {e}"),
            )
        })?;
    Ok(Pending {
        program: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        input: input.map(str::to_owned),
        child,
    })
}

impl Pending {
    /// Waits for the program; its stdout, or an error naming it with what it said.
    pub fn wait(self) -> Result<String> {
        let Pending {
            program,
            args,
            input,
            child,
        } = self;
        let out = child
            .wait_with_output()
            .map_err(|e| CniError::new(code::IO, format!("failed to wait for {program}: {e}")))?;
        if !out.status.success() {
            return Err(CniError {
                code: code::INTERNAL,
                msg: format!("{program} {} failed ({})", args.join(" "), out.status),
                details: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    input.map(|i| format!("; input: {i}")).unwrap_or_default()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Runs `program args` with `input` on stdin; its stdout.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    spawn(program, args, input)?.wait()
}

/// Starts applying a `nat` table script with `iptables-restore --noflush` (or
/// `ip6tables-restore`).
fn start_restore(v6: bool, body: &str) -> Result<Pending> {
    let script = format!("*nat\n{body}COMMIT\n");
    spawn(
        &tool(v6, "tables-restore"),
        &["--noflush", "-w", "10"],
        Some(&script),
    )
}

/// Applies a `nat` table script and waits for it.
fn restore(v6: bool, body: &str) -> Result<()> {
    start_restore(v6, body)?.wait().map(drop)
}

/// Adds the masquerade rules for `addresses` (the container's, with their prefix lengths),
/// through the library's [`nat::masquerade`]: one nf_tables transaction per IP family where
/// `iptables` is the nf_tables variant (no process), else one `iptables-restore` per family.
/// The rules stay when this process exits; [`teardown`] removes them.
pub fn add(addresses: &[IpNetwork], chain: &str, comment: &str) -> Result<()> {
    if addresses.is_empty() {
        return Ok(());
    }
    let host = Namespace::current()?;
    let build = || {
        let mut builder = nat::masquerade().host(&host).chain(chain).comment(comment);
        let mut exempt = [false, false];
        for a in addresses {
            let full = if a.is_ipv6() { 128 } else { 32 };
            builder = builder.source(IpNetwork::new(a.ip(), full).unwrap_or(*a));
            // The reference appends, per address, its network's ACCEPT and then the
            // MASQUERADE once: a second network's ACCEPT comes after the MASQUERADE and never
            // matches. Only the first network per family is exempt, as there.
            if !std::mem::replace(&mut exempt[usize::from(a.is_ipv6())], true) {
                builder = builder.exempt(*a);
            }
        }
        builder.create_blocking()
    };
    let masq = match build() {
        // A chain left by a DEL that could not find it (the reference's, when the namespace
        // was gone) for a container id used again: the reference reuses it; replaced here.
        Err(e) if e.is_invalid_input() && e.to_string().contains("already exists") => {
            nat::remove_chain_blocking(&host, chain)?;
            build()?
        }
        other => other?,
    };
    let _kept = masq.keep();
    Ok(())
}

/// Removes container `id`'s masquerade chain (both IP families) and the rules leading to it;
/// what is already gone counts as removed. Finds them by the chain, not by the container's
/// addresses, so it also works after the container's namespace is gone (where the reference
/// leaves them).
pub fn teardown(chain: &str) -> Result<()> {
    let host = Namespace::current()?;
    nat::remove_chain_blocking(&host, chain)?;
    Ok(())
}

/// Splits a line of `iptables-save` into words, undoing its quoting.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// One rule of the saved `nat` table: its chain, target and comment, and the line itself.
struct SavedRule {
    line: String,
    chain: String,
    target: Option<String>,
    comment: Option<String>,
}

fn saved_rules(v6: bool) -> Result<(Vec<String>, Vec<SavedRule>)> {
    let saved = run(&tool(v6, "tables-save"), &["-t", "nat"], None)?;
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    for line in saved.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            if let Some(name) = decl.split_whitespace().next() {
                chains.push(name.to_owned());
            }
            continue;
        }
        if !line.starts_with("-A ") {
            continue;
        }
        let w = words(line);
        let after = |flag: &str| {
            w.iter()
                .position(|x| x == flag)
                .and_then(|i| w.get(i + 1))
                .cloned()
        };
        rules.push(SavedRule {
            line: line.to_owned(),
            chain: w.get(1).cloned().unwrap_or_default(),
            target: after("-j"),
            comment: after("--comment"),
        });
    }
    Ok((chains, rules))
}

/// Removes `chains` and every rule that jumps to them, in one restore.
fn remove_chains(v6: bool, chains: &[String], rules: &[SavedRule]) -> Result<()> {
    let mut body = String::new();
    for r in rules {
        if r.target.as_ref().is_some_and(|t| chains.contains(t)) && !chains.contains(&r.chain) {
            body.push_str(&r.line.replacen("-A ", "-D ", 1));
            body.push('\n');
        }
    }
    for c in chains {
        body.push_str(&format!("-F {c}\n-X {c}\n"));
    }
    if body.is_empty() {
        return Ok(());
    }
    restore(v6, &body)
}

/// GC: removes the masquerade chains of network `name` whose container is not in `valid`.
/// Returns the container ids whose rules were removed.
pub fn collect_garbage(name: &str, valid: &[String]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for v6 in [false, true] {
        let (chains, rules) = saved_rules(v6)?;
        let prefix = format!("name: {} id: ", go_quote(name));
        let mut stale: Vec<String> = Vec::new();
        for r in &rules {
            let Some(id) = r.comment.as_deref().and_then(|c| c.strip_prefix(&prefix)) else {
                continue;
            };
            let id = words(id).into_iter().next().unwrap_or_default();
            if valid.contains(&id) {
                continue;
            }
            let chain = chain_name(name, &id);
            if chains.contains(&chain) && !stale.contains(&chain) {
                stale.push(chain);
                if !removed.contains(&id) {
                    removed.push(id);
                }
            }
        }
        if !stale.is_empty() {
            remove_chains(v6, &stale, &rules)?;
        }
    }
    Ok(removed)
}
