//! Plugin manifests: name, version, kind, description, default configuration, and the files the
//! plugin asks the operator for.
//!
//! A manifest is TOML. The SDK's export macros embed the crate's `lain-plugin.toml` into the
//! component as the custom section `lain-plugin-manifest` (inside its core module); an operator may
//! instead pass one beside the component, which then takes precedence.
//!
//! A manifest is written by the plugin's author, so it is untrusted: it is bounded (text, description,
//! number, depth and size of configuration values) and it grants nothing. Its `[files]` table only
//! *asks* for files by name, with a reason; the operator grants them in the kernel config
//! (`[plugins.config.<name>] files`), and a `files` key in the manifest's `[config]` is refused.

use super::error::InstallError;
use super::world::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the custom section holding an embedded manifest.
pub const SECTION: &str = "lain-plugin-manifest";
/// Largest manifest text accepted.
pub const MAX_BYTES: usize = 64 << 10;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 256;
/// Most configuration values (keys of tables and items of arrays, at every level).
pub const MAX_CONFIG_VALUES: usize = 512;
/// Deepest nesting of configuration tables and arrays.
pub const MAX_CONFIG_DEPTH: usize = 8;
/// Longest configuration string or key, in bytes.
pub const MAX_CONFIG_STRING: usize = 4 << 10;
/// Most files a manifest may ask for.
pub const MAX_FILE_REQUESTS: usize = 16;
/// Longest reason given for a requested file, in characters.
pub const MAX_REASON: usize = 256;

/// A parsed, checked manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Unique plugin name: lower-case letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Version, free-form but usually semver.
    pub version: String,
    /// The world the component implements.
    pub kind: Kind,
    /// One line for listings.
    #[serde(default)]
    pub description: String,
    /// Default configuration (a JSON object), overridable by the operator. Never grants files.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Files the plugin asks for: name -> why. Only the operator grants them.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    files: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses and checks manifest text.
    pub fn parse(text: &str) -> Result<Manifest, InstallError> {
        if text.len() > MAX_BYTES {
            return Err(bad(format!(
                "the manifest is {} bytes, more than the {MAX_BYTES} allowed",
                text.len()
            )));
        }
        // The TOML parser bounds its own recursion (128 levels, which fits the 2 MiB stacks the
        // kernel parses on); its message quotes the offending line, so it is cut.
        let raw: RawManifest = toml::from_str(text).map_err(|e| bad(cut(&e.to_string())))?;
        let kind = Kind::parse(&raw.kind).ok_or_else(|| {
            let kinds: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            bad(format!(
                "unknown kind `{}`, expected one of {}",
                raw.kind.escape_debug(),
                kinds.join(", ")
            ))
        })?;
        let config = raw.config.unwrap_or_default();
        if config.contains_key("files") {
            return Err(bad(
                "config.files: a manifest cannot grant files; ask for them under `[files]` \
                 (`name = \"why the plugin needs it\"`) and the operator grants them in the \
                 kernel config (`[plugins.config.<plugin>] files`)"
                    .into(),
            ));
        }
        let config = serde_json::to_value(config).map_err(|e| bad(format!("config: {e}")))?;
        let manifest = Manifest {
            name: raw.name,
            version: raw.version,
            kind,
            description: raw.description,
            config,
            files: raw.files,
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks the bounds of every field: what [`Manifest::parse`] enforces, also applied to
    /// manifests read back from the state store.
    pub fn check(&self) -> Result<(), InstallError> {
        check_name(&self.name)?;
        if self.version.trim().is_empty()
            || self.version.len() > 64
            || self.version.chars().any(char::is_control)
        {
            return Err(bad(
                "version must be 1-64 characters without control characters".into(),
            ));
        }
        let chars = self.description.chars().count();
        if chars > MAX_DESCRIPTION {
            return Err(bad(format!(
                "description is {chars} characters, more than the {MAX_DESCRIPTION} allowed (one line for listings)"
            )));
        }
        if self.description.chars().any(char::is_control) {
            return Err(bad(
                "description must be one line without control characters".into(),
            ));
        }
        if !self.config.is_object() {
            return Err(bad("config must be a table".into()));
        }
        if self.config.get("files").is_some() {
            return Err(bad("config.files: a manifest cannot grant files".into()));
        }
        check_config(&self.config)?;
        if self.files.len() > MAX_FILE_REQUESTS {
            return Err(bad(format!(
                "files: {} requested, more than the {MAX_FILE_REQUESTS} allowed",
                self.files.len()
            )));
        }
        for (name, reason) in &self.files {
            check_file_name(name).map_err(|e| bad(format!("files: {e}")))?;
            let chars = reason.chars().count();
            if chars == 0 || chars > MAX_REASON || reason.chars().any(char::is_control) {
                return Err(bad(format!(
                    "files.{name}: the reason must be 1-{MAX_REASON} characters on one line"
                )));
            }
        }
        Ok(())
    }

    /// Finds the manifest embedded in a component's custom section, if any.
    pub fn embedded(component: &[u8]) -> Result<Option<Manifest>, InstallError> {
        match find_section(component)? {
            Some(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| bad("embedded manifest is not UTF-8".into()))?;
                Manifest::parse(text).map(Some)
            }
            None => Ok(None),
        }
    }
}

fn bad(message: String) -> InstallError {
    InstallError::BadManifest(message)
}

/// `message` cut to 1 KiB.
fn cut(message: &str) -> String {
    let mut end = message.len().min(1 << 10);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    if end == message.len() {
        message.to_string()
    } else {
        format!("{}...", &message[..end])
    }
}

/// Checks a plugin name: `^[a-z][a-z0-9-]{0,62}$`.
pub fn check_name(name: &str) -> Result<(), InstallError> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "name `{}` must be lower-case letters, digits and `-`, starting with a letter, at most 63",
            name.escape_debug()
        )))
    }
}

/// Checks the name of a file a plugin asks for or is granted: `^[a-z0-9][a-z0-9_-]{0,63}$`.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "file name `{}` must be 1-64 lower-case letters, digits, `-` or `_`",
            name.escape_debug()
        ))
    }
}

/// Bounds the configuration: values counted at every level, nesting depth, string sizes. Walks
/// with an explicit stack, so a deep value cannot exhaust the kernel's.
pub fn check_config(config: &serde_json::Value) -> Result<(), InstallError> {
    use serde_json::Value;
    let mut values = 0usize;
    let mut stack: Vec<(&Value, usize, String)> = vec![(config, 0, "config".into())];
    while let Some((value, depth, path)) = stack.pop() {
        if depth > MAX_CONFIG_DEPTH {
            return Err(bad(format!(
                "{path}: nested more than {MAX_CONFIG_DEPTH} levels deep"
            )));
        }
        match value {
            Value::Object(map) => {
                values += map.len();
                for (key, item) in map {
                    if key.len() > MAX_CONFIG_STRING {
                        return Err(bad(format!(
                            "{path}: a key of {} bytes, more than the {MAX_CONFIG_STRING} allowed",
                            key.len()
                        )));
                    }
                    stack.push((item, depth + 1, format!("{path}.{}", key.escape_debug())));
                }
            }
            Value::Array(items) => {
                values += items.len();
                for (i, item) in items.iter().enumerate() {
                    stack.push((item, depth + 1, format!("{path}[{i}]")));
                }
            }
            Value::String(s) if s.len() > MAX_CONFIG_STRING => {
                return Err(bad(format!(
                    "{path}: a string of {} bytes, more than the {MAX_CONFIG_STRING} allowed",
                    s.len()
                )));
            }
            _ => {}
        }
        if values > MAX_CONFIG_VALUES {
            return Err(bad(format!(
                "config: more than {MAX_CONFIG_VALUES} values (keys and array items)"
            )));
        }
    }
    Ok(())
}

/// Walks the component (and the modules nested in it) for the manifest section; refuses a
/// section larger than [`MAX_BYTES`] before copying anything.
fn find_section(bytes: &[u8]) -> Result<Option<&[u8]>, InstallError> {
    use wasmparser::{Parser, Payload};
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InstallError::NotAComponent(e.to_string()))?;
        if let Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            let data = section.data();
            if data.len() > MAX_BYTES {
                return Err(bad(format!(
                    "the embedded manifest is {} bytes, more than the {MAX_BYTES} allowed",
                    data.len()
                )));
            }
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name = \"x\"\nversion = \"1\"\nkind = \"proc-type\"\n";

    fn refused(text: &str) -> String {
        match Manifest::parse(text) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_and_checks() {
        let m = Manifest::parse(
            "name = \"cron\"\nversion = \"1.0\"\nkind = \"proc-type\"\n[config]\ntimezone = \"UTC\"\n[files]\ntz = \"the zone database\"\n",
        )
        .expect("valid");
        assert_eq!(m.kind, Kind::ProcType);
        assert_eq!(m.config["timezone"], "UTC");
        assert_eq!(m.files["tz"], "the zone database");
        let err = refused("name = \"x\"\nversion = \"1\"\nkind = \"cron\"\n");
        assert!(err.contains("unknown kind `cron`"), "{err}");
        let err = refused("name = \"Bad_Name\"\nversion = \"1\"\nkind = \"proc-type\"\n");
        assert!(err.contains("Bad_Name"), "{err}");
        let err = refused(&format!("{HEAD}extra = 1\n"));
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn a_manifest_asks_for_files_and_never_grants_them() {
        let err = refused(&format!("{HEAD}[config.files]\nshadow = \"/etc/shadow\"\n"));
        assert!(
            err.contains("cannot grant files") && err.contains("[files]"),
            "{err}"
        );
        let err = refused(&format!("{HEAD}[config]\nfiles = {{ key = \"/x\" }}\n"));
        assert!(err.contains("cannot grant files"), "{err}");
        let err = refused(&format!("{HEAD}[files]\n\"../x\" = \"why\"\n"));
        assert!(err.contains("file name `../x`"), "{err}");
        let err = refused(&format!("{HEAD}[files]\nkey = \"\"\n"));
        assert!(err.contains("files.key: the reason"), "{err}");
        let many: String = (0..17).map(|i| format!("f{i} = \"why\"\n")).collect();
        let err = refused(&format!("{HEAD}[files]\n{many}"));
        assert!(err.contains("17 requested"), "{err}");
    }

    #[test]
    fn manifests_are_bounded() {
        let huge = format!("{HEAD}description = \"{}\"\n", "d".repeat(MAX_BYTES));
        let err = refused(&huge);
        assert!(err.contains("more than the 65536 allowed"), "{err}");
        let long = format!("{HEAD}description = \"{}\"\n", "d".repeat(300));
        let err = refused(&long);
        assert!(err.contains("description is 300 characters"), "{err}");
        let err = refused(&format!("{HEAD}description = \"a\\nINFO forged\"\n"));
        assert!(err.contains("one line"), "{err}");
        let keys: String = (0..600).map(|i| format!("k{i} = 1\n")).collect();
        let err = refused(&format!("{HEAD}[config]\n{keys}"));
        assert!(err.contains("more than 512 values"), "{err}");
        let items = vec!["1"; 600].join(",");
        let err = refused(&format!("{HEAD}[config]\nlist = [{items}]\n"));
        assert!(err.contains("more than 512 values"), "{err}");
        let deep = format!(
            "{HEAD}[config]\nx = {}1{}\n",
            "[".repeat(20),
            "]".repeat(20)
        );
        let err = refused(&deep);
        assert!(err.contains("nested more than 8 levels"), "{err}");
        let dotted = format!("{HEAD}[config]\n{} = 1\n", vec!["a"; 20].join("."));
        let err = refused(&dotted);
        assert!(err.contains("nested more than 8 levels"), "{err}");
        let string = format!("{HEAD}[config]\ns = \"{}\"\n", "s".repeat(5000));
        let err = refused(&string);
        assert!(err.contains("config.s: a string of 5000 bytes"), "{err}");
    }

    #[test]
    fn pathological_nesting_within_the_size_bound_is_refused_not_a_crash() {
        // The largest text accepted, nested as deeply as it allows, on a thread with the stack
        // of tokio's blocking pool (where the API installs plugins); the error stays short.
        let half = (MAX_BYTES - HEAD.len() - 16) / 2;
        let texts = [
            format!(
                "{HEAD}[config]\nx = {}{}\n",
                "[".repeat(half),
                "]".repeat(half)
            ),
            format!("{HEAD}[config]\nx = {}\n", "{a=".repeat(half / 3)),
            format!("{HEAD}[config]\n{} = 1\n", vec!["a"; half].join(".")),
        ];
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                texts
                    .iter()
                    .map(|t| Manifest::parse(t).is_err_and(|e| e.to_string().len() < 1200))
                    .collect::<Vec<_>>()
            })
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert_eq!(outcome, [true, true, true]);
    }
}
