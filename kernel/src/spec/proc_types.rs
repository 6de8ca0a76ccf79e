//! The proc types a `lain.yaml` may use: the enabled proc-type plugins, one plugin per type.
//!
//! A plugin names the type it serves in its `describe()` answer, so a type is a claim and is
//! checked like one ([`claim_conflict`]): the built-in types (`web`, `worker`, `oneshot`,
//! `portal`) belong to the built-in plugins of the same name, the section keywords and top-level
//! keys of `lain.yaml` are no types, and a type served by one plugin is not taken by another. The
//! operator's `[proc_types]` is the one way to reassign a type. The registry refuses an install,
//! upgrade or enable that breaks these rules; [`PluginProcTypes`] applies them again, so a store
//! written before them cannot let a plugin take another's type either.

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

/// The built-in proc types, each served by the built-in plugin of the same name.
pub const BUILTIN_TYPES: &[&str] = &["web", "worker", "oneshot", "portal"];

/// Why a plugin may not serve type `ty`: `None` when it may. `overrides` is the operator's
/// `[proc_types]` (type -> plugin); `others` are the types other enabled proc-type plugins
/// serve, as (plugin, type).
pub fn claim_conflict(
    plugin: &str,
    ty: &str,
    overrides: &BTreeMap<String, String>,
    others: &[(String, String)],
) -> Option<String> {
    if let Err(e) = super::values::check_name(ty) {
        return Some(format!("it is not a type name: {e}"));
    }
    if super::app::TOP_LEVEL_KEYS.contains(&ty) || super::sections::KEYWORDS.contains(&ty) {
        return Some(format!("`{ty}` is a key of lain.yaml, not a type"));
    }
    match overrides.get(ty) {
        Some(chosen) if chosen == plugin => return None,
        Some(chosen) => {
            return Some(format!(
                "the operator assigned type `{ty}` to plugin `{chosen}` (`[proc_types]` in the kernel config)"
            ));
        }
        None => {}
    }
    if BUILTIN_TYPES.contains(&ty) {
        return (plugin != ty).then(|| format!(
            "`{ty}` is a built-in type, served by the built-in plugin `{ty}`; only the operator's `[proc_types]` reassigns it"
        ));
    }
    others
        .iter()
        .find(|(other, t)| t == ty && other != plugin)
        .map(|(other, _)| format!("type `{ty}` is served by plugin `{other}`"))
}

/// Proc types served by proc-type plugins.
pub struct PluginProcTypes {
    types: BTreeMap<String, (Arc<LoadedPlugin>, TypeInfo)>,
    /// Types more than one plugin claims with no rule to choose: type -> why none serves it.
    contested: BTreeMap<String, String>,
}

impl PluginProcTypes {
    /// Each proc-type plugin serves the type it describes, by the rules of [`claim_conflict`];
    /// `overrides` (type -> plugin name, the kernel config's `[proc_types]`) reassigns types. A
    /// type two plugins claim without an override is served by neither (and says so).
    pub fn new(
        plugins: impl IntoIterator<Item = Arc<LoadedPlugin>>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<PluginProcTypes, CallError> {
        let mut by_plugin = BTreeMap::new();
        for plugin in plugins.into_iter().filter(|p| p.kind() == Kind::ProcType) {
            let info = ProcTypePlugin(&plugin).describe()?;
            by_plugin.insert(plugin.name().to_string(), (plugin, info));
        }
        let claims: Vec<(String, String)> = by_plugin
            .iter()
            .map(|(name, (_, info))| (name.clone(), info.name.clone()))
            .collect();
        let mut types = BTreeMap::new();
        let mut contested = BTreeMap::new();
        for (name, (plugin, info)) in &by_plugin {
            let ty = &info.name;
            if overrides.contains_key(ty) || types.contains_key(ty) {
                continue;
            }
            let others: Vec<(String, String)> =
                claims.iter().filter(|(n, _)| n != name).cloned().collect();
            match claim_conflict(name, ty, overrides, &others) {
                None => {
                    types.insert(ty.clone(), (plugin.clone(), info.clone()));
                }
                Some(why) => {
                    tracing::debug!(plugin = %name, proc_type = %ty, "proc type not served: {why}");
                    let claimants: Vec<&str> = claims
                        .iter()
                        .filter(|(_, t)| t == ty)
                        .map(|(n, _)| n.as_str())
                        .collect();
                    let message = if claimants.len() > 1 && !BUILTIN_TYPES.contains(&ty.as_str()) {
                        format!(
                            "proc type {ty} is claimed by plugins {}; the operator chooses one with `[proc_types]`",
                            claimants.join(" and ")
                        )
                    } else {
                        format!(
                            "proc type {ty} is not served: plugin `{name}` claims it, but {why}"
                        )
                    };
                    let nameable = super::values::check_name(ty).is_ok()
                        && !super::sections::KEYWORDS.contains(&ty.as_str())
                        && !super::app::TOP_LEVEL_KEYS.contains(&ty.as_str());
                    if nameable && (claimants.len() > 1 || BUILTIN_TYPES.contains(&ty.as_str())) {
                        contested.insert(ty.clone(), message);
                    }
                }
            }
        }
        for (ty, plugin_name) in overrides {
            if let Some((plugin, info)) = by_plugin.get(plugin_name) {
                types.insert(ty.clone(), (plugin.clone(), info.clone()));
            }
        }
        for ty in types.keys() {
            contested.remove(ty);
        }
        Ok(PluginProcTypes { types, contested })
    }

    /// The plugin serving type `ty`.
    pub fn plugin(&self, ty: &str) -> Option<&Arc<LoadedPlugin>> {
        self.types.get(ty).map(|(plugin, _)| plugin)
    }
}

impl ProcTypes for PluginProcTypes {
    fn names(&self) -> Vec<String> {
        // Contested types are named too, so that a proc of one hears why it is not served.
        let mut names: Vec<String> = self
            .types
            .keys()
            .chain(self.contested.keys())
            .cloned()
            .collect();
        names.sort();
        names
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
                message: self
                    .contested
                    .get(ty)
                    .cloned()
                    .unwrap_or_else(|| format!("unknown proc type {ty}")),
                hint: None,
            }])),
        }
    }
}
