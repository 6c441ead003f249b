//! Validated names: interface names and namespace names, plus generators of unique ones.
//!
//! Names are checked here, before any syscall, with the kernel's own rules, so a bad name is an
//! [`Error::InvalidName`] that says which rule it breaks instead of a bare `EINVAL` (or worse, a
//! path that escapes `/run/netns`).
//!
//! Unique names are `prefix` + 11 base-36 characters: an atomic counter passed through a
//! permutation of 56-bit numbers keyed at random once per process. Within a process two names are
//! never equal (a permutation of distinct counters); across processes they look random, so they
//! stay apart where a pid would not: processes in different PID namespaces (two containers, both
//! pid 1, sharing a network namespace), and names that outlive their process (a kept link, then
//! a new process reusing the pid). Two processes that made `a` and `b` names collide with
//! probability below `a·b / 2^56` (1.4·10⁻¹⁰ for a million kept names against ten new ones). An
//! interface name keeps within the kernel's 15 bytes because the prefix is limited to 4 bytes.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::error::{Error, NameKind, Result};

/// The longest interface name the kernel accepts (`IFNAMSIZ - 1`).
///
/// # Examples
///
/// ```
/// use netns_kit::{IFNAME_MAX, IfName};
///
/// assert_eq!(IFNAME_MAX, 15);
/// assert!(IfName::new("a".repeat(IFNAME_MAX)).is_ok());
/// assert!(IfName::new("a".repeat(IFNAME_MAX + 1)).is_err());
/// ```
pub const IFNAME_MAX: usize = 15;
/// The longest namespace name (one path component, `NAME_MAX`).
///
/// # Examples
///
/// ```
/// use netns_kit::{NSNAME_MAX, NsName};
///
/// assert!(NsName::new("n".repeat(NSNAME_MAX)).is_ok());
/// assert!(NsName::new("n".repeat(NSNAME_MAX + 1)).is_err());
/// ```
pub const NSNAME_MAX: usize = 255;
/// The longest prefix [`IfName::unique`] accepts.
///
/// # Examples
///
/// ```
/// use netns_kit::{IFNAME_UNIQUE_PREFIX_MAX, IfName};
///
/// assert_eq!(IFNAME_UNIQUE_PREFIX_MAX, 4);
/// assert!(IfName::unique(&"x".repeat(IFNAME_UNIQUE_PREFIX_MAX)).is_ok());
/// assert!(IfName::unique("bridge").is_err());
/// ```
pub const IFNAME_UNIQUE_PREFIX_MAX: usize = IFNAME_MAX - SUFFIX_WIDTH;

/// Base-36 characters of a unique suffix: 36^11 > 2^56.
const SUFFIX_WIDTH: usize = 11;
const SUFFIX_MASK: u64 = (1 << 56) - 1;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// This process's random key: an odd multiplier and an offset, both below 2^56.
fn process_key() -> (u64, u64) {
    static KEY: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        // RandomState is seeded from the OS's random source, once per process.
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        let mix = |x: u64| state.hash_one(x) & SUFFIX_MASK;
        (mix(0) | 1, mix(1))
    })
}

/// A permutation of `0..2^56` keyed by [`process_key`]: every step (multiplying by an odd
/// number, adding, xor-shifting right, all modulo 2^56) is one.
fn permute(counter: u64) -> u64 {
    let (multiplier, offset) = process_key();
    let mut x = counter & SUFFIX_MASK;
    x = x.wrapping_mul(multiplier) & SUFFIX_MASK;
    x ^= x >> 29;
    x = x.wrapping_add(offset) & SUFFIX_MASK;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) & SUFFIX_MASK;
    x ^ (x >> 31)
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("base36 digits are ASCII")
}

fn unique_suffix() -> String {
    base36(
        permute(COUNTER.fetch_add(1, Ordering::Relaxed)),
        SUFFIX_WIDTH,
    )
}

fn invalid(kind: NameKind, name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidName {
        kind,
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// A network interface name the kernel will accept as is (see `dev_valid_name()` in the kernel,
/// and ip-link(8)): 1–15 bytes, not `.` or `..`, no `/`, `:`, whitespace or NUL — and no `%`,
/// which the kernel would expand as a template (`veth%d` becomes `veth0`), so the link would not
/// have the name asked for.
///
/// # Examples
///
/// ```
/// use netns_kit::IfName;
///
/// let name = IfName::new("veth0")?;
/// assert_eq!(name.as_str(), "veth0");
/// assert!(IfName::new("eth0:1").is_err());
/// assert!(IfName::new("sixteen-bytes-xx").is_err());
/// # Ok::<(), netns_kit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    /// Validates `name` as an interface name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] naming the rule the name breaks.
    ///
    /// # Examples
    ///
    /// ```
    /// use netns_kit::IfName;
    ///
    /// let name = IfName::new("eth0")?;
    /// assert_eq!(name.to_string(), "eth0");
    /// assert!(IfName::new("veth%d").is_err());
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn new(name: impl AsRef<str>) -> Result<IfName> {
        let name = name.as_ref();
        let bad = |reason: String| invalid(NameKind::Interface, name, reason);
        if name.is_empty() {
            return Err(bad("empty".into()));
        }
        if name.len() > IFNAME_MAX {
            return Err(bad(format!(
                "longer than {IFNAME_MAX} bytes ({} bytes)",
                name.len()
            )));
        }
        if name == "." || name == ".." {
            return Err(bad("`.` and `..` are reserved".into()));
        }
        for c in name.chars() {
            let what = match c {
                '/' => "contains `/`",
                ':' => "contains `:` (reserved for alias labels)",
                '%' => "contains `%` (the kernel would expand it as a name template, e.g. eth%d)",
                '\0' => "contains a NUL byte",
                c if c.is_whitespace() => "contains whitespace",
                c if c.is_control() => {
                    "contains a control character (it would garble `ip` output and logs)"
                }
                c if !c.is_ascii() => {
                    "contains a non-ASCII character (the kernel reads some of their bytes as spaces)"
                }
                _ => continue,
            };
            return Err(bad(what.into()));
        }
        Ok(IfName(name.to_owned()))
    }

    /// A fresh name `prefix` + 11 characters: never one this process made before, and random
    /// across processes: two processes that made `a` and `b` names collide with probability below
    /// `a·b / 2^56`, whatever their pids or PID namespaces.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `prefix` is longer than [`IFNAME_UNIQUE_PREFIX_MAX`] (4) bytes
    /// or contains a character an interface name may not have.
    ///
    /// # Examples
    ///
    /// ```
    /// use netns_kit::IfName;
    ///
    /// let a = IfName::unique("veth")?;
    /// let b = IfName::unique("veth")?;
    /// assert_ne!(a, b);
    /// assert_eq!(a.as_str().len(), 15);
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn unique(prefix: &str) -> Result<IfName> {
        if prefix.len() > IFNAME_UNIQUE_PREFIX_MAX {
            return Err(invalid(
                NameKind::Interface,
                prefix,
                format!(
                    "a unique-name prefix may be at most {IFNAME_UNIQUE_PREFIX_MAX} bytes (the rest of the 15 make it unique)"
                ),
            ));
        }
        IfName::new(format!("{prefix}{}", unique_suffix()))
    }

    /// The name as a string slice.
    ///
    /// # Examples
    ///
    /// ```
    /// let name = netns_kit::IfName::new("br0")?;
    /// let cmd = format!("ip link set {} up", name.as_str());
    /// assert_eq!(cmd, "ip link set br0 up");
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for IfName {
    type Err = Error;
    fn from_str(s: &str) -> Result<IfName> {
        IfName::new(s)
    }
}

/// A named network namespace's name: the single path component under `/run/netns` that
/// ip-netns(8) uses, so it can never escape that directory. 1–255 bytes, not `.` or `..`, no
/// `/`, NUL or other control character; and, so that `ip netns` command lines keep working, no
/// whitespace and no leading `-`.
///
/// # Examples
///
/// ```
/// use netns_kit::NsName;
///
/// assert_eq!(NsName::new("ns1")?.as_str(), "ns1");
/// assert!(NsName::new("../etc").is_err());
/// # Ok::<(), netns_kit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsName(String);

impl NsName {
    /// Validates `name` as a namespace name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] naming the rule the name breaks.
    ///
    /// # Examples
    ///
    /// ```
    /// use netns_kit::NsName;
    ///
    /// let name = NsName::new("lab-1")?;
    /// assert_eq!(name.to_string(), "lab-1");
    /// assert!(NsName::new("..").is_err());
    /// assert!(NsName::new("a/b").is_err());
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn new(name: impl AsRef<str>) -> Result<NsName> {
        let name = name.as_ref();
        let bad = |reason: String| invalid(NameKind::Namespace, name, reason);
        if name.is_empty() {
            return Err(bad("empty".into()));
        }
        if name.len() > NSNAME_MAX {
            return Err(bad(format!(
                "longer than {NSNAME_MAX} bytes ({} bytes)",
                name.len()
            )));
        }
        if name == "." || name == ".." {
            return Err(bad("`.` and `..` are reserved".into()));
        }
        if name.contains('/') {
            return Err(bad(
                "contains `/` (a namespace name is one path component under /run/netns)".into(),
            ));
        }
        if name.contains('\0') {
            return Err(bad("contains a NUL byte".into()));
        }
        if name.starts_with('-') {
            return Err(bad(
                "starts with `-` (`ip netns exec -n ...` would read it as an option)".into(),
            ));
        }
        if name.contains(char::is_whitespace) {
            return Err(bad(
                "contains whitespace (`ip netns list` and shell command lines split on it)".into(),
            ));
        }
        if name.contains(char::is_control) {
            return Err(bad(
                "contains a control character (a newline would split `ip netns list`, an escape garble a terminal)"
                    .into(),
            ));
        }
        Ok(NsName(name.to_owned()))
    }

    /// A fresh name `prefix-` + 11 characters: never one this process made before, and random
    /// across processes: two processes that made `a` and `b` names collide with probability below
    /// `a·b / 2^56`, whatever their pids or PID namespaces.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if the result would not be a valid namespace name.
    ///
    /// # Examples
    ///
    /// ```
    /// use netns_kit::NsName;
    ///
    /// let name = NsName::unique("test")?;
    /// assert!(name.as_str().starts_with("test-"));
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn unique(prefix: &str) -> Result<NsName> {
        NsName::new(format!("{prefix}-{}", unique_suffix()))
    }

    /// The name as a string slice.
    ///
    /// # Examples
    ///
    /// ```
    /// let name = netns_kit::NsName::new("blue")?;
    /// let path = std::path::Path::new("/run/netns").join(name.as_str());
    /// assert_eq!(path.to_str(), Some("/run/netns/blue"));
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for NsName {
    type Err = Error;
    fn from_str(s: &str) -> Result<NsName> {
        NsName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn base36_is_fixed_width() {
        assert_eq!(base36(0, 5), "00000");
        assert_eq!(base36(35, 2), "0z");
        assert_eq!(base36(SUFFIX_MASK, SUFFIX_WIDTH).len(), SUFFIX_WIDTH); // 56 bits fit
    }

    #[test]
    fn the_permutation_is_one_to_one() {
        let out: HashSet<u64> = (0..200_000).map(permute).collect();
        assert_eq!(out.len(), 200_000);
        assert!(out.iter().all(|&x| x <= SUFFIX_MASK));
    }

    #[test]
    fn unique_names_from_many_threads_never_collide() {
        let names: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..1000)
                            .map(|_| IfName::unique("nk").unwrap().0)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let set: HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len());
        assert!(names.iter().all(|n| n.len() <= IFNAME_MAX));
    }

    #[test]
    fn unique_prefix_limit() {
        assert!(IfName::unique("abcd").is_ok());
        assert!(IfName::unique("abcde").is_err());
        assert!(IfName::unique("a/b").is_err());
    }
}
