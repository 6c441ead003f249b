//! Typed, leak-proof Linux network namespaces — with veth pairs, bridges, addresses and routes —
//! over rtnetlink.
//!
//! `netns-kit` turns the classic shell recipes for joining network namespaces (`ip netns add`,
//! `ip link add ... type veth peer ...`, `ip addr add`, `ip route add default via ...`) into a
//! typed async API whose every object is an RAII guard: it is torn down when dropped, also during a
//! panic, and an anonymous namespace vanishes even if the process is killed.
//!
//! It is meant for two kinds of users:
//!
//! * **container runtimes**, which want "give this namespace an `eth0` on bridge `cni0` with
//!   10.88.0.5/16 and a default route via 10.88.0.1", fast, with an error to show the user and
//!   nothing left behind on failure;
//! * **integration tests**, which want a few isolated hosts on a private network, able to bind
//!   sockets and run commands, gone when the test ends, never colliding with tests running in
//!   parallel.
//!
//! # Example
//!
//! The two classic patterns, each in one call, inside a private "host" namespace:
//!
//! ```no_run
//! use std::time::Duration;
//! use netns_kit::{MemberSpec, Namespace, bridged, connect};
//!
//! # async fn demo() -> netns_kit::Result<()> {
//! // Two namespaces joined by a veth pair ("a cable").
//! let (ns1, ns2) = (Namespace::new().await?, Namespace::new().await?);
//! let cable = connect(&ns1, &ns2)
//!     .address("10.0.1.1/24", "10.0.1.2/24")
//!     .create()
//!     .await?;
//! let rtt = ns1.ping("10.0.1.2".parse().unwrap(), Duration::from_secs(1)).await?;
//!
//! // Namespaces on a bridge whose address is their default gateway.
//! let host = Namespace::new().await?;
//! let lan = bridged()
//!     .host(&host)
//!     .gateway("10.0.2.254/24")
//!     .member(MemberSpec::new().address("10.0.2.1/24"))
//!     .member(MemberSpec::new().address("10.0.2.2/24"))
//!     .create()
//!     .await?;
//! let first = lan.members()[0].namespace();
//! first.ping("10.0.2.2".parse().unwrap(), Duration::from_secs(1)).await?;
//!
//! // Run code and programs inside a namespace.
//! let listener = first.run(|| std::net::TcpListener::bind("10.0.2.1:8080")).await?;
//! let status = first.command("ip").args(["route"]).status();
//! # drop((rtt, listener, status, cable));
//! # Ok(()) }
//! // Everything above is removed when it goes out of scope.
//! ```
//!
//! The same without async, as a synchronous program (a container runtime, a CNI plugin) writes
//! it — every async function has a `_blocking` twin:
//!
//! ```no_run
//! use netns_kit::{Namespace, connect};
//!
//! let (ns1, ns2) = (Namespace::new_blocking()?, Namespace::new_blocking()?);
//! let cable = connect(&ns1, &ns2)
//!     .address("10.0.1.1/24", "10.0.1.2/24")
//!     .create_blocking()?;
//! # Ok::<(), netns_kit::Error>(())
//! ```
//!
//! # Design
//!
//! The crate is layered. Each module belongs to one layer and uses only modules of its own
//! layer or lower ones, never a higher one, and no two modules use each other (a test,
//! `tests/layers.rs`, checks every `crate::` path in the source against this list):
//!
//! 1. **values** — `error` (the one [`Error`] type: each variant names the operation and the
//!    object and keeps the errno), `name` ([`IfName`]/[`NsName`], validated with the kernel's
//!    rules before any syscall), `ip` ([`IntoIpNetwork`] and host-address checks), `guard` (the
//!    guard contract, written once), `trace` (spans and events);
//! 2. **system** — `sys`, the only place that enters namespaces, mounts, or uses `unsafe`
//!    (namespaces are entered **only on threads this crate owns**: `setns` is per thread, and a
//!    caller's thread — say a Tokio worker — is never moved); `owner` (ownership marks);
//! 3. **netlink** — `netlink`: one rtnetlink connection per namespace, from a socket created
//!    inside it, so every request on it acts there; two transports (async, and batched blocking
//!    requests needing no runtime); the message helpers every object module shares; each
//!    blocking function is a one-line `block_on` over its async twin, which then runs every
//!    request through the blocking transport;
//! 4. **namespace** — `netns`: [`Namespace`], a namespace held by a file descriptor: anonymous,
//!    named (a bind mount under `/run/netns`, as `ip netns add` makes it), or opened (by name,
//!    path, pid or fd; never destroyed by us);
//! 5. **objects** — builders named after the `ip` commands they replace: `link` ([`Link`],
//!    [`VethPair`] — the peer created directly inside its namespace — and [`Bridge`]), `addr`
//!    ([`Address`], IPv4 and IPv6, with `nodad`), `route` ([`Route`], typed by IP version),
//!    `firewall` ([`forward_check`] and the scoped FORWARD fix), `probe` ([`Namespace::ping`]);
//! 6. **patterns** — `topology`: [`connect`] ([`DirectLink`]), [`bridged`]
//!    ([`BridgedNetwork`]) and [`routed`] ([`RoutedNetwork`], made of the other two), composed
//!    only from layer 5; `reap` ([`reap`]);
//! 7. **tools** — `lab` ([`lab::Lab`]): a private network per integration test, made of the
//!    patterns, with named hosts, processes, and keep-on-failure; `userns`
//!    ([`userns::isolate`]): the whole process into new user, network and mount namespaces, for
//!    use without root.
//!
//! # Naming
//!
//! One convention, everywhere. A builder comes from `Type::builder(..)` with what the object
//! cannot exist without (a name, a link, a destination); the patterns are functions named
//! for what they do ([`connect`], [`bridged`], [`routed`]) that return their builder. Setters take
//! `self` and are named after the `ip` option they stand for; the one terminal verb is `create()`,
//! which returns the guard. Where an object lives is a `namespace(&ns)` setter (default: the
//! caller's current namespace) unless it belongs to a link. Names are taken as `impl AsRef<str>`.
//! Operations are verbs (`set_up`, `enable_accept_forward`); collections change through
//! `add_x`/`remove_x` (`add_port`, `add_member`, `add_remote`); getters are nouns or
//! `is_`/`_enabled` predicates, and no getter shares a name with an action (a lookup is
//! `link_by_name`, not `link`). A link's two ends are `link()` and `peer()`; `peer` is only ever
//! the other end of a veth pair, `remote` a tunnel's far end, `link_group` a link group; an IP
//! version is a `version: u8`, 4 or 6. `Display` is how every object is
//! named in messages (`bridge "br0" in namespace "host"`). Every guard has `delete()` (remove
//! now, report errors) and `keep()`, which disarms it and returns the same guard, still usable
//! as a handle but owning nothing — exactly like an object opened rather than created. Every
//! async function `f` has a blocking twin `f_blocking`; functions that only make a system call
//! (opening a namespace file) are plain functions.
//!
//! # Blocking API
//!
//! Container runtimes are often synchronous, short-lived processes (a CNI plugin is one per
//! container), so every async function has a `_blocking` twin (`create_blocking`,
//! `delete_blocking`, [`Namespace::new_blocking`], ...), generated from the same body: same
//! validation, order of requests, rollback and errors. A blocking call performs its netlink
//! requests on the calling thread over a blocking socket, sending queued requests in one
//! `sendmsg`; it starts no async runtime, no reactor and no thread, except the library thread
//! that must enter a namespace to open a socket or create one there (the caller's thread never
//! changes namespace). It must not be called from async code, where the async twin belongs.
//! [`Namespace::run_blocking`] runs a closure in a namespace and waits for it.
//!
//! The async API needs no particular executor: netlink sockets are driven by one library thread
//! running its own current-thread Tokio runtime, started on the first async request. It is the
//! default feature `tokio`; a synchronous user can turn it off (`default-features = false`):
//! only the blocking API is built then, and neither Tokio nor that thread is part of the
//! program. [`Namespace::tokio_command`] exists only with the feature.
//!
//! # CNI plugin
//!
//! The crate `netns-kit-cni`, beside this one in its workspace, is a CNI plugin (spec 1.1.0)
//! interchangeable with the reference `bridge` plugin of containernetworking-plugins, written
//! only with this crate's public blocking API; it is how the library reaches containerd, CRI-O
//! and nerdctl. Its configuration, what differs from the reference and its measured cost are in
//! its README.
//!
//! # Tracing
//!
//! Everything the crate creates, rolls back, tears down or reaps is a [`tracing`] span at level
//! `DEBUG` (its target is the module that made it: `netns_kit::link::veth`, ...) with the kind of
//! object, the object, its namespace and, when it ends, how long it took; errors `Drop` must
//! swallow are `WARN` events. An application at the usual `INFO` filter sees only those; to see
//! the rest, enable `netns_kit=debug`, e.g. with
//! `tracing_subscriber::fmt().with_span_events(FmtSpan::CLOSE)` and an `EnvFilter`.
//!
//! # Guards
//!
//! Every object this crate creates is returned as a guard that owns it, and every guard follows
//! the same contract (modelled on `tempfile`):
//!
//! * **`Drop` tears down**, synchronously and best-effort: it needs no async runtime (it works
//!   after the runtime has shut down, on a plain thread, during a panic), never panics, and waits
//!   for the kernel at most a bounded time. Errors are swallowed and traced as `WARN` events
//!   (see [Tracing](#tracing)).
//! * **`delete(self).await`** (or `delete_blocking`) tears down the same way and **reports**
//!   errors; a composite goes on after a failure and reports every error it met, in one flat
//!   [`Error::Teardown`] list.
//! * **`keep(self)`** disarms the guard so the object outlives the program (what a container
//!   runtime wants once a container's network is set up), replaces its ownership marks so
//!   [`reap`] leaves it alone, and returns the same guard: still usable as a handle, owning
//!   nothing (dropping or deleting it removes nothing).
//! * Teardown is **idempotent**: something already gone counts as deleted.
//! * When a guard is *dropped* while the anonymous namespace its object lives in has already
//!   lost its handle, and nothing outside this crate can hold that namespace (no process started
//!   in it, no socket made in it, its fd never handed out), the object is not deleted on its
//!   own: the kernel frees the namespace with everything in it, in one batch, once the last
//!   guard goes. Deleting one link costs the kernel 15–40 ms; this costs nothing. An explicit
//!   `delete()` always deletes.
//! * Only what this crate **created** is deleted; opened namespaces and bridges are never
//!   destroyed.
//!
//! # Resource leaking
//!
//! What this crate guarantees, and where the guarantees end:
//!
//! * **Anonymous namespaces cannot leak.** They are held only by file descriptors (the handle's,
//!   its netlink socket's). When the process exits for any reason, `SIGKILL` included, the kernel
//!   closes them and frees each namespace with every interface in it — and a veth pair with one
//!   end in it is deleted whole. A test that builds everything inside a [`Namespace::new`] "host"
//!   leaves nothing behind, whatever happens to it. (Tested: a child building a 50-member
//!   bridged network is killed at 20 random moments of its setup; nothing remains.)
//! * **Guards tear down in every situation a destructor runs**: normal scope exit, a panic
//!   unwinding through them, after the async runtime has shut down, on a plain thread, after
//!   being moved between threads (every guard is `Send`). `Drop` never panics and waits for the
//!   kernel at most 10 s per step. An `iptables` run is bounded too: it runs in a process group
//!   of its own, killed whole at 10 s, and once `iptables` has exited nothing waits for a child it
//!   left holding its pipes; after one run times out, the rest of that teardown's runs are
//!   skipped. FORWARD rules hold the few file descriptors their removal needs from the moment
//!   they are inserted, so they are removed even in a process that ran out of descriptors.
//! * **Failures and cancellation leave nothing.** Every builder puts what it creates under a
//!   guard as soon as it is requested: if a later step fails, it is removed before the error is
//!   returned; if the future is dropped (a timeout), the guard's `Drop` removes it.
//! * **Named objects of a killed process can be reaped.** A named namespace is a bind mount, a
//!   bridge in a surviving namespace stays, firewall rules stay: a process killed before its
//!   guards ran leaves them behind, as a killed `ip netns add` script would. Every such object
//!   carries its owner's mark (PID namespace, process id and start time) from the moment it
//!   exists — both ends of a veth pair included — and [`reap`] removes exactly those whose owner
//!   is known to be dead: never anything unmarked (whatever its link group or alias), kept, owned
//!   by a running process, or owned by a process in a PID namespace the reaper cannot see.
//! * **The library's threads pin no namespace.** Its worker threads go back to the process's
//!   namespace after every job, and its netlink thread (with the sockets its runtime makes) is
//!   set up there even when the first request comes from inside [`Namespace::run`]: a dropped
//!   anonymous namespace is freed at once.
//! * Destructors do not run on [`std::process::exit`], on an abort, or for a guard leaked with
//!   [`std::mem::forget`]; then only the first and the fourth points apply.
//!
//! # Security
//!
//! * **Names cannot escape.** A namespace name is one path component (no `/`, `.`, `..` or NUL),
//!   checked before any syscall, so `/run/netns/NAME` stays inside `/run/netns`. Interface names
//!   follow the kernel's rules, minus `%` (which the kernel would expand as a template) and
//!   non-ASCII characters (some of whose bytes the kernel reads as spaces); neither kind of name
//!   may hold control characters (a newline, an escape sequence).
//! * **The reaper trusts nothing in `/run/netns`**: it opens an entry as a namespace only after
//!   checking, through an `O_PATH` descriptor, that it is one on nsfs (symbolic links are not
//!   followed), and reads a marked file only if it is a regular file of at most 128 bytes: a FIFO,
//!   a device or a huge file there is never read.
//! * **Only namespace files are opened as namespaces**: [`Namespace::open_path`] and
//!   [`Namespace::from_fd`] check that the file is on nsfs and of type `CLONE_NEWNET`, and
//!   [`Namespace::from_pid`] pins the process with a pidfd so a reused pid is not followed.
//! * **No shell, ever.** [`Namespace::command`] and the `iptables` calls execute programs
//!   directly with an argument vector; arguments are never interpreted.
//! * **Nothing global changes unless asked.** Sysctls are reachable only under `net.` (the
//!   per-namespace ones) and only through an explicit call; the FORWARD fix adds rules for one
//!   bridge, in one namespace, and removes them with it.
//! * **Only what this crate created is destroyed.** Opened namespaces are never deleted; a
//!   named namespace is unmounted only if its name still refers to the namespace we made; the
//!   reaper acts only on objects bearing a dead owner's mark.
//! * **The caller's threads never change namespace**: only library-owned threads do, and a
//!   helper program cannot outlive the process (it gets `SIGKILL` when its parent thread ends).
//!
//!
//! # The FORWARD mystery
//!
//! The classic bridge recipe (namespaces on `br0`, the bridge's address as their gateway) often
//! carries `iptables -A FORWARD -i br0 -j ACCEPT`, added "for unknown reasons".
//! The reason: with `br_netfilter` active, the per-namespace sysctl
//! `net.bridge.bridge-nf-call-iptables` (1 by default in every namespace) makes IPv4 frames
//! that are merely *bridged* between two ports of `br0` traverse the iptables `FORWARD` chain as
//! if they were routed (`bridge-nf-call-ip6tables` does the same for IPv6). Docker, and other
//! tools, set that chain's policy to `DROP`. So on a machine running Docker two namespaces on one
//! bridge cannot reach each other until a rule accepts their traffic. (The bridge's own
//! `nf_call_iptables` option is ORed with the sysctl, so clearing it alone does not help.)
//!
//! This crate explains rather than guesses:
//!
//! * [`forward_check`] reads the sysctls and the `FORWARD` policies of a namespace and says
//!   whether bridged traffic would be dropped ([`ForwardCheck::needs_fix`]);
//! * [`BridgeBuilder::accept_forward`] (and [`BridgedNetworkBuilder::accept_forward`], or
//!   [`Bridge::enable_accept_forward`] and [`BridgedNetwork::enable_accept_forward`] on a live
//!   one) is the opt-in, scoped fix: `ACCEPT` rules for that bridge only, in and out, IPv4 and
//!   IPv6, **inserted** at the top of the chain (an appended rule would come after a trailing
//!   `REJECT`), tagged with the owning process, and removed with the bridge. It runs the system's
//!   `iptables`, so it works with both the nf_tables and the legacy backends. It leaves no trace:
//!   rules go only into `filter` tables that exist (a family without one accepts everything),
//!   so after teardown `iptables-save` and `ip6tables-save` print exactly what they printed
//!   before.
//!
//! Nothing global is changed: neither `bridge-nf-call-iptables` nor `ip_forward` is touched
//! unless you call [`Namespace::set_sysctl`] yourself. Inside a fresh namespace the firewall is
//! empty and accepts everything, so tests need no fix.
//!
//! # Privileges
//!
//! - create a namespace ([`Namespace::new`]), enter one ([`Namespace::run`],
//!   [`Namespace::command`]): `CAP_SYS_ADMIN`;
//! - name a namespace ([`Namespace::named`]), remove a name: `CAP_SYS_ADMIN` (mounts under
//!   `/run/netns`, writable by root);
//! - open a namespace by name, path, pid: read access to the file (`/proc/PID/ns/net`: ptrace
//!   access to the process);
//! - links, addresses, routes; `net.*` sysctl writes; `iptables`: `CAP_NET_ADMIN` in that
//!   namespace;
//! - [`Namespace::ping`]: `CAP_NET_RAW` (a raw ICMP socket);
//! - [`reap`]: all of the above, for what it removes.
//!
//! In practice: run as root. A missing privilege is reported as [`Error::PermissionDenied`],
//! whose message says so.
//!
//! # Cancel safety
//!
//! A netlink request, once sent, is carried out by the kernel whether or not its future is still
//! awaited; dropping a future of this crate therefore never leaves a request half-sent, but may
//! leave its effect in place without a guard to undo it. Each async function's documentation says
//! what dropping it early leaves behind.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!("netns-kit works only on Linux: network namespaces are a Linux kernel feature");

mod addr;
mod error;
mod firewall;
mod guard;
mod ip;
pub mod lab;
mod link;
mod name;
mod netlink;
mod netns;
mod owner;
mod probe;
mod reap;
mod route;
mod sys;
mod topology;
mod trace;
pub mod userns;

pub use addr::{Address, AddressBuilder, AddressInfo};
pub use error::{Error, NameKind, Result};
#[cfg(feature = "tokio")]
pub use firewall::forward_check;
pub use firewall::{ForwardCheck, forward_check_blocking};
pub use ip::IntoIpNetwork;
pub use link::{
    Link, LinkInfo, MacAddr, OperState,
    bridge::{Bridge, BridgeBuilder},
    macvlan::{Macvlan, MacvlanBuilder, MacvlanMode},
    veth::{VethPair, VethPairBuilder},
    vxlan::{VXLAN_OVERHEAD_V4, VXLAN_PORT, Vxlan, VxlanBuilder},
};
pub use name::{IFNAME_MAX, IFNAME_UNIQUE_PREFIX_MAX, IfName, NSNAME_MAX, NsName};
pub use netns::{Namespace, NamespaceBuilder};
#[cfg(feature = "tokio")]
pub use reap::reap;
pub use reap::{Reaped, reap_blocking};
pub use route::{Route, RouteBuilder, RouteDestination, RouteInfo};
pub use topology::{
    BridgedNetwork, BridgedNetworkBuilder, DirectLink, DirectLinkBuilder, Member, MemberSpec,
    RoutedNetwork, RoutedNetworkBuilder, RouterLink, bridged, connect, routed,
};

/// Re-exported so the address types in this crate's API can be named without a separate
/// dependency.
pub use ipnetwork;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
