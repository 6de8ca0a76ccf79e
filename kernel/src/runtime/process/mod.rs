//! The `process` runtime: each instance a supervised local process (the embedded default).
//!
//! An instance is a directory `<root>/<name>/` holding its spec (`spec.json`, with labels and
//! allocated host ports), the shim's lock, the main process id (`pid`) and its exit status
//! (`exit`), the way Docker keeps a container. Creating is an atomic rename of a prepared
//! directory, so a name is taken at most once; starting runs a [`shim`] that survives the
//! kernel; [`Runtime::list`] rebuilds the whole state from the directories alone. Given a
//! wake-up ([`ProcessRuntime::with_exit_events`]), it reports each instance's end as it happens
//! ([`exits`]: a pidfd per shim), as the Docker runtime reports its engines' events.
//!
//! Every instance, build script and command probe runs in a [`sandbox`] (bubblewrap): its own
//! view of the files, its own processes, an unprivileged user, nothing of the kernel's. An
//! instance's `/lain/app` is its own copy of the release (`<dir>/app`, see [`tree::farm`]), its
//! secret files are placed at their declared paths (kept 0600 in `<dir>/secrets`, copied into
//! the sandbox read-only at each start), its volumes are directories under the data dir bound
//! at their declared paths, kept across restarts and new releases of the same instance number.
//!
//! What differs from Docker: the "image" is a release directory (a proc's own `image` is refused
//! at deploy); there is no network namespace, so every port gets its own host port (a free UDP
//! port for a UDP port), the main one passed in `PORT` and each one in `PORT_<n>`
//! (`PORT_<n>_UDP`); memory and CPU limits use cgroups where
//! writable; a proc's `user` is refused (every proc runs as its app's own identity).

pub mod build;
pub mod cgroup;
mod config;
pub mod exits;
mod instance;
mod pty;
pub mod sandbox;
pub mod shim;
pub mod tree;

use super::{
    BuildProgress, BuildRequest, InstanceSpec, Observed, RunState, Runtime, RuntimeError, labels,
};
pub use config::Config;

pub(crate) use instance::instance_jail;
use instance::{check_place, prepare};

use cgroup::Cgroups;
use sandbox::{Identity, Sandbox};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The spec as stored in an instance directory, with what the runtime resolved.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSpec {
    pub spec: InstanceSpec,
    pub host_ports: Vec<u16>,
    /// Working directory in the sandbox.
    pub cwd: String,
    pub env: Vec<(String, String)>,
    /// The sandbox's settings when the instance was created.
    pub sandbox: Sandbox,
    /// Who the instance runs as.
    pub identity: Identity,
    /// Paths of its secret files in the sandbox (the files are in `<dir>/secrets`).
    pub secrets: Vec<String>,
}

/// Where an instance's own `/lain/app` is, in its directory.
const APP_DIR: &str = "app";

/// `pid`: the main process, written by the shim once it runs.
#[derive(Serialize, Deserialize)]
pub(crate) struct PidRecord {
    pub pid: u32,
    pub started_at: i64,
    /// The shim's own process id (absent in records of older shims), followed for exit events.
    #[serde(default)]
    pub shim: Option<u32>,
}

/// `exit`: how the main process ended, written by the shim.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub finished_at: i64,
    pub error: Option<String>,
}

/// Local processes supervised by shims, each in a sandbox.
pub struct ProcessRuntime {
    root: PathBuf,
    shim: PathBuf,
    cgroups: Option<Cgroups>,
    sandbox: Sandbox,
    exits: Option<exits::Exits>,
}

impl ProcessRuntime {
    /// A runtime keeping its instances under `root`; `shim` is the `lain` executable (next to
    /// it, `lain-shim` supervises each instance and `lain-sandbox-init` is every sandbox's
    /// init). Fails, saying how to fix it, when either is missing or `sandbox` cannot run a
    /// program here.
    pub fn open(
        root: &Path,
        shim: &Path,
        sandbox: Sandbox,
    ) -> Result<ProcessRuntime, RuntimeError> {
        std::fs::create_dir_all(root)
            .map_err(|e| RuntimeError::Failed(format!("cannot create {}: {e}", root.display())))?;
        let supervisor = shim::executable(shim);
        if let Err(e) = std::fs::File::open(&supervisor) {
            return Err(RuntimeError::Failed(format!(
                "lain's instance shim {} cannot be opened ({e}): install it next to the lain \
                 executable (`cargo install` and `cargo build` put both there)",
                supervisor.display()
            )));
        }
        sandbox
            .check(&sandbox::init::executable(shim))
            .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        let cgroups = Cgroups::detect();
        if !cgroups.as_ref().is_some_and(Cgroups::enforces_memory) {
            tracing::warn!("no writable memory cgroup: memory limits are recorded, not enforced");
        }
        if !cgroups.as_ref().is_some_and(Cgroups::enforces_cpu) {
            tracing::warn!(
                "no writable cpu cgroup (v2 `cpu` delegated to /sys/fs/cgroup/lain, or v1 \
                 /sys/fs/cgroup/cpu): cpu limits are recorded, not enforced"
            );
        }
        if !sandbox.switches_user() {
            tracing::warn!(
                "the kernel does not run as root: sandboxes run as its own user (files, processes and environment are isolated; what that user may do on the host is not)"
            );
        }
        Ok(ProcessRuntime {
            root: root.to_path_buf(),
            shim: shim.to_path_buf(),
            cgroups,
            sandbox,
            exits: None,
        })
    }

    /// Reports every instance's end to `wake` as it happens ([`exits`]), as the Docker runtime
    /// reports its engines' events; without it an exit is seen only when the instances are next
    /// listed.
    pub fn with_exit_events(mut self, wake: std::sync::Arc<tokio::sync::Notify>) -> ProcessRuntime {
        self.exits = Some(exits::Exits::new(wake));
        self
    }

    /// Whether memory limits are enforced.
    pub fn enforces_memory(&self) -> bool {
        self.cgroups.as_ref().is_some_and(Cgroups::enforces_memory)
    }

    /// Whether CPU limits are enforced.
    pub fn enforces_cpu(&self) -> bool {
        self.cgroups.as_ref().is_some_and(Cgroups::enforces_cpu)
    }

    fn dir(&self, name: &str) -> Result<PathBuf, RuntimeError> {
        if !valid_name(name) {
            return Err(RuntimeError::Invalid {
                name: name.into(),
                reason: "a name is 1-200 characters of A-Z a-z 0-9 . _ - and not `.`-led".into(),
            });
        }
        let dir = self.root.join(name);
        if dir.join("spec.json").exists() {
            Ok(dir)
        } else {
            Err(RuntimeError::NotFound(name.into()))
        }
    }

    /// Starts `argv` in a fresh sandbox made from instance `name`'s stored spec (its user,
    /// environment, `/lain/app` and volumes), stdout and stderr piped, killed when dropped.
    fn spawn_exec(
        &self,
        name: &str,
        argv: &[String],
    ) -> Result<tokio::process::Child, RuntimeError> {
        let mut cmd = self.exec_command(name, argv, &[])?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn()
            .map_err(|e| RuntimeError::Failed(format!("exec in {name}: {e}")))
    }

    /// The sandboxed command that runs `argv` in instance `name`'s context with `env` added
    /// to its environment (replacing variables of the same name), killed when dropped; the
    /// caller gives it its standard streams.
    fn exec_command(
        &self,
        name: &str,
        argv: &[String],
        env: &[(String, String)],
    ) -> Result<tokio::process::Command, RuntimeError> {
        let failed =
            |e: &dyn std::fmt::Display| RuntimeError::Failed(format!("exec in {name}: {e}"));
        let dir = self.dir(name)?;
        let stored = Self::read_spec(&dir)?;
        let mut jail = instance_jail(&dir, &stored, argv.to_vec()).map_err(|e| failed(&e))?;
        for (key, value) in env {
            jail.env.retain(|(k, _)| k != key);
            jail.env.push((key.clone(), value.clone()));
        }
        let cmd = stored
            .sandbox
            .command(jail, &sandbox::init::executable(&self.shim), None)
            .map_err(|e| failed(&e))?;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        Ok(cmd)
    }

    fn read_spec(dir: &Path) -> Result<StoredSpec, RuntimeError> {
        let bytes = std::fs::read(dir.join("spec.json"))
            .map_err(|e| RuntimeError::Failed(format!("{}: {e}", dir.display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::Failed(format!("{}: corrupt spec: {e}", dir.display())))
    }

    fn observe(&self, dir: &Path, stored: StoredSpec) -> Observed {
        let pid: Option<PidRecord> = read_json(&dir.join("pid"));
        let state = if shim_alive(dir) {
            // A shim found running that is not followed yet (started by an earlier kernel).
            if let (Some(exits), Some(shim)) = (&self.exits, pid.as_ref().and_then(|p| p.shim))
                && !exits.follows(&stored.spec.name, shim)
            {
                exits.follow(&stored.spec.name, shim);
            }
            RunState::Running {
                pid: pid.as_ref().map(|p| p.pid),
                started_at: pid
                    .as_ref()
                    .map_or_else(crate::clock::unix_secs, |p| p.started_at),
            }
        } else if let Some(exit) = read_json::<ExitRecord>(&dir.join("exit")) {
            RunState::Exited {
                code: exit.code,
                signal: exit.signal,
                finished_at: Some(exit.finished_at),
            }
        } else if pid.is_some() {
            // The shim died without recording an exit (it was killed): the status is lost.
            RunState::Exited {
                code: None,
                signal: None,
                finished_at: None,
            }
        } else {
            RunState::Created
        };
        let memory = read_number(&dir.join("memory")).unwrap_or(stored.spec.memory);
        let cpu = read_number(&dir.join("cpu")).unwrap_or(stored.spec.cpu);
        Observed {
            name: stored.spec.name,
            labels: stored.spec.labels,
            state,
            host_ports: stored.host_ports,
            memory,
            cpu,
            health: None,
            networks: Vec::new(),
        }
    }

    /// Waits until `dir`'s shim runs the program (or gave up), at most `limit`.
    async fn wait_started(dir: &Path, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if dir.join("pid").exists() || dir.join("exit").exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn build(
        &self,
        request: BuildRequest<'_>,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<String, RuntimeError> {
        build::build(
            &request,
            progress,
            &self.sandbox,
            &sandbox::init::executable(&self.shim),
        )
    }

    /// Refuses: an instance here is a copy of the release directory in a sandbox, not an image.
    fn own_image(&self, image: &str) -> Result<String, String> {
        Err(format!(
            "`image: {image}` cannot run on the process runtime, which runs the app's release directory and no images; remove `image` to run the release, or run the kernel with runtime = \"docker\""
        ))
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let invalid = |reason: String| RuntimeError::Invalid {
            name: spec.name.clone(),
            reason,
        };
        if !valid_name(&spec.name) {
            return Err(invalid("invalid instance name".into()));
        }
        if let Some(user) = &spec.user {
            return Err(invalid(format!(
                "user `{user}`: the process runtime runs every proc as its app's own identity \
                 and cannot run one as another user"
            )));
        }
        if spec.argv().is_empty() {
            return Err(invalid(
                "no command: the process runtime needs the proc's `cmd` (or `entrypoint`)".into(),
            ));
        }
        let release = PathBuf::from(&spec.image);
        if !release.is_dir() {
            return Err(invalid(format!(
                "release directory {} is missing",
                spec.image
            )));
        }
        let places = spec
            .volumes
            .iter()
            .map(|v| ("volume", v.as_str()))
            .chain(
                spec.cloud_volumes
                    .iter()
                    .map(|c| ("cloud volume", c.path.as_str())),
            )
            .chain(
                spec.secret_files
                    .iter()
                    .map(|f| ("secret file", f.path.as_str())),
            );
        for (what, path) in places {
            check_place(&self.sandbox, what, path).map_err(invalid)?;
        }
        let app = spec
            .labels
            .get(labels::APP)
            .cloned()
            .unwrap_or_else(|| spec.name.clone());
        let identity = self.sandbox.identity(&app);
        let mut host_ports = Vec::with_capacity(spec.ports.len());
        for port in &spec.ports {
            host_ports.push(
                free_port(port.protocol)
                    .map_err(|e| invalid(format!("no free {port} host port: {e}")))?,
            );
        }
        let mut env = base_env();
        env.extend(spec.env.iter().cloned());
        if let Some(port) = host_ports.first() {
            env.push(("PORT".into(), port.to_string()));
        }
        // Without a network namespace an instance cannot listen on its declared ports: each
        // one's host port is given as `PORT_<n>` (`PORT_<n>_UDP` for a UDP port).
        for (port, host) in spec.ports.iter().zip(&host_ports) {
            let name = match port.protocol {
                super::Protocol::Tcp => format!("PORT_{}", port.number),
                super::Protocol::Udp => format!("PORT_{}_UDP", port.number),
            };
            env.push((name, host.to_string()));
        }
        let stored = StoredSpec {
            spec: spec.clone(),
            host_ports,
            cwd: working_dir(spec.workdir.as_deref()),
            env,
            sandbox: self.sandbox.clone(),
            identity,
            secrets: spec.secret_files.iter().map(|f| f.path.clone()).collect(),
        };
        let fail = |e: String| RuntimeError::Failed(format!("create {}: {e}", spec.name));
        let tmp = self
            .root
            .join(format!(".tmp-{}-{}", spec.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let prepared = {
            let (tmp, spec, release) = (tmp.clone(), spec.clone(), release.clone());
            tokio::task::spawn_blocking(move || prepare(&tmp, &spec, &release, &stored))
                .await
                .map_err(|e| fail(e.to_string()))?
        };
        if let Err(e) = prepared {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(fail(e));
        }
        // rename(2) onto an existing non-empty directory fails: the name is taken at most once.
        match std::fs::rename(&tmp, self.root.join(&spec.name)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                if self.root.join(&spec.name).join("spec.json").exists() {
                    Err(RuntimeError::Exists(spec.name.clone()))
                } else {
                    Err(fail(e.to_string()))
                }
            }
        }
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        let dir = self.dir(name)?;
        if shim_alive(&dir) {
            return Ok(());
        }
        // The previous run's records go first, so waiting for this run cannot see them.
        for stale in ["exit", "pid"] {
            match std::fs::remove_file(dir.join(stale)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RuntimeError::Failed(format!("{name}: {e}"))),
            }
        }
        let mut cmd = tokio::process::Command::new(shim::executable(&self.shim));
        cmd.arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            RuntimeError::Failed(format!(
                "cannot run the shim {}: {e}",
                shim::executable(&self.shim).display()
            ))
        })?;
        // Followed while the child is held, so it is not reaped before: its pid is its own.
        if let (Some(exits), Some(pid)) = (&self.exits, child.id()) {
            exits.follow(name, pid);
        }
        // The shim says when the program runs (or could not start) on its standard output, or
        // ends (EOF): one line, read as it comes, at most 5 s.
        if let Some(mut told) = child.stdout.take() {
            let mut line = [0u8; shim::STARTED_LINE.len()];
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read(&mut told, &mut line),
            )
            .await;
        }
        // Dropping the child lets tokio reap it in the background; the shim itself lives on.
        drop(child);
        Ok(())
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.dir(name)?;
        if !shim_alive(&dir) {
            return Ok(());
        }
        Self::wait_started(&dir, Duration::from_secs(5)).await;
        let Some(pid) = read_json::<PidRecord>(&dir.join("pid")) else {
            return Err(RuntimeError::Failed(format!("{name}: no pid recorded")));
        };
        let Some(group) = rustix::process::Pid::from_raw(pid.pid as i32) else {
            return Err(RuntimeError::Failed(format!("{name}: bad pid {}", pid.pid)));
        };
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        if wait_shim_exit(&dir, grace).await {
            return Ok(());
        }
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        if wait_shim_exit(&dir, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(RuntimeError::Failed(format!("{name} did not stop")))
        }
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let dir = match self.dir(name) {
            Ok(dir) => dir,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if shim_alive(&dir) {
            return Err(RuntimeError::Failed(format!(
                "{name} is running; stop it first"
            )));
        }
        tree::remove(&dir).map_err(|e| RuntimeError::Failed(format!("remove {name}: {e}")))?;
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove(name);
        }
        Ok(())
    }

    async fn set_memory(&self, name: &str, bytes: u64) -> Result<(), RuntimeError> {
        let dir = self.dir(name)?;
        if shim_alive(&dir)
            && let Some(cgroups) = &self.cgroups
        {
            cgroups
                .set_memory(name, bytes)
                .map_err(|e| RuntimeError::Failed(format!("{name}: memory limit: {e}")))?;
        }
        write_atomic(&dir.join("memory"), bytes.to_string().as_bytes())
            .map_err(|e| RuntimeError::Failed(format!("{name}: {e}")))
    }

    async fn set_cpu(&self, name: &str, millicores: u32) -> Result<(), RuntimeError> {
        let dir = self.dir(name)?;
        if shim_alive(&dir)
            && let Some(cgroups) = &self.cgroups
        {
            cgroups
                .set_cpu(name, millicores)
                .map_err(|e| RuntimeError::Failed(format!("{name}: cpu limit: {e}")))?;
        }
        write_atomic(&dir.join("cpu"), millicores.to_string().as_bytes())
            .map_err(|e| RuntimeError::Failed(format!("{name}: {e}")))
    }

    async fn list(&self, kernel: &str) -> Result<Vec<Observed>, RuntimeError> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| RuntimeError::Failed(format!("{}: {e}", self.root.display())))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let is_tmp = entry.file_name().to_string_lossy().starts_with('.');
            if is_tmp || !dir.join("spec.json").exists() {
                continue;
            }
            match Self::read_spec(&dir) {
                Ok(stored)
                    if stored.spec.labels.get(labels::KERNEL).map(String::as_str)
                        == Some(kernel) =>
                {
                    out.push(self.observe(&dir, stored));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("skipping a broken instance: {e}"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn exec_probe(
        &self,
        name: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<bool, RuntimeError> {
        let dir = self.dir(name)?;
        let stored = Self::read_spec(&dir)?;
        let argv = ["sh", "-c", command].map(String::from).to_vec();
        let jail = instance_jail(&dir, &stored, argv)
            .map_err(|e| RuntimeError::Failed(format!("probe of {name}: {e}")))?;
        let cmd = stored
            .sandbox
            .command(jail, &sandbox::init::executable(&self.shim), None)
            .map_err(|e| RuntimeError::Failed(format!("probe of {name}: {e}")))?;
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Failed(format!("probe of {name}: {e}")))?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Ok(status.success()),
            Ok(Err(e)) => Err(RuntimeError::Failed(format!("probe of {name}: {e}"))),
            Err(_) => Ok(false),
        }
    }

    async fn exec_stream(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
        out: tokio::sync::mpsc::Sender<super::ExecChunk>,
    ) -> Result<super::ExecOutput, RuntimeError> {
        use super::ExecChunk;
        use tokio::io::AsyncReadExt as _;
        let failed =
            |e: &dyn std::fmt::Display| RuntimeError::Failed(format!("exec in {name}: {e}"));
        let mut child = self.spawn_exec(name, argv)?;
        // Sends what `stream` gives as it comes; false when nobody receives any more.
        async fn pump(
            stream: Option<impl tokio::io::AsyncRead + Unpin>,
            out: &tokio::sync::mpsc::Sender<ExecChunk>,
            wrap: fn(Vec<u8>) -> ExecChunk,
        ) -> bool {
            let Some(mut stream) = stream else {
                return true;
            };
            let mut buf = vec![0u8; 8192];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(n) => {
                        if out.send(wrap(buf[..n].to_vec())).await.is_err() {
                            return false;
                        }
                    }
                }
            }
        }
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let waited = tokio::time::timeout(timeout, async {
            let (a, b) = tokio::join!(
                pump(stdout, &out, ExecChunk::Stdout),
                pump(stderr, &out, ExecChunk::Stderr)
            );
            if a && b {
                Some(child.wait().await)
            } else {
                None
            }
        })
        .await;
        let ended = match waited {
            Ok(Some(Ok(status))) => Ok(super::ExecOutput {
                code: status.code(),
                timed_out: false,
                output: Vec::new(),
            }),
            Ok(Some(Err(e))) => Err(failed(&e)),
            Ok(None) => Err(failed(&"nobody reads its output: killed")),
            Err(_) => Ok(super::ExecOutput {
                code: None,
                timed_out: true,
                output: Vec::new(),
            }),
        };
        if !matches!(
            ended,
            Ok(super::ExecOutput {
                timed_out: false,
                ..
            })
        ) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        ended
    }

    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<super::ExecOutput, RuntimeError> {
        use tokio::io::AsyncReadExt as _;
        let failed =
            |e: &dyn std::fmt::Display| RuntimeError::Failed(format!("exec in {name}: {e}"));
        let mut child = self.spawn_exec(name, argv)?;
        // Each stream is read to its end, keeping only its last EXEC_OUTPUT_MAX bytes.
        async fn tail(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
            let Some(mut stream) = stream else {
                return Vec::new();
            };
            let (mut kept, mut buf) = (Vec::new(), vec![0u8; 8192]);
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > super::EXEC_OUTPUT_MAX {
                    kept.drain(..kept.len() - super::EXEC_OUTPUT_MAX);
                }
            }
            kept
        }
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let reading = async { tokio::join!(tail(out), tail(err)) };
        let waited = tokio::time::timeout(timeout, async {
            let (status, (mut out, err)) = tokio::join!(child.wait(), reading);
            out.extend(err);
            (status, out)
        })
        .await;
        match waited {
            Ok((Ok(status), output)) => Ok(super::ExecOutput {
                code: status.code(),
                timed_out: false,
                output,
            }),
            Ok((Err(e), _)) => Err(failed(&e)),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Ok(super::ExecOutput {
                    code: None,
                    timed_out: true,
                    output: Vec::new(),
                })
            }
        }
    }

    async fn exec_tty(
        &self,
        name: &str,
        command: &super::tty::TtyCommand,
        input: tokio::sync::mpsc::Receiver<super::tty::TtyInput>,
        out: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<super::ExecOutput, RuntimeError> {
        self.exec_on_pty(name, command, input, out).await
    }

    fn host_address(&self, _node: &str) -> String {
        "127.0.0.1".into()
    }
}

/// Names are file names: no separators, no leading dot.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether a shim holds the instance's lock.
fn shim_alive(dir: &Path) -> bool {
    let Ok(lock) = std::fs::File::open(dir.join("lock")) else {
        return false;
    };
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

async fn wait_shim_exit(dir: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !shim_alive(dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The instance's working directory in the sandbox: `/lain/app` unless `workdir` says
/// otherwise (relative paths are under `/lain/app`).
fn working_dir(workdir: Option<&str>) -> String {
    match workdir {
        None => "/lain/app".into(),
        Some(w) if w.starts_with('/') => w.into(),
        Some(w) => format!("/lain/app/{w}"),
    }
}

/// The environment every instance starts from; the rest is LAIN's and the proc's own.
fn base_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), sandbox::DEFAULT_PATH.into()),
        ("HOME".into(), "/tmp".into()),
    ]
}

/// A port of `protocol` free on this host right now.
fn free_port(protocol: super::Protocol) -> std::io::Result<u16> {
    let address = match protocol {
        super::Protocol::Tcp => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        super::Protocol::Udp => std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?,
    };
    Ok(address.port())
}

/// A number kept in a file of the instance directory (`memory`, `cpu`: limits set in place).
pub(crate) fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see all or nothing.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
