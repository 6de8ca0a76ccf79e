//! Volumes as operators see them (`lain volume list`): each instance number's volume home (see
//! [`VolumeHome`]) with the size of its directories where this host holds them.

use super::records::{self, VolumeHome};
use super::{Lifecycle, LifecycleError, component};
use crate::store::{Expect, get_json, put_json};
use serde::Serialize;
use std::path::Path;

/// Entries (files, directories, links) counted per volume before the count stops.
const MAX_ENTRIES: u64 = 200_000;

/// One instance number's volumes.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct VolumeView {
    /// Where they live.
    #[serde(flatten)]
    pub home: VolumeHome,
    /// The proc's short name (`worker`).
    pub proc_name: String,
    /// Bytes of the regular files in them; none when this host does not hold them (a Docker
    /// node other than `local`) or they cannot be read.
    pub bytes: Option<u64>,
    /// Regular files in them.
    pub files: Option<u64>,
    /// False when the count stopped at its bound (the sizes are then a lower bound).
    pub complete: bool,
}

impl Lifecycle {
    /// The volumes of `app` (of every app when none), with their sizes where this host holds
    /// them: the process runtime's, and on Docker those of nodes at address `local`.
    pub fn volumes(&self, app: Option<&str>) -> Result<Vec<VolumeView>, LifecycleError> {
        if let Some(app) = app {
            self.app(app)?;
        }
        let local: Vec<String> = self
            .nodes()?
            .into_iter()
            .filter(|n| n.address == "local")
            .map(|n| n.name)
            .collect();
        let root = self.config.data_dir.join("volumes");
        let mut out = Vec::new();
        for home in self.records.volume_homes(app)? {
            let proc_name = home
                .proc
                .strip_prefix(&format!("{}.", home.app))
                .and_then(|rest| rest.split_once('.'))
                .map_or_else(|| home.proc.clone(), |(_, name)| name.to_string());
            let here = local.contains(&home.node);
            let dir = component("app", &home.app)
                .and_then(|a| Ok(root.join(a).join(component("proc", &proc_name)?)))
                .map(|d| d.join(home.number.to_string()));
            let (bytes, files, complete) = match dir {
                Ok(dir) if here => match measure(&dir) {
                    Some((b, f, c)) => (Some(b), Some(f), c),
                    None => (None, None, true),
                },
                _ => (None, None, true),
            };
            out.push(VolumeView {
                home,
                proc_name,
                bytes,
                files,
                complete,
            });
        }
        Ok(out)
    }
}

impl Lifecycle {
    /// The volume home of instance `no` of proc `proc` (full name) of `app`, if recorded.
    pub fn volume_home(
        &self,
        app: &str,
        proc: &str,
        no: u32,
    ) -> Result<Option<VolumeHome>, LifecycleError> {
        Ok(get_json(
            &*self.records.store,
            &records::volume_key(app, proc, no),
        )?)
    }

    /// Replaces the volume home `old` by `new` (same app, proc and number) if the store still
    /// holds `old`, and wakes the reconciler; a conflict when it changed meanwhile.
    pub fn replace_volume_home(
        &self,
        old: &VolumeHome,
        new: &VolumeHome,
    ) -> Result<(), LifecycleError> {
        let key = records::volume_key(&old.app, &old.proc, old.number);
        let current = self.records.store.get(&key)?;
        let same = current
            .as_deref()
            .and_then(|v| serde_json::from_slice::<VolumeHome>(v).ok())
            .is_some_and(|h| h == *old);
        let expect = [Expect {
            key: key.clone(),
            value: current,
        }];
        if !same
            || self
                .records
                .store
                .apply_if(&expect, vec![put_json(&key, new)?])?
                .is_none()
        {
            return Err(LifecycleError::Conflict(format!(
                "the volume home of {} instance {} changed meanwhile; try again",
                old.proc, old.number
            )));
        }
        self.records.wake();
        Ok(())
    }
}

/// Bytes and regular files under `dir` (symlinks are not followed), and whether the walk ended
/// before [`MAX_ENTRIES`]; none when `dir` cannot be read.
fn measure(dir: &Path) -> Option<(u64, u64, bool)> {
    let mut stack = vec![dir.to_path_buf()];
    let (mut bytes, mut files, mut seen) = (0u64, 0u64, 0u64);
    std::fs::read_dir(dir).ok()?;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return Some((bytes, files, false));
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    Some((bytes, files, true))
}
