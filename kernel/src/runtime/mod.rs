//! Runtimes: where instances run.
//!
//! A [`Runtime`] materialises instances the way Docker materialises containers: an instance is
//! *created* under a name the kernel chooses (so creating it twice is detected, not duplicated),
//! *started*, observed, *stopped* with a grace period and *removed*. Every instance carries
//! labels (app, proc, instance number, release, node, kernel id); after a kernel restart the
//! reconciler rebuilds its whole view from [`Runtime::list`] and those labels, adopting what still
//! runs. The embedded default is [`process::ProcessRuntime`]: each instance a supervised local
//! process. The Docker runtime implements the same trait.

pub mod build_args;
pub mod docker;
pub mod probe;
pub mod process;
pub mod tty;

use crate::plugin::bindings::types::HealthCheck;
pub use probe::Health;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The node of the host the kernel runs on: registered by the embedded default, and on Docker
/// the node whose engine is `[docker] local` (where releases are built when it is a node).
pub const LOCAL_NODE: &str = "local";

/// The runtime instances run on (`runtime = "..."` in the kernel configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Supervised local processes (the embedded default).
    #[default]
    Process,
    /// Containers on Docker engines, one per node.
    Docker,
}

/// Label keys every instance carries.
pub mod labels {
    /// The kernel that owns the instance.
    pub const KERNEL: &str = "lain.kernel";
    /// App name.
    pub const APP: &str = "lain.app";
    /// Proc full name `<app>.<type>.<name>`.
    pub const PROC: &str = "lain.proc";
    /// Instance number, 1..N (0 for portals).
    pub const INSTANCE: &str = "lain.instance";
    /// Release version.
    pub const RELEASE: &str = "lain.release";
    /// Node name.
    pub const NODE: &str = "lain.node";
    /// The secrets stamp of the deploy that created it (procs with secret files only).
    pub const SECRETS: &str = "lain.secrets";
    /// The plan stamp of the deploy that created it (absent on instances of older kernels).
    pub const PLAN: &str = "lain.plan";
    /// Which run of its instance number this is (1, 2, ...): a restart recreates the instance
    /// with the next one, so the count survives the kernel.
    pub const ATTEMPT: &str = "lain.attempt";
    /// The restart generation it runs (`lain restart`; absent at 0).
    pub const RESTART: &str = "lain.restart";
}

/// Everything needed to create one instance.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct InstanceSpec {
    /// Unique name, chosen by the kernel (`<proc>.i<no>.<release>[.s<secrets stamp>][.p<plan stamp>].<node>`).
    pub name: String,
    /// Labels (see [`labels`]).
    pub labels: BTreeMap<String, String>,
    /// The release to run: an image on Docker, a release directory on the process runtime.
    pub image: String,
    /// Exec-form entrypoint; none keeps the image's.
    pub entrypoint: Option<Vec<String>>,
    /// Exec-form command; none keeps the image's.
    pub cmd: Option<Vec<String>>,
    /// User to run as; none keeps the image's.
    pub user: Option<String>,
    /// Environment, in order (later entries win).
    pub env: Vec<(String, String)>,
    /// Working directory; relative paths are inside the release.
    pub workdir: Option<String>,
    /// Ports the instance listens on, each TCP or UDP; the first is the main one.
    pub ports: Vec<InstancePort>,
    /// Memory limit in bytes (0: none).
    pub memory: u64,
    /// CPU in milli-cores (0: no limit).
    pub cpu: u32,
    /// Where stdout and stderr are appended.
    pub log_file: PathBuf,
    /// Names other instances of the app reach this one by: the proc name (every instance of
    /// the proc answers it) and `<proc>-<n>` (this instance alone), as in LAIN.
    pub aliases: Vec<String>,
    /// DNS search domains (`dns_search`); Docker writes them into the container's
    /// `resolv.conf`, the process runtime leaves the host's resolver as it is.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// Per-instance persistent directories (container paths), kept under `volume_root`.
    pub volumes: Vec<String>,
    /// Where this instance's volumes live on its node.
    pub volume_root: PathBuf,
    /// Cloud volumes (`cloud_volumes`): directories shared by the proc's instances or one per
    /// instance number, outside the instance's node-local volumes.
    #[serde(default)]
    pub cloud_volumes: Vec<CloudMount>,
    /// Where the process runtime keeps cloud volumes on this host (`[process]
    /// cloud_volumes_root`, default `<data_dir>/cloud-volumes`); Docker uses named volumes.
    #[serde(default)]
    pub cloud_root: PathBuf,
    /// The health check, for runtimes that run it themselves (Docker's HEALTHCHECK).
    pub health: Option<HealthCheck>,
    /// Secret files placed into the instance before it first starts. Never serialized: a
    /// runtime that records its specs (the process runtime's `spec.json`) records none.
    #[serde(skip)]
    pub secret_files: Vec<SecretFile>,
}

/// The transport protocol of an instance's port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default, and what health checks and the router use).
    #[default]
    Tcp,
    /// UDP: published and allocated as UDP, never probed.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as Docker writes it after a port (`53/udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port an instance listens on. Read from a bare number too (a TCP port), as specs recorded
/// before ports carried their protocol hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "PortRecord")]
pub struct InstancePort {
    /// Port number in the instance.
    pub number: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl InstancePort {
    /// TCP port `number`.
    pub fn tcp(number: u16) -> InstancePort {
        InstancePort {
            number,
            protocol: Protocol::Tcp,
        }
    }
}

impl std::fmt::Display for InstancePort {
    /// `80/tcp`, `53/udp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.number, self.protocol.as_str())
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum PortRecord {
    Bare(u16),
    Full {
        number: u16,
        #[serde(default)]
        protocol: Protocol,
    },
}

impl From<PortRecord> for InstancePort {
    fn from(p: PortRecord) -> InstancePort {
        match p {
            PortRecord::Bare(number) => InstancePort::tcp(number),
            PortRecord::Full { number, protocol } => InstancePort { number, protocol },
        }
    }
}

/// One cloud volume of an instance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloudMount {
    /// Absolute path in the instance.
    pub path: String,
    /// Its directory under the cloud-volume root: `<app>/<proc>/<path>` when every instance
    /// shares it (`single`), `<app>/<proc>/<no>/<path>` when each has its own (`multi`).
    pub dir: String,
    /// Its Docker volume name: `lain-cv.<app>.<proc>[.<no>].<path, `/` as `_`>`.
    pub volume: String,
}

/// One secret file for an instance. Its `Debug` shows the path and size, never the content.
#[derive(Clone)]
pub struct SecretFile {
    /// Absolute path in the instance.
    pub path: String,
    /// The plaintext.
    pub content: Vec<u8>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.path)
            .field("size", &self.content.len())
            .finish()
    }
}

impl InstanceSpec {
    /// Entrypoint then command, as one argument vector.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .flatten()
            .chain(self.cmd.iter().flatten())
            .cloned()
            .collect()
    }
}

/// What a runtime reports about one instance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Run state.
    pub state: RunState,
    /// Host ports reaching its ports, in the order of [`InstanceSpec::ports`].
    pub host_ports: Vec<u16>,
    /// Current memory limit in bytes.
    pub memory: u64,
    /// Current CPU limit in milli-cores (0: none).
    pub cpu: u32,
    /// Health as the runtime itself checks it (Docker's HEALTHCHECK); none when the runtime
    /// does not check (then the kernel probes).
    pub health: Option<Health>,
    /// Apps whose networks the instance is on (its own, and those of the clients a portal
    /// serves); empty on runtimes without networks.
    pub networks: Vec<String>,
}

/// What a build reports as it goes.
#[derive(Clone, Debug)]
pub enum BuildProgress {
    /// A step starts.
    Step(String),
    /// A line of output.
    Output(String),
    /// Something the user should know.
    Warning(String),
}

/// A release to build.
pub struct BuildRequest<'a> {
    /// The validated `lain.yaml`.
    pub spec: &'a crate::spec::AppSpec,
    /// The unpacked build context (the runtime may move it).
    pub context: &'a std::path::Path,
    /// The release version.
    pub version: &'a str,
    /// Where the release's files go, for runtimes that keep a directory.
    pub release_dir: &'a std::path::Path,
    /// The values of the variables `build_arg`s name, as the client sent them.
    pub build_args: &'a build_args::Sent,
    /// The app's build cache on this host (`<data_dir>/build-cache/<app>`), kept between its
    /// builds, for runtimes that keep one: `build.volumes` and prepared directories.
    pub cache_dir: &'a std::path::Path,
}

/// The name of the prepared state `prepare` makes on `base` (LAIN's prepare version): its
/// explicit `version`, or a digest of the base, the scripts and `keep`. A build reuses the
/// prepared state of the same name.
pub fn prepare_key(base: &str, prepare: &crate::spec::model::Prepare) -> String {
    use sha2::Digest as _;
    prepare.version.clone().unwrap_or_else(|| {
        let mut h = sha2::Sha256::new();
        h.update(base.as_bytes());
        for line in prepare.script.iter().chain(&prepare.keep) {
            h.update(line.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..6])
    })
}

impl Observed {
    /// The value of label `key`, or "".
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

/// The run state of an instance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RunState {
    /// Created, never started (or its start was interrupted).
    Created,
    /// Running since `started_at` (Unix seconds).
    Running {
        /// Process id of the main process, where the runtime has one.
        pid: Option<u32>,
        /// When it started.
        started_at: i64,
    },
    /// The main process ended.
    Exited {
        /// Exit status; none when killed by a signal or when the status was lost.
        code: Option<i32>,
        /// Signal that ended it, if any.
        signal: Option<i32>,
        /// When it ended (Unix seconds), if known.
        finished_at: Option<i64>,
    },
}

impl RunState {
    /// Whether the instance's main process runs.
    pub fn is_running(&self) -> bool {
        matches!(self, RunState::Running { .. })
    }
}

/// What a command run in an instance's context ([`Runtime::exec`]) gave.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// Exit status; none when it was killed (by a signal, or at its timeout).
    pub code: Option<i32>,
    /// Whether it was killed at its timeout.
    pub timed_out: bool,
    /// The end of its standard output and error (at most [`EXEC_OUTPUT_MAX`] bytes of each);
    /// empty on runtimes that do not capture it.
    pub output: Vec<u8>,
}

/// Bytes of each of a command's output streams that [`Runtime::exec`] keeps (the end).
pub const EXEC_OUTPUT_MAX: usize = 16 << 10;

/// A piece of a command's output, as [`Runtime::exec_stream`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecChunk {
    /// From its standard output.
    Stdout(Vec<u8>),
    /// From its standard error.
    Stderr(Vec<u8>),
}

/// A failure of a runtime operation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No instance of that name.
    #[error("no instance named `{0}`")]
    NotFound(String),
    /// An instance of that name exists already.
    #[error("an instance named `{0}` exists already")]
    Exists(String),
    /// The spec cannot be run by this runtime.
    #[error("cannot run `{name}`: {reason}")]
    Invalid {
        /// The instance.
        name: String,
        /// Why.
        reason: String,
    },
    /// The runtime itself failed.
    #[error("runtime: {0}")]
    Failed(String),
}

/// Where instances run. Every method is idempotent where it can be: starting a running instance,
/// stopping a stopped one or removing a missing one succeed without effect.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// The runtime's name (`process`, `docker`).
    fn name(&self) -> &'static str;
    /// Builds a release (LAIN's build, prepare and release phases) and returns the image its
    /// instances run: a directory on the process runtime, an image tag on Docker.
    async fn build(
        &self,
        request: BuildRequest<'_>,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<String, RuntimeError>;
    /// Creates an instance without starting it; fails with [`RuntimeError::Exists`] if the name
    /// is taken.
    async fn create(&self, spec: &InstanceSpec) -> Result<(), RuntimeError>;
    /// Starts (or restarts an exited) instance.
    async fn start(&self, name: &str) -> Result<(), RuntimeError>;
    /// Asks the instance to stop (SIGTERM), and kills it after `grace`.
    async fn stop(&self, name: &str, grace: std::time::Duration) -> Result<(), RuntimeError>;
    /// Removes a stopped instance and what the runtime kept for it.
    async fn remove(&self, name: &str) -> Result<(), RuntimeError>;
    /// The image a proc's own `image` (a reference as written in `lain.yaml`) runs as on this
    /// runtime, or why this runtime cannot run it. By default a runtime runs only its releases.
    fn own_image(&self, image: &str) -> Result<String, String> {
        Err(format!(
            "the {} runtime runs only the app's release, not another image (`image: {image}`)",
            self.name()
        ))
    }
    /// Changes the memory limit of a running instance in place.
    async fn set_memory(&self, name: &str, bytes: u64) -> Result<(), RuntimeError>;
    /// Changes the CPU limit (milli-cores, 0: none) of a running instance in place.
    async fn set_cpu(&self, name: &str, millicores: u32) -> Result<(), RuntimeError>;
    /// Every instance this runtime holds that carries `kernel` as its [`labels::KERNEL`].
    async fn list(&self, kernel: &str) -> Result<Vec<Observed>, RuntimeError>;
    /// Runs `command` (through `sh -c`) in the instance's context; true when it exits with 0.
    /// Used for command health probes.
    async fn exec_probe(
        &self,
        name: &str,
        command: &str,
        timeout: std::time::Duration,
    ) -> Result<bool, RuntimeError>;
    /// Runs `argv` (no shell) in the instance's context (its identity, environment, `/lain/app`
    /// and volumes), killing it after `timeout` (on Docker, which cannot stop an exec, it is
    /// left to end and reported as timed out). Used for a backup's `pre_run` and `post_run` and
    /// by `lain exec`.
    async fn exec(
        &self,
        name: &str,
        _argv: &[String],
        _timeout: std::time::Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        Err(RuntimeError::Failed(format!(
            "the {} runtime cannot run commands in instance {name}",
            self.name()
        )))
    }
    /// Runs `argv` as [`Runtime::exec`] does, sending its output to `out` as it is written
    /// (the returned [`ExecOutput::output`] is empty). When `out`'s receiver is gone the command
    /// is killed (where the runtime can) and an error returned. The default sends everything
    /// once the command ended.
    async fn exec_stream(
        &self,
        name: &str,
        argv: &[String],
        timeout: std::time::Duration,
        out: tokio::sync::mpsc::Sender<ExecChunk>,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut result = self.exec(name, argv, timeout).await?;
        let output = std::mem::take(&mut result.output);
        if !output.is_empty() && out.send(ExecChunk::Stdout(output)).await.is_err() {
            return Err(RuntimeError::Failed(format!(
                "exec in {name}: nobody reads its output"
            )));
        }
        Ok(result)
    }
    /// Runs `command` as [`Runtime::exec`] runs its argv, but on a terminal (see
    /// [`tty::TtyCommand`]): what arrives on `input` is typed into it (or resizes it), what it
    /// writes is sent to `out` (one stream: a terminal merges stdout and stderr). It ends when
    /// the command exits, at its timeout, or when `input`'s sender or `out`'s receiver is gone
    /// (the client left); then the command is killed where the runtime can (Docker cannot stop
    /// an exec: there its terminal's input is closed, which ends a shell, and it is left).
    async fn exec_tty(
        &self,
        name: &str,
        command: &tty::TtyCommand,
        input: tokio::sync::mpsc::Receiver<tty::TtyInput>,
        out: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<ExecOutput, RuntimeError>;
    /// The host address at which an instance's host ports are reached.
    fn host_address(&self, node: &str) -> String;
    /// Checks that a node reached at `address` can take instances before it is added (the
    /// Docker runtime in overlay mode: its engine is a member of the nodes' swarm).
    async fn admit_node(&self, _address: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Tells the runtime which nodes exist and where they are reached (`name`, `address`).
    fn sync_nodes(&self, _nodes: &[(String, String)]) {}
    /// Nodes the last [`Runtime::list`] could not reach; their instances were reported as last
    /// seen.
    fn unreachable(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether apps are isolated on networks of their own (then portals are connected to their
    /// clients' networks with [`Runtime::connect`]).
    fn isolates_apps(&self) -> bool {
        false
    }
    /// Attaches instance `name` to app `app`'s network, reachable there as `aliases`.
    async fn connect(
        &self,
        _name: &str,
        _app: &str,
        _aliases: &[String],
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Detaches instance `name` from app `app`'s network.
    async fn disconnect(&self, _name: &str, _app: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{InstancePort, Protocol};

    #[test]
    fn ports_keep_their_protocol_and_bare_numbers_of_older_specs_are_tcp() {
        let udp = InstancePort {
            number: 53,
            protocol: Protocol::Udp,
        };
        let json = serde_json::to_string(&[udp]).expect("serialize");
        assert_eq!(json, r#"[{"number":53,"protocol":"udp"}]"#);
        let back: Vec<InstancePort> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, [udp]);
        let older: Vec<InstancePort> = serde_json::from_str("[80,8080]").expect("bare");
        assert_eq!(older, [InstancePort::tcp(80), InstancePort::tcp(8080)]);
        assert_eq!(udp.to_string(), "53/udp");
    }
}
