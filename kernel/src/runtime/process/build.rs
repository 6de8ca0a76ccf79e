//! Builds on the process runtime: LAIN's phases as shell scripts in the release directory.

use crate::runtime::{BuildProgress, BuildRequest, RuntimeError};
use std::io::BufRead;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a build script may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Runs `build.prepare.script`, `build.script` and `release.script` in the context directory
/// (each line through `sh -e`, build arguments in the environment), then moves it to the
/// release directory, which instances run in. Image settings are reported as not applied.
pub fn build(
    request: &BuildRequest<'_>,
    progress: &mut (dyn FnMut(BuildProgress) + Send),
) -> Result<String, RuntimeError> {
    let app = request.spec;
    for (set, key) in [
        (!app.build.base.is_empty(), "build.base"),
        (
            app.release.as_ref().is_some_and(|r| r.dest_base.is_some()),
            "release.dest_base",
        ),
        (
            app.release.as_ref().is_some_and(|r| !r.copy.is_empty()),
            "release.copy",
        ),
    ] {
        if set {
            progress(BuildProgress::Warning(format!(
                "{key} is an image setting: the process runtime runs the release directory on \
                 this host and does not apply it"
            )));
        }
    }
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        (
            "HOME".into(),
            std::env::var("HOME").unwrap_or_else(|_| "/".into()),
        ),
        ("LAIN_APPNAME".into(), app.appname.clone()),
    ];
    let args = app
        .build
        .prepare
        .iter()
        .flat_map(|p| &p.build_arg)
        .chain(&app.build.build_arg);
    for (k, v) in args {
        env.push((k.clone(), build_arg_value(v)));
    }
    let phases = [
        ("prepare", app.build.prepare.as_ref().map(|p| &p.script)),
        ("build", Some(&app.build.script)),
        ("release", app.release.as_ref().map(|r| &r.script)),
    ];
    for (phase, script) in phases {
        for line in script.into_iter().flatten() {
            progress(BuildProgress::Step(format!("{phase}: {line}")));
            run_script(request.context, line, &env, progress)
                .map_err(|e| RuntimeError::Failed(format!("{phase}: `{line}`: {e}")))?;
        }
    }
    let dest = request.release_dir;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            RuntimeError::Failed(format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    std::fs::rename(request.context, dest).map_err(|e| {
        RuntimeError::Failed(format!(
            "cannot move the release to {}: {e}",
            dest.display()
        ))
    })?;
    Ok(dest.to_string_lossy().into_owned())
}

/// A build argument's value: `$NAME` reads the builder's environment (LAIN).
pub fn build_arg_value(v: &str) -> String {
    match v.strip_prefix('$') {
        Some(var) => std::env::var(var).unwrap_or_default(),
        None => v.to_string(),
    }
}

/// Runs one script line with `sh -e` in `dir`, streaming its output; fails on a non-zero exit
/// or after [`SCRIPT_TIMEOUT`] (the script's process group is killed).
fn run_script(
    dir: &Path,
    line: &str,
    env: &[(String, String)],
    progress: &mut (dyn FnMut(BuildProgress) + Send),
) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-ec")
        .arg(format!("exec 2>&1\n{line}"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let pid = child.id();
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    std::thread::spawn(move || {
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        if let Some(group) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    });
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            progress(BuildProgress::Output(line));
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the script: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exited with {status}"))
    }
}
