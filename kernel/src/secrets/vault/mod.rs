//! The encrypted store of secret files and its master keys.

use crate::store::{Op, Store, StoreError, get_json, put_json};
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
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// random one (mode 0600) if there is none. A rotation interrupted by a crash is finished.
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
                current: current_id,
                by_id,
            }),
            rng,
            rotating: parking_lot::Mutex::new(()),
        };
        if let Some(next) = read_key(&next_file(key_file))? {
            tracing::warn!("secrets: finishing an interrupted key rotation");
            vault.finish_rotation(next)?;
        }
        Ok(vault)
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
        let sealed = self.seal(app, proc, path, content, crate::clock::unix_ms())?;
        let info = info(app, proc, &sealed);
        self.store
            .apply(vec![put_json(&record_key(app, proc, path), &sealed)?])?;
        Ok(info)
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
        if self.store.get(&key)?.is_none() {
            return Err(SecretError::NotFound {
                app: app.into(),
                proc: proc.into(),
                path: path.into(),
            });
        }
        self.store.apply(vec![Op::Delete(key)])?;
        Ok(())
    }

    /// Re-encrypts every secret under a new random master key, which then replaces the key
    /// file; returns the new key id and how many secrets were re-encrypted. Secrets stay
    /// readable throughout (both keys are loaded until the end).
    pub fn rotate(&self) -> Result<(String, usize), SecretError> {
        let _guard = self.rotating.lock();
        let next_path = next_file(&self.key_file);
        let _ = std::fs::remove_file(&next_path);
        let next = write_new_key(&next_path, &self.rng)?;
        self.finish_rotation(next)
    }

    /// Makes `next` (already in the `.next` file) current: re-encrypts, then renames.
    fn finish_rotation(&self, next: MasterKey) -> Result<(String, usize), SecretError> {
        let id = next.id.clone();
        {
            let mut keys = self.keys.write();
            keys.by_id.insert(id.clone(), next);
            keys.current = id.clone();
        }
        let mut count = 0;
        for (key, value) in self.store.list("secrets/")? {
            let sealed: Sealed = serde_json::from_slice(&value)
                .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?;
            if sealed.key_id == id {
                continue;
            }
            let mut parts = key.splitn(4, '/').skip(1);
            let (Some(app), Some(proc)) = (parts.next(), parts.next()) else {
                continue;
            };
            let plain = self.open_sealed(app, proc, &sealed)?;
            let resealed = self.seal(app, proc, &sealed.path, &plain, sealed.updated_ms)?;
            self.store.apply(vec![put_json(&key, &resealed)?])?;
            count += 1;
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
