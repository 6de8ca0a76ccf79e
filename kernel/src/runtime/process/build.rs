//! Builds on the process runtime: LAIN's phases as shell scripts, each line in a sandbox.
//!
//! The build context is `/lain/app` (writable by the app's sandbox user: the kernel hands it
//! over, see [`tree::hand_over`]), `/tmp` is a directory of the build's own kept across its
//! lines, and nothing of the kernel is visible. Afterwards the output is normalised
//! ([`tree::normalize`]: the kernel's, no setuid, no group/other write, no shared inodes) and
//! becomes the release directory, which no sandbox ever gets writable.

use super::sandbox::{DEFAULT_PATH, Identity, Jail, Sandbox};
use super::tree;
use crate::runtime::{BuildProgress, BuildRequest, RuntimeError, build_args};
use std::io::{BufRead, Read};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Longest a build script may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Longest line of a script's output reported as one line.
const MAX_LINE: u64 = 64 << 10;

/// Runs `build.prepare.script`, `build.script` and `release.script` on the context (each line
/// through `sh -e` in a sandbox, build arguments in the environment), then moves it to the
/// release directory, which instances run from. `init` is the lain executable. Image settings
/// are reported as not applied.
pub fn build(
    request: &BuildRequest<'_>,
    progress: &mut (dyn FnMut(BuildProgress) + Send),
    sandbox: &Sandbox,
    init: &Path,
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
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), "/tmp".into()),
        ("LAIN_APPNAME".into(), app.appname.clone()),
    ];
    let args = app
        .build
        .prepare
        .iter()
        .flat_map(|p| &p.build_arg)
        .chain(&app.build.build_arg);
    for (k, v) in args {
        let (value, warning) = build_args::resolve(k, v, request.build_args);
        if let Some(w) = warning {
            progress(BuildProgress::Warning(w));
        }
        env.push((k.clone(), value));
    }
    let who = sandbox.identity(&app.appname);
    let failed = |e: String| RuntimeError::Failed(e);
    let mut tmp_name = request.context.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let result = (|| {
        make_private_dir(&tmp, who)
            .map_err(|e| failed(format!("cannot create {}: {e}", tmp.display())))?;
        if who.switch {
            tree::hand_over(request.context, (who.uid, who.gid))
                .map_err(|e| failed(format!("cannot hand the build context over: {e}")))?;
        }
        let phases = [
            ("prepare", app.build.prepare.as_ref().map(|p| &p.script)),
            ("build", Some(&app.build.script)),
            ("release", app.release.as_ref().map(|r| &r.script)),
        ];
        for (phase, script) in phases {
            for line in script.into_iter().flatten() {
                progress(BuildProgress::Step(format!("{phase}: {line}")));
                let script = Script {
                    sandbox,
                    init,
                    who,
                    context: request.context,
                    tmp: &tmp,
                    env: &env,
                };
                script
                    .run(line, progress)
                    .map_err(|e| failed(format!("{phase}: `{line}`: {e}")))?;
            }
        }
        let kernel = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let removed = tree::normalize(request.context, who.switch.then_some(kernel))
            .map_err(|e| failed(format!("the build's output: {e}")))?;
        for path in removed {
            progress(BuildProgress::Warning(format!(
                "{}: not a file, directory or symlink; left out of the release",
                Path::new("/lain/app").join(path).display()
            )));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
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

/// A new 0700 directory owned by `who`.
fn make_private_dir(path: &Path, who: Identity) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let _ = std::fs::remove_dir_all(path);
    std::fs::DirBuilder::new().mode(0o700).create(path)?;
    if who.switch {
        std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid))?;
    }
    Ok(())
}

/// One line of a build script and where it runs.
struct Script<'a> {
    sandbox: &'a Sandbox,
    init: &'a Path,
    who: Identity,
    context: &'a Path,
    tmp: &'a Path,
    env: &'a [(String, String)],
}

impl Script<'_> {
    /// Runs `line` with `sh -e` in `/lain/app`, streaming its output (stdout and stderr); fails on
    /// a non-zero exit or after [`SCRIPT_TIMEOUT`] (the whole sandbox is killed).
    fn run(
        &self,
        line: &str,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<(), String> {
        let open = |p: &Path| -> std::io::Result<OwnedFd> {
            let dir = cap_std::fs::Dir::open_ambient_dir(p, cap_std::ambient_authority())?;
            Ok(OwnedFd::from(dir.into_std_file()))
        };
        let jail = Jail {
            identity: self.who,
            binds: vec![
                (
                    open(self.context).map_err(|e| e.to_string())?,
                    "/lain/app".into(),
                ),
                (open(self.tmp).map_err(|e| e.to_string())?, "/tmp".into()),
            ],
            files: Vec::new(),
            cwd: "/lain/app".into(),
            env: self.env.to_vec(),
            argv: vec!["sh".into(), "-ec".into(), line.into()],
        };
        let mut cmd = self
            .sandbox
            .command(jail, self.init, None)
            .map_err(|e| e.to_string())?;
        let (out, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("cannot create a pipe: {e}"))?;
        let err_w = out_w.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the sandbox: {e}"))?;
        // The output ends when the sandbox's copies of the pipe close.
        drop(cmd);
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
        let mut reader = std::io::BufReader::new(std::fs::File::from(out));
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // A line longer than MAX_LINE is cut into pieces; bytes that are not UTF-8 are shown
            // as U+FFFD: the script's output is read to its end whatever it is.
            match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    progress(BuildProgress::Output(
                        text.trim_end_matches(['\n', '\r']).to_string(),
                    ));
                }
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
}
