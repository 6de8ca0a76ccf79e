//! The built-in `graphite` monitoring exporter (LAIN reference §monitoring: LAIN fed Graphite
//! through collectd): the Graphite plaintext protocol, pushed by the kernel to carbon. Where and
//! how often is the operator's `[monitor.exporters.graphite]` (`push`, `interval`) in the kernel
//! config; the address this plugin describes is only shown.

mod config;
mod plaintext;

use config::{Config, Settings};
use lain_sdk_guest::PluginError;
use lain_sdk_guest::monitor::*;

/// The plugin: its checked settings.
struct Graphite(Settings);

impl Exporter for Graphite {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        Ok(Graphite(config.check()?))
    }

    fn describe(&self) -> Result<ExporterInfo, PluginError> {
        Ok(ExporterInfo {
            delivery: Delivery::Push(PushTarget {
                address: self.0.address.clone().unwrap_or_default(),
                interval: self.0.interval,
            }),
            content_type: "text/plain".into(),
            summary: "Graphite plaintext protocol, pushed where the operator's [monitor.exporters.graphite] says".into(),
        })
    }

    fn encode(&mut self, batch: SampleBatch) -> Result<Vec<u8>, PluginError> {
        plaintext::encode(&batch, &self.0)
            .map(String::into_bytes)
            .map_err(PluginError::InvalidInput)
    }
}

lain_sdk_guest::export_exporter!(Graphite);
