//! The built-in `web` proc type (LAIN reference §proc-sections, §proc-keys): an HTTP service,
//! reached through routes derived from its mountpoints and restarted whatever its exit status.

mod health;
mod mountpoint;

use lain_sdk_guest::proc_type::*;
use lain_sdk_guest::{PluginError, Port, Problem, Protocol};

/// The port of a web proc that declares none: 80/tcp (LAIN reference §proc-keys, `port`).
const DEFAULT_PORT: Port = Port {
    number: 80,
    protocol: Protocol::Tcp,
};

/// The `web` proc type. It has no configuration.
struct Web;

impl ProcType for Web {
    type Config = serde_json::Value;

    fn new(_config: serde_json::Value) -> Result<Self, PluginError> {
        Ok(Web)
    }

    fn describe(&self) -> TypeInfo {
        TypeInfo {
            name: "web".into(),
            extra_keys: vec![],
            summary: "HTTP service reached through routes derived from its mountpoints".into(),
        }
    }

    /// Fills in port 80/tcp when no port is given, `https_only: false`, and the expanded
    /// mountpoints (LAIN reference §mountpoints); reports every problem found.
    fn validate(&self, mut proc: Proc, ctx: AppContext) -> Result<Proc, Vec<Problem>> {
        let mut problems = portal_key_problems(&proc);
        match proc.ports.first() {
            None => proc.ports.push(DEFAULT_PORT),
            Some(main) if main.protocol != Protocol::Tcp => problems.push(
                Problem::at(&["port"], "the main port of a web proc must be TCP")
                    .with_hint("HTTP is routed to the first port; list a TCP port first"),
            ),
            Some(_) => {}
        }
        let defaults = mountpoint::defaults(&ctx.app_domain, &ctx.cluster_domains);
        proc.mountpoints =
            mountpoint::expand(&proc.name, &proc.mountpoints, &defaults, &mut problems);
        if let Some(path) = &proc.healthcheck {
            health::check_path(path, &mut problems);
        }
        proc.https_only.get_or_insert(false);
        if problems.is_empty() {
            Ok(proc)
        } else {
            Err(problems)
        }
    }

    /// One route per (expanded) mountpoint, and the health check of [`health::plan_health`].
    ///
    /// `https_only` applies to every route of the proc. LAIN's webrouter only redirected names
    /// under the cluster domain (LAIN reference §webrouter) and silently served external
    /// mountpoints over plain HTTP; users read `https_only` as a promise about the proc, so we keep
    /// it everywhere.
    fn render(&self, proc: Proc, _ctx: AppContext) -> Result<ContainerPlan, PluginError> {
        if proc.proc_type != "web" {
            return Err(PluginError::InvalidInput(format!(
                "proc {} is of type {}, not web",
                proc.name, proc.proc_type
            )));
        }
        let main_port = proc.ports.first().map(|p| p.number).ok_or_else(|| {
            PluginError::InvalidInput(format!("web proc {} has no port: not validated", proc.name))
        })?;
        let https_only = proc.https_only.unwrap_or(false);
        let routes = proc
            .mountpoints
            .iter()
            .map(|m| mountpoint::route(m, https_only))
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan = plan_from(&proc, RestartPolicy::Always);
        plan.routes = routes;
        plan.health = health::plan_health(&proc, main_port);
        Ok(plan)
    }
}

lain_sdk_guest::export_proc_type!(Web);

#[cfg(test)]
mod tests;
