//! Builds: an uploaded build context (a tar holding `lain.yaml`) becomes a release.
//!
//! On the process runtime a release is a directory: the context unpacked, then LAIN's
//! `build.prepare.script`, `build.script` and `release.script` run in it in that order (each
//! line through `sh -e`, with the build arguments in the environment). Images (`base`,
//! `dest_base`, `release.copy`) belong to the Docker runtime and are reported as not applied. The
//! same context uploaded again gives the same release (found by its sha256) without rebuilding.

use super::records::{self, AppRecord, ReleaseRecord};
use super::{Lifecycle, LifecycleError, now_unix};
use crate::plugin::Kind;
use crate::spec::{self, PluginProcTypes};
use crate::store::{get_json, put_json};
use anyhow::Context;
use serde::Serialize;
use sha2::Digest;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

/// Longest a build script may run.
pub const SCRIPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Progress of a build, streamed to the client as one JSON object per line.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum BuildEvent {
    /// A step starts.
    Step {
        /// What it does.
        message: String,
    },
    /// A line printed by a build script.
    Output {
        /// The line.
        line: String,
    },
    /// A note (e.g. a key the runtime does not apply).
    Warning {
        /// What.
        message: String,
    },
    /// The release is ready.
    Done {
        /// The release.
        release: ReleaseRecord,
        /// Whether an identical earlier build was reused.
        reused: bool,
    },
    /// The build failed; nothing was recorded.
    Failed {
        /// Why.
        message: String,
        /// `lain.yaml` problems, if that is why.
        diagnostics: Vec<spec::Diagnostic>,
    },
}

impl Lifecycle {
    /// Builds a release of the app whose `lain.yaml` is in the `context` tar.
    pub fn build(
        &self,
        context: &[u8],
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<ReleaseRecord, LifecycleError> {
        let digest = hex::encode(sha2::Sha256::digest(context));
        let staging =
            self.releases_dir()
                .join(format!(".build-{}-{}", &digest[..12], std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        let result = self.build_in(&staging, &digest, context, progress);
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    fn build_in(
        &self,
        staging: &Path,
        digest: &str,
        context: &[u8],
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<ReleaseRecord, LifecycleError> {
        progress(BuildEvent::Step {
            message: format!("unpacking the build context ({} KiB)", context.len() / 1024),
        });
        tar::Archive::new(context).unpack(staging).map_err(|e| {
            LifecycleError::Invalid(format!("the build context is not a valid tar: {e}"))
        })?;
        let lain_yaml = std::fs::read_to_string(staging.join("lain.yaml")).map_err(|e| {
            LifecycleError::Invalid(format!("the build context has no readable lain.yaml: {e}"))
        })?;
        let types = PluginProcTypes::new(
            self.registry.enabled(Kind::ProcType),
            &self.config.proc_types,
        )?;
        let parsed = spec::parse("lain.yaml", &lain_yaml, &types, &self.config.domains);
        let Some(app) = parsed.spec else {
            return Err(LifecycleError::Spec(parsed.diagnostics));
        };
        let name = app.appname.clone();
        if !records::valid_name(&name) {
            return Err(LifecycleError::Invalid(format!(
                "appname `{name}` cannot be used as a name here: use a-z 0-9 - _ ."
            )));
        }
        if let Some(existing) = self
            .releases(&name)?
            .into_iter()
            .find(|r| r.digest == digest)
        {
            progress(BuildEvent::Step {
                message: format!("unchanged since release {}", existing.version),
            });
            return Ok(existing);
        }
        for (what, key) in [
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
            if what && self.runtime.name() == "process" {
                progress(BuildEvent::Warning {
                    message: format!(
                        "{key} is an image setting: the process runtime runs the release \
                         directory on this host and does not apply it"
                    ),
                });
            }
        }
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            (
                "HOME".into(),
                std::env::var("HOME").unwrap_or_else(|_| "/".into()),
            ),
            ("LAIN_APPNAME".into(), name.clone()),
        ];
        let args = app
            .build
            .prepare
            .iter()
            .flat_map(|p| &p.build_arg)
            .chain(&app.build.build_arg);
        for (k, v) in args {
            let value = match v.strip_prefix('$') {
                Some(var) => std::env::var(var).unwrap_or_default(),
                None => v.clone(),
            };
            env.push((k.clone(), value));
        }
        let phases = [
            ("prepare", app.build.prepare.as_ref().map(|p| &p.script)),
            ("build", Some(&app.build.script)),
            ("release", app.release.as_ref().map(|r| &r.script)),
        ];
        for (phase, script) in phases {
            for line in script.into_iter().flatten() {
                progress(BuildEvent::Step {
                    message: format!("{phase}: {line}"),
                });
                run_script(staging, line, &env, progress)
                    .map_err(|e| LifecycleError::Build(format!("{phase}: `{line}`: {e:#}")))?;
            }
        }
        let now = now_unix();
        let version = format!("{now}-{}", &digest[..12]);
        let dest = self.releases_dir().join(&name).join(&version);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::rename(staging, &dest)
            .with_context(|| format!("cannot move the release to {}", dest.display()))?;
        let release = ReleaseRecord {
            app: name.clone(),
            version: version.clone(),
            digest: digest.to_string(),
            created_at: now,
            lain_yaml,
            image: dest.to_string_lossy().into_owned(),
        };
        let app_key = records::app_key(&name);
        let mut ops = vec![put_json(&records::release_key(&name, &version), &release)?];
        if get_json::<AppRecord>(&*self.store, &app_key)?.is_none() {
            ops.push(put_json(&app_key, &AppRecord::new(&name, now))?);
        }
        self.store.apply(ops)?;
        progress(BuildEvent::Step {
            message: format!("release {version} of {name} is ready"),
        });
        Ok(release)
    }
}

/// Runs one script line with `sh -e` in `dir`, streaming its output; fails on a non-zero exit
/// or after [`SCRIPT_TIMEOUT`].
fn run_script(
    dir: &Path,
    line: &str,
    env: &[(String, String)],
    progress: &mut dyn FnMut(BuildEvent),
) -> anyhow::Result<()> {
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
        .context("cannot run sh")?;
    let pid = child.id();
    let deadline = std::time::Instant::now() + SCRIPT_TIMEOUT;
    let timer = std::thread::spawn(move || {
        while std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
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
            progress(BuildEvent::Output { line });
        }
    }
    let status = child.wait().context("waiting for the script")?;
    drop(timer);
    if status.success() {
        Ok(())
    } else {
        anyhow::bail!("exited with {status}")
    }
}

use std::os::unix::process::CommandExt as _;
