//! Sending requests and awaiting answers, over either transport, and which transport the
//! calling thread uses.

use std::{cell::Cell, sync::Arc, time::Duration};

use netlink_packet_route::{RouteNetlinkMessage, link::LinkMessage};
#[cfg(feature = "tokio")]
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};

#[cfg(feature = "tokio")]
use super::{
    async_transport::{self, AsyncNl},
    framing::check_error,
    framing::request_message,
};
use super::{
    blocking_transport::{Answer, BatchConn},
    framing::KernelError,
    msg,
};

thread_local! {
    static BLOCKING: Cell<bool> = const { Cell::new(false) };
}

/// Whether requests made on this thread go through the batched (blocking) transport: inside
/// [`block_on`], or always when the crate is built without the `tokio` feature.
pub(crate) fn blocking_mode() -> bool {
    !cfg!(feature = "tokio") || BLOCKING.with(Cell::get)
}

/// Runs `future` to completion on the calling thread, with every request it makes going through
/// the batched transport: no async runtime, no reactor, no thread of its own (see the
/// [module docs](self)). What the blocking API is made of.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0;
            BLOCKING.with(|b| b.set(previous));
        }
    }
    let _reset = Reset(BLOCKING.with(|b| b.replace(true)));
    futures::executor::block_on(future)
}

#[cfg(feature = "tokio")]
type ReplyStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = NetlinkMessage<RouteNetlinkMessage>> + Send>>;

/// A cheap, cloneable sender of requests on one namespace's connection.
#[derive(Clone, Debug)]
pub(crate) enum Nl {
    #[cfg(feature = "tokio")]
    Async(AsyncNl),
    Batched(Arc<BatchConn>),
}

#[cfg(feature = "tokio")]
type DeferredReply = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<RouteNetlinkMessage>, KernelError>> + Send>,
>;

enum ReplyKind {
    #[cfg(feature = "tokio")]
    Async(Result<ReplyStream, ()>),
    /// A dump, sent once the connection's dump lock is taken.
    #[cfg(feature = "tokio")]
    Deferred(DeferredReply),
    Batched(Arc<BatchConn>, u32),
    /// A dump read again while the kernel marks it interrupted (see [`rereads`]).
    BatchedDump(Arc<BatchConn>, u32, RouteNetlinkMessage),
}

/// How many times in all a dump the kernel keeps marking interrupted is read; the last read is
/// returned as it is. (Not an error, unlike the nf_tables dumps of `nat::nft`: while another
/// process changed addresses every millisecond or two, a listing of 1,500 of them was marked
/// at every one of 8 reads in 120 of 150 tries, and such a listing was never whole-or-nothing
/// before either.)
pub(crate) const DUMP_READS: usize = 8;

/// Whether a dump of `msg` is read again while the kernel marks it interrupted
/// (`NLM_F_DUMP_INTR`: what it lists changed while it was read): addresses. The kernel sends
/// them by their place in each interface's list, so an address removed meanwhile shifts the
/// rest and one present throughout is skipped or sent twice — measured on a 6.18 kernel: 1,500
/// addresses listed while another process added and removed others on the same interface came
/// back as 1,499 or 1,501 in 1,120 of 2,338 reads, every one of them marked. (The kernel also
/// marks an address listing when a link is made or deleted in the namespace meanwhile: on a
/// busy host a large listing may be read a few times for nothing.) Link dumps resume by
/// interface index: none of 1,478 taken while links were made and deleted missed or repeated a
/// link present throughout, though 479 were marked, and on a host where containers come and go
/// most are marked, so reading them again would multiply their cost for nothing. Route dumps
/// carry no mark to read again on (measured likewise, 1,500 routes while another process added
/// and removed others: IPv4, 660 reads, none marked, all whole; IPv6, 272 reads, none marked,
/// 130 of them missing or repeating a route present throughout).
fn rereads(msg: &RouteNetlinkMessage) -> bool {
    matches!(msg, RouteNetlinkMessage::GetAddress(_))
}

/// A dump on the async transport, holding its connection's dump lock (the kernel runs one dump
/// at a time per socket and refuses another meanwhile, `EBUSY`). Dropped half-way (its caller
/// stopped waiting), it hands the rest of the answer to a task on the driver thread, which
/// reads it to its end before the lock goes: the kernel was still sending it, and the next
/// dump on the connection would otherwise be refused (2 to 27 of 200 listings right after a
/// dropped one were).
#[cfg(feature = "tokio")]
struct Dumping {
    lock: Option<futures::lock::OwnedMutexGuard<()>>,
    /// The answer being read, until its end.
    stream: Option<ReplyStream>,
}

#[cfg(feature = "tokio")]
impl Dumping {
    /// Reads one dump's answer (see [`Reply::from_stream_marked`]).
    async fn read(
        &mut self,
        stream: Result<ReplyStream, ()>,
    ) -> (Result<Vec<RouteNetlinkMessage>, KernelError>, bool) {
        let Ok(stream) = stream else {
            return Reply::from_stream_marked(Err(())).await;
        };
        let stream = self.stream.insert(stream);
        let answer = Reply::read_marked(stream).await;
        self.stream = None;
        answer
    }
}

#[cfg(feature = "tokio")]
impl Drop for Dumping {
    fn drop(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let lock = self.lock.take();
            // Bounded, so that an answer that never ends cannot hold the lock for good (a
            // later dump may then meet `EBUSY`, which is the lesser harm). `spawn` cannot fail
            // while a connection exists (its driver runs); if it did, the lock would go now.
            let _ = async_transport::spawn(async move {
                use futures::StreamExt;
                let drained = async { while stream.next().await.is_some() {} };
                if tokio::time::timeout(super::framing::BLOCKING_TIMEOUT, drained)
                    .await
                    .is_err()
                {
                    tracing::debug!(
                        "the rest of a dropped listing did not arrive within {:?}",
                        super::framing::BLOCKING_TIMEOUT
                    );
                }
                drop(lock);
            });
        }
    }
}

/// The error of an answer whose connection closed before the kernel answered.
#[cfg(feature = "tokio")]
fn closed() -> KernelError {
    KernelError::protocol("the netlink connection closed before the kernel answered")
}

/// Says that a dump was marked interrupted at every one of its [`DUMP_READS`] reads.
fn kept_changing() {
    tracing::debug!(
        target: "netns_kit::netlink",
        "a listing changed while the kernel sent it, {DUMP_READS} times in a row: the last read is returned"
    );
}

/// Waits for dump `seq` on `conn`, and queues `msg` again while the answer is marked
/// interrupted (see [`rereads`]), at most [`DUMP_READS`] reads in all. A read again goes out
/// behind whatever was queued after the first one (requests of other threads sharing the
/// connection, say: harmless).
fn reread_batched(conn: &BatchConn, mut seq: u32, msg: RouteNetlinkMessage) -> Answer {
    let mut read = 1;
    loop {
        let (answer, interrupted) = conn.wait_dump(seq);
        if !interrupted || answer.is_err() {
            return answer;
        }
        if read == DUMP_READS {
            kept_changing();
            return answer;
        }
        read += 1;
        seq = conn.queue(msg.clone(), 0, true);
    }
}

/// The pending answer to one request; the request is already on its way (async transport) or
/// queued (batched transport: it goes out when the first answer is awaited).
pub(crate) struct Reply(ReplyKind);

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl Nl {
    /// Queues `msg` with `NLM_F_REQUEST | NLM_F_ACK | flags` now; await the [`Reply`] later.
    pub(crate) fn send(&self, msg: RouteNetlinkMessage, flags: u16) -> Reply {
        match self {
            #[cfg(feature = "tokio")]
            Nl::Async(nl) => Reply::stream(
                &nl.handle,
                request_message(msg, rtnetlink::packet_core::NLM_F_ACK | flags),
            ),
            Nl::Batched(conn) => Reply(ReplyKind::Batched(
                conn.clone(),
                conn.queue(msg, flags, false),
            )),
        }
    }

    /// Queues a dump request (`NLM_F_REQUEST | NLM_F_DUMP`). On the async transport it is sent
    /// when awaited, once no other dump runs on the connection.
    pub(crate) fn dump(&self, msg: RouteNetlinkMessage) -> Reply {
        match self {
            #[cfg(feature = "tokio")]
            Nl::Async(nl) => {
                let nl = nl.clone();
                Reply(ReplyKind::Deferred(Box::pin(async move {
                    let mut dumping = Dumping {
                        lock: Some(nl.dumps.clone().lock_owned().await),
                        stream: None,
                    };
                    let again = rereads(&msg);
                    let mut read = 1;
                    loop {
                        let message =
                            request_message(msg.clone(), rtnetlink::packet_core::NLM_F_DUMP);
                        let (answer, interrupted) = match Reply::stream(&nl.handle, message).0 {
                            ReplyKind::Async(stream) => dumping.read(stream).await,
                            _ => unreachable!("Reply::stream makes an async reply"),
                        };
                        if !(again && interrupted) || answer.is_err() {
                            return answer;
                        }
                        if read == DUMP_READS {
                            kept_changing();
                            return answer;
                        }
                        read += 1;
                    }
                })))
            }
            Nl::Batched(conn) if rereads(&msg) => {
                let seq = conn.queue(msg.clone(), 0, true);
                Reply(ReplyKind::BatchedDump(conn.clone(), seq, msg))
            }
            Nl::Batched(conn) => Reply(ReplyKind::Batched(conn.clone(), conn.queue(msg, 0, true))),
        }
    }

    /// Looks up a link by name with one direct `RTM_GETLINK` (no dump).
    pub(crate) async fn link_named(&self, name: &str) -> Result<LinkMessage, KernelError> {
        msg::first_link(self.send(msg::get_link_named(name), 0).messages().await?)
    }

    /// Looks up link `index`.
    pub(crate) async fn link(&self, index: u32) -> Result<LinkMessage, KernelError> {
        msg::first_link(self.send(msg::get_link(index), 0).messages().await?)
    }
}

impl Reply {
    #[cfg(feature = "tokio")]
    fn stream(handle: &rtnetlink::Handle, message: NetlinkMessage<RouteNetlinkMessage>) -> Reply {
        let mut handle = handle.clone();
        Reply(ReplyKind::Async(
            handle
                .request(message)
                .map(|s| Box::pin(s) as ReplyStream)
                .map_err(|_| ()),
        ))
    }

    /// Waits for the kernel's answer and returns the messages it sent before its
    /// acknowledgement (an echoed object, a looked-up object, or a dump's entries).
    ///
    /// # Cancel safety
    ///
    /// Dropping this future does not cancel the request: the kernel carries it out anyway.
    pub(crate) async fn messages(self) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        match self.0 {
            #[cfg(feature = "tokio")]
            ReplyKind::Async(stream) => Self::from_stream(stream).await,
            #[cfg(feature = "tokio")]
            ReplyKind::Deferred(reply) => reply.await,
            ReplyKind::Batched(conn, seq) => conn.wait(seq),
            ReplyKind::BatchedDump(conn, seq, msg) => reread_batched(&conn, seq, msg),
        }
    }

    #[cfg(feature = "tokio")]
    async fn from_stream(
        stream: Result<ReplyStream, ()>,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        Self::from_stream_marked(stream).await.0
    }

    /// [`from_stream`](Self::from_stream), and whether the kernel marked any of the answer's
    /// messages interrupted (`NLM_F_DUMP_INTR`, a dump's).
    #[cfg(feature = "tokio")]
    async fn from_stream_marked(
        stream: Result<ReplyStream, ()>,
    ) -> (Result<Vec<RouteNetlinkMessage>, KernelError>, bool) {
        match stream {
            Ok(mut stream) => Self::read_marked(&mut stream).await,
            Err(()) => (Err(closed()), false),
        }
    }

    /// Reads `stream` to its end (see [`from_stream_marked`](Self::from_stream_marked)).
    #[cfg(feature = "tokio")]
    async fn read_marked(
        stream: &mut ReplyStream,
    ) -> (Result<Vec<RouteNetlinkMessage>, KernelError>, bool) {
        use futures::StreamExt;
        let mut out = Vec::new();
        let mut error = None;
        let mut answered = false;
        let mut interrupted = false;
        while let Some(message) = stream.next().await {
            interrupted |= message.header.flags & rtnetlink::packet_core::NLM_F_DUMP_INTR != 0;
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
        let answer = match error {
            Some(e) => Err(e),
            None if answered => Ok(out),
            None => Err(closed()),
        };
        (answer, interrupted)
    }

    /// Waits for the acknowledgement.
    pub(crate) async fn ack(self) -> Result<(), KernelError> {
        self.messages().await.map(|_| ())
    }

    /// Waits for the acknowledgement from synchronous code (`Drop`), at most `timeout`. An
    /// async reply is driven by the driver thread, so this works on any thread, in or out of a
    /// runtime.
    pub(crate) fn ack_blocking(self, timeout: Duration) -> Result<(), KernelError> {
        self.messages_blocking(timeout).map(drop)
    }

    /// [`messages`](Self::messages) from synchronous code (`Drop`), at most `timeout`; works
    /// on any thread, in or out of a runtime (and inside [`block_on`]).
    #[cfg_attr(not(feature = "tokio"), allow(unused_variables))]
    pub(crate) fn messages_blocking(
        self,
        timeout: Duration,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        match self.0 {
            #[cfg(feature = "tokio")]
            kind @ (ReplyKind::Async(_) | ReplyKind::Deferred(_)) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                async_transport::spawn(async move {
                    let _ = tx.send(Reply(kind).messages().await);
                })
                .map_err(|e| KernelError::protocol(&e.to_string()))?;
                rx.recv_timeout(timeout).unwrap_or(Err(KernelError {
                    errno: nix::libc::ETIMEDOUT,
                    detail: None,
                    from_kernel: false,
                }))
            }
            ReplyKind::Batched(conn, seq) => conn.wait(seq),
            ReplyKind::BatchedDump(conn, seq, msg) => reread_batched(&conn, seq, msg),
        }
    }
}
