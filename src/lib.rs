//! Typed, leak-proof Linux network namespaces over rtnetlink.
//!
//! This first slice provides the crate's error type and validated names.

#[cfg(not(target_os = "linux"))]
compile_error!("netns-kit works only on Linux: network namespaces are a Linux kernel feature");

mod error;
mod name;

pub use error::{Error, NameKind, Result};
pub use name::{IFNAME_MAX, IFNAME_UNIQUE_PREFIX_MAX, IfName, NSNAME_MAX, NsName};
