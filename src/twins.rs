//! Every async operation and its blocking twin, written once.
//!
//! `twins!` takes an `async fn` with its documentation and emits two public functions with the
//! same body: the async one (public only with the `tokio` feature; crate-internal without it, so
//! the crate's own async code can still call it), and `NAME_blocking`, which runs the
//! body to completion on the calling thread through the batched netlink transport (see
//! [`netlink::block_on`](crate::netlink::block_on)): no async runtime, no reactor, no thread of
//! its own. Writing the body once keeps both APIs identical in validation, ordering, rollback and
//! errors. Methods are written `async fn name / name_blocking(...)`; free functions start with
//! `free`.

/// Emits `async fn $name` (feature `tokio`) and `fn $blocking` from one body.
macro_rules! twins {
    (
        $(#[$attr:meta])*
        $vis:vis async fn $name:ident / $blocking:ident ($($args:tt)*) -> $ret:ty $body:block
    ) => {
        $(#[$attr])*
        #[cfg(feature = "tokio")]
        $vis async fn $name($($args)*) -> $ret $body

        // Without the async API, still there for the crate's own async code (run by the
        // blocking twins).
        #[cfg(not(feature = "tokio"))]
        #[allow(dead_code)]
        pub(crate) async fn $name($($args)*) -> $ret $body

        #[doc = concat!(
            "The blocking twin of [`", stringify!($name), "`](Self::", stringify!($name), "): ",
            "the same work, checks and errors, waiting on the calling thread without an async ",
            "runtime (see [the blocking API](crate#blocking-api)). Do not call it from async code."
        )]
        $vis fn $blocking($($args)*) -> $ret {
            $crate::netlink::block_on(async move $body)
        }
    };
    (
        free
        $(#[$attr:meta])*
        $vis:vis async fn $name:ident / $blocking:ident ($($args:tt)*) -> $ret:ty $body:block
    ) => {
        $(#[$attr])*
        #[cfg(feature = "tokio")]
        $vis async fn $name($($args)*) -> $ret $body

        // Without the async API, still there for the crate's own async code (run by the
        // blocking twins).
        #[cfg(not(feature = "tokio"))]
        #[allow(dead_code)]
        pub(crate) async fn $name($($args)*) -> $ret $body

        #[doc = concat!(
            "The blocking twin of [`", stringify!($name), "`]: ",
            "the same work, checks and errors, waiting on the calling thread without an async ",
            "runtime (see [the blocking API](crate#blocking-api)). Do not call it from async code."
        )]
        $vis fn $blocking($($args)*) -> $ret {
            $crate::netlink::block_on(async move $body)
        }
    };
}

pub(crate) use twins;
