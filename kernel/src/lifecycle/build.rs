//! Builds: an uploaded build context (a tar holding `lain.yaml`) becomes a release.
//!
//! The context is unpacked (by [`super::context`], which trusts nothing in it) and its
//! `lain.yaml` read without following links and validated here; the runtime then builds the
//! release (a directory on the process runtime, images on Docker) and the release is recorded.
//! The same context uploaded again gives the same release (found by its sha256) without
//! rebuilding.

use super::context as unpack;
use super::records::{self, AppRecord, ReleaseRecord};
use super::{Lifecycle, LifecycleError};
use crate::plugin::Kind;
use crate::runtime::{BuildProgress, BuildRequest};
use crate::spec::{self, PluginProcTypes};
use crate::store::{Op, get_json};
use anyhow::Context;
use cap_std::fs::Dir;
use serde::Serialize;
use sha2::Digest;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
        /// The release (an earlier one when the same context was built before).
        release: ReleaseRecord,
    },
    /// The build failed; nothing was recorded.
    Failed {
        /// Why.
        message: String,
        /// `lain.yaml` problems, if that is why.
        diagnostics: Vec<spec::Diagnostic>,
    },
}

/// Decides whether a build of app `name` may go on, given whether the app exists; returns the
/// writes that go with registering a new app (its first maintainer).
pub type Admit<'a> = &'a (dyn Fn(&str, bool) -> Result<Vec<Op>, LifecycleError> + Sync);

impl Lifecycle {
    /// Builds a release of the app whose `lain.yaml` is in the `context` tar (no build
    /// argument values: `$VAR`s are empty).
    pub fn build(
        &self,
        context: &[u8],
        progress: &mut (dyn FnMut(BuildEvent) + Send),
    ) -> Result<ReleaseRecord, LifecycleError> {
        self.build_as(context, &Default::default(), progress, &|_, _| {
            Ok(Vec::new())
        })
    }

    /// [`Lifecycle::build`] with the client's values of the variables `build_arg`s name,
    /// asking `admit` once the app's name is known (before anything is built) and again when the
    /// release is recorded, whether the caller may build it.
    ///
    /// Each call unpacks into a staging directory of its own. A build of the same bytes as one in
    /// progress waits for it, and then gets its release.
    pub fn build_as(
        &self,
        context: &[u8],
        build_args: &crate::runtime::build_args::Sent,
        progress: &mut (dyn FnMut(BuildEvent) + Send),
        admit: Admit<'_>,
    ) -> Result<ReleaseRecord, LifecycleError> {
        let digest = hex::encode(sha2::Sha256::digest(context));
        let _alone = self.builds.enter(&digest, || {
            progress(BuildEvent::Step {
                message: "the same build context is being built: waiting for it".into(),
            })
        });
        let staging = Staging::create(&self.releases_dir(), &digest)?;
        self.build_in(&staging, &digest, context, build_args, progress, admit)
    }

    fn build_in(
        &self,
        staging: &Staging,
        digest: &str,
        context: &[u8],
        build_args: &crate::runtime::build_args::Sent,
        progress: &mut (dyn FnMut(BuildEvent) + Send),
        admit: Admit<'_>,
    ) -> Result<ReleaseRecord, LifecycleError> {
        progress(BuildEvent::Step {
            message: format!("unpacking the build context ({} KiB)", context.len() / 1024),
        });
        unpack::unpack(context, &staging.dir, &unpack::Limits::default())
            .map_err(|e| LifecycleError::Invalid(e.to_string()))?;
        let lain_yaml = unpack::open_file(&staging.dir, Path::new("lain.yaml"))
            .map_err(|e| e.to_string())
            .and_then(|file| spec::read(file).map_err(|e| e.to_string()))
            .map_err(|e| {
                LifecycleError::Invalid(format!("the build context has no readable lain.yaml: {e}"))
            })?;
        let types = PluginProcTypes::new(
            self.registry.enabled(Kind::ProcType),
            &self.registry.proc_types(),
        )?;
        let parsed = spec::parse("lain.yaml", &lain_yaml, &types, &self.config.domains);
        let Some(app) = parsed.spec else {
            return Err(LifecycleError::Spec(parsed.diagnostics));
        };
        // What `lain validate` warns of, the build says too (keys that have no effect, say).
        for d in &parsed.diagnostics {
            progress(BuildEvent::Warning {
                message: match d.path.as_str() {
                    "" => format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message),
                    path => format!("{}:{}:{}: {path}: {}", d.file, d.line, d.column, d.message),
                },
            });
        }
        let name = app.appname.clone();
        if !records::valid_name(&name) {
            return Err(LifecycleError::Invalid(format!(
                "appname `{name}` cannot be used as a name here: use a-z 0-9 - _ ."
            )));
        }
        let app_key = records::app_key(&name);
        admit(
            &name,
            get_json::<AppRecord>(&*self.records.store, &app_key)?.is_some(),
        )?;
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
        let now = crate::clock::unix_secs();
        let version = format!("{now}-{}", &digest[..12]);
        let dest = self.releases_dir().join(&name).join(&version);
        let cache_dir = self.config.data_dir.join("build-cache").join(&name);
        let request = BuildRequest {
            spec: &app,
            context: &staging.path,
            version: &version,
            release_dir: &dest,
            build_args,
            cache_dir: &cache_dir,
        };
        let mut forward = |p: BuildProgress| {
            progress(match p {
                BuildProgress::Step(message) => BuildEvent::Step { message },
                BuildProgress::Output(line) => BuildEvent::Output { line },
                BuildProgress::Warning(message) => BuildEvent::Warning { message },
            })
        };
        let runtime = self.runtime.clone();
        // Called on a blocking thread of the kernel's runtime (the API's `spawn_blocking`).
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            LifecycleError::Internal(anyhow::anyhow!("builds need the kernel's runtime: {e}"))
        })?;
        let image = handle
            .block_on(runtime.build(request, &mut forward))
            .map_err(|e| LifecycleError::Build(e.to_string()))?;
        let release = ReleaseRecord {
            app: name.clone(),
            version: version.clone(),
            digest: digest.to_string(),
            created_at: now,
            built_ms: crate::clock::unix_ms(),
            lain_yaml,
            image,
        };
        let release_key = records::release_key(&name, &version);
        // The app record is created by the first build only, even with two builds at once.
        crate::store::transact(&*self.records.store, &release_key, |txn| {
            let exists = txn.get(&app_key)?.is_some();
            let admitted = admit(&name, exists)?;
            txn.put_json(&release_key, &release)?;
            if !exists {
                txn.put_json(&app_key, &AppRecord::new(&name, now))?;
                admitted.into_iter().for_each(|op| txn.write(op));
            }
            Ok::<_, LifecycleError>(())
        })?;
        progress(BuildEvent::Step {
            message: format!("release {version} of {name} is ready"),
        });
        Ok(release)
    }
}

/// [`Admit`] shared with the thread a build started by [`Lifecycle::start_build`] runs on.
pub type SharedAdmit = Arc<dyn Fn(&str, bool) -> Result<Vec<Op>, LifecycleError> + Send + Sync>;

/// The events of a build started by [`Lifecycle::start_build`]; the last is `done` or `failed`.
pub type BuildEvents = tokio::sync::mpsc::UnboundedReceiver<BuildEvent>;

impl BuildEvent {
    /// The last event of a build that ended with `result`.
    pub fn last(result: &Result<ReleaseRecord, LifecycleError>) -> BuildEvent {
        match result {
            Ok(release) => BuildEvent::Done {
                release: release.clone(),
            },
            Err(LifecycleError::Spec(diagnostics)) => BuildEvent::Failed {
                message: "lain.yaml has errors".into(),
                diagnostics: diagnostics.clone(),
            },
            Err(e) => BuildEvent::Failed {
                message: e.to_string(),
                diagnostics: Vec::new(),
            },
        }
    }
}

impl Lifecycle {
    /// Starts [`Lifecycle::build_as`] of `context` on a blocking thread of the kernel's runtime
    /// and returns its events. When the context names its app, `admit` is asked here first (the
    /// app exists when its record does), so a refusal is this call's error rather than an
    /// event. `finished` gets the result once the last event is sent. Blocking: reads the store.
    pub fn start_build(
        self: &Arc<Self>,
        context: impl AsRef<[u8]> + Send + 'static,
        build_args: crate::runtime::build_args::Sent,
        admit: SharedAdmit,
        finished: impl FnOnce(&Result<ReleaseRecord, LifecycleError>) + Send + 'static,
    ) -> Result<BuildEvents, LifecycleError> {
        if let Some(app) = context_appname(context.as_ref()) {
            let exists = self.store().get(&records::app_key(&app))?.is_some();
            admit(&app, exists)?;
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            LifecycleError::Internal(anyhow::anyhow!("builds need the kernel's runtime: {e}"))
        })?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let lc = self.clone();
        runtime.spawn_blocking(move || {
            let mut send = |e: BuildEvent| {
                // A client that went away reads no more events; the build goes on.
                let _ = tx.send(e);
            };
            let result = lc.build_as(context.as_ref(), &build_args, &mut send, &*admit);
            send(BuildEvent::last(&result));
            finished(&result);
        });
        Ok(events)
    }
}

/// The `appname` of the `lain.yaml` in a build context, if it can be read (for deciding who may
/// build before building; the build itself validates everything). Only a regular `lain.yaml`
/// entry is read, at most [`spec::MAX_BYTES`], through the same depth-checked loader.
pub fn context_appname(context: &[u8]) -> Option<String> {
    let mut archive = tar::Archive::new(context);
    let mut entry = archive
        .entries()
        .ok()?
        .take(unpack::Limits::default().max_entries)
        .map_while(Result::ok)
        .find(|e| {
            e.path().is_ok_and(|p| {
                p.components()
                    .filter(|c| *c != std::path::Component::CurDir)
                    .eq(Path::new("lain.yaml").components())
            })
        })?;
    if !entry.header().entry_type().is_file() {
        return None;
    }
    let text = spec::read(&mut entry).ok()?;
    spec::appname("lain.yaml", &text).ok()
}

/// Removes the staging directories (`.build-*`) left under `root` by builds a killed kernel
/// never finished. Call it before any build of this process starts.
pub fn sweep_staging(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(".build-") {
            continue;
        }
        // `remove_dir_all` never follows symlinks; a staging dir is never one (created here).
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(path = %entry.path().display(), "removed the staging directory of an unfinished build")
            }
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), "cannot remove a stale staging directory: {e}")
            }
        }
    }
}

/// A staging directory of one build, under a name no other build uses, created exclusively
/// (never reused); removed when dropped (the process runtime moves it to the release first).
pub struct Staging {
    /// Where it is.
    pub path: PathBuf,
    /// The capability every write of the unpack goes through.
    pub dir: Dir,
}

impl Staging {
    fn create(root: &Path, digest: &str) -> Result<Staging, LifecycleError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let name = format!(
            ".build-{}-{}-{}",
            &digest[..12],
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = root.join(name);
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let staging = Staging {
            dir: Dir::open_ambient_dir(&path, cap_std::ambient_authority())
                .with_context(|| format!("cannot open {}", path.display()))?,
            path,
        };
        std::fs::set_permissions(&staging.path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", staging.path.display()))?;
        Ok(staging)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.path.display(), "cannot remove a staging directory: {e}");
            }
            _ => {}
        }
    }
}

/// The digests of the contexts being built, so that identical builds run one after the other.
#[derive(Default)]
pub struct InFlight {
    digests: parking_lot::Mutex<HashSet<String>>,
    done: parking_lot::Condvar,
}

impl InFlight {
    /// Waits until no build of `digest` runs (calling `waiting` first if one does), then holds
    /// `digest` until the guard is dropped.
    fn enter(&self, digest: &str, waiting: impl FnOnce()) -> InFlightGuard<'_> {
        let mut digests = self.digests.lock();
        if digests.contains(digest) {
            waiting();
            while digests.contains(digest) {
                self.done.wait(&mut digests);
            }
        }
        digests.insert(digest.to_string());
        InFlightGuard {
            owner: self,
            digest: digest.to_string(),
        }
    }
}

struct InFlightGuard<'a> {
    owner: &'a InFlight,
    digest: String,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.owner.digests.lock().remove(&self.digest);
        self.owner.done.notify_all();
    }
}
