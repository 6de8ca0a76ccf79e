//! The proc-type mapping: which plugin serves a type, when the operator decides rather than the
//! plugins' own `describe()` (the one way to give a type another plugin or a built-in serves).
//!
//! Two sources: the kernel config's `[proc_types]` (read at start) and the mapping changed live
//! with `lain plugin map TYPE PLUGIN` / `lain plugin unmap TYPE`, kept in the store under
//! `plugins/proc-types/<type>`. A stored entry overrides the kernel config's for its type; `unmap`
//! of a type the kernel config maps stores "unmapped", so the kernel config cannot bring it back
//! at the next start (`lain plugin map TYPE --reset` forgets the stored entry instead, and the
//! kernel config applies again).

use super::{Registry, cut_reason};
use crate::plugin::error::InstallError;
use crate::plugin::world::Kind;
use crate::store::{self, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Prefix of the stored mapping.
pub(super) const MAPPING: &str = "plugins/proc-types/";

/// What the store keeps for one type.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    /// The plugin serving the type; `None`: no plugin is assigned (the kernel config's
    /// `[proc_types]` entry, if any, is overridden).
    plugin: Option<String>,
}

/// The two sources of the mapping.
#[derive(Default)]
pub(super) struct Mapping {
    /// `[proc_types]` from the kernel config.
    pub(super) config: BTreeMap<String, String>,
    /// Changed through the API: type -> plugin, or `None` for unmapped.
    pub(super) stored: BTreeMap<String, Option<String>>,
}

impl Mapping {
    /// Reads the stored part.
    pub(super) fn open(store: &dyn Store) -> Result<Mapping, InstallError> {
        let mut stored = BTreeMap::new();
        for (key, bytes) in store
            .list(MAPPING)
            .map_err(|e| InstallError::Store(e.to_string()))?
        {
            let ty = key.trim_start_matches(MAPPING).to_string();
            match serde_json::from_slice::<Stored>(&bytes) {
                Ok(s) => {
                    stored.insert(ty, s.plugin);
                }
                Err(e) => tracing::error!(%key, "ignoring corrupt proc-type mapping: {e}"),
            }
        }
        Ok(Mapping {
            config: BTreeMap::new(),
            stored,
        })
    }

    /// Type -> plugin, as deploys apply it.
    pub(super) fn effective(&self) -> BTreeMap<String, String> {
        let mut map = self.config.clone();
        for (ty, plugin) in &self.stored {
            match plugin {
                Some(p) => map.insert(ty.clone(), p.clone()),
                None => map.remove(ty),
            };
        }
        map
    }
}

/// One assignment of a type, as `lain plugin maps` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TypeMapping {
    /// The proc type.
    #[serde(rename = "type")]
    pub ty: String,
    /// The plugin assigned; `null` when the operator unmapped a type the kernel config maps.
    pub plugin: Option<String>,
    /// `api` (kept in the store) or `kernel-config` (`[proc_types]`).
    pub source: String,
    /// The kernel config's assignment, when an `api` entry overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<String>,
}

impl Registry {
    /// The operator's assignment of proc types to plugins (type -> plugin), from the kernel
    /// config's `[proc_types]` and the live mapping; what deploys and installs apply.
    pub fn proc_types(&self) -> BTreeMap<String, String> {
        self.mapping.read().effective()
    }

    /// Every assignment with where it comes from, by type.
    pub fn mappings(&self) -> Vec<TypeMapping> {
        let m = self.mapping.read();
        let mut out: BTreeMap<String, TypeMapping> = m
            .config
            .iter()
            .map(|(ty, plugin)| {
                let view = TypeMapping {
                    ty: ty.clone(),
                    plugin: Some(plugin.clone()),
                    source: "kernel-config".into(),
                    overrides: None,
                };
                (ty.clone(), view)
            })
            .collect();
        for (ty, plugin) in &m.stored {
            let view = TypeMapping {
                ty: ty.clone(),
                plugin: plugin.clone(),
                source: "api".into(),
                overrides: m.config.get(ty).cloned(),
            };
            out.insert(ty.clone(), view);
        }
        out.into_values().collect()
    }

    /// Assigns type `ty` to the proc-type plugin `plugin` (installed, enabled or not), over
    /// whatever plugin describes itself as `ty` and over a built-in type. Kept in the store;
    /// deploys apply it from now on. A refusal changes nothing.
    pub fn map_type(&self, ty: &str, plugin: &str) -> Result<Vec<TypeMapping>, InstallError> {
        let _guard = self.write.lock();
        check_type(ty, plugin)?;
        let entry = self.entry(plugin)?;
        if entry.record.manifest.kind != Kind::ProcType {
            return Err(InstallError::Conflict(format!(
                "`{plugin}` is a {} plugin; only a proc-type plugin serves a type",
                entry.record.manifest.kind
            )));
        }
        self.put_mapping(ty, Some(plugin.to_string()))
    }

    /// Takes type `ty` back from the plugin the operator assigned it to: the type is served again
    /// by the plugin that describes itself as `ty` (a built-in for built-in types), if any.
    /// `reset` forgets the live entry instead, so the kernel config's `[proc_types]` applies again.
    pub fn unmap_type(&self, ty: &str, reset: bool) -> Result<Vec<TypeMapping>, InstallError> {
        let _guard = self.write.lock();
        let in_config = self.mapping.read().config.contains_key(ty);
        let key = format!("{MAPPING}{ty}");
        // Decided on the stored mapping, which another kernel on the same etcd may have changed.
        let kept = store::transact(&*self.store, &key, |txn| {
            let stored = txn.get_json::<Stored>(&key)?.map(|s| s.plugin);
            if reset {
                if stored.is_none() {
                    return Err(InstallError::NotMapped(format!(
                        "type `{}` has no mapping set through the API to reset",
                        cut_reason(ty)
                    )));
                }
                txn.delete(&key);
                return Ok(None);
            }
            let mapped = match &stored {
                Some(plugin) => plugin.is_some(),
                None => in_config,
            };
            if !mapped {
                return Err(InstallError::NotMapped(format!(
                    "type `{}` is not mapped to any plugin",
                    cut_reason(ty)
                )));
            }
            if in_config {
                txn.put_json(&key, &Stored { plugin: None })?;
                Ok(Some(None))
            } else {
                txn.delete(&key);
                Ok(None)
            }
        })?;
        match kept {
            Some(plugin) => self.mapping.write().stored.insert(ty.to_string(), plugin),
            None => self.mapping.write().stored.remove(ty),
        };
        self.bump();
        Ok(self.mappings())
    }

    /// The live types assigned to `plugin`, which must not be removed while they are.
    pub(super) fn mapped_to(&self, plugin: &str) -> Vec<String> {
        self.mapping
            .read()
            .stored
            .iter()
            .filter(|(_, p)| p.as_deref() == Some(plugin))
            .map(|(ty, _)| ty.clone())
            .collect()
    }

    fn put_mapping(
        &self,
        ty: &str,
        plugin: Option<String>,
    ) -> Result<Vec<TypeMapping>, InstallError> {
        let op = store::put_json(
            &format!("{MAPPING}{ty}"),
            &Stored {
                plugin: plugin.clone(),
            },
        )
        .map_err(|e| InstallError::Store(e.to_string()))?;
        // A blind set: the mapping given replaces whatever was stored.
        self.store
            .apply(vec![op])
            .map_err(|e| InstallError::Store(e.to_string()))?;
        self.mapping.write().stored.insert(ty.to_string(), plugin);
        self.bump();
        Ok(self.mappings())
    }
}

/// Refuses a name that cannot be a proc type (the rules of
/// [`crate::spec::proc_types::claim_conflict`] for names).
fn check_type(ty: &str, plugin: &str) -> Result<(), InstallError> {
    let assigned = BTreeMap::from([(ty.to_string(), plugin.to_string())]);
    match crate::spec::proc_types::claim_conflict(plugin, ty, &assigned, &[]) {
        None => Ok(()),
        Some(why) => Err(InstallError::Conflict(format!(
            "`{}` cannot be mapped: {why}",
            cut_reason(ty)
        ))),
    }
}
