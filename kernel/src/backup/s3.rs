//! S3-compatible object storage for the restic repository (`[backup.s3]`).
//!
//! restic speaks S3 itself (`s3:<endpoint>/<bucket>/<prefix>`); the kernel hands it the
//! location, the region and the access key. The key is read once, at kernel start, from
//! `credentials_file`: a regular file readable by its owner alone (0600 or stricter), never the
//! configuration. It reaches restic only through the environment of each restic child
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`), never the kernel's
//! own, and [`Remote::redact`] takes both parts out of anything restic says before it becomes
//! an error, a log line or a backup record.
//!
//! The credentials file holds two `key = value` lines (a value may be quoted; `#` starts a
//! comment line):
//!
//! ```toml
//! access_key_id = "lain-backups"
//! secret_access_key = "a long random secret"
//! ```

use super::restic::EngineError;
use serde::{Deserialize, Serialize};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest credentials file read.
pub const MAX_CREDENTIALS: u64 = 64 << 10;

/// `[backup.s3]`: where the repository lives in S3-compatible storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The storage's URL, `http://` or `https://` with host and port, no path
    /// (e.g. `https://s3.eu-west-1.amazonaws.com`, `http://10.0.0.5:9000`).
    pub endpoint: String,
    /// The bucket (restic creates it when missing and allowed to).
    pub bucket: String,
    /// A path inside the bucket for the repository (default: its root).
    #[serde(default)]
    pub prefix: String,
    /// The region requests are signed for.
    #[serde(default = "default_region")]
    pub region: String,
    /// The file holding `access_key_id` and `secret_access_key` (mode 0600 or stricter).
    pub credentials_file: PathBuf,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl S3Config {
    /// Checks the endpoint, bucket, prefix and region; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        self.endpoint_parts()?;
        let b = &self.bucket;
        let edge_ok =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !(3..=63).contains(&b.len())
            || !b
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            || !edge_ok(b.chars().next())
            || !edge_ok(b.chars().last())
        {
            return Err(format!(
                "[backup.s3] bucket `{b}`: 3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit"
            ));
        }
        for part in self.prefix_parts() {
            if part == "." || part == ".." || part.chars().any(char::is_control) {
                return Err(format!(
                    "[backup.s3] prefix `{}`: no `.` or `..` component and no control character",
                    self.prefix.escape_debug()
                ));
            }
        }
        if self.region.is_empty()
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "[backup.s3] region `{}`: letters, digits and `-` (e.g. us-east-1)",
                self.region.escape_debug()
            ));
        }
        Ok(())
    }

    /// The endpoint's scheme and authority.
    fn endpoint_parts(&self) -> Result<(String, String), String> {
        // A user and password in the URL are never repeated back.
        let shown = match self.endpoint.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => self.endpoint.clone(),
        };
        let bad = |why: &str| Err(format!("[backup.s3] endpoint `{shown}`: {why}"));
        let Ok(uri) = self.endpoint.parse::<axum::http::Uri>() else {
            return bad("not a URL");
        };
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => return bad("give an http:// or https:// URL"),
        };
        let Some(authority) = uri.authority() else {
            return bad("no host");
        };
        if authority.as_str().contains('@') {
            return bad("no user or password in the URL: put them in credentials_file");
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return bad("no path or query: the bucket and prefix are their own keys");
        }
        Ok((scheme, authority.as_str().to_string()))
    }

    /// The prefix's non-empty components.
    fn prefix_parts(&self) -> impl Iterator<Item = &str> {
        self.prefix.split('/').filter(|p| !p.is_empty())
    }

    /// restic's name of the repository: `s3:<endpoint>/<bucket>[/<prefix>]`.
    pub fn location(&self) -> Result<String, String> {
        let (scheme, authority) = self.endpoint_parts()?;
        let mut location = format!("s3:{scheme}://{authority}/{}", self.bucket);
        for part in self.prefix_parts() {
            location.push('/');
            location.push_str(part);
        }
        Ok(location)
    }

    /// The repository with its access key read from `credentials_file`; an error names the
    /// file and never its content.
    pub fn open(&self) -> Result<Remote, EngineError> {
        let location = self.location().map_err(EngineError::Setup)?;
        let credentials = Credentials::read(&self.credentials_file)?;
        Ok(Remote {
            location,
            region: self.region.clone(),
            credentials: Arc::new(credentials),
        })
    }
}

/// An S3 access key.
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl Credentials {
    /// Reads `path`: a regular file no one but its owner may read, at most
    /// [`MAX_CREDENTIALS`] bytes, with both keys.
    fn read(path: &Path) -> Result<Credentials, EngineError> {
        use std::os::unix::fs::PermissionsExt as _;
        let fail = |why: String| {
            EngineError::Setup(format!(
                "[backup.s3] credentials_file {}: {why}",
                path.display()
            ))
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        // The opened file's own metadata: what is checked is what is read.
        let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "readable by group or others (mode {mode:o}): make it 0600"
            )));
        }
        let mut text = String::new();
        file.take(MAX_CREDENTIALS + 1)
            .read_to_string(&mut text)
            .map_err(|e| fail(e.to_string()))?;
        if text.len() as u64 > MAX_CREDENTIALS {
            return Err(fail(format!("longer than {MAX_CREDENTIALS} bytes")));
        }
        Credentials::parse(&text).map_err(fail)
    }

    /// Parses the `key = value` lines; errors name lines and keys, never values.
    fn parse(text: &str) -> Result<Credentials, String> {
        let (mut id, mut secret) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {}: not `key = value`", n + 1));
            };
            let value = value.trim();
            let value = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(value);
            if value.is_empty() || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!(
                    "line {}: the value is empty or holds a space or control character",
                    n + 1
                ));
            }
            let slot = match key.trim() {
                "access_key_id" => &mut id,
                "secret_access_key" => &mut secret,
                _ => {
                    return Err(format!(
                        "line {}: unknown key (access_key_id and secret_access_key are read)",
                        n + 1
                    ));
                }
            };
            *slot = Some(value.to_string());
        }
        let access_key_id = id.ok_or("access_key_id is missing")?;
        let secret_access_key = secret.ok_or("secret_access_key is missing")?;
        if access_key_id.len() < 3 || secret_access_key.len() < 8 {
            return Err(
                "access_key_id needs 3 characters or more, secret_access_key 8 or more".into(),
            );
        }
        Ok(Credentials {
            access_key_id,
            secret_access_key,
        })
    }
}

/// The repository in S3-compatible storage, with its access key.
#[derive(Clone)]
pub struct Remote {
    location: String,
    region: String,
    credentials: Arc<Credentials>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("location", &self.location)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// restic's name of the repository (`s3:…`); it holds no credential.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The variables a restic child needs to reach the storage (its environment alone).
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", &self.credentials.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.credentials.secret_access_key),
            ("AWS_DEFAULT_REGION", &self.region),
        ]
    }

    /// `text` with the access key id and the secret replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.credentials.secret_access_key, "[redacted]")
            .replace(&self.credentials.access_key_id, "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: default_region(),
            credentials_file: "/nonexistent".into(),
        }
    }

    #[test]
    fn the_location_joins_endpoint_bucket_and_prefix() {
        let c = config("http://127.0.0.1:9000/", "lain-backups", "/site/a/");
        assert_eq!(
            c.location().expect("valid"),
            "s3:http://127.0.0.1:9000/lain-backups/site/a"
        );
        let c = config("https://s3.amazonaws.com", "b.example", "");
        assert_eq!(
            c.location().expect("valid"),
            "s3:https://s3.amazonaws.com/b.example"
        );
    }

    #[test]
    fn bad_endpoints_buckets_prefixes_and_regions_are_named() {
        for (c, key) in [
            (config("ftp://h", "bkt", ""), "endpoint"),
            (config("h:9000", "bkt", ""), "endpoint"),
            (config("http://user:pw@h", "bkt", ""), "endpoint"),
            (config("http://h/path", "bkt", ""), "endpoint"),
            (config("http://h", "Bucket", ""), "bucket"),
            (config("http://h", "b", ""), "bucket"),
            (config("http://h", "bkt", "a/../b"), "prefix"),
            (
                S3Config {
                    region: "us east".into(),
                    ..config("http://h", "bkt", "")
                },
                "region",
            ),
        ] {
            let e = c.check().expect_err(&format!("{c:?}"));
            assert!(e.contains(&format!("[backup.s3] {key}")), "{e}");
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[test]
    fn credentials_parse_and_errors_never_show_a_value() {
        let c = Credentials::parse(
            "# lain\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key='wJalrXUtnFEMI/K7MDENG'\n",
        )
        .expect("parsed");
        assert_eq!(c.access_key_id, "AKIDEXAMPLE");
        assert_eq!(c.secret_access_key, "wJalrXUtnFEMI/K7MDENG");
        for text in [
            "access_key_id = AKIDEXAMPLE\n",
            "access_key_id = AKIDEXAMPLE\nsecret = wJalrXUtnFEMI\n",
            "AKIDEXAMPLE wJalrXUtnFEMI\n",
            "access_key_id = AKIDEXAMPLE\nsecret_access_key = wJalr XUtnFEMI\n",
            "access_key_id = AK\nsecret_access_key = wJalrXUtnFEMI\n",
        ] {
            let e = Credentials::parse(text).err().expect(text);
            assert!(!e.contains("AKIDEXAMPLE") && !e.contains("wJalr"), "{e}");
        }
    }

    #[test]
    fn a_credentials_file_others_may_read_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s3.credentials");
        std::fs::write(
            &path,
            "access_key_id = AKIDEXAMPLE\nsecret_access_key = wJalrXUtnFEMI\n",
        )
        .expect("write");
        let c = S3Config {
            credentials_file: path.clone(),
            ..config("http://h:9000", "bkt", "p")
        };
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = c.open().expect_err("refused").to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains("0600"),
                "{e}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let remote = c.open().expect("read");
        assert_eq!(remote.location(), "s3:http://h:9000/bkt/p");
        assert_eq!(
            remote.redact("key AKIDEXAMPLE secret wJalrXUtnFEMI"),
            "key [redacted] secret [redacted]"
        );
        assert!(!format!("{remote:?}").contains("wJalr"));
        let missing = S3Config {
            credentials_file: dir.path().join("missing"),
            ..c
        };
        let e = missing.open().expect_err("missing").to_string();
        assert!(
            e.contains("missing") && e.contains("credentials_file"),
            "{e}"
        );
    }
}
