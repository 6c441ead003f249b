//! One `iptables` rule of the few shapes this module writes, and its `iptables-restore` line.
//! The same value is written over nf_tables (`nft`) or given to `iptables-restore` (`legacy`),
//! so both backends make the same rules.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Accept,
    Jump(String),
    Masquerade,
    /// `DNAT --to-destination ADDR[:PORT[-PORT[/BASE]]]`: with `base`, port `base + i` goes to
    /// the range's `i`-th port.
    Dnat {
        to: IpAddr,
        ports: Option<(u16, u16)>,
        base: Option<u16>,
    },
    /// `MARK --set-xmark VALUE/MASK`.
    SetMark {
        value: u32,
        mask: u32,
    },
}

/// A rule appended to `chain` (of the `nat` table): matches, then a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) chain: String,
    pub(crate) protocol: Option<Protocol>,
    /// `[!] -s NET`.
    pub(crate) source: Option<(IpNetwork, bool)>,
    /// `[!] -d NET`.
    pub(crate) destination: Option<(IpNetwork, bool)>,
    /// `--dport MIN[:MAX]` (needs `protocol`).
    pub(crate) dport: Option<(u16, u16)>,
    /// `-m mark --mark VALUE/MASK`.
    pub(crate) mark: Option<(u32, u32)>,
    /// `-m addrtype --dst-type LOCAL`.
    pub(crate) local_destination: bool,
    /// `-m comment --comment TEXT`.
    pub(crate) comment: Option<String>,
    pub(crate) target: Target,
    /// The IP family, for rules that match no address.
    pub(crate) v6: bool,
    /// Inserted at the top of its chain instead of appended.
    pub(crate) insert: bool,
}

impl Rule {
    /// A rule of family `v6` in `chain` that matches everything.
    pub(crate) fn new(chain: &str, v6: bool, target: Target) -> Rule {
        Rule {
            chain: chain.to_owned(),
            protocol: None,
            source: None,
            destination: None,
            dport: None,
            mark: None,
            local_destination: false,
            comment: None,
            target,
            v6,
            insert: false,
        }
    }

    pub(crate) fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// The rule as an `iptables-restore` line (`-A CHAIN ...`, or `-I CHAIN ...`).
    pub(crate) fn restore_line(&self) -> String {
        let action = if self.insert { "-I" } else { "-A" };
        let mut w: Vec<String> = vec![action.into(), self.chain.clone()];
        let full = if self.v6 { 128 } else { 32 };
        let mut address = |flag: &str, (net, negate): (IpNetwork, bool)| {
            if negate {
                w.push("!".into());
            }
            w.push(flag.into());
            w.push(if net.prefix() == full {
                net.ip().to_string()
            } else {
                IpNetwork::new(net.network(), net.prefix())
                    .unwrap_or(net)
                    .to_string()
            });
        };
        if let Some(s) = self.source {
            address("-s", s);
        }
        if let Some(d) = self.destination {
            address("-d", d);
        }
        if let Some(p) = self.protocol {
            w.extend(["-p".into(), p.name().into(), "-m".into(), p.name().into()]);
            if let Some((min, max)) = self.dport {
                w.push("--dport".into());
                w.push(if min == max {
                    min.to_string()
                } else {
                    format!("{min}:{max}")
                });
            }
        }
        if let Some((value, mask)) = self.mark {
            w.extend([
                "-m".into(),
                "mark".into(),
                "--mark".into(),
                format!("{value:#x}/{mask:#x}"),
            ]);
        }
        if self.local_destination {
            w.extend(["-m", "addrtype", "--dst-type", "LOCAL"].map(String::from));
        }
        if let Some(c) = &self.comment {
            w.extend(["-m".into(), "comment".into(), "--comment".into(), quote(c)]);
        }
        w.push("-j".into());
        match &self.target {
            Target::Accept => w.push("ACCEPT".into()),
            Target::Jump(c) => w.push(c.clone()),
            Target::Masquerade => w.push("MASQUERADE".into()),
            Target::Dnat { to, ports, base } => {
                w.push("DNAT".into());
                w.push("--to-destination".into());
                let addr = match to {
                    IpAddr::V4(a) => a.to_string(),
                    IpAddr::V6(a) if ports.is_some() => format!("[{a}]"),
                    IpAddr::V6(a) => a.to_string(),
                };
                let base = base.map(|b| format!("/{b}")).unwrap_or_default();
                w.push(match ports {
                    None => addr,
                    Some((min, max)) if min == max => format!("{addr}:{min}"),
                    Some((min, max)) => format!("{addr}:{min}-{max}{base}"),
                });
            }
            Target::SetMark { value, mask } => {
                w.push("MARK".into());
                w.push("--set-xmark".into());
                w.push(format!("{value:#x}/{mask:#x}"));
            }
        }
        w.join(" ")
    }
}

/// `text` as one double-quoted `iptables-restore` word.
pub(crate) fn quote(text: &str) -> String {
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

/// A transport protocol of a [`PortMapping`](super::PortMapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    pub(crate) fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the rules are written; see the [module docs](super).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// nf_tables over netlink, as `iptables-nft` writes them.
    Nftables,
    /// `iptables-restore` / `ip6tables-restore`, for the legacy `iptables`.
    IptablesRestore,
}

impl Backend {
    /// The backend the host's tools use: [`IptablesRestore`](Backend::IptablesRestore) if the
    /// `iptables` in `PATH` is the legacy one (its link chain names `legacy`, or never `nft`),
    /// else [`Nftables`](Backend::Nftables).
    pub fn detect() -> Backend {
        let Some(path) = std::env::var_os("PATH") else {
            return Backend::Nftables;
        };
        let Some(mut current) = std::env::split_paths(&path)
            .map(|d| d.join("iptables"))
            .find(|p| p.exists())
        else {
            return Backend::Nftables;
        };
        for _ in 0..8 {
            let name = current
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.contains("nft") {
                return Backend::Nftables;
            }
            if name.contains("legacy") {
                return Backend::IptablesRestore;
            }
            match std::fs::read_link(&current) {
                Ok(next) => {
                    current = match current.parent() {
                        Some(dir) if next.is_relative() => dir.join(next),
                        _ => next,
                    }
                }
                // An `iptables` that is no link to a named variant: an old, legacy one.
                Err(_) => return Backend::IptablesRestore,
            }
        }
        Backend::IptablesRestore
    }
}
