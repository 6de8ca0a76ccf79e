//! The plugin registry: built-in and installed plugins, persisted in the state store.
//!
//! Layout in the store: `plugins/records/<name>` holds a [`Record`] (JSON, with the operator's
//! settings set through the API), `plugins/blobs/<sha256>` the component bytes of installed
//! plugins (built-ins live in the kernel binary and only have a record for their enabled flag,
//! policy and settings), and `plugins/proc-types/<type>` the live proc-type mapping. Every change is checked
//! completely (compiled, checked against its world, pre-linked) before one atomic store write, and
//! only then swapped into the in-memory table; a refused change changes nothing.
//!
//! The table is an `ArcSwap`: a caller takes an `Arc<LoadedPlugin>` and keeps it for its call, so an
//! upgrade or removal never interrupts a call in flight; it finishes on the version it started on.
//!
//! A component not in the compile cache is loaded on its Winch build, which takes a fraction of
//! Cranelift's time, and its Cranelift build is made in the background ([`crate::plugin::tiering`])
//! and swapped in the same way, under the write lock, only while the entry still holds the load it
//! was made for; the view's `compiled` says which build a plugin runs.

mod mapping;
mod settings;
mod versions;
mod view;

use settings::load_configured;
use versions::{change, is_lower};

pub use mapping::TypeMapping;
pub use settings::{ConfigChange, ConfigView};
pub use versions::Upgraded;
pub use view::{Described, PluginView};

use super::engine::{Compiler, PluginEngine};
use super::error::{Cause, InstallError};
use super::kinds::proc_type::ProcTypePlugin;
use super::loaded::{Build, LoadedPlugin, sha256_hex};
use super::manifest::Manifest;
use super::tiering::{Job, Optimizer};
use super::world::{FailurePolicy, Kind};
use crate::store::{self, Op, Store};
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

const RECORDS: &str = "plugins/records/";
const BLOBS: &str = "plugins/blobs/";

/// What the store keeps about a plugin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The manifest it was installed with.
    pub manifest: Manifest,
    /// SHA-256 of the component, hex (the blob key).
    pub sha256: String,
    /// Ships inside the kernel (no blob).
    pub builtin: bool,
    /// Whether calls are allowed.
    pub enabled: bool,
    /// The operator's failure policy, if overridden.
    pub policy: Option<FailurePolicy>,
    /// Unix seconds of install or last upgrade.
    pub installed_at: i64,
    /// The operator's settings set through the API (`lain plugin config`): while set, they
    /// replace the kernel config's `[plugins.config.<name>]` (see [`settings`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
}

/// One plugin as the registry holds it.
#[derive(Clone)]
pub struct Entry {
    /// The loaded plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// The stored record.
    pub record: Record,
}

/// The registry.
pub struct Registry {
    engine: Arc<PluginEngine>,
    store: Arc<dyn Store>,
    operator_config: BTreeMap<String, serde_json::Value>,
    mapping: RwLock<mapping::Mapping>,
    // Shared with the optimizer's worker, which swaps Cranelift builds in.
    entries: Arc<ArcSwap<BTreeMap<String, Entry>>>,
    write: Arc<Mutex<()>>,
    generation: Arc<AtomicU64>,
    optimizer: Optimizer,
}

impl Registry {
    /// Loads the built-ins, then every plugin recorded in the store.
    ///
    /// A stored plugin that no longer loads (e.g. after an incompatible kernel upgrade) is
    /// reported in the log and left out, so the kernel still starts; its record stays. Plugins
    /// whose Cranelift build is not in the compile cache start on their Winch build.
    pub fn open(
        engine: Arc<PluginEngine>,
        store: Arc<dyn Store>,
        builtins: &[(&str, &[u8])],
        operator_config: BTreeMap<String, serde_json::Value>,
    ) -> Result<Registry, InstallError> {
        let records: BTreeMap<String, Record> = store
            .list(RECORDS)
            .map_err(|e| InstallError::Store(e.to_string()))?
            .into_iter()
            .filter_map(
                |(key, bytes)| match serde_json::from_slice::<Record>(&bytes) {
                    Ok(r) => match stored_manifest(r) {
                        Ok(r) => Some((r.manifest.name.clone(), r)),
                        Err(e) => {
                            tracing::error!(%key, "plugin record left out: {e}");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::error!(%key, "ignoring corrupt plugin record: {e}");
                        None
                    }
                },
            )
            .collect();
        let mut entries = BTreeMap::new();
        let mut jobs = Vec::new();
        for (name, bytes) in builtins {
            let manifest = Manifest::embedded(bytes)?.ok_or(InstallError::NoManifest)?;
            if manifest.name != *name {
                return Err(InstallError::BadManifest(format!(
                    "built-in `{name}` carries the manifest of `{}`",
                    manifest.name
                )));
            }
            let stored = records.get(*name).filter(|r| r.builtin);
            let plugin = load_configured(
                &engine,
                &manifest,
                bytes,
                true,
                stored.and_then(|r| r.settings.as_ref()),
                operator_config.get(*name),
            )?;
            let record = match stored {
                Some(stored) => Record {
                    manifest,
                    sha256: plugin.sha256.clone(),
                    ..stored.clone()
                },
                _ => Record {
                    manifest,
                    sha256: plugin.sha256.clone(),
                    builtin: true,
                    enabled: true,
                    policy: None,
                    installed_at: 0,
                    settings: None,
                },
            };
            plugin.set_policy(record.policy);
            jobs.extend(job(&plugin, bytes));
            entries.insert(
                name.to_string(),
                Entry {
                    plugin: Arc::new(plugin),
                    record,
                },
            );
        }
        for (name, record) in records {
            if record.builtin || entries.contains_key(&name) {
                continue;
            }
            let loaded = store
                .get(&format!("{BLOBS}{}", record.sha256))
                .map_err(|e| InstallError::Store(e.to_string()))
                .and_then(|b| {
                    b.ok_or_else(|| {
                        InstallError::Store(format!("blob {} is missing", record.sha256))
                    })
                })
                .and_then(|bytes| {
                    load_configured(
                        &engine,
                        &record.manifest,
                        &bytes,
                        false,
                        record.settings.as_ref(),
                        operator_config.get(&name),
                    )
                    .map(|plugin| (plugin, bytes))
                });
            match loaded {
                Ok((plugin, bytes)) => {
                    plugin.set_policy(record.policy);
                    jobs.extend(job(&plugin, &bytes));
                    entries.insert(
                        name,
                        Entry {
                            plugin: Arc::new(plugin),
                            record,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(plugin = %name, "stored plugin does not load, left out: {e}")
                }
            }
        }
        let mapping = RwLock::new(mapping::Mapping::open(store.as_ref())?);
        let entries = Arc::new(ArcSwap::from_pointee(entries));
        let write = Arc::new(Mutex::new(()));
        let generation = Arc::new(AtomicU64::new(0));
        let optimizer = {
            let (entries, write, generation) = (entries.clone(), write.clone(), generation.clone());
            Optimizer::start(
                engine.clone(),
                Box::new(move |job, build| promote(&entries, &write, &generation, job, build)),
            )
            .map_err(|e| {
                InstallError::Compile(format!("cannot start the background compiler: {e}"))
            })?
        };
        // Submitted once the entries are in the table, where the worker looks for them.
        for job in jobs {
            optimizer.submit(job);
        }
        Ok(Registry {
            engine,
            store,
            operator_config,
            mapping,
            entries,
            write,
            generation,
            optimizer,
        })
    }

    /// Waits until every Cranelift build queued so far is made and swapped in (or dropped as
    /// superseded); `false` if that did not happen within `timeout`.
    pub fn wait_optimized(&self, timeout: Duration) -> bool {
        self.optimizer.wait_idle(timeout)
    }

    /// The kernel config's `[proc_types]` (type -> plugin): with the live mapping (see
    /// [`Registry::map_type`], which overrides it type by type), the one way to give a proc-type
    /// plugin a type another plugin serves or a built-in type.
    pub fn with_proc_types(mut self, overrides: BTreeMap<String, String>) -> Registry {
        self.mapping.get_mut().config = overrides;
        self
    }

    /// The engine plugins run on.
    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// Refuses an enabled proc-type plugin whose type another plugin serves, or that is
    /// reserved (see [`crate::spec::proc_types::claim_conflict`]), naming the holder. Asks every
    /// enabled proc-type plugin (but built-ins, which hold their own types) for its type.
    fn check_claim(&self, plugin: &LoadedPlugin) -> Result<(), InstallError> {
        if plugin.kind() != Kind::ProcType || plugin.builtin {
            return Ok(());
        }
        let info = ProcTypePlugin(plugin)
            .describe()
            .map_err(|e| InstallError::Describe(e.to_string()))?;
        let others: Vec<(String, String)> = self
            .entries
            .load()
            .values()
            .filter(|e| {
                e.record.enabled
                    && e.record.manifest.kind == Kind::ProcType
                    && e.record.manifest.name != plugin.name()
            })
            .filter_map(|e| {
                let ty = ProcTypePlugin(&e.plugin).describe().ok()?.name;
                Some((e.record.manifest.name.clone(), ty))
            })
            .collect();
        match crate::spec::proc_types::claim_conflict(
            plugin.name(),
            &info.name,
            &self.proc_types(),
            &others,
        ) {
            None => Ok(()),
            Some(why) => Err(InstallError::Conflict(format!(
                "`{}` describes itself as proc type `{}`, which it may not serve: {why}",
                plugin.name(),
                info.name.escape_debug()
            ))),
        }
    }

    /// Installs a new plugin. `manifest` (TOML text) overrides the embedded one. It runs on its
    /// Winch build from the answer on unless its Cranelift build is cached (see the module
    /// documentation). A proc-type
    /// plugin whose type is served by another plugin, or is a built-in type or a key of
    /// `lain.yaml`, is refused naming the holder, unless the operator's `[proc_types]` gives it
    /// that type.
    pub fn install(
        &self,
        bytes: &[u8],
        manifest: Option<&str>,
    ) -> Result<PluginView, InstallError> {
        let _guard = self.write.lock();
        let manifest = resolve_manifest(bytes, manifest)?;
        if self.entries.load().contains_key(&manifest.name) {
            return Err(InstallError::Conflict(format!(
                "a plugin named `{}` is installed; use upgrade to replace it",
                manifest.name
            )));
        }
        self.put(manifest, bytes, true, None, None)
    }

    /// Replaces an installed plugin by a new version. Calls in flight finish on the old one. A
    /// lower version is refused (see [`Registry::upgrade_with`]).
    pub fn upgrade(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: Option<&str>,
    ) -> Result<PluginView, InstallError> {
        self.upgrade_with(name, bytes, manifest, false)
            .map(|u| u.plugin)
    }

    /// [`Registry::upgrade`], saying what it replaced. Going to a lower version (by semver, both
    /// versions parsed as such) is refused unless `allow_downgrade`; versions that are not semver
    /// cannot be ordered and are not refused. The same version with other bytes (a rebuild) is
    /// accepted, and [`Upgraded`] says so. The operator's settings, policy and enabled state are
    /// kept.
    pub fn upgrade_with(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: Option<&str>,
        allow_downgrade: bool,
    ) -> Result<Upgraded, InstallError> {
        let _guard = self.write.lock();
        let current = self.entry(name)?;
        if current.record.builtin {
            return Err(InstallError::BuiltIn(
                name.into(),
                "install your version under another name and select it in the kernel config",
            ));
        }
        let manifest = resolve_manifest(bytes, manifest)?;
        if manifest.name != name {
            return Err(InstallError::Conflict(format!(
                "the component's manifest names `{}`, not `{name}`",
                manifest.name
            )));
        }
        if manifest.kind != current.record.manifest.kind {
            return Err(InstallError::Conflict(format!(
                "`{name}` is a {} plugin; the new component is a {}",
                current.record.manifest.kind, manifest.kind
            )));
        }
        let (installed, offered) = (&current.record.manifest.version, &manifest.version);
        if !allow_downgrade && is_lower(offered, installed) {
            return Err(InstallError::Downgrade {
                plugin: name.into(),
                installed: installed.clone(),
                offered: offered.clone(),
            });
        }
        let plugin = self.put(
            manifest,
            bytes,
            current.record.enabled,
            current.record.policy,
            current.record.settings.clone(),
        )?;
        Ok(Upgraded {
            change: change(&current.record, &plugin),
            previous_version: current.record.manifest.version,
            previous_sha256: current.record.sha256,
            plugin,
        })
    }

    fn put(
        &self,
        manifest: Manifest,
        bytes: &[u8],
        enabled: bool,
        policy: Option<FailurePolicy>,
        settings: Option<serde_json::Value>,
    ) -> Result<PluginView, InstallError> {
        let name = manifest.name.clone();
        let plugin = LoadedPlugin::load_tiered(
            &self.engine,
            manifest.clone(),
            bytes,
            false,
            self.operator_config(&name, settings.as_ref()).as_ref(),
        )?;
        if enabled {
            self.check_claim(&plugin)?;
        }
        plugin.set_policy(policy);
        let record = Record {
            manifest,
            sha256: sha256_hex(bytes),
            builtin: false,
            enabled,
            policy,
            installed_at: crate::clock::unix_secs(),
            settings,
        };
        let key = format!("{RECORDS}{name}");
        // The blob replaced is the stored record's (another kernel's upgrade included).
        store::transact(&*self.store, &key, |txn| {
            let old = txn.get_json::<Record>(&key)?.map(|r| r.sha256);
            txn.write(Op::Put(format!("{BLOBS}{}", record.sha256), bytes.to_vec()));
            txn.put_json(&key, &record)?;
            if let Some(old) =
                old.filter(|old| *old != record.sha256 && !self.blob_shared(old, &name))
            {
                txn.delete(&format!("{BLOBS}{old}"));
            }
            Ok::<_, InstallError>(())
        })?;
        let optimize = job(&plugin, bytes);
        let entry = Entry {
            plugin: Arc::new(plugin),
            record,
        };
        let view = view::view(&entry, self.config_source(&entry));
        self.swap(|m| {
            m.insert(name, entry);
        });
        match optimize {
            Some(job) => self.optimizer.submit(job),
            // An older upgrade's build must not be compiled for nothing.
            None => self.optimizer.forget(&view.name),
        }
        tracing::info!(plugin = %view.name, version = %view.version, kind = %view.kind, "plugin installed");
        Ok(view)
    }

    /// Enables or disables a plugin. Enabling also lifts a quarantine.
    /// A proc-type plugin is not enabled while its type is served by another (see
    /// [`Registry::install`]).
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<PluginView, InstallError> {
        self.update(name, |entry| {
            if enabled && !entry.record.enabled {
                self.check_claim(&entry.plugin)?;
            }
            entry.record.enabled = enabled;
            if enabled {
                entry.plugin.health().release();
            }
            Ok(())
        })
    }

    /// Sets (or with `None` resets to the kind's default) the failure policy.
    pub fn set_policy(
        &self,
        name: &str,
        policy: Option<FailurePolicy>,
    ) -> Result<PluginView, InstallError> {
        self.update(name, |entry| {
            entry.record.policy = policy;
            entry.plugin.set_policy(policy);
            Ok(())
        })
    }

    fn update(
        &self,
        name: &str,
        change: impl FnMut(&mut Entry) -> Result<(), InstallError>,
    ) -> Result<PluginView, InstallError> {
        let entry = self.update_entry(name, change)?;
        Ok(view::view(&entry, self.config_source(&entry)))
    }

    /// Changes one plugin's entry under the write lock: `change` on its record as stored (which
    /// another kernel on the same etcd may have changed), then one compare-and-swap of the
    /// record (`change` runs again on the fresh record if it lost), then the swap. A refusal (or
    /// a failed write) changes nothing.
    fn update_entry(
        &self,
        name: &str,
        mut change: impl FnMut(&mut Entry) -> Result<(), InstallError>,
    ) -> Result<Entry, InstallError> {
        let _guard = self.write.lock();
        let cached = self.entry(name)?;
        let key = format!("{RECORDS}{name}");
        let entry = store::transact(&*self.store, &key, |txn| {
            let mut entry = cached.clone();
            match txn.get_json::<Record>(&key)? {
                Some(stored) if stored.sha256 != cached.record.sha256 => {
                    return Err(InstallError::Conflict(format!(
                        "plugin `{name}` was upgraded by another kernel (sha256 {}); this \
                         kernel loads that build when it restarts",
                        stored.sha256
                    )));
                }
                Some(stored) => {
                    entry.record.enabled = stored.enabled;
                    entry.record.policy = stored.policy;
                    entry.record.installed_at = stored.installed_at;
                    entry.record.settings = stored.settings;
                }
                // A built-in's record is written at its first change.
                None if cached.record.builtin => {}
                None => return Err(InstallError::NotFound(name.into())),
            }
            change(&mut entry)?;
            txn.put_json(&key, &entry.record)?;
            Ok(entry)
        })?;
        let kept = entry.clone();
        self.swap(|m| {
            m.insert(name.to_string(), entry);
        });
        Ok(kept)
    }

    /// Removes an installed plugin (built-ins can only be disabled).
    pub fn remove(&self, name: &str) -> Result<(), InstallError> {
        let _guard = self.write.lock();
        let entry = self.entry(name)?;
        if entry.record.builtin {
            return Err(InstallError::BuiltIn(
                name.into(),
                "built-in plugins can be disabled, not removed",
            ));
        }
        let mapped = self.mapped_to(name);
        if !mapped.is_empty() {
            return Err(InstallError::Conflict(format!(
                "the operator mapped proc type(s) {} to `{name}`: `lain plugin unmap` them first",
                mapped.join(", ")
            )));
        }
        let key = format!("{RECORDS}{name}");
        store::transact(&*self.store, &key, |txn| {
            // The blob removed is the stored record's (another kernel's upgrade included).
            let sha256 = txn
                .get_json::<Record>(&key)?
                .map_or_else(|| entry.record.sha256.clone(), |r| r.sha256);
            txn.delete(&key);
            if !self.blob_shared(&sha256, name) {
                txn.delete(&format!("{BLOBS}{sha256}"));
            }
            Ok::<_, InstallError>(())
        })?;
        self.swap(|m| {
            m.remove(name);
        });
        self.optimizer.forget(name);
        tracing::info!(plugin = %name, "plugin removed");
        Ok(())
    }

    /// Every plugin, by name.
    pub fn list(&self) -> Vec<PluginView> {
        self.entries
            .load()
            .values()
            .map(|e| view::view(e, self.config_source(e)))
            .collect()
    }

    /// One plugin, as stored (nothing is asked of the plugin).
    pub fn show(&self, name: &str) -> Option<PluginView> {
        self.entries
            .load()
            .get(name)
            .map(|e| view::view(e, self.config_source(e)))
    }

    /// One plugin with what it says about itself ([`Described`]: for a proc type the type it
    /// describes, its extra keys, summary and the types it serves; for the other kinds their
    /// summary and roles or delivery). Calls the plugin's `describe`.
    pub fn show_described(&self, name: &str) -> Option<PluginView> {
        let entry = self.entries.load().get(name).cloned()?;
        let mut v = view::view(&entry, self.config_source(&entry));
        v.described = Some(view::describe(self, &entry));
        Some(v)
    }

    /// The plugin to call under `name`: `Err(Cause::Disabled)` if disabled, `None` if unknown.
    pub fn get(&self, name: &str) -> Option<Result<Arc<LoadedPlugin>, Cause>> {
        self.entries.load().get(name).map(|e| {
            if e.record.enabled {
                Ok(e.plugin.clone())
            } else {
                Err(Cause::Disabled)
            }
        })
    }

    /// Enabled plugins of one kind, by name.
    pub fn enabled(&self, kind: Kind) -> Vec<Arc<LoadedPlugin>> {
        self.entries
            .load()
            .values()
            .filter(|e| e.record.enabled && e.record.manifest.kind == kind)
            .map(|e| e.plugin.clone())
            .collect()
    }

    fn entry(&self, name: &str) -> Result<Entry, InstallError> {
        self.entries
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| InstallError::NotFound(name.into()))
    }

    fn blob_shared(&self, sha256: &str, except: &str) -> bool {
        self.entries
            .load()
            .iter()
            .any(|(n, e)| n != except && !e.record.builtin && e.record.sha256 == sha256)
    }

    /// Increases with every change (install, upgrade, enable, disable, policy, remove), so
    /// holders of long-lived instances (the scheduling pipeline) know when to rebuild them.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn swap(&self, change: impl FnOnce(&mut BTreeMap<String, Entry>)) {
        let mut next = BTreeMap::clone(&self.entries.load());
        change(&mut next);
        self.entries.store(Arc::new(next));
        self.bump();
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The background Cranelift build `plugin` needs: one if it runs on its Winch build.
fn job(plugin: &LoadedPlugin, bytes: &[u8]) -> Option<Job> {
    (plugin.compiler() == Compiler::Winch).then(|| Job {
        plugin: plugin.name().to_string(),
        load_id: plugin.load_id(),
        sha256: plugin.sha256.clone(),
        kind: plugin.kind(),
        bytes: Arc::from(bytes),
    })
}

/// Swaps the Cranelift `build` of `job` in, under the write lock, if the entry of its plugin
/// still runs the Winch build of the load it was made for: not after an upgrade, a removal or a
/// reinstall since (the load differs), nor twice. Configuration, policy and health carry over;
/// the generation changes, so long-lived instances (the scheduling pipeline's) move to it.
fn promote(
    entries: &ArcSwap<BTreeMap<String, Entry>>,
    write: &Mutex<()>,
    generation: &AtomicU64,
    job: &Job,
    build: Build,
) {
    let _guard = write.lock();
    let current = entries.load();
    let Some(entry) = current.get(&job.plugin) else {
        tracing::debug!(plugin = %job.plugin, "removed before its Cranelift build was ready");
        return;
    };
    if !accepts(&entry.plugin, job) {
        tracing::debug!(plugin = %job.plugin, "superseded before its Cranelift build was ready");
        return;
    }
    let promoted = Entry {
        plugin: Arc::new(entry.plugin.with_build(build)),
        record: entry.record.clone(),
    };
    let mut next = BTreeMap::clone(&current);
    next.insert(job.plugin.clone(), promoted);
    entries.store(Arc::new(next));
    generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    tracing::info!(plugin = %job.plugin, "plugin now runs its Cranelift build");
}

/// Whether `job`'s build may replace what `plugin` runs: the same load, still on Winch.
fn accepts(plugin: &LoadedPlugin, job: &Job) -> bool {
    plugin.load_id() == job.load_id
        && plugin.sha256 == job.sha256
        && plugin.compiler() == Compiler::Winch
}

/// `text` escaped and cut to 128 characters, for echoing names from a request in an error.
fn cut_reason(text: &str) -> String {
    let escaped: String = text.escape_debug().take(128).collect();
    escaped
}

fn resolve_manifest(bytes: &[u8], given: Option<&str>) -> Result<Manifest, InstallError> {
    if !wasmparser::Parser::is_component(bytes) {
        return Err(InstallError::NotAComponent(
            "the file is a core module or not WebAssembly; build with --target wasm32-wasip2"
                .into(),
        ));
    }
    match given {
        Some(text) => Manifest::parse(text),
        None => Manifest::embedded(bytes)?.ok_or(InstallError::NoManifest),
    }
}

/// A stored record's manifest made to obey today's rules: a `files` key among its defaults
/// (written before manifests could only ask for files) is dropped, and the bounds are checked.
fn stored_manifest(mut record: Record) -> Result<Record, InstallError> {
    if let Some(defaults) = record.manifest.config.as_object_mut()
        && defaults.remove("files").is_some()
    {
        tracing::warn!(plugin = %record.manifest.name, "stored manifest grants files: ignored, only the operator grants files");
    }
    record.manifest.check()?;
    Ok(record)
}
