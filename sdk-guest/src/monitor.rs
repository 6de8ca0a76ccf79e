//! Monitoring exporters: how collected samples leave the platform.
//!
//! The exporter only encodes; the kernel serves the bytes (pull) or sends them (push) where the
//! operator's `[monitor.exporters.<name>]` says. What `describe` says about the delivery (a path,
//! an address) is never used: a plugin cannot open a route or make the kernel connect anywhere.
//!
//! A complete exporter that writes one `name{labels} value` line per sample:
//!
//! ```no_run
//! use lain_sdk_guest::monitor::*;
//! use lain_sdk_guest::PluginError;
//!
//! struct Lines;
//!
//! impl Exporter for Lines {
//!     type Config = serde_json::Value;
//!     fn new(_: serde_json::Value) -> Result<Self, PluginError> { Ok(Lines) }
//!     fn describe(&self) -> Result<ExporterInfo, PluginError> {
//!         Ok(ExporterInfo { delivery: Delivery::Pull("/metrics/lines".into()), content_type: "text/plain".into(), summary: "one line per sample".into() })
//!     }
//!     fn encode(&mut self, batch: SampleBatch) -> Result<Vec<u8>, PluginError> {
//!         let mut out = String::new();
//!         for f in &batch.families {
//!             for s in &f.samples {
//!                 let labels = &batch.label_sets[s.label_set as usize];
//!                 let l: Vec<String> = labels.iter().map(|l| format!("{}={}", l.key, l.value)).collect();
//!                 out.push_str(&format!("{}{{{}}} {}\n", f.name, l.join(","), s.value));
//!             }
//!         }
//!         Ok(out.into_bytes())
//!     }
//! }
//!
//! lain_sdk_guest::export_exporter!(Lines);
//! ```

pub use crate::bindings::monitor_exporter::exports::lain::plugin::monitoring::{
    Delivery, ExporterInfo, MetricFamily, MetricKind, PushTarget, Sample, SampleBatch,
};

use crate::PluginError;

/// A monitoring exporter. Implement it and export it with [`export_exporter!`](crate::export_exporter).
pub trait Exporter: Sized + 'static {
    /// The plugin's configuration, deserialised from its effective JSON configuration.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin from its configuration. Called once per component instance.
    fn new(config: Self::Config) -> Result<Self, PluginError>;

    /// How the encoded bytes are delivered, their MIME type and a summary.
    fn describe(&self) -> Result<ExporterInfo, PluginError>;

    /// Encodes one batch.
    fn encode(&mut self, batch: SampleBatch) -> Result<Vec<u8>, PluginError>;
}

/// Exports an [`Exporter`] implementation as the component's `monitoring` interface and embeds the
/// crate's `lain-plugin.toml` as its manifest.
#[macro_export]
macro_rules! export_exporter {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::monitor_exporter::exports::lain::plugin::monitoring as __raw;
            use $crate::monitor::Exporter as _;
            $crate::__embed_manifest!();
            $crate::__plugin_cell!($ty, $crate::monitor::Exporter);

            struct __LainExporter;

            impl __raw::Guest for __LainExporter {
                fn describe() -> Result<__raw::ExporterInfo, $crate::PluginError> {
                    __lain_with(|p| p.describe())?
                }
                fn encode(batch: __raw::SampleBatch) -> Result<Vec<u8>, $crate::PluginError> {
                    __lain_with(move |p| p.encode(batch))?
                }
            }

            $crate::bindings::monitor_exporter::__export_monitor_exporter_world!(__LainExporter);
        };
    };
}
