//! `[scheduler]`: the scheduling pipeline's section of the kernel configuration.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[scheduler]`: which scheduler plugins run, in which order, with which weights; the form of
/// the pipeline kept in the store too (see [`super::live`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Scheduler plugins, run in this order (filters narrow, scorers add up).
    pub plugins: Vec<String>,
    /// Weight of each scorer's scores (default 1).
    pub weights: BTreeMap<String, u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            plugins: vec!["resources".into(), "constraint".into(), "spread".into()],
            weights: BTreeMap::new(),
        }
    }
}
