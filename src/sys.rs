//! The only module that enters namespaces, mounts, or uses `unsafe`.
//!
//! # Threads the library owns
//!
//! `setns(2)` and `unshare(2)` with `CLONE_NEWNET` change the namespace of the *calling thread*
//! only. A thread of the caller (a Tokio worker, the test harness's thread) must never be left in
//! a foreign namespace, not even when the code that runs there panics, so this crate changes
//! namespaces only on threads it owns:
//!
//! * a small pool of **worker threads** for the library's own short jobs (create a namespace and
//!   set up what lives in it, open a netlink or ICMP socket inside one, read a sysctl), started
//!   on demand: a job starts one when more jobs wait than workers are idle (at most 2–4, by CPU
//!   count); sockets and sysctls of the caller's own namespace need none (they are made and
//!   written on the calling thread), an in-process ping always uses one. A worker that has had no job for 250 ms exits, so a program that stopped using
//!   the library has only its own threads again. A worker starts in the
//!   process's namespace (`/proc/self/ns/net`, the main thread's) and goes back there after
//!   *every* job, whatever the job did, so it never pins a namespace the caller has dropped. (Every
//!   job enters the namespace it needs first, so where a worker starts does not affect what a job
//!   does, only what it pins.) If a worker cannot go back it exits, ending the pin, and starts a
//!   replacement, which begins by going home itself. Keeping the threads alive between jobs,
//!   rather than spawning one per job, keeps thread creation off the hot path (a namespace costs
//!   ~0.5 ms to make; a thread spawn would add a noticeable fraction of that);
//! * a **fresh scoped thread per [`Namespace::run`](crate::Namespace::run)** for the caller's own
//!   closures, which may block or panic; the thread ends with the closure, and with it the
//!   namespace association.
//!
//! A socket keeps the namespace it was created in, whichever thread later uses it, so the sockets
//! made on these threads are handed back and used from anywhere.
//!
//! # Why `/proc/thread-self`
//!
//! After `unshare(CLONE_NEWNET)` on a non-main thread, `/proc/self/ns/net` still names the
//! *process's* (main thread's) namespace; `/proc/thread-self/ns/net` names the thread's.
//!
//! # Named namespaces
//!
//! [`ensure_run_dir`], [`create_ns_file`] and [`bind_ns`] do exactly what `ip netns add` does
//! (iproute2 `ip/ipnetns.c`): make `/run/netns` a shared mount (binding it onto itself first if it
//! is not a mount point), create the file with `O_EXCL`, then bind-mount the namespace onto it, so
//! `ip netns exec` and every other tool see it.

#![allow(unsafe_code)]

use std::{
    collections::VecDeque,
    fs, io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::{
            fs::{DirBuilderExt, OpenOptionsExt},
            process::CommandExt,
        },
    },
    path::Path,
    sync::{Arc, Condvar, Mutex, OnceLock, mpsc},
    time::Duration,
};

use nix::{
    libc,
    mount::{MntFlags, MsFlags},
    sched::CloneFlags,
};

/// Where ip-netns(8) keeps named namespaces.
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

// ---------------------------------------------------------------------------------------------
// Namespace syscalls. `unshare_net` and `setns_net` must only run on threads this crate owns.

/// Moves the calling thread into a brand-new network namespace.
pub(crate) fn unshare_net() -> io::Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(errno)
}

/// Moves the calling thread into the network namespace `fd` refers to.
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::sched::setns(fd, CloneFlags::CLONE_NEWNET).map_err(errno)
}

/// Opens the calling thread's network namespace.
pub(crate) fn open_thread_ns() -> io::Result<OwnedFd> {
    open_ns_file(Path::new("/proc/thread-self/ns/net"))
}

/// Opens the process's (main thread's) network namespace.
pub(crate) fn open_process_ns() -> io::Result<OwnedFd> {
    open_ns_file(Path::new("/proc/self/ns/net"))
}

fn open_ns_file(path: &Path) -> io::Result<OwnedFd> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    Ok(OwnedFd::from(file))
}

/// What an opened file turned out to be, when it is not a network namespace.
#[derive(Debug)]
pub(crate) enum NotNetNs {
    /// An I/O error while checking.
    Io(io::Error),
    /// Something else, described.
    Other(String),
}

/// Opens `path` and checks that it is a network namespace file (nsfs, of type `net`), without
/// ever reading from or blocking on anything else: the path is first opened with `O_PATH`
/// (which neither reads, nor blocks on a FIFO, nor opens a device), its filesystem checked to be
/// nsfs, and only then reopened for real through `/proc/self/fd`. With `follow` false a symbolic
/// link is refused rather than followed (for names found in `/run/netns`).
pub(crate) fn open_net_ns_at(path: &Path, follow: bool) -> Result<OwnedFd, NotNetNs> {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path);
    let pathfd = match file {
        Ok(file) => OwnedFd::from(file),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && !follow => {
            return Err(NotNetNs::Other(
                "a symbolic link, not a namespace file".to_owned(),
            ));
        }
        Err(e) => return Err(NotNetNs::Io(e)),
    };
    let fs = nix::sys::statfs::fstatfs(&pathfd).map_err(|e| NotNetNs::Io(errno(e)))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(NotNetNs::Other(
            "not a namespace file (not on nsfs)".to_owned(),
        ));
    }
    let fd = open_ns_file(Path::new(&format!("/proc/self/fd/{}", pathfd.as_raw_fd())))
        .map_err(NotNetNs::Io)?;
    check_net_ns(fd.as_fd())?;
    Ok(fd)
}

/// [`open_net_ns_at`], following symbolic links (`/proc/PID/ns/net` is one).
pub(crate) fn open_net_ns(path: &Path) -> Result<OwnedFd, NotNetNs> {
    open_net_ns_at(path, true)
}

/// Checks that `fd` refers to a network namespace: on nsfs (`NSFS_MAGIC`), and of type
/// `CLONE_NEWNET` according to the `NS_GET_NSTYPE` ioctl (ioctl_ns(2)).
pub(crate) fn check_net_ns(fd: BorrowedFd<'_>) -> Result<(), NotNetNs> {
    let fs = nix::sys::statfs::fstatfs(fd).map_err(|e| NotNetNs::Io(errno(e)))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(NotNetNs::Other(
            "not a namespace file (not on nsfs)".to_owned(),
        ));
    }
    // _IO(0xb7, 0x3), from <linux/nsfs.h>.
    const NS_GET_NSTYPE: libc::Ioctl = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns an int; `fd` is a valid open fd
    // for the duration of the call (it is borrowed).
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) };
    if kind < 0 {
        return Err(NotNetNs::Io(io::Error::last_os_error()));
    }
    if kind != libc::CLONE_NEWNET {
        return Err(NotNetNs::Other(
            "a namespace of another type, not a network namespace".to_owned(),
        ));
    }
    Ok(())
}

/// Sets `FD_CLOEXEC` on `fd`, so programs this process starts do not inherit it.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFD).map_err(errno)?;
    let flags = FdFlag::from_bits_retain(flags) | FdFlag::FD_CLOEXEC;
    fcntl(fd, FcntlArg::F_SETFD(flags)).map_err(errno)?;
    Ok(())
}

/// Makes `command` receive SIGKILL if the thread that started it ends (with its process,
/// even by `SIGKILL`), so a helper program (`iptables`) or a lab's server never outlives this
/// process and acts after it is gone. If this process dies between the fork and the `prctl`,
/// the child sees a new parent and does not run at all.
pub(crate) fn kill_with_parent(command: &mut std::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec; it makes two syscalls
    // (prctl(2) and getppid(2), both async-signal-safe, no allocation) and returns.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// The (device, inode) pair that identifies the namespace `fd` refers to.
pub(crate) fn ns_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd).map_err(errno)?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether the calling thread is in the namespace `fd` refers to (then a socket for it can be
/// made right here, without a library thread).
pub(crate) fn is_thread_ns(fd: BorrowedFd<'_>) -> bool {
    matches!(
        (ns_id(fd), path_id(Path::new("/proc/thread-self/ns/net"))),
        (Ok(a), Ok(Some(b))) if a == b
    )
}

/// The (device, inode) of what `path` resolves to, or `None` if it does not exist.
pub(crate) fn path_id(path: &Path) -> io::Result<Option<(u64, u64)>> {
    match nix::sys::stat::stat(path) {
        Ok(st) => Ok(Some((st.st_dev, st.st_ino))),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// Opens the network namespace of process `pid`, robustly against pid reuse: a pidfd pins the
/// process first; if the process is still running after `/proc/PID/ns/net` was opened, the file
/// opened was that process's.
pub(crate) fn open_pid_ns(pid: u32) -> Result<OwnedFd, NotNetNs> {
    let pid_t = libc::pid_t::try_from(pid)
        .map_err(|_| NotNetNs::Io(io::Error::from_raw_os_error(libc::ESRCH)))?;
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1; no memory
    // is shared with the kernel.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_t, 0) };
    if raw < 0 {
        return Err(NotNetNs::Io(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd returned by pidfd_open that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let ns = open_net_ns(Path::new(&format!("/proc/{pid}/ns/net")))?;
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO)
        .map_err(|e| NotNetNs::Io(errno(e)))?;
    if ready > 0 {
        // The pidfd is readable: the process exited, so /proc/PID may have been someone else.
        return Err(NotNetNs::Io(io::Error::from_raw_os_error(libc::ESRCH)));
    }
    Ok(ns)
}

// ---------------------------------------------------------------------------------------------
// Named namespaces under /run/netns, as `ip netns add` makes them.

static RUN_DIR_LOCK: Mutex<()> = Mutex::new(());

/// Makes sure `dir` exists and is a shared mount point, as `ip netns add` does.
pub(crate) fn ensure_run_dir(dir: &Path) -> io::Result<()> {
    let _serialise = RUN_DIR_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Across processes too: two processes making `dir` a mount point at once would each bind
    // it onto itself, stacking mounts. `flock` on the directory serialises them (both open the
    // same directory; the second finds the mount point the first made). Held until return.
    let lock = fs::File::open(dir)?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| errno(e))
        .map(|held| -> io::Result<()> {
            let result = make_shared_mount(dir);
            drop(held);
            result
        })?
}

/// Makes `dir` a shared mount point, binding it onto itself first if it is not one.
fn make_shared_mount(dir: &Path) -> io::Result<()> {
    let shared = || {
        nix::mount::mount(
            None::<&str>,
            dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make that shared.
            nix::mount::mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(errno)?;
            shared().map_err(errno)
        }
        Err(e) => Err(errno(e)),
    }
}

/// Claims `dir/name` atomically with a file holding `mark`: the mark is written to the
/// temporary `dir/temp` first, which is then hard-linked to `dir/name` (`link(2)` fails with
/// `EEXIST` if the name is taken) and unlinked. No moment exists at which `dir/name` exists
/// without the mark.
pub(crate) fn claim_ns_file(dir: &Path, name: &str, temp: &str, mark: &str) -> io::Result<()> {
    use std::io::Write;
    let temp = dir.join(temp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .custom_flags(libc::O_CLOEXEC)
        .open(&temp)?;
    let written = file.write_all(mark.as_bytes());
    drop(file);
    let linked = written.and_then(|()| fs::hard_link(&temp, dir.join(name)));
    let _ = fs::remove_file(&temp);
    linked
}

/// Bind-mounts the namespace `fd` refers to onto `target`.
pub(crate) fn bind_ns(fd: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(
        Some(source.as_str()),
        target,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(errno)
}

/// Detaches the bind mount at `path` and removes the file, as `ip netns del` does. A missing
/// mount or file counts as done.
/// The contents of `path` if it is a regular file (not followed if a symbolic link) of at most
/// `max` bytes. Inspected through an `O_PATH` descriptor first, so a FIFO, a device or a huge
/// file is never opened for reading.
pub(crate) fn read_small_file(path: &Path, max: u64) -> Option<Vec<u8>> {
    let pathfd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let st = nix::sys::stat::fstat(&pathfd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 > max {
        return None;
    }
    let file = fs::File::open(format!("/proc/self/fd/{}", pathfd.as_raw_fd())).ok()?;
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, max + 1), &mut content).ok()?;
    (content.len() as u64 <= max).then_some(content)
}

pub(crate) fn unmount_and_unlink(path: &Path) -> io::Result<()> {
    // Every mount stacked on the name (two `mount --bind` over one file), not only the top one:
    // the file cannot be removed while one is left (EBUSY).
    for _ in 0..64 {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(errno(e)),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes that start inside a namespace.

/// Makes `cmd` enter the namespace `fd` refers to between `fork` and `exec`, as
/// `ip netns exec` does. The parent never changes namespace; no shell is involved.
pub(crate) fn enter_before_exec(cmd: &mut std::process::Command, fd: Arc<OwnedFd>) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed. It makes one setns(2) syscall and allocates nothing (the error path builds
    // an io::Error from a raw errno, which does not allocate). The fd it names stays open in the
    // child: the fork copied the parent's fd table while `fd`, moved into the closure and so alive
    // as long as `cmd`, kept it open. Every namespace fd this crate holds has FD_CLOEXEC (opened
    // with O_CLOEXEC, or set by `Namespace::from_fd`), so the program exec'd does not inherit it.
    unsafe {
        cmd.pre_exec(move || setns_net(fd.as_fd()));
    }
}

// ---------------------------------------------------------------------------------------------
// Worker threads.

type Job = Box<dyn FnOnce() + Send + 'static>;

static HOME: OnceLock<OwnedFd> = OnceLock::new();

/// Whether a library thread has been given a home namespace yet: after that, the process must
/// not move to another one (see [`userns::isolate`](crate::userns::isolate)), even once its idle
/// workers have exited.
pub(crate) fn home_opened() -> bool {
    HOME.get().is_some()
}

/// The process's own network namespace (the main thread's), opened once: where library
/// threads go back to, so that they pin no namespace a caller has dropped.
fn home() -> io::Result<&'static OwnedFd> {
    static OPENING: Mutex<()> = Mutex::new(());
    if let Some(fd) = HOME.get() {
        return Ok(fd);
    }
    let _one_at_a_time = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(fd) = HOME.get() {
        return Ok(fd);
    }
    let fd = open_process_ns()?;
    Ok(HOME.get_or_init(|| fd))
}

/// Moves the calling thread — one this crate owns — into the process's own namespace.
#[cfg(feature = "tokio")]
pub(crate) fn enter_home() -> io::Result<()> {
    setns_net(home()?.as_fd())
}

/// How long a worker waits for a job before it exits. Back-to-back jobs (the members of a
/// network, a loop creating namespaces) keep workers alive; a process that has stopped using the
/// library has only its own threads again shortly after.
const IDLE_EXIT: Duration = Duration::from_millis(250);

/// The worker pool. Workers start on demand: a job starts a new one only when more jobs wait
/// than workers are idle, up to `size`, so a program that enters one namespace at a time (a CNI
/// plugin, a runtime's command) has one worker, and one that needs none has none. A worker with
/// no job for [`IDLE_EXIT`] exits.
///
/// Every decision — take a job, start a worker, exit — is made under the one `state` lock, so a
/// job submitted just as a worker decides to exit is either seen by that worker or starts a new
/// one.
struct Pool {
    state: Mutex<PoolState>,
    wake: Condvar,
    home: &'static OwnedFd,
    size: usize,
}

struct PoolState {
    queue: VecDeque<Job>,
    alive: usize,
    /// Workers waiting for a job, or finishing one whose result is already handed over.
    idle: usize,
    /// Workers spawned that have not counted themselves idle yet: each takes a queued job as
    /// soon as it has started, so no second one is spawned for it.
    starting: usize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool() -> io::Result<&'static Pool> {
    // Only success is cached: a failure (say EMFILE) is reported and retried next time.
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let home = home()?;
    // The CPUs this process may run on (one syscall; `available_parallelism` also reads the
    // cgroup's CPU quota from four files, a tenth of a millisecond of a CNI plugin's ADD).
    let size = cpus().clamp(2, 4);
    Ok(POOL.get_or_init(|| Pool::new(home, size)))
}

/// How many CPUs the calling thread may run on (2 if that cannot be read).
fn cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_or(2, |set| {
        (0..nix::sched::CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count()
    })
}

impl Pool {
    /// A pool with no worker yet, whose workers go home to `home`, at most `size` at once.
    fn new(home: &'static OwnedFd, size: usize) -> Pool {
        Pool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                alive: 0,
                idle: 0,
                starting: 0,
            }),
            wake: Condvar::new(),
            home,
            size,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a worker if more jobs wait than workers are idle and the pool is not full.
    /// Called with the state locked; `Err` only when no worker is alive to take the jobs.
    /// (Counting waiting jobs, not only idle workers, matters when many jobs come at once —
    /// the members of a bridged network are built concurrently — where one idle worker would
    /// otherwise take them all in turn.)
    fn grow(&'static self, state: &mut PoolState) -> io::Result<()> {
        if state.alive >= self.size || state.idle + state.starting >= state.queue.len() {
            return Ok(());
        }
        self.spawn(state)
    }

    /// Starts one more worker. Called with the state locked; `Err` only when no worker is
    /// alive.
    fn spawn(&'static self, state: &mut PoolState) -> io::Result<()> {
        state.alive += 1;
        state.starting += 1;
        let spawned = std::thread::Builder::new()
            .name("netns-kit-worker".into())
            .spawn(move || worker(self));
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                state.alive -= 1;
                state.starting -= 1;
                if state.alive == 0 { Err(e) } else { Ok(()) }
            }
        }
    }
}

/// Starts a worker now if none is idle or starting (and the pool is not full), for a job the
/// caller is about to submit once its own checks are done: the thread's start (its stack,
/// its allocator arena, its way home: a tenth of a millisecond or more on a 2-vCPU VM) can then
/// run on another CPU beside those checks, instead of before the job. (Where the scheduler
/// keeps it on the caller's CPU, as the development VM's mostly did, it gains little.) A worker started so
/// for a job that never comes exits after [`IDLE_EXIT`], as any idle one does. Failing to
/// start one is not reported: the job's own submission tries again and says why.
pub(crate) fn start_worker_early() {
    let Ok(pool) = pool() else { return };
    let mut state = pool.lock();
    if state.alive < pool.size && state.idle + state.starting == 0 {
        let _ = pool.spawn(&mut state);
    }
}

thread_local! {
    /// Whether this worker already counts itself idle for the job it is finishing.
    static AVAILABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Whether this thread is a library worker.
    static WORKER: std::cell::Cell<Option<&'static Pool>> = const { std::cell::Cell::new(None) };
}

/// Whether the calling thread is a library worker: a job on it may enter any namespace, since
/// the worker goes back to its own after every job.
pub(crate) fn on_worker_thread() -> bool {
    WORKER.get().is_some()
}

/// Called by a job on a worker once its work is done, before it hands over its result: the
/// worker counts as idle from here, so a caller that submits its next job as soon as it has the
/// result does not start a second worker while this one is only going home.
fn available() {
    if let Some(pool) = WORKER.get()
        && !AVAILABLE.replace(true)
    {
        pool.lock().idle += 1;
    }
}

fn worker(pool: &'static Pool) {
    // The spawning thread may itself have been in a foreign namespace. Every job enters the
    // namespace it needs before doing anything, so a worker that cannot go home still serves
    // correctly; it only pins the namespace it is in, hence the retries after each job.
    let _ = setns_net(pool.home.as_fd());
    WORKER.set(Some(pool));
    {
        let mut state = pool.lock();
        state.starting -= 1;
        state.idle += 1;
    }
    AVAILABLE.set(true);
    loop {
        let job = {
            let mut state = pool.lock();
            let deadline = std::time::Instant::now() + IDLE_EXIT;
            loop {
                if let Some(job) = state.queue.pop_front() {
                    state.idle -= 1;
                    break job;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    // Nothing queued, decided under the lock: a job submitted from now on
                    // sees one worker fewer and starts another if needed.
                    state.idle -= 1;
                    state.alive -= 1;
                    return;
                }
                state = pool
                    .wake
                    .wait_timeout(state, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        AVAILABLE.set(false);
        // A job that panics drops its reply channel; the submitter sees the worker "gone".
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        // Idle again (if the job did not say so before replying).
        available();
        if setns_net(pool.home.as_fd()).is_err() {
            // Do not keep a namespace the caller may have dropped alive: end this thread (its
            // namespace reference goes with it) and let a fresh one take over queued jobs.
            let mut state = pool.lock();
            state.idle -= 1;
            state.alive -= 1;
            let _ = pool.grow(&mut state);
            return;
        }
    }
}

fn submit(job: Job) -> io::Result<()> {
    let pool = pool()?;
    // Owed until it has run: a process that ends normally waits for it (see `owed`).
    let owed = owed();
    let job: Job = Box::new(move || {
        let _owed = owed;
        job();
    });
    let mut state = pool.lock();
    state.queue.push_back(job);
    if let Err(e) = pool.grow(&mut state) {
        // No worker will ever take it: give it back, and drop it (which drops its reply
        // channel, and whatever it captured) only once the lock is released.
        let job = state.queue.pop_back();
        drop(state);
        drop(job);
        return Err(e);
    }
    drop(state);
    pool.wake.notify_one();
    Ok(())
}

fn worker_gone() -> io::Error {
    io::Error::other("a netns-kit worker thread failed while running the job")
}

/// Runs `f` on a worker thread and waits for its result asynchronously (any executor).
///
/// `f` may call [`unshare_net`] or [`setns_net`]; the worker returns to its home namespace
/// afterwards.
pub(crate) async fn on_worker<R, F>(f: F) -> io::Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel();
    submit(Box::new(move || {
        let result = f();
        available();
        let _ = tx.send(result);
    }))?;
    rx.await.map_err(|_| worker_gone())
}

/// Like [`on_worker`], giving `f` a check that says whether the caller has stopped waiting (its
/// future was dropped), so a job that made something can remove it again instead of leaving it
/// to nobody.
///
/// If the caller stops waiting after `f` checked, the result never reaches it: whether the
/// send fails or the result sits unread in the channel when the caller's future is dropped,
/// it is given to `abandoned` instead, as a new job on a worker (never on the caller's thread:
/// it may enter namespaces), to undo what nobody will own.
pub(crate) async fn on_worker_cancellable<R, F, A>(f: F, abandoned: A) -> io::Result<R>
where
    F: FnOnce(&dyn Fn() -> bool) -> R + Send + 'static,
    A: FnOnce(R) + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel::<Delivery<R>>();
    submit(Box::new(move || {
        let result = f(&|| tx.is_canceled());
        available();
        let delivery = Delivery {
            value: Some(result),
            abandoned: Some(Box::new(abandoned)),
        };
        // If the send fails, the returned delivery is dropped here, which hands it on.
        let _ = tx.send(delivery);
    }))?;
    let mut delivery = rx.await.map_err(|_| worker_gone())?;
    delivery.value.take().ok_or_else(worker_gone)
}

/// Runs `f` inside the namespace `ns`: on the calling thread when it is there already (the
/// caller's own namespace, or inside [`Namespace::run`](crate::Namespace::run)), so no library
/// thread is needed; otherwise on a worker that enters it first.
pub(crate) async fn in_ns<T, F>(ns: Arc<OwnedFd>, f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    if is_thread_ns(ns.as_fd()) {
        return f();
    }
    on_worker(move || {
        setns_net(ns.as_fd())?;
        f()
    })
    .await?
}

/// [`in_ns`] from synchronous code, waiting at most `timeout` for a worker.
pub(crate) fn in_ns_blocking<T, F>(ns: Arc<OwnedFd>, f: F, timeout: Duration) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    if is_thread_ns(ns.as_fd()) {
        return f();
    }
    on_worker_blocking(
        move || {
            setns_net(ns.as_fd())?;
            f()
        },
        timeout,
    )?
}

/// A job's result on its way to the caller; if dropped undelivered, it goes to `abandoned` on a
/// worker thread.
struct Delivery<R: Send + 'static> {
    value: Option<R>,
    abandoned: Option<Box<dyn FnOnce(R) + Send + 'static>>,
}

impl<R: Send + 'static> Drop for Delivery<R> {
    fn drop(&mut self) {
        if let (Some(value), Some(abandoned)) = (self.value.take(), self.abandoned.take()) {
            let _ = submit(Box::new(move || abandoned(value)));
        }
    }
}

/// Runs `f` on a worker thread and blocks for its result for at most `timeout` (for `Drop`,
/// which can neither `.await` nor count on a runtime).
pub(crate) fn on_worker_blocking<R, F>(f: F, timeout: Duration) -> io::Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    submit(Box::new(move || {
        let result = f();
        available();
        let _ = tx.send(result);
    }))?;
    rx.recv_timeout(timeout).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => io::Error::from(io::ErrorKind::TimedOut),
        mpsc::RecvTimeoutError::Disconnected => worker_gone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Registering sockets with a Tokio reactor.

/// Types that own their file descriptor for their whole life and always report the same one
/// from `as_raw_fd`, as [`tokio::io::unix::AsyncFd::register`] requires.
#[cfg(feature = "tokio")]
pub(crate) trait OwnsFd: std::os::fd::AsRawFd {}
#[cfg(feature = "tokio")]
impl OwnsFd for OwnedFd {}
#[cfg(feature = "tokio")]
impl OwnsFd for rtnetlink::sys::Socket {}

/// Registers `inner` with the reactor of `runtime`.
#[cfg(feature = "tokio")]
pub(crate) fn register_async_fd<T: OwnsFd>(
    inner: T,
    runtime: &tokio::runtime::Handle,
) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    let _enter = runtime.enter();
    // SAFETY: `OwnsFd` is implemented only for types that own their fd (`OwnedFd`, netlink-sys's
    // `Socket`, which closes its fd on drop and never swaps it), so the fd stays open and the same
    // for as long as the `AsyncFd` owns `inner`. The inner value is never replaced: this crate
    // does not do it, and the only other code that gets `&mut Socket` (through
    // `AsyncSocket::socket_mut`) is netlink-proto's `Connection`, which only sets socket options
    // and is never exposed outside `netlink.rs`.
    unsafe { tokio::io::unix::AsyncFd::register(inner) }.map_err(io::Error::from)
}

// ---------------------------------------------------------------------------------------------
// Misc.

/// A small text file of `/proc` or `/sys`, read whole. `fs::read_to_string` learns nothing from
/// such a file's size (0, or 4096 for any sysfs attribute) and reads a `/proc` file in reads of
/// 32, 32, 64, 128... bytes after a `statx`: nine system calls for `/proc/self/stat`, where a
/// 4 KiB buffer from the start needs four (open, read, the read that says the end, close).
/// (`File::read_to_string` still asks for the size and position first.)
pub(crate) fn read_small(path: impl AsRef<std::path::Path>) -> io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The start time, in clock ticks since boot (field 22 of `/proc/PID/stat`), of the process
/// `/proc/ENTRY` is (`ENTRY` a pid as that `/proc` numbers it, or `self`, which is right even
/// when `/proc` belongs to another PID namespace): with the pid it identifies a process even
/// after its pid is reused. A process that has exited but not been reaped yet (a zombie) counts
/// as gone: `NotFound`.
pub(crate) fn start_time_at(entry: &str) -> io::Result<u64> {
    let stat = read_small(format!("/proc/{entry}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let malformed = || io::Error::other("malformed /proc/PID/stat");
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(malformed)?;
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    fields
        .nth(18)
        .and_then(|f| f.parse().ok())
        .ok_or_else(malformed)
}

// ---------------------------------------------------------------------------------------------
// TAP devices and the BPF programs that divert a link through one (link impairment in user
// space: see `impair`).

/// Opens a TAP device `name` in the calling thread's namespace, for a relay: `IFF_TAP |
/// IFF_NO_PI | IFF_VNET_HDR` (each read or write is one frame behind a 10-byte
/// `virtio_net_hdr`) with checksum and TCP segmentation offloads on, so whole GSO segments
/// cross in one read. A `%d` in `name` is replaced by the kernel with the first free number;
/// returns the fd and the device's name. The device lives as long as the returned fd.
pub(crate) fn open_tap(name: &str) -> io::Result<(OwnedFd, String)> {
    const TUNSETIFF: libc::Ioctl = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_VNET_HDR: libc::c_short = 0x4000;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let fd = OwnedFd::from(file);
    // `struct ifreq`: the name, then (at offset 16) the flags, in a 40-byte union.
    let mut ifreq = [0u8; 40];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    let flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    ifreq[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: `fd` is an open `/dev/net/tun`; TUNSETIFF reads and writes a `struct ifreq`,
    // which `ifreq` is (40 bytes, name NUL-terminated: it is shorter than IFNAMSIZ).
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    set_tap_offloads(fd.as_fd(), true)?;
    // The kernel wrote the device's name back (with `%d` replaced).
    let len = ifreq[..16].iter().position(|&b| b == 0).unwrap_or(16);
    let name = String::from_utf8_lossy(&ifreq[..len]).into_owned();
    Ok((fd, name))
}

/// Turns a TAP's checksum and TCP segmentation offloads on or off. Off, the kernel segments
/// and checksums every frame before the TAP's reader gets it, so each read is one packet on
/// the wire (what per-packet loss, duplication and corruption need).
pub(crate) fn set_tap_offloads(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    const TUNSETOFFLOAD: libc::Ioctl = 0x4004_54d0;
    const TUN_F_CSUM: libc::c_ulong = 0x01;
    const TUN_F_TSO4: libc::c_ulong = 0x02;
    const TUN_F_TSO6: libc::c_ulong = 0x04;
    let offloads = if on {
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
    } else {
        0
    };
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an `unsigned long` of TUN_F_* bits);
    // `fd` is an open TAP.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the TAP of `fd` persistent: its last close no longer unregisters it (its namespace's
/// end does, or `ip link del`).
pub(crate) fn set_tap_persist(fd: BorrowedFd<'_>) -> io::Result<()> {
    const TUNSETPERSIST: libc::Ioctl = 0x4004_54cb;
    let on: libc::c_ulong = 1;
    // SAFETY: TUNSETPERSIST takes its argument by value (non-zero for persistent); `fd` is an
    // open TAP.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct BpfInsn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

impl BpfInsn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        BpfInsn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
}

/// `skb->mark` in `struct __sk_buff`.
const SKB_MARK: i16 = 8;
/// `BPF_FUNC_redirect`.
const BPF_FUNC_REDIRECT: i32 = 23;

/// The program for a link's egress or ingress: frames are redirected to the TAP `tap` (its ifindex),
/// except those carrying `mark`, which the relay sent back: their mark is cleared and they
/// leave as usual (`TC_ACT_OK`).
pub(crate) fn divert_program(tap: u32, mark: u32) -> [BpfInsn; 10] {
    [
        BpfInsn::new(0x61, 2, 1, SKB_MARK, 0),    // r2 = skb->mark
        BpfInsn::new(0x15, 2, 0, 4, mark as i32), // if r2 == mark goto pass
        BpfInsn::new(0xb7, 1, 0, 0, tap as i32),  // r1 = tap
        BpfInsn::new(0xb7, 2, 0, 0, 0),           // r2 = 0 (egress)
        BpfInsn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT), // return bpf_redirect(r1, r2)
        BpfInsn::new(0x95, 0, 0, 0, 0),           //
        BpfInsn::new(0xb7, 2, 0, 0, 0),           // pass: r2 = 0
        BpfInsn::new(0x63, 1, 2, SKB_MARK, 0),    // skb->mark = 0
        BpfInsn::new(0xb7, 0, 0, 0, 0),           // return TC_ACT_OK
        BpfInsn::new(0x95, 0, 0, 0, 0),           //
    ]
}

/// The program for the TAP's ingress: what the relay writes is marked with `mark` and
/// redirected to the link `link` (its ifindex) — out of it (`ingress` false: the link's
/// egress program lets it pass) or into it, as if received (`ingress` true: its ingress
/// program lets it pass).
pub(crate) fn return_program(link: u32, mark: u32, ingress: bool) -> [BpfInsn; 6] {
    const BPF_F_INGRESS: i32 = 1;
    let flags = if ingress { BPF_F_INGRESS } else { 0 };
    [
        BpfInsn::new(0xb7, 2, 0, 0, mark as i32),       // r2 = mark
        BpfInsn::new(0x63, 1, 2, SKB_MARK, 0),          // skb->mark = r2
        BpfInsn::new(0xb7, 1, 0, 0, link as i32),       // r1 = link
        BpfInsn::new(0xb7, 2, 0, 0, flags),             // r2 = flags
        BpfInsn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT), // return bpf_redirect(r1, r2)
        BpfInsn::new(0x95, 0, 0, 0, 0),                 //
    ]
}

/// A `BPF_PROG_TYPE_SCHED_CLS` program loaded from `insns`, shared: while anyone holds the
/// program loaded from the same instructions, that one is handed out again instead of loading
/// another. A program is not tied to a namespace (`bpf_redirect` looks its ifindex up in the
/// namespace of the packet's device), and a network's members, each diverted in its own
/// namespace, have TAPs of the same index there: so they share one link-side program rather
/// than load one each (the TAP-side program names the member's own interface, whose index
/// differs, and is one per member). Each load is a run of the verifier and the JIT (0.1 ms or
/// more under `strace` on the 2-vCPU development VM). Nothing is kept loaded for nobody: the
/// table holds weak references, and a program goes when its last holder drops it.
pub(crate) fn shared_sched_cls(name: &str, insns: &[BpfInsn]) -> io::Result<Arc<OwnedFd>> {
    type Loaded = Vec<(Vec<BpfInsn>, std::sync::Weak<OwnedFd>)>;
    static LOADED: Mutex<Loaded> = Mutex::new(Vec::new());
    let find = |loaded: &mut Loaded| {
        loaded.retain(|(_, program)| program.strong_count() > 0);
        loaded
            .iter()
            .find(|(loaded_insns, _)| loaded_insns.as_slice() == insns)
            .and_then(|(_, program)| program.upgrade())
    };
    let lock = || {
        LOADED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(program) = find(&mut lock()) {
        return Ok(program);
    }
    // Loaded without the lock, so that different programs load side by side; two threads
    // loading the same one at once keep the first to be recorded.
    let program = Arc::new(bpf_load_sched_cls(name, insns)?);
    let mut loaded = lock();
    if let Some(recorded) = find(&mut loaded) {
        return Ok(recorded);
    }
    loaded.push((insns.to_vec(), Arc::downgrade(&program)));
    Ok(program)
}

/// Loads `insns` as a `BPF_PROG_TYPE_SCHED_CLS` program called `name` (what `bpftool prog`
/// shows; at most 15 bytes); the verifier's log comes back in the error when it refuses. The
/// first attempt asks for no log (the verifier's log of every instruction costs time on every
/// load); only a program the verifier refused (`EACCES`, `EINVAL`) is loaded again with it.
fn bpf_load_sched_cls(name: &str, insns: &[BpfInsn]) -> io::Result<OwnedFd> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    let license = b"GPL\0";
    let mut log = vec![0u8; 4096];
    // `union bpf_attr` for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    // log_size, log_buf at their offsets; the rest zero.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // prog_name: a 16-byte array, zero-terminated.
    let name = &name.as_bytes()[..name.len().min(15)];
    attr[48..48 + name.len()].copy_from_slice(name);
    // The instructions and the license stay alive, and so valid, for the call.
    match bpf(BPF_PROG_LOAD, &mut attr.clone()) {
        Ok(program) => return Ok(program),
        Err(e) if !matches!(e.raw_os_error(), Some(libc::EACCES | libc::EINVAL)) => return Err(e),
        Err(_) => {}
    }
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
    attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    // The log buffer (with its size) stays alive, and so valid, for the call as well.
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let text = log.split(|&b| b == 0).next().unwrap_or_default();
        let text = String::from_utf8_lossy(text);
        if text.trim().is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{e}; verifier: {}", text.trim()))
        }
    })
}

/// The `bpf(2)` command `cmd` with `attr` (a `union bpf_attr`, zero where unused, whose
/// pointers the caller keeps valid), for a command that returns a new file descriptor.
fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a writable buffer of `attr.len()` bytes laid out as the kernel's
    // `union bpf_attr` for `cmd`; the kernel reads (and may write) no more than that size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Where a tc program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcxSide {
    Ingress,
    Egress,
}

/// Attaches `program` to link `ifindex` (in the calling thread's namespace) with TCX
/// (`BPF_LINK_CREATE`): it stays attached exactly as long as the returned fd, so a relay that
/// dies takes its diversion with it rather than leaving the link black-holed.
pub(crate) fn bpf_tcx_attach(
    program: BorrowedFd<'_>,
    ifindex: u32,
    side: TcxSide,
) -> io::Result<OwnedFd> {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_TCX_INGRESS: u32 = 46;
    const BPF_TCX_EGRESS: u32 = 47;
    let attach_type = match side {
        TcxSide::Ingress => BPF_TCX_INGRESS,
        TcxSide::Egress => BPF_TCX_EGRESS,
    };
    // `union bpf_attr` for BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type, flags.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&(program.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
    bpf(BPF_LINK_CREATE, &mut attr)
}

/// A packet socket (`AF_PACKET`, `SOCK_RAW`, non-blocking) bound to link `ifindex` in the
/// calling thread's namespace, seeing every frame the link sends and receives, as `tcpdump`'s.
/// It is opened for no protocol and bound with `ETH_P_ALL` and the link in one step (what
/// libpcap does), so it never holds a frame of another link.
pub(crate) fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    const ETH_P_ALL: u16 = 0x0003;
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A large receive buffer, as capture tools ask for, so a burst is not dropped.
    grow_receive_buffer(fd.as_fd(), 8 << 20);
    // SAFETY: an all-zero `sockaddr_ll` is valid; the fields the bind needs are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid `sockaddr_ll` and its size is passed.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Raises a socket's receive buffer to `bytes`: forced past `net.core.rmem_max` where allowed
/// (`CAP_NET_ADMIN`), else the plain request the limit caps. Best effort; a socket whose
/// buffer overflows loses datagrams (a netlink socket: answers, and the requests waiting for
/// them would wait forever).
pub(crate) fn grow_receive_buffer(fd: BorrowedFd<'_>, bytes: usize) {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `size` is a c_int that outlives the call; its size is passed.
        let done = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done == 0 {
            return;
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the relay's clock (the one its timer is armed on).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid `timespec` to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ---------------------------------------------------------------------------------------------
// Work owed at exit.

/// Work still running on a library thread that a caller no longer waits for: the undo of a
/// dropped future, a job handed to a worker. While any is owed, a normal exit of the process
/// (`main` returning, `std::process::exit`) waits for it in an `atexit` handler, at most
/// [`EXIT_DRAIN_LIMIT`]: without that, the exit would kill the library's threads half-way and
/// leave what they were undoing (firewall rules in a namespace that outlives the process).
static OWED: Mutex<usize> = Mutex::new(0);
static SETTLED: Condvar = Condvar::new();

/// The longest a normal exit waits for owed work (an `iptables` run is bounded by 10 s).
pub(crate) const EXIT_DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// One piece of owed work; dropping it (when the work is done, or failed) pays it.
#[must_use]
pub(crate) struct Owed(());

/// Records work owed until the returned value is dropped.
pub(crate) fn owed() -> Owed {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: `drain_at_exit` is an `extern "C" fn()` that never unwinds (it only locks,
        // waits on a condition variable and returns); registering it has no other effect.
        unsafe { libc::atexit(drain_at_exit) };
    });
    *OWED.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    Owed(())
}

impl Drop for Owed {
    fn drop(&mut self) {
        let mut owed = OWED.lock().unwrap_or_else(|p| p.into_inner());
        *owed = owed.saturating_sub(1);
        if *owed == 0 {
            SETTLED.notify_all();
        }
    }
}

/// Waits, at exit, until no work is owed (or [`EXIT_DRAIN_LIMIT`] has passed).
extern "C" fn drain_at_exit() {
    let deadline = std::time::Instant::now() + EXIT_DRAIN_LIMIT;
    let mut owed = OWED.lock().unwrap_or_else(|p| p.into_inner());
    while *owed > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        owed = SETTLED
            .wait_timeout(owed, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job submitted while a worker is starting (as one does right after
    /// [`start_worker_early`]) is left to that worker: no second one is started for it. Both
    /// happen under one lock, so the starting worker cannot have counted itself idle yet. On a
    /// pool of the test's own, so other tests' jobs do not count.
    #[test]
    fn a_starting_worker_takes_the_next_job() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(home().unwrap(), 4)));
        let (tx, rx) = mpsc::channel();
        {
            let mut state = pool.lock();
            pool.spawn(&mut state).unwrap();
            state
                .queue
                .push_back(Box::new(move || tx.send(()).unwrap()));
            pool.grow(&mut state).unwrap();
            assert_eq!(state.alive, 1, "a second worker was started for the job");
        }
        pool.wake.notify_one();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the starting worker took the job");
        assert_eq!(pool.lock().alive, 1);
    }
}
