//! Delegation to another plugin (the IPAM plugin named in `ipam.type`), exactly as libcni's
//! `invoke` does it: the executable is looked up in the directories of `CNI_PATH`, run with
//! this process's environment (so the same `CNI_COMMAND`, container, namespace and interface)
//! and the same configuration bytes on stdin; its stdout is its result, or its error object,
//! which is passed on unchanged.

use std::{
    io::Write,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use crate::spec::{CniError, Result, code};

/// Finds plugin `name` in the directories of `cni_path`.
pub fn find(name: &str, cni_path: &str) -> Result<PathBuf> {
    for dir in cni_path.split(':').filter(|d| !d.is_empty()) {
        let candidate = PathBuf::from(dir).join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(CniError::new(
        code::INTERNAL,
        format!("failed to find plugin {name:?} in path [{cni_path}]"),
    ))
}

/// Starts `command` with its output captured and `input` written to its stdin (none: stdin is
/// `/dev/null`). The input must be far smaller than a pipe's buffer (a configuration, a few
/// rules), so that writing it does not wait for the program. A program that exits without
/// reading all of it closes the pipe: not an error here, its exit status tells.
pub fn spawn_fed(command: &mut Command, input: Option<&[u8]>) -> std::io::Result<Child> {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let _ = stdin.write_all(input);
    }
    Ok(child)
}

/// A delegated plugin that is running: started early, so that its work and ours overlap.
#[derive(Debug)]
pub struct Running {
    name: String,
    path: PathBuf,
    child: Child,
}

/// Starts plugin `name` for `command` with `stdin` (a configuration, far smaller than a pipe's
/// buffer, so writing it does not wait for the plugin).
pub fn start(name: &str, cni_path: &str, command: &str, stdin: &[u8]) -> Result<Running> {
    let path = find(name, cni_path)?;
    let child =
        spawn_fed(Command::new(&path).env("CNI_COMMAND", command), Some(stdin)).map_err(|e| {
            CniError::new(
                code::IO,
                format!("failed to run IPAM plugin {}: {e}", path.display()),
            )
        })?;
    Ok(Running {
        name: name.to_owned(),
        path,
        child,
    })
}

impl Running {
    /// Waits for the plugin; what it printed on success, its error object otherwise.
    pub fn finish(self) -> Result<Vec<u8>> {
        let Running { name, path, child } = self;
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(
                code::IO,
                format!("failed to wait for IPAM plugin {}: {e}", path.display()),
            )
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if let Some(e) = parsed.as_ref().and_then(CniError::from_plugin) {
            return Err(e);
        }
        Err(CniError::new(
            code::INTERNAL,
            format!(
                "IPAM plugin {name:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(if out.stdout.is_empty() {
                    &out.stderr
                } else {
                    &out.stdout
                })
                .trim()
            ),
        ))
    }
}

/// Runs plugin `name` for `command` with `stdin`; returns what it printed on success.
pub fn run(name: &str, cni_path: &str, command: &str, stdin: &[u8]) -> Result<Vec<u8>> {
    start(name, cni_path, command, stdin)?.finish()
}

/// An IPAM plugin running (see [`start_ipam`]).
#[derive(Debug)]
pub enum RunningIpam<'a> {
    /// `host-local` in-process (see `hostlocal`), on a thread of its own so it works while the
    /// bridge and the pair are made, as an executed plugin would.
    InProcess(std::thread::JoinHandle<Result<Vec<u8>>>),
    /// Done already.
    Done(Result<Vec<u8>>),
    Exec(ExecIpam<'a>),
}

#[derive(Debug)]
pub struct ExecIpam<'a> {
    running: Running,
    cni_path: &'a str,
    command: &'a str,
    stdin: &'a [u8],
}

/// Starts IPAM plugin `name` as [`start`] does. An IPAM plugin older than the configuration's
/// 1.1.0 (as the reference plugins before 1.5) refuses it with "incompatible version" although
/// 1.1.0 changed nothing it reads: [`RunningIpam::finish`] then asks it again with the
/// configuration marked 1.0.0, whose result format 1.1.0 only extends.
pub fn start_ipam<'a>(
    name: &str,
    cni_path: &'a str,
    command: &'a str,
    stdin: &'a [u8],
) -> Result<RunningIpam<'a>> {
    if name == "host-local" && (command == "ADD" || command == "DEL") {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        if let Some(plan) = crate::hostlocal::plan(stdin, &env("CNI_ARGS")) {
            let (id, ifname) = (env("CNI_CONTAINERID"), env("CNI_IFNAME"));
            let add = command == "ADD";
            let work = move || {
                if add {
                    plan.add(&id, &ifname)
                } else {
                    plan.del(&id, &ifname)
                }
            };
            return Ok(match std::thread::Builder::new().spawn(work) {
                Ok(handle) => RunningIpam::InProcess(handle),
                Err(e) => RunningIpam::Done(Err(CniError::new(
                    code::IO,
                    format!("failed to start a thread for host-local: {e}"),
                ))),
            });
        }
    }
    Ok(RunningIpam::Exec(ExecIpam {
        running: start(name, cni_path, command, stdin)?,
        cni_path,
        command,
        stdin,
    }))
}

impl RunningIpam<'_> {
    pub fn finish(self) -> Result<Vec<u8>> {
        match self {
            RunningIpam::InProcess(handle) => handle.join().unwrap_or_else(|_| {
                Err(CniError::new(code::INTERNAL, "host-local failed (a panic)"))
            }),
            RunningIpam::Done(result) => result,
            RunningIpam::Exec(exec) => exec.finish(),
        }
    }
}

impl ExecIpam<'_> {
    fn finish(self) -> Result<Vec<u8>> {
        let name = self.running.name.clone();
        match self.running.finish() {
            Err(e) if e.code == code::INCOMPATIBLE_VERSION => {
                let Ok(mut conf) = serde_json::from_slice::<Value>(self.stdin) else {
                    return Err(e);
                };
                if conf.get("cniVersion").and_then(Value::as_str) != Some("1.1.0") {
                    return Err(e);
                }
                conf["cniVersion"] = Value::String("1.0.0".into());
                run(
                    &name,
                    self.cni_path,
                    self.command,
                    conf.to_string().as_bytes(),
                )
            }
            other => other,
        }
    }
}

/// Runs IPAM plugin `name` and waits for it (see [`start_ipam`]).
pub fn run_ipam(name: &str, cni_path: &str, command: &str, stdin: &[u8]) -> Result<Vec<u8>> {
    start_ipam(name, cni_path, command, stdin)?.finish()
}

/// Whether plugin `name` speaks spec `version` (its `VERSION` answer lists it).
pub fn supports(name: &str, cni_path: &str, version: &str) -> Result<bool> {
    let out = run(
        name,
        cni_path,
        "VERSION",
        format!(r#"{{"cniVersion":"{version}"}}"#).as_bytes(),
    )?;
    let v: Value = serde_json::from_slice(&out).map_err(|e| {
        CniError::new(
            code::DECODE,
            format!("failed to decode the VERSION answer of IPAM plugin {name:?}: {e}"),
        )
    })?;
    Ok(v.get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|s| s.as_str() == Some(version))))
}
