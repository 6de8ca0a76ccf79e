//! The `docker` runtime: instances are containers on Docker engines, one engine per node.
//!
//! Every container carries the instance's labels, so after a kernel restart the reconciler finds
//! and adopts them from the engines alone; its name is the instance name, so an engine refuses a
//! second one. Each app gets one bridge network per engine (`lain-<app>`) on which its procs
//! reach each other by proc name; apps do not share networks, so they are isolated from each
//! other. With `[docker] network = "overlay"` the engines are members of one Docker swarm and
//! each app's network is instead one swarm-scope attachable overlay network (see [`swarm`]), so
//! that its procs, and the portals it uses, reach each other across engines. Each engine's event stream wakes the reconciler when a container dies or changes
//! health. An image missing on a node's engine is copied from an engine that has it (save and
//! load), so releases built on one engine run on all.

pub mod build;
mod config;
pub mod container;
pub mod engine;
mod logs;
pub mod swarm;
mod tty;

pub use config::{Config, NetworkMode};

use super::{BuildProgress, BuildRequest, InstanceSpec, Observed, Runtime, RuntimeError, labels};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use engine::TlsFiles;
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A node's engine.
struct Engine {
    address: String,
    docker: Docker,
    events: tokio::task::JoinHandle<()>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.events.abort();
    }
}

/// Containers on the nodes' Docker engines.
pub struct DockerRuntime {
    kernel: String,
    tls: Option<TlsFiles>,
    wake: Arc<tokio::sync::Notify>,
    engines: Mutex<BTreeMap<String, Arc<Engine>>>,
    /// Instance name -> node, learned from creation and listing.
    nodes_of: Mutex<HashMap<String, String>>,
    /// When lain last started each container (Unix seconds).
    started: Mutex<HashMap<String, i64>>,
    /// Memory set in place after creation.
    memory: Mutex<HashMap<String, u64>>,
    /// CPU (milli-cores) set in place after creation.
    cpu: Mutex<HashMap<String, u32>>,
    /// Each node's last listing, reported again while it is unreachable.
    last_seen: Mutex<HashMap<String, Vec<Observed>>>,
    unreachable: Mutex<Vec<String>>,
    /// Serialises network creation: an engine accepts two networks of one name.
    networks: tokio::sync::Mutex<()>,
    /// Containers whose output is being copied into the log store.
    following: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Where releases are pushed and pulled, if anywhere.
    registry: Option<String>,
    /// How cloud volumes are made.
    cloud: config::CloudVolumes,
    /// Bridge or overlay networks.
    network_mode: NetworkMode,
    /// Overlay mode: the swarm membership of engines found members (by address).
    members: Mutex<HashMap<String, swarm::Membership>>,
}

impl DockerRuntime {
    /// A runtime for kernel `kernel`, whose engines' events wake `wake`; `tls` is used for
    /// `tcp://` engines.
    pub fn new(
        kernel: &str,
        tls: Option<TlsFiles>,
        wake: Arc<tokio::sync::Notify>,
    ) -> DockerRuntime {
        DockerRuntime {
            kernel: kernel.to_string(),
            tls,
            wake,
            engines: Mutex::default(),
            nodes_of: Mutex::default(),
            started: Mutex::default(),
            memory: Mutex::default(),
            cpu: Mutex::default(),
            last_seen: Mutex::default(),
            unreachable: Mutex::default(),
            networks: tokio::sync::Mutex::new(()),
            following: Arc::default(),
            registry: None,
            cloud: config::CloudVolumes::default(),
            network_mode: NetworkMode::Bridge,
            members: Mutex::default(),
        }
    }

    /// Gives apps networks of kind `mode`.
    pub fn with_network(mut self, mode: NetworkMode) -> DockerRuntime {
        self.network_mode = mode;
        self
    }

    /// Makes cloud volumes as `cloud` says (driver and options).
    pub fn with_cloud_volumes(mut self, cloud: config::CloudVolumes) -> DockerRuntime {
        self.cloud = cloud;
        self
    }

    /// Pushes releases to `registry` (`host:port`) and pulls them from it on other nodes.
    pub fn with_registry(mut self, registry: Option<String>) -> DockerRuntime {
        self.registry = registry;
        self
    }

    /// Pulls `image` onto `engine` from the registry its reference names.
    async fn pull(&self, engine: &Engine, image: &str) -> Result<(), RuntimeError> {
        let (repo, tag) = split_reference(image);
        let options = bollard::query_parameters::CreateImageOptions {
            from_image: Some(repo.to_string()),
            tag: tag.map(str::to_string),
            ..Default::default()
        };
        let mut stream = engine.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| RuntimeError::Failed(format!("pull {image}: {e}")))?;
            if let Some(detail) = info.error_detail {
                return Err(RuntimeError::Failed(format!(
                    "pull {image}: {}",
                    detail.message.unwrap_or_default()
                )));
            }
        }
        tracing::info!(image, engine = %engine.address, "pulled");
        Ok(())
    }

    fn engine(&self, node: &str) -> Result<Arc<Engine>, RuntimeError> {
        self.engines
            .lock()
            .get(node)
            .cloned()
            .ok_or_else(|| RuntimeError::Failed(format!("no engine for node `{node}`")))
    }

    /// The engine holding instance `name`.
    fn engine_of(&self, name: &str) -> Result<Arc<Engine>, RuntimeError> {
        let node = self.nodes_of.lock().get(name).cloned();
        match node {
            Some(node) => self.engine(&node),
            None => Err(RuntimeError::NotFound(name.into())),
        }
    }

    /// Makes sure the app's network exists on `engine`.
    async fn ensure_network(&self, engine: &Engine, app: &str) -> Result<String, RuntimeError> {
        let name = container::network_name(app);
        let _one_at_a_time = self.networks.lock().await;
        if self.network_mode == NetworkMode::Overlay {
            self.member(&engine.docker, &engine.address).await?;
            let manager = self.manager().await?;
            let labels = HashMap::from([
                (labels::KERNEL.to_string(), self.kernel.clone()),
                (labels::APP.to_string(), app.to_string()),
            ]);
            swarm::ensure_overlay(&manager.docker, &manager.address, &name, labels).await?;
            swarm::refuse_local_network(&engine.docker, &engine.address, &name).await?;
            return Ok(name);
        }
        if engine.docker.inspect_network(&name, None).await.is_ok() {
            return Ok(name);
        }
        let request = bollard::models::NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([
                (labels::KERNEL.to_string(), self.kernel.clone()),
                (labels::APP.to_string(), app.to_string()),
            ])),
            ..Default::default()
        };
        match engine.docker.create_network(request).await {
            Ok(_) => Ok(name),
            // Created meanwhile by a parallel creation.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(name),
            Err(e) => Err(RuntimeError::Failed(format!("network {name}: {e}"))),
        }
    }

    /// Overlay mode: the swarm membership of the engine at `address`, an error naming it when it
    /// is not a member of the swarm the nodes' manager engine manages.
    async fn member(
        &self,
        docker: &Docker,
        address: &str,
    ) -> Result<swarm::Membership, RuntimeError> {
        if let Some(known) = self.members.lock().get(address).cloned() {
            return Ok(known);
        }
        let membership = swarm::membership(docker, address).await?;
        match self.manager().await {
            Ok(manager) if manager.address != address => {
                swarm::check_member(
                    &manager.docker,
                    &manager.address,
                    &membership.node_id,
                    address,
                )
                .await?;
            }
            Ok(_) => {}
            // A manager itself, where no node's engine is one yet: its swarm is the nodes'.
            Err(_) if membership.manager => {}
            Err(e) => return Err(e),
        }
        self.members
            .lock()
            .insert(address.to_string(), membership.clone());
        Ok(membership)
    }

    /// Overlay mode: a node's engine that is a swarm manager, through which networks are made.
    async fn manager(&self) -> Result<Arc<Engine>, RuntimeError> {
        let engines: Vec<Arc<Engine>> = self.engines.lock().values().cloned().collect();
        let mut asked = Vec::new();
        for engine in engines {
            let known = self.members.lock().get(&engine.address).cloned();
            let membership = match known {
                Some(known) => Some(known),
                None => swarm::membership(&engine.docker, &engine.address)
                    .await
                    .ok(),
            };
            if membership.is_some_and(|m| m.manager) {
                return Ok(engine);
            }
            asked.push(engine.address.clone());
        }
        Err(RuntimeError::Failed(format!(
            "[docker] network = \"overlay\" needs a swarm manager among the nodes' engines, and \
             none of [{}] is one (`docker swarm init` on one of them, or add a manager engine \
             as a node)",
            asked.join(", ")
        )))
    }

    /// Makes sure `image` is on `engine`: pulled from the registry when it is one of the
    /// registry's, else copied from another engine that has it, else pulled from wherever its
    /// reference points (a proc's own `image`, e.g. from Docker Hub).
    async fn ensure_image(&self, engine: &Engine, image: &str) -> Result<(), RuntimeError> {
        if engine.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let from_registry = self
            .registry
            .as_ref()
            .is_some_and(|registry| image.starts_with(&format!("{registry}/")));
        if from_registry {
            match self.pull(engine, image).await {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!("{e}; copying from another engine instead"),
            }
        }
        if self.copy_image(engine, image).await? {
            return Ok(());
        }
        if from_registry {
            return Err(RuntimeError::Failed(format!("no engine has image {image}")));
        }
        self.pull(engine, image)
            .await
            .map_err(|e| RuntimeError::Failed(format!("no engine has image {image}, and {e}")))
    }

    /// Copies `image` onto `engine` from another engine that has it; false when none has it.
    async fn copy_image(&self, engine: &Engine, image: &str) -> Result<bool, RuntimeError> {
        let others: Vec<Arc<Engine>> = self.engines.lock().values().cloned().collect();
        for other in others {
            if other.address == engine.address || other.docker.inspect_image(image).await.is_err() {
                continue;
            }
            tracing::info!(image, from = %other.address, to = %engine.address, "copying image");
            let exported = other.docker.export_image(image);
            let options = bollard::query_parameters::ImportImageOptions::default();
            let mut loading = engine.docker.import_image_stream(options, exported, None);
            while let Some(item) = loading.next().await {
                let info =
                    item.map_err(|e| RuntimeError::Failed(format!("loading {image}: {e}")))?;
                if let Some(detail) = info.error_detail {
                    return Err(RuntimeError::Failed(format!(
                        "loading {image}: {}",
                        detail.message.unwrap_or_default()
                    )));
                }
            }
            return Ok(true);
        }
        Ok(false)
    }

    async fn list_engine(
        &self,
        engine: &Engine,
        kernel: &str,
    ) -> Result<Vec<Observed>, DockerError> {
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{}={kernel}", labels::KERNEL)],
            )])),
            ..Default::default()
        };
        let summaries = engine.docker.list_containers(Some(options)).await?;
        let started = self.started.lock().clone();
        let memory = self.memory.lock().clone();
        let cpu = self.cpu.lock().clone();
        Ok(summaries
            .iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .as_ref()?
                    .first()?
                    .trim_start_matches('/')
                    .to_string();
                container::observe(
                    c,
                    started.get(&name).copied(),
                    memory.get(&name).copied(),
                    cpu.get(&name).copied(),
                )
            })
            .collect())
    }
}

/// An image reference as the engine's pull takes it: the repository, and the tag when the
/// reference has one (`latest` when it has neither tag nor digest; a digest stays in the
/// repository).
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    match image.rsplit_once(':') {
        // A `:` before the last `/` is a registry's port, not a tag.
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (image, Some("latest")),
    }
}

/// The reference a proc's own `image` runs as: with a registry configured, a reference that
/// names no registry host (`redis:7`, `team/tool:1`) is the registry's (`<registry>/redis:7`),
/// as release images are; otherwise it is used as written.
pub fn own_image(image: &str, registry: Option<&str>) -> String {
    let names_registry = image.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    });
    match registry {
        Some(registry) if !names_registry => format!("{registry}/{image}"),
        _ => image.to_string(),
    }
}

fn failed(what: &str, name: &str) -> impl Fn(DockerError) -> RuntimeError {
    let context = format!("{what} {name}");
    move |e| RuntimeError::Failed(format!("{context}: {e}"))
}

/// Runs `cmd` detached in container `name` and polls until it ends: `Some(exit code)`, or `None`
/// when `timeout` passed first. `what` names the operation in errors.
async fn run_exec(
    docker: &Docker,
    name: &str,
    cmd: Vec<String>,
    timeout: Duration,
    what: &str,
) -> Result<Option<Option<i64>>, RuntimeError> {
    let config = bollard::models::ExecConfig {
        cmd: Some(cmd),
        ..Default::default()
    };
    let exec = docker
        .create_exec(name, config)
        .await
        .map_err(failed(what, name))?;
    let options = bollard::exec::StartExecOptions {
        detach: true,
        ..Default::default()
    };
    docker
        .start_exec(&exec.id, Some(options))
        .await
        .map_err(failed(what, name))?;
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let state = docker
            .inspect_exec(&exec.id)
            .await
            .map_err(failed(what, name))?;
        if state.running != Some(true) {
            return Ok(Some(state.exit_code));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Runs `cmd` in container `name` attached to its stdout and stderr, sending them to `sink` as
/// they come; waits at most `timeout` for it to end (Docker cannot stop an exec: one still
/// running then, or when nobody receives its output any more, is left to end by itself).
async fn run_exec_output(
    docker: &Docker,
    name: &str,
    cmd: Vec<String>,
    timeout: Duration,
    sink: tokio::sync::mpsc::Sender<crate::runtime::ExecChunk>,
) -> Result<crate::runtime::ExecOutput, RuntimeError> {
    use crate::runtime::ExecChunk;
    use futures::StreamExt as _;
    let what = "exec in";
    let config = bollard::models::ExecConfig {
        cmd: Some(cmd),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker
        .create_exec(name, config)
        .await
        .map_err(failed(what, name))?;
    let started = docker
        .start_exec(&exec.id, None::<bollard::exec::StartExecOptions>)
        .await
        .map_err(failed(what, name))?;
    let bollard::exec::StartExecResults::Attached { mut output, .. } = started else {
        return Err(RuntimeError::Failed(format!(
            "{what} {name}: Docker did not attach to the command's output"
        )));
    };
    let read = async {
        while let Some(item) = output.next().await {
            let chunk = match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    ExecChunk::Stderr(message.to_vec())
                }
                Ok(
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message },
                ) => ExecChunk::Stdout(message.to_vec()),
                Ok(bollard::container::LogOutput::StdIn { .. }) => continue,
                Err(e) => return Err(failed(what, name)(e)),
            };
            if sink.send(chunk).await.is_err() {
                return Err(RuntimeError::Failed(format!(
                    "{what} {name}: nobody reads its output"
                )));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => {
            return Ok(crate::runtime::ExecOutput {
                code: None,
                timed_out: true,
                output: Vec::new(),
            });
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    Ok(crate::runtime::ExecOutput {
        code: exec_status(docker, &exec.id, name).await?,
        timed_out: false,
        output: Vec::new(),
    })
}

/// The exit status of exec `id` in container `name` whose output just ended: its status may
/// take a moment to show (up to 5 s); none when it does not.
async fn exec_status(docker: &Docker, id: &str, name: &str) -> Result<Option<i32>, RuntimeError> {
    for _ in 0..50 {
        let state = docker
            .inspect_exec(id)
            .await
            .map_err(failed("exec in", name))?;
        if state.running != Some(true) {
            return Ok(state.exit_code.and_then(|c| i32::try_from(c).ok()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Whether a Docker error is a 404 (already gone) or 304 (already in that state).
fn is_noop(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 304 | 404,
            ..
        }
    )
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn build(
        &self,
        request: BuildRequest<'_>,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<String, RuntimeError> {
        // Build where the kernel runs when it is a node, else on the first node.
        let engine = {
            let engines = self.engines.lock();
            engines
                .get(super::LOCAL_NODE)
                .or_else(|| engines.values().next())
                .cloned()
        };
        let engine =
            engine.ok_or_else(|| RuntimeError::Failed("no Docker engine to build on".into()))?;
        progress(BuildProgress::Step(format!(
            "building on {}",
            engine.address
        )));
        let image = build::build(&engine.docker, &request, progress).await?;
        match &self.registry {
            Some(registry) => build::push(&engine.docker, &image, registry, progress).await,
            None => Ok(image),
        }
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        let node = spec.labels.get(labels::NODE).cloned().unwrap_or_default();
        let app = spec.labels.get(labels::APP).cloned().unwrap_or_default();
        let engine = self.engine(&node)?;
        self.ensure_image(&engine, &spec.image).await?;
        let network = self.ensure_network(&engine, &app).await?;
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match engine
            .docker
            .create_container(
                Some(options),
                container::create_body(spec, &network, &self.cloud),
            )
            .await
        {
            Ok(_) => {}
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                self.nodes_of.lock().insert(spec.name.clone(), node);
                return Err(RuntimeError::Exists(spec.name.clone()));
            }
            Err(e) => return Err(failed("create", &spec.name)(e)),
        }
        self.nodes_of.lock().insert(spec.name.clone(), node);
        if !spec.secret_files.is_empty() {
            // Into the container's own writable layer, before it starts: never an image
            // layer, an env var or a label. A container that did not get them is removed.
            let uploaded = match container::secrets_tar(&spec.secret_files) {
                Ok(tar) => {
                    let options = bollard::query_parameters::UploadToContainerOptions {
                        path: "/".into(),
                        ..Default::default()
                    };
                    engine
                        .docker
                        .upload_to_container(
                            &spec.name,
                            Some(options),
                            bollard::body_full(tar.into()),
                        )
                        .await
                        .map_err(failed("place secret files into", &spec.name))
                }
                Err(e) => Err(RuntimeError::Failed(format!(
                    "secret files of {}: {e}",
                    spec.name
                ))),
            };
            if let Err(e) = uploaded {
                let _ = self.remove(&spec.name).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        let engine = self.engine_of(name)?;
        match engine.docker.start_container(name, None).await {
            Ok(()) => {}
            Err(e) if is_noop(&e) => return Ok(()),
            Err(e) => return Err(failed("start", name)(e)),
        }
        self.started
            .lock()
            .insert(name.to_string(), crate::clock::unix_secs());
        Ok(())
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        let engine = self.engine_of(name)?;
        let options = bollard::query_parameters::StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        match engine.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_noop(&e) => Ok(()),
            Err(e) => Err(failed("stop", name)(e)),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let engine = match self.engine_of(name) {
            Ok(engine) => engine,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let options = bollard::query_parameters::RemoveContainerOptions {
            v: true,
            ..Default::default()
        };
        match engine.docker.remove_container(name, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_noop(&e) => {}
            Err(e) => return Err(failed("remove", name)(e)),
        }
        self.nodes_of.lock().remove(name);
        self.started.lock().remove(name);
        self.memory.lock().remove(name);
        self.cpu.lock().remove(name);
        Ok(())
    }

    /// Runs it, pulled like a release image (through the registry when one is configured,
    /// see [`own_image`]).
    fn own_image(&self, image: &str) -> Result<String, String> {
        Ok(own_image(image, self.registry.as_deref()))
    }

    async fn set_memory(&self, name: &str, bytes: u64) -> Result<(), RuntimeError> {
        let engine = self.engine_of(name)?;
        let memory = i64::try_from(bytes).unwrap_or(i64::MAX);
        let update = bollard::models::ContainerUpdateBody {
            memory: Some(memory),
            memory_swap: Some(memory),
            ..Default::default()
        };
        engine
            .docker
            .update_container(name, update)
            .await
            .map_err(failed("update memory of", name))?;
        self.memory.lock().insert(name.to_string(), bytes);
        Ok(())
    }

    async fn set_cpu(&self, name: &str, millicores: u32) -> Result<(), RuntimeError> {
        let engine = self.engine_of(name)?;
        // 0 lifts the limit (NanoCpus 0 is "no limit" to the engine).
        let update = bollard::models::ContainerUpdateBody {
            nano_cpus: Some(container::nano_cpus(millicores).unwrap_or(0)),
            ..Default::default()
        };
        engine
            .docker
            .update_container(name, update)
            .await
            .map_err(failed("update cpu of", name))?;
        self.cpu.lock().insert(name.to_string(), millicores);
        Ok(())
    }

    async fn list(&self, kernel: &str) -> Result<Vec<Observed>, RuntimeError> {
        let engines: Vec<(String, Arc<Engine>)> = self
            .engines
            .lock()
            .iter()
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        let listings = futures::future::join_all(engines.iter().map(|(node, engine)| async move {
            let listed =
                tokio::time::timeout(Duration::from_secs(5), self.list_engine(engine, kernel))
                    .await
                    .map_err(|_| "did not answer within 5 s".to_string())
                    .and_then(|listed| listed.map_err(|e| e.to_string()));
            (node.clone(), listed)
        }))
        .await;
        let mut out = Vec::new();
        let mut unreachable = Vec::new();
        for (node, listed) in listings {
            match listed {
                Ok(observed) => {
                    if let Some((_, engine)) = engines.iter().find(|(n, _)| *n == node) {
                        for o in observed.iter().filter(|o| o.state.is_running()) {
                            // Started by this kernel: from its start; adopted: from now on.
                            let since = self.started.lock().get(&o.name).copied();
                            let since = since.unwrap_or_else(|| crate::clock::unix_secs() - 1);
                            self.follow_logs(engine, o, since);
                        }
                    }
                    let mut nodes_of = self.nodes_of.lock();
                    for o in &observed {
                        nodes_of.insert(o.name.clone(), node.clone());
                    }
                    self.last_seen.lock().insert(node, observed.clone());
                    out.extend(observed);
                }
                Err(e) => {
                    tracing::warn!(%node, "engine unreachable: {e}");
                    unreachable.push(node.clone());
                    out.extend(
                        self.last_seen
                            .lock()
                            .get(&node)
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
            }
        }
        *self.unreachable.lock() = unreachable;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn exec_probe(
        &self,
        name: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<bool, RuntimeError> {
        let engine = self.engine_of(name)?;
        let argv = vec!["sh".into(), "-c".into(), command.into()];
        let ended = run_exec(&engine.docker, name, argv, timeout, "probe of").await?;
        Ok(ended == Some(Some(0)))
    }

    /// Runs `argv` through the engine's exec (detached: its exit status is kept, its output is
    /// not captured).
    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<crate::runtime::ExecOutput, RuntimeError> {
        // The output streamed, keeping the last EXEC_OUTPUT_MAX bytes of each stream.
        let (sink, mut chunks) = tokio::sync::mpsc::channel(16);
        let collect = async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(chunk) = chunks.recv().await {
                let (kept, bytes) = match chunk {
                    crate::runtime::ExecChunk::Stdout(b) => (&mut out, b),
                    crate::runtime::ExecChunk::Stderr(b) => (&mut err, b),
                };
                kept.extend_from_slice(&bytes);
                if kept.len() > crate::runtime::EXEC_OUTPUT_MAX {
                    kept.drain(..kept.len() - crate::runtime::EXEC_OUTPUT_MAX);
                }
            }
            out.extend(err);
            out
        };
        let (ended, output) = tokio::join!(self.exec_stream(name, argv, timeout, sink), collect);
        Ok(crate::runtime::ExecOutput { output, ..ended? })
    }

    async fn exec_stream(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
        out: tokio::sync::mpsc::Sender<crate::runtime::ExecChunk>,
    ) -> Result<crate::runtime::ExecOutput, RuntimeError> {
        let engine = self.engine_of(name)?;
        run_exec_output(&engine.docker, name, argv.to_vec(), timeout, out).await
    }

    async fn exec_tty(
        &self,
        name: &str,
        command: &crate::runtime::tty::TtyCommand,
        input: tokio::sync::mpsc::Receiver<crate::runtime::tty::TtyInput>,
        out: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<crate::runtime::ExecOutput, RuntimeError> {
        let engine = self.engine_of(name)?;
        tty::exec_tty(&engine.docker, name, command, input, out).await
    }

    fn host_address(&self, node: &str) -> String {
        self.engines
            .lock()
            .get(node)
            .map_or_else(|| "127.0.0.1".into(), |e| engine::host_of(&e.address))
    }

    async fn admit_node(&self, address: &str) -> Result<(), RuntimeError> {
        if self.network_mode == NetworkMode::Bridge {
            return Ok(());
        }
        let docker = engine::connect(address, self.tls.as_ref())?;
        self.member(&docker, address).await.map(|_| ())
    }

    fn sync_nodes(&self, nodes: &[(String, String)]) {
        let mut engines = self.engines.lock();
        engines.retain(|name, e| nodes.iter().any(|(n, a)| n == name && *a == e.address));
        for (name, address) in nodes {
            if engines.contains_key(name) {
                continue;
            }
            match engine::connect(address, self.tls.as_ref()) {
                Ok(docker) => {
                    let events = tokio::spawn(engine::follow_events(
                        docker.clone(),
                        self.kernel.clone(),
                        self.wake.clone(),
                    ));
                    engines.insert(
                        name.clone(),
                        Arc::new(Engine {
                            address: address.clone(),
                            docker,
                            events,
                        }),
                    );
                }
                Err(e) => tracing::warn!(node = %name, "{e}"),
            }
        }
        let mut unreachable = self.unreachable.lock();
        for (name, _) in nodes {
            if !engines.contains_key(name) && !unreachable.contains(name) {
                unreachable.push(name.clone());
            }
        }
    }

    fn unreachable(&self) -> Vec<String> {
        self.unreachable.lock().clone()
    }

    fn isolates_apps(&self) -> bool {
        true
    }

    async fn connect(&self, name: &str, app: &str, aliases: &[String]) -> Result<(), RuntimeError> {
        let engine = self.engine_of(name)?;
        let network = self.ensure_network(&engine, app).await?;
        let request = bollard::models::NetworkConnectRequest {
            container: name.to_string(),
            endpoint_config: Some(bollard::models::EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        engine
            .docker
            .connect_network(&network, request)
            .await
            .map_err(failed(&format!("connect to {network}:"), name))
    }

    async fn disconnect(&self, name: &str, app: &str) -> Result<(), RuntimeError> {
        let engine = self.engine_of(name)?;
        let network = container::network_name(app);
        let request = bollard::models::NetworkDisconnectRequest {
            container: name.to_string(),
            force: Some(true),
        };
        match engine.docker.disconnect_network(&network, request).await {
            Ok(()) => Ok(()),
            Err(e) if is_noop(&e) => Ok(()),
            Err(e) => Err(failed(&format!("disconnect from {network}:"), name)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{own_image, split_reference};

    #[test]
    fn a_proc_image_without_a_registry_host_is_the_registrys_when_one_is_configured() {
        let r = Some("registry.lain.local:5000");
        assert_eq!(own_image("redis:7", r), "registry.lain.local:5000/redis:7");
        assert_eq!(
            own_image("team/tool:1", r),
            "registry.lain.local:5000/team/tool:1"
        );
        for named in [
            "docker.io/library/redis:7",
            "127.0.0.1:5000/tool",
            "localhost/tool:1",
        ] {
            assert_eq!(own_image(named, r), named, "names its registry");
        }
        assert_eq!(own_image("redis:7", None), "redis:7");
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(split_reference("redis:7"), ("redis", Some("7")));
        assert_eq!(split_reference("redis"), ("redis", Some("latest")));
        assert_eq!(
            split_reference("127.0.0.1:5000/tool"),
            ("127.0.0.1:5000/tool", Some("latest"))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/tool:2"),
            ("127.0.0.1:5000/tool", Some("2"))
        );
        assert_eq!(
            split_reference("tool@sha256:abc"),
            ("tool@sha256:abc", None)
        );
    }
}
