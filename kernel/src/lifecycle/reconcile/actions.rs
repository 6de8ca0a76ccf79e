//! The steps a pass decides ([`Action`]) and how they are carried out: creations, starts and
//! network changes in parallel; retirements in the background (drain, stop, remove), with the
//! retiring instances kept in [`Retiring`] until they are gone.

use super::desired::Desired;
use crate::cluster::fence::Fence;
use crate::runtime::{InstanceSpec, Runtime, RuntimeError};
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// One step decided by a pass.
pub enum Action {
    /// Create and start an instance of proc `proc` (full name).
    Create {
        /// What to create.
        spec: Box<InstanceSpec>,
        /// Its proc's full name (a failure is that proc's problem).
        proc: String,
    },
    /// Remove an exited instance and create and start it again under the same name (a restart:
    /// the spec carries the next attempt).
    Recreate {
        /// What to create.
        spec: Box<InstanceSpec>,
        /// Its proc's full name (a failure is that proc's problem).
        proc: String,
    },
    /// Start a created instance.
    Start {
        /// Its name.
        name: String,
    },
    /// Take no traffic for `drain`, stop with `grace`, and remove.
    Retire {
        /// Its name.
        name: String,
        /// How long it may take to stop before it is killed.
        grace: Duration,
        /// How long it takes no traffic first (zero if it serves no port).
        drain: Duration,
    },
    /// Change the memory limit in place.
    SetMemory {
        /// Its name.
        name: String,
        /// The new limit.
        bytes: u64,
    },
    /// Change the CPU limit in place.
    SetCpu {
        /// Its name.
        name: String,
        /// The new limit, in milli-cores (0: none).
        millicores: u32,
    },
    /// Put a portal instance on a client app's network.
    Connect {
        /// The portal instance.
        name: String,
        /// The client app (whose network it joins).
        client: String,
        /// The name the client reaches it by.
        alias: String,
    },
    /// Take a portal instance off a former client's network.
    Disconnect {
        /// The portal instance.
        name: String,
        /// The former client app.
        client: String,
    },
}

/// Instances being retired (by name); shared with the retirement tasks, which remove their
/// instance when it is gone and wake the reconciler.
#[derive(Clone, Default)]
pub struct Retiring(Arc<Mutex<HashSet<String>>>);

impl Retiring {
    /// Whether `name` is being retired.
    pub fn contains(&self, name: &str) -> bool {
        self.0.lock().contains(name)
    }

    /// The names being retired now.
    pub fn snapshot(&self) -> HashSet<String> {
        self.0.lock().clone()
    }

    /// Marks `name` retiring; false if it already was.
    fn insert(&self, name: &str) -> bool {
        self.0.lock().insert(name.to_string())
    }

    fn remove(&self, name: &str) {
        self.0.lock().remove(name);
    }
}

/// What carrying out a pass's actions did.
#[derive(Default)]
pub struct Outcome {
    /// Steps that succeeded (retirements count when they start).
    pub done: usize,
    /// Failed creations, by the proc (full name) they were for.
    pub problems: BTreeMap<String, String>,
    /// Steps that failed (a later pass tries them again).
    pub failed: usize,
}

/// Carries out `actions`, `parallel` quick steps at once, each runtime call only while `fence`
/// allows it ([`Fence::may_act`]). Failed steps are retried by a later pass.
pub async fn carry_out(
    runtime: &Arc<dyn Runtime>,
    parallel: usize,
    fence: &Arc<Fence>,
    retiring: &Retiring,
    wake: &Arc<tokio::sync::Notify>,
    actions: Vec<Action>,
    desired: &BTreeMap<String, Desired>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut quick = Vec::new();
    for action in actions {
        match action {
            Action::Retire { name, grace, drain } => {
                if !retiring.insert(&name) {
                    continue;
                }
                outcome.done += 1;
                let (runtime, retiring, wake) = (runtime.clone(), retiring.clone(), wake.clone());
                let fence = fence.clone();
                tokio::spawn(async move {
                    tracing::info!(instance = %name, "retiring");
                    // Published as retiring (the router stops sending to it) before it stops.
                    tokio::time::sleep(drain).await;
                    let call = Guarded(&*runtime, &fence);
                    let result = match call.stop(&name, grace).await {
                        Ok(()) => call.remove(&name).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        tracing::warn!(instance = %name, "cannot retire: {e}");
                    }
                    retiring.remove(&name);
                    wake.notify_one();
                });
            }
            other => quick.push(other),
        }
    }
    let results: Vec<(Option<String>, Result<(), String>)> = futures::stream::iter(quick)
        .map(|action| {
            let (runtime, fence) = (runtime.clone(), fence.clone());
            async move {
                let (proc, result) = run(Guarded(&*runtime, &fence), action).await;
                (proc, result.map_err(|e| e.to_string()))
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    for (proc, result) in results {
        match result {
            Ok(()) => outcome.done += 1,
            Err(e) => {
                tracing::warn!("{e}");
                outcome.failed += 1;
                if let Some(proc) = proc.filter(|p| desired.contains_key(p)) {
                    outcome.problems.insert(proc, e);
                }
            }
        }
    }
    outcome
}

/// The runtime calls of the reconciler, each made only if the fence allows it at that moment.
#[derive(Clone, Copy)]
struct Guarded<'a>(&'a dyn Runtime, &'a Fence);

impl Guarded<'_> {
    fn allowed(&self) -> Result<(), RuntimeError> {
        self.1.may_act().map_err(RuntimeError::Failed)
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.create(spec).await
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.start(name).await
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.stop(name, grace).await
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.remove(name).await
    }

    async fn set_memory(&self, name: &str, bytes: u64) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.set_memory(name, bytes).await
    }

    async fn set_cpu(&self, name: &str, millicores: u32) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.set_cpu(name, millicores).await
    }

    async fn connect(&self, name: &str, app: &str, aliases: &[String]) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.connect(name, app, aliases).await
    }

    async fn disconnect(&self, name: &str, app: &str) -> Result<(), RuntimeError> {
        self.allowed()?;
        self.0.disconnect(name, app).await
    }
}

/// Carries out one quick step; the proc a failed creation was for.
async fn run(runtime: Guarded<'_>, action: Action) -> (Option<String>, Result<(), RuntimeError>) {
    match action {
        Action::Create { spec, proc } => {
            tracing::info!(instance = %spec.name, "creating");
            let r = match runtime.create(&spec).await {
                Ok(()) | Err(RuntimeError::Exists(_)) => runtime.start(&spec.name).await,
                Err(e) => Err(e),
            };
            (Some(proc), r)
        }
        Action::Recreate { spec, proc } => {
            tracing::info!(instance = %spec.name, "restarting as a new run");
            let r = match runtime.remove(&spec.name).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => match runtime.create(&spec).await {
                    Ok(()) | Err(RuntimeError::Exists(_)) => runtime.start(&spec.name).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            (Some(proc), r)
        }
        Action::Start { name } => (None, runtime.start(&name).await),
        Action::SetMemory { name, bytes } => (None, runtime.set_memory(&name, bytes).await),
        Action::SetCpu { name, millicores } => (None, runtime.set_cpu(&name, millicores).await),
        Action::Connect {
            name,
            client,
            alias,
        } => {
            tracing::info!(instance = %name, %client, "connecting a portal");
            (None, runtime.connect(&name, &client, &[alias]).await)
        }
        Action::Disconnect { name, client } => (None, runtime.disconnect(&name, &client).await),
        Action::Retire { .. } => (None, Ok(())),
    }
}
