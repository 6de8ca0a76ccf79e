//! Unit tests of the vault: round trips, tampering, rotation and what it refuses.

use super::*;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Op, put_json};

fn vault(dir: &Path) -> (Arc<dyn Store>, Vault) {
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.join("state.redb")).expect("store"));
    let vault = Vault::open(store.clone(), &dir.join("keys/master.key")).expect("vault");
    (store, vault)
}

const PLAIN: &[u8] = b"password: hunter2-unique-plaintext";

#[test]
fn round_trip_never_stores_plaintext_and_lists_without_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vault) = vault(dir.path());
    let mode = std::fs::metadata(dir.path().join("keys/master.key"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("key file");
    assert_eq!(mode, 0o600);
    vault
        .put("shop", "web", "/lain/app/secret.yaml", PLAIN)
        .expect("put");
    assert_eq!(
        vault
            .get("shop", "web", "/lain/app/secret.yaml")
            .expect("get"),
        PLAIN
    );
    let listed = vault.list("shop", None).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, PLAIN.len());
    assert!(
        !serde_json::to_string(&listed)
            .expect("json")
            .contains("hunter2")
    );
    for (_, value) in store.list("").expect("all") {
        assert!(!String::from_utf8_lossy(&value).contains("hunter2"));
    }
    drop((store, vault));
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        assert!(
            !bytes.windows(7).any(|w| w == b"hunter2"),
            "plaintext in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn tampering_and_moving_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vault) = vault(dir.path());
    vault.put("shop", "web", "/a", PLAIN).expect("put");
    let key = record_key("shop", "web", "/a");
    let mut sealed: Sealed = get_json(&*store, &key).expect("get").expect("some");
    let mut data = B64.decode(&sealed.data).expect("b64");
    data[3] ^= 1;
    sealed.data = B64.encode(&data);
    store
        .apply(vec![put_json(&key, &sealed).expect("json")])
        .expect("write");
    assert!(matches!(
        vault.get("shop", "web", "/a"),
        Err(SecretError::Tampered { .. })
    ));
    // An intact ciphertext copied to another app does not open there either.
    vault.put("shop", "web", "/b", PLAIN).expect("put");
    let copied = store
        .get(&record_key("shop", "web", "/b"))
        .expect("get")
        .expect("some");
    store
        .apply(vec![Op::Put(record_key("bank", "web", "/b"), copied)])
        .expect("write");
    assert!(matches!(
        vault.get("bank", "web", "/b"),
        Err(SecretError::Tampered { .. })
    ));
}

#[test]
fn rotation_keeps_every_secret_readable_and_survives_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vault) = vault(dir.path());
    for i in 0..5 {
        vault
            .put(
                "shop",
                "web",
                &format!("/s/{i}"),
                format!("secret {i}").as_bytes(),
            )
            .expect("put");
    }
    let old = vault.key_id();
    let (new, count) = vault.rotate().expect("rotate");
    assert_ne!(old, new);
    assert_eq!(count, 5);
    for i in 0..5 {
        assert_eq!(
            vault.get("shop", "web", &format!("/s/{i}")).expect("get"),
            format!("secret {i}").as_bytes()
        );
    }
    assert!(
        vault
            .list("shop", None)
            .expect("list")
            .iter()
            .all(|s| s.key_id == new)
    );
    // A rotation cut short: a `.next` key exists and the store names it the cluster's key,
    // but the secrets are still under the old one. Opening again finishes the job.
    let key_file = dir.path().join("keys/master.key");
    drop(vault);
    let next = write_new_key(&next_file(&key_file), &SystemRandom::new()).expect("next");
    let next_id = next.id.clone();
    let switched = ClusterKey {
        current: next_id.clone(),
        previous: Some(new.clone()),
    };
    store
        .apply(vec![
            crate::store::put_json(CLUSTER_KEY, &switched).expect("json"),
        ])
        .expect("switch");
    let reopened = Vault::open(store.clone(), &key_file).expect("reopen");
    assert_eq!(reopened.key_id(), next_id);
    assert!(!next_file(&key_file).exists());
    assert_eq!(
        reopened.get("shop", "web", "/s/3").expect("get"),
        b"secret 3"
    );
}

#[test]
fn bad_paths_sizes_and_keys_are_refused_with_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vault) = vault(dir.path());
    for (path, why) in [
        ("relative/x", "absolute"),
        ("/a/../etc/passwd", "`..`"),
        ("/a//b", "empty"),
        ("/a/./b", "`.`"),
        ("/dir/", "directory"),
        ("/a\nb", "control"),
    ] {
        let e = vault.put("shop", "web", path, b"x").expect_err(path);
        assert!(e.to_string().contains(why), "{path}: {e}");
    }
    let big = vec![0u8; MAX_SECRET_BYTES + 1];
    assert!(matches!(
        vault.put("shop", "web", "/big", &big),
        Err(SecretError::TooLarge { .. })
    ));
    assert!(
        store.list("secrets/").expect("list").is_empty(),
        "nothing written"
    );
    assert!(matches!(
        vault.remove("shop", "web", "/none"),
        Err(SecretError::NotFound { .. })
    ));
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "not hex").expect("write");
    let e = Vault::open(store, &bad_key).err().expect("refused");
    assert!(
        e.to_string().contains("bad.key") && e.to_string().contains("hex"),
        "{e}"
    );
}

/// A second kernel on the same store: its own key file, `.next` beside it.
fn second(dir: &Path, store: &Arc<dyn Store>) -> Result<Vault, SecretError> {
    Vault::open(store.clone(), &dir.join("b/master.key"))
}

/// Copies kernel A's key file (and `.next`, when `next`) to kernel B's place.
fn copy_keys(dir: &Path, next: bool) {
    std::fs::create_dir_all(dir.join("b")).expect("dir");
    std::fs::copy(dir.join("keys/master.key"), dir.join("b/master.key")).expect("copy");
    if next {
        std::fs::copy(dir.join("keys/master.next"), dir.join("b/master.next")).expect("copy");
    }
}

#[test]
fn a_kernel_with_another_master_key_is_refused_naming_both_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, a) = vault(dir.path());
    let err = second(dir.path(), &store).err().expect("refused");
    let own = read_key(&dir.path().join("b/master.key"))
        .expect("read")
        .expect("some")
        .id;
    let message = err.to_string();
    assert!(matches!(err, SecretError::KeyMismatch { .. }), "{message}");
    assert!(
        message.contains(&own) && message.contains(&a.key_id()),
        "{message}"
    );
    assert!(message.contains("b/master.next"), "{message}");
    // With A's key it starts.
    std::fs::remove_file(dir.path().join("b/master.key")).expect("rm");
    copy_keys(dir.path(), false);
    assert_eq!(second(dir.path(), &store).expect("b").key_id(), a.key_id());
}

#[test]
fn a_rotation_through_one_kernel_is_followed_by_the_other_from_its_next_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, a) = vault(dir.path());
    copy_keys(dir.path(), false);
    let b = second(dir.path(), &store).expect("b");
    b.put("shop", "web", "/s/b", b"from b").expect("b put");
    // The operator provisions the next key on both kernels, then rotates through A.
    write_new_key(&a.next_key_file(), &SystemRandom::new()).expect("next");
    copy_keys(dir.path(), true);
    let (new, count) = a.rotate().expect("rotate");
    assert_eq!(count, 1);
    // B still holds the old key: it follows on its next read and write.
    assert_eq!(b.get("shop", "web", "/s/b").expect("b get"), b"from b");
    assert_eq!(b.key_id(), new);
    b.put("shop", "web", "/s/b2", b"after")
        .expect("b put after");
    assert_eq!(a.get("shop", "web", "/s/b2").expect("a reads b"), b"after");
    assert!(
        !b.next_key_file().exists(),
        "the next key became B's key file"
    );
    drop(b);
    assert_eq!(second(dir.path(), &store).expect("restart b").key_id(), new);
}

#[test]
fn a_kernel_without_the_new_key_refuses_to_write_and_says_where_it_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, a) = vault(dir.path());
    copy_keys(dir.path(), false);
    let b = second(dir.path(), &store).expect("b");
    let (new, _) = a.rotate().expect("rotate");
    let err = b.put("shop", "web", "/s/x", b"x").expect_err("refused");
    let message = err.to_string();
    assert!(
        matches!(err, SecretError::KeyNotProvisioned { .. }),
        "{message}"
    );
    assert!(
        message.contains(&new) && message.contains("b/master.next"),
        "{message}"
    );
    assert!(
        a.list("shop", None).expect("list").is_empty(),
        "nothing written"
    );
}

#[test]
fn a_write_racing_a_rotation_ends_under_the_new_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, a) = vault(dir.path());
    copy_keys(dir.path(), false);
    let b = second(dir.path(), &store).expect("b");
    write_new_key(&a.next_key_file(), &SystemRandom::new()).expect("next");
    copy_keys(dir.path(), true);
    // B seals under the old key; before its write commits, A rotates (and finds nothing to
    // re-encrypt yet). Without the condition on the cluster's key, B's secret would stay under
    // a key A no longer holds.
    let a = Arc::new(a);
    let rotating = a.clone();
    crate::store::cas::tests::interleave(move || {
        rotating.rotate().expect("rotate");
    });
    let info = b.put("shop", "web", "/s/race", b"raced").expect("b put");
    assert_eq!(info.key_id, a.key_id());
    assert_eq!(a.get("shop", "web", "/s/race").expect("a reads"), b"raced");
}
