//! Diverting a link through user space, in the kernel: the link's egress is redirected to a
//! TAP device in the same namespace, whose reader (the relay) decides what happens to each
//! frame, and what the relay writes into the TAP leaves by the link as if the link had sent it.
//!
//! Two small tc programs do it: on the link's egress (or ingress), "redirect to the TAP unless
//! marked"; on the TAP's ingress, "mark, and redirect out of (or into) the link". The mark keeps
//! what the relay sends back from being diverted again, and is cleared before the frame leaves.
//!
//! How they are attached is a trade between cost and what survives a `SIGKILL`:
//!
//! * The TAP's program is a classic `cls_bpf` filter (direct action) under a `clsact` qdisc, set
//!   over rtnetlink: the TAP dies with the process, and its filter with it.
//! * The link's program is attached with TCX (`BPF_LINK_CREATE`, kernel 6.6 and later) when the
//!   link's namespace may outlive the process (a named namespace, a container's, the caller's
//!   own): a TCX attachment lives exactly as long as its file descriptor, so the link is direct
//!   again even if the process is killed — a classic filter would keep redirecting into a TAP
//!   that is gone and black-hole the link. But every TCX attach and detach waits for an RCU
//!   grace period under the RTNL lock: 12 to 20 ms each on the 2-vCPU machine this was measured
//!   on, where a classic filter costs microseconds.
//! * So in an anonymous namespace this process made (a lab's hosts, a network's members), which
//!   the kernel frees with the process, the link's program is a classic filter too, removed
//!   explicitly when the diversion goes. (A process started inside such a namespace that
//!   outlives a killed parent would keep it, and its diverted link black-holed; the crate's
//!   own `Lab::spawn` children are killed with their parent.)
//!
//! Why not the alternatives: this kernel has no `netem`, `gact` or `matchall`; `act_mirred`
//! could redirect but not mark, and a link made of two TAPs from the start could not be
//! impaired "at any time later". Loading the programs needs `CAP_BPF` (or `CAP_SYS_ADMIN`) in
//! the initial user namespace and `CAP_NET_ADMIN` where the link is: root, not a user namespace.
//!
//! The TAP gets no IPv6 of its own (its own neighbour discovery would otherwise be relayed out
//! of the link) and is named `nkdivN`. The two programs are called `nk_divert` (the link's) and
//! `nk_return` (the TAP's) in `bpftool prog`, and diversions with the same programs share one
//! loaded copy (see `sys::shared_sched_cls`): a network's members, whose TAPs have the same
//! index in their own namespaces, load one `nk_divert` between them.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
};

use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcMessage},
};
use rtnetlink::packet_core::{DefaultNla, Emitable};

use crate::{
    error::{Error, Result},
    netns::{Namespace, NsInner},
    sys::{self, TcxSide},
};

/// The mark on frames the relay sends back (in `skb->mark` between the two programs only).
const RETURN_MARK: u32 = 0x6e6b_6476; // "nkdv"

/// The name prefix of the diversion TAPs (the kernel adds the number).
pub(crate) const TAP_PREFIX: &str = "nkdiv";

/// The names of the two programs, as `bpftool prog` shows them: the link's, then the TAP's.
const PROGRAM_NAMES: [&str; 2] = ["nk_divert", "nk_return"];

/// The priority of the classic filters; each has a handle of its own.
const FILTER_PRIO: u32 = 0xc0de;

/// A link diverted through a TAP; dropping it undoes the diversion: the link's program first
/// (the link is direct again), then what was added to the link, then the TAP. Except for a
/// network's member being torn down ([`left`](Self::left) set by the network, which has
/// deleted the member's link and closed the namespace it owns) in a namespace that is doomed
/// (nothing outside the crate holding it): then nothing is undone, and the TAP is made
/// persistent before its last close, so that the kernel deletes it when it cleans up the
/// namespace, with the namespace's other links. Closed alone, a TAP is unregistered alone, and
/// each such unregistration waits for the kernel's `rcu_barrier`: about 37 ms per member of a
/// 100-member network, one after another, on the 2-vCPU development VM (`benches/offcpu.sh
/// --impairable 100`: `tun_chr_close < netdev_run_todo < rcu_barrier`).
#[derive(Debug)]
pub(crate) struct Diversion {
    /// The namespace of the link and the TAP.
    ns: Arc<NsInner>,
    /// Set when the link is gone with its network and the namespace is being let go (see
    /// above); never by dropping an impairment alone.
    pub(crate) left: Arc<AtomicBool>,
    /// How the link's program is attached.
    link: LinkSide,
    /// The `clsact` qdisc this diversion added to the link, removed with it.
    link_clsact: Option<(Arc<NsInner>, u32)>,
    /// The TAP, opened with a `virtio_net_hdr` before each frame.
    pub(crate) tap: OwnedFd,
    /// Its two programs, held so that the next diversion with the same ones shares them
    /// (`sys::shared_sched_cls`); the kernel keeps an attached program alive by itself.
    _programs: [Arc<OwnedFd>; 2],
}

#[derive(Debug)]
enum LinkSide {
    /// Not attached (yet).
    None,
    /// A TCX link: detached when the fd closes.
    Tcx { _link: OwnedFd },
    /// A classic filter, deleted over netlink.
    Classic {
        ns: Arc<NsInner>,
        index: u32,
        ingress: bool,
        handle: u32,
    },
}

impl Drop for Diversion {
    fn drop(&mut self) {
        if self.left.load(Ordering::Acquire) && self.ns.is_doomed() {
            // Best effort: where it fails, the TAP is unregistered alone, only slower.
            let _ = sys::set_tap_persist(self.tap.as_fd());
            self.link = LinkSide::None;
            self.link_clsact = None;
            return;
        }
        // Errors mean the link or its namespace is gone: nothing to undo then.
        if let LinkSide::Classic {
            ns,
            index,
            ingress,
            handle,
        } = &self.link
        {
            let delete = filter_message(*index, *ingress, *handle, None);
            let _ = ns.blocking_one(
                RouteNetlinkMessage::DelTrafficFilter(delete),
                "undo the diversion of",
                || format!("interface {index}"),
            );
        }
        self.link = LinkSide::None;
        if let Some((ns, index)) = self.link_clsact.take() {
            let delete = clsact_message(index);
            let _ = ns.blocking_one(
                RouteNetlinkMessage::DelQueueDiscipline(delete),
                "undo the diversion of",
                || format!("interface {index}"),
            );
        }
    }
}

/// A `clsact` qdisc on link `index`.
fn clsact_message(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = 0xffff_fff1.into(); // TC_H_CLSACT
    msg.header.handle = 0xffff_0000.into();
    msg.attributes
        .push(TcAttribute::Other(DefaultNla::new(1, b"clsact\0".to_vec())));
    msg
}

/// The classic `cls_bpf` filter `handle` (direct action) running `program` (an fd of this
/// process) on link `index`'s ingress or egress; without a program, the message that deletes
/// it.
fn filter_message(index: u32, ingress: bool, handle: u32, program: Option<u32>) -> TcMessage {
    const ETH_P_ALL: u16 = 0x0003;
    let mut msg = TcMessage::with_index(index as i32);
    // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS or TC_H_MIN_EGRESS)
    msg.header.parent = if ingress { 0xffff_fff2 } else { 0xffff_fff3 }.into();
    msg.header.info = (FILTER_PRIO << 16) | u32::from(ETH_P_ALL.to_be());
    msg.header.handle = handle.into();
    msg.attributes
        .push(TcAttribute::Other(DefaultNla::new(1, b"bpf\0".to_vec())));
    if let Some(fd) = program {
        const TCA_BPF_FD: u16 = 6;
        const TCA_BPF_NAME: u16 = 7;
        const TCA_BPF_FLAGS: u16 = 8;
        const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
        let options = [
            DefaultNla::new(TCA_BPF_FD, fd.to_ne_bytes().to_vec()),
            DefaultNla::new(TCA_BPF_NAME, b"netns-kit-divert\0".to_vec()),
            DefaultNla::new(
                TCA_BPF_FLAGS,
                TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes().to_vec(),
            ),
        ];
        let mut nested = vec![0u8; options.as_slice().buffer_len()];
        options.as_slice().emit(&mut nested);
        msg.attributes
            .push(TcAttribute::Other(DefaultNla::new(2 | 0x8000, nested)));
    }
    msg
}

/// A filter handle no other diversion of this link is likely to have (several processes may
/// divert links of one namespace).
fn filter_handle() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let mixed = std::process::id().rotate_left(16) ^ NEXT.fetch_add(1, Ordering::Relaxed);
    mixed.max(1)
}

/// What the worker inside the namespace makes: the TAP, its index and the two programs.
struct Made {
    tap: OwnedFd,
    tap_index: u32,
    divert_program: Arc<OwnedFd>,
    back_program: Arc<OwnedFd>,
}

/// Diverts link `index` in `ns` through a new TAP there: what it sends (`ingress` false) or
/// what it receives (`ingress` true). On error nothing of it is left.
///
/// Two steps, for speed (a network's members are impaired as they are built): one job on a
/// worker inside the namespace (the TAP — its number chosen by the kernel, unique whoever else
/// diverts there —, its index, the programs, a TCX attachment), then one pipelined netlink
/// batch (the TAP up without IPv6 link-local, the `clsact` qdiscs and the classic filters).
pub(crate) async fn divert(
    ns: &Namespace,
    index: u32,
    ingress: bool,
    what: &(dyn Fn() -> String + Sync),
) -> Result<Diversion> {
    let side = if ingress {
        TcxSide::Ingress
    } else {
        TcxSide::Egress
    };
    let private = ns.inner().is_private();
    let made = sys::in_ns(ns.inner().fd().clone(), move || {
        let (tap, name) = sys::open_tap(&format!("{TAP_PREFIX}%d"))?;
        let tap_index =
            nix::net::if_::if_nametoindex(name.as_str()).map_err(std::io::Error::from)?;
        let divert = sys::divert_program(tap_index, RETURN_MARK);
        let divert_program = sys::shared_sched_cls(PROGRAM_NAMES[0], &divert)?;
        let back = sys::return_program(index, RETURN_MARK, ingress);
        let back_program = sys::shared_sched_cls(PROGRAM_NAMES[1], &back)?;
        Ok(Made {
            tap,
            tap_index,
            divert_program,
            back_program,
        })
    })
    .await
    .map_err(|e| refused(e, what))?;
    let Made {
        tap,
        tap_index,
        divert_program,
        back_program,
    } = made;
    // TCX where the namespace may outlive the process (see the module docs) — attached last,
    // once the TAP side is ready; classic filters elsewhere, or where the kernel has no TCX.
    let tcx = !private;
    // From here on, dropping `diversion` undoes whatever was done.
    let mut diversion = Diversion {
        ns: ns.inner().clone(),
        left: Arc::default(),
        link: LinkSide::None,
        link_clsact: None,
        tap,
        _programs: [divert_program.clone(), back_program.clone()],
    };
    let inner = ns.inner();
    let handle = filter_handle();
    let op = "attach the diversion programs to";
    {
        use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
        let new = NLM_F_CREATE | NLM_F_EXCL;
        let fd = |p: &OwnedFd| Some(p.as_raw_fd() as u32);
        let nl = inner.nl().await?;
        // Sent at once, answered in order.
        // IPv6 link-local off before the TAP is up: the kernel applies a request's "up"
        // before its IPv6 settings, and the TAP's own neighbour discovery would leave by the
        // diverted link.
        let tap_quiet = nl.send(crate::netlink::msg::no_link_local(tap_index), 0);
        let tap_up = nl.send(crate::netlink::msg::set_link(tap_index, |b| b.up()), 0);
        let tap_clsact = nl.send(
            RouteNetlinkMessage::NewQueueDiscipline(clsact_message(tap_index)),
            new,
        );
        let tap_filter = nl.send(
            RouteNetlinkMessage::NewTrafficFilter(filter_message(
                tap_index,
                true,
                1,
                fd(&back_program),
            )),
            new,
        );
        let link_side = (!tcx).then(|| {
            (
                nl.send(
                    RouteNetlinkMessage::NewQueueDiscipline(clsact_message(index)),
                    new,
                ),
                nl.send(
                    RouteNetlinkMessage::NewTrafficFilter(filter_message(
                        index,
                        ingress,
                        handle,
                        fd(&divert_program),
                    )),
                    new,
                ),
            )
        });
        if link_side.is_some() {
            // Recorded before any answer is awaited: if this future is dropped now, the
            // diversion's `Drop` deletes the filter (deleting one that never came is harmless)
            // rather than leave the link redirecting into a TAP that is gone.
            diversion.link = LinkSide::Classic {
                ns: inner.clone(),
                index,
                ingress,
                handle,
            };
        }
        let tap_results = [
            tap_quiet.ack().await,
            tap_up.ack().await,
            tap_clsact.ack().await,
            tap_filter.ack().await,
        ];
        let link_results = match link_side {
            Some((clsact, filter)) => {
                let clsact = clsact.ack().await;
                let filter = filter.ack().await;
                if clsact.is_ok() {
                    diversion.link_clsact = Some((inner.clone(), index));
                }
                [
                    clsact.or_else(|e| {
                        if e.errno == nix::libc::EEXIST {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }),
                    filter,
                ]
            }
            None => [Ok(()), Ok(())],
        };
        for result in tap_results.into_iter().chain(link_results) {
            result.map_err(|e| e.into_error(op, what()))?;
        }
    }
    if tcx {
        let program = divert_program;
        let attached = sys::in_ns(ns.inner().fd().clone(), move || {
            match sys::bpf_tcx_attach(program.as_fd(), index, side) {
                Ok(link) => Ok(Ok(link)),
                // Before 6.6: no TCX (EINVAL for the attach type).
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(Err(program)),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| refused(e, what))?;
        match attached {
            Ok(link) => diversion.link = LinkSide::Tcx { _link: link },
            Err(program) => {
                use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
                let nl = inner.nl().await?;
                let clsact = RouteNetlinkMessage::NewQueueDiscipline(clsact_message(index));
                match nl.send(clsact, NLM_F_CREATE | NLM_F_EXCL).ack().await {
                    Ok(()) => diversion.link_clsact = Some((inner.clone(), index)),
                    Err(e) if e.errno == nix::libc::EEXIST => {}
                    Err(e) => return Err(e.into_error(op, what())),
                }
                let filter =
                    filter_message(index, ingress, handle, Some(program.as_raw_fd() as u32));
                nl.send(
                    RouteNetlinkMessage::NewTrafficFilter(filter),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                .ack()
                .await
                .map_err(|e| e.into_error(op, what()))?;
                diversion.link = LinkSide::Classic {
                    ns: inner.clone(),
                    index,
                    ingress,
                    handle,
                };
            }
        }
    }
    Ok(diversion)
}

/// The error for programs the kernel refused to load or attach.
fn refused(e: std::io::Error, what: &(dyn Fn() -> String + Sync)) -> Error {
    let e = Error::os("attach the diversion programs (eBPF) to", what(), e);
    if e.is_permission_denied() {
        Error::Unsupported {
            op: "impair",
            object: what(),
            reason: "the kernel has no netem qdisc here, and the user-space path loads eBPF programs, which needs CAP_BPF (or CAP_SYS_ADMIN) in the initial user namespace: run as root, or use a kernel with netem (CONFIG_NET_SCH_NETEM), which works in a user namespace too".into(),
        }
    } else {
        e
    }
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

    /// A diversion let go with its namespace (a network's teardown: `left` set, the namespace's
    /// owning handle closed, nothing outside holding it) leaves its TAP, made persistent, for
    /// the kernel to delete with the namespace; dropped on its own, it deletes the TAP itself.
    /// The links are listed over the crate's own connection, which lets nothing escape.
    #[test]
    fn a_diversion_left_with_its_doomed_namespace_leaves_the_tap_to_the_kernel() {
        for left in [false, true] {
            let ns = match Namespace::new_blocking() {
                Ok(ns) => ns,
                Err(e) if e.is_permission_denied() => return,
                Err(e) => panic!("{e}"),
            };
            let inner = ns.inner().clone();
            let cable = VethPair::builder("nkl0", "nkl1")
                .namespace(&ns)
                .create_blocking()
                .unwrap();
            let end = cable.link().index();
            let diversion =
                crate::netlink::block_on(divert(&ns, end, false, &|| "test link".into())).unwrap();
            ns.close().unwrap();
            assert!(inner.is_doomed(), "the namespace's owning handle is closed");
            diversion.left.store(left, Ordering::Release);
            drop(diversion);
            let taps = || {
                let links = inner
                    .blocking_dump(
                        RouteNetlinkMessage::GetLink(Default::default()),
                        std::time::Duration::from_secs(5),
                    )
                    .unwrap()
                    .unwrap();
                links
                    .iter()
                    .filter_map(|m| match m {
                        RouteNetlinkMessage::NewLink(l) => crate::netlink::msg::link_name(l),
                        _ => None,
                    })
                    .filter(|name| name.starts_with(TAP_PREFIX))
                    .count()
            };
            // The TAP goes with the last reference to its file, which a child process that
            // another test forks just then holds until its `exec`: a moment, not a state.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !left && taps() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if left {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            assert_eq!(taps(), usize::from(left), "TAPs left with left = {left}");
            drop(cable);
        }
    }

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
        let qdiscs = |ns: &Namespace| {
            let out = ns
                .command("tc")
                .args(["qdisc", "show", "dev", "nkd0"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(qdiscs(&a).contains("clsact"), "{}", qdiscs(&a));
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
        assert!(
            !qdiscs(&a).contains("clsact"),
            "left behind: {}",
            qdiscs(&a)
        );
        // The relay's read ends with the TAP gone (or the next frame); the link is back.
        assert!(
            ping(&a, "10.81.0.2").is_some(),
            "A -> B once the diversion is gone"
        );
        drop(relay);
    }
}
