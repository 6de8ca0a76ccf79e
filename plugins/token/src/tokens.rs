//! The known tokens and the check of a presented one.

use crate::config::{Config, Entry};
use lain_sdk_guest::auth::{AuthResult, Credentials, constant_time_eq};
use lain_sdk_guest::{PluginError, Principal};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
type Hash = [u8; 32];

/// One known token, by hash.
struct Known {
    user: String,
    groups: Vec<String>,
    hash: Hash,
}

/// The checked configuration: the known tokens and what to do with unknown ones.
pub struct Tokens {
    known: Vec<Known>,
    exclusive: bool,
}

impl Tokens {
    /// Checks the configuration; also returns the indices of entries given in plain text. Errors
    /// name the entry: an empty user or group, not exactly one of `sha256` and `token`, a hash that
    /// is not 64 hex digits, an empty token, or a token configured twice.
    pub fn from_config(config: Config) -> Result<(Tokens, Vec<usize>), PluginError> {
        let mut known: Vec<Known> = Vec::with_capacity(config.tokens.len());
        let mut plaintext = Vec::new();
        for (index, entry) in config.tokens.into_iter().enumerate() {
            let bad = |why: &str| PluginError::BadConfig(format!("tokens[{index}]: {why}"));
            let hash = match (&entry.sha256, &entry.token) {
                (Some(hex), None) => {
                    decode_hex(hex).ok_or_else(|| bad("sha256 must be 64 hex digits"))?
                }
                (None, Some(token)) if token.is_empty() => return Err(bad("token is empty")),
                (None, Some(token)) => {
                    plaintext.push(index);
                    Sha256::digest(token.as_bytes()).into()
                }
                _ => return Err(bad("set exactly one of `sha256` and `token`")),
            };
            let Entry { user, groups, .. } = entry;
            if user.trim().is_empty() {
                return Err(bad("user is empty"));
            }
            if groups.iter().any(|g| g.trim().is_empty()) {
                return Err(bad("a group name is empty"));
            }
            if let Some(first) = known.iter().position(|k| k.hash == hash) {
                return Err(bad(&format!("same token as tokens[{first}]")));
            }
            known.push(Known { user, groups, hash });
        }
        Ok((
            Tokens {
                known,
                exclusive: config.exclusive,
            },
            plaintext,
        ))
    }

    /// A one-line description.
    pub fn summary(&self) -> String {
        let mode = if self.exclusive {
            ", unknown ones denied"
        } else {
            ""
        };
        format!(
            "static bearer tokens: {} configured{mode}",
            self.known.len()
        )
    }

    /// Checks presented credentials: not a bearer token is not ours; a known token authenticates
    /// its user; an unknown one is not ours either, or denied when `exclusive`.
    ///
    /// The presented token is hashed and compared with every known hash in constant time, all of
    /// them whatever matches, so timing tells nothing about the tokens.
    pub fn check(&self, creds: &Credentials) -> AuthResult {
        if creds.scheme != "bearer" {
            return AuthResult::NotMine;
        }
        let presented: Hash = Sha256::digest(creds.token.as_bytes()).into();
        let mut found = None;
        for known in &self.known {
            if constant_time_eq(&known.hash, &presented) {
                found = Some(known);
            }
        }
        match found {
            Some(known) => AuthResult::Authenticated(Principal {
                subject: known.user.clone(),
                groups: known.groups.clone(),
                provider: "token".into(),
                expires_at: None,
            }),
            None if self.exclusive => AuthResult::Denied("unknown bearer token".into()),
            None => AuthResult::NotMine,
        }
    }
}

/// Decodes 64 hex digits (either case).
fn decode_hex(hex: &str) -> Option<Hash> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        let digit = |d: u8| char::from(d).to_digit(16);
        *byte = u8::try_from(digit(*pair.first()?)? * 16 + digit(*pair.last()?)?).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of "s3cret-ci-token", from `printf %s s3cret-ci-token | sha256sum`.
    const CI_HASH: &str = "cf1567dd9a1bf47c5e326ea24c877df96e3ed024ed4a783d5a774bb450ab428d";

    fn entry(user: &str, sha256: Option<&str>, token: Option<&str>) -> Entry {
        Entry {
            user: user.into(),
            groups: vec!["admins".into()],
            sha256: sha256.map(String::from),
            token: token.map(String::from),
        }
    }

    fn bearer(token: &str) -> Credentials {
        Credentials {
            scheme: "bearer".into(),
            token: token.into(),
        }
    }

    fn config_error(config: Config) -> String {
        match Tokens::from_config(config) {
            Err(PluginError::BadConfig(message)) => message,
            Err(other) => panic!("expected bad-config, got {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    fn tokens(exclusive: bool) -> Tokens {
        let config = Config {
            tokens: vec![
                entry("ci", Some(CI_HASH), None),
                entry("dev", None, Some("dev-token")),
            ],
            exclusive,
        };
        let (tokens, plaintext) = Tokens::from_config(config).unwrap();
        assert_eq!(plaintext, [1]);
        tokens
    }

    #[test]
    fn known_tokens_authenticate_their_user() {
        let tokens = tokens(false);
        match tokens.check(&bearer("s3cret-ci-token")) {
            AuthResult::Authenticated(p) => {
                assert_eq!(
                    (
                        p.subject.as_str(),
                        p.groups,
                        p.provider.as_str(),
                        p.expires_at
                    ),
                    ("ci", vec!["admins".to_string()], "token", None)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(tokens.check(&bearer("dev-token")), AuthResult::Authenticated(p) if p.subject == "dev")
        );
    }

    #[test]
    fn other_schemes_and_unknown_tokens_are_not_ours_unless_exclusive() {
        let open = tokens(false);
        assert!(matches!(open.check(&bearer("guess")), AuthResult::NotMine));
        assert!(matches!(open.check(&bearer("")), AuthResult::NotMine));
        let basic = Credentials {
            scheme: "basic".into(),
            token: "s3cret-ci-token".into(),
        };
        assert!(matches!(open.check(&basic), AuthResult::NotMine));

        let exclusive = tokens(true);
        assert!(
            matches!(exclusive.check(&bearer("guess")), AuthResult::Denied(r) if r == "unknown bearer token")
        );
        assert!(matches!(exclusive.check(&basic), AuthResult::NotMine));
    }

    #[test]
    fn hashes_are_hex_of_sha256_in_either_case() {
        assert_eq!(
            decode_hex(CI_HASH),
            Some(Sha256::digest(b"s3cret-ci-token").into())
        );
        assert_eq!(decode_hex(&CI_HASH.to_uppercase()), decode_hex(CI_HASH));
        assert_eq!(decode_hex(&CI_HASH[..62]), None);
        assert_eq!(decode_hex(&format!("{}zz", &CI_HASH[..62])), None);
        assert_eq!(decode_hex(&format!("{}é", &CI_HASH[..62])), None);
    }

    #[test]
    fn bad_entries_are_named_by_index() {
        let with = |entries: Vec<Entry>| Config {
            tokens: entries,
            exclusive: false,
        };
        let ok = entry("ci", Some(CI_HASH), None);
        assert_eq!(
            config_error(with(vec![ok.clone(), entry("x", Some("abc"), None)])),
            "tokens[1]: sha256 must be 64 hex digits"
        );
        assert_eq!(
            config_error(with(vec![entry("", Some(CI_HASH), None)])),
            "tokens[0]: user is empty"
        );
        assert_eq!(
            config_error(with(vec![entry("x", None, None)])),
            "tokens[0]: set exactly one of `sha256` and `token`"
        );
        assert_eq!(
            config_error(with(vec![entry("x", Some(CI_HASH), Some("t"))])),
            "tokens[0]: set exactly one of `sha256` and `token`"
        );
        assert_eq!(
            config_error(with(vec![entry("x", None, Some(""))])),
            "tokens[0]: token is empty"
        );
        let no_group = Entry {
            groups: vec![String::new()],
            ..ok.clone()
        };
        assert_eq!(
            config_error(with(vec![no_group])),
            "tokens[0]: a group name is empty"
        );
        // The same token twice, once by hash and once in plain text.
        let twice = with(vec![
            entry("a", None, Some("x")),
            ok,
            entry("b", Some(&CI_HASH.to_uppercase()), None),
        ]);
        assert_eq!(config_error(twice), "tokens[2]: same token as tokens[1]");
    }
}
