//! How `lain plugin list/show` and the API present a plugin: [`PluginView`], and for `show` what
//! the plugin says about itself ([`Described`]).

use super::{Entry, Registry};
use crate::plugin::engine::Compiler;
use crate::plugin::health::HealthReport;
use crate::plugin::kinds::auth::AuthPlugin;
use crate::plugin::kinds::monitor::ExporterPlugin;
use crate::plugin::kinds::proc_type::ProcTypePlugin;
use crate::plugin::kinds::scheduler::LiveScheduler;
use crate::plugin::limits::{Limits, PluginLimits};
use crate::plugin::world::Kind;
use crate::spec::{PluginProcTypes, ProcTypes as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Which compiler built the code it runs: `winch` from an install, upgrade or start whose
    /// component was not in the compile cache until its Cranelift build is swapped in (in the
    /// background, calls unaffected), then `cranelift`.
    #[serde(default)]
    pub compiled: Compiler,
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
    /// Files the operator granted (`files` in the operator's configuration of the plugin):
    /// name -> path.
    #[serde(default)]
    pub files_granted: BTreeMap<String, String>,
    /// Where the operator's configuration of the plugin comes from: `api` (set with `lain
    /// plugin config`, kept in the store), `kernel-config` (`[plugins.config.<name>]`) or `none`.
    #[serde(default)]
    pub config_source: String,
    /// The limits its calls run under (engine-wide, with the operator's overrides).
    #[serde(default)]
    pub limits: Limits,
    /// The operator's overrides of the engine-wide limits for this plugin.
    #[serde(default)]
    pub limits_overridden: PluginLimits,
    /// What the plugin says about itself (its `describe`), in `show` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub described: Option<Described>,
}

/// What a plugin says about itself through its kind's `describe` (backup hooks have none).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Described {
    /// Its one-line summary.
    #[serde(default)]
    pub summary: String,
    /// Proc types: the type it describes itself as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_type: Option<String>,
    /// Proc types: the keys of a proc section only its type accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_keys: Vec<String>,
    /// Proc types: the types it serves now (its own unless taken or reassigned, plus those the
    /// operator mapped to it); empty when it serves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serves: Option<Vec<String>>,
    /// Scheduler filters: `filter`, `score` or both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Monitor exporters: `pull <path>` or `push <address> every <n>s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Why `describe` failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The view of `entry` without asking the plugin anything.
pub(super) fn view(entry: &Entry, config_source: &str) -> PluginView {
    let m = &entry.record.manifest;
    PluginView {
        name: m.name.clone(),
        version: m.version.clone(),
        kind: m.kind,
        world: m.kind.world_at(entry.plugin.wit_version()),
        description: m.description.clone(),
        builtin: entry.record.builtin,
        compiled: entry.plugin.compiler(),
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
        config_source: config_source.to_string(),
        limits: entry.plugin.limits().clone(),
        limits_overridden: entry.plugin.limit_overrides().clone(),
        described: None,
    }
}

/// Asks the plugin of `entry` to describe itself (a call like any other: counted, bounded).
pub(super) fn describe(registry: &Registry, entry: &Entry) -> Described {
    let plugin = &entry.plugin;
    let mut d = Described::default();
    let failed = |e: crate::plugin::CallError| Described {
        error: Some(e.to_string()),
        ..Described::default()
    };
    match plugin.kind() {
        Kind::ProcType => match ProcTypePlugin(plugin).describe() {
            Ok(info) => {
                d.summary = info.summary;
                d.proc_type = Some(info.name);
                d.extra_keys = info.extra_keys;
                d.serves = Some(served_by(registry, plugin.name()));
            }
            Err(e) => return failed(e),
        },
        Kind::SchedulerFilter => {
            match LiveScheduler::start(plugin.clone()).and_then(|mut s| s.describe()) {
                Ok(info) => {
                    use crate::plugin::bindings::scheduling::Roles;
                    d.summary = info.summary;
                    for (flag, name) in [(Roles::FILTER, "filter"), (Roles::SCORE, "score")] {
                        if info.roles.contains(flag) {
                            d.roles.push(name.into());
                        }
                    }
                }
                Err(e) => return failed(e),
            }
        }
        Kind::AuthProvider => match AuthPlugin(plugin).describe() {
            Ok(info) => d.summary = info.summary,
            Err(e) => return failed(e),
        },
        Kind::MonitorExporter => match ExporterPlugin(plugin).describe() {
            Ok(info) => {
                use crate::plugin::bindings::monitoring::Delivery;
                d.summary = info.summary;
                d.delivery = Some(match info.delivery {
                    Delivery::Pull(path) => format!("pull {path}"),
                    Delivery::Push(target) => {
                        format!("push {} every {}s", target.address, target.interval)
                    }
                });
            }
            Err(e) => return failed(e),
        },
        Kind::BackupHook => {}
    }
    d
}

/// The proc types `plugin` serves now, by the rules every deploy applies.
fn served_by(registry: &Registry, plugin: &str) -> Vec<String> {
    let Ok(types) = PluginProcTypes::new(registry.enabled(Kind::ProcType), &registry.proc_types())
    else {
        return Vec::new();
    };
    types
        .names()
        .into_iter()
        .filter(|ty| types.plugin(ty).is_some_and(|p| p.name() == plugin))
        .collect()
}
