//! Calls into monitoring-exporter plugins.

use super::{arg_v0_1, call_fallible, converted, is_v0_1, within_limit};
use crate::plugin::bindings::monitoring::{ExporterInfo, Guest, SampleBatch};
use crate::plugin::bindings::v0_1::monitoring::Guest as GuestV0_1;
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::LoadedPlugin;

/// A monitoring-exporter plugin.
pub struct ExporterPlugin<'a>(pub &'a LoadedPlugin);

impl ExporterPlugin<'_> {
    /// How its output is delivered, or why its configuration is unusable.
    pub fn describe(&self) -> Result<ExporterInfo, CallError> {
        if is_v0_1(self.0) {
            return call_fallible(
                self.0,
                "describe",
                None,
                |g: &GuestV0_1, s| converted(g.call_describe(s)),
                |r| within_limit(self.0, r),
            );
        }
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
        let check = |r: &Result<Vec<u8>, _>| match r {
            Ok(bytes) if bytes.len() as u64 > limit => Err(Cause::ResultTooLarge {
                bytes: bytes.len() as u64,
                limit,
            }),
            other => within_limit(self.0, &other.as_ref().err()),
        };
        if is_v0_1(self.0) {
            let old = arg_v0_1(self.0, "encode", batch)?;
            return call_fallible(
                self.0,
                "encode",
                None,
                |g: &GuestV0_1, s| {
                    let answer = g.call_encode(s, &old)?;
                    Ok(answer.map_err(crate::plugin::legacy::error_from_v0_1))
                },
                check,
            );
        }
        call_fallible(
            self.0,
            "encode",
            None,
            |g: &Guest, s| g.call_encode(s, batch),
            check,
        )
    }
}
