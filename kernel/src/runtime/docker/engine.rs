//! One Docker engine: connecting to it (unix socket, plain TCP, or TCP with TLS) and turning its
//! event stream into reconciler wake-ups.

use crate::runtime::RuntimeError;
use bollard::Docker;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The Docker API version lain speaks: 1.41 (Docker 20.10), which later engines still serve.
pub const API_VERSION: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Seconds a request to an engine may take.
const TIMEOUT_SECS: u64 = 120;

/// Client certificate files for engines reached over TCP with TLS.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA that signed the engines' certificates.
    pub ca: PathBuf,
    /// The kernel's client certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// Connects to the engine at `address`: `unix:///path`, `tcp://host:port` (TLS when `tls` is
/// given) or `http://host:port`.
pub fn connect(address: &str, tls: Option<&TlsFiles>) -> Result<Docker, RuntimeError> {
    let failed = |e: bollard::errors::Error| RuntimeError::Failed(format!("engine {address}: {e}"));
    if address.starts_with("unix://") {
        Docker::connect_with_unix(address, TIMEOUT_SECS, &API_VERSION).map_err(failed)
    } else if address.starts_with("tcp://") && tls.is_some() {
        let tls = tls.ok_or_else(|| RuntimeError::Failed("no TLS files".into()))?;
        Docker::connect_with_ssl(
            address,
            &tls.key,
            &tls.cert,
            &tls.ca,
            TIMEOUT_SECS,
            &API_VERSION,
        )
        .map_err(failed)
    } else if address.starts_with("tcp://") || address.starts_with("http://") {
        Docker::connect_with_http(address, TIMEOUT_SECS, &API_VERSION).map_err(failed)
    } else {
        Err(RuntimeError::Invalid {
            name: address.into(),
            reason: "an engine address is unix:///path, tcp://host:port or http://host:port".into(),
        })
    }
}

/// The host an engine's published ports are reached on.
pub fn host_of(address: &str) -> String {
    match address.split_once("://") {
        Some(("tcp" | "http", rest)) => rest
            .rsplit_once(':')
            .map_or(rest, |(host, _)| host)
            .to_string(),
        _ => "127.0.0.1".into(),
    }
}

/// Follows the engine's container events for `kernel`'s instances (a container dying, starting,
/// changing health) and wakes the reconciler on each, so a dead instance is noticed at once.
/// Reconnects after a second when the stream ends.
pub async fn follow_events(docker: Docker, kernel: String, wake: Arc<tokio::sync::Notify>) {
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}={kernel}", crate::runtime::labels::KERNEL)],
            ),
            (
                "event".to_string(),
                ["die", "start", "oom", "health_status", "destroy"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let options = bollard::query_parameters::EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let mut events = docker.events(Some(options));
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::debug!("docker events: {e}");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
