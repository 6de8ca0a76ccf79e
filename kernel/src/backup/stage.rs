//! A restore into a volume: the snapshot is restored (verified) into a staging directory beside
//! the volume, then swapped in its place, so the volume is never half restored.

use super::{BackupError, Backups};
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// A restored tree staged beside a volume directory.
pub(super) struct Staged {
    /// The volume directory.
    dir: PathBuf,
    /// The restored tree.
    staging: PathBuf,
    /// Where the volume's previous tree goes until it is removed.
    old: PathBuf,
}

impl Backups {
    /// Restores `snapshot` of backup `id` (verified against its hashes) into a staging
    /// directory beside volume directory `dir`; without a snapshot (a backup that found
    /// nothing to include) the staged tree is empty. Leftovers of an earlier attempt go first.
    pub(super) async fn stage(
        &self,
        id: u64,
        snapshot: Option<&str>,
        dir: &Path,
    ) -> Result<Staged, BackupError> {
        let parent = dir
            .parent()
            .ok_or_else(|| BackupError::Invalid("a volume has no parent directory".into()))?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let staged = Staged {
            dir: dir.to_path_buf(),
            staging: parent.join(format!(".lain-restore-{id}")),
            old: parent.join(format!(".lain-replaced-{id}")),
        };
        for leftover in [&staged.staging, &staged.old] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover)
                    .with_context(|| format!("cannot remove {}", leftover.display()))?;
            }
        }
        if let Some(snapshot) = snapshot {
            let (restic, snapshot, stage) = (
                self.restic.clone(),
                snapshot.to_string(),
                staged.staging.clone(),
            );
            tokio::task::spawn_blocking(move || restic.restore(&snapshot, &stage))
                .await
                .map_err(|e| BackupError::Internal(e.into()))??;
        }
        std::fs::create_dir_all(&staged.staging)
            .with_context(|| format!("cannot create {}", staged.staging.display()))?;
        Ok(staged)
    }
}

impl Staged {
    /// Puts the restored tree in place of the volume's, the volume's aside: in one step
    /// (`renameat2` with `RENAME_EXCHANGE`) where the file system allows, so that the volume
    /// directory never goes missing, else in two renames.
    pub(super) fn swap(&self) -> anyhow::Result<()> {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        if self.dir.exists()
            && renameat_with(CWD, &self.staging, CWD, &self.dir, RenameFlags::EXCHANGE).is_ok()
        {
            return std::fs::rename(&self.staging, &self.old).with_context(|| {
                format!("cannot move the replaced tree to {}", self.old.display())
            });
        }
        if self.dir.exists() {
            std::fs::rename(&self.dir, &self.old)
                .with_context(|| format!("cannot move {} aside", self.dir.display()))?;
        }
        std::fs::rename(&self.staging, &self.dir)
            .with_context(|| format!("cannot move the restored tree to {}", self.dir.display()))
    }

    /// Removes the previous tree.
    pub(super) async fn clean(self) {
        if self.old.exists() {
            let old = self.old;
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(old)).await;
        }
    }
}
