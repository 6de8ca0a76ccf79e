//! Builds on the process runtime: LAIN's phases as shell scripts, each line in a sandbox.
//!
//! The build context is `/lain/app` (writable by the app's sandbox user: the kernel hands it
//! over, see [`tree::hand_over`]), `/tmp` is a directory of the build's own kept across its
//! lines, and nothing of the kernel is visible. Afterwards the output is normalised
//! ([`tree::normalize`]: the kernel's, no setuid, no group/other write, no shared inodes) and
//! becomes the release directory, which no sandbox ever gets writable.
//!
//! The app's build cache (`<data_dir>/build-cache/<app>`, see [`BuildRequest::cache_dir`])
//! keeps, between its builds:
//! - `volumes/<path>`: each `build.volumes` path, bound at that path in every line of
//!   `build.script` of every build of the app (the app's user owns it); cleared, with a
//!   warning, once they outgrow [`VOLUMES_MAX`];
//! - `prepare/<key>`: the prepared directory ([`crate::runtime::prepare_key`]): the
//!   `build.prepare` scripts run on a copy of the context, only the `keep` entries of
//!   `/lain/app` stay, and every later build with the same key starts from it (the context
//!   laid over it, its files winning), without running the scripts again. The newest
//!   [`PREPARED_KEPT`] are kept.
//!
//! `test.script` runs after `build.script`, on a copy of the build's output (what it changes
//! is not released); a failing line fails the build.

use super::sandbox::{DEFAULT_PATH, Identity, Jail, Sandbox};
use super::{instance, tree};
use crate::runtime::{BuildProgress, BuildRequest, RuntimeError, build_args, prepare_key};
use std::io::{BufRead, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Longest a build script may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Longest line of a script's output reported as one line.
const MAX_LINE: u64 = 64 << 10;

/// Largest an app's `build.volumes` may grow (all together) before a build clears them.
pub const VOLUMES_MAX: u64 = 4 << 30;

/// How many prepared directories an app keeps (the newest).
pub const PREPARED_KEPT: usize = 2;

/// Runs `build.prepare.script` (unless its prepared directory is cached), `build.script`,
/// `test.script` and `release.script` on the context (each line through `sh -e` in a sandbox,
/// build arguments in the environment, `build.volumes` bound for `build.script`), then moves it to the release
/// directory, which instances run from. `init` is the lain executable. Image settings are
/// reported as not applied.
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
    let kernel = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let volumes_root = request.cache_dir.join("volumes");
    let result = (|| {
        make_private_dir(&tmp, who)
            .map_err(|e| failed(format!("cannot create {}: {e}", tmp.display())))?;
        build_volumes(sandbox, &volumes_root, &app.build.volumes, who)
            .map_err(|e| failed(format!("build.volumes: {e}")))?;
        let steps = Steps {
            sandbox,
            init,
            who,
            tmp: &tmp,
            env: &env,
            volumes: (&volumes_root, &app.build.volumes),
        };
        if let Some(prepare) = &app.build.prepare {
            let key = prepare_key(&app.build.base, prepare);
            let prepared = request.cache_dir.join("prepare").join(&key);
            if prepared.is_dir() {
                progress(BuildProgress::Step(format!(
                    "prepare: reusing the prepared directory {key}"
                )));
            } else {
                steps.prepare(request.context, prepare, &prepared, kernel, progress)?;
                prune_prepared(&request.cache_dir.join("prepare"), &key);
            }
            tree::fill(&prepared, request.context)
                .map_err(|e| failed(format!("prepare: laying the context over {key}: {e}")))?;
        }
        if who.switch {
            tree::hand_over(request.context, (who.uid, who.gid))
                .map_err(|e| failed(format!("cannot hand the build context over: {e}")))?;
        }
        steps.phase("build", &app.build.script, request.context, progress)?;
        if let Some(test) = app.test.as_ref().filter(|t| !t.script.is_empty()) {
            steps.test(request.context, &test.script, progress)?;
        }
        if let Some(release) = &app.release {
            steps.phase("release", &release.script, request.context, progress)?;
        }
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
    if !app.build.volumes.is_empty() {
        bound_volumes(&volumes_root, VOLUMES_MAX, progress);
    }
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

/// Checks and creates the app's `build.volumes` under `root` (each owned by `who`, its parents
/// the kernel's).
fn build_volumes(
    sandbox: &Sandbox,
    root: &Path,
    paths: &[String],
    who: Identity,
) -> Result<(), String> {
    let owner = who.switch.then_some((who.uid, who.gid));
    for path in paths {
        instance::check_place(sandbox, "build volume", path)?;
        instance::make_volume(root, path, owner).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

/// Clears the app's build volumes under `root` once they hold more than `max` bytes.
fn bound_volumes(root: &Path, max: u64, progress: &mut (dyn FnMut(BuildProgress) + Send)) {
    let size = tree::size(root);
    if size.as_ref().is_ok_and(|s| *s <= max) {
        return;
    }
    let why = match size {
        Ok(s) => format!("they hold {s} bytes, more than {max}"),
        Err(e) => format!("they cannot be measured ({e})"),
    };
    let outcome = match tree::remove(root) {
        Ok(()) => "cleared: the next build starts with empty ones".to_string(),
        Err(e) => format!("clearing them failed: {e}"),
    };
    progress(BuildProgress::Warning(format!(
        "build.volumes: {why}; {outcome}"
    )));
}

/// Removes the app's prepared directories under `root` but `current` and the newest others,
/// [`PREPARED_KEPT`] in all.
fn prune_prepared(root: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_str() != Some(current))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    others.sort();
    let surplus = (others.len() + 1).saturating_sub(PREPARED_KEPT);
    for (_, path) in others.into_iter().take(surplus) {
        let _ = tree::remove(&path);
    }
}

/// Removes every entry at the top of `dir` whose name is not in `keep` (LAIN's `prepare.keep`:
/// names in `/lain/app`, a leading `./` ignored).
fn keep_only(dir: &Path, keep: &[String]) -> std::io::Result<()> {
    let keep: Vec<&str> = keep.iter().map(|k| k.trim_start_matches("./")).collect();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| keep.contains(&n)) {
            continue;
        }
        let path = dir.join(&name);
        if entry.file_type()?.is_dir() {
            tree::remove(&path).map_err(std::io::Error::other)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// What every script of one build shares.
#[derive(Clone, Copy)]
struct Steps<'a> {
    sandbox: &'a Sandbox,
    init: &'a Path,
    who: Identity,
    tmp: &'a Path,
    env: &'a [(String, String)],
    /// Where the build volumes are, and their paths in the sandbox.
    volumes: (&'a Path, &'a [String]),
}

impl Steps<'_> {
    /// The same steps without the build volumes, which only `build.script` sees (as on Docker,
    /// and in LAIN).
    fn without_volumes(&self) -> Self {
        Steps {
            volumes: (self.volumes.0, &[]),
            ..*self
        }
    }

    /// Runs the lines of `phase` in `context`, one sandbox each; the first failing line fails
    /// the build.
    fn phase(
        &self,
        phase: &str,
        lines: &[String],
        context: &Path,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<(), RuntimeError> {
        for line in lines {
            progress(BuildProgress::Step(format!("{phase}: {line}")));
            let script = Script {
                sandbox: self.sandbox,
                init: self.init,
                who: self.who,
                context,
                tmp: self.tmp,
                env: self.env,
                volumes: self.volumes,
            };
            script
                .run(line, progress)
                .map_err(|e| RuntimeError::Failed(format!("{phase}: `{line}`: {e}")))?;
        }
        Ok(())
    }

    /// Runs the prepare scripts on a copy of `context`, keeps only `keep` of it, and makes it
    /// the prepared directory `prepared` (the kernel's, normalised like a release).
    fn prepare(
        &self,
        context: &Path,
        prepare: &crate::spec::model::Prepare,
        prepared: &Path,
        kernel: tree::Owner,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<(), RuntimeError> {
        let failed = |e: String| RuntimeError::Failed(format!("prepare: {e}"));
        let mut work_name = context.as_os_str().to_owned();
        work_name.push(".prepare");
        let work = PathBuf::from(work_name);
        let _ = tree::remove(&work);
        let result = (|| {
            tree::farm(context, &work, None).map_err(|e| failed(e.to_string()))?;
            if self.who.switch {
                tree::hand_over(&work, (self.who.uid, self.who.gid))
                    .map_err(|e| failed(e.to_string()))?;
            }
            self.without_volumes()
                .phase("prepare", &prepare.script, &work, progress)?;
            keep_only(&work, &prepare.keep).map_err(|e| failed(format!("keep: {e}")))?;
            tree::normalize(&work, self.who.switch.then_some(kernel))
                .map_err(|e| failed(e.to_string()))?;
            if let Some(parent) = prepared.parent() {
                make_kernel_dirs(parent).map_err(|e| failed(e.to_string()))?;
            }
            match std::fs::rename(&work, prepared) {
                Ok(()) => Ok(()),
                // Another build of the app made the same one meanwhile.
                Err(_) if prepared.is_dir() => Ok(()),
                Err(e) => Err(failed(format!("{}: {e}", prepared.display()))),
            }
        })();
        let _ = tree::remove(&work);
        result
    }

    /// Runs `test.script` on a copy of `context` (the build's output), removed afterwards.
    fn test(
        &self,
        context: &Path,
        lines: &[String],
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<(), RuntimeError> {
        let failed = |e: String| RuntimeError::Failed(format!("test: {e}"));
        let mut copy_name = context.as_os_str().to_owned();
        copy_name.push(".test");
        let copy = PathBuf::from(copy_name);
        let _ = tree::remove(&copy);
        let result = (|| {
            tree::farm(context, &copy, None).map_err(|e| failed(e.to_string()))?;
            if self.who.switch {
                tree::hand_over(&copy, (self.who.uid, self.who.gid))
                    .map_err(|e| failed(e.to_string()))?;
            }
            self.without_volumes().phase("test", lines, &copy, progress)
        })();
        let _ = tree::remove(&copy);
        result
    }
}

/// Creates `path` and its missing parents as 0700 directories (the kernel's).
fn make_kernel_dirs(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
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
    /// Where the build volumes are, and their paths in the sandbox.
    volumes: (&'a Path, &'a [String]),
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
        let mut binds = vec![
            (
                open(self.context).map_err(|e| e.to_string())?,
                "/lain/app".into(),
            ),
            (open(self.tmp).map_err(|e| e.to_string())?, "/tmp".into()),
        ];
        let (root, paths) = self.volumes;
        if !paths.is_empty() {
            let root = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())
                .map_err(|e| format!("build volumes: {e}"))?;
            for path in paths {
                let dir = root
                    .open_dir(path.trim_start_matches('/'))
                    .map_err(|e| format!("build volume {path}: {e}"))?;
                binds.push((OwnedFd::from(dir.into_std_file()), path.clone()));
            }
        }
        let jail = Jail {
            identity: self.who,
            binds,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_volumes_are_cleared_once_they_outgrow_their_bound() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("volumes");
        std::fs::create_dir_all(root.join("cache/m2")).expect("mkdir");
        std::fs::write(root.join("cache/m2/a"), [0u8; 10]).expect("write");
        let mut warnings = Vec::new();
        let mut progress = |p: BuildProgress| {
            if let BuildProgress::Warning(w) = p {
                warnings.push(w);
            }
        };
        bound_volumes(&root, 10, &mut progress);
        assert!(root.join("cache/m2/a").exists(), "within the bound");
        std::fs::write(root.join("cache/m2/b"), [0u8; 1]).expect("write");
        bound_volumes(&root, 10, &mut progress);
        assert!(!root.exists(), "cleared");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("11 bytes, more than 10"),
            "{warnings:?}"
        );
    }

    #[test]
    fn keep_only_leaves_the_kept_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("node_modules/x")).expect("mkdir");
        std::fs::write(dir.join("junk"), "j").expect("write");
        std::fs::write(dir.join("keep me"), "k").expect("write");
        std::os::unix::fs::symlink("/etc", dir.join("link")).expect("symlink");
        keep_only(dir, &["./node_modules".into(), "keep me".into()]).expect("keep");
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["keep me", "node_modules"]);
    }
}
