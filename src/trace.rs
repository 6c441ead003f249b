//! What the crate does, as [`tracing`] spans and events: what was created, rolled back, torn
//! down or reaped, in which namespace, and how long it took.
//!
//! Every span has level `DEBUG`, the module that made it as its target (`netns_kit::link::veth`,
//! `netns_kit::topology::bridged`, ...: a filter `netns_kit=debug` selects them all), one of the
//! names `create`, `delete`, `drop`, `rollback`, `reap` and `member`, and the fields
//!
//! * `kind` — what it acts on: `namespace`, `veth`, `bridge`, `address`, `route`,
//!   `direct link`, `bridged network`, ...;
//! * `object` — the object as errors name it (`bridge "br0" in namespace "host"`);
//! * `netns` — the namespace it lives in;
//! * `elapsed_us` — recorded when it ends (a subscriber printing span closes, such as
//!   `tracing_subscriber::fmt` with `FmtSpan::CLOSE`, shows it);
//! * `error` — recorded if it failed.
//!
//! Errors that `Drop` must swallow are `WARN` events inside their `drop` span, so an application
//! at its default `INFO` filter sees only those: the library's routine work stays quiet, as
//! rtnetlink's and Tokio's does. With no
//! subscriber installed all of this costs a few atomic loads per operation; the bench measures
//! the cost with a `fmt` subscriber (`ratio bridged N=100 setup traced/untraced`).

use std::{future::Future, time::Instant};

use tracing::{Instrument, Span};

use crate::error::Result;

/// The span of one operation; see the [module docs](self).
macro_rules! op {
    ($name:literal, $kind:expr, $object:expr, $netns:expr $(,)?) => {
        tracing::debug_span!(
            $name,
            kind = $kind,
            object = %$object,
            netns = %$netns,
            elapsed_us = tracing::field::Empty,
            error = tracing::field::Empty,
        )
    };
}
pub(crate) use op;

fn finish<T>(span: &Span, start: Instant, result: &Result<T>) {
    span.record("elapsed_us", start.elapsed().as_micros() as u64);
    if let Err(e) = result {
        span.record("error", tracing::field::display(e));
    }
}

/// Runs `future` inside `span`, then records its duration and error.
pub(crate) async fn timed<T>(span: Span, future: impl Future<Output = Result<T>>) -> Result<T> {
    let start = Instant::now();
    let result = future.instrument(span.clone()).await;
    finish(&span, start, &result);
    result
}

/// Runs `f` inside `span`, then records its duration and error.
pub(crate) fn timed_sync<T>(span: Span, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let result = span.in_scope(f);
    finish(&span, start, &result);
    result
}

/// A `WARN` event for an error that could not be reported to the caller (target: the calling
/// module).
macro_rules! swallowed {
    ($what:expr, $error:expr $(,)?) => {
        tracing::warn!(object = %$what, error = %$error, "could not clean up")
    };
}
pub(crate) use swallowed;
