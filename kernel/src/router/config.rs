//! `[router]`: the web router's section of the kernel configuration.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[router]`: where web traffic is accepted and how instances leave it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where web traffic is accepted (`LAIN_ROUTER_LISTEN`).
    pub listen: String,
    /// Where HTTPS is accepted (`LAIN_ROUTER_HTTPS_LISTEN`); needs `certificates`.
    pub https_listen: Option<String>,
    /// Milliseconds an instance takes no new traffic before it is stopped.
    pub drain_ms: u64,
    /// Router threads, each with its own listener and connection pools; 0 means one per core.
    pub workers: usize,
    /// Write an access log per web proc into the log store.
    pub access_log: bool,
    /// The router's active health checks of instances with a `healthcheck` path.
    pub health: HealthConfig,
    /// Certificates for HTTPS.
    pub certificates: Vec<CertificateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            https_listen: None,
            drain_ms: 1000,
            workers: 0,
            access_log: true,
            health: HealthConfig::default(),
            certificates: Vec::new(),
        }
    }
}

/// `[router.health]`: LAIN's webrouter checks (`interval=3000 rise=2 fall=5 timeout=1000`, a 2xx
/// or 3xx answer to `GET <healthcheck>` is alive).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Milliseconds between two checks of an instance; 0 disables active checks.
    pub interval_ms: u64,
    /// Milliseconds before a check counts as failed.
    pub timeout_ms: u64,
    /// Consecutive successes that put an instance back.
    pub rise: u32,
    /// Consecutive failures that take an instance out.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 3000,
            timeout_ms: 1000,
            rise: 2,
            fall: 5,
        }
    }
}

/// `[[router.certificates]]`: a PEM certificate chain and its private key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}
