//! The blocking transport: requests queued, then sent in one `sendmsg` and answered in order.
//!
//! A [`BatchConn`] owns a blocking `NETLINK_ROUTE` socket made inside one namespace. Sending a
//! request only queues it; the first time anyone waits for an answer (or when the queue is
//! full, or a second dump is queued: see [`BatchConn::queue`]), every queued request goes out
//! in one `sendmsg` and the answers are read until each of them is complete (an
//! acknowledgement, or the end of a dump), so code that sends several requests before awaiting
//! the first gets them into the kernel in one system call. The kernel handles the messages of
//! one `sendmsg` in order and answers each, also after a failure.
//!
//! It needs no runtime and starts no thread: it is what `Drop` uses, and what the blocking API
//! stands on. A receive timeout bounds every wait.

use std::{
    collections::{HashMap, HashSet},
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{
    packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NetlinkMessage, NetlinkPayload},
    sys::Socket,
};

use super::framing::{KernelError, check_error, request_message};

/// At most this many requests wait in the queue: a larger batch is sent in parts, so the
/// answers always fit the socket's receive buffer.
const MAX_QUEUED: usize = 64;

pub(crate) type Answer = Result<Vec<RouteNetlinkMessage>, KernelError>;

#[derive(Debug)]
struct State {
    socket: Socket,
    next_seq: u32,
    /// Serialised requests not sent yet, and their sequence numbers.
    queued: Vec<u8>,
    queued_seqs: Vec<u32>,
    /// Whether a dump is among the queued requests: a second one goes in a batch of its own
    /// (see [`BatchConn::queue`]).
    queued_dump: bool,
    /// Answers read but not yet collected by their waiter.
    answers: HashMap<u32, Answer>,
    /// Dumps among them whose messages the kernel marked interrupted (`NLM_F_DUMP_INTR`: what
    /// was listed changed while it was read).
    interrupted: HashSet<u32>,
    /// Set when the socket can no longer be trusted to answer in step (a timeout mid-batch).
    broken: bool,
}

/// A blocking socket inside one namespace with its queue of requests.
#[derive(Debug)]
pub(crate) struct BatchConn {
    state: Mutex<State>,
}

fn lost(what: &str) -> KernelError {
    KernelError {
        errno: nix::libc::EIO,
        detail: Some(what.to_owned()),
        from_kernel: false,
    }
}

impl BatchConn {
    /// Wraps `socket` (blocking), waiting at most `timeout` for each answer.
    pub(crate) fn new(socket: Socket, timeout: Duration) -> io::Result<Arc<BatchConn>> {
        socket.set_non_blocking(false)?;
        let tv = nix::sys::time::TimeVal::new(
            timeout.as_secs() as nix::libc::time_t,
            timeout.subsec_micros() as nix::libc::suseconds_t,
        );
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        Ok(Arc::new(BatchConn {
            state: Mutex::new(State {
                socket,
                next_seq: 1,
                queued: Vec::new(),
                queued_seqs: Vec::new(),
                queued_dump: false,
                answers: HashMap::new(),
                interrupted: HashSet::new(),
                broken: false,
            }),
        }))
    }

    /// Gives back the socket, for another transport, if nothing else holds this connection.
    pub(crate) fn into_socket(conn: Arc<BatchConn>) -> Option<Socket> {
        let state = Arc::try_unwrap(conn).ok()?.state.into_inner().ok()?;
        (!state.broken).then_some(state.socket)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the connection still answers in step.
    pub(crate) fn is_usable(&self) -> bool {
        !self.lock().broken
    }

    /// Queues `msg` (with `NLM_F_ACK | flags`, or as a dump) and returns its sequence number.
    ///
    /// The kernel runs one dump at a time per socket and refuses a second one that arrives
    /// while the first is still being sent (`EBUSY`): with threads sharing this connection, two
    /// dumps could be queued for one `sendmsg` (20 of 400 listings failed so, from four
    /// threads). So a dump queued behind another goes out after it, in a batch of its own; a
    /// batch is read to its end under the lock, so no dump ever overlaps another. So queuing
    /// may block, as waiting does.
    pub(crate) fn queue(&self, msg: RouteNetlinkMessage, flags: u16, dump: bool) -> u32 {
        let mut state = self.lock();
        if state.queued_seqs.len() >= MAX_QUEUED || (dump && state.queued_dump) {
            state.flush();
        }
        state.queued_dump |= dump;
        let seq = state.next_seq;
        state.next_seq = state.next_seq.wrapping_add(1).max(1);
        let flags = if dump { NLM_F_DUMP } else { NLM_F_ACK | flags };
        let mut message = request_message(msg, flags);
        message.header.sequence_number = seq;
        message.finalize();
        let start = state.queued.len();
        state.queued.resize(start + message.buffer_len(), 0);
        message.serialize(&mut state.queued[start..]);
        state.queued_seqs.push(seq);
        seq
    }

    /// Sends `messages` (each with `NLM_F_ACK` and its own flags) and returns the kernel's
    /// answer to each, in order.
    pub(crate) fn exchange(&self, messages: Vec<(RouteNetlinkMessage, u16)>) -> Vec<Answer> {
        let seqs: Vec<u32> = messages
            .into_iter()
            .map(|(msg, flags)| self.queue(msg, flags, false))
            .collect();
        seqs.into_iter().map(|seq| self.wait(seq)).collect()
    }

    /// Waits for the answer to request `seq`, sending the queue first if it is still in it.
    pub(crate) fn wait(&self, seq: u32) -> Answer {
        self.wait_dump(seq).0
    }

    /// [`wait`](Self::wait), and whether the kernel marked the answer, a dump's, interrupted
    /// (`NLM_F_DUMP_INTR`).
    pub(crate) fn wait_dump(&self, seq: u32) -> (Answer, bool) {
        let mut state = self.lock();
        if !state.answers.contains_key(&seq) && state.queued_seqs.contains(&seq) {
            state.flush();
        }
        let interrupted = state.interrupted.remove(&seq);
        let answer = state
            .answers
            .remove(&seq)
            .unwrap_or_else(|| Err(lost("no answer from the kernel for this request")));
        (answer, interrupted)
    }
}

impl State {
    /// Sends every queued request in one `sendmsg` and reads until each is answered. On a
    /// failure every request of the batch gets the error, and the connection is marked broken
    /// (answers might otherwise be matched to the wrong request later).
    fn flush(&mut self) {
        let seqs = std::mem::take(&mut self.queued_seqs);
        let bytes = std::mem::take(&mut self.queued);
        self.queued_dump = false;
        if seqs.is_empty() {
            return;
        }
        if self.broken {
            for seq in seqs {
                self.answers
                    .insert(seq, Err(lost("the netlink socket stopped answering")));
            }
            return;
        }
        if let Err(e) = self.exchange(&seqs, &bytes) {
            self.broken = true;
            let what = if e.kind() == io::ErrorKind::WouldBlock {
                "timed out waiting for the kernel's answer".to_owned()
            } else {
                format!("netlink socket failed: {e}")
            };
            for seq in seqs {
                self.answers.entry(seq).or_insert_with(|| {
                    Err(KernelError {
                        errno: e.raw_os_error().unwrap_or(nix::libc::EIO),
                        detail: Some(what.clone()),
                        from_kernel: false,
                    })
                });
            }
        }
    }

    fn exchange(&mut self, seqs: &[u32], bytes: &[u8]) -> io::Result<()> {
        self.socket.send(bytes, 0)?;
        let mut collected: HashMap<u32, Vec<RouteNetlinkMessage>> = HashMap::new();
        let mut pending = seqs.len();
        while pending > 0 {
            let data = receive(&self.socket)?;
            let data = &data[..];
            let mut offset = 0;
            while offset < data.len() {
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::other(format!("bad netlink answer: {e}")))?;
                let len = message.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                let seq = message.header.sequence_number;
                if !seqs.contains(&seq) || self.answers.contains_key(&seq) {
                    continue;
                }
                if message.header.flags & NLM_F_DUMP_INTR != 0 {
                    self.interrupted.insert(seq);
                }
                match message.payload {
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => {
                        let answer = check_error(&message)
                            .map(|()| collected.remove(&seq).unwrap_or_default());
                        self.answers.insert(seq, answer);
                        pending -= 1;
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        collected.entry(seq).or_default().push(inner)
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The largest netlink datagram this transport takes: far above what the kernel sends a route
/// socket (a dump's datagrams are at most 32 KiB).
const DATAGRAM_MAX: usize = 128 << 10;

thread_local! {
    /// A receive buffer per thread, reused (worker threads serve one job at a time).
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(DATAGRAM_MAX));
}

/// One datagram, in one `recvfrom` (the socket library's `recv_from_full` peeks for the size
/// first: two calls and an allocation per answer, which showed as 24 `recvfrom` per bridged
/// member in the profile).
fn receive(socket: &Socket) -> io::Result<Vec<u8>> {
    BUFFER.with(|buffer| {
        let mut buf = buffer.borrow_mut();
        buf.clear();
        let (len, _) = socket.recv_from(&mut *buf, nix::libc::MSG_TRUNC)?;
        if len > buf.capacity() {
            return Err(io::Error::other(format!(
                "a netlink answer of {len} bytes, larger than {DATAGRAM_MAX}"
            )));
        }
        Ok(buf.clone())
    })
}
