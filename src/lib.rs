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
//! # What to use for what
//!
//! | task | use |
//! | --- | --- |
//! | two namespaces joined by a cable (a veth pair) | [`connect`] → [`DirectLink`] |
//! | namespaces on a bridge whose address is their gateway | [`bridged`] → [`BridgedNetwork`] |
//! | subnets joined by a router namespace | [`routed`] → [`RoutedNetwork`] |
//! | a container's `eth0` on the runtime's bridge | [`Bridge::open`], then [`existing_bridge`] |
//! | a few hosts on a private network for one test | [`lab::Lab`] |
//! | all of it without root | [`userns::isolate`], [`isolated_test!`] |
//! | removing what a killed process left | [`reap`] |
//! | a CNI plugin (containerd, CRI-O, Podman) | the crate `netns-kit-cni` ([below](#cni-plugin)) |
//! | one object at a time | [`Namespace`], [`VethPair`], [`Bridge`], [`Address`], [`Route`] |
//! | a VXLAN tunnel, a macvlan link | [`Vxlan`], [`Macvlan`] |
//! | a link that delays, loses, reorders or rate-limits | [`Link::impair`] ([`impair`]) |
//! | hosts cut off from each other, then healed | [`impair::partition`], [`Link::cut`], [`lab::Lab::partition`] |
//! | a pcap of what a link carried | [`Link::capture`], [`lab::Lab::capture`] |
//!
//! [`existing_bridge`]: BridgedNetworkBuilder::existing_bridge
//!
//! Names follow one convention: `Type::builder(..)` or a pattern function, setters named after
//! the `ip` option, `create()` to make, `delete()` to remove now with errors reported, `keep()`
//! to let the object outlive the program, `f_blocking` for the blocking form of `f`.
//!
//! # Blocking API
//!
//! Container runtimes are often synchronous, short-lived processes (a CNI plugin is one per
//! container), so every async function has a `_blocking` form (`create_blocking`,
//! `delete_blocking`, [`Namespace::new_blocking`], ...): a one-line wrapper that runs the async
//! function to completion on the calling thread, so validation, order of requests, rollback and
//! errors are the same. Its netlink requests go out from the calling thread over a blocking
//! socket, queued requests in one `sendmsg`; it must not be called from async code.
//! [`Namespace::run_blocking`] runs a closure in a namespace and waits for it.
//!
//! # Threads
//!
//! The caller's threads never change namespace. What the library starts:
//!
//! * **worker threads** (`netns-kit-worker`, at most 2–4 by CPU count), started when a job must
//!   enter another namespace (creating one, opening a socket inside one, a sysctl) and no worker
//!   is idle; each exits after 250 ms without a job. A blocking program that dropped everything
//!   has only its own threads again within a second (`tests/threads.rs` checks it);
//! * with the async API only, **one netlink thread** (`netns-kit-netlink`) running a
//!   current-thread Tokio runtime that drives every async connection, started on the first async
//!   request; it stays for the life of the process. The async API therefore needs no particular
//!   executor. It is the default feature `tokio`; with `default-features = false` only the
//!   blocking API is built, and neither Tokio nor that thread is part of the program
//!   ([`Namespace::tokio_command`] exists only with the feature);
//! * a short-lived thread per [`Namespace::run`] call (the closure's), per readiness wait (none
//!   for a network of one or two members built with the blocking API whose links carry traffic
//!   already when asked, as a runtime's one container usually does), and per `iptables` run of
//!   the FORWARD fix.
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
//!   left holding its pipes; after one run times out, every later run for the same rules (the
//!   other IP family, the roll-back of a failed creation, the teardown) is skipped, so a
//!   creation fails and a teardown ends within those 10 s (FORWARD and isolation rules left
//!   behind carry their owner's mark, for [`reap`]). FORWARD rules hold the few file
//!   descriptors their removal needs from the moment they are inserted, so they are removed
//!   even in a process that ran out of descriptors.
//! * **Failures and cancellation leave nothing.** Every builder puts what it creates under a
//!   guard as soon as it is requested: if a later step fails, it is removed before the error is
//!   returned; if the future is dropped (a timeout), the guard's `Drop` removes it — or, for a
//!   step that was running on a library thread at that moment, that thread undoes it as soon
//!   as the step ends. Such work is owed: a process that ends normally (`main` returns,
//!   `std::process::exit`) waits for it at exit, up to 15 s, so a program that times out a
//!   `create` and exits at once leaves nothing. On `SIGKILL` nothing runs: see the next point.
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
//!   [`std::mem::forget`]; then only the first and the fourth points apply (and, for
//!   `std::process::exit`, the wait for owed work).
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
//!   bridge, in one namespace, and removes them with it; a bridged network whose members have
//!   IPv6, on a bridge of its own, adds one nf_tables table that drops its own members' MLD reports and router
//!   solicitations on their way to other members (see
//!   [`BridgedNetworkBuilder::filter_router_messages`]), and removes it with it.
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
pub mod impair;
mod ip;
pub mod ipam;
pub mod lab;
mod link;
mod name;
pub mod nat;
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
