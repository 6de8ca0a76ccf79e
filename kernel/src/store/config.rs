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
    /// etcd: the time to live of each kernel's election lease, in seconds (2-60): a leader
    /// that stops answering is replaced about this long after.
    pub lease_ttl_secs: u64,
}

impl Config {
    /// Checks `lease_ttl_secs`.
    pub fn check(&self) -> Result<(), String> {
        if !(2..=60).contains(&self.lease_ttl_secs) {
            return Err(format!(
                "store.lease_ttl_secs = {}: must be 2 to 60 (etcd's smallest lease is about 2 s)",
                self.lease_ttl_secs
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Embedded,
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/lain/".into(),
            lease_ttl_secs: 3,
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
