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
//! address). Here they are written in one transaction per IP family: over netlink where
//! `iptables` is the nf_tables variant and its `nat` table exists (see `nft`: no process at
//! all), else by one `iptables-restore --noflush`. Teardown is one `iptables-save -t nat` to
//! find what is there plus one restore to remove it, per family. Teardown finds the rules by their
//! chain, not by the container's addresses, so it also works after the container's namespace is
//! gone (where the reference leaves them).

use std::{
    net::IpAddr,
    process::{Child, Command},
};

use netns_kit::ipnetwork::IpNetwork;
use sha2::{Digest, Sha512};

use crate::{
    delegate::spawn_fed,
    nft::{AddressMatch, Rule, Verdict},
};

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

/// `text` as one double-quoted `iptables-restore` word.
fn restore_word(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
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

/// Starts adding the masquerade rules for `addresses` (the container's, with their prefix
/// lengths), per family: written at once over netlink where `iptables` is the nf_tables
/// variant and its `nat` table is in place (see `nft`), else by an `iptables-restore` that runs
/// while the caller goes on. Wait for those with [`finish`].
pub fn start(addresses: &[IpNetwork], chain: &str, comment: &str) -> Result<Vec<Pending>> {
    let nft = crate::nft::iptables_is_nft();
    let mut pending = Vec::new();
    for v6 in [false, true] {
        let mine: Vec<&IpNetwork> = addresses.iter().filter(|a| a.is_ipv6() == v6).collect();
        if mine.is_empty() {
            continue;
        }
        let multicast: IpNetwork = if v6 { "ff00::/8" } else { "224.0.0.0/4" }
            .parse()
            .expect("a valid network");
        // In the order the reference appends them, each rule once ("AppendUnique").
        let mut chain_rules: Vec<Rule> = Vec::new();
        let mut post_rules: Vec<Rule> = Vec::new();
        for a in &mine {
            let network = IpNetwork::new(a.network(), a.prefix()).unwrap_or(**a);
            for rule in [
                Rule {
                    chain: chain.to_owned(),
                    address: AddressMatch {
                        source: false,
                        net: network,
                        negate: false,
                    },
                    comment: comment.to_owned(),
                    verdict: Verdict::Accept,
                },
                Rule {
                    chain: chain.to_owned(),
                    address: AddressMatch {
                        source: false,
                        net: multicast,
                        negate: true,
                    },
                    comment: comment.to_owned(),
                    verdict: Verdict::Masquerade,
                },
            ] {
                if !chain_rules.iter().any(|r| same(r, &rule)) {
                    chain_rules.push(rule);
                }
            }
            let host = IpNetwork::new(a.ip(), if v6 { 128 } else { 32 }).unwrap_or(**a);
            let rule = Rule {
                chain: "POSTROUTING".to_owned(),
                address: AddressMatch {
                    source: true,
                    net: host,
                    negate: false,
                },
                comment: comment.to_owned(),
                verdict: Verdict::Jump(chain.to_owned()),
            };
            if !post_rules.iter().any(|r| same(r, &rule)) {
                post_rules.push(rule);
            }
        }
        let rules: Vec<Rule> = chain_rules.into_iter().chain(post_rules).collect();
        if nft {
            match crate::nft::write(chain, &rules) {
                Ok(()) => continue,
                Err(crate::nft::NotWritten::Uncertain) => {
                    let _ = finish(pending);
                    return Err(CniError::new(
                        code::IO,
                        format!(
                            "no answer from nf_tables within 10 s while adding chain {chain}; \
                             its rules may be in place"
                        ),
                    ));
                }
                // Not this path's case, or refused before anything changed: the other way.
                Err(_) => {}
            }
        }
        let mut body = format!(":{chain} - [0:0]\n");
        for rule in &rules {
            body.push_str(&restore_line(rule));
            body.push('\n');
        }
        match start_restore(v6, &body) {
            Ok(p) => pending.push(p),
            Err(e) => {
                let _ = finish(pending);
                return Err(e);
            }
        }
    }
    Ok(pending)
}

fn same(a: &Rule, b: &Rule) -> bool {
    restore_line(a) == restore_line(b)
}

/// `rule` as an `iptables-restore` line, in the words the reference gives `iptables`.
fn restore_line(rule: &Rule) -> String {
    let a = rule.address;
    let address = if a.source && a.net.prefix() == if a.net.is_ipv6() { 128 } else { 32 } {
        a.net.ip().to_string()
    } else {
        a.net.to_string()
    };
    let matched = format!(
        "{}{} {address}",
        if a.negate { "! " } else { "" },
        if a.source { "-s" } else { "-d" }
    );
    let target = match &rule.verdict {
        Verdict::Accept => "ACCEPT".to_owned(),
        Verdict::Jump(c) => c.clone(),
        Verdict::Masquerade => "MASQUERADE".to_owned(),
    };
    format!(
        "-A {} {matched} -j {target} -m comment --comment {}",
        rule.chain,
        restore_word(&rule.comment)
    )
}

/// Waits for what [`start`] started; the first error, after waiting for all.
pub fn finish(pending: Vec<Pending>) -> Result<()> {
    let mut first = None;
    for p in pending {
        if let Err(e) = p.wait() {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
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

/// Removes container `id`'s masquerade chain and the rules leading to it, in the families
/// `families` names (`[v4, v6]`); what is already gone counts as removed.
///
/// With `assumed`, the families are a guess (the container's interface is gone): a family
/// whose table cannot be read (no `ip6tables`, no IPv6 `nat` table) then has nothing of this
/// container to remove, and is skipped.
pub fn teardown(chain: &str, families: [bool; 2], assumed: bool) -> Result<()> {
    for (v6, wanted) in [(false, families[0]), (true, families[1])] {
        if !wanted {
            continue;
        }
        let (chains, rules) = match saved_rules(v6) {
            Ok(saved) => saved,
            Err(_) if assumed => continue,
            Err(e) => return Err(e),
        };
        let referenced = rules.iter().any(|r| r.target.as_deref() == Some(chain));
        if !chains.iter().any(|c| c == chain) && !referenced {
            continue;
        }
        let present: Vec<String> = chains.into_iter().filter(|c| c == chain).collect();
        if present.is_empty() {
            // Only rules jumping to a chain that is gone: cannot happen in a consistent table,
            // but remove them.
            let body: String = rules
                .iter()
                .filter(|r| r.target.as_deref() == Some(chain))
                .map(|r| format!("{}\n", r.line.replacen("-A ", "-D ", 1)))
                .collect();
            restore(v6, &body)?;
        } else {
            remove_chains(v6, &present, &rules)?;
        }
    }
    Ok(())
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

/// The addresses a container's masquerade rules are for, from what its interface had.
pub fn families(addresses: &[IpAddr]) -> [bool; 2] {
    [
        addresses.iter().any(IpAddr::is_ipv4),
        addresses.iter().any(IpAddr::is_ipv6),
    ]
}
