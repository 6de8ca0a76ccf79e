//! The plugin's configuration (defaults in `lain-plugin.toml`) and the claim policy drawn from it.

use lain_sdk_guest::PluginError;
use serde::Deserialize;

/// The `jwt` configuration as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Required value of the `iss` claim.
    pub issuer: Option<String>,
    /// Value the `aud` claim must be or contain. Required.
    pub audience: Option<String>,
    /// Names of granted files, each holding one HS256 secret.
    pub hs256_secrets: Vec<String>,
    /// An HS256 secret written inline; for development.
    pub hs256_secret: Option<String>,
    /// RSA public keys in PEM, SPKI or PKCS#1.
    pub rs256_public_keys: Vec<String>,
    /// Name of a granted file holding a JWKS document.
    pub jwks_file: Option<String>,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: u32,
    /// Claim holding the subject.
    pub subject_claim: String,
    /// Claim holding the groups.
    pub groups_claim: String,
    /// Deny tokens without `exp`.
    pub require_exp: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            issuer: None,
            audience: None,
            hs256_secrets: Vec::new(),
            hs256_secret: None,
            rs256_public_keys: Vec::new(),
            jwks_file: None,
            leeway: 60,
            subject_claim: "sub".into(),
            groups_claim: "groups".into(),
            require_exp: true,
        }
    }
}

/// What a token's claims must satisfy, and where the principal is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Required `iss`.
    pub issuer: String,
    /// Required member of `aud`.
    pub audience: String,
    /// Allowed clock skew, seconds.
    pub leeway: i64,
    /// Claim holding the subject.
    pub subject_claim: String,
    /// Claim holding the groups.
    pub groups_claim: String,
    /// Deny tokens without `exp`.
    pub require_exp: bool,
}

impl Config {
    /// The claim policy. Errors name the key: a missing or empty `issuer` or `audience`, an empty
    /// claim name.
    pub fn policy(&self) -> Result<Policy, PluginError> {
        let required = |key: &str, value: &Option<String>| match value {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => Err(PluginError::BadConfig(format!("{key}: required"))),
        };
        for (key, claim) in [
            ("subject_claim", &self.subject_claim),
            ("groups_claim", &self.groups_claim),
        ] {
            if claim.is_empty() {
                return Err(PluginError::BadConfig(format!("{key}: empty claim name")));
            }
        }
        Ok(Policy {
            issuer: required("issuer", &self.issuer)?,
            audience: required("audience", &self.audience)?,
            leeway: i64::from(self.leeway),
            subject_claim: self.subject_claim.clone(),
            groups_claim: self.groups_claim.clone(),
            require_exp: self.require_exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::testing::manifest_config;

    fn error(config: Config) -> String {
        match config.policy() {
            Err(PluginError::BadConfig(message)) => message,
            other => panic!("expected bad-config, got {other:?}"),
        }
    }

    #[test]
    fn manifest_defaults_match_the_built_in_ones() {
        let config: Config = manifest_config(include_str!("../lain-plugin.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn issuer_and_audience_are_required() {
        let sso = Config {
            issuer: Some("https://sso.example.com".into()),
            audience: Some("lain".into()),
            ..Config::default()
        };
        let policy = sso.policy().unwrap();
        assert_eq!(
            (
                policy.issuer.as_str(),
                policy.audience.as_str(),
                policy.leeway
            ),
            ("https://sso.example.com", "lain", 60)
        );
        assert_eq!(
            error(Config {
                issuer: None,
                ..sso.clone()
            }),
            "issuer: required"
        );
        assert_eq!(
            error(Config {
                audience: Some(String::new()),
                ..sso.clone()
            }),
            "audience: required"
        );
        assert_eq!(
            error(Config {
                groups_claim: String::new(),
                ..sso
            }),
            "groups_claim: empty claim name"
        );
    }
}
