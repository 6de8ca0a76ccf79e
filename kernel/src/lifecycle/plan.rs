//! From a release's `lain.yaml` to [`ProcPlan`]s: parsed again with the proc types installed
//! now, each proc rendered by its proc-type plugin, LAIN's environment added
//! ([`environment::proc_env`]).

use super::records::{ProcPlan, ReleaseRecord};
use super::{Lifecycle, LifecycleError, environment};
use crate::plugin::Kind;
use crate::plugin::bindings::types::AppContext;
use crate::plugin::kinds::proc_type::ProcTypePlugin;
use crate::spec::{self, AppType, PluginProcTypes, app_domain};

/// A release ready to deploy: its procs, and the services and resources of other apps it uses.
pub struct Rendered {
    /// The procs, as their proc types rendered them.
    pub procs: Vec<ProcPlan>,
    /// `use_services`: service app -> service names.
    pub use_services: std::collections::BTreeMap<String, Vec<String>>,
    /// `use_resources`: resource app -> its services and parameters.
    pub use_resources: std::collections::BTreeMap<String, spec::model::UseResource>,
}

/// The proc types of the enabled plugins.
pub fn proc_types(lc: &Lifecycle) -> Result<PluginProcTypes, LifecycleError> {
    Ok(PluginProcTypes::new(
        lc.registry.enabled(Kind::ProcType),
        &lc.registry.proc_types(),
    )?)
}

/// Renders every proc of `release`. A resource app is refused: it is a template.
pub fn render(lc: &Lifecycle, release: &ReleaseRecord) -> Result<Rendered, LifecycleError> {
    let types = proc_types(lc)?;
    let parsed = spec::parse_release(&release.app, &release.lain_yaml, &types, &lc.config.domains);
    let Some(app) = parsed.spec else {
        return Err(LifecycleError::Spec(parsed.diagnostics));
    };
    if app.apptype == AppType::Resource {
        return Err(LifecycleError::Invalid(format!(
            "`{}` is a resource (apptype: resource): a resource is a template; it is deployed for \
             each client that uses it (as resource.{}.<client>), never itself",
            app.appname, app.appname
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
        let user: Vec<(String, String)> = proc
            .proc
            .env
            .iter()
            .chain(&plan.env)
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        let env = environment::proc_env(
            user,
            &environment::ProcIdentity {
                app: &app.appname,
                release: &release.version,
                proc: &proc.proc.name,
                proc_type: ty,
                full_name: &proc.full_name,
                domain: &main_domain,
                service_name: plan.portal.as_ref().map(|p| p.service_name.as_str()),
            },
        );
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
            cloud_volumes: proc.cloud_volumes.clone().filter(|c| !c.dirs.is_empty()),
            logs: proc.proc.logs.clone(),
            dns_search: proc.dns_search.clone(),
            stream_ports: proc.proc.stream_ports.clone(),
            env,
            secret_files: proc.proc.secret_files.clone(),
            secret_files_bypass: proc.proc.secret_files_bypass,
            secrets_stamp: String::new(),
            plan_stamp: String::new(),
            plan,
        });
    }
    Ok(Rendered {
        procs: plans,
        use_services: app.use_services,
        use_resources: app.use_resources,
    })
}
