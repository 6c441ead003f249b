//! Packet captures written by the library: a packet socket (`AF_PACKET`) bound to the link
//! inside its namespace, read on a relay thread, written as classic pcap (microsecond
//! timestamps, Ethernet link type) — what `tcpdump -r` and Wireshark read. No `tcpdump`
//! process, and no capture library.
//!
//! The socket sees what `tcpdump -i LINK` sees: every frame the link sends and receives, with
//! segmentation offload as one large frame (as tcpdump shows it too). A frame is timestamped
//! when the relay thread reads it, within microseconds of its arrival on a machine that is
//! not overloaded.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use super::relay;
use crate::{
    error::{Error, Result},
    link::Link,
    sys,
};

/// A capture of one link, written to a pcap file until it is stopped or dropped.
///
/// Made by [`Link::capture`]; the [lab](crate::lab::Lab::capture) makes them per host.
#[derive(Debug)]
pub struct Capture {
    handle: Option<relay::Handle>,
    packets: Arc<AtomicU64>,
    path: PathBuf,
    link: String,
}

impl Capture {
    /// The pcap file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Stops the capture, writes what the socket still holds and flushes the file; returns
    /// the number of packets in it.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when the file could not be written.
    pub fn stop(mut self) -> Result<u64> {
        if let Some(handle) = self.handle.take() {
            handle
                .remove()
                .map_err(|e| Error::os("write the capture of", self.link.clone(), e))?;
        }
        Ok(self.packets())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        drop(self.handle.take());
    }
}

impl std::fmt::Display for Capture {
    /// `capture of interface "eth0" in namespace ... to PATH`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "capture of {} to {}", self.link, self.path.display())
    }
}

impl Link {
    /// Captures what this link sends and receives into a new pcap file at `path`
    /// (overwritten if it exists), until the returned [`Capture`] is stopped or dropped.
    /// Needs `CAP_NET_RAW` where the link is (root, or a user namespace that owns it).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when the file cannot be created, [`Error::PermissionDenied`] without
    /// `CAP_NET_RAW`; nothing is left behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(link: &netns_kit::Link) -> netns_kit::Result<()> {
    /// let capture = link.capture_blocking("/tmp/eth0.pcap")?;
    /// // ... traffic ...
    /// let packets = capture.stop()?; // `tcpdump -r /tmp/eth0.pcap` reads it
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn capture(&self, path: impl AsRef<Path>) -> Result<Capture> {
        let path = path.as_ref().to_path_buf();
        let label = self.label();
        let file = File::create(&path)
            .map_err(|e| Error::os("create the capture file", path.display().to_string(), e))?;
        let index = self.index();
        let socket = sys::in_ns(self.ns().fd().clone(), move || sys::packet_socket(index))
            .await
            .map_err(|e| Error::os("capture on", label.clone(), e));
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let packets = Arc::new(AtomicU64::new(0));
        let handle = relay::capture(
            socket,
            BufWriter::with_capacity(1 << 16, file),
            packets.clone(),
        )
        .map_err(|e| {
            let _ = std::fs::remove_file(&path);
            Error::os("start the capture of", label.clone(), e)
        })?;
        tracing::debug!(target: "netns_kit::impair", link = %label, path = %path.display(), "capture started");
        Ok(Capture {
            handle: Some(handle),
            packets,
            path,
            link: label,
        })
    }

    /// The blocking form of [`capture`](Self::capture): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn capture_blocking(&self, path: impl AsRef<Path>) -> Result<Capture> {
        crate::netlink::block_on(self.capture(path))
    }
}
