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

//!
//! # Files
//!
//! `mod.rs` holds the handle and its lifecycle (drop, keep, delete); `inner` the state shared
//! with the guards of objects inside; `create` making namespaces; `open` opening other ones;
//! `run` running code and programs inside; `sysctl` per-namespace settings.

mod create;
mod inner;
mod open;
mod run;
mod sysctl;

pub use create::NamespaceBuilder;
pub(crate) use inner::{AbandonedJob, NsInner, SocketJob, batch_entering, current_inner};

use crate::{
    error::{Error, Result},
    name::NsName,
    netlink::{self},
    owner,
    sys::{self},
};
use std::{
    fmt,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

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

impl Namespace {
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
                crate::trace::swallowed!(&self.inner.label, &e);
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
