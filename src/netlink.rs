//! rtnetlink transport: one connection per namespace, plus a blocking path for `Drop`.
//!
//! # One connection per namespace
//!
//! A netlink socket acts in the namespace it was *created* in, whichever thread later uses it.
//! Each [`Namespace`](crate::Namespace) therefore owns one socket, created on a library thread
//! that entered the namespace (see [`sys`](crate::sys)), and every link, address and route request
//! for that namespace goes through it. Requests are pipelined: [`Nl::send`] queues a request at
//! once and returns a [`Reply`] to await later, so independent requests do not wait for each
//! other's round trip.
//!
//! # Who drives the sockets
//!
//! rtnetlink's `Connection` is a future that must be polled for requests to move. Rather than
//! spawning it on the caller's runtime, this crate polls every connection on **one library-owned
//! thread running a current-thread Tokio runtime** (the *driver*). So:
//!
//! * the async API works from any executor (Tokio of any flavour, `futures::executor`, smol), and
//!   never panics for lack of a runtime or of Tokio's I/O driver;
//! * a namespace created under one runtime keeps working after that runtime shut down, and
//!   `Drop` can close a connection (by aborting its task) at any time;
//! * the cost is one cross-thread wake-up per request, a few microseconds against the
//!   0.1–30 ms the kernel spends on a link, address or route change.
//!
//! # The blocking path
//!
//! `Drop` can neither `.await` nor count on any runtime, so teardown from `Drop` uses a short-lived
//! *blocking* socket instead ([`blocking_acks`]): the messages go out in one `sendmsg`, the kernel
//! handles them in order and answers each, and a receive timeout bounds the wait.
//!
//! # Kernel errors
//!
//! Sockets are opened with `NETLINK_EXT_ACK` and `NETLINK_CAP_ACK`, so a refusal carries the
//! kernel's own explanation ("Nexthop has invalid gateway", ...), which [`KernelError`] keeps next
//! to the errno.

use std::{
    io,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{
    packet_core::{
        NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    },
    sys::{AsyncSocket, Socket, SocketAddr, protocols::NETLINK_ROUTE},
};
use tokio::io::unix::AsyncFd;

use crate::error::Error;

/// A kernel refusal: the errno and, when the kernel gave one, its extended-ack message.
#[derive(Debug)]
pub(crate) struct KernelError {
    pub(crate) errno: i32,
    pub(crate) detail: Option<String>,
    /// Whether the kernel itself answered with this error (so the request was refused), rather
    /// than the answer being lost (a closed connection, a timeout: the request may have been
    /// carried out).
    pub(crate) from_kernel: bool,
}

impl KernelError {
    fn protocol(what: &str) -> KernelError {
        KernelError {
            errno: nix::libc::EIO,
            detail: Some(what.to_owned()),
            from_kernel: false,
        }
    }

    /// Turns this into the crate's error for `op` on `object`.
    pub(crate) fn into_error(self, op: &'static str, object: impl Into<String>) -> Error {
        let source = io::Error::from_raw_os_error(self.errno);
        if self.errno == nix::libc::EACCES {
            // From rtnetlink, EACCES is a refusal such as "IPv6 is disabled on this device",
            // not a missing privilege (that is EPERM): do not tell the user to run as root.
            return Error::Os {
                op,
                object: object.into(),
                detail: self.detail,
                source,
            };
        }
        Error::with_detail(op, object, source, self.detail)
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(
            self.errno,
            nix::libc::ENODEV | nix::libc::ENOENT | nix::libc::ESRCH | nix::libc::EADDRNOTAVAIL
        )
    }
}

/// Reads the kernel's extended-ack message out of an `NLMSG_ERROR` payload (what follows the
/// errno). The payload starts with the failed request: only its 16-byte header when the answer
/// is capped (`NLM_F_CAPPED`, from `NETLINK_CAP_ACK`), the whole request otherwise (its length is
/// in its header). Attributes follow only if `NLM_F_ACK_TLVS` is set; `NLMSGERR_ATTR_MSG` (1) is
/// a NUL-terminated string.
fn ext_ack_message(flags: u16, payload_after_errno: &[u8]) -> Option<String> {
    const NLM_F_CAPPED: u16 = 0x100;
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let len = payload_after_errno.get(..4)?;
        let len = u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize;
        (len + 3) & !3
    };
    let mut rest = payload_after_errno.get(request_len..)?;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &rest[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        let aligned = (len + 3) & !3;
        rest = rest.get(aligned..).unwrap_or(&[]);
    }
    None
}

fn check_error(message: &NetlinkMessage<RouteNetlinkMessage>) -> Result<(), KernelError> {
    if let NetlinkPayload::Error(e) = &message.payload {
        if let Some(code) = e.code {
            return Err(KernelError {
                errno: code.get().abs(),
                detail: ext_ack_message(message.header.flags, &e.header),
                from_kernel: true,
            });
        }
    }
    Ok(())
}

/// Opens a blocking `NETLINK_ROUTE` socket in the calling thread's namespace.
pub(crate) fn new_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    // Best effort: both only improve error reports.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    Ok(socket)
}

fn request_message(msg: RouteNetlinkMessage, flags: u16) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    message.finalize();
    message
}

/// Sends `messages` (each with `NLM_F_REQUEST | NLM_F_ACK` and its own extra flags) in one
/// `sendmsg` on a blocking socket and collects the kernel's answer to each, in order. Waits at
/// most `timeout` for each receive.
pub(crate) fn blocking_acks(
    socket: &Socket,
    messages: Vec<(RouteNetlinkMessage, u16)>,
    timeout: Duration,
) -> io::Result<Vec<Result<(), KernelError>>> {
    Ok(blocking_requests(socket, messages, timeout)?
        .into_iter()
        .map(|r| r.map(drop))
        .collect())
}

/// Like [`blocking_acks`], also returning the messages the kernel sent in answer to each
/// request before its acknowledgement (an object echoed by `NLM_F_ECHO`, ...).
///
/// The kernel handles the messages of one `sendmsg` in order and answers each, also after a
/// failure, so a batch costs one system call each way however long it is.
pub(crate) fn blocking_requests(
    socket: &Socket,
    messages: Vec<(RouteNetlinkMessage, u16)>,
    timeout: Duration,
) -> io::Result<Vec<Result<Vec<RouteNetlinkMessage>, KernelError>>> {
    let tv = nix::sys::time::TimeVal::new(
        timeout.as_secs() as nix::libc::time_t,
        timeout.subsec_micros() as nix::libc::suseconds_t,
    );
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;

    let count = messages.len();
    let mut buf = Vec::new();
    for (seq, (msg, flags)) in messages.into_iter().enumerate() {
        let mut message = request_message(msg, NLM_F_ACK | flags);
        message.header.sequence_number = seq as u32 + 1;
        message.finalize();
        let start = buf.len();
        buf.resize(start + message.buffer_len(), 0);
        message.serialize(&mut buf[start..]);
    }
    socket.send(&buf, 0)?;

    let mut answers: Vec<Vec<RouteNetlinkMessage>> = (0..count).map(|_| Vec::new()).collect();
    let mut results: Vec<Option<Result<(), KernelError>>> = (0..count).map(|_| None).collect();
    let mut pending = count;
    while pending > 0 {
        let (data, _) = socket.recv_from_full().map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::from(io::ErrorKind::TimedOut)
            } else {
                e
            }
        })?;
        let mut offset = 0;
        while offset < data.len() {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                .map_err(|e| io::Error::other(format!("bad netlink answer: {e}")))?;
            let len = message.header.length as usize;
            if len == 0 {
                break;
            }
            offset += (len + 3) & !3;
            let Some(i) = (message.header.sequence_number as usize).checked_sub(1) else {
                continue;
            };
            if i >= count {
                continue;
            }
            match message.payload {
                NetlinkPayload::Error(_) if results[i].is_none() => {
                    results[i] = Some(check_error(&message));
                    pending -= 1;
                }
                NetlinkPayload::InnerMessage(inner) => answers[i].push(inner),
                _ => {}
            }
        }
    }
    Ok(results
        .into_iter()
        .zip(answers)
        .map(|(r, a)| r.unwrap_or(Ok(())).map(|()| a))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The driver thread and the async socket it polls.

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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(failed)?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("netns-kit-netlink".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .map_err(failed)?;
    Ok(DRIVER.get_or_init(|| handle))
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

/// A live rtnetlink connection: the handle to send on, and the driver task that owns the
/// socket. Dropping it aborts the task, which closes the socket (a live netlink socket keeps its
/// namespace alive).
#[derive(Debug)]
pub(crate) struct Conn {
    nl: Nl,
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
            nl: Nl { handle },
            task,
        })
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.task.is_finished()
    }

    pub(crate) fn nl(&self) -> Nl {
        self.nl.clone()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cheap, cloneable sender of requests on one namespace's connection.
#[derive(Clone, Debug)]
pub(crate) struct Nl {
    handle: rtnetlink::Handle,
}

type ReplyStream = Pin<Box<dyn Stream<Item = NetlinkMessage<RouteNetlinkMessage>> + Send>>;

/// The pending answer to one request; the request is already on its way.
pub(crate) struct Reply(Result<ReplyStream, ()>);

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl Nl {
    /// Queues `msg` with `NLM_F_REQUEST | NLM_F_ACK | flags` now; await the [`Reply`] later.
    pub(crate) fn send(&self, msg: RouteNetlinkMessage, flags: u16) -> Reply {
        self.raw(request_message(msg, NLM_F_ACK | flags))
    }

    /// Queues a dump request (`NLM_F_REQUEST | NLM_F_DUMP`).
    pub(crate) fn dump(&self, msg: RouteNetlinkMessage) -> Reply {
        self.raw(request_message(msg, NLM_F_DUMP))
    }

    fn raw(&self, message: NetlinkMessage<RouteNetlinkMessage>) -> Reply {
        let mut handle = self.handle.clone();
        Reply(
            handle
                .request(message)
                .map(|s| Box::pin(s) as ReplyStream)
                .map_err(|_| ()),
        )
    }
}

impl Reply {
    /// Waits for the kernel's answer and returns the messages it sent before its
    /// acknowledgement (an echoed object, a looked-up object, or a dump's entries).
    ///
    /// # Cancel safety
    ///
    /// Dropping this future does not cancel the request: the kernel carries it out anyway.
    pub(crate) async fn messages(self) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        let closed =
            || KernelError::protocol("the netlink connection closed before the kernel answered");
        let mut stream = self.0.map_err(|()| closed())?;
        let mut out = Vec::new();
        let mut error = None;
        let mut answered = false;
        while let Some(message) = stream.next().await {
            match message.payload {
                NetlinkPayload::Error(_) => {
                    answered = true;
                    if let Err(e) = check_error(&message) {
                        error.get_or_insert(e);
                    }
                }
                NetlinkPayload::Done(_) => answered = true,
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None if answered => Ok(out),
            None => Err(closed()),
        }
    }

    /// Waits for the acknowledgement.
    pub(crate) async fn ack(self) -> Result<(), KernelError> {
        self.messages().await.map(|_| ())
    }

    /// Waits for the acknowledgement from synchronous code (`Drop`), at most `timeout`. The
    /// reply is driven by the driver thread, so this works on any thread, in or out of a runtime.
    pub(crate) fn ack_blocking(self, timeout: Duration) -> Result<(), KernelError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = driver().map_err(|e| KernelError::protocol(&e.to_string()))?;
        runtime.spawn(async move {
            let _ = tx.send(self.ack().await);
        });
        rx.recv_timeout(timeout).unwrap_or(Err(KernelError {
            errno: nix::libc::ETIMEDOUT,
            detail: None,
            from_kernel: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_is_read() {
        let mut payload = vec![0u8; 16];
        let msg = b"Nexthop has invalid gateway\0";
        let len = 4 + msg.len() as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(msg);
        let capped_tlvs = 0x100 | 0x200;
        assert_eq!(
            ext_ack_message(capped_tlvs, &payload).as_deref(),
            Some("Nexthop has invalid gateway")
        );
        assert_eq!(ext_ack_message(capped_tlvs, &payload[..16]), None);
        assert_eq!(ext_ack_message(capped_tlvs, &[]), None);
        assert_eq!(ext_ack_message(0x100, &payload), None, "no TLVs flagged");
        // Not capped: the whole request (here 20 bytes) precedes the attributes.
        let mut uncapped = 20u32.to_ne_bytes().to_vec();
        uncapped.extend_from_slice(&[0u8; 16]);
        uncapped.extend_from_slice(&payload[16..]);
        assert_eq!(
            ext_ack_message(0x200, &uncapped).as_deref(),
            Some("Nexthop has invalid gateway")
        );
    }
}
