//! The proc types a `lain.yaml` may use: the enabled proc-type plugins.

use crate::plugin::bindings::proc_rendering::TypeInfo;
use crate::plugin::bindings::types::{AppContext, Problem, Proc};
use crate::plugin::kinds::proc_type::ProcTypePlugin;
use crate::plugin::{CallError, Kind, LoadedPlugin};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the spec needs to know about proc types.
pub trait ProcTypes {
    /// The type names available, sorted.
    fn names(&self) -> Vec<String>;
    /// The keys only type `ty` accepts; `None` if no plugin serves `ty`.
    fn extra_keys(&self, ty: &str) -> Option<Vec<String>>;
    /// Validates a proc of type `ty` with its plugin: `Ok(Err(problems))` for a refused proc,
    /// `Err` when the plugin itself failed.
    fn validate(
        &self,
        ty: &str,
        proc: &Proc,
        ctx: &AppContext,
    ) -> Result<Result<Proc, Vec<Problem>>, CallError>;
}

/// Proc types served by proc-type plugins.
pub struct PluginProcTypes {
    types: BTreeMap<String, (Arc<LoadedPlugin>, TypeInfo)>,
}

impl PluginProcTypes {
    /// Each proc-type plugin serves the type it describes; `overrides` (type -> plugin name, the
    /// kernel config's `[proc_types]`) reassigns types.
    pub fn new(
        plugins: impl IntoIterator<Item = Arc<LoadedPlugin>>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<PluginProcTypes, CallError> {
        let mut by_plugin = BTreeMap::new();
        for plugin in plugins.into_iter().filter(|p| p.kind() == Kind::ProcType) {
            let info = ProcTypePlugin(&plugin).describe()?;
            by_plugin.insert(plugin.name().to_string(), (plugin, info));
        }
        let mut types = BTreeMap::new();
        for (plugin, info) in by_plugin.values() {
            if !overrides.contains_key(&info.name) {
                types.insert(info.name.clone(), (plugin.clone(), info.clone()));
            }
        }
        for (ty, plugin_name) in overrides {
            if let Some((plugin, info)) = by_plugin.get(plugin_name) {
                types.insert(ty.clone(), (plugin.clone(), info.clone()));
            }
        }
        Ok(PluginProcTypes { types })
    }

    /// The plugin serving type `ty`.
    pub fn plugin(&self, ty: &str) -> Option<&Arc<LoadedPlugin>> {
        self.types.get(ty).map(|(plugin, _)| plugin)
    }
}

impl ProcTypes for PluginProcTypes {
    fn names(&self) -> Vec<String> {
        self.types.keys().cloned().collect()
    }

    fn extra_keys(&self, ty: &str) -> Option<Vec<String>> {
        self.types.get(ty).map(|(_, info)| info.extra_keys.clone())
    }

    fn validate(
        &self,
        ty: &str,
        proc: &Proc,
        ctx: &AppContext,
    ) -> Result<Result<Proc, Vec<Problem>>, CallError> {
        match self.types.get(ty) {
            Some((plugin, _)) => ProcTypePlugin(plugin).validate(proc, ctx),
            None => Ok(Err(vec![Problem {
                path: vec![],
                message: format!("unknown proc type {ty}"),
                hint: None,
            }])),
        }
    }
}
