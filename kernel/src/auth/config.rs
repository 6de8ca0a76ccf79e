//! `[auth]`: the access rules' section of the kernel configuration.

use serde::{Deserialize, Serialize};

/// `[auth]`: the authentication chain, cluster admins, granted rights and the audit log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Auth providers, asked in this order; the first that recognises the credentials decides.
    pub providers: Vec<String>,
    /// Principals in any of these groups are cluster admins.
    pub admin_groups: Vec<String>,
    /// These principals (`provider:subject`) are cluster admins.
    pub admin_users: Vec<String>,
    /// Principals in any of these groups hold the `metrics` right (read pull exporters).
    pub metrics_groups: Vec<String>,
    /// These principals (`provider:subject`) hold the `metrics` right.
    pub metrics_users: Vec<String>,
    /// Principals in any of these groups may register new apps (the `register` right), as
    /// cluster admins may. Default none: see `docs/permissions.md`.
    pub register_groups: Vec<String>,
    /// These principals (`provider:subject`) may register new apps.
    pub register_users: Vec<String>,
    /// On the embedded store, the token in `<data_dir>/bootstrap.token` (created 0600) is a
    /// cluster admin: the local bootstrap. Ignored with etcd, where only providers admit.
    pub bootstrap: bool,
    /// Newest audit records kept; older ones are pruned.
    pub audit_keep: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            providers: vec!["token".into(), "jwt".into()],
            admin_groups: vec!["admins".into()],
            admin_users: Vec::new(),
            metrics_groups: Vec::new(),
            metrics_users: Vec::new(),
            register_groups: Vec::new(),
            register_users: Vec::new(),
            bootstrap: true,
            audit_keep: 20_000,
        }
    }
}
