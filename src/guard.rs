//! The guard contract, written once.
//!
//! Every guard of this crate except [`Namespace`](crate::Namespace) (which stays usable after
//! `keep`) wraps a [`Guard`] around the thing it owns. The thing implements [`Resource`]: how to
//! describe itself in errors, how to remove itself asynchronously (for `delete().await`, which
//! reports errors) and synchronously (for `Drop`, which needs no runtime and swallows errors
//! after logging them), and what to release once removed. [`Guard`] then provides, identically
//! for all of them:
//!
//! * `Drop`: best-effort synchronous removal; a panic inside is caught (a panic in `Drop` while
//!   unwinding would abort the process), errors are logged at `warn` level;
//! * `delete`: removal that reports errors. The resource stays inside the guard until its
//!   removal has finished, so if the `delete` future is dropped half-way (a timeout), the
//!   guard's `Drop` removes whatever is left — removal is idempotent;
//! * `keep`: disarms and hands back the resource.

use std::future::Future;

use crate::error::{Error, Result};

/// Something a guard removes.
pub(crate) trait Resource: Send + Sync {
    /// How errors and logs name it, e.g. `veth pair "a"/"b"`.
    fn describe(&self) -> String;

    /// Removes it, reporting errors. "Already gone" is success, so this can be repeated, also
    /// after a previous attempt was interrupted.
    fn remove(&self) -> impl Future<Output = Result<()>> + Send;

    /// Like [`remove`](Resource::remove), without a runtime, waiting a bounded time.
    fn remove_blocking(&self) -> Result<()>;

    /// Releases what the resource holds once removal is over (namespace handles, link-group
    /// numbers); `removed` says whether the removal succeeded. Synchronous, so it cannot be
    /// interrupted.
    fn finish(self, removed: bool) -> Result<()>
    where
        Self: Sized,
    {
        let _ = removed;
        Ok(())
    }
}

/// Owns a [`Resource`] and removes it unless disarmed.
#[derive(Debug)]
pub(crate) struct Guard<R: Resource> {
    // `None` only once `delete`/`keep`/`drop` has ended the guard's duty.
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

    /// Removes the resource now and reports errors. If this future is dropped before the
    /// removal finished, the guard's `Drop` finishes it.
    pub(crate) async fn delete(mut self) -> Result<()> {
        let removed = match &self.resource {
            Some(resource) => resource.remove().await,
            None => return Ok(()),
        };
        let resource = self.resource.take().expect("still held");
        let what = resource.describe();
        let finished = resource.finish(removed.is_ok());
        let errors: Vec<Error> = [removed, finished]
            .into_iter()
            .filter_map(|r| r.err())
            .collect();
        Error::collect(what, errors)
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
            best_effort(&what, || {
                let removed = resource.remove_blocking();
                let finished = resource.finish(removed.is_ok());
                removed.and(finished)
            });
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
