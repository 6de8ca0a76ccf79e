//! The typed, validated model of a `lain.yaml`.

use crate::plugin::bindings::types::Proc;
use serde::Serialize;
use std::collections::BTreeMap;

/// An app as its `lain.yaml` describes it, after validation and LAIN's defaults.
#[derive(Clone, Debug, Serialize)]
pub struct AppSpec {
    /// The app's name (its boundary).
    pub appname: String,
    /// Where its code lives; bound on first deploy.
    pub giturl: Option<String>,
    /// `app`, or `resource` for a template instantiated per client.
    pub apptype: AppType,
    /// How the build image is made.
    pub build: Build,
    /// How the release image is made from the build image; none re-tags the build image.
    pub release: Option<Release>,
    /// How the test image is made.
    pub test: Option<Test>,
    /// Notification settings, kept as written.
    pub notify: BTreeMap<String, String>,
    /// Services this app uses: service app -> service names.
    pub use_services: BTreeMap<String, Vec<String>>,
    /// Resources this app uses: resource app -> its services and parameters.
    pub use_resources: BTreeMap<String, UseResource>,
    /// The procs, in file order (a `service.x` section gives the proc, then its portal).
    pub procs: Vec<ProcSpec>,
}

/// `apptype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppType {
    /// An app that runs.
    App,
    /// A template instantiated per client app (`use_resources`); never run itself.
    Resource,
}

/// `build`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Build {
    /// Base image.
    pub base: String,
    /// Shell commands run in `/lain/app`, in order.
    pub script: Vec<String>,
    /// Build arguments `(name, value)`; a value starting with `$` is read from the builder's
    /// environment.
    pub build_arg: Vec<(String, String)>,
    /// The dependency-cache image, if any.
    pub prepare: Option<Prepare>,
    /// Cache directories for the `docker run` + commit build mode.
    pub volumes: Vec<String>,
}

/// `build.prepare`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Prepare {
    /// Explicit version; none means a version derived from base and scripts.
    pub version: Option<String>,
    /// Shell commands.
    pub script: Vec<String>,
    /// Entries of `/lain/app` kept after the scripts (everything else is removed).
    pub keep: Vec<String>,
    /// Build arguments of the prepare image.
    pub build_arg: Vec<(String, String)>,
}

/// `release`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Release {
    /// Shell commands run in an intermediate image before copying.
    pub script: Vec<String>,
    /// Base of the release image; none re-tags the build image.
    pub dest_base: Option<String>,
    /// Files copied from the build image.
    pub copy: Vec<Copy>,
}

/// One `release.copy` item (relative paths are under `/lain/app`).
#[derive(Clone, Debug, Serialize)]
pub struct Copy {
    /// Path in the build image.
    pub src: String,
    /// Path in the release image.
    pub dest: String,
}

/// `test`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Test {
    /// Shell commands run in the test image.
    pub script: Vec<String>,
}

/// One `use_resources` entry.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UseResource {
    /// Service names of the resource used.
    pub services: Vec<String>,
    /// Template parameters.
    pub context: BTreeMap<String, String>,
}

/// A proc: the record proc-type plugins see, plus what only the kernel uses.
#[derive(Clone, Debug, Serialize)]
pub struct ProcSpec {
    /// The section it came from (`web`, `worker.mailer`, `service.pg`, ...).
    pub section: String,
    /// Full name `<app>.<type>.<proc>` (LAIN's podgroup name).
    pub full_name: String,
    /// The proc, validated by its proc-type plugin.
    pub proc: Proc,
    /// DNS search domains; `<app_domain>.lain` is always last.
    pub dns_search: Vec<String>,
    /// Directories on the shared file system.
    pub cloud_volumes: Option<CloudVolumes>,
}

/// `cloud_volumes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CloudVolumes {
    /// `multi` (one directory per instance) or `single` (one shared by all).
    pub kind: CloudVolumeKind,
    /// Absolute paths in the container.
    pub dirs: Vec<String>,
}

/// Sharing of cloud volumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloudVolumeKind {
    /// One directory per instance.
    Multi,
    /// One directory shared by all instances.
    Single,
}

/// LAIN's app domain: the app name's dotted segments reversed (`resource.redis.hello` ->
/// `hello.redis.resource`).
pub fn app_domain(appname: &str) -> String {
    appname.split('.').rev().collect::<Vec<_>>().join(".")
}
