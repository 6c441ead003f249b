//! What goes over the wire: encoding requests, reading the kernel's errors (with its
//! extended-ack explanation), and opening sockets.
//!
//! Every netlink message this workspace writes or reads by hand is framed with
//! netlink-packet-core's buffers (`NetlinkBuffer`, `ErrorBuffer`, `NlasIterator`, its attribute
//! writer), the same code rtnetlink frames its messages with: here, in `ready` (messages the
//! route parser does not take) and in the CNI plugin's nf_tables writer.

use std::{io, time::Duration};

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{
    packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator},
    sys::{Socket, protocols::NETLINK_ROUTE},
};

use crate::error::Error;

/// How long synchronous paths (`Drop`, the blocking API) wait for the kernel or a library
/// thread, per step.
pub(crate) const BLOCKING_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[cfg(feature = "tokio")]
    pub(crate) fn protocol(what: &str) -> KernelError {
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
    let attributes = payload_after_errno.get(request_len..)?;
    NlasIterator::new(attributes)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            String::from_utf8_lossy(text).into_owned()
        })
}

pub(crate) fn check_error(
    message: &NetlinkMessage<RouteNetlinkMessage>,
) -> Result<(), KernelError> {
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
    // Thousands of requests may be in flight on one connection (a network's members are built
    // concurrently; a caller may flood it): with the default buffer (about 200 KiB) the kernel
    // drops answers it cannot queue, and their requests would never be answered. Seen as a hang
    // of 10,000 concurrent requests on a loaded machine.
    crate::sys::grow_receive_buffer(std::os::fd::AsFd::as_fd(&socket), 16 << 20);
    Ok(socket)
}

pub(crate) fn request_message(
    msg: RouteNetlinkMessage,
    flags: u16,
) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    message.finalize();
    message
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
