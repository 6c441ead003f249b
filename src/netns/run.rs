//! Running code inside a namespace: a closure on a thread of its own, or a program, like
//! `ip netns exec`.

use super::Namespace;
use crate::{
    error::{Error, Result},
    sys::{self},
};
use std::{ffi::OsStr, os::fd::AsFd};

impl Namespace {
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
}
