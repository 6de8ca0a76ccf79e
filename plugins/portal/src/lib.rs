//! The built-in `portal` proc type (LAIN reference §proc-sections, §proc-keys, §services,
//! §portals): the entry point through which client apps reach a service. Clients name it by its
//! `service_name` in `use_services`; the kernel runs a portal instance next to the clients that use
//! it and admits the clients `allow_clients` matches.
//!
//! Unlike LAIN, which documented `allow_clients` as a glob but only implemented `**` (LAIN
//! reference §proc-keys), the value is checked here as a list of app-name globs (see
//! [`names::allow_clients_faults`]) and the kernel enforces it.
//!
//! The portal of a `service.<name>` section that declares no port takes the service proc's ports
//! (the kernel's `lain.yaml` reader copies them, as LAIN's docs promised and its parser did not,
//! LAIN reference §proc-sections); any other portal without a port has none. Like LAIN,
//! `mountpoint`, `https_only` and `healthcheck` are accepted and ignored (LAIN reference
//! §proc-keys, §mountpoints).

mod names;

use lain_sdk_guest::proc_type::*;
use lain_sdk_guest::{EnvVar, PluginError, Problem};

/// `allow_clients` when not given: every app (LAIN reference §proc-keys).
const ALL_CLIENTS: &str = "**";

/// The `portal` proc type. It has no configuration.
struct PortalType;

impl ProcType for PortalType {
    type Config = serde_json::Value;

    fn new(_config: serde_json::Value) -> Result<Self, PluginError> {
        Ok(PortalType)
    }

    fn describe(&self) -> TypeInfo {
        TypeInfo {
            name: "portal".into(),
            extra_keys: vec![],
            summary: "entry point through which client apps reach a service by its service_name"
                .into(),
        }
    }

    /// Requires a valid `service_name`, checks `allow_clients` and fills it in with `**` when
    /// absent; reports every problem found.
    fn validate(&self, mut proc: Proc, _ctx: AppContext) -> Result<Proc, Vec<Problem>> {
        let mut problems = Vec::new();
        match &proc.service_name {
            None => problems.push(
                Problem::at(
                    &["service_name"],
                    "proc (type is portal) should have own service_name.",
                )
                .with_hint("add `service_name: <name>`; clients list that name in `use_services`"),
            ),
            Some(name) if !names::is_service_name(name) => problems.push(
                Problem::at(
                    &["service_name"],
                    format!("service_name `{name}` is not a valid name"),
                )
                .with_hint(
                    "use letters and digits in groups joined by single `-`, starting with a letter",
                ),
            ),
            Some(_) => {}
        }
        let allow_clients = proc.allow_clients.get_or_insert_with(|| ALL_CLIENTS.into());
        problems.extend(names::allow_clients_faults(allow_clients).into_iter().map(|fault| {
            Problem::at(&["allow_clients"], fault).with_hint(
                "list globs of app names separated by `,`, made of letters, digits, `-`, `.`, `?`, `*` and `**` (`**` allows every app)",
            )
        }));
        if problems.is_empty() {
            Ok(proc)
        } else {
            Err(problems)
        }
    }

    /// An always-restarted plan with the portal settings and `LAIN_SERVICE_NAME` in its env.
    fn render(&self, proc: Proc, _ctx: AppContext) -> Result<ContainerPlan, PluginError> {
        if proc.proc_type != "portal" {
            return Err(PluginError::InvalidInput(format!(
                "proc {} is of type {}, not portal",
                proc.name, proc.proc_type
            )));
        }
        let service_name = proc.service_name.clone().ok_or_else(|| {
            PluginError::InvalidInput(format!(
                "portal {} has no service_name: not validated",
                proc.name
            ))
        })?;
        let allow_clients = proc
            .allow_clients
            .clone()
            .unwrap_or_else(|| ALL_CLIENTS.into());
        let mut plan = plan_from(&proc, RestartPolicy::Always);
        plan.env.push(EnvVar {
            name: "LAIN_SERVICE_NAME".into(),
            value: service_name.clone(),
        });
        plan.portal = Some(Portal {
            service_name,
            allow_clients,
        });
        Ok(plan)
    }
}

lain_sdk_guest::export_proc_type!(PortalType);

#[cfg(test)]
mod tests;
