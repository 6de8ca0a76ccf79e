//! Live configuration of a plugin: the operator's settings changed through the API (`lain plugin
//! config NAME --set/--unset/-f/--reset`), checked, tried on the plugin, kept in the store, and
//! swapped in without a restart.
//!
//! Where the operator's configuration of a plugin comes from: the settings set through the API,
//! kept in the plugin's record, when there are any; else the kernel config's
//! `[plugins.config.<name>]`. Settings set through the API replace that table as a whole (they
//! start as a copy of it on the first `--set`), so what `lain plugin config` shows is what
//! applies; `--reset` forgets them and the kernel config applies again. Either way the effective
//! configuration the plugin reads is the manifest's defaults with the operator's merged over them.
//!
//! Two keys are the kernel's. `files` grants host files by name, and only the kernel config
//! grants them (`[plugins.config.<name>] files`): the process runtime hides every granted file
//! from the sandboxes and reads that list at start, so a grant made live would be readable by
//! apps until a restart. Settings set through the API therefore never hold `files` (a table equal
//! to the kernel config's is accepted and dropped, anything else refused), and the kernel
//! config's grants always apply. `limits` sets the plugin's own limits over the engine-wide ones
//! ([`PluginLimits`]); the plugin does not see it. Only admins read or change a plugin's
//! configuration (it may hold secrets).

use super::{Entry, Registry, cut_reason, view};
use crate::plugin::engine::PluginEngine;
use crate::plugin::error::InstallError;
use crate::plugin::kinds::auth::AuthPlugin;
use crate::plugin::kinds::monitor::ExporterPlugin;
use crate::plugin::kinds::proc_type::ProcTypePlugin;
use crate::plugin::kinds::scheduler::LiveScheduler;
use crate::plugin::limits::{Limits, PluginLimits};
use crate::plugin::loaded::{LoadedPlugin, effective_config};
use crate::plugin::manifest::Manifest;
use crate::plugin::world::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A change of a plugin's operator settings.
#[derive(Clone, Debug)]
pub enum ConfigChange {
    /// The settings become this table.
    Replace(Value),
    /// Keys set and removed in the settings in effect; a key is a dotted path
    /// (`limits.cpu_ms`), each part a table key.
    Edit {
        /// Path -> new value.
        set: BTreeMap<String, Value>,
        /// Paths removed.
        unset: Vec<String>,
    },
    /// The settings set through the API are forgotten: the kernel config applies again.
    Reset,
}

/// A plugin's configuration, as `lain plugin config NAME` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigView {
    /// The plugin.
    pub plugin: String,
    /// `api` (set with `lain plugin config`, kept in the store), `kernel-config`
    /// (`[plugins.config.<name>]`, read at start) or `none`.
    pub source: String,
    /// The manifest's defaults.
    #[schema(value_type = Object)]
    pub defaults: Value,
    /// The operator's settings in effect (`files` and `limits` included).
    #[schema(value_type = Object)]
    pub operator: Value,
    /// What the plugin reads with `host.config()`: defaults with the operator's settings merged
    /// over them, but for `limits`.
    #[schema(value_type = Object)]
    pub effective: Value,
    /// Files the manifest asks for: name -> why.
    pub files_requested: BTreeMap<String, String>,
    /// Files granted: name -> path.
    pub files_granted: BTreeMap<String, String>,
    /// The limits its calls run under.
    pub limits: Limits,
    /// The operator's overrides of the engine-wide limits.
    pub limits_overridden: PluginLimits,
    /// The kernel config's table for the plugin, when settings set through the API replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub kernel_config_ignored: Option<Value>,
}

impl Registry {
    /// The operator's configuration of plugin `name` in effect: the settings set through the
    /// API with the kernel config's file grants, else the kernel config's table.
    pub(super) fn operator_config(&self, name: &str, settings: Option<&Value>) -> Option<Value> {
        let table = self.operator_config.get(name);
        let Some(settings) = settings else {
            return table.cloned();
        };
        let mut settings = settings.clone();
        if let (Some(s), Some(files)) =
            (settings.as_object_mut(), table.and_then(|t| t.get("files")))
        {
            s.insert("files".into(), files.clone());
        }
        Some(settings)
    }

    /// Where the operator's configuration of a plugin comes from.
    pub(super) fn config_source(&self, entry: &Entry) -> &'static str {
        if entry.record.settings.is_some() {
            "api"
        } else if self
            .operator_config
            .contains_key(&entry.record.manifest.name)
        {
            "kernel-config"
        } else {
            "none"
        }
    }

    /// Plugin `name`'s configuration.
    pub fn config(&self, name: &str) -> Result<ConfigView, InstallError> {
        Ok(self.config_view(&self.entry(name)?))
    }

    /// Changes the operator's settings of plugin `name`: checked (bounds, file grants, limits),
    /// then tried on the plugin (its `describe()`, or an instantiation for backup hooks; a proc
    /// type must still be allowed its type; a reset to the kernel config is not tried, as a
    /// restart would not), then kept in the plugin's record and swapped in.
    /// Calls in flight finish with the old configuration; long-lived instances (the scheduling
    /// pipeline's) are rebuilt because the registry's generation changes. A refusal changes
    /// nothing and names the plugin's own message.
    pub fn configure(&self, name: &str, change: ConfigChange) -> Result<ConfigView, InstallError> {
        let entry = self.update_entry(name, |entry| {
            let refused = |reason: String| InstallError::BadConfig {
                plugin: name.to_string(),
                reason,
            };
            let granted = self.operator_config.get(name).and_then(|t| t.get("files"));
            let current = self.operator_config(name, entry.record.settings.as_ref());
            let mut settings = match change.clone() {
                ConfigChange::Replace(v) => Some(v),
                ConfigChange::Reset => None,
                ConfigChange::Edit { set, unset } => {
                    let mut v = current.unwrap_or_else(|| Value::Object(Default::default()));
                    if let Some(table) = v.as_object_mut() {
                        table.remove("files");
                    }
                    for (path, value) in set {
                        set_path(&mut v, &path, value).map_err(refused)?;
                    }
                    for path in unset {
                        unset_path(&mut v, &path).map_err(refused)?;
                    }
                    Some(v)
                }
            };
            if let Some(s) = &mut settings {
                check_settings(s, granted).map_err(refused)?;
            }
            let effective = self.operator_config(name, settings.as_ref());
            // A reset goes back to what a restart would load, so it is not tried.
            if settings.is_some() {
                let trial = Arc::new(entry.plugin.reconfigured(effective.as_ref())?);
                self.try_out(&trial, entry.record.enabled)
                    .map_err(|e| match e {
                        InstallError::Describe(why) => {
                            refused(format!("the plugin refused it: {why}"))
                        }
                        other => other,
                    })?;
            }
            let mut plugin = entry.plugin.reconfigured(effective.as_ref())?;
            plugin.adopt_health(&entry.plugin);
            entry.plugin = Arc::new(plugin);
            entry.record.settings = settings;
            Ok(())
        })?;
        tracing::info!(plugin = %name, source = self.config_source(&entry), "plugin configuration changed");
        Ok(self.config_view(&entry))
    }

    /// Calls the plugin as its kind allows, to see that it accepts its configuration.
    fn try_out(&self, plugin: &Arc<LoadedPlugin>, enabled: bool) -> Result<(), InstallError> {
        let failed = |e: crate::plugin::CallError| InstallError::Describe(e.to_string());
        match plugin.kind() {
            Kind::ProcType => {
                ProcTypePlugin(plugin).describe().map_err(failed)?;
                if enabled {
                    self.check_claim(plugin)?;
                }
            }
            Kind::AuthProvider => {
                AuthPlugin(plugin).describe().map_err(failed)?;
            }
            Kind::MonitorExporter => {
                ExporterPlugin(plugin).describe().map_err(failed)?;
            }
            Kind::SchedulerFilter => {
                LiveScheduler::start(plugin.clone())
                    .and_then(|mut s| s.describe())
                    .map_err(failed)?;
            }
            Kind::BackupHook => {
                let started = plugin
                    .new_store(None)
                    .and_then(|mut store| plugin.instantiate(&mut store).map(|_| ()));
                plugin
                    .finish(crate::plugin::error::LOADING, started)
                    .map_err(failed)?;
            }
        }
        Ok(())
    }

    fn config_view(&self, entry: &Entry) -> ConfigView {
        let name = &entry.record.manifest.name;
        let operator = self
            .operator_config(name, entry.record.settings.as_ref())
            .unwrap_or_else(|| Value::Object(Default::default()));
        let v = view::view(entry, self.config_source(entry));
        ConfigView {
            plugin: name.clone(),
            source: v.config_source,
            defaults: entry.record.manifest.config.clone(),
            effective: effective_config(&entry.record.manifest, Some(&operator)),
            operator,
            files_requested: v.files_requested,
            files_granted: v.files_granted,
            limits: v.limits,
            limits_overridden: v.limits_overridden,
            kernel_config_ignored: entry
                .record
                .settings
                .as_ref()
                .and_then(|_| self.operator_config.get(name).cloned()),
        }
    }
}

/// Checks operator settings before the plugin sees them: a table, bounded like a manifest's
/// configuration, no file grant (`granted`, the kernel config's, is dropped when repeated),
/// limits well-formed (their values are checked when applied).
fn check_settings(settings: &mut Value, granted: Option<&Value>) -> Result<(), String> {
    let Some(table) = settings.as_object_mut() else {
        return Err("the configuration must be a table".into());
    };
    if let Some(files) = table.remove("files")
        && Some(&files) != granted
    {
        return Err(
            "files: host files are granted in the kernel config only (`[plugins.config.<plugin>] \
             files`, then a restart): the process runtime hides every granted file from apps' \
             sandboxes, and it reads that list at start"
                .into(),
        );
    }
    crate::plugin::manifest::check_config(settings).map_err(|e| match e {
        InstallError::BadManifest(m) => m,
        other => other.to_string(),
    })?;
    PluginLimits::from_config(Some(settings))?;
    Ok(())
}

/// The parts of a dotted path, each a non-empty key.
fn parts(path: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = path.split('.').collect();
    if path.len() > 256 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "`{}` is not a key path (keys separated by dots, e.g. limits.cpu_ms)",
            cut_reason(path)
        ));
    }
    Ok(parts)
}

fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let parts = parts(path)?;
    let mut at = root;
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(table) = at else {
            return Err(format!(
                "{}: `{}` is not a table",
                cut_reason(path),
                parts[..i].join(".")
            ));
        };
        if i + 1 == parts.len() {
            table.insert(part.to_string(), value);
            return Ok(());
        }
        at = table
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

fn unset_path(root: &mut Value, path: &str) -> Result<(), String> {
    let parts = parts(path)?;
    let (last, tables) = parts.split_last().ok_or("empty key path")?;
    let mut at = root;
    for part in tables {
        match at.get_mut(*part) {
            Some(next) => at = next,
            None => return Err(format!("{}: no such key", cut_reason(path))),
        }
    }
    match at.as_object_mut().and_then(|t| t.remove(*last)) {
        Some(_) => Ok(()),
        None => Err(format!("{}: no such key", cut_reason(path))),
    }
}

/// Loads a plugin ([`LoadedPlugin::load_tiered`]) with the operator's settings set through the
/// API, else the kernel config's table. Settings that no longer pass (the engine-wide limits were lowered under them) are
/// reported and the kernel config's table is used, so the kernel still starts; they stay stored.
pub(super) fn load_configured(
    engine: &Arc<PluginEngine>,
    manifest: &Manifest,
    bytes: &[u8],
    builtin: bool,
    settings: Option<&serde_json::Value>,
    kernel_config: Option<&serde_json::Value>,
) -> Result<LoadedPlugin, InstallError> {
    if settings.is_some() {
        match LoadedPlugin::load_tiered(engine, manifest.clone(), bytes, builtin, settings) {
            Err(InstallError::BadConfig { reason, .. }) => tracing::error!(
                plugin = %manifest.name,
                "the configuration set with `lain plugin config` no longer applies ({reason}): \
                 using the kernel config's; fix it or `lain plugin config {} --reset`",
                manifest.name
            ),
            loaded => return loaded,
        }
    }
    LoadedPlugin::load_tiered(engine, manifest.clone(), bytes, builtin, kernel_config)
}
