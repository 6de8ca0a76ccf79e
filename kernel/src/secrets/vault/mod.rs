//! The encrypted store of secret files and its master keys.

use crate::store::{Store, StoreError, get_json, transact};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest secret file accepted.
pub const MAX_SECRET_BYTES: usize = 1 << 20;
/// Longest secret path accepted.
pub const MAX_PATH_BYTES: usize = 1024;

/// Why a vault operation failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The path is not an absolute, normal file path.
    #[error("invalid secret path `{path}`: {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The content is larger than [`MAX_SECRET_BYTES`].
    #[error("secret file is {size} bytes; at most {MAX_SECRET_BYTES} are accepted")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// No such secret.
    #[error("app `{app}` proc `{proc}` has no secret file `{path}`")]
    NotFound {
        /// App.
        app: String,
        /// Proc.
        proc: String,
        /// Path.
        path: String,
    },
    /// The ciphertext does not open: changed, moved, or under a key this kernel lacks.
    #[error(
        "secret `{path}` of `{app}/{proc}` does not decrypt (tampered, moved, or encrypted under key {key_id}, which is not loaded)"
    )]
    Tampered {
        /// App.
        app: String,
        /// Proc.
        proc: String,
        /// Path.
        path: String,
        /// The key it names.
        key_id: String,
    },
    /// The master key file cannot be read or written.
    #[error("master key {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// This kernel's master key is not the one the store's secrets are under.
    #[error(
        "master key {own} in {key_file} is not the cluster's master key {cluster} (recorded in the \
         state store at `{CLUSTER_KEY}`): every kernel on one store needs the same key. Copy the \
         key file of a kernel that holds key {cluster} to {key_file} (or, while a rotation to it \
         runs, to {next_file}) and start again"
    )]
    KeyMismatch {
        /// The id of this kernel's key.
        own: String,
        /// The id the store records.
        cluster: String,
        /// This kernel's key file.
        key_file: String,
        /// Where a rotation's next key is read from.
        next_file: String,
    },
    /// Another kernel rotated the master key to one this kernel does not hold.
    #[error(
        "the cluster's master key is now {cluster} (rotated through another kernel) and this \
         kernel holds {own} only: copy the new key file to {next_file}; until then this kernel \
         neither reads nor writes secrets"
    )]
    KeyNotProvisioned {
        /// The id of this kernel's key.
        own: String,
        /// The id the store records.
        cluster: String,
        /// Where the new key is read from.
        next_file: String,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The store key of the cluster's master key record ([`ClusterKey`]).
pub const CLUSTER_KEY: &str = "kernel/master-key";

/// Which master key the store's secrets are under: every kernel on the store must hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ClusterKey {
    /// The id of the key new secrets are sealed under.
    current: String,
    /// The key it replaced, while secrets may still be under it (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
}

/// One stored secret file, as kept in the store (never holds plaintext).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sealed {
    path: String,
    key_id: String,
    nonce: String,
    data: String,
    size: usize,
    updated_ms: i64,
}

/// What listings show of a secret: never its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretInfo {
    /// App.
    pub app: String,
    /// Proc.
    pub proc: String,
    /// Absolute path in the instance.
    pub path: String,
    /// Bytes of plaintext.
    pub size: usize,
    /// Milliseconds since the Unix epoch of the last write.
    pub updated_ms: i64,
    /// The master key it is encrypted under.
    pub key_id: String,
}

/// One master key.
struct MasterKey {
    id: String,
    key: LessSafeKey,
}

impl MasterKey {
    fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        let id = hex::encode(&sha2::Sha256::digest(bytes)[..6]);
        // 32 bytes is ChaCha20-Poly1305's key length, so this cannot fail.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("32-byte key"));
        MasterKey {
            id,
            key: LessSafeKey::new(unbound),
        }
    }
}

/// Secret files, encrypted under the master keys.
pub struct Vault {
    store: Arc<dyn Store>,
    key_file: PathBuf,
    keys: parking_lot::RwLock<Keyring>,
    rng: SystemRandom,
    /// Serialises rotations.
    rotating: parking_lot::Mutex<()>,
}

struct Keyring {
    current: String,
    by_id: HashMap<String, MasterKey>,
}

/// The file a rotation writes its new key to before it becomes the key file.
fn next_file(key_file: &Path) -> PathBuf {
    key_file.with_extension("next")
}

fn key_error(path: &Path, reason: impl ToString) -> SecretError {
    SecretError::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_key(path: &Path) -> Result<Option<MasterKey>, SecretError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_error(path, e)),
    };
    let bytes = hex::decode(text.trim()).map_err(|e| key_error(path, format!("not hex: {e}")))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| key_error(path, "must hold 32 bytes as 64 hex digits"))?;
    Ok(Some(MasterKey::from_bytes(&bytes)))
}

/// Writes a new random key to `path`, readable by its owner only.
fn write_new_key(path: &Path, rng: &SystemRandom) -> Result<MasterKey, SecretError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| key_error(path, "no randomness available"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| key_error(path, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_error(path, e))?;
    file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(path, e))?;
    Ok(MasterKey::from_bytes(&bytes))
}

/// Checks that `path` is absolute and normal: no `.`/`..`/empty components, no control
/// characters, not a directory.
pub fn check_path(path: &str) -> Result<(), SecretError> {
    let bad = |reason| {
        Err(SecretError::InvalidPath {
            path: path.escape_debug().to_string(),
            reason,
        })
    };
    if !path.starts_with('/') {
        return bad("it must be absolute, e.g. /lain/app/config/secret.yaml");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("it is longer than 1024 bytes");
    }
    if path.ends_with('/') {
        return bad("it names a directory");
    }
    if path.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    if path[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("it contains an empty, `.` or `..` component");
    }
    Ok(())
}

fn record_key(app: &str, proc: &str, path: &str) -> String {
    format!("secrets/{app}/{proc}/{}", hex::encode(path))
}

fn aad(app: &str, proc: &str, path: &str) -> Vec<u8> {
    format!("lain-secret\0{app}\0{proc}\0{path}").into_bytes()
}

impl Vault {
    /// Opens the vault on `store` with the master key in `key_file` (64 hex digits), creating a
    /// random one (mode 0600) if there is none. The store records the cluster's key id (the first
    /// kernel's): a kernel whose key differs is refused ([`SecretError::KeyMismatch`]), unless
    /// its `.next` file ([`Vault::next_key_file`]) holds the recorded key, i.e. a rotation ran
    /// through another kernel (or was cut short here): then this kernel takes that key and
    /// finishes the rotation.
    pub fn open(store: Arc<dyn Store>, key_file: &Path) -> Result<Vault, SecretError> {
        let rng = SystemRandom::new();
        let current = match read_key(key_file)? {
            Some(k) => k,
            None => write_new_key(key_file, &rng)?,
        };
        let mut by_id = HashMap::new();
        let current_id = current.id.clone();
        by_id.insert(current.id.clone(), current);
        let vault = Vault {
            store,
            key_file: key_file.to_path_buf(),
            keys: parking_lot::RwLock::new(Keyring {
                current: current_id.clone(),
                by_id,
            }),
            rng,
            rotating: parking_lot::Mutex::new(()),
        };
        let next = read_key(&next_file(key_file))?;
        let cluster = transact(&*vault.store, CLUSTER_KEY, |txn| {
            if let Some(cluster) = txn.get_json::<ClusterKey>(CLUSTER_KEY)? {
                return Ok::<_, SecretError>(Some(cluster));
            }
            // A store from before the record (or a new one): this key becomes the cluster's,
            // unless a rotation of that time was cut short, which finishes below.
            if next.is_none() {
                txn.put_json(
                    CLUSTER_KEY,
                    &ClusterKey {
                        current: current_id.clone(),
                        previous: None,
                    },
                )?;
            }
            Ok(None)
        })?;
        match (cluster, next) {
            (None, Some(next)) => {
                tracing::warn!("secrets: finishing an interrupted key rotation");
                vault.start_rotation(&next.id)?;
                vault.finish_rotation(next)?;
            }
            (None, None) => {}
            (Some(cluster), _) if cluster.current == current_id => {}
            (Some(cluster), Some(next)) if cluster.current == next.id => {
                tracing::warn!(key_id = %next.id, "secrets: the master key was rotated; taking the new key from the .next file");
                let _guard = vault.rotating.lock();
                vault.finish_rotation(next)?;
            }
            (Some(cluster), _) => {
                return Err(SecretError::KeyMismatch {
                    own: current_id,
                    cluster: cluster.current,
                    key_file: key_file.display().to_string(),
                    next_file: next_file(key_file).display().to_string(),
                });
            }
        }
        Ok(vault)
    }

    /// Where this kernel reads the next master key of a rotation from: `lain secret rotate-key`
    /// uses the key there (or writes a random one), and a kernel whose cluster rotated takes it.
    pub fn next_key_file(&self) -> PathBuf {
        next_file(&self.key_file)
    }

    /// Follows a rotation made through another kernel: when the store's key is not this
    /// kernel's current one, takes it from the `.next` file (and finishes the rotation), or says
    /// what to do. Returns the cluster's key id.
    fn follow(&self, cluster: &ClusterKey) -> Result<(), SecretError> {
        if cluster.current == self.key_id() {
            return Ok(());
        }
        let _guard = self.rotating.lock();
        if cluster.current == self.key_id() {
            return Ok(());
        }
        let next_path = next_file(&self.key_file);
        match read_key(&next_path)? {
            Some(next) if next.id == cluster.current => {
                tracing::info!(key_id = %next.id, "secrets: the master key was rotated through another kernel; taking the new key from the .next file");
                self.finish_rotation(next).map(|_| ())
            }
            _ => Err(SecretError::KeyNotProvisioned {
                own: self.key_id(),
                cluster: cluster.current.clone(),
                next_file: next_path.display().to_string(),
            }),
        }
    }

    /// The cluster's key record, followed ([`Vault::follow`]); read through `txn`, so the
    /// write of the caller commits only while it is still the cluster's key.
    fn cluster_key(&self, txn: &mut crate::store::Txn<'_>) -> Result<(), SecretError> {
        if let Some(cluster) = txn.get_json::<ClusterKey>(CLUSTER_KEY)? {
            self.follow(&cluster)?;
        }
        Ok(())
    }

    /// The id of the key new secrets are encrypted under.
    pub fn key_id(&self) -> String {
        self.keys.read().current.clone()
    }

    /// Stores `content` as `path` of `app`'s `proc`, replacing any previous content.
    pub fn put(
        &self,
        app: &str,
        proc: &str,
        path: &str,
        content: &[u8],
    ) -> Result<SecretInfo, SecretError> {
        check_path(path)?;
        if content.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge {
                size: content.len(),
            });
        }
        let key = record_key(app, proc, path);
        let now = crate::clock::unix_ms();
        // Sealed under the cluster's key, and written only while it still is (a rotation that
        // begins meanwhile makes this try again under the new key).
        transact(&*self.store, &key, |txn| {
            self.cluster_key(txn)?;
            let sealed = self.seal(app, proc, path, content, now)?;
            txn.put_json(&key, &sealed)?;
            Ok(info(app, proc, &sealed))
        })
    }

    /// The content of `path` of `app`'s `proc`.
    pub fn get(&self, app: &str, proc: &str, path: &str) -> Result<Vec<u8>, SecretError> {
        check_path(path)?;
        let sealed: Sealed =
            get_json(&*self.store, &record_key(app, proc, path))?.ok_or_else(|| {
                SecretError::NotFound {
                    app: app.into(),
                    proc: proc.into(),
                    path: path.into(),
                }
            })?;
        if !self.keys.read().by_id.contains_key(&sealed.key_id)
            && let Some(cluster) = get_json::<ClusterKey>(&*self.store, CLUSTER_KEY)?
            && cluster.current == sealed.key_id
        {
            self.follow(&cluster)?;
        }
        self.open_sealed(app, proc, &sealed)
    }

    /// The secrets of `app` (of one proc if given), without their contents.
    pub fn list(&self, app: &str, proc: Option<&str>) -> Result<Vec<SecretInfo>, SecretError> {
        let prefix = match proc {
            Some(p) => format!("secrets/{app}/{p}/"),
            None => format!("secrets/{app}/"),
        };
        let mut out = Vec::new();
        for (key, value) in self.store.list(&prefix)? {
            let Some(proc) = key
                .strip_prefix(&format!("secrets/{app}/"))
                .and_then(|r| r.split('/').next())
            else {
                continue;
            };
            let sealed: Sealed = serde_json::from_slice(&value)
                .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?;
            out.push(info(app, proc, &sealed));
        }
        out.sort_by(|a, b| (&a.proc, &a.path).cmp(&(&b.proc, &b.path)));
        Ok(out)
    }

    /// Removes `path` of `app`'s `proc`.
    pub fn remove(&self, app: &str, proc: &str, path: &str) -> Result<(), SecretError> {
        check_path(path)?;
        let key = record_key(app, proc, path);
        transact(&*self.store, &key, |txn| {
            if txn.get(&key)?.is_none() {
                return Err(SecretError::NotFound {
                    app: app.into(),
                    proc: proc.into(),
                    path: path.into(),
                });
            }
            txn.delete(&key);
            Ok(())
        })
    }

    /// Re-encrypts every secret under a new master key, which then replaces the key file;
    /// returns the new key id and how many secrets were re-encrypted. The new key is the one in
    /// the `.next` file ([`Vault::next_key_file`]) if the operator put one there (as on every
    /// other kernel of the cluster, which take it from there), else a new random one (fine for
    /// a single kernel). Secrets stay readable throughout (both keys are loaded until the end).
    pub fn rotate(&self) -> Result<(String, usize), SecretError> {
        let _guard = self.rotating.lock();
        let next_path = next_file(&self.key_file);
        let next = match read_key(&next_path)? {
            Some(next) if next.id != self.key_id() => next,
            _ => {
                let _ = std::fs::remove_file(&next_path);
                write_new_key(&next_path, &self.rng)?
            }
        };
        self.start_rotation(&next.id)?;
        self.finish_rotation(next)
    }

    /// Records `next` as the cluster's key, if this kernel's is still the cluster's: from now
    /// on every kernel seals under `next` (or refuses to write until it holds it).
    fn start_rotation(&self, next: &str) -> Result<(), SecretError> {
        let own = self.key_id();
        transact(&*self.store, CLUSTER_KEY, |txn| {
            if let Some(cluster) = txn.get_json::<ClusterKey>(CLUSTER_KEY)?
                && cluster.current != own
            {
                return Err(SecretError::KeyNotProvisioned {
                    own: own.clone(),
                    cluster: cluster.current,
                    next_file: next_file(&self.key_file).display().to_string(),
                });
            }
            txn.put_json(
                CLUSTER_KEY,
                &ClusterKey {
                    current: next.to_string(),
                    previous: Some(own.clone()),
                },
            )?;
            Ok(())
        })
    }

    /// Makes `next` (already in the `.next` file, and the cluster's key) current: re-encrypts
    /// what is still under another key, then renames. Each re-encryption is a compare-and-swap,
    /// so a secret written meanwhile (already under `next`) is never overwritten.
    fn finish_rotation(&self, next: MasterKey) -> Result<(String, usize), SecretError> {
        let id = next.id.clone();
        {
            let mut keys = self.keys.write();
            keys.by_id.insert(id.clone(), next);
            keys.current = id.clone();
        }
        let mut count = 0;
        for (key, _) in self.store.list("secrets/")? {
            let mut parts = key.splitn(4, '/').skip(1);
            let (Some(app), Some(proc)) = (parts.next(), parts.next()) else {
                continue;
            };
            count += transact(&*self.store, &key, |txn| {
                let Some(sealed) = txn.get_json::<Sealed>(&key)? else {
                    return Ok::<_, SecretError>(0);
                };
                if sealed.key_id == id {
                    return Ok(0);
                }
                let plain = self.open_sealed(app, proc, &sealed)?;
                let resealed = self.seal(app, proc, &sealed.path, &plain, sealed.updated_ms)?;
                txn.put_json(&key, &resealed)?;
                Ok(1)
            })?;
        }
        std::fs::rename(next_file(&self.key_file), &self.key_file)
            .map_err(|e| key_error(&self.key_file, e))?;
        self.keys.write().by_id.retain(|k, _| *k == id);
        tracing::info!(key_id = %id, re_encrypted = count, "secrets: master key rotated");
        Ok((id, count))
    }

    fn seal(
        &self,
        app: &str,
        proc: &str,
        path: &str,
        content: &[u8],
        updated_ms: i64,
    ) -> Result<Sealed, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| key_error(&self.key_file, "no randomness available"))?;
        let keys = self.keys.read();
        let key = keys
            .by_id
            .get(&keys.current)
            .ok_or_else(|| key_error(&self.key_file, "current key missing"))?;
        let mut data = content.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(app, proc, path)),
                &mut data,
            )
            .map_err(|_| key_error(&self.key_file, "encryption failed"))?;
        Ok(Sealed {
            path: path.to_string(),
            key_id: key.id.clone(),
            nonce: B64.encode(nonce),
            data: B64.encode(data),
            size: content.len(),
            updated_ms,
        })
    }

    fn open_sealed(&self, app: &str, proc: &str, sealed: &Sealed) -> Result<Vec<u8>, SecretError> {
        let tampered = || SecretError::Tampered {
            app: app.into(),
            proc: proc.into(),
            path: sealed.path.clone(),
            key_id: sealed.key_id.clone(),
        };
        let keys = self.keys.read();
        let key = keys.by_id.get(&sealed.key_id).ok_or_else(tampered)?;
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(tampered)?;
        let mut data = B64.decode(&sealed.data).map_err(|_| tampered())?;
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(app, proc, &sealed.path)),
                &mut data,
            )
            .map_err(|_| tampered())?;
        Ok(plain.to_vec())
    }
}

fn info(app: &str, proc: &str, sealed: &Sealed) -> SecretInfo {
    SecretInfo {
        app: app.into(),
        proc: proc.into(),
        path: sealed.path.clone(),
        size: sealed.size,
        updated_ms: sealed.updated_ms,
        key_id: sealed.key_id.clone(),
    }
}

#[cfg(test)]
mod tests;
