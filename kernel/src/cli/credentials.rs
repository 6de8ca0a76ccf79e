//! The user's credentials: which token the `lain` command sends to which kernel.
//!
//! In order: `--token` / `LAIN_TOKEN`; the token `lain login` stored for the kernel's URL in the
//! user's config file (`$LAIN_USER_CONFIG`, else `$XDG_CONFIG_HOME/lain/config.toml`, else
//! `~/.config/lain/config.toml`; mode 0600); the local bootstrap token of a kernel on this
//! machine (`$LAIN_DATA_DIR/bootstrap.token`, else `.lain-data/bootstrap.token`), when readable.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The user's config file.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Per kernel URL.
    #[serde(default)]
    pub kernels: BTreeMap<String, KernelEntry>,
}

/// What is stored for one kernel.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelEntry {
    /// The bearer token.
    pub token: String,
}

/// Where the user's config file is.
pub fn config_path() -> anyhow::Result<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("LAIN_USER_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match (env("XDG_CONFIG_HOME"), env("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => PathBuf::from(h).join(".config"),
        (None, None) => anyhow::bail!("neither LAIN_USER_CONFIG, XDG_CONFIG_HOME nor HOME is set"),
    };
    Ok(base.join("lain").join("config.toml"))
}

impl UserConfig {
    /// Reads the config file (none: empty).
    pub fn load() -> anyhow::Result<UserConfig> {
        let path = config_path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the config file, mode 0600 from its first byte, atomically.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let path = config_path()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(toml::to_string(self)?.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(path)
    }
}

/// The token to send to `kernel`, if any (see the module docs).
pub fn token_for(flag: Option<String>, kernel: &str) -> Option<String> {
    if let Some(t) = flag.filter(|t| !t.trim().is_empty()) {
        return Some(t);
    }
    if let Ok(config) = UserConfig::load()
        && let Some(entry) = config.kernels.get(kernel.trim_end_matches('/'))
    {
        return Some(entry.token.clone());
    }
    let data_dir = std::env::var_os("LAIN_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(".lain-data"), PathBuf::from);
    std::fs::read_to_string(data_dir.join(crate::config::BOOTSTRAP_TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_string())
}
