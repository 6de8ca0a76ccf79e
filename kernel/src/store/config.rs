//! `[store]`: the state store's section of the kernel configuration.

use serde::{Deserialize, Serialize};

/// `[store]`: which backend holds the state, and where.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `embedded` or `etcd`.
    pub backend: Backend,
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// Key prefix in etcd.
    pub prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Embedded,
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/lain/".into(),
        }
    }
}

/// Which state store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// redb in the data dir.
    Embedded,
    /// An etcd cluster (needs the `etcd` cargo feature, on by default).
    Etcd,
}
