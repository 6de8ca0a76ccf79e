//! The five kinds of plugin: the WIT world each implements (its [`Kind`]), the package versions
//! the kernel hosts ([`WitVersion`]), and their default failure policies. [`super::kinds`] holds
//! the typed calls of each.

use serde::{Deserialize, Serialize};

/// The current WIT package: what the SDK and the built-in plugins implement.
pub const WIT_PACKAGE: &str = "lain:plugin@0.2.0";

/// A version of the WIT package the kernel hosts. Published versions are hosted forever: a
/// plugin built against an older one keeps loading, its values converted to the current
/// version's ([`super::legacy`]).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum WitVersion {
    /// `lain:plugin@0.1.0`: proc types choose only a restart policy.
    #[serde(rename = "0.1.0")]
    V0_1,
    /// `lain:plugin@0.2.0`: restart rules, schedules, placement modes, plan volumes.
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl WitVersion {
    /// Every hosted version, newest first (the order in which a component's exports are matched).
    pub const HOSTED: [WitVersion; 2] = [WitVersion::V0_2, WitVersion::V0_1];

    /// The version number, e.g. `0.2.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
        }
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin kind: which world the component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `lain:plugin/proc-type`: validates and renders procs of one type.
    ProcType,
    /// `lain:plugin/scheduler-filter`: filters and scores nodes.
    SchedulerFilter,
    /// `lain:plugin/backup-hook`: plans volume backups.
    BackupHook,
    /// `lain:plugin/monitor-exporter`: encodes metric samples.
    MonitorExporter,
    /// `lain:plugin/auth-provider`: authenticates API callers.
    AuthProvider,
}

/// What the kernel does when a plugin call fails or the plugin is quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// The operation the plugin was part of fails (deny, refuse, do not place).
    Closed,
    /// The plugin is skipped and the operation goes on without it.
    Open,
}

impl Kind {
    /// All kinds, in a stable order.
    pub const ALL: [Kind; 5] = [
        Kind::ProcType,
        Kind::SchedulerFilter,
        Kind::BackupHook,
        Kind::MonitorExporter,
        Kind::AuthProvider,
    ];

    /// The name used in manifests, the API and the CLI (`proc-type`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ProcType => "proc-type",
            Kind::SchedulerFilter => "scheduler-filter",
            Kind::BackupHook => "backup-hook",
            Kind::MonitorExporter => "monitor-exporter",
            Kind::AuthProvider => "auth-provider",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The fully qualified world of the current version, e.g. `lain:plugin/proc-type@0.2.0`.
    pub fn world(self) -> String {
        self.world_at(WitVersion::V0_2)
    }

    /// The fully qualified world at `version`, e.g. `lain:plugin/proc-type@0.1.0`.
    pub fn world_at(self, version: WitVersion) -> String {
        format!("lain:plugin/{}@{version}", self.as_str())
    }

    /// The interface the world exports at `version`, e.g. `lain:plugin/proc-rendering@0.2.0`.
    pub fn export_at(self, version: WitVersion) -> String {
        let interface = match self {
            Kind::ProcType => "proc-rendering",
            Kind::SchedulerFilter => "scheduling",
            Kind::BackupHook => "backup",
            Kind::MonitorExporter => "monitoring",
            Kind::AuthProvider => "authentication",
        };
        format!("lain:plugin/{interface}@{version}")
    }

    /// The default failure policy: an auth provider fails closed (a broken provider must never
    /// let a request in), a monitoring exporter fails open (losing metrics must not stop the
    /// platform), and the rest fail closed because skipping them would do the wrong thing
    /// (deploy a proc unvalidated, place an instance against a constraint, back up the wrong files).
    pub fn default_policy(self) -> FailurePolicy {
        match self {
            Kind::MonitorExporter => FailurePolicy::Open,
            _ => FailurePolicy::Closed,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailurePolicy::Closed => "closed",
            FailurePolicy::Open => "open",
        })
    }
}
