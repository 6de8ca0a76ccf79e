//! The five kinds of plugin: the WIT world each implements (its [`Kind`]), the package they
//! belong to, and their default failure policies. [`super::kinds`] holds the typed calls of each.

use serde::{Deserialize, Serialize};

/// The WIT package every plugin world belongs to. The kernel hosts exactly this version.
pub const WIT_PACKAGE: &str = "lain:plugin@0.1.0";

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

    /// The fully qualified world, e.g. `lain:plugin/proc-type@0.1.0`.
    pub fn world(self) -> String {
        format!("lain:plugin/{}@0.1.0", self.as_str())
    }

    /// The interface the world exports, e.g. `lain:plugin/proc-rendering@0.1.0`.
    pub fn export(self) -> &'static str {
        match self {
            Kind::ProcType => "lain:plugin/proc-rendering@0.1.0",
            Kind::SchedulerFilter => "lain:plugin/scheduling@0.1.0",
            Kind::BackupHook => "lain:plugin/backup@0.1.0",
            Kind::MonitorExporter => "lain:plugin/monitoring@0.1.0",
            Kind::AuthProvider => "lain:plugin/authentication@0.1.0",
        }
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
