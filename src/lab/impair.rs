//! A lab's misbehaving network: impairments per host or per interface, partitions between
//! sets of hosts, and packet captures of host interfaces (see [`crate::impair`]).
//!
//! Captures the lab makes itself (with [`CAPTURE_ENV`]` = 1`, or [`Lab::capture`]) go to a
//! directory of the lab's, `$TMPDIR/netns-kit-captures/TEST-PID/`, one `HOST-INTERFACE.pcap`
//! per interface. When the lab goes they are removed if the test passed and kept, with one
//! line on standard error saying where, if it failed (a panic, or [`Lab::mark_failed`]) — also
//! next to a lab kept with `NETNS_KIT_KEEP=1`.

use std::path::PathBuf;

use super::*;
use crate::impair::{Capture, Direction, Impaired, Impairment, Partition};

/// The environment variable that makes a lab capture every host interface it makes.
pub const CAPTURE_ENV: &str = "NETNS_KIT_CAPTURE";

/// What a lab does to its network on purpose.
#[derive(Debug, Default)]
pub(super) struct Misbehaviour {
    impaired: Vec<(String, Impaired)>,
    partitions: Vec<Partition>,
    captures: Vec<(String, Capture)>,
    capture_dir: Option<PathBuf>,
}

impl Misbehaviour {
    /// The impairments, for the lab's end to let go after the networks (see `Lab`'s `Drop`).
    pub(super) fn take_impairments(&mut self) -> Vec<(String, Impaired)> {
        std::mem::take(&mut self.impaired)
    }

    /// Stops the captures (flushing them) and keeps or removes their files; called when the
    /// lab goes.
    pub(super) fn finish(&mut self, test: &str, failed: bool) {
        self.partitions.clear();
        self.impaired.clear();
        let mut paths = Vec::new();
        for (_, capture) in self.captures.drain(..) {
            let path = capture.path().to_path_buf();
            let _ = capture.stop();
            paths.push(path);
        }
        let Some(dir) = self.capture_dir.take() else {
            return;
        };
        if failed {
            eprintln!(
                "netns-kit lab {test}: the test failed; its packet captures are kept in {} ({} files: tcpdump -r FILE, or Wireshark)",
                dir.display(),
                paths.len()
            );
        } else {
            for path in paths {
                let _ = std::fs::remove_file(path);
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Lab {
    /// The interfaces of `host` the lab's impairments and captures act on: all but loopback
    /// and the relay's own devices.
    async fn host_links(&self, host: &str) -> Result<Vec<Link>> {
        crate::impair::host_interfaces(self.host(host)?).await
    }

    /// Makes what `host` sends misbehave as `impairment` says, on every interface of it (so
    /// between two impaired hosts a round trip crosses two impaired directions). Replaces
    /// what an earlier call set for `host`; [`Lab::clear_impairments`] takes it away, and so
    /// does the lab's end.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host; those of [`Link::impair`]. On error the host's
    /// earlier impairments are gone and none of this call's are left.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// use std::time::Duration;
    /// use netns_kit::impair::{Impairment, Percent};
    /// lab.add_lan(["10.0.0.0/24"], ["db", "app"]).await?;
    /// let far = Impairment::new().delay(Duration::from_millis(40)).loss(Percent::new(1.0)?);
    /// lab.impair("db", &far).await?; // app <-> db: about 40 ms round trip, 1 % lost
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn impair(&mut self, host: impl AsRef<str>, impairment: &Impairment) -> Result<()> {
        let host = host.as_ref();
        self.clear_impairments(host)?;
        let mut made = Vec::new();
        for link in self.host_links(host).await? {
            made.push((
                host.to_owned(),
                link.impair(Direction::Outbound, impairment).await?,
            ));
        }
        self.misbehaviour.impaired.extend(made);
        Ok(())
    }

    /// The blocking form of [`impair`](Self::impair): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn impair_blocking(
        &mut self,
        host: impl AsRef<str>,
        impairment: &Impairment,
    ) -> Result<()> {
        crate::netlink::block_on(self.impair(host, impairment))
    }

    /// Makes one interface of `host` misbehave in one direction; the guard stays with the lab
    /// until [`Lab::clear_impairments`] or the lab's end.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host or interface; those of [`Link::impair`].
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn impair_interface(
        &mut self,
        host: impl AsRef<str>,
        interface: impl AsRef<str>,
        direction: Direction,
        impairment: &Impairment,
    ) -> Result<()> {
        let host = host.as_ref();
        let link = self.host(host)?.link_by_name(interface).await?;
        let guard = link.impair(direction, impairment).await?;
        self.misbehaviour.impaired.push((host.to_owned(), guard));
        Ok(())
    }

    /// The blocking form of [`impair_interface`](Self::impair_interface): the same work,
    /// checks and errors, on the calling thread without an async runtime (see
    /// [the blocking API](crate#blocking-api)). Do not call it from async code.
    pub fn impair_interface_blocking(
        &mut self,
        host: impl AsRef<str>,
        interface: impl AsRef<str>,
        direction: Direction,
        impairment: &Impairment,
    ) -> Result<()> {
        crate::netlink::block_on(self.impair_interface(host, interface, direction, impairment))
    }

    /// The impairments in force on `host`'s interfaces (what [`Lab::impair`] and
    /// [`Lab::impair_interface`] set).
    pub fn impairments(&self, host: impl AsRef<str>) -> impl Iterator<Item = &Impaired> {
        let host = host.as_ref().to_owned();
        self.misbehaviour
            .impaired
            .iter()
            .filter(move |(h, _)| *h == host)
            .map(|(_, guard)| guard)
    }

    /// Takes away every impairment of `host`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host; the first error clearing a netem qdisc (the
    /// others are cleared all the same).
    pub fn clear_impairments(&mut self, host: impl AsRef<str>) -> Result<()> {
        let host = host.as_ref();
        self.host(host)?;
        let (theirs, others) = std::mem::take(&mut self.misbehaviour.impaired)
            .into_iter()
            .partition(|(h, _)| h == host);
        self.misbehaviour.impaired = others;
        let mut first = Ok(());
        for (_, guard) in theirs {
            let result = guard.clear();
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    /// Cuts the hosts `a` from the hosts `b` until [`Lab::heal`] (or the lab's end): what one
    /// side sends to the other is dropped silently; see [`crate::impair::partition`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host; those of [`partition`](crate::impair::partition).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut lab: netns_kit::lab::Lab) -> netns_kit::Result<()> {
    /// lab.add_lan(["10.0.0.0/24"], ["a", "b", "c"]).await?;
    /// lab.partition(&["a", "b"], &["c"]).await?;
    /// // ... c is cut off from a and b ...
    /// lab.heal();
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn partition(&mut self, a: &[&str], b: &[&str]) -> Result<()> {
        let side = |names: &[&str]| {
            names
                .iter()
                .map(|n| self.host(n))
                .collect::<Result<Vec<_>>>()
        };
        let (a, b) = (side(a)?, side(b)?);
        let cut = crate::impair::partition(&a, &b).await?;
        self.misbehaviour.partitions.push(cut);
        Ok(())
    }

    /// The blocking form of [`partition`](Self::partition): the same work, checks and errors,
    /// on the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn partition_blocking(&mut self, a: &[&str], b: &[&str]) -> Result<()> {
        crate::netlink::block_on(self.partition(a, b))
    }

    /// Heals every partition of the lab.
    pub fn heal(&mut self) {
        self.misbehaviour.partitions.clear();
    }

    /// Captures every interface of `host` until the lab goes, and returns the pcap files: one
    /// `HOST-INTERFACE.pcap` per interface in the lab's capture directory,
    /// `$TMPDIR/netns-kit-captures/TEST-PID/`. When the lab goes the files are removed if the
    /// test passed, and kept — with one line on standard error saying where — if it failed (a
    /// panic, or [`Lab::mark_failed`]), also next to a lab kept with `NETNS_KIT_KEEP=1`. With
    /// [`CAPTURE_ENV`]` = 1` the lab captures every host this way by itself. An interface
    /// captured already is not captured twice.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown host; those of [`Link::capture`].
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn capture(&mut self, host: impl AsRef<str>) -> Result<Vec<PathBuf>> {
        let host = host.as_ref();
        let links = self.host_links(host).await?;
        let dir = match &self.misbehaviour.capture_dir {
            Some(dir) => dir.clone(),
            None => {
                let dir = std::env::temp_dir()
                    .join("netns-kit-captures")
                    .join(format!("{}-{}", self.test, std::process::id()));
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::os("create the capture directory", dir.display().to_string(), e)
                })?;
                self.misbehaviour.capture_dir = Some(dir.clone());
                dir
            }
        };
        let mut paths = Vec::new();
        for link in links {
            let path = dir.join(format!("{host}-{}.pcap", link.name()));
            if !self
                .misbehaviour
                .captures
                .iter()
                .any(|(_, c)| c.path() == path)
            {
                let capture = link.capture(&path).await?;
                self.misbehaviour.captures.push((host.to_owned(), capture));
            }
            paths.push(path);
        }
        Ok(paths)
    }

    /// The blocking form of [`capture`](Self::capture): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)).
    /// Do not call it from async code.
    pub fn capture_blocking(&mut self, host: impl AsRef<str>) -> Result<Vec<PathBuf>> {
        crate::netlink::block_on(self.capture(host))
    }

    /// With [`CAPTURE_ENV`]` = 1`: captures the interfaces of every host (called after each
    /// network the lab adds).
    pub(super) async fn capture_if_asked(&mut self) -> Result<()> {
        if !env_is_1(CAPTURE_ENV) {
            return Ok(());
        }
        let hosts: Vec<String> = self.hosts().map(str::to_owned).collect();
        for host in hosts {
            self.capture(&host).await?;
        }
        Ok(())
    }
}
