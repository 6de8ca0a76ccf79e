//! Tiered compilation: a plugin installed or upgraded (or loaded at start from a cold cache)
//! runs at once on its Winch build ([`PluginEngine::compile_tiered`]), and its Cranelift build is
//! made here, in the background, then handed to the registry, which swaps it in.
//!
//! One worker thread takes the jobs in order; each compile runs in a thread pool of its own
//! whose threads run at a lower priority (nice +10), so Cranelift neither delays the Winch
//! compile of the next install (which would otherwise queue behind it in wasmtime's shared
//! thread pool) nor takes the CPU from calls. There is at most one job per plugin: a newer
//! submission for the same plugin replaces a queued one, so a superseded upgrade is never
//! compiled; a job already compiling finishes, and the registry drops its result unless the
//! plugin still runs the very load the job was made for (see [`LoadedPlugin::load_id`]).
//!
//! [`LoadedPlugin::load_id`]: super::loaded::LoadedPlugin::load_id

use super::engine::{Compiler, PluginEngine};
use super::loaded::Build;
use super::world::Kind;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Cranelift build of one load of a component, to be made.
pub struct Job {
    /// The plugin's name.
    pub plugin: String,
    /// The load it is for ([`LoadedPlugin::load_id`](super::loaded::LoadedPlugin::load_id)).
    pub load_id: u64,
    /// SHA-256 of the component, hex (its key in the compile cache).
    pub sha256: String,
    /// The plugin's kind, whose world the build is checked against.
    pub kind: Kind,
    /// The component.
    pub bytes: Arc<[u8]>,
}

/// What receives a finished build: called on the worker thread, once per job that compiled.
pub type Deliver = dyn Fn(&Job, Build) + Send + Sync;

/// The background compiler of one registry. Dropping it stops the worker once the compile in
/// progress (if any) is done; queued jobs are dropped.
pub struct Optimizer {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    /// The plugin whose job is compiling.
    running: Option<String>,
    stopped: bool,
}

impl Queue {
    /// Queues `job` behind the others, or in the place of the queued job of the same plugin.
    fn push(&mut self, job: Job) {
        match self.waiting.iter_mut().find(|j| j.plugin == job.plugin) {
            Some(queued) => {
                tracing::debug!(plugin = %job.plugin, "a newer version supersedes the queued Cranelift build");
                *queued = job;
            }
            None => self.waiting.push_back(job),
        }
    }
}

impl Optimizer {
    /// Starts the worker thread; `deliver` receives each finished build.
    pub fn start(engine: Arc<PluginEngine>, deliver: Box<Deliver>) -> std::io::Result<Optimizer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("lain-optimize".into())
            .spawn(move || work(&worker, &engine, &*deliver))?;
        Ok(Optimizer { shared })
    }

    /// Queues `job`, in place of a queued job of the same plugin (which is then never compiled).
    pub fn submit(&self, job: Job) {
        self.shared.queue.lock().push(job);
        self.shared.changed.notify_all();
    }

    /// Drops the queued job of `plugin`, if any (it was removed).
    pub fn forget(&self, plugin: &str) {
        let mut queue = self.shared.queue.lock();
        queue.waiting.retain(|j| j.plugin != plugin);
        self.shared.changed.notify_all();
    }

    /// Waits until no job is queued or compiling (every build made so far is delivered); `false`
    /// if that did not happen within `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.shared.queue.lock();
        while !queue.waiting.is_empty() || queue.running.is_some() {
            if self
                .shared
                .changed
                .wait_until(&mut queue, deadline)
                .timed_out()
            {
                return queue.waiting.is_empty() && queue.running.is_none();
            }
        }
        true
    }
}

impl Drop for Optimizer {
    fn drop(&mut self) {
        let mut queue = self.shared.queue.lock();
        queue.stopped = true;
        queue.waiting.clear();
        self.shared.changed.notify_all();
    }
}

/// The worker: takes jobs in order until stopped.
fn work(shared: &Shared, engine: &PluginEngine, deliver: &Deliver) {
    lower_priority();
    // Made with the first job: a kernel whose plugins are all in the cache never starts it.
    let mut pool: Option<Option<rayon::ThreadPool>> = None;
    loop {
        let job = {
            let mut queue = shared.queue.lock();
            loop {
                if queue.stopped {
                    return;
                }
                if let Some(job) = queue.waiting.pop_front() {
                    queue.running = Some(job.plugin.clone());
                    break job;
                }
                shared.changed.wait(&mut queue);
            }
        };
        let pool = pool.get_or_insert_with(background_pool);
        let started = Instant::now();
        let built = match pool {
            Some(pool) => pool.install(|| optimize(engine, &job)),
            None => optimize(engine, &job),
        };
        match built {
            Ok(build) => {
                tracing::debug!(plugin = %job.plugin, ms = started.elapsed().as_millis(), "Cranelift build ready");
                deliver(&job, build);
            }
            Err(e) => tracing::error!(
                plugin = %job.plugin,
                "the Cranelift build failed; the plugin keeps running on its Winch build: {e}"
            ),
        }
        shared.queue.lock().running = None;
        shared.changed.notify_all();
    }
}

/// Compiles `job`'s component with Cranelift (through the cache, which keeps the artifact for the
/// next start) and checks it like an install.
fn optimize(engine: &PluginEngine, job: &Job) -> Result<Build, super::InstallError> {
    let component = engine.compile(&job.sha256, &job.bytes)?;
    let build = Build::new(engine, &component, job.kind)?;
    debug_assert_eq!(build.compiler(), Compiler::Cranelift);
    Ok(build)
}

/// The threads Cranelift compiles on in the background: as many as the machine has, at a lower
/// priority. `None` (compile on wasmtime's shared pool) if they cannot be started.
fn background_pool() -> Option<rayon::ThreadPool> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lain-optimize-{i}"))
        .start_handler(|_| lower_priority())
        .build()
    {
        Ok(pool) => Some(pool),
        Err(e) => {
            tracing::warn!("no background compile threads, compiling on the shared ones: {e}");
            None
        }
    }
}

/// Lowers the calling thread's scheduling priority (nice +10): background compiles yield the
/// CPU to calls and to installs. Failing to is not an error, only slower installs under load.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 10) {
        tracing::debug!("cannot lower the priority of a compile thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(plugin: &str, load_id: u64) -> Job {
        Job {
            plugin: plugin.into(),
            load_id,
            sha256: format!("{load_id:064x}"),
            kind: Kind::AuthProvider,
            bytes: Arc::from(&b"\0asm"[..]),
        }
    }

    fn queued(queue: &Queue) -> Vec<(&str, u64)> {
        queue
            .waiting
            .iter()
            .map(|j| (j.plugin.as_str(), j.load_id))
            .collect()
    }

    #[test]
    fn a_newer_job_replaces_the_queued_one_of_its_plugin_in_place() {
        let mut queue = Queue::default();
        queue.push(job("jwt", 1));
        queue.push(job("web", 2));
        queue.push(job("jwt", 3));
        assert_eq!(queued(&queue), [("jwt", 3), ("web", 2)]);
        queue.push(job("token", 4));
        queue.push(job("web", 5));
        assert_eq!(queued(&queue), [("jwt", 3), ("web", 5), ("token", 4)]);
    }

    #[test]
    fn waiting_for_an_idle_optimizer_times_out_while_a_job_is_queued() {
        let optimizer = Optimizer {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                changed: Condvar::new(),
            }),
        };
        assert!(optimizer.wait_idle(Duration::ZERO));
        // No worker takes it: the queue stays busy.
        optimizer.submit(job("jwt", 1));
        assert!(!optimizer.wait_idle(Duration::from_millis(20)));
        optimizer.forget("jwt");
        assert!(optimizer.wait_idle(Duration::ZERO));
    }
}
