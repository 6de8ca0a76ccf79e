//! Plugin manifests: name, version, kind, description and default configuration.
//!
//! A manifest is TOML. The SDK's export macros embed the crate's `lain-plugin.toml` into the
//! component as the custom section `lain-plugin-manifest` (inside its core module); an operator may
//! instead pass one beside the component, which then takes precedence.

use super::error::InstallError;
use super::kind::Kind;
use serde::{Deserialize, Serialize};

/// Name of the custom section holding an embedded manifest.
pub const SECTION: &str = "lain-plugin-manifest";

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
    /// Default configuration (a JSON object), overridable by the operator.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
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
}

impl Manifest {
    /// Parses and checks manifest text.
    pub fn parse(text: &str) -> Result<Manifest, InstallError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| InstallError::BadManifest(e.to_string()))?;
        let kind = Kind::parse(&raw.kind).ok_or_else(|| {
            let kinds: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            InstallError::BadManifest(format!(
                "unknown kind `{}`, expected one of {}",
                raw.kind,
                kinds.join(", ")
            ))
        })?;
        check_name(&raw.name)?;
        if raw.version.trim().is_empty() || raw.version.len() > 64 {
            return Err(InstallError::BadManifest(
                "version must be 1-64 characters".into(),
            ));
        }
        let config = serde_json::to_value(raw.config.unwrap_or_default())
            .map_err(|e| InstallError::BadManifest(format!("config: {e}")))?;
        Ok(Manifest {
            name: raw.name,
            version: raw.version,
            kind,
            description: raw.description,
            config,
        })
    }

    /// Finds the manifest embedded in a component's custom section, if any.
    pub fn embedded(component: &[u8]) -> Result<Option<Manifest>, InstallError> {
        match find_section(component)? {
            Some(bytes) => {
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    InstallError::BadManifest("embedded manifest is not UTF-8".into())
                })?;
                Manifest::parse(text).map(Some)
            }
            None => Ok(None),
        }
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
        Err(InstallError::BadManifest(format!(
            "name `{name}` must be lower-case letters, digits and `-`, starting with a letter, at most 63"
        )))
    }
}

/// Walks the component (and the modules nested in it) for the manifest section.
fn find_section(bytes: &[u8]) -> Result<Option<Vec<u8>>, InstallError> {
    use wasmparser::{Parser, Payload};
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InstallError::NotAComponent(e.to_string()))?;
        if let Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            return Ok(Some(section.data().to_vec()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let m = Manifest::parse(
            "name = \"cron\"\nversion = \"1.0\"\nkind = \"proc-type\"\n[config]\ntimezone = \"UTC\"\n",
        )
        .expect("valid");
        assert_eq!(m.kind, Kind::ProcType);
        assert_eq!(m.config["timezone"], "UTC");
        let err = Manifest::parse("name = \"x\"\nversion = \"1\"\nkind = \"cron\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown kind `cron`"), "{err}");
        let err = Manifest::parse("name = \"Bad_Name\"\nversion = \"1\"\nkind = \"proc-type\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("Bad_Name"), "{err}");
        let err =
            Manifest::parse("name = \"x\"\nversion = \"1\"\nkind = \"proc-type\"\nextra = 1\n")
                .unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
