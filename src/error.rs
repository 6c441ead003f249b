//! The crate's one error type.
//!
//! Every variant says *which operation* failed on *which object* (a namespace name or path, an
//! interface name and the namespace it lives in, ...), and keeps the OS or kernel cause as its
//! [`source`](std::error::Error::source) with the errno intact, so callers can both show a
//! message a person can act on and branch on the cause ([`Error::is_not_found`],
//! [`Error::errno`], ...).
//!
//! Kernel refusals are sorted into variants by errno: `EEXIST` becomes
//! [`Error::AlreadyExists`], `ENOENT`/`ENODEV`/`ESRCH` become [`Error::NotFound`], `EPERM` (and
//! `EACCES` from a syscall, not from rtnetlink, where it means something else) become
//! [`Error::PermissionDenied`] (whose message says which capabilities are needed), anything
//! else [`Error::Os`]. The `Display` text names the errno (`EBUSY`, ...) and, when the kernel sent
//! an extended-ack explanation, quotes it; the source carries the errno as an [`io::Error`].

use std::{fmt, io, time::Duration};

/// The result type of this crate.
///
/// # Examples
///
/// ```
/// use netns_kit::{IfName, Result};
///
/// fn port_name(n: u32) -> Result<IfName> {
///     IfName::new(format!("veth{n}"))
/// }
/// assert_eq!(port_name(3)?.as_str(), "veth3");
/// # Ok::<(), netns_kit::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of name failed validation; see [`Error::InvalidName`].
///
/// # Examples
///
/// ```
/// use netns_kit::{Error, IfName, NameKind};
///
/// let err = IfName::new("eth 0").unwrap_err();
/// assert!(matches!(err, Error::InvalidName { kind: NameKind::Interface, .. }));
/// assert_eq!(NameKind::Namespace.to_string(), "namespace name");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameKind {
    /// A network interface name (`IFNAMSIZ`: at most 15 bytes).
    Interface,
    /// A named network namespace (`/run/netns/NAME`).
    Namespace,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Interface => "interface name",
            NameKind::Namespace => "namespace name",
        })
    }
}

/// Everything that can go wrong in this crate.
///
/// The enum is `#[non_exhaustive]`: match the variants you care about and keep a catch-all arm.
/// The helpers [`is_not_found`](Error::is_not_found),
/// [`is_already_exists`](Error::is_already_exists),
/// [`is_permission_denied`](Error::is_permission_denied) and [`errno`](Error::errno) answer the
/// usual questions without matching.
///
/// # Examples
///
/// ```
/// use netns_kit::{Error, IfName};
///
/// let err = IfName::new("a-name-that-is-too-long").unwrap_err();
/// assert!(matches!(err, Error::InvalidName { .. }));
/// assert_eq!(
///     err.to_string(),
///     "invalid interface name \"a-name-that-is-too-long\": longer than 15 bytes (23 bytes)"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name was rejected before anything was asked of the kernel.
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName {
        /// Interface or namespace name.
        kind: NameKind,
        /// The name as given.
        name: String,
        /// What rule it breaks.
        reason: String,
    },

    /// A configuration was rejected before anything was asked of the kernel (an address family
    /// mix-up, a gateway outside its subnet, a duplicate member, ...).
    #[error("invalid {object}: {reason}")]
    InvalidInput {
        /// The object being configured, e.g. `bridge "br0"`.
        object: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An address allocator has no free address for the request: the range is exhausted, or
    /// the address asked for is taken (see [`ipam`](crate::ipam)).
    #[error("cannot allocate from {object}: {reason}")]
    Unavailable {
        /// The allocator's ranges, e.g. `range set 10.1.0.1-10.1.0.2`.
        object: String,
        /// What was not available, in the reference `host-local` plugin's words.
        reason: String,
    },

    /// This kernel (or these privileges) cannot do what was asked, by any path the crate
    /// has; `reason` names what would make it possible.
    #[error("cannot {op} {object}: {reason}")]
    Unsupported {
        /// The operation, e.g. `"impair"`.
        op: &'static str,
        /// The object operated on.
        object: String,
        /// Why not, and what would make it possible.
        reason: String,
    },

    /// The caller lacks a privilege (`EPERM`/`EACCES`).
    #[error(
        "cannot {op} {object}: permission denied{} (this needs CAP_NET_ADMIN and CAP_SYS_ADMIN: run as root)",
        kernel_says(.detail)
    )]
    PermissionDenied {
        /// The operation, e.g. `"create namespace"`.
        op: &'static str,
        /// The object operated on.
        object: String,
        /// The kernel's extended-ack explanation, if it sent one.
        detail: Option<String>,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The object already exists (`EEXIST`); the existing one was left untouched.
    #[error(
        "cannot {op} {object}: it already exists{}{}",
        kernel_says(.detail),
        hint.map(|h| format!("; {h}")).unwrap_or_default()
    )]
    AlreadyExists {
        /// The operation.
        op: &'static str,
        /// The object operated on.
        object: String,
        /// The kernel's extended-ack explanation, if it sent one.
        detail: Option<String>,
        /// What to do instead, e.g. how to join an existing bridge.
        hint: Option<&'static str>,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The object (or something it refers to) does not exist (`ENOENT`, `ENODEV`, `ESRCH`).
    #[error("cannot {op} {object}: it does not exist{}", kernel_says(.detail))]
    NotFound {
        /// The operation.
        op: &'static str,
        /// The object operated on.
        object: String,
        /// The kernel's extended-ack explanation, if it sent one.
        detail: Option<String>,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Any other refusal by the OS or the kernel, with its errno.
    #[error("cannot {op} {object}: {}{}", errno_name(.source), kernel_says(.detail))]
    Os {
        /// The operation.
        op: &'static str,
        /// The object operated on.
        object: String,
        /// The kernel's extended-ack explanation, if it sent one.
        detail: Option<String>,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// An operation did not finish in time.
    #[error("cannot {op} {object}: timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The object operated on.
        object: String,
        /// How long was waited.
        after: Duration,
    },

    /// An external program the operation relies on (e.g. `iptables`) failed or is missing.
    #[error("cannot {op} {object}: `{program}` {outcome}")]
    Command {
        /// The operation.
        op: &'static str,
        /// The object operated on.
        object: String,
        /// The program and its arguments.
        program: String,
        /// How it failed: its exit status and standard error, or why it could not be started.
        outcome: String,
    },

    /// Tearing down a composite met more than one error. Teardown went on after each one, so
    /// everything that could be removed was removed; the errors are listed in order, each
    /// naming its own operation and object, and never a `Teardown` itself (the list is flat).
    #[error("teardown of {object} met {} error(s): {}", errors.len(), join_errors(errors))]
    Teardown {
        /// The composite being torn down.
        object: String,
        /// Every error met, in order.
        errors: Vec<Error>,
    },
}

fn kernel_says(detail: &Option<String>) -> String {
    match detail {
        Some(d) if !d.is_empty() => format!(" (kernel: {d})"),
        _ => String::new(),
    }
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?}", nix::errno::Errno::from_raw(code)),
        None => e.to_string(),
    }
}

fn join_errors(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// Builds the variant that fits an OS error's errno.
    pub(crate) fn os(op: &'static str, object: impl Into<String>, source: io::Error) -> Error {
        Error::with_detail(op, object, source, None)
    }

    /// Like [`Error::os`], with the kernel's extended-ack text.
    pub(crate) fn with_detail(
        op: &'static str,
        object: impl Into<String>,
        source: io::Error,
        detail: Option<String>,
    ) -> Error {
        use nix::libc;
        let object = object.into();
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Error::PermissionDenied {
                op,
                object,
                detail,
                source,
            },
            Some(libc::EEXIST) => Error::AlreadyExists {
                op,
                object,
                detail,
                hint: None,
                source,
            },
            Some(libc::ENOENT | libc::ENODEV | libc::ESRCH) => Error::NotFound {
                op,
                object,
                detail,
                source,
            },
            _ => Error::Os {
                op,
                object,
                detail,
                source,
            },
        }
    }

    pub(crate) fn invalid(object: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidInput {
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// The object does not exist (`ENOENT`, `ENODEV`, `ESRCH`).
    ///
    /// For a [`Teardown`](Error::Teardown) error: every error it holds is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use netns_kit::Namespace;
    ///
    /// let err = Namespace::open_path("/nonexistent/ns").unwrap_err();
    /// assert!(err.is_not_found());
    /// ```
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Teardown { errors, .. } => errors.iter().all(Error::is_not_found),
            _ => false,
        }
    }

    /// The object already exists (`EEXIST`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// use netns_kit::Namespace;
    ///
    /// let first = Namespace::named("dup1").await?;
    /// let err = Namespace::named("dup1").await.unwrap_err();
    /// assert!(err.is_already_exists());
    /// # Ok(()) }
    /// ```
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists { .. })
    }

    /// The same error, with `hint` added to an [`Error::AlreadyExists`] (others unchanged).
    pub(crate) fn with_hint(mut self, text: &'static str) -> Error {
        if let Error::AlreadyExists { hint, .. } = &mut self {
            *hint = Some(text);
        }
        self
    }

    /// The caller lacks a privilege (`EPERM`, `EACCES`): run as root, or with `CAP_NET_ADMIN`
    /// and `CAP_SYS_ADMIN`.
    ///
    /// For a [`Teardown`](Error::Teardown) error: any error it holds is one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = match netns_kit::Namespace::new().await {
    ///     Err(e) if e.is_permission_denied() => return Ok(()), // not root: skip
    ///     result => result?,
    /// };
    /// # drop(ns);
    /// # Ok(()) }
    /// ```
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Error::PermissionDenied { .. } => true,
            Error::Teardown { errors, .. } => errors.iter().any(Error::is_permission_denied),
            _ => false,
        }
    }

    /// The input was rejected before the kernel was asked anything.
    ///
    /// # Examples
    ///
    /// ```
    /// use netns_kit::IfName;
    ///
    /// let err = IfName::new("way-too-long-interface-name").unwrap_err();
    /// assert!(err.is_invalid_input());
    /// assert_eq!(err.errno(), None); // the kernel was never asked
    /// ```
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidName { .. } | Error::InvalidInput { .. })
    }

    /// The OS error number behind this error, if there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// # use netns_kit::Error;
    /// # fn check(err: &Error) {
    /// if err.errno() == Some(nix::libc::EBUSY) { /* retry later */ }
    /// # }
    /// ```
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::PermissionDenied { source, .. }
            | Error::AlreadyExists { source, .. }
            | Error::NotFound { source, .. }
            | Error::Os { source, .. } => source.raw_os_error(),
            Error::Teardown { errors, .. } => errors.iter().find_map(Error::errno),
            _ => None,
        }
    }

    /// Merges teardown results: `Ok` when `errors` is empty, one error when there is one, a
    /// [`Error::Teardown`] listing them otherwise. A `Teardown` among `errors` contributes its
    /// own errors, so lists never nest.
    pub(crate) fn collect(object: impl Into<String>, errors: Vec<Error>) -> Result<()> {
        let mut errors: Vec<Error> = errors
            .into_iter()
            .flat_map(|e| match e {
                Error::Teardown { errors, .. } => errors,
                e => vec![e],
            })
            .collect();
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Teardown {
                object: object.into(),
                errors,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_sorts_into_variants() {
        let e = |n| Error::os("do", "thing", io::Error::from_raw_os_error(n));
        assert!(e(nix::libc::EPERM).is_permission_denied());
        assert!(e(nix::libc::EACCES).is_permission_denied());
        assert!(e(nix::libc::EEXIST).is_already_exists());
        assert!(e(nix::libc::ENODEV).is_not_found());
        assert!(e(nix::libc::ESRCH).is_not_found());
        assert_eq!(e(nix::libc::EBUSY).errno(), Some(nix::libc::EBUSY));
        assert_eq!(e(nix::libc::EBUSY).to_string(), "cannot do thing: EBUSY");
        assert!(e(nix::libc::EPERM).to_string().contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn detail_is_quoted() {
        let e = Error::with_detail(
            "add route",
            "default via 10.0.0.1",
            io::Error::from_raw_os_error(nix::libc::EINVAL),
            Some("Nexthop has invalid gateway".into()),
        );
        assert_eq!(
            e.to_string(),
            "cannot add route default via 10.0.0.1: EINVAL (kernel: Nexthop has invalid gateway)"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn collect_merges() {
        assert!(Error::collect("x", vec![]).is_ok());
        let one = Error::collect("x", vec![Error::invalid("a", "b")]).unwrap_err();
        assert!(matches!(one, Error::InvalidInput { .. }));
        let two = Error::collect(
            "x",
            vec![Error::invalid("a", "b"), Error::invalid("c", "d")],
        )
        .unwrap_err();
        assert_eq!(
            two.to_string(),
            "teardown of x met 2 error(s): invalid a: b; invalid c: d"
        );
        let nested = Error::collect("y", vec![two, Error::invalid("e", "f")]).unwrap_err();
        let Error::Teardown { errors, .. } = &nested else {
            panic!("{nested:?}")
        };
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| !matches!(e, Error::Teardown { .. })));
    }
}
