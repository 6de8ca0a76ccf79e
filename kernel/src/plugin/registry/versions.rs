//! Versions across an upgrade: whether it goes down, and what it changed ([`Upgraded`]).

use super::{PluginView, Record};
use serde::{Deserialize, Serialize};

/// What an upgrade replaced.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upgraded {
    /// The plugin now.
    #[serde(flatten)]
    pub plugin: PluginView,
    /// The version it replaced.
    pub previous_version: String,
    /// The SHA-256 of the component it replaced.
    pub previous_sha256: String,
    /// `upgrade`, `downgrade` (allowed by the operator), `rebuild` (same version, other
    /// component), `unchanged` (same component) or `unordered` (a version is not semver).
    pub change: String,
}

/// Whether version `offered` is lower than `installed`, both read as semver (a leading `v`
/// allowed); `false` when either is not semver.
pub(super) fn is_lower(offered: &str, installed: &str) -> bool {
    match (parse_version(offered), parse_version(installed)) {
        (Some(o), Some(i)) => o < i,
        _ => false,
    }
}

fn parse_version(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.trim().trim_start_matches('v')).ok()
}

/// How the plugin now installed relates to the record it replaced.
pub(super) fn change(old: &Record, new: &PluginView) -> String {
    let (before, after) = (&old.manifest.version, &new.version);
    match (parse_version(after), parse_version(before)) {
        _ if old.sha256 == new.sha256 && before == after => "unchanged",
        (Some(a), Some(b)) if a > b => "upgrade",
        (Some(a), Some(b)) if a < b => "downgrade",
        _ if before == after => "rebuild",
        _ => "unordered",
    }
    .into()
}
