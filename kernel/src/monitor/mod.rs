//! Monitoring: the kernel's own metrics, encoded by monitoring-exporter plugins.
//!
//! Exporters only encode; the kernel delivers, where the operator's `[monitor.exporters.<name>]`
//! says and nowhere else: a `pull` exporter's bytes are served on the operator's path (e.g.
//! `GET /metrics`, behind the `metrics` right), a `push` exporter's bytes are sent over TCP to
//! the operator's `host:port` every `interval` seconds. What an exporter's `describe()` says
//! about its delivery (a path, an address) is never used: a plugin cannot open a route or make
//! the kernel connect anywhere. Its content type is used only when it is a plain, inert one.
//! Exporters fail open: a failing exporter loses its own output and nothing else.

use crate::plugin::bindings::monitoring::{
    ExporterInfo, MetricFamily, MetricKind, Sample, SampleBatch,
};
use crate::plugin::bindings::types::Label;
use crate::plugin::kinds::monitor::ExporterPlugin;
use crate::plugin::limits::within_wall_clock;
use crate::plugin::registry::Registry;
use crate::plugin::{CallError, LoadedPlugin};
pub use config::{Config, ExporterConfig};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod backups;
mod config;
mod lifecycle;

use crate::lifecycle::view::StatusBoard;
use crate::router::WebRouter;

/// The kernel's metrics and its exporters.
#[derive(Clone)]
pub struct Monitor {
    registry: Arc<Registry>,
    exporters: Arc<BTreeMap<String, ExporterConfig>>,
    started: Instant,
    /// Each exporter's `describe` answer, by plugin name and content hash: it only changes
    /// with the plugin, and the push loop would otherwise ask every second.
    infos: Arc<parking_lot::Mutex<HashMap<(String, String), ExporterInfo>>>,
    /// The lifecycle's status, for instance metrics.
    status: Option<StatusBoard>,
    /// The web router, for request metrics.
    router: Option<Arc<WebRouter>>,
    /// Volume backups, for their metrics.
    backups: Option<Arc<crate::backup::Backups>>,
    /// The leadership, for `lain_leader` and `lain_fenced_writes_total`.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// One pull endpoint's response.
pub struct Scrape {
    /// MIME type.
    pub content_type: String,
    /// Encoded samples.
    pub body: Vec<u8>,
}

impl Monitor {
    /// A monitor using the operator's exporters (`[monitor.exporters]`, checked).
    pub fn new(registry: Arc<Registry>, exporters: BTreeMap<String, ExporterConfig>) -> Monitor {
        Monitor {
            registry,
            exporters: Arc::new(exporters),
            started: Instant::now(),
            infos: Default::default(),
            status: None,
            router: None,
            backups: None,
            cluster: None,
        }
    }

    /// Adds `lain_leader` (1 on the leading kernel) and `lain_fenced_writes_total`.
    pub fn with_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Monitor {
        self.cluster = Some(cluster);
        self
    }

    /// Adds the lifecycle's instance metrics.
    pub fn with_lifecycle(mut self, status: StatusBoard) -> Monitor {
        self.status = Some(status);
        self
    }

    /// Adds the web router's request counts and latencies.
    pub fn with_router(mut self, router: Arc<WebRouter>) -> Monitor {
        self.router = Some(router);
        self
    }

    /// Adds the metrics of volume backups (failed ones included).
    pub fn with_backups(mut self, backups: Arc<crate::backup::Backups>) -> Monitor {
        self.backups = Some(backups);
        self
    }

    /// An exporter's `describe` answer, asked once per plugin version.
    fn info(&self, plugin: &LoadedPlugin) -> Result<ExporterInfo, CallError> {
        let key = (plugin.name().to_string(), plugin.sha256.clone());
        if let Some(info) = self.infos.lock().get(&key) {
            return Ok(info.clone());
        }
        let info = ExporterPlugin(plugin).describe()?;
        self.infos.lock().insert(key, info.clone());
        Ok(info)
    }

    /// Samples of the kernel's own state: plugins and their calls, faults and quarantines; with
    /// the lifecycle, instances by state, readiness, restarts and reconciler passes.
    pub fn collect(&self) -> SampleBatch {
        let plugins = self.registry.list();
        let mut label_sets = Vec::with_capacity(plugins.len() + 1);
        label_sets.push(Vec::new());
        let (mut calls, mut failures, mut quarantined, mut enabled) =
            (vec![], vec![], vec![], vec![]);
        for p in &plugins {
            let set = label_sets.len() as u32;
            label_sets.push(vec![
                Label {
                    key: "plugin".into(),
                    value: p.name.clone(),
                },
                Label {
                    key: "kind".into(),
                    value: p.kind.to_string(),
                },
                Label {
                    key: "version".into(),
                    value: p.version.clone(),
                },
            ]);
            calls.push(Sample {
                label_set: set,
                value: p.health.calls as f64,
            });
            failures.push(Sample {
                label_set: set,
                value: p.health.failures as f64,
            });
            quarantined.push(Sample {
                label_set: set,
                value: f64::from(u8::from(p.health.quarantined)),
            });
            enabled.push(Sample {
                label_set: set,
                value: f64::from(u8::from(p.enabled)),
            });
        }
        let family = |name: &str, help: &str, kind, samples| MetricFamily {
            name: name.into(),
            help: help.into(),
            kind,
            samples,
        };
        let mut lifecycle = match &self.status {
            Some(board) => lifecycle::families(board, &mut label_sets),
            None => Vec::new(),
        };
        if let Some(router) = &self.router {
            lifecycle.extend(router.stats.families(&mut label_sets));
        }
        if let Some(backups) = &self.backups {
            lifecycle.extend(backups::families(backups, &mut label_sets));
        }
        if let Some(cluster) = &self.cluster {
            label_sets.push(vec![Label {
                key: "kernel".into(),
                value: cluster.kernel_id().into(),
            }]);
            let set = (label_sets.len() - 1) as u32;
            lifecycle.push(family(
                "lain_leader",
                "1 while this kernel (label `kernel`) is the cluster's leader.",
                MetricKind::Gauge,
                vec![Sample {
                    label_set: set,
                    value: f64::from(u8::from(cluster.is_leader())),
                }],
            ));
            lifecycle.push(family(
                "lain_fenced_writes_total",
                "Writes refused because this kernel had lost the leadership.",
                MetricKind::Counter,
                vec![Sample {
                    label_set: set,
                    value: cluster.fence().refused() as f64,
                }],
            ));
        }
        let mut batch = SampleBatch {
            timestamp_ms: crate::clock::unix_ms(),
            label_sets,
            families: vec![
                family(
                    "lain_kernel_uptime_seconds",
                    "Seconds since the kernel started.",
                    MetricKind::Gauge,
                    vec![Sample {
                        label_set: 0,
                        value: self.started.elapsed().as_secs_f64(),
                    }],
                ),
                family(
                    "lain_plugin_calls_total",
                    "Plugin calls made.",
                    MetricKind::Counter,
                    calls,
                ),
                family(
                    "lain_plugin_failures_total",
                    "Plugin calls that faulted (trap, budget, cap).",
                    MetricKind::Counter,
                    failures,
                ),
                family(
                    "lain_plugin_quarantined",
                    "1 if the plugin is quarantined.",
                    MetricKind::Gauge,
                    quarantined,
                ),
                family(
                    "lain_plugin_enabled",
                    "1 if the plugin is enabled.",
                    MetricKind::Gauge,
                    enabled,
                ),
            ],
        };
        batch.families.extend(lifecycle);
        batch
    }

    /// Whether `path` is one of the operator's pull paths.
    pub fn is_pull_path(&self, path: &str) -> bool {
        self.exporters
            .values()
            .any(|e| e.pull.as_deref() == Some(path))
    }

    /// The operator's pull paths: the routes the API serves exporters on.
    pub fn pull_paths(&self) -> Vec<String> {
        self.exporters
            .values()
            .filter_map(|e| e.pull.clone())
            .collect()
    }

    /// Encodes the current samples for the exporter the operator serves on `path`, if any.
    /// Blocking.
    pub fn scrape(&self, path: &str) -> Option<Scrape> {
        let (name, _) = self
            .exporters
            .iter()
            .find(|(_, e)| e.pull.as_deref() == Some(path))?;
        let plugin = self.plugin(name)?;
        let info = match self.info(&plugin) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!("monitoring exporter skipped: {e}");
                return None;
            }
        };
        match ExporterPlugin(&plugin).encode(&self.collect()) {
            Ok(body) => Some(Scrape {
                content_type: inert_content_type(&info.content_type),
                body,
            }),
            Err(e) => {
                tracing::warn!("monitoring exporter failed: {e}");
                None
            }
        }
    }

    /// Sends the current samples to every push exporter whose interval has come; call it every
    /// second. Failures are logged and dropped (exporters fail open).
    pub async fn push_due(&self, tick: u64) {
        for (name, exporter) in self.exporters.iter() {
            let Some(address) = exporter.push.clone() else {
                continue;
            };
            if exporter.interval == 0 || !tick.is_multiple_of(u64::from(exporter.interval)) {
                continue;
            }
            let Some(plugin) = self.plugin(name) else {
                continue;
            };
            let batch = self.collect();
            let wall = plugin.limits().wall();
            let encoded =
                within_wall_clock(wall, move || ExporterPlugin(&plugin).encode(&batch)).await;
            let body = match encoded {
                Ok(Ok(body)) => body,
                Ok(Err(e)) => {
                    tracing::warn!("monitoring exporter failed: {e}");
                    continue;
                }
                Err(cause) => {
                    tracing::warn!(exporter = %name, "monitoring exporter: {cause}");
                    continue;
                }
            };
            if let Err(e) = send(&address, &body).await {
                tracing::warn!(exporter = %name, %address, "push failed: {e}");
            }
        }
    }

    /// The enabled plugin `name`, if any.
    fn plugin(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        match self.registry.get(name) {
            Some(Ok(p)) => Some(p),
            _ => None,
        }
    }
}

/// An exporter's content type if it is a plain `type/subtype` (with parameters) that a browser
/// does not run or render as a document (no HTML, XML, SVG or script); else
/// `application/octet-stream`. The API also sends `X-Content-Type-Options: nosniff`.
pub fn inert_content_type(given: &str) -> String {
    let lower = given.trim().to_ascii_lowercase();
    let essence = lower.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    let well_formed = lower.len() <= 128
        && essence
            .split_once('/')
            .is_some_and(|(t, st)| token(t) && token(st))
        && lower
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " !#$&^_.+-/;=\"".contains(c));
    let active = ["html", "xml", "svg", "script", "pdf"]
        .iter()
        .any(|a| essence.contains(a));
    if well_formed && !active {
        lower
    } else {
        "application/octet-stream".into()
    }
}

async fn send(address: &str, body: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let timeout = Duration::from_secs(5);
    let mut stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tokio::time::timeout(timeout, stream.write_all(body))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::inert_content_type;

    #[test]
    fn only_inert_content_types_are_served() {
        for plain in [
            "text/plain; version=0.0.4; charset=utf-8",
            "application/openmetrics-text; version=1.0.0",
            "application/json",
        ] {
            assert_eq!(inert_content_type(plain), plain);
        }
        for active in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            "application/xhtml+xml",
            "image/svg+xml",
            "application/javascript",
            "text/plain\r\nSet-Cookie: a=b",
            "nonsense",
            "",
        ] {
            assert_eq!(
                inert_content_type(active),
                "application/octet-stream",
                "{active:?}"
            );
        }
    }
}
