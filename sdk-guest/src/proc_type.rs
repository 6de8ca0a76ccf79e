//! Proc types: how a proc of a type is validated and becomes containers, routes and checks.
//!
//! A complete proc type that runs a command on a schedule (a `cron.nightly:` section):
//!
//! ```no_run
//! use lain_sdk_guest::proc_type::*;
//! use lain_sdk_guest::{PluginError, Problem};
//!
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default)]
//! struct Config { timezone: String }
//!
//! struct Cron { tz: String }
//!
//! impl ProcType for Cron {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, PluginError> {
//!         Ok(Cron { tz: if config.timezone.is_empty() { "UTC".into() } else { config.timezone } })
//!     }
//!     fn describe(&self) -> TypeInfo {
//!         TypeInfo { name: "cron".into(), extra_keys: vec!["schedule".into()], summary: "Runs a command on a schedule".into() }
//!     }
//!     fn validate(&self, proc: Proc, _ctx: AppContext) -> Result<Proc, Vec<Problem>> {
//!         let extra: serde_json::Value = serde_json::from_str(&proc.extra).unwrap_or_default();
//!         match extra.get("schedule").and_then(|s| s.as_str()) {
//!             Some(s) if s.split_whitespace().count() == 5 => Ok(proc),
//!             Some(_) => Err(vec![Problem::at(&["schedule"], "a schedule has 5 fields")]),
//!             None => Err(vec![Problem::at(&[], "missing key schedule").with_hint("add `schedule: \"0 3 * * *\"`")]),
//!         }
//!     }
//!     fn render(&self, proc: Proc, _ctx: AppContext) -> Result<ContainerPlan, PluginError> {
//!         let extra: serde_json::Value = serde_json::from_str(&proc.extra).unwrap_or_default();
//!         let mut plan = plan_from(&proc, RestartPolicy::OnFailure);
//!         plan.restart.max_restarts = Some(2); // a failed run is retried twice, then `failed`
//!         plan.schedule = Some(Schedule {
//!             cron: extra["schedule"].as_str().unwrap_or_default().into(),
//!             timezone: self.tz.clone(),
//!             concurrency: ConcurrencyPolicy::Forbid,
//!             missed: MissedPolicy::Skip,
//!             history: 0,
//!         });
//!         Ok(plan)
//!     }
//! }
//!
//! lain_sdk_guest::export_proc_type!(Cron);
//! ```

pub use crate::bindings::proc_type::exports::lain::plugin::proc_rendering::{
    ConcurrencyPolicy, ContainerPlan, MissedPolicy, PlacementMode, Portal, RestartPolicy,
    RestartRule, Route, Schedule, TypeInfo,
};
pub use crate::bindings::proc_type::lain::plugin::types::{AppContext, Proc};

use crate::{PluginError, Problem};

/// LAIN's defaults for every key of a proc section ([`lain_proc_defaults`]): one instance, 32 MiB,
/// `kill_timeout` 10 s, no extra keys (`"{}"`); everything else, app, name and type included, is
/// empty, `None`, `false` or 0. Handy in tests:
/// `Proc { name: "web".into(), proc_type: "web".into(), ..Default::default() }`.
impl Default for Proc {
    fn default() -> Self {
        lain_proc_defaults::lain_proc!(Proc {
            app: String::new(),
            name: String::new(),
            proc_type: String::new(),
        })
    }
}

/// A proc type. Implement it and export it with [`export_proc_type!`](crate::export_proc_type).
pub trait ProcType: Sized + 'static {
    /// The plugin's configuration, deserialised from its effective JSON configuration.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin from its configuration. Called once per component instance.
    fn new(config: Self::Config) -> Result<Self, PluginError>;

    /// The type name served, the extra keys it accepts and a summary.
    fn describe(&self) -> TypeInfo;

    /// Checks a proc of this type and fills in the type's defaults. Report every problem found.
    fn validate(&self, proc: Proc, ctx: AppContext) -> Result<Proc, Vec<Problem>>;

    /// Turns a validated proc into the plan its instances are run by.
    fn render(&self, proc: Proc, ctx: AppContext) -> Result<ContainerPlan, PluginError>;
}

impl RestartRule {
    /// `policy` with no restart limit and the kernel's default backoff (1 s doubling up to 300 s).
    pub fn policy(policy: RestartPolicy) -> RestartRule {
        RestartRule {
            policy,
            max_restarts: None,
            backoff_initial: 0,
            backoff_max: 0,
        }
    }
}

/// A plan with every field taken from the proc as it is: what most types start from. It runs
/// all the time (no schedule), `spread` by the scheduler, restarted by `restart` without limit
/// (set `plan.restart.max_restarts` to cap it).
pub fn plan_from(proc: &Proc, restart: RestartPolicy) -> ContainerPlan {
    ContainerPlan {
        image: proc.image.clone(),
        entrypoint: proc.entrypoint.clone(),
        cmd: proc.cmd.clone(),
        env: Vec::new(),
        user: proc.user.clone(),
        workdir: proc.workdir.clone(),
        ports: proc.ports.clone(),
        cpu: proc.cpu,
        memory: proc.memory,
        health: if proc.healthcheck_disabled {
            None
        } else {
            proc.container_healthcheck.clone()
        },
        restart: RestartRule::policy(restart),
        schedule: None,
        placement: PlacementMode::Spread,
        routes: Vec::new(),
        portal: None,
        labels: Vec::new(),
        volumes: Vec::new(),
        kill_timeout: proc.kill_timeout,
        setup_time: proc.setup_time,
    }
}

/// Problems for the portal-only keys (`service_name`, `allow_clients`) set on a proc that is not
/// a portal. Every non-portal type reports them: LAIN's schema refused them there (LAIN reference
/// §proc-keys).
pub fn portal_key_problems(proc: &Proc) -> Vec<Problem> {
    [
        ("service_name", proc.service_name.is_some()),
        ("allow_clients", proc.allow_clients.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(key, _)| {
        Problem::at(&[key], format!("only portal procs have {key}"))
            .with_hint("remove it, or declare a `portal.<name>` section for the service")
    })
    .collect()
}

/// Exports a [`ProcType`] implementation as the component's `proc-rendering` interface and embeds
/// the crate's `lain-plugin.toml` as its manifest.
#[macro_export]
macro_rules! export_proc_type {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::proc_type::exports::lain::plugin::proc_rendering as __raw;
            use $crate::proc_type::ProcType as _;
            $crate::__embed_manifest!();
            $crate::__plugin_cell!($ty, $crate::proc_type::ProcType);

            struct __LainProcType;

            impl __raw::Guest for __LainProcType {
                fn describe() -> __raw::TypeInfo {
                    match __lain_with(|p| p.describe()) {
                        Ok(info) => info,
                        Err(e) => panic!("{e}"),
                    }
                }
                fn validate(
                    proc: $crate::proc_type::Proc,
                    ctx: $crate::proc_type::AppContext,
                ) -> Result<$crate::proc_type::Proc, Vec<$crate::Problem>> {
                    __lain_with(move |p| p.validate(proc, ctx))
                        .unwrap_or_else(|e| Err(vec![$crate::Problem::at(&[], e.to_string())]))
                }
                fn render(
                    proc: $crate::proc_type::Proc,
                    ctx: $crate::proc_type::AppContext,
                ) -> Result<__raw::ContainerPlan, $crate::PluginError> {
                    __lain_with(move |p| p.render(proc, ctx))?
                }
            }

            $crate::bindings::proc_type::__export_proc_type_world!(__LainProcType);
        };
    };
}
