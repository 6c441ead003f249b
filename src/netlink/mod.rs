//! The netlink layer: one rtnetlink connection per namespace, two transports, and the message
//! helpers the object modules share.
//!
//! # One connection per namespace
//!
//! A netlink socket acts in the namespace it was *created* in, whichever thread later uses it.
//! Each namespace therefore owns one [`NsConn`], whose sockets are created on a library thread
//! that entered the namespace (see [`sys`](crate::sys)); every link, address and route request
//! for that namespace goes through it. Requests are pipelined: [`Nl::send`] queues a request at
//! once and returns a [`Reply`] to await later, so independent requests do not wait for each
//! other's round trip.
//!
//! # Two transports
//!
//! * **async** (feature `tokio`, [`async_transport`]): an rtnetlink connection polled on one
//!   library thread that runs a current-thread Tokio runtime, so the async API works on any
//!   executor;
//! * **batched** ([`blocking_transport`]): a blocking socket; requests are queued and go out in one
//!   `sendmsg` when the first answer is awaited. It needs no runtime and starts no thread, so
//!   `Drop` uses it, and so does the blocking API: its functions run the same code as the async
//!   ones inside [`block_on`], which selects this transport for the calling thread. The futures
//!   involved are then ready as soon as they are polled (the kernel answers within the call),
//!   except for waits on a library thread that enters a namespace, which park the caller.
//!
//! # Kernel errors
//!
//! Sockets are opened with `NETLINK_EXT_ACK` and `NETLINK_CAP_ACK`, so a refusal carries the
//! kernel's own explanation ("Nexthop has invalid gateway", ...), which [`KernelError`] keeps next
//! to the errno.

#[cfg(feature = "tokio")]
pub(crate) mod async_transport;
mod blocking_transport;
mod connection;
mod framing;
pub(crate) mod msg;
pub(crate) mod ready;
mod request;

pub(crate) use blocking_transport::BatchConn;
pub(crate) use connection::NsConn;
pub(crate) use framing::{BLOCKING_TIMEOUT, KernelError, new_socket};
pub(crate) use request::{Nl, Reply, block_on, blocking_mode};
