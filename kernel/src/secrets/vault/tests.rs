//! Unit tests of the vault: round trips, tampering, rotation and what it refuses.

use super::*;
use crate::store::embedded::EmbeddedStore;

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
    // A rotation cut short: a `.next` key exists and some secrets are under it. Opening
    // again finishes the job.
    let key_file = dir.path().join("keys/master.key");
    drop(vault);
    let next = write_new_key(&next_file(&key_file), &SystemRandom::new()).expect("next");
    let next_id = next.id.clone();
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
