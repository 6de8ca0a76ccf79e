//! From a release's `lain.yaml` to [`ProcPlan`]s: parsed again with the proc types installed
//! now, each proc rendered by its proc-type plugin, LAIN's environment added.

use super::records::{ProcPlan, ReleaseRecord};
use super::{Lifecycle, LifecycleError};
use crate::plugin::Kind;
use crate::plugin::bindings::types::AppContext;
use crate::plugin::kinds::proc_type::ProcTypePlugin;
use crate::spec::{self, AppType, PluginProcTypes, app_domain};

/// A release ready to deploy: its procs, and the services of other apps it uses.
pub struct Rendered {
    /// The procs, as their proc types rendered them.
    pub procs: Vec<ProcPlan>,
    /// `use_services`: service app -> service names.
    pub use_services: std::collections::BTreeMap<String, Vec<String>>,
}

/// Renders every proc of `release`.
pub fn render(lc: &Lifecycle, release: &ReleaseRecord) -> Result<Rendered, LifecycleError> {
    let types = PluginProcTypes::new(lc.registry.enabled(Kind::ProcType), &lc.config.proc_types)?;
    let parsed = spec::parse("lain.yaml", &release.lain_yaml, &types, &lc.config.domains);
    let Some(app) = parsed.spec else {
        return Err(LifecycleError::Spec(parsed.diagnostics));
    };
    if app.apptype == AppType::Resource {
        return Err(LifecycleError::Invalid(format!(
            "`{}` is a resource (apptype: resource): it is a template used by other apps, not run itself",
            app.appname
        )));
    }
    let ctx = AppContext {
        app: app.appname.clone(),
        app_domain: app_domain(&app.appname),
        cluster_domains: lc.config.domains.clone(),
        release: release.version.clone(),
    };
    let main_domain = lc.config.domains.first().cloned().unwrap_or_default();
    let mut plans = Vec::with_capacity(app.procs.len());
    for proc in &app.procs {
        let ty = &proc.proc.proc_type;
        let plugin = types.plugin(ty).ok_or_else(|| {
            LifecycleError::Invalid(format!("no proc-type plugin serves type `{ty}`"))
        })?;
        let plan = ProcTypePlugin(plugin).render(&proc.proc, &ctx)?;
        // LAIN's instance environment (LAIN reference §environment), after the user's and the
        // type's.
        let mut env: Vec<(String, String)> = proc
            .proc
            .env
            .iter()
            .chain(&plan.env)
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        env.extend([
            ("LAIN_APPNAME".into(), app.appname.clone()),
            ("LAIN_APP_RELEASE_VERSION".into(), release.version.clone()),
            ("LAIN_PROCNAME".into(), proc.proc.name.clone()),
            ("LAIN_PROCTYPE".into(), ty.clone()),
            ("LAIN_DOMAIN".into(), main_domain.clone()),
            ("DEPLOYD_POD_NAME".into(), proc.full_name.clone()),
            ("DEPLOYD_POD_NAMESPACE".into(), app.appname.clone()),
        ]);
        if let Some(portal) = &plan.portal {
            env.push(("LAIN_SERVICE_NAME".into(), portal.service_name.clone()));
        }
        plans.push(ProcPlan {
            name: proc.proc.name.clone(),
            full_name: proc.full_name.clone(),
            proc_type: ty.clone(),
            num_instances: proc.proc.num_instances,
            filters: proc.proc.filters.clone(),
            labels: proc
                .proc
                .labels
                .iter()
                .map(|l| format!("{}={}", l.key, l.value))
                .collect(),
            stateful: proc.proc.stateful,
            volumes: proc.proc.volumes.iter().map(|v| v.path.clone()).collect(),
            env,
            secret_files: proc.proc.secret_files.clone(),
            secret_files_bypass: proc.proc.secret_files_bypass,
            secrets_stamp: String::new(),
            plan,
        });
    }
    Ok(Rendered {
        procs: plans,
        use_services: app.use_services,
    })
}
