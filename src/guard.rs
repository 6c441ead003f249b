//! The guard contract, written once.
//!
//! Every guard of this crate except [`Namespace`](crate::Namespace) wraps a [`Guard`] around the
//! thing it owns. The thing implements [`Resource`]: how to name itself in errors and traces,
//! how to remove itself asynchronously (for `delete().await`, which reports errors) and
//! synchronously (for `Drop`, which needs no runtime and swallows errors after tracing them),
//! and what to release once removed. [`Guard`] then provides, identically for all of them:
//!
//! * `Drop`: best-effort synchronous removal inside a `drop` span; a panic inside is caught (a
//!   panic in `Drop` while unwinding would abort the process), errors become `WARN` events;
//! * `delete`: removal that reports errors, inside a `delete` span. The resource stays inside
//!   the guard until its removal has finished, so if the `delete` future is dropped half-way (a
//!   timeout), the guard's `Drop` removes whatever is left — removal is idempotent;
//! * `disarm`: `Drop` and `delete` no longer remove anything (what every guard's public
//!   `keep()` does, after replacing its ownership marks); the resource stays readable;
//! * `into_inner`: disarms and hands the resource over (to a composite that owns it now);
//! * [`roll_back`]: removal after a failure, inside a `rollback` span, returning the failure.

use std::future::Future;

use crate::{
    error::{Error, Result},
    trace,
};

/// Something a guard removes.
pub(crate) trait Resource: Send + Sync {
    /// What kind of object it is, for traces: `veth`, `bridge`, ...
    const KIND: &'static str;

    /// How errors and traces name it, e.g. `veth pair "a"/"b"`.
    fn describe(&self) -> String;

    /// The namespace it lives in, for traces.
    fn netns(&self) -> String;

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
    // `None` only once `delete`/`into_inner`/`drop` has ended the guard's duty.
    resource: Option<R>,
    armed: bool,
}

impl<R: Resource> Guard<R> {
    pub(crate) fn new(resource: R) -> Self {
        Guard {
            resource: Some(resource),
            armed: true,
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

    /// Whether dropping or deleting it removes the resource (false after `disarm`).
    pub(crate) fn is_armed(&self) -> bool {
        self.armed
    }

    /// Removes the resource now and reports errors. If this future is dropped before the
    /// removal finished, the guard's `Drop` finishes it. A disarmed guard removes nothing.
    pub(crate) async fn delete(self) -> Result<()> {
        let span = {
            let resource = self.get();
            trace::op!("delete", R::KIND, resource.describe(), resource.netns())
        };
        trace::timed(span, self.remove_now()).await
    }

    async fn remove_now(mut self) -> Result<()> {
        if !self.armed {
            return Ok(());
        }
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

    /// Disarms the guard: neither `Drop` nor `delete` removes the resource any more.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Disarms the guard and returns the resource, which will not be removed.
    pub(crate) fn into_inner(mut self) -> R {
        self.resource
            .take()
            .expect("a live guard always holds its resource")
    }
}

impl<R: Resource> Drop for Guard<R> {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take().filter(|_| self.armed) {
            let what = resource.describe();
            let span = trace::op!("drop", R::KIND, what, resource.netns());
            best_effort(span, &what, || {
                let removed = resource.remove_blocking();
                let finished = resource.finish(removed.is_ok());
                removed.and(finished)
            });
        }
    }
}

/// Removes what `guard` holds after `error` made an operation fail, tracing (not returning) a
/// failure to remove it, and returns `error`.
pub(crate) async fn roll_back<R: Resource>(guard: Guard<R>, error: Error) -> Error {
    let (what, netns) = (guard.get().describe(), guard.get().netns());
    let span = trace::op!("rollback", R::KIND, what, netns);
    let span_for_error = span.clone();
    let undone = trace::timed(span, guard.remove_now()).await;
    if let Err(undo) = undone {
        span_for_error.in_scope(|| trace::swallowed!(&what, &undo));
    }
    error
}

/// Runs a teardown from `Drop` inside `span`: never panics; what went wrong becomes a `WARN`
/// event.
pub(crate) fn best_effort(span: tracing::Span, what: &str, teardown: impl FnOnce() -> Result<()>) {
    let guarded = std::panic::AssertUnwindSafe(|| trace::timed_sync(span.clone(), teardown));
    match std::panic::catch_unwind(guarded) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => span.in_scope(|| trace::swallowed!(&what, &e)),
        Err(_) => span.in_scope(|| trace::swallowed!(&what, &"the teardown panicked")),
    }
}
