//! The built-in `prometheus` monitoring exporter: the Prometheus text exposition format 0.0.4,
//! served by the kernel on GET of the path the operator configures (`[monitor.exporters.prometheus]
//! pull`, default `/metrics`) for Prometheus to scrape; its own `path` is only shown.

mod config;
mod text;

use config::Config;
use lain_sdk_guest::PluginError;
use lain_sdk_guest::monitor::*;

/// MIME type of the text exposition format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The plugin: its checked configuration.
struct Prometheus(Config);

impl Exporter for Prometheus {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        config.check()?;
        Ok(Prometheus(config))
    }

    fn describe(&self) -> Result<ExporterInfo, PluginError> {
        Ok(ExporterInfo {
            delivery: Delivery::Pull(self.0.path.clone()),
            content_type: CONTENT_TYPE.into(),
            summary: format!("Prometheus text format 0.0.4, scraped at {}", self.0.path),
        })
    }

    fn encode(&mut self, batch: SampleBatch) -> Result<Vec<u8>, PluginError> {
        text::encode(&batch, self.0.timestamps)
            .map(String::into_bytes)
            .map_err(PluginError::InvalidInput)
    }
}

lain_sdk_guest::export_exporter!(Prometheus);
