//! The lifecycle's records in the state store: reading apps, releases and nodes, and writing an
//! app record (compare-and-swap, see [`crate::store::cas`]) or a node's state. Shared by
//! the lifecycle's operations and the reconciler, which hold clones of one [`Records`].

use super::LifecycleError;
use super::records::{self, AppRecord, NodeRecord, NodeState, ReleaseRecord, VolumeHome};
use crate::store::{Store, StoreError, get_json, put_json, transact};
use std::sync::Arc;

/// A handle on the lifecycle's records; clones share the write lock and the reconciler's wake-up.
#[derive(Clone)]
pub struct Records {
    /// The state store.
    pub(super) store: Arc<dyn Store>,
    /// Serialises read-modify-write of app records within this kernel.
    writes: Arc<parking_lot::Mutex<()>>,
    /// Wakes the reconciler after a change.
    wake: Arc<tokio::sync::Notify>,
}

impl Records {
    /// Records in `store`; a change wakes `wake`.
    pub fn new(store: Arc<dyn Store>, wake: Arc<tokio::sync::Notify>) -> Records {
        Records {
            store,
            writes: Arc::default(),
            wake,
        }
    }

    /// Wakes the reconciler (after a change it should act on).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What wakes the reconciler.
    pub fn wake_handle(&self) -> &Arc<tokio::sync::Notify> {
        &self.wake
    }

    /// Holds the write lock of app records until the guard drops.
    pub(super) fn lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.writes.lock()
    }

    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<AppRecord>, LifecycleError> {
        list(&*self.store, records::APPS)
    }

    /// App `name`.
    pub fn app(&self, name: &str) -> Result<AppRecord, LifecycleError> {
        get_json(&*self.store, &records::app_key(name))?
            .ok_or_else(|| LifecycleError::NotFound(format!("no app named `{name}`")))
    }

    /// The releases of `app`, oldest first.
    pub fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>, LifecycleError> {
        let mut out: Vec<ReleaseRecord> =
            list(&*self.store, &format!("{}{app}/", records::RELEASES))?;
        out.sort_by(|a, b| {
            (a.created_at, a.built_ms, &a.version).cmp(&(b.created_at, b.built_ms, &b.version))
        });
        Ok(out)
    }

    /// Release `version` of `app`.
    pub fn release(&self, app: &str, version: &str) -> Result<ReleaseRecord, LifecycleError> {
        get_json(&*self.store, &records::release_key(app, version))?.ok_or_else(|| {
            LifecycleError::NotFound(format!("app `{app}` has no release `{version}`"))
        })
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, LifecycleError> {
        list(&*self.store, records::NODES)
    }

    /// Sets a node's state (the reconciler marks unreachable nodes down); a node that is gone
    /// is left gone.
    pub fn set_node_state(&self, name: &str, state: NodeState) -> Result<(), LifecycleError> {
        let key = records::node_key(name);
        transact(&*self.store, &key, |txn| {
            if let Some(mut node) = txn.get_json::<NodeRecord>(&key)? {
                node.state = state;
                txn.put_json(&key, &node)?;
            }
            Ok::<_, LifecycleError>(())
        })
    }

    /// Every recorded volume home (see [`VolumeHome`]), of app `app` only when given.
    pub fn volume_homes(&self, app: Option<&str>) -> Result<Vec<VolumeHome>, LifecycleError> {
        let prefix = match app {
            Some(app) => format!("{}{app}/", records::VOLUMES),
            None => records::VOLUMES.to_string(),
        };
        list(&*self.store, &prefix)
    }

    /// Records `home` unless its instance number has one already (a home never moves by
    /// itself); returns whether it was recorded.
    pub fn record_volume_home(&self, home: &VolumeHome) -> Result<bool, LifecycleError> {
        let key = records::volume_key(&home.app, &home.proc, home.number);
        let absent = crate::store::Expect {
            key: key.clone(),
            value: None,
        };
        Ok(self
            .store
            .apply_if(&[absent], vec![put_json(&key, home)?])?
            .is_some())
    }

    /// Reads app `app`, lets `change` modify it and writes it back if nobody changed it
    /// meanwhile (another kernel on the same etcd included; else `change` runs again on the
    /// fresh record), then wakes the reconciler.
    pub fn update_app(
        &self,
        app: &str,
        mut change: impl FnMut(&mut AppRecord) -> Result<(), LifecycleError>,
    ) -> Result<AppRecord, LifecycleError> {
        let _guard = self.lock();
        let key = records::app_key(app);
        let record = transact(&*self.store, &key, |txn| {
            let mut record: AppRecord = txn
                .get_json(&key)?
                .ok_or_else(|| LifecycleError::NotFound(format!("no app named `{app}`")))?;
            change(&mut record)?;
            txn.put_json(&key, &record)?;
            Ok::<_, LifecycleError>(record)
        })?;
        self.wake();
        Ok(record)
    }
}

/// Every value under `prefix`, parsed.
fn list<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<T>, LifecycleError> {
    let mut out = Vec::new();
    for (key, value) in store.list(prefix)? {
        out.push(
            serde_json::from_slice(&value)
                .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cas::tests::{interleave, store};

    #[test]
    fn an_app_change_overtaken_by_another_kernel_keeps_both() {
        let (_dir, store) = store();
        let records = Records::new(store.clone(), Arc::default());
        store
            .apply(vec![
                put_json(&records::app_key("shop"), &AppRecord::new("shop", 0)).expect("json"),
            ])
            .expect("put");
        // Another kernel: its own Records on the same store.
        let other = Records::new(store.clone(), Arc::default());
        interleave(move || {
            other
                .update_app("shop", |r| {
                    r.scale.entry("web".into()).or_default().cpu = Some(100);
                    Ok(())
                })
                .expect("other");
        });
        let mut runs = 0;
        let record = records
            .update_app("shop", |r| {
                runs += 1;
                r.scale.entry("worker".into()).or_default().cpu = Some(200);
                Ok(())
            })
            .expect("update");
        assert_eq!(runs, 2, "the change ran again on the fresh record");
        let stored = records.app("shop").expect("app");
        assert_eq!(
            stored.scale["web"].cpu,
            Some(100),
            "the other change is kept"
        );
        assert_eq!(stored.scale["worker"].cpu, Some(200));
        assert_eq!(
            record.scale["web"].cpu,
            Some(100),
            "the result is the record written"
        );
    }
}
