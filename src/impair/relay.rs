//! The relay: frames a [diversion](super::divert) hands to user space go through an
//! [engine](super::engine) and back into the link, on a thread of the library's.
//!
//! This first form runs one thread per diverted link, which waits in `poll(2)` on the TAP
//! and a stop pipe, with the engine's next departure as the timeout (millisecond resolution).
//! Frames are read without blocking until the TAP is empty, so a burst is taken off the
//! device's own queue at once and waits in the engine's bounded queue instead.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    thread::JoinHandle,
    time::Instant,
};

use nix::{
    fcntl::{FcntlArg, OFlag, fcntl},
    poll::{PollFd, PollFlags, PollTimeout, poll},
};

use super::{divert::Diversion, engine::Counters, engine::Engine};

/// A running relay; dropping it stops the thread, which undoes the diversion.
#[derive(Debug)]
pub(crate) struct Relay {
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<Counters>>,
}

impl Relay {
    /// Starts relaying `diversion` through `engine`.
    pub(crate) fn start(diversion: Diversion, engine: Engine) -> io::Result<Relay> {
        let (stop_read, stop_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        fcntl(&diversion.tap, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let thread = std::thread::Builder::new()
            .name("netns-kit-relay".into())
            .spawn(move || run(diversion, engine, stop_read))?;
        Ok(Relay {
            stop: Some(stop_write),
            thread: Some(thread),
        })
    }

    /// Stops the relay and returns what it counted.
    pub(crate) fn stop(mut self) -> Counters {
        self.halt()
    }

    fn halt(&mut self) -> Counters {
        // Closing the pipe's write end wakes the thread (its read end becomes readable).
        drop(self.stop.take());
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(diversion: Diversion, mut engine: Engine, stop: OwnedFd) -> Counters {
    let start = Instant::now();
    let clock = || start.elapsed().as_nanos() as u64;
    let tap = &diversion.tap;
    let mut buf = vec![0u8; 1 << 17];
    loop {
        let now = clock();
        while let Some(frame) = engine.pop_due(now) {
            // A frame the device refuses (its queue full, the link gone) is lost, as on a wire.
            let _ = nix::unistd::write(tap, &frame);
        }
        let timeout = match engine.next_due() {
            Some(due) => PollTimeout::from(
                u16::try_from(due.saturating_sub(now).div_ceil(1_000_000)).unwrap_or(u16::MAX),
            ),
            None => PollTimeout::NONE,
        };
        let mut fds = [
            PollFd::new(tap.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        if fds[1].any().unwrap_or(true) {
            break;
        }
        loop {
            match nix::unistd::read(tap, &mut buf) {
                Ok(0) => break,
                Ok(n) => engine.push(clock(), buf[..n].to_vec()),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return engine.counters,
            }
        }
    }
    engine.counters
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        impair::{Impairment, Loss, Percent, divert::divert, system_ping},
        link::veth::VethPair,
        netns::Namespace,
    };

    /// A delay on A's side shows in the system `ping`'s round trip; 100 % loss stops it; once
    /// the relay is gone the link is direct again.
    #[test]
    fn a_relayed_link_is_delayed_or_cut_as_its_engine_says() {
        let (a, b) = match (Namespace::new_blocking(), Namespace::new_blocking()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) if e.is_permission_denied() => return,
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        };
        let cable = VethPair::builder("nkr0", "nkr1")
            .namespace(&a)
            .address("10.82.0.1/24")
            .peer_namespace(&b)
            .peer_address("10.82.0.2/24")
            .create_blocking()
            .unwrap();
        let to_b = "10.82.0.2";
        let direct = system_ping(&a, to_b).expect("direct ping");
        let relay_with = |imp: Impairment| {
            let diversion = divert(&a, cable.link().index(), &|| "test link".into()).unwrap();
            Relay::start(diversion, Engine::new(imp, 1)).unwrap()
        };
        let delayed = relay_with(Impairment {
            delay: Duration::from_millis(50),
            ..Impairment::default()
        });
        let rtt = system_ping(&a, to_b).expect("ping with 50 ms one way");
        assert!(
            rtt >= Duration::from_millis(50) && rtt < Duration::from_millis(60),
            "round trip {rtt:?} with 50 ms one way (direct: {direct:?})"
        );
        let counted = delayed.stop();
        assert!(counted.sent >= 1, "{counted:?}");
        let cut = relay_with(Impairment {
            loss: Loss::Random {
                p: Percent::new(100.0).unwrap(),
                correlation: Percent::default(),
            },
            ..Impairment::default()
        });
        assert_eq!(system_ping(&a, to_b), None, "a reply through 100 % loss");
        let counted = cut.stop();
        assert!(counted.lost >= 1 && counted.sent == 0, "{counted:?}");
        let again = system_ping(&a, to_b).expect("ping once the relay is gone");
        assert!(again < Duration::from_millis(20), "{again:?}");
    }
}
