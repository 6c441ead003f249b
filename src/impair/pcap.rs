//! The classic pcap format (microsecond timestamps, Ethernet link type), as `tcpdump -w`
//! writes it: a 24-byte file header, then a 16-byte header before each packet.

use std::io::{self, Write};

/// The bytes kept of each frame (tcpdump's default snap length).
const SNAPLEN: u32 = 262_144;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;

/// The pcap file header (magic `a1b2c3d4` in this machine's byte order, version 2.4).
pub(crate) fn write_header(out: &mut impl Write) -> io::Result<()> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
    h.extend_from_slice(&2u16.to_ne_bytes());
    h.extend_from_slice(&4u16.to_ne_bytes());
    h.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
    h.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
    h.extend_from_slice(&SNAPLEN.to_ne_bytes());
    h.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    out.write_all(&h)
}

/// One record: the time now, the bytes kept, the length on the wire.
pub(crate) fn write_record(out: &mut impl Write, frame: &[u8], wire_len: usize) -> io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let kept = frame.len().min(SNAPLEN as usize);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&(now.as_secs() as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&now.subsec_micros().to_ne_bytes());
    h[8..12].copy_from_slice(&(kept as u32).to_ne_bytes());
    h[12..16].copy_from_slice(&(wire_len as u32).to_ne_bytes());
    out.write_all(&h)?;
    out.write_all(&frame[..kept])
}
