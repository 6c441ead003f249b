//! One namespace's connection: opened lazily, for the transport the calling thread uses.

use std::{
    io,
    os::fd::OwnedFd,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::Socket;

#[cfg(feature = "tokio")]
use super::async_transport;
use super::{
    blocking_transport::BatchConn,
    framing::{BLOCKING_TIMEOUT, KernelError, new_socket},
    request::{Nl, Reply, blocking_mode},
};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct Slot {
    /// A socket opened inside at creation time, not yet given to a transport.
    spare: Option<Socket>,
    #[cfg(feature = "tokio")]
    live: Option<async_transport::Conn>,
    batched: Option<Arc<BatchConn>>,
}

/// The netlink connection of one namespace: opened lazily, for the transport the calling thread
/// uses (see [`blocking_mode`]), from a socket created inside the namespace.
#[derive(Debug)]
pub(crate) struct NsConn {
    fd: Arc<OwnedFd>,
    slot: Mutex<Slot>,
}

impl NsConn {
    /// The connection of the namespace `fd` refers to; nothing is opened yet.
    pub(crate) fn new(fd: Arc<OwnedFd>) -> NsConn {
        NsConn {
            fd,
            slot: Mutex::new(Slot::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands over a socket that was opened inside the namespace when it was created, so the
    /// first request needs no trip to a library thread.
    pub(crate) fn give_spare(&self, socket: Socket) {
        self.lock().spare = Some(socket);
    }

    /// Keeps `conn`, made inside the namespace, as its blocking transport's connection, unless
    /// it has a usable one already.
    pub(crate) fn offer_batched(&self, conn: Arc<BatchConn>) {
        let mut slot = self.lock();
        if slot.batched.as_ref().is_none_or(|c| !c.is_usable()) {
            slot.batched = Some(conn);
        }
    }

    /// The blocking transport's connection, if one is open and usable.
    pub(crate) fn batched_if_open(&self) -> Option<Arc<BatchConn>> {
        self.lock().batched.clone().filter(|c| c.is_usable())
    }

    /// A socket inside the namespace: the spare one, or a new one made on a library thread.
    async fn socket(&self) -> io::Result<Socket> {
        if let Some(socket) = self.lock().spare.take() {
            return Ok(socket);
        }
        crate::sys::in_ns(self.fd.clone(), new_socket).await
    }

    /// The connection for this thread's transport, opened on first use. `label` names the
    /// namespace in errors.
    pub(crate) async fn nl(&self, label: &str) -> Result<Nl> {
        let failed = |op: &'static str| move |e| Error::os(op, label.to_owned(), e);
        if blocking_mode() {
            if let Some(conn) = self.lock().batched.clone().filter(|c| c.is_usable()) {
                return Ok(Nl::Batched(conn));
            }
            let socket = self
                .socket()
                .await
                .map_err(failed("open a netlink socket in"))?;
            let conn = BatchConn::new(socket, BLOCKING_TIMEOUT)
                .map_err(failed("connect to netlink in"))?;
            self.lock().batched = Some(conn.clone());
            return Ok(Nl::Batched(conn));
        }
        #[cfg(feature = "tokio")]
        {
            if let Some(conn) = self.lock().live.as_ref().filter(|c| c.is_alive()) {
                return Ok(Nl::Async(conn.nl()));
            }
            let socket = self
                .socket()
                .await
                .map_err(failed("open a netlink socket in"))?;
            let conn =
                async_transport::Conn::start(socket).map_err(failed("connect to netlink in"))?;
            let mut slot = self.lock();
            if let Some(existing) = slot.live.as_ref().filter(|c| c.is_alive()) {
                return Ok(Nl::Async(existing.nl()));
            }
            let nl = conn.nl();
            slot.live = Some(conn);
            Ok(Nl::Async(nl))
        }
        #[cfg(not(feature = "tokio"))]
        unreachable!("without the tokio feature every thread uses the batched transport")
    }

    /// Closes every socket (a live netlink socket keeps its namespace alive); the next request
    /// opens a new one.
    pub(crate) fn close(&self) {
        let old = std::mem::take(&mut *self.lock());
        drop(old);
    }

    /// Sends `messages` and returns the kernel's answer to each, from synchronous code (`Drop`):
    /// needs no runtime, and waits at most `timeout` for each step.
    ///
    /// If the namespace's async connection is open, the messages go through it, so they are
    /// handled after every request already queued on it — a teardown never overtakes a creation
    /// whose future was just dropped. Otherwise the batched connection is used (opened if need
    /// be, on a library thread inside the namespace).
    pub(crate) fn blocking_acks(
        &self,
        messages: Vec<(RouteNetlinkMessage, u16)>,
        timeout: Duration,
    ) -> io::Result<Vec<Result<(), KernelError>>> {
        let nl = self.blocking_nl(timeout)?;
        let replies: Vec<Reply> = messages
            .into_iter()
            .map(|(msg, flags)| nl.send(msg, flags))
            .collect();
        // One deadline for the whole batch: they are answered in order.
        let deadline = std::time::Instant::now() + timeout;
        Ok(replies
            .into_iter()
            .map(|reply| {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                reply.ack_blocking(left.max(Duration::from_millis(1)))
            })
            .collect())
    }

    /// The connection synchronous code sends on: the async one if it is open (see
    /// [`blocking_acks`](Self::blocking_acks)), else the batched one, opened if need be.
    fn blocking_nl(&self, timeout: Duration) -> io::Result<Nl> {
        let nl = {
            let slot = self.lock();
            #[cfg(feature = "tokio")]
            let live = slot
                .live
                .as_ref()
                .filter(|c| c.is_alive())
                .map(|c| Nl::Async(c.nl()));
            #[cfg(not(feature = "tokio"))]
            let live = None;
            live.or_else(|| {
                slot.batched
                    .clone()
                    .filter(|c| c.is_usable())
                    .map(Nl::Batched)
            })
        };
        Ok(match nl {
            Some(nl) => nl,
            None => {
                let spare = self.lock().spare.take();
                let socket = match spare {
                    Some(socket) => socket,
                    None => crate::sys::in_ns_blocking(self.fd.clone(), new_socket, timeout)?,
                };
                let conn = BatchConn::new(socket, timeout)?;
                self.lock().batched = Some(conn.clone());
                Nl::Batched(conn)
            }
        })
    }

    /// A dump from synchronous code (`Drop`), at most `timeout`.
    pub(crate) fn blocking_dump(
        &self,
        msg: RouteNetlinkMessage,
        timeout: Duration,
    ) -> io::Result<Result<Vec<RouteNetlinkMessage>, KernelError>> {
        Ok(self
            .blocking_nl(timeout)?
            .dump(msg)
            .messages_blocking(timeout))
    }

    /// Sends one request from synchronous code; "already gone" counts as success.
    pub(crate) fn blocking_one(
        &self,
        msg: RouteNetlinkMessage,
        op: &'static str,
        label: impl FnOnce() -> String,
    ) -> Result<()> {
        match self.blocking_acks(vec![(msg, 0)], BLOCKING_TIMEOUT) {
            Err(e) => Err(Error::os(op, label(), e)),
            Ok(answers) => match answers.into_iter().next() {
                Some(Err(e)) if !e.is_not_found() => Err(e.into_error(op, label())),
                _ => Ok(()),
            },
        }
    }
}
