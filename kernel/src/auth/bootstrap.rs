//! The local bootstrap: on the embedded store, a random token in `<data_dir>/bootstrap.token`
//! (created mode 0600 on first start) authenticates as a cluster admin, so one machine can be
//! set up before any auth provider is configured. Whoever can read the data dir already owns
//! the kernel's state, so the token grants nothing new; with etcd there is no bootstrap.

use crate::plugin::bindings::types::Principal;
use anyhow::Context;
use ring::rand::SecureRandom;
use sha2::Digest;
use std::path::{Path, PathBuf};

/// The subject and provider name of the bootstrap principal.
pub const BOOTSTRAP: &str = "bootstrap";

/// The bootstrap token, held as its SHA-256.
pub struct Bootstrap {
    digest: [u8; 32],
    /// Where the token is.
    pub file: PathBuf,
}

impl Bootstrap {
    /// Reads the token in `file`, creating a random one (0600) when there is none.
    pub fn open(file: &Path) -> anyhow::Result<Bootstrap> {
        let token = match std::fs::read_to_string(file) {
            Ok(t) => t.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(file)?,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        anyhow::ensure!(
            token.len() >= 32,
            "{}: the bootstrap token is shorter than 32 characters",
            file.display()
        );
        Ok(Bootstrap {
            digest: sha2::Sha256::digest(token.as_bytes()).into(),
            file: file.to_path_buf(),
        })
    }

    /// The bootstrap principal, when `token` is the bootstrap token. Compares digests, so the
    /// time taken says nothing about the token.
    pub fn check(&self, token: &str) -> Option<Principal> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        (digest == self.digest).then(|| Principal {
            subject: BOOTSTRAP.into(),
            groups: Vec::new(),
            provider: BOOTSTRAP.into(),
            expires_at: None,
        })
    }
}

fn create(file: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let token = hex::encode(bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn creates_a_private_token_once_and_accepts_only_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bootstrap.token");
        let b = Bootstrap::open(&file).expect("open");
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = std::fs::read_to_string(&file).expect("read");
        assert_eq!(Bootstrap::open(&file).expect("reopen").digest, b.digest);
        assert_eq!(
            b.check(token.trim()).map(|p| p.subject),
            Some(BOOTSTRAP.to_string())
        );
        assert!(b.check("wrong").is_none());
        assert!(b.check("").is_none());
        std::fs::write(&file, "short").expect("write");
        let err = Bootstrap::open(&file).err().expect("refused").to_string();
        assert!(err.contains("shorter than 32"), "{err}");
    }
}
