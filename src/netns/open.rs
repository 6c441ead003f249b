//! Opening namespaces this crate did not make (by name, path, pid, fd, or the caller's own),
//! and removing a name.

use super::{
    Namespace, Teardown,
    inner::{NsInner, current_inner, ns_inode},
};
use crate::{
    error::{Error, Result},
    name::NsName,
    sys::{self, NETNS_RUN_DIR, NotNetNs},
};
use std::{
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

fn open_error(op: &'static str, object: String, e: NotNetNs) -> Error {
    match e {
        NotNetNs::Io(e) => Error::os(op, object, e),
        NotNetNs::Other(reason) => Error::invalid(object, reason),
    }
}

impl Namespace {
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
    /// [`Error::InvalidName`] for a bad name; [`Error::NotFound`] if there is no such name, or
    /// nothing is mounted on it (an empty file, or one holding only an owner's mark: another
    /// process is adding or removing it — the loser of two removers gets this); [`Error::InvalidInput`] if it is something else (a
    /// regular file with content, a symbolic link, another namespace type); [`Error::PermissionDenied`]
    /// without `CAP_SYS_ADMIN`. Several mounts stacked on the name are all removed.
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
            // An empty file with nothing mounted on it: the name of a namespace another
            // process is adding or removing right now (the loser of two removers sees this).
            NotNetNs::Other(_) if is_empty_file(&path) => Error::with_detail(
                "remove",
                label.clone(),
                std::io::Error::from_raw_os_error(nix::libc::ENOENT),
                Some(format!(
                    "no namespace is mounted at /run/netns/{} (an empty file: being added or removed by another process); left alone",
                    name.as_str()
                )),
            ),
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
}

/// Whether `path` is a name being added or removed: gone, or a regular file with nothing
/// mounted on it that is empty (`ip netns add`'s) or holds nothing but an owner's mark (this
/// crate's, or a kept lab's).
fn is_empty_file(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => true,
        Ok(m) if m.is_file() && m.len() <= 256 => match sys::read_small_file(path, 256) {
            Some(text) => String::from_utf8_lossy(&text)
                .trim_start()
                .starts_with(crate::owner::PREFIX),
            // Removed between the two looks: the other remover finished.
            None => std::fs::symlink_metadata(path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound),
        },
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}
