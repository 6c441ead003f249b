//! Per-namespace sysctls, read and written from a thread inside the namespace: the calling
//! thread when it is there already, else a library worker.

use super::Namespace;
use crate::{
    error::{Error, Result},
    sys::{self},
};
use std::path::PathBuf;

/// Maps a `net.*` sysctl key to its `/proc/sys` path, refusing anything that could leave
/// `/proc/sys/net`.
fn sysctl_path(key: &str) -> Result<PathBuf> {
    let bad = |reason: &str| Error::invalid(format!("sysctl key {key:?}"), reason);
    let mut parts = key.split('.');
    if parts.next() != Some("net") {
        return Err(bad(
            "only net.* keys are per-namespace; other sysctls are global and are not touched",
        ));
    }
    let mut path = PathBuf::from("/proc/sys/net");
    let mut any = false;
    for part in parts {
        let part = part.replace('/', ".");
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            return Err(bad("has an empty, `.` or `..` component"));
        }
        path.push(part);
        any = true;
    }
    if !any {
        return Err(bad("names no setting"));
    }
    Ok(path)
}

impl Namespace {
    /// Reads the sysctl `key` (e.g. `net.ipv4.ip_forward`) of this namespace: on the calling
    /// thread when it is in this namespace, else on a library thread inside it.
    ///
    /// Only `net.*` keys are accepted: they are the per-namespace ones, so this can never
    /// read or change a global setting by mistake. As with sysctl(8), a `/` inside a
    /// component stands for a `.` in an interface name (`net.ipv4.conf.eth0/10.forwarding`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a key outside `net.` or with empty, `.` or `..`
    /// components; [`Error::NotFound`] if the key does not exist in this namespace.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (a read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// assert_eq!(ns.sysctl("net.ipv4.ip_forward").await?, "0");
    /// # Ok(()) }
    /// ```
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        let value = sys::in_ns(self.inner.fd.clone(), move || std::fs::read_to_string(path))
            .await
            .map_err(|e| Error::os("read sysctl", format!("{key} in {}", self.label()), e))?;
        Ok(value.trim_end().to_owned())
    }

    /// The blocking form of [`sysctl`](Self::sysctl): the same work, checks and errors, on the
    /// calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do not
    /// call it from async code.
    pub fn sysctl_blocking(&self, key: &str) -> Result<String> {
        crate::netlink::block_on(self.sysctl(key))
    }

    /// Writes `value` to the sysctl `key` of this namespace only; see
    /// [`sysctl`](Namespace::sysctl).
    ///
    /// # Errors
    ///
    /// As for [`sysctl`](Namespace::sysctl); [`Error::Os`] (`EINVAL`) if the kernel rejects
    /// the value; [`Error::PermissionDenied`] without `CAP_NET_ADMIN`.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the write happens even if the future is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> netns_kit::Result<()> {
    /// let ns = netns_kit::Namespace::new().await?;
    /// ns.set_sysctl("net.ipv4.ip_forward", "1").await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "sysctl -w")]
    #[cfg_attr(not(feature = "tokio"), doc(hidden))]
    pub async fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        let value = value.to_owned();
        sys::in_ns(self.inner.fd.clone(), move || std::fs::write(path, value))
            .await
            .map_err(|e| Error::os("write sysctl", format!("{key} in {}", self.label()), e))
    }

    /// The blocking form of [`set_sysctl`](Self::set_sysctl): the same work, checks and errors, on
    /// the calling thread without an async runtime (see [the blocking API](crate#blocking-api)). Do
    /// not call it from async code.
    pub fn set_sysctl_blocking(&self, key: &str, value: &str) -> Result<()> {
        crate::netlink::block_on(self.set_sysctl(key, value))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0/10.forwarding").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.10/forwarding")
        );
        for bad in [
            "kernel.hostname",
            "net",
            "net.",
            "net..x",
            "net.ipv4...",
            "net./",
            "vm.swappiness",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad}");
        }
    }
}
