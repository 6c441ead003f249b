//! [`Namespace`]: a network namespace held by a file descriptor.
//!
//! # Kinds, and what dropping each one does
//!
//! - **anonymous**, made by [`Namespace::new`]: only our fd holds it. Dropping the handle closes
//!   the fd; the kernel frees the namespace (and every interface in it) once nothing else holds it.
//! - **named**, made by [`Namespace::named`]: bind-mounted at `/run/netns/NAME`, exactly as
//!   `ip netns add` does. Dropping unmounts and removes `/run/netns/NAME` — only if that name
//!   still refers to *this* namespace — then closes the fd.
//! - **opened**, by [`Namespace::open`], [`open_path`](Namespace::open_path),
//!   [`from_pid`](Namespace::from_pid), [`from_fd`](Namespace::from_fd) or
//!   [`current`](Namespace::current): someone else's. Dropping closes our fd and never destroys
//!   anything.
//!
//! Holding namespaces by fd rather than by name is what makes anonymous namespaces leak-proof:
//! if the process dies, even by `SIGKILL`, the kernel closes the fd and frees the namespace.
//! It is also what makes tests parallel-safe: each test's namespaces have no name to collide on.
//!
//! # Running code inside
//!
//! [`Namespace::run`] runs a closure on a fresh thread that entered the namespace; the caller's
//! thread never changes namespace, even when the closure panics. A socket made there keeps acting
//! in the namespace from any thread, which is how a test binds a server "inside" a namespace and
//! then serves from its async runtime. [`Namespace::command`] builds a
//! [`std::process::Command`] (and [`Namespace::tokio_command`] a Tokio one) that enters the
//! namespace between `fork` and `exec`, like `ip netns exec`, with no shell in between.
//!
//! # Netlink
//!
//! Each namespace lazily opens one rtnetlink connection, from a socket created inside it, and
//! reuses it for every link, address and route request (see [`netlink`](crate::netlink)). A
//! namespace made by [`Namespace::new`]/[`named`](Namespace::named) gets that socket for free: it
//! is opened on the same worker thread, right after `unshare`, before the thread leaves.

use std::{
    ffi::OsStr,
    fmt,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::Socket;

use crate::{
    error::{Error, Result},
    name::NsName,
    netlink::{self, BLOCKING_TIMEOUT, BatchConn, KernelError, Nl, NsConn},
    owner,
    sys::{self, NETNS_RUN_DIR, NotNetNs},
    trace,
};

/// State shared by a namespace handle and the guards of objects inside it.
pub(crate) struct NsInner {
    fd: Arc<OwnedFd>,
    id: (u64, u64),
    label: String,
    name: Option<NsName>,
    path: Option<PathBuf>,
    conn: NsConn,
    /// Set when the handle that owned this anonymous namespace is gone: nothing of ours keeps it
    /// alive but the remaining references, and when they go the kernel frees it with everything
    /// inside.
    doomed: std::sync::atomic::AtomicBool,
    /// Set when something may hold the namespace outside this crate's knowledge: a process
    /// started inside, a socket made inside, the raw fd handed out. Then it is not known to die.
    escaped: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NsInner {
    fn new(
        fd: OwnedFd,
        label: String,
        name: Option<NsName>,
        path: Option<PathBuf>,
    ) -> Result<Self> {
        let id = sys::ns_id(fd.as_fd()).map_err(|e| Error::os("inspect", label.clone(), e))?;
        let fd = Arc::new(fd);
        Ok(NsInner {
            conn: NsConn::new(fd.clone()),
            fd,
            id,
            label,
            name,
            path,
            doomed: std::sync::atomic::AtomicBool::new(false),
            escaped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// How errors name this namespace, e.g. `namespace "ns1"`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn fd(&self) -> &Arc<OwnedFd> {
        &self.fd
    }

    /// Whether the namespace's owning handle is gone and nothing outside this crate can hold
    /// it, so the kernel will free it (and delete its links, addresses, routes and firewall
    /// rules, in one batch) once this crate's last reference goes. Guards of objects inside
    /// skip their own, slower, deletion from `Drop` then; an explicit `delete()` never does.
    pub(crate) fn is_doomed(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.doomed.load(Ordering::Acquire) && !self.escaped.load(Ordering::Acquire)
    }

    /// Records that something outside this crate may now hold the namespace.
    pub(crate) fn mark_escaped(&self) {
        self.escaped
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The (nsfs device, inode) pair identifying the namespace.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// The namespace's connection, opened on first use (for the calling thread's transport).
    pub(crate) async fn nl(&self) -> Result<Nl> {
        self.conn.nl(&self.label).await
    }

    /// Closes the connection (if any); the next request opens a new one.
    pub(crate) fn close_netlink(&self) {
        self.conn.close();
    }

    /// Sends `messages` from synchronous code (`Drop`); see [`NsConn::blocking_acks`].
    pub(crate) fn blocking_acks(
        &self,
        messages: Vec<(RouteNetlinkMessage, u16)>,
        timeout: Duration,
    ) -> std::io::Result<Vec<std::result::Result<(), KernelError>>> {
        self.conn.blocking_acks(messages, timeout)
    }

    /// Sends one request from synchronous code; "already gone" counts as success.
    pub(crate) fn blocking_one(
        &self,
        msg: RouteNetlinkMessage,
        op: &'static str,
        label: impl FnOnce() -> String,
    ) -> Result<()> {
        self.conn.blocking_one(msg, op, label)
    }
}

impl fmt::Debug for NsInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// What dropping a [`Namespace`] handle undoes.
#[derive(Debug)]
enum Teardown {
    /// Opened, kept, or anonymous: only our fd is closed.
    Nothing,
    /// Named by us: unmount and remove `/run/netns/NAME` if it is still ours.
    Unname(PathBuf),
}

/// A network namespace, held by a file descriptor; also the guard of a namespace this crate
/// created.
///
/// - **anonymous**, made by [`Namespace::new`]: only our fd holds it. Dropping the handle closes
///   the fd; the kernel frees the namespace (and every interface in it) once nothing else holds it.
/// - **named**, made by [`Namespace::named`]: bind-mounted at `/run/netns/NAME`, exactly as
///   `ip netns add` does. Dropping unmounts and removes `/run/netns/NAME` — only if that name
///   still refers to *this* namespace — then closes the fd.
/// - **opened**, by [`Namespace::open`], [`open_path`](Namespace::open_path),
///   [`from_pid`](Namespace::from_pid), [`from_fd`](Namespace::from_fd) or
///   [`current`](Namespace::current): someone else's. Dropping closes our fd and never destroys
///   anything.
///
/// Every guard of this crate follows the [guard contract](crate#guards): best-effort synchronous
/// [`Drop`], reporting [`delete`](Namespace::delete), disarming [`keep`](Namespace::keep).
///
/// Guards of objects inside a namespace (interfaces, routes, ...) hold a reference to it, so the
/// kernel namespace stays alive until they are gone too; its *name*, though, is removed as soon as
/// its handle is dropped.
///
/// # Examples
///
/// ```no_run
/// use netns_kit::Namespace;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// // Anonymous: nothing to clean up even if the process is killed.
/// let ns = Namespace::new().await?;
/// let out = ns.command("ip").args(["-br", "link"]).output()?;
/// assert!(String::from_utf8_lossy(&out.stdout).starts_with("lo"));
///
/// // Named: visible to `ip netns list`, removed on drop.
/// let named = Namespace::named("demo1").await?;
/// assert_eq!(named.path().unwrap(), std::path::Path::new("/run/netns/demo1"));
/// # Ok(()) }
/// ```
pub struct Namespace {
    inner: Arc<NsInner>,
    teardown: Teardown,
    owned: bool,
}

impl fmt::Display for Namespace {
    /// How errors name the namespace: `namespace "ns1"`, `anonymous namespace net:[4026532…]`,
    /// `namespace of process 42`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.label)
    }
}

impl PartialEq for Namespace {
    /// Two handles are equal when they refer to the same namespace (the same nsfs device and
    /// inode), however they were obtained.
    fn eq(&self, other: &Namespace) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Eq for Namespace {}

impl std::hash::Hash for Namespace {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("label", &self.inner.label)
            .field("inode", &self.inner.id.1)
            .field("owned", &self.owned)
            .field("teardown", &self.teardown)
            .finish()
    }
}

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
                let inner = NsInner::new(fd, label, None, None)?;
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

/// A job run inside a namespace on a worker thread, with a blocking netlink connection opened
/// there for it (closed afterwards), and a check telling whether its caller stopped waiting.
pub(crate) type SocketJob<T> =
    Box<dyn FnOnce(&BatchConn, &dyn Fn() -> bool) -> Result<T> + Send + 'static>;

/// What undoes a [`SocketJob`]'s work when nobody took its result (run inside the same
/// namespace, with a fresh connection).
pub(crate) type AbandonedJob<T> = Box<dyn FnOnce(&BatchConn, T) + Send + 'static>;

/// A blocking connection in the calling thread's namespace (a worker's, inside a namespace).
fn batch_here() -> std::io::Result<Arc<BatchConn>> {
    BatchConn::new(netlink::new_socket()?, BLOCKING_TIMEOUT)
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
        let inner = NsInner::new(fd, label, None, None)?;
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

impl NsInner {
    /// Runs `job` inside this namespace on a worker thread, with a fresh blocking netlink
    /// socket there (closed afterwards). If the caller stopped waiting by the time `job`
    /// succeeded, `abandoned` gets its result, back inside the namespace with a socket, to undo
    /// what nobody will own.
    pub(crate) async fn with_socket<T: Send + 'static>(
        &self,
        job: SocketJob<T>,
        abandoned: AbandonedJob<T>,
    ) -> Result<T> {
        let fd = self.fd.clone();
        let label = self.label.clone();
        let undo_fd = self.fd.clone();
        sys::on_worker_cancellable(
            move |cancelled| -> Result<T> {
                sys::setns_net(fd.as_fd()).map_err(|e| Error::os("enter", label.clone(), e))?;
                let conn =
                    batch_here().map_err(|e| Error::os("open a netlink socket in", label, e))?;
                job(&conn, cancelled)
            },
            move |result| {
                if let Ok(value) = result {
                    let conn = sys::setns_net(undo_fd.as_fd()).and_then(|()| batch_here());
                    if let Ok(conn) = conn {
                        abandoned(&conn, value);
                    }
                }
            },
        )
        .await
        .map_err(|e| Error::os("run a job in", self.label.clone(), e))?
    }
}

/// The calling thread's namespace, shared: every handle to it made by [`Namespace::current`]
/// (and every builder that defaults to it) uses one `NsInner`, so one netlink connection, for
/// as long as any of them is alive.
pub(crate) fn current_inner() -> Result<Arc<NsInner>> {
    static CACHE: Mutex<Vec<std::sync::Weak<NsInner>>> = Mutex::new(Vec::new());
    let fd = sys::open_thread_ns().map_err(|e| Error::os("open", "the current namespace", e))?;
    let id =
        sys::ns_id(fd.as_fd()).map_err(|e| Error::os("inspect", "the current namespace", e))?;
    let mut cache = lock(&CACHE);
    cache.retain(|weak| weak.strong_count() > 0);
    if let Some(inner) = cache
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .find(|i| i.id == id)
    {
        return Ok(inner);
    }
    let label = format!("current namespace net:[{}]", id.1);
    let inner = Arc::new(NsInner::new(fd, label, None, None)?);
    cache.push(Arc::downgrade(&inner));
    Ok(inner)
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

fn ns_inode(fd: &OwnedFd) -> u64 {
    sys::ns_id(fd.as_fd()).map(|(_, ino)| ino).unwrap_or(0)
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

fn open_error(op: &'static str, object: String, e: NotNetNs) -> Error {
    match e {
        NotNetNs::Io(e) => Error::os(op, object, e),
        NotNetNs::Other(reason) => Error::invalid(object, reason),
    }
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

    /// Opens the named namespace `/run/netns/NAME` (made by `ip netns add` or by this crate).
    /// The handle never deletes it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad name; [`Error::NotFound`] if there is no such namespace;
    /// [`Error::InvalidInput`] if the file is not a network namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ns = netns_kit::Namespace::open("blue")?;
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn open(name: impl AsRef<str>) -> Result<Namespace> {
        let name = NsName::new(name)?;
        let label = format!("namespace {:?}", name.as_str());
        let path = Path::new(NETNS_RUN_DIR).join(name.as_str());
        let fd =
            sys::open_net_ns_at(&path, false).map_err(|e| open_error("open", label.clone(), e))?;
        Namespace::opened(fd, label, Some(name), Some(path))
    }

    /// Removes the named namespace `/run/netns/NAME`, whoever made it, as `ip netns del NAME`
    /// does: its bind mount is detached and the file removed; the kernel frees the namespace,
    /// with its interfaces, once no process, socket or handle holds it any more — in the
    /// background, a few milliseconds later (the kernel's namespace cleanup runs on a work queue),
    /// so a veth pair with one end inside may still be listed just after this returns. What a
    /// container runtime calls on delete, from another process than the one that made (and
    /// [kept](Namespace::keep)) the namespace.
    ///
    /// Only a network namespace's bind mount is removed: anything else under `/run/netns` (a
    /// plain file, a symbolic link, a FIFO, a half-made name) is refused and left alone.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad name; [`Error::NotFound`] if there is no such name;
    /// [`Error::InvalidInput`] if it is not a network namespace; [`Error::PermissionDenied`]
    /// without `CAP_SYS_ADMIN`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // Process 1 made it and kept it:
    /// # async fn create() -> netns_kit::Result<()> {
    /// netns_kit::Namespace::named("container-7").await?.keep();
    /// # Ok(()) }
    /// // Process 2, later:
    /// netns_kit::Namespace::delete_named("container-7")?;
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    #[doc(alias = "ip netns del")]
    #[doc(alias = "ip netns delete")]
    pub fn delete_named(name: impl AsRef<str>) -> Result<()> {
        let name = NsName::new(name)?;
        let label = format!("namespace {:?}", name.as_str());
        let path = Path::new(NETNS_RUN_DIR).join(name.as_str());
        let fd = sys::open_net_ns_at(&path, false).map_err(|e| match e {
            NotNetNs::Other(reason) => Error::invalid(
                label.clone(),
                format!("/run/netns/{} is {reason}; left alone", name.as_str()),
            ),
            NotNetNs::Io(e) => Error::os("remove", label.clone(), e),
        })?;
        drop(fd);
        sys::unmount_and_unlink(&path).map_err(|e| Error::os("remove", label, e))
    }

    /// Opens the namespace file at `path`, such as `/run/netns/X` or `/proc/PID/ns/net`. The
    /// handle never deletes it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if `path` does not exist; [`Error::InvalidInput`] if it is not a
    /// network namespace file (a regular file, another namespace type, ...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ns = netns_kit::Namespace::open_path("/proc/1/ns/net")?;
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn open_path(path: impl AsRef<Path>) -> Result<Namespace> {
        let path = path.as_ref();
        let label = format!("namespace at {}", path.display());
        let fd = sys::open_net_ns(path).map_err(|e| open_error("open", label.clone(), e))?;
        Namespace::opened(fd, label, None, Some(path.to_owned()))
    }

    /// Opens the namespace of process `pid`. A pidfd pins the process while
    /// `/proc/PID/ns/net` is opened, so a pid reused in between is detected, not followed. The
    /// handle never deletes the namespace.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such process (or it exited meanwhile);
    /// [`Error::PermissionDenied`] if its namespace may not be opened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let child = std::process::Command::new("unshare").args(["--net", "sleep", "10"]).spawn()?;
    /// let ns = netns_kit::Namespace::from_pid(child.id())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_pid(pid: u32) -> Result<Namespace> {
        let label = format!("namespace of process {pid}");
        let fd = sys::open_pid_ns(pid).map_err(|e| open_error("open", label.clone(), e))?;
        Namespace::opened(fd, label, None, None)
    }

    /// Wraps an fd that refers to a network namespace (e.g. received from another process).
    /// The handle never deletes the namespace.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if `fd` is not a network namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let file = std::fs::File::open("/proc/self/ns/net")?;
    /// let ns = netns_kit::Namespace::from_fd(file.into())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Result<Namespace> {
        sys::check_net_ns(fd.as_fd())
            .map_err(|e| open_error("open", "namespace from a file descriptor".into(), e))?;
        // Programs started by `command()` must not inherit (and so keep alive) the namespace.
        sys::set_cloexec(fd.as_fd())
            .map_err(|e| Error::os("open", "namespace from a file descriptor", e))?;
        let label = format!("namespace net:[{}]", ns_inode(&fd));
        Namespace::opened(fd, label, None, None)
    }

    /// The namespace the calling thread is in. The handle never deletes it.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if `/proc/thread-self/ns/net` cannot be opened (no `/proc`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let here = netns_kit::Namespace::current()?;
    /// println!("running in net:[{}]", here.inode());
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn current() -> Result<Namespace> {
        Ok(Namespace::view(current_inner()?))
    }

    fn opened(
        fd: OwnedFd,
        label: String,
        name: Option<NsName>,
        path: Option<PathBuf>,
    ) -> Result<Namespace> {
        Ok(Namespace {
            inner: Arc::new(NsInner::new(fd, label, name, path)?),
            teardown: Teardown::Nothing,
            owned: false,
        })
    }

    pub(crate) fn inner(&self) -> &Arc<NsInner> {
        &self.inner
    }

    /// A handle to the same namespace that never tears it down.
    pub(crate) fn view(inner: Arc<NsInner>) -> Namespace {
        Namespace {
            inner,
            teardown: Teardown::Nothing,
            owned: false,
        }
    }

    /// Tears down now, synchronously, reporting errors (what `delete` and `Drop` do).
    pub(crate) fn close(mut self) -> Result<()> {
        self.teardown_now()
    }

    /// The namespace's name, for a named namespace.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_ref().map(NsName::as_str)
    }

    /// The path it was opened from or bind-mounted at, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The namespace's inode number: the `N` in `net:[N]` that `readlink /proc/PID/ns/net`
    /// prints, and what `ip netns identify` compares. Two handles with the same inode refer to
    /// the same namespace.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let here = netns_kit::Namespace::current()?;
    /// let init = netns_kit::Namespace::open_path("/proc/1/ns/net")?;
    /// if here.inode() == init.inode() {
    ///     println!("running in the host namespace, net:[{}]", here.inode());
    /// }
    /// # Ok::<(), netns_kit::Error>(())
    /// ```
    pub fn inode(&self) -> u64 {
        self.inner.id.1
    }

    /// Whether this handle was created by this crate and tears its namespace down (false for
    /// opened namespaces and after [`keep`](Namespace::keep)).
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// How error messages name this namespace (its `Display`).
    pub(crate) fn label(&self) -> &str {
        &self.inner.label
    }

    /// Runs `f` on a new thread inside this namespace and returns its result. The calling
    /// thread never changes namespace. Sockets created by `f` stay in this namespace and can be
    /// used from any thread afterwards — how a test binds a server "inside" a namespace and
    /// serves from its own runtime.
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic is resumed in the awaiting task.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if the thread may not enter the namespace; [`Error::Os`] if
    /// no thread can be spawned.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, `f` still runs to completion on its thread; its result is
    /// dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let listener = ns.run(|| std::net::TcpListener::bind("127.0.0.1:0")).await??;
    /// // `listener` accepts connections made inside `ns` only.
    /// # Ok(()) }
    /// ```
    #[doc(alias = "setns")]
    pub async fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.inner.mark_escaped();
        let fd = self.inner.fd.clone();
        let label = self.inner.label.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        let thread_label = label.clone();
        std::thread::Builder::new()
            .name("netns-kit-run".into())
            .spawn(move || {
                let result = sys::setns_net(fd.as_fd())
                    .map_err(|e| Error::os("enter", thread_label, e))
                    .map(|()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
                let _ = tx.send(result);
            })
            .map_err(|e| Error::os("spawn a thread to enter", label.clone(), e))?;
        match rx.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(panic))) => std::panic::resume_unwind(panic),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::os(
                "run a closure in",
                label,
                std::io::Error::other("the thread ended without a result"),
            )),
        }
    }

    /// The blocking twin of [`run`](Namespace::run): runs `f` on a new (scoped) thread inside
    /// this namespace and blocks until it returns; `f` may borrow from the caller.
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic is resumed on the calling thread (which is still in its own
    /// namespace), as [`std::thread::scope`] does.
    ///
    /// # Errors
    ///
    /// As for [`run`](Namespace::run).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ns = netns_kit::Namespace::new_blocking()?;
    /// let socket = ns.run_blocking(|| std::net::UdpSocket::bind("127.0.0.1:0"))??;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_blocking<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        // `f` may make sockets (or threads) that keep the namespace alive.
        self.inner.mark_escaped();
        let fd = self.inner.fd.as_fd();
        let label = &self.inner.label;
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("netns-kit-run".into())
                .spawn_scoped(scope, move || -> Result<R> {
                    sys::setns_net(fd).map_err(|e| Error::os("enter", label.clone(), e))?;
                    Ok(f())
                })
                .map_err(|e| Error::os("spawn a thread to enter", label.clone(), e))?;
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A [`std::process::Command`] for `program` that runs inside this namespace, like
    /// `ip netns exec NS program`: the child enters the namespace between `fork` and `exec`; no
    /// shell is involved and the caller never changes namespace. Unlike `ip netns exec`, `/sys`
    /// is not remounted, so tools that list interfaces through `/sys/class/net` see the
    /// caller's; netlink-based tools (`ip`, `ping`, `ss`, `tcpdump -i IF`) are unaffected.
    ///
    /// The command holds its own reference to the namespace, so it may outlive this handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// let status = ns.command("ping").args(["-c1", "127.0.0.1"]).status()?;
    /// assert!(status.success());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "ip netns exec")]
    pub fn command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        // The process may outlive every handle.
        self.inner.mark_escaped();
        let mut command = std::process::Command::new(program);
        sys::enter_before_exec(&mut command, self.inner.fd.clone());
        command
    }

    /// A [`tokio::process::Command`] for `program` that runs inside this namespace; see
    /// [`command`](Namespace::command).
    #[cfg(feature = "tokio")]
    pub fn tokio_command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }

    /// Reads the sysctl `key` (e.g. `net.ipv4.ip_forward`) of this namespace, on a library
    /// thread inside it.
    ///
    /// Only `net.*` keys are accepted: they are the per-namespace ones, so this can never
    /// read or change a global setting by mistake. As with sysctl(8), a `/` inside a
    /// component stands for a `.` in an interface name (`net.ipv4.conf.eth0/10.forwarding`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a key outside `net.` or with empty, `.` or `..`
    /// components; [`Error::NotFound`] if the key does not exist in this namespace.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// assert_eq!(ns.sysctl("net.ipv4.ip_forward").await?, "0");
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        let fd = self.inner.fd.clone();
        let value = sys::on_worker(move || {
            sys::setns_net(fd.as_fd())?;
            std::fs::read_to_string(path)
        })
        .await
        .and_then(|r| r)
        .map_err(|e| Error::os("read sysctl", format!("{key} in {}", self.label()), e))?;
        Ok(value.trim_end().to_owned())
    }

    /// The blocking form of [`sysctl`](Self::sysctl): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn sysctl_blocking(&self, key: &str) -> Result<String> {
        crate::netlink::block_on(self.sysctl(key))
    }

    /// Writes `value` to the sysctl `key` of this namespace only; see
    /// [`sysctl`](Namespace::sysctl).
    ///
    /// # Errors
    ///
    /// As for [`sysctl`](Namespace::sysctl); [`Error::Os`] (`EINVAL`) if the kernel rejects
    /// the value; [`Error::PermissionDenied`] without `CAP_NET_ADMIN`.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the write happens even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// ns.set_sysctl("net.ipv4.ip_forward", "1").await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "sysctl -w")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        let value = value.to_owned();
        let fd = self.inner.fd.clone();
        sys::on_worker(move || {
            sys::setns_net(fd.as_fd())?;
            std::fs::write(path, value)
        })
        .await
        .and_then(|r| r)
        .map_err(|e| Error::os("write sysctl", format!("{key} in {}", self.label()), e))
    }

    /// The blocking form of [`set_sysctl`](Self::set_sysctl): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do
    /// not call it from async code.
    pub fn set_sysctl_blocking(&self, key: &str, value: &str) -> Result<()> {
        crate::netlink::block_on(self.set_sysctl(key, value))
    }

    /// Closes this namespace's netlink connection, freeing its socket and buffers (~72 KiB); the
    /// next request opens a new one. Useful when holding many namespaces at once.
    pub fn close_netlink(&self) {
        self.inner.close_netlink();
    }

    /// Disarms the guard: the namespace's name (if any) is no longer removed when this handle
    /// is dropped or deleted, so a named namespace outlives the program. Returns the same,
    /// still usable, handle, which no longer owns the namespace (like an opened one).
    ///
    /// An anonymous namespace cannot outlive every handle to it; keep a handle (or a process in
    /// it), or name it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::named("container-1").await?.keep();
    /// drop(ns); // /run/netns/container-1 stays
    /// # Ok(()) }
    /// ```
    pub fn keep(mut self) -> Namespace {
        if let Teardown::Unname(_) = self.teardown {
            // Replace the ownership mark, so `reap` never removes what we were told to keep.
            let kept = netlink::msg::set_link(1, |b| b.alias(owner::KEPT));
            if let Err(e) = self
                .inner
                .blocking_one(kept, "unmark", || self.inner.label.clone())
            {
                crate::trace::swallowed(&self.inner.label, &e);
            }
        }
        self.teardown = Teardown::Nothing;
        self.owned = false;
        self
    }

    /// Deletes the namespace now, if this handle owns it, and reports errors (dropping
    /// does the same, silently). A handle owns its namespace when this crate created it and
    /// it was not [kept](Namespace::keep); on any other handle — opened by name, path, pid or
    /// fd, or kept — this only closes the handle. To remove a named namespace this handle
    /// does not own, as `ip netns del` does, use [`Namespace::delete_named`].
    ///
    /// Deleting a named namespace unmounts and removes `/run/netns/NAME` if it still refers
    /// to this namespace (a name reused by someone else is left alone). In every case the fd
    /// and netlink connection are closed; the kernel frees the namespace, with its
    /// interfaces, once nothing else holds it.
    ///
    /// # Errors
    ///
    /// [`Error::Os`]/[`Error::PermissionDenied`] if the name cannot be unmounted or
    /// removed. A name that is already gone is not an error.
    ///
    /// # Cancel safety
    ///
    /// The work is synchronous and done on the first poll.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::named("tmp1").await?;
    /// ns.delete().await?; // /run/netns/tmp1 is gone
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn delete(self) -> Result<()> {
        self.close()
    }

    /// The blocking form of [`delete`](Self::delete): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn delete_blocking(self) -> Result<()> {
        crate::netlink::block_on(self.delete())
    }

    fn teardown_now(&mut self) -> Result<()> {
        if self.owned {
            // A live netlink socket keeps its namespace alive.
            self.inner.close_netlink();
        }
        let result = match std::mem::replace(&mut self.teardown, Teardown::Nothing) {
            Teardown::Nothing => Ok(()),
            Teardown::Unname(path) => {
                let label = || self.inner.label.clone();
                match sys::path_id(&path).map_err(|e| Error::os("inspect", label(), e))? {
                    Some(id) if id == self.inner.id => {
                        sys::unmount_and_unlink(&path).map_err(|e| Error::os("delete", label(), e))
                    }
                    // Already gone, or the name now belongs to another namespace.
                    _ => Ok(()),
                }
            }
        };
        if self.owned && self.inner.name.is_none() {
            // Anonymous: nothing but the remaining references keeps it alive now. (A named one
            // may have been bind-mounted elsewhere by anyone who saw its name.)
            self.inner
                .doomed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        result
    }
}

impl AsFd for Namespace {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // Whoever has the fd can keep the namespace alive (dup it, setns a process into it).
        self.inner.mark_escaped();
        self.inner.fd.as_fd()
    }
}

impl std::os::fd::AsRawFd for Namespace {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.mark_escaped();
        self.inner.fd.as_raw_fd()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if matches!(self.teardown, Teardown::Nothing) && !self.owned {
            return; // nothing to undo: an opened or kept handle
        }
        let label = self.inner.label.clone();
        let span = crate::trace::op!("drop", "namespace", label, label);
        crate::guard::best_effort(span, &label, || self.teardown_now());
    }
}

/// Maps a `net.*` sysctl key to its `/proc/sys` path, refusing anything that could leave
/// `/proc/sys/net`.
fn sysctl_path(key: &str) -> Result<PathBuf> {
    let bad = |reason: &str| Error::invalid(format!("sysctl key {key:?}"), reason);
    let mut parts = key.split('.');
    if parts.next() != Some("net") {
        return Err(bad(
            "only net.* keys are per-namespace; other sysctls are global and are not touched",
        ));
    }
    let mut path = PathBuf::from("/proc/sys/net");
    let mut any = false;
    for part in parts {
        let part = part.replace('/', ".");
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            return Err(bad("has an empty, `.` or `..` component"));
        }
        path.push(part);
        any = true;
    }
    if !any {
        return Err(bad("names no setting"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0/10.forwarding").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.10/forwarding")
        );
        for bad in [
            "kernel.hostname",
            "net",
            "net.",
            "net..x",
            "net.ipv4...",
            "net./",
            "vm.swappiness",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad}");
        }
    }
}
