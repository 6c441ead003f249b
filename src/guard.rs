//! The guard contract, written once.
//!
//! Every guard of this crate except [`Namespace`](crate::Namespace) (which stays usable after
//! `keep`) wraps a [`Guard`] around the thing it owns. The thing implements [`Resource`]: how to
//! describe itself in errors, how to remove itself asynchronously (for `delete().await`, which
//! reports errors) and how to remove itself synchronously (for `Drop`, which needs no runtime and
//! swallows errors after logging them). [`Guard`] then provides, identically for all of them:
//!
//! * `Drop`: best-effort synchronous removal; a panic inside is caught (a panic in `Drop` while
//!   unwinding would abort the process), errors are logged at `warn` level;
//! * `delete`: removal that reports errors;
//! * `keep`: disarms and hands back the resource.

use std::future::Future;

use crate::error::Result;

/// Something a guard removes.
pub(crate) trait Resource: Send {
    /// How errors and logs name it, e.g. `veth pair "a"/"b"`.
    fn describe(&self) -> String;

    /// Removes it, reporting errors. "Already gone" is success.
    fn remove(self) -> impl Future<Output = Result<()>> + Send;

    /// Removes it without a runtime, waiting a bounded time. "Already gone" is success.
    fn remove_blocking(self) -> Result<()>;
}

/// Owns a [`Resource`] and removes it unless disarmed.
#[derive(Debug)]
pub(crate) struct Guard<R: Resource> {
    // `None` only transiently, inside `delete`/`keep`/`drop`, which consume or end the guard.
    resource: Option<R>,
}

impl<R: Resource> Guard<R> {
    pub(crate) fn new(resource: R) -> Self {
        Guard {
            resource: Some(resource),
        }
    }

    pub(crate) fn get(&self) -> &R {
        self.resource
            .as_ref()
            .expect("a live guard always holds its resource")
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        self.resource
            .as_mut()
            .expect("a live guard always holds its resource")
    }

    /// Removes the resource now and reports errors.
    pub(crate) async fn delete(mut self) -> Result<()> {
        match self.resource.take() {
            Some(resource) => resource.remove().await,
            None => Ok(()),
        }
    }

    /// Disarms the guard and returns the resource, which will not be removed.
    pub(crate) fn keep(mut self) -> R {
        self.resource
            .take()
            .expect("a live guard always holds its resource")
    }
}

impl<R: Resource> Drop for Guard<R> {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            let what = resource.describe();
            best_effort(&what, || resource.remove_blocking());
        }
    }
}

/// Runs a teardown from `Drop`: never panics, logs what went wrong.
pub(crate) fn best_effort(what: &str, teardown: impl FnOnce() -> Result<()>) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(teardown)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("netns-kit: dropping {what}: {e}"),
        Err(_) => log::warn!("netns-kit: dropping {what}: teardown panicked"),
    }
}
