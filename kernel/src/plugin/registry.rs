//! The plugin registry: built-in and installed plugins, persisted in the state store.
//!
//! Layout in the store: `plugins/records/<name>` holds a [`Record`] (JSON) and
//! `plugins/blobs/<sha256>` the component bytes of installed plugins (built-ins live in the kernel
//! binary and only have a record for their enabled flag and policy). Every change is checked
//! completely (compiled, checked against its world, pre-linked) before one atomic store write, and
//! only then swapped into the in-memory table; a refused change changes nothing.
//!
//! The table is an `ArcSwap`: a caller takes an `Arc<LoadedPlugin>` and keeps it for its call, so an
//! upgrade or removal never interrupts a call in flight; it finishes on the version it started on.

use super::engine::PluginEngine;
use super::error::{Cause, InstallError};
use super::health::HealthReport;
use super::kinds::proc_type::ProcTypePlugin;
use super::loaded::{LoadedPlugin, sha256_hex};
use super::manifest::Manifest;
use super::world::{FailurePolicy, Kind};
use crate::store::{self, Op, Store};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

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
}

/// One plugin as the registry holds it.
#[derive(Clone)]
pub struct Entry {
    /// The loaded plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// The stored record.
    pub record: Record,
}

/// A plugin as `lain plugin list/show` and the API present it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginView {
    /// Unique name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: Kind,
    /// The WIT world it implements.
    pub world: String,
    /// One line.
    pub description: String,
    /// Ships inside the kernel.
    pub builtin: bool,
    /// Whether calls are allowed.
    pub enabled: bool,
    /// SHA-256 of the component.
    pub sha256: String,
    /// Unix seconds of install or last upgrade.
    pub installed_at: i64,
    /// Whether the failure policy was set by the operator (else the kind's default).
    pub policy_overridden: bool,
    /// Calls, faults, quarantine and the effective policy.
    pub health: HealthReport,
    /// Default configuration from the manifest (it never grants files).
    #[schema(value_type = Object)]
    pub default_config: serde_json::Value,
    /// Files the plugin's manifest asks for: name -> why.
    #[serde(default)]
    pub files_requested: BTreeMap<String, String>,
    /// Files the operator granted (`[plugins.config.<name>] files` in the kernel config): name
    /// -> path.
    #[serde(default)]
    pub files_granted: BTreeMap<String, String>,
}

/// The registry.
pub struct Registry {
    engine: Arc<PluginEngine>,
    store: Arc<dyn Store>,
    operator_config: BTreeMap<String, serde_json::Value>,
    proc_types: BTreeMap<String, String>,
    entries: ArcSwap<BTreeMap<String, Entry>>,
    write: Mutex<()>,
    generation: std::sync::atomic::AtomicU64,
}

impl Registry {
    /// Loads the built-ins, then every plugin recorded in the store.
    ///
    /// A stored plugin that no longer loads (e.g. after an incompatible kernel upgrade) is
    /// reported in the log and left out, so the kernel still starts; its record stays.
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
        for (name, bytes) in builtins {
            let manifest = Manifest::embedded(bytes)?.ok_or(InstallError::NoManifest)?;
            if manifest.name != *name {
                return Err(InstallError::BadManifest(format!(
                    "built-in `{name}` carries the manifest of `{}`",
                    manifest.name
                )));
            }
            let plugin = LoadedPlugin::load(
                &engine,
                manifest.clone(),
                bytes,
                true,
                operator_config.get(*name),
            )?;
            let record = match records.get(*name) {
                Some(stored) if stored.builtin => Record {
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
                },
            };
            plugin.set_policy(record.policy);
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
                    LoadedPlugin::load(
                        &engine,
                        record.manifest.clone(),
                        &bytes,
                        false,
                        operator_config.get(&name),
                    )
                });
            match loaded {
                Ok(plugin) => {
                    plugin.set_policy(record.policy);
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
        Ok(Registry {
            engine,
            store,
            operator_config,
            proc_types: BTreeMap::new(),
            entries: ArcSwap::from_pointee(entries),
            write: Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The operator's `[proc_types]` (type -> plugin): the one way to give a proc-type plugin a
    /// type another plugin serves or a built-in type.
    pub fn with_proc_types(mut self, overrides: BTreeMap<String, String>) -> Registry {
        self.proc_types = overrides;
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
            &self.proc_types,
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

    /// Installs a new plugin. `manifest` (TOML text) overrides the embedded one. A proc-type
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
        self.put(manifest, bytes, true, None)
    }

    /// Replaces an installed plugin by a new version. Calls in flight finish on the old one.
    pub fn upgrade(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: Option<&str>,
    ) -> Result<PluginView, InstallError> {
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
        self.put(
            manifest,
            bytes,
            current.record.enabled,
            current.record.policy,
        )
    }

    fn put(
        &self,
        manifest: Manifest,
        bytes: &[u8],
        enabled: bool,
        policy: Option<FailurePolicy>,
    ) -> Result<PluginView, InstallError> {
        let name = manifest.name.clone();
        let plugin = LoadedPlugin::load(
            &self.engine,
            manifest.clone(),
            bytes,
            false,
            self.operator_config.get(&name),
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
        };
        let mut ops = vec![Op::Put(format!("{BLOBS}{}", record.sha256), bytes.to_vec())];
        ops.push(
            store::put_json(&format!("{RECORDS}{name}"), &record)
                .map_err(|e| InstallError::Store(e.to_string()))?,
        );
        let old = self
            .entries
            .load()
            .get(&name)
            .map(|e| e.record.sha256.clone());
        if let Some(old) = old.filter(|old| *old != record.sha256 && !self.blob_shared(old, &name))
        {
            ops.push(Op::Delete(format!("{BLOBS}{old}")));
        }
        self.store
            .apply(ops)
            .map_err(|e| InstallError::Store(e.to_string()))?;
        let entry = Entry {
            plugin: Arc::new(plugin),
            record,
        };
        let view = view(&entry);
        self.swap(|m| {
            m.insert(name, entry);
        });
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
        change: impl FnOnce(&mut Entry) -> Result<(), InstallError>,
    ) -> Result<PluginView, InstallError> {
        let _guard = self.write.lock();
        let mut entry = self.entry(name)?;
        change(&mut entry)?;
        let op = store::put_json(&format!("{RECORDS}{name}"), &entry.record)
            .map_err(|e| InstallError::Store(e.to_string()))?;
        self.store
            .apply(vec![op])
            .map_err(|e| InstallError::Store(e.to_string()))?;
        let view = view(&entry);
        self.swap(|m| {
            m.insert(name.to_string(), entry);
        });
        Ok(view)
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
        let mut ops = vec![Op::Delete(format!("{RECORDS}{name}"))];
        if !self.blob_shared(&entry.record.sha256, name) {
            ops.push(Op::Delete(format!("{BLOBS}{}", entry.record.sha256)));
        }
        self.store
            .apply(ops)
            .map_err(|e| InstallError::Store(e.to_string()))?;
        self.swap(|m| {
            m.remove(name);
        });
        tracing::info!(plugin = %name, "plugin removed");
        Ok(())
    }

    /// Every plugin, by name.
    pub fn list(&self) -> Vec<PluginView> {
        self.entries.load().values().map(view).collect()
    }

    /// One plugin.
    pub fn show(&self, name: &str) -> Option<PluginView> {
        self.entries.load().get(name).map(view)
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
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
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

fn view(entry: &Entry) -> PluginView {
    let m = &entry.record.manifest;
    PluginView {
        name: m.name.clone(),
        version: m.version.clone(),
        kind: m.kind,
        world: m.kind.world_at(entry.plugin.wit_version()),
        description: m.description.clone(),
        builtin: entry.record.builtin,
        enabled: entry.record.enabled,
        sha256: entry.record.sha256.clone(),
        installed_at: entry.record.installed_at,
        policy_overridden: entry.record.policy.is_some(),
        health: entry.plugin.health().report(entry.plugin.policy()),
        default_config: m.config.clone(),
        files_requested: m.files.clone(),
        files_granted: entry
            .plugin
            .granted_files()
            .iter()
            .map(|(k, v)| (k.clone(), v.display().to_string()))
            .collect(),
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
