//! Monitoring: the kernel's own metrics, encoded by monitoring-exporter plugins.
//!
//! Exporters only encode; the kernel delivers. A `pull` exporter's bytes are served on its path
//! (e.g. `GET /metrics`); a `push` exporter's bytes are sent over TCP to its address every interval.
//! Exporters fail open: a failing exporter loses its own output and nothing else.

use crate::plugin::bindings::monitoring::{
    Delivery, ExporterInfo, MetricFamily, MetricKind, Sample, SampleBatch,
};
use crate::plugin::bindings::types::Label;
use crate::plugin::kinds::monitor::ExporterPlugin;
use crate::plugin::limits::within_wall_clock;
use crate::plugin::registry::Registry;
use crate::plugin::{CallError, LoadedPlugin};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod lifecycle;

use crate::lifecycle::view::StatusBoard;
use crate::router::WebRouter;

/// The kernel's metrics and its exporters.
#[derive(Clone)]
pub struct Monitor {
    registry: Arc<Registry>,
    exporters: Vec<String>,
    started: Instant,
    /// Each exporter's `describe` answer, by plugin name and content hash: it only changes
    /// with the plugin, and the push loop would otherwise ask every second.
    infos: Arc<parking_lot::Mutex<HashMap<(String, String), ExporterInfo>>>,
    /// The lifecycle's status, for instance metrics.
    status: Option<StatusBoard>,
    /// The web router, for request metrics.
    router: Option<Arc<WebRouter>>,
}

/// One pull endpoint's response.
pub struct Scrape {
    /// MIME type.
    pub content_type: String,
    /// Encoded samples.
    pub body: Vec<u8>,
}

impl Monitor {
    /// A monitor using the named exporters.
    pub fn new(registry: Arc<Registry>, exporters: Vec<String>) -> Monitor {
        Monitor {
            registry,
            exporters,
            started: Instant::now(),
            infos: Default::default(),
            status: None,
            router: None,
        }
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

    /// Encodes the current samples for the pull exporter serving `path`, if any. Blocking.
    pub fn scrape(&self, path: &str) -> Option<Scrape> {
        for plugin in self.plugins() {
            let exporter = ExporterPlugin(&plugin);
            let info = match self.info(&plugin) {
                Ok(info) => info,
                Err(e) => {
                    tracing::warn!("monitoring exporter skipped: {e}");
                    continue;
                }
            };
            if !matches!(&info.delivery, Delivery::Pull(p) if p == path) {
                continue;
            }
            match exporter.encode(&self.collect()) {
                Ok(body) => {
                    return Some(Scrape {
                        content_type: info.content_type,
                        body,
                    });
                }
                Err(e) => tracing::warn!("monitoring exporter failed: {e}"),
            }
        }
        None
    }

    /// Sends the current samples to every push exporter whose interval has come; call it every
    /// second. Failures are logged and dropped (exporters fail open).
    pub async fn push_due(&self, tick: u64) {
        let wall = self.registry.engine().limits().wall();
        for plugin in self.plugins() {
            let name = plugin.name().to_string();
            let batch = self.collect();
            let monitor = self.clone();
            let due =
                within_wall_clock(wall, move || monitor.encode_if_due(&plugin, &batch, tick)).await;
            let (address, body) = match due {
                Ok(Ok(Some(due))) => due,
                Ok(Ok(None)) => continue,
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

    /// The push address and encoded batch of a push exporter whose interval has come at `tick`.
    fn encode_if_due(
        &self,
        plugin: &LoadedPlugin,
        batch: &SampleBatch,
        tick: u64,
    ) -> Result<Option<(String, Vec<u8>)>, CallError> {
        match self.info(plugin)?.delivery {
            Delivery::Push(t) if t.interval > 0 && tick.is_multiple_of(u64::from(t.interval)) => {
                Ok(Some((t.address, ExporterPlugin(plugin).encode(batch)?)))
            }
            _ => Ok(None),
        }
    }

    fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        self.exporters
            .iter()
            .filter_map(|name| match self.registry.get(name) {
                Some(Ok(p)) => Some(p),
                _ => None,
            })
            .collect()
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
