//! Tests that build networks without root: [`run_isolated`] and
//! [`isolated_test!`](crate::isolated_test).

use super::*;
use std::process::Command;

/// Runs the body of test `test` (its full path, `module_path!()::name`, as
/// [`isolated_test!`](crate::isolated_test) gives it) where it may build networks: directly
/// when the process is root; otherwise in a child process — this test binary again, running
/// only this test — inside a user namespace of its own, where it is root (see
/// [`userns`](crate::userns)). A process cannot enter a user namespace once it has threads, and
/// the test harness has them, hence the child. The child's output is shown, its panic fails this
/// test with that output, and everything it made goes with it. Works with `cargo test` and with
/// `cargo nextest` alike.
///
/// # Panics
///
/// When the body panics (in the child: with its output), when `unshare` (util-linux) is
/// missing, or when `test` names no test of this binary.
pub fn run_isolated(test: impl AsRef<str>, body: impl FnOnce()) {
    let test = test.as_ref();
    // libtest names a test by its path without the crate: `lab::my_test` -> `my_test`.
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    // The child: only where `unshare` really made a user namespace (the variable alone could
    // be inherited or set by mistake, and settling in remounts `/run/netns`).
    if std::env::var(ISOLATED_ENV).is_ok_and(|t| t == name)
        && crate::userns::in_new_user_namespace()
    {
        if let Err(e) = crate::userns::settle_in() {
            panic!("test {name}: cannot settle into its user namespace: {e}");
        }
        return body();
    }
    if crate::userns::privileged() {
        return body();
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("unshare").is_file()));
    assert!(
        found,
        "test {name}: running it without root needs `unshare`: install the `util-linux` package"
    );
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--mount", "--"])
        .arg(exe)
        .args([
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(ISOLATED_ENV, name)
        .output()
        .unwrap_or_else(|e| panic!("test {name}: cannot start `unshare`: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "test {name} failed in its user namespace:\n{text}"
    );
    assert!(
        text.contains("running 1 test"),
        "test {name}: its path matched no single test of this binary (give `module_path!()` and the name, or use `isolated_test!`):\n{text}"
    );
    print!("{text}");
}

/// Defines a test whose body runs where it may build networks even without root (see
/// [`run_isolated`](crate::lab::run_isolated)):
///
/// ```no_run
/// netns_kit::isolated_test!(two_hosts_talk, {
///     let mut lab = netns_kit::lab::Lab::new_blocking("two_hosts_talk").unwrap();
///     lab.add_lan_blocking(["10.0.0.0/24"], ["a", "b"]).unwrap();
/// });
/// ```
#[macro_export]
macro_rules! isolated_test {
    ($name:ident, $body:block) => {
        #[test]
        fn $name() {
            $crate::lab::run_isolated(concat!(module_path!(), "::", stringify!($name)), || $body)
        }
    };
}
