//! Calls into monitoring-exporter plugins.

use super::{call_fallible, within_limit};
use crate::plugin::bindings::monitoring::{ExporterInfo, Guest, SampleBatch};
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::LoadedPlugin;

/// A monitoring-exporter plugin.
pub struct ExporterPlugin<'a>(pub &'a LoadedPlugin);

impl ExporterPlugin<'_> {
    /// How its output is delivered, or why its configuration is unusable.
    pub fn describe(&self) -> Result<ExporterInfo, CallError> {
        call_fallible(
            self.0,
            "describe",
            None,
            |g: &Guest, s| g.call_describe(s),
            |r| within_limit(self.0, r),
        )
    }

    /// Encodes a batch of samples.
    pub fn encode(&self, batch: &SampleBatch) -> Result<Vec<u8>, CallError> {
        let limit = self.0.limits().max_result_bytes;
        call_fallible(
            self.0,
            "encode",
            None,
            |g: &Guest, s| g.call_encode(s, batch),
            |r| match r {
                Ok(bytes) if bytes.len() as u64 > limit => Err(Cause::ResultTooLarge {
                    bytes: bytes.len() as u64,
                    limit,
                }),
                other => within_limit(self.0, &other.as_ref().err()),
            },
        )
    }
}
