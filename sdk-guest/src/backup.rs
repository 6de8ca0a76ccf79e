//! Backup hooks: what a volume backup includes and excludes, and what runs before and after it.
//!
//! During [`BackupHook::plan`] the instance's volume is readable at [`VOLUME_ROOT`] with
//! `std::fs`; nothing else of the host is.
//!
//! A complete hook that backs up everything but `*.tmp` files:
//!
//! ```no_run
//! use lain_sdk_guest::backup::*;
//! use lain_sdk_guest::PluginError;
//!
//! struct NoTmp;
//!
//! impl BackupHook for NoTmp {
//!     type Config = serde_json::Value;
//!     fn new(_: serde_json::Value) -> Result<Self, PluginError> { Ok(NoTmp) }
//!     fn plan(&mut self, job: BackupJob) -> Result<BackupPlan, PluginError> {
//!         let mut exclude = Vec::new();
//!         for entry in std::fs::read_dir(VOLUME_ROOT).map_err(|e| PluginError::Other(e.to_string()))? {
//!             let name = entry.map_err(|e| PluginError::Other(e.to_string()))?.file_name().to_string_lossy().into_owned();
//!             if name.ends_with(".tmp") { exclude.push(name) }
//!         }
//!         Ok(BackupPlan {
//!             pre_run: job.policy.pre_run.map(|c| c.split_whitespace().map(String::from).collect()),
//!             include_paths: vec![".".into()],
//!             exclude_paths: exclude,
//!             post_run: job.policy.post_run.map(|c| c.split_whitespace().map(String::from).collect()),
//!         })
//!     }
//! }
//!
//! lain_sdk_guest::export_backup_hook!(NoTmp);
//! ```

pub use crate::bindings::backup_hook::exports::lain::plugin::backup::{
    BackupJob, BackupMode, BackupOutcome, BackupPlan,
};

use crate::PluginError;

/// Where the volume being backed up is visible to the plugin during `plan`.
pub const VOLUME_ROOT: &str = "/volume";

/// A backup hook. Implement it and export it with [`export_backup_hook!`](crate::export_backup_hook).
pub trait BackupHook: Sized + 'static {
    /// The plugin's configuration, deserialised from its effective JSON configuration.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin from its configuration. Called once per component instance.
    fn new(config: Self::Config) -> Result<Self, PluginError>;

    /// Plans one backup.
    fn plan(&mut self, job: BackupJob) -> Result<BackupPlan, PluginError>;

    /// Told after the backup ended. The default does nothing.
    fn finished(&mut self, _job: BackupJob, _outcome: BackupOutcome) -> Result<(), PluginError> {
        Ok(())
    }
}

/// Exports a [`BackupHook`] implementation as the component's `backup` interface and embeds the
/// crate's `lain-plugin.toml` as its manifest.
#[macro_export]
macro_rules! export_backup_hook {
    ($ty:ty) => {
        const _: () = {
            use $crate::backup::BackupHook as _;
            use $crate::bindings::backup_hook::exports::lain::plugin::backup as __raw;
            $crate::__embed_manifest!();
            $crate::__plugin_cell!($ty, $crate::backup::BackupHook);

            struct __LainBackupHook;

            impl __raw::Guest for __LainBackupHook {
                fn plan(job: __raw::BackupJob) -> Result<__raw::BackupPlan, $crate::PluginError> {
                    __lain_with(move |p| p.plan(job))?
                }
                fn finished(
                    job: __raw::BackupJob,
                    outcome: __raw::BackupOutcome,
                ) -> Result<(), $crate::PluginError> {
                    __lain_with(move |p| p.finished(job, outcome))?
                }
            }

            $crate::bindings::backup_hook::__export_backup_hook_world!(__LainBackupHook);
        };
    };
}
