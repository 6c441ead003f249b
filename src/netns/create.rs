//! Making namespaces: [`NamespaceBuilder`], anonymous and named, with `lo` set up and the
//! netlink socket opened on the worker thread that made it.

use super::{
    Namespace, Teardown,
    inner::{NsInner, SocketJob, batch_here, ns_inode},
};
use crate::{
    error::{Error, Result},
    name::NsName,
    netlink::{self, BatchConn},
    owner,
    sys::{self, NETNS_RUN_DIR},
    trace,
};
use rtnetlink::sys::Socket;
use std::{
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

/// Builds a new namespace; see [`Namespace::builder`].
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> netns_kit::Result<()> {
/// use netns_kit::{Namespace, NamespaceBuilder};
///
/// let builder: NamespaceBuilder = Namespace::builder().name("lab2");
/// let ns = builder.loopback_up(false).create().await?;
/// assert_eq!(ns.name(), Some("lab2"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.create().await`"]
pub struct NamespaceBuilder {
    name: Option<String>,
    loopback_up: bool,
}

impl NamespaceBuilder {
    /// Names the namespace: it is bind-mounted at `/run/netns/NAME`, exactly as
    /// `ip netns add NAME` does, so `ip netns exec NAME ...` and `tcpdump` see it.
    ///
    /// The name is validated by [`create`](NamespaceBuilder::create) (see [`NsName`]).
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        self.name = Some(name.as_ref().to_owned());
        self
    }

    /// Whether to bring the loopback interface `lo` up (default: yes, like a normal host).
    pub fn loopback_up(mut self, up: bool) -> Self {
        self.loopback_up = up;
        self
    }

    /// The span of `create`: what is being created, and where.
    fn create_span(&self) -> tracing::Span {
        trace::op!(
            "create",
            "namespace",
            self.name
                .as_deref()
                .map_or("an anonymous namespace".to_owned(), |n| format!(
                    "namespace {n:?}"
                )),
            "(new)",
        )
    }

    /// Creates the namespace.
    ///
    /// The namespace is created with `unshare(CLONE_NEWNET)` on a library worker thread (never
    /// the caller's), which also opens the namespace's netlink socket and brings `lo` up before
    /// returning to its home namespace. No process is forked.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidName`] for a bad name, before any syscall;
    /// * [`Error::AlreadyExists`] if `/run/netns/NAME` exists; the existing namespace is left
    ///   untouched;
    /// * [`Error::PermissionDenied`] without `CAP_SYS_ADMIN` (and `CAP_NET_ADMIN` for `lo`);
    /// * [`Error::Os`] for other OS failures. Nothing is left behind on error.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe for anonymous namespaces: if the future is dropped, the namespace made so far
    /// is freed by the kernel. For a named namespace, the claimed name `/run/netns/NAME` is
    /// given back too.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::builder().name("lab1").create().await?;
    /// assert_eq!(ns.name(), Some("lab1"));
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip netns add")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn create(self) -> Result<Namespace> {
        let span = self.create_span();
        trace::timed(span, async move {
            let name = self.name.as_deref().map(NsName::new).transpose()?;
            let Some(name) = name else {
                let (fd, socket) = new_anonymous(self.loopback_up, None).await?;
                let label = format!("anonymous namespace net:[{}]", ns_inode(&fd));
                let mut inner = NsInner::new(fd, label, None, None)?;
                inner.private = true;
                inner.conn.give_spare(socket);
                return Ok(Namespace {
                    inner: Arc::new(inner),
                    teardown: Teardown::Nothing,
                    owned: true,
                });
            };

            let label = format!("namespace {:?}", name.as_str());
            let dir = Path::new(NETNS_RUN_DIR);
            let path = dir.join(name.as_str());
            sys::ensure_run_dir(dir)
                .map_err(|e| Error::os("prepare /run/netns for", label.clone(), e))?;
            let mark = owner::marker();
            sys::claim_ns_file(dir, name.as_str(), &owner::claim_name(), &mark)
                .map_err(|e| Error::os("create", label.clone(), e))?;
            // From here on the name is claimed: `claim` gives it back on every error path, and if
            // this future is dropped.
            let claim = Claim(Some(path.clone()));
            let (fd, socket) = new_anonymous(self.loopback_up, Some(mark)).await?;
            sys::bind_ns(fd.as_fd(), &path)
                .map_err(|e| Error::os("bind-mount", label.clone(), e))?;
            let inner = NsInner::new(fd, label, Some(name), Some(path.clone()))?;
            claim.done();
            inner.conn.give_spare(socket);
            Ok(Namespace {
                inner: Arc::new(inner),
                teardown: Teardown::Unname(path),
                owned: true,
            })
        })
        .await
    }

    /// The blocking form of [`create`](Self::create): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn create_blocking(self) -> Result<Namespace> {
        crate::netlink::block_on(self.create())
    }
}

/// Sets up `lo` over `conn`: up, and/or with `mark` as its alias.
fn set_up_lo(conn: &BatchConn, up: bool, mark: Option<String>) -> Result<()> {
    if !up && mark.is_none() {
        return Ok(());
    }
    let lo = netlink::msg::set_link(1, |mut lo| {
        if up {
            lo = lo.up();
        }
        if let Some(mark) = mark {
            lo = lo.alias(mark);
        }
        lo
    });
    match conn.exchange(vec![(lo, 0)]).pop() {
        Some(Err(e)) => Err(e.into_error("set up lo in", "a new network namespace")),
        _ => Ok(()),
    }
}

impl Namespace {
    /// Creates an anonymous namespace with `lo` up and runs `job` inside it with a blocking
    /// netlink socket, all in one worker job right after `unshare`. The socket is then closed,
    /// so the namespace holds a single fd and no connection. If `job` fails, the namespace (and
    /// anything `job` made inside it) is freed.
    pub(crate) async fn create_with<T: Send + 'static>(
        job: SocketJob<T>,
    ) -> Result<(Namespace, T)> {
        // If the caller is gone by the time the result is ready, dropping it (and with it the
        // namespace's only fd) frees the namespace and whatever the job made inside.
        let (fd, value) = sys::on_worker_cancellable(
            move |cancelled| -> Result<(OwnedFd, T)> {
                let op =
                    |what: &'static str| move |e| Error::os(what, "a new network namespace", e);
                sys::unshare_net().map_err(op("create"))?;
                let fd = sys::open_thread_ns().map_err(op("open"))?;
                let conn = batch_here().map_err(op("open a netlink socket in"))?;
                set_up_lo(&conn, true, None)?;
                let value = job(&conn, cancelled)?;
                Ok((fd, value))
            },
            drop,
        )
        .await
        .map_err(|e| Error::os("create", "a new network namespace", e))??;
        let label = format!("anonymous namespace net:[{}]", ns_inode(&fd));
        let mut inner = NsInner::new(fd, label, None, None)?;
        inner.private = true;
        Ok((
            Namespace {
                inner: Arc::new(inner),
                teardown: Teardown::Nothing,
                owned: true,
            },
            value,
        ))
    }
}

/// A claimed `/run/netns/NAME`, unmounted (if mounted) and removed on drop unless `done`.
struct Claim(Option<PathBuf>);

impl Claim {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = sys::unmount_and_unlink(&path);
        }
    }
}

/// Makes a fresh namespace on a worker thread, returning its fd and a netlink socket inside it,
/// with `lo` already up if asked and carrying `mark` as its alias if given (the ownership mark
/// of a named namespace, see [`owner`](crate::owner)).
async fn new_anonymous(loopback_up: bool, mark: Option<String>) -> Result<(OwnedFd, Socket)> {
    let job = move || -> std::result::Result<(OwnedFd, Socket), Error> {
        let op = |what: &'static str| move |e| Error::os(what, "a new network namespace", e);
        sys::unshare_net().map_err(op("create"))?;
        let fd = sys::open_thread_ns().map_err(op("open"))?;
        let conn = batch_here().map_err(op("open a netlink socket in"))?;
        set_up_lo(&conn, loopback_up, mark)?;
        let socket = BatchConn::into_socket(conn).ok_or_else(|| {
            Error::os(
                "open a netlink socket in",
                "a new network namespace",
                std::io::Error::other("the socket stopped answering"),
            )
        })?;
        Ok((fd, socket))
    };
    sys::on_worker(job)
        .await
        .map_err(|e| Error::os("create", "a new network namespace", e))?
}

impl Namespace {
    /// Starts building a namespace: anonymous unless [named](NamespaceBuilder::name), with `lo`
    /// up unless [told otherwise](NamespaceBuilder::loopback_up).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let bare = netns_kit::Namespace::builder().loopback_up(false).create().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> NamespaceBuilder {
        NamespaceBuilder {
            name: None,
            loopback_up: true,
        }
    }

    /// Creates an anonymous namespace with `lo` up. It lives as long as this handle (and the
    /// guards of anything created inside it); the kernel frees it then, even if the process is
    /// killed.
    ///
    /// # Errors
    ///
    /// See [`NamespaceBuilder::create`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a namespace made before the future was dropped is freed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// assert_ne!(ns.inode(), netns_kit::Namespace::current()?.inode());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "unshare")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn new() -> Result<Namespace> {
        Namespace::builder().create().await
    }

    /// The blocking form of [`new`](Self::new): the same work, checks and errors, on the calling
    /// thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not call
    /// it from async code.
    pub fn new_blocking() -> Result<Namespace> {
        crate::netlink::block_on(Self::new())
    }

    /// Creates a named namespace `/run/netns/NAME` with `lo` up, as `ip netns add NAME` would.
    ///
    /// # Errors
    ///
    /// See [`NamespaceBuilder::create`]; notably [`Error::AlreadyExists`] if the name is taken.
    ///
    /// # Cancel safety
    ///
    /// See [`NamespaceBuilder::create`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let ns = netns_kit::Namespace::named("blue").await?;
    /// let ok = std::process::Command::new("ip").args(["netns", "exec", "blue", "true"]).status()?;
    /// assert!(ok.success());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip netns add")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn named(name: impl AsRef<str>) -> Result<Namespace> {
        Namespace::builder().name(name).create().await
    }

    /// The blocking form of [`named`](Self::named): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn named_blocking(name: impl AsRef<str>) -> Result<Namespace> {
        crate::netlink::block_on(Self::named(name))
    }
}
