//! Calls into monitoring-exporter plugins.

use super::{within_limit, wrong_kind};
use crate::plugin::bindings::monitoring::{ExporterInfo, SampleBatch};
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::{Exports, LoadedPlugin};

/// A monitoring-exporter plugin.
pub struct ExporterPlugin<'a>(pub &'a LoadedPlugin);

impl ExporterPlugin<'_> {
    /// How its output is delivered, or why its configuration is unusable.
    pub fn describe(&self) -> Result<ExporterInfo, CallError> {
        let Exports::MonitorExporter(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "describe"));
        };
        let answer = self.0.call(
            "describe",
            None,
            |store, instance, _| idx.load(&mut *store, instance)?.call_describe(&mut *store),
            |r| within_limit(self.0, r),
        )?;
        answer.map_err(|e| self.0.error("describe", Cause::Guest(e)))
    }

    /// Encodes a batch of samples.
    pub fn encode(&self, batch: &SampleBatch) -> Result<Vec<u8>, CallError> {
        let Exports::MonitorExporter(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "encode"));
        };
        let limit = self.0.limits().max_result_bytes;
        let answer = self.0.call(
            "encode",
            None,
            |store, instance, _| {
                idx.load(&mut *store, instance)?
                    .call_encode(&mut *store, batch)
            },
            |r| match r {
                Ok(bytes) if bytes.len() as u64 > limit => Err(Cause::ResultTooLarge {
                    bytes: bytes.len() as u64,
                    limit,
                }),
                other => within_limit(self.0, &other.as_ref().err()),
            },
        )?;
        answer.map_err(|e| self.0.error("encode", Cause::Guest(e)))
    }
}
