//! One property suite for the state store, run against both backends: the embedded redb store
//! on a temp dir, and the etcd store on a real etcd that each test starts on free loopback
//! ports (`etcd` from Debian's etcd-server; `scripts/setup` installs it). Each property is one
//! test per backend. The etcd half is compiled with the `etcd` feature (on by default).

#[cfg(feature = "etcd")]
mod etcd_server;
mod properties;

#[cfg(feature = "etcd")]
use etcd_server::EtcdServer;
use lain::store::embedded::EmbeddedStore;
#[cfg(feature = "etcd")]
use lain::store::etcd::EtcdStore;
#[cfg(feature = "etcd")]
use lain::store::{Op, Store};
use properties::{Backend, TestResult};
use std::path::PathBuf;

/// The embedded store in a temp dir.
struct Embedded {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Embedded {
    fn new() -> Result<Embedded, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.redb");
        Ok(Embedded { _dir: dir, path })
    }
}

impl Backend for Embedded {
    type Store = EmbeddedStore;

    fn open(&self) -> TestResult<EmbeddedStore> {
        Ok(EmbeddedStore::open(&self.path)?)
    }

    fn compact(store: &EmbeddedStore, through: u64) -> TestResult {
        Ok(store.compact(through)?)
    }
}

/// The etcd store on a private etcd server.
#[cfg(feature = "etcd")]
struct Etcd {
    server: EtcdServer,
}

#[cfg(feature = "etcd")]
impl Etcd {
    fn new() -> Result<Etcd, Box<dyn std::error::Error>> {
        Ok(Etcd {
            server: EtcdServer::start()?,
        })
    }
}

#[cfg(feature = "etcd")]
impl Backend for Etcd {
    type Store = EtcdStore;

    fn open(&self) -> TestResult<EtcdStore> {
        Ok(EtcdStore::connect(
            std::slice::from_ref(&self.server.endpoint),
            "/lain/",
        )?)
    }

    fn compact(store: &EtcdStore, through: u64) -> TestResult {
        Ok(store.compact(through)?)
    }
}

/// One `#[test]` per property for a backend.
macro_rules! suite {
    ($module:ident, $backend:ident, [$($property:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $property() -> TestResult {
                    properties::$property(&$backend::new()?)
                }
            )*
        }
    };
}

macro_rules! both {
    ($($property:ident),* $(,)?) => {
        suite!(embedded, Embedded, [$($property),*]);
        #[cfg(feature = "etcd")]
        suite!(etcd, Etcd, [$($property),*]);
    };
}

both!(
    atomic_multi_key_writes,
    listing_by_prefix,
    revisions_increase_by_one_per_apply,
    deletes,
    watch_from_now,
    watch_from_a_past_revision,
    watch_from_a_compacted_revision_fails,
    values_up_to_one_mebibyte,
    concurrent_appliers_never_lose_a_write,
    writes_are_durable,
    usable_from_tokio_through_spawn_blocking,
    compare_and_set_writes_only_what_was_decided_on,
);

/// Two stores with different key prefixes share one etcd without seeing each other's keys.
#[cfg(feature = "etcd")]
#[test]
fn etcd_key_prefixes_isolate_stores() -> TestResult {
    let server = EtcdServer::start()?;
    let endpoints = [server.endpoint.clone()];
    let one = EtcdStore::connect(&endpoints, "/one/")?;
    let two = EtcdStore::connect(&endpoints, "/two/")?;
    let watch = two.watch("", two.revision()?)?;
    one.apply(vec![Op::Put("k".into(), b"1".to_vec())])?;
    let rev = two.apply(vec![Op::Put("k".into(), b"2".to_vec())])?;
    assert_eq!(one.get("k")?.as_deref(), Some(&b"1"[..]));
    assert_eq!(two.list("")?, [("k".to_string(), b"2".to_vec())]);
    let change = watch.recv_timeout(properties::WAIT)?;
    assert_eq!(change.map(|c| c.revision), Some(rev));
    Ok(())
}

/// Connecting to an etcd that is not there fails with an error instead of hanging.
#[cfg(feature = "etcd")]
#[test]
fn etcd_connect_to_nothing_fails() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let endpoint = format!("http://127.0.0.1:{unused}");
    assert!(EtcdStore::connect(&[endpoint], "/lain/").is_err());
}
