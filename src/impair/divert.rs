//! Diverting a link through user space, in the kernel: the link's egress is redirected to a
//! TAP device in the same namespace, whose reader (the relay) decides what happens to each
//! frame, and what the relay writes into the TAP leaves by the link as if the link had sent it.
//!
//! Two small tc programs do it, attached with TCX (`BPF_LINK_CREATE`, kernel 6.6 and later):
//! on the link's egress, "redirect to the TAP unless marked"; on the TAP's ingress, "mark, and
//! redirect out of the link". The mark keeps what the relay sends back from being diverted
//! again, and is cleared before the frame leaves. TCX attachments live exactly as long as their
//! file descriptors, and the TAP as long as its own: dropping a [`Diversion`] restores the link,
//! and so does the death of the process — a classic `clsact` filter would instead keep
//! redirecting to a TAP that is gone and black-hole the link.
//!
//! Why not the alternatives: this kernel has no `netem`, `gact` or `matchall`; `act_mirred`
//! could redirect but not mark, and a link made of two TAPs from the start could not be
//! impaired "at any time later". Loading the programs needs `CAP_BPF` (or `CAP_SYS_ADMIN`) in
//! the initial user namespace and `CAP_NET_ADMIN` where the link is: root, not a user namespace.
//!
//! The TAP gets no IPv6 of its own (its own neighbour discovery would otherwise be relayed out
//! of the link) and is named `nkdivN`.

use std::{
    os::fd::{AsFd, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{
    error::{Error, Result},
    netns::Namespace,
    sys::{self, TcxSide},
};

/// The mark on frames the relay sends back (in `skb->mark` between the two programs only).
const RETURN_MARK: u32 = 0x6e6b_6476; // "nkdv"

/// A link diverted through a TAP; dropping it undoes the diversion.
#[derive(Debug)]
pub(crate) struct Diversion {
    /// The TAP, opened with a `virtio_net_hdr` before each frame.
    pub(crate) tap: OwnedFd,
    /// The TCX links of the two programs (dropped before the TAP).
    _attachments: [OwnedFd; 2],
}

/// Diverts link `index` in `ns` through a new TAP there: what it sends (`ingress` false) or
/// what it receives (`ingress` true).
pub(crate) async fn divert(
    ns: &Namespace,
    index: u32,
    ingress: bool,
    what: &dyn Fn() -> String,
) -> Result<Diversion> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("nkdiv{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let tap_name = name.clone();
    let tap = sys::in_ns(ns.inner().fd().clone(), move || sys::open_tap(&tap_name))
        .await
        .map_err(|e| Error::os("open a TAP device (/dev/net/tun) to divert", what(), e))?;
    let link = ns.link_by_name(&name).await?;
    let key = format!("net.ipv6.conf.{name}.disable_ipv6");
    // Best effort: without IPv6 in the namespace there is nothing to disable.
    let _ = ns.set_sysctl(&key, "1").await;
    link.set_up().await?;
    let tap_index = link.index();
    let side = if ingress {
        TcxSide::Ingress
    } else {
        TcxSide::Egress
    };
    let attachments = sys::in_ns(ns.inner().fd().clone(), move || {
            let divert = sys::bpf_load_sched_cls(&sys::divert_program(tap_index, RETURN_MARK))?;
            let back =
                sys::bpf_load_sched_cls(&sys::return_program(index, RETURN_MARK, ingress))?;
            let back_link = sys::bpf_tcx_attach(back.as_fd(), tap_index, TcxSide::Ingress)?;
            let divert_link = sys::bpf_tcx_attach(divert.as_fd(), index, side)?;
            Ok([divert_link, back_link])
        })
        .await
        .map_err(|e| {
            let e = Error::os("attach the diversion programs (eBPF, TCX) to", what(), e);
            if e.is_permission_denied() {
                Error::Unsupported {
                    op: "impair",
                    object: what(),
                    reason: "the kernel has no netem qdisc here, and the user-space path loads eBPF programs, which needs CAP_BPF (or CAP_SYS_ADMIN) in the initial user namespace: run as root, or use a kernel with netem (CONFIG_NET_SCH_NETEM), which works in a user namespace too".into(),
                }
            } else {
                e
            }
        })?;
    Ok(Diversion {
        tap,
        _attachments: attachments,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicU64},
        },
    };

    use super::*;
    use crate::link::veth::VethPair;

    /// A link diverted through a pass-through relay still carries a ping both ways, every frame
    /// it sends crosses the relay, and the link works as before once the diversion is dropped.
    #[test]
    fn a_diverted_link_carries_traffic_through_the_relay_and_is_restored() {
        let (a, b) = match (Namespace::new_blocking(), Namespace::new_blocking()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) if e.is_permission_denied() => return,
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        };
        let cable = VethPair::builder("nkd0", "nkd1")
            .namespace(&a)
            .address("10.81.0.1/24")
            .peer_namespace(&b)
            .peer_address("10.81.0.2/24")
            .create_blocking()
            .unwrap();
        let end = cable.link().index();
        let diversion =
            crate::netlink::block_on(divert(&a, end, false, &|| "test link".into())).unwrap();
        let mut reader = std::fs::File::from(diversion.tap.try_clone().unwrap());
        let mut writer = std::fs::File::from(diversion.tap.try_clone().unwrap());
        let frames = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let relay = {
            let (frames, stop) = (frames.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 70_000];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = reader.read(&mut buf) else { break };
                    frames.fetch_add(1, Ordering::Relaxed);
                    if writer.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            })
        };
        let ping = crate::impair::system_ping;
        assert!(ping(&a, "10.81.0.2").is_some(), "A -> B through the relay");
        assert!(
            ping(&b, "10.81.0.1").is_some(),
            "B -> A, the reply through the relay"
        );
        assert!(
            frames.load(Ordering::Relaxed) >= 2,
            "the relay saw no frames"
        );
        stop.store(true, Ordering::Relaxed);
        drop(diversion);
        // The relay's read ends with the TAP gone (or the next frame); the link is back.
        assert!(
            ping(&a, "10.81.0.2").is_some(),
            "A -> B once the diversion is gone"
        );
        drop(relay);
    }
}
