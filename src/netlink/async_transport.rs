//! The async transport: every namespace's rtnetlink connection is polled on **one
//! library-owned thread running a current-thread Tokio runtime** (the *driver*).
//!
//! Rather than spawning connections on the caller's runtime, this crate drives them itself, so:
//!
//! * the async API works from any executor (Tokio of any flavour, `futures::executor`, smol), and
//!   never panics for lack of a runtime or of Tokio's I/O driver;
//! * a namespace created under one runtime keeps working after that runtime shut down, and
//!   `Drop` can close a connection (by aborting its task) at any time;
//! * the cost is one cross-thread wake-up per request, a few microseconds against the
//!   0.1–30 ms the kernel spends on a link, address or route change.
//!
//! The thread starts on the first async request; the blocking API never starts it.

use std::{
    io,
    sync::OnceLock,
    task::{Context, Poll},
};

use rtnetlink::sys::{AsyncSocket, Socket, SocketAddr};
use tokio::io::unix::AsyncFd;

fn driver() -> io::Result<&'static tokio::runtime::Handle> {
    // Only success is cached: a failure (say EMFILE) is reported and retried next time.
    static DRIVER: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(handle) = DRIVER.get() {
        return Ok(handle);
    }
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = DRIVER.get() {
        return Ok(handle);
    }
    let failed = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot start the netlink driver thread: {e}"),
        )
    };
    // The runtime is built on the driver thread once it is home: the thread inherits the
    // namespace of whichever thread asked first (perhaps one inside a caller's namespace), and
    // the runtime makes sockets (its signal driver's socket pair), which would pin that
    // namespace for the life of the process.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("netns-kit-netlink".into())
        .spawn(move || {
            // Best effort: the connections it polls act in their own namespaces regardless.
            let _ = crate::sys::enter_home();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(std::future::pending::<()>())
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(failed)?;
    let handle = rx
        .recv()
        .map_err(|_| io::Error::other("the driver thread ended"))
        .and_then(|r| r)
        .map_err(failed)?;
    Ok(DRIVER.get_or_init(|| handle))
}

/// Spawns `future` on the driver thread's runtime (for waits from synchronous code).
pub(crate) fn spawn<F>(future: F) -> io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    driver()?.spawn(future);
    Ok(())
}

/// Runs `future` on the driver thread's runtime and returns a future for its output that any
/// executor can await. Dropping the returned future aborts the task (dropping `future`, and
/// with it any socket or child process it owns).
pub(crate) async fn on_driver<F>(future: F) -> io::Result<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(driver()?.spawn(future));
    (&mut task.0)
        .await
        .map_err(|e| io::Error::other(format!("netns-kit driver task failed: {e}")))
}

/// Registers `inner` with the driver runtime's reactor.
pub(crate) fn async_fd<T: crate::sys::OwnsFd>(inner: T) -> io::Result<AsyncFd<T>> {
    crate::sys::register_async_fd(inner, driver()?)
}

/// A netlink socket registered with the driver runtime. Unlike rtnetlink's `TokioSocket`, it is
/// built fallibly from a socket made elsewhere (inside a namespace).
struct NlSocket(AsyncFd<Socket>);

impl AsyncSocket for NlSocket {
    fn socket_ref(&self) -> &Socket {
        self.0.get_ref()
    }

    fn socket_mut(&mut self) -> &mut Socket {
        self.0.get_mut()
    }

    fn new(protocol: isize) -> io::Result<Self> {
        let socket = Socket::new(protocol)?;
        socket.set_non_blocking(true)?;
        Ok(NlSocket(async_fd(socket)?))
    }

    fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = futures::ready!(self.0.poll_write_ready(cx))?;
            if let Ok(result) = guard.try_io(|inner| inner.get_ref().send(buf, 0)) {
                return Poll::Ready(result);
            }
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        addr: &SocketAddr,
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = futures::ready!(self.0.poll_write_ready(cx))?;
            if let Ok(result) = guard.try_io(|inner| inner.get_ref().send_to(buf, addr, 0)) {
                return Poll::Ready(result);
            }
        }
    }

    fn poll_recv<B>(&self, cx: &mut Context<'_>, buf: &mut B) -> Poll<io::Result<()>>
    where
        B: bytes::BufMut,
    {
        loop {
            let mut guard = futures::ready!(self.0.poll_read_ready(cx))?;
            if let Ok(result) = guard.try_io(|inner| inner.get_ref().recv(buf, 0)) {
                return Poll::Ready(result.map(|_| ()));
            }
        }
    }

    fn poll_recv_from<B>(&self, cx: &mut Context<'_>, buf: &mut B) -> Poll<io::Result<SocketAddr>>
    where
        B: bytes::BufMut,
    {
        loop {
            let mut guard = futures::ready!(self.0.poll_read_ready(cx))?;
            if let Ok(result) = guard.try_io(|inner| inner.get_ref().recv_from(buf, 0)) {
                return Poll::Ready(result.map(|(_, addr)| addr));
            }
        }
    }

    fn poll_recv_from_full(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Vec<u8>, SocketAddr)>> {
        loop {
            let mut guard = futures::ready!(self.0.poll_read_ready(cx))?;
            if let Ok(result) = guard.try_io(|inner| inner.get_ref().recv_from_full()) {
                return Poll::Ready(result);
            }
        }
    }
}

/// The async connection's sender, and the lock that lets one dump at a time run on it: the
/// kernel refuses a second dump on a socket (`EBUSY`) until the first has been read to its end,
/// which under many concurrent requests is not soon.
#[derive(Clone, Debug)]
pub(crate) struct AsyncNl {
    pub(crate) handle: rtnetlink::Handle,
    pub(crate) dumps: std::sync::Arc<futures::lock::Mutex<()>>,
}

/// A live rtnetlink connection: the handle to send on, and the driver task that owns the
/// socket. Dropping it aborts the task, which closes the socket (a live netlink socket keeps its
/// namespace alive).
#[derive(Debug)]
pub(crate) struct Conn {
    handle: rtnetlink::Handle,
    dumps: std::sync::Arc<futures::lock::Mutex<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Wraps `socket` (made inside some namespace) in a connection polled by the driver.
    pub(crate) fn start(socket: Socket) -> io::Result<Conn> {
        socket.set_non_blocking(true)?;
        let runtime = driver()?;
        let socket = NlSocket(crate::sys::register_async_fd(socket, runtime)?);
        let (mut connection, handle, _unsolicited) = rtnetlink::from_socket(socket);
        // Pass acknowledgements and end-of-dump markers through, so a reply stream that ends
        // without one is known to have been cut (the connection closed), not to have succeeded.
        connection.set_forward_ack(true);
        connection.set_forward_done(true);
        let task = runtime.spawn(connection);
        Ok(Conn {
            handle,
            dumps: Default::default(),
            task,
        })
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.task.is_finished()
    }

    pub(crate) fn nl(&self) -> AsyncNl {
        AsyncNl {
            handle: self.handle.clone(),
            dumps: self.dumps.clone(),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}
