//! Builds: an uploaded build context (a tar holding `lain.yaml`) becomes a release.
//!
//! The context is unpacked and its `lain.yaml` validated here; the runtime then builds the
//! release (a directory on the process runtime, images on Docker) and the release is recorded.
//! The same context uploaded again gives the same release (found by its sha256) without
//! rebuilding.

use super::records::{self, AppRecord, ReleaseRecord};
use super::{Lifecycle, LifecycleError};
use crate::plugin::Kind;
use crate::runtime::{BuildProgress, BuildRequest};
use crate::spec::{self, PluginProcTypes};
use crate::store::{Op, get_json, put_json};
use anyhow::Context;
use serde::Serialize;
use sha2::Digest;
use std::path::Path;

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
    pub fn build_as(
        &self,
        context: &[u8],
        build_args: &crate::runtime::build_args::Sent,
        progress: &mut (dyn FnMut(BuildEvent) + Send),
        admit: Admit<'_>,
    ) -> Result<ReleaseRecord, LifecycleError> {
        let digest = hex::encode(sha2::Sha256::digest(context));
        let staging =
            self.releases_dir()
                .join(format!(".build-{}-{}", &digest[..12], std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        let result = self.build_in(&staging, &digest, context, build_args, progress, admit);
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    fn build_in(
        &self,
        staging: &Path,
        digest: &str,
        context: &[u8],
        build_args: &crate::runtime::build_args::Sent,
        progress: &mut (dyn FnMut(BuildEvent) + Send),
        admit: Admit<'_>,
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
        let app_key = records::app_key(&name);
        admit(
            &name,
            get_json::<AppRecord>(&*self.store, &app_key)?.is_some(),
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
        let request = BuildRequest {
            spec: &app,
            context: staging,
            version: &version,
            release_dir: &dest,
            build_args,
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
        let mut ops = vec![put_json(&records::release_key(&name, &version), &release)?];
        let exists = get_json::<AppRecord>(&*self.store, &app_key)?.is_some();
        let admitted = admit(&name, exists)?;
        if !exists {
            ops.push(put_json(&app_key, &AppRecord::new(&name, now))?);
            ops.extend(admitted);
        }
        self.store.apply(ops)?;
        progress(BuildEvent::Step {
            message: format!("release {version} of {name} is ready"),
        });
        Ok(release)
    }
}

/// The `appname` of the `lain.yaml` in a build context, if it can be read (for deciding who may
/// build before building; the build itself validates everything).
pub fn context_appname(context: &[u8]) -> Option<String> {
    let mut archive = tar::Archive::new(context);
    let mut entry = archive.entries().ok()?.flatten().find(|e| {
        e.path().is_ok_and(|p| {
            p.components()
                .filter(|c| *c != std::path::Component::CurDir)
                .eq(Path::new("lain.yaml").components())
        })
    })?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).ok()?;
    let doc = marked_yaml::parse_yaml(0, &text).ok()?;
    let name = doc
        .as_mapping()?
        .get_scalar("appname")?
        .as_str()
        .to_string();
    Some(name)
}
