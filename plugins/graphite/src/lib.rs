//! The built-in `graphite` monitoring exporter (LAIN spec §4.6: LAIN fed Graphite through
//! collectd): the Graphite plaintext protocol, pushed by the kernel to carbon every `interval`
//! seconds.

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
                address: self.0.address.clone(),
                interval: self.0.interval,
            }),
            content_type: "text/plain".into(),
            summary: format!(
                "Graphite plaintext protocol, pushed to {} every {} s",
                self.0.address, self.0.interval
            ),
        })
    }

    fn encode(&mut self, batch: SampleBatch) -> Result<Vec<u8>, PluginError> {
        plaintext::encode(&batch, &self.0)
            .map(String::into_bytes)
            .map_err(PluginError::InvalidInput)
    }
}

lain_sdk_guest::export_exporter!(Graphite);
