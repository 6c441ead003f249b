//! [`NsInner`]: the state a namespace handle shares with the guards of objects inside it —
//! the fd, the label, the lazily opened netlink connection — and the cache of the calling
//! thread's own namespace.

use crate::{
    error::{Error, Result},
    name::NsName,
    netlink::{self, BLOCKING_TIMEOUT, BatchConn, KernelError, Nl, NsConn},
    sys::{self},
};
use netlink_packet_route::RouteNetlinkMessage;
use std::{
    fmt,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

/// State shared by a namespace handle and the guards of objects inside it.
pub(crate) struct NsInner {
    pub(super) fd: Arc<OwnedFd>,
    pub(super) id: (u64, u64),
    pub(super) label: String,
    pub(super) name: Option<NsName>,
    pub(super) path: Option<PathBuf>,
    pub(super) conn: NsConn,
    /// Set when the handle that owned this anonymous namespace is gone: nothing of ours keeps it
    /// alive but the remaining references, and when they go the kernel frees it with everything
    /// inside.
    pub(super) doomed: std::sync::atomic::AtomicBool,
    /// Set when something may hold the namespace outside this crate's knowledge: a process
    /// started inside, a socket made inside, the raw fd handed out. Then it is not known to die.
    pub(super) escaped: std::sync::atomic::AtomicBool,
    /// Made here, anonymous: the kernel frees it when this process is gone (unless something
    /// escaped with it).
    pub(super) private: bool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NsInner {
    pub(super) fn new(
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
            private: false,
            escaped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether this process made the namespace, anonymous: the kernel frees it with the
    /// process, unless a process started inside outlives it.
    pub(crate) fn is_private(&self) -> bool {
        self.private
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

    /// The namespace's blocking connection if one is open already (none is opened).
    pub(crate) fn batched_if_open(&self) -> Option<Nl> {
        self.conn.batched_if_open().map(Nl::Batched)
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

    /// A dump from synchronous code (`Drop`); see [`NsConn::blocking_dump`].
    pub(crate) fn blocking_dump(
        &self,
        msg: RouteNetlinkMessage,
        timeout: Duration,
    ) -> std::io::Result<std::result::Result<Vec<RouteNetlinkMessage>, KernelError>> {
        self.conn.blocking_dump(msg, timeout)
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

impl NsInner {
    /// Runs `job` inside this namespace on a worker thread, with a fresh blocking netlink
    /// socket there: closed afterwards, or with `keep` kept as the namespace's blocking
    /// connection (if it has none) for requests right after. If the caller stopped waiting by
    /// the time `job` succeeded, `abandoned` gets its result and that socket, to undo what
    /// nobody will own.
    pub(crate) async fn with_socket<T: Send + 'static>(
        &self,
        job: SocketJob<T>,
        abandoned: AbandonedJob<T>,
        keep: bool,
    ) -> Result<T> {
        let fd = self.fd.clone();
        let label = self.label.clone();
        let (value, conn) = sys::on_worker_cancellable(
            move |cancelled| -> Result<(T, Arc<BatchConn>)> {
                sys::setns_net(fd.as_fd()).map_err(|e| Error::os("enter", label.clone(), e))?;
                let conn =
                    batch_here().map_err(|e| Error::os("open a netlink socket in", label, e))?;
                let value = job(&conn, cancelled)?;
                Ok((value, conn))
            },
            move |result| {
                if let Ok((value, conn)) = result {
                    abandoned(&conn, value);
                }
            },
        )
        .await
        .map_err(|e| Error::os("run a job in", self.label.clone(), e))??;
        // The job's socket stays this namespace's connection for the blocking transport, so a
        // request right after it (a member's readiness check) needs no second trip to a worker.
        if keep {
            self.conn.offer_batched(conn);
        }
        Ok(value)
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

/// A blocking connection in the calling thread's namespace (a worker's, inside a namespace).
pub(super) fn batch_here() -> std::io::Result<Arc<BatchConn>> {
    BatchConn::new(netlink::new_socket()?, BLOCKING_TIMEOUT)
}

/// From a job on a library worker: enters namespace `fd` on the worker's thread and opens a
/// blocking connection there. The thread stays in that namespace (the worker goes home after the
/// job): whatever the job does next must not depend on the thread's own namespace.
pub(crate) fn batch_entering(fd: BorrowedFd<'_>) -> std::io::Result<Arc<BatchConn>> {
    debug_assert!(
        sys::on_worker_thread(),
        "only a worker's job may enter a namespace"
    );
    sys::setns_net(fd)?;
    batch_here()
}

pub(super) fn ns_inode(fd: &OwnedFd) -> u64 {
    sys::ns_id(fd.as_fd()).map(|(_, ino)| ino).unwrap_or(0)
}

/// A job run inside a namespace on a worker thread, with a blocking netlink connection opened
/// there for it, and a check telling whether its caller stopped waiting.
pub(crate) type SocketJob<T> =
    Box<dyn FnOnce(&BatchConn, &dyn Fn() -> bool) -> Result<T> + Send + 'static>;

/// What undoes a [`SocketJob`]'s work when nobody took its result (with the job's own
/// connection, in the same namespace).
pub(crate) type AbandonedJob<T> = Box<dyn FnOnce(&BatchConn, T) + Send + 'static>;
