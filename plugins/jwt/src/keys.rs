//! The verification keys: HS256 secrets and RS256 public keys (PEM or JWKS).

use crate::config::Config;
use base64ct::{Base64UrlUnpadded, Encoding};
use lain_sdk_guest::PluginError;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{BoxedUint, PublicKey};
use serde::Deserialize;

/// Shortest HS256 secret accepted, bytes: the hash's output size (RFC 7518 §3.2).
const MIN_SECRET_LEN: usize = 32;

/// Every configured key.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// HS256 secrets.
    pub hmac: Vec<Vec<u8>>,
    /// RS256 public keys.
    pub rsa: Vec<RsaKey>,
}

/// An RS256 public key, with its JWKS key id if it came from a JWKS document.
#[derive(Debug, Clone)]
pub struct RsaKey {
    /// The `kid` of the JWK; `None` for a PEM key.
    pub kid: Option<String>,
    /// The key.
    pub key: PublicKey,
}

/// A JWKS document: only its keys matter.
#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// One JSON Web Key; the members RSA keys use.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl Keys {
    /// Loads the keys `config` names; `read` reads a granted file by name (`host::read_file` in
    /// the plugin). Errors name the key and entry: an unreadable file, a secret shorter than 32
    /// bytes, a malformed PEM key or JWKS, no key at all.
    pub fn load(
        config: &Config,
        read: impl Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Keys, PluginError> {
        let mut keys = Keys::default();
        for (i, name) in config.hs256_secrets.iter().enumerate() {
            let key = format!("hs256_secrets[{i}]");
            let bytes = read(name)
                .map_err(|e| bad(&key, format!("cannot read granted file `{name}`: {e}")))?;
            keys.hmac.push(secret(bytes).map_err(|e| bad(&key, e))?);
        }
        if let Some(inline) = &config.hs256_secret {
            keys.hmac
                .push(secret(inline.clone().into_bytes()).map_err(|e| bad("hs256_secret", e))?);
        }
        for (i, pem) in config.rs256_public_keys.iter().enumerate() {
            let key = pem_key(pem).map_err(|e| bad(&format!("rs256_public_keys[{i}]"), e))?;
            keys.rsa.push(RsaKey { kid: None, key });
        }
        if let Some(name) = &config.jwks_file {
            let bytes = read(name).map_err(|e| {
                bad(
                    "jwks_file",
                    format!("cannot read granted file `{name}`: {e}"),
                )
            })?;
            keys.rsa
                .extend(jwks_keys(&bytes).map_err(|e| bad("jwks_file", e))?);
        }
        if keys.hmac.is_empty() && keys.rsa.is_empty() {
            return Err(PluginError::BadConfig(
                "no key configured: set hs256_secrets, hs256_secret, rs256_public_keys or jwks_file".into(),
            ));
        }
        Ok(keys)
    }
}

/// A configuration error about `key`.
fn bad(key: &str, why: impl std::fmt::Display) -> PluginError {
    PluginError::BadConfig(format!("{key}: {why}"))
}

/// An HS256 secret from a file's bytes; trailing whitespace (a final newline) is not part of it.
fn secret(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    bytes.truncate(bytes.trim_ascii_end().len());
    if bytes.len() < MIN_SECRET_LEN {
        return Err(format!("secret shorter than {MIN_SECRET_LEN} bytes"));
    }
    Ok(bytes)
}

/// An RSA public key in PEM: PKCS#1 (`RSA PUBLIC KEY`) or SPKI (`PUBLIC KEY`).
fn pem_key(pem: &str) -> Result<PublicKey, String> {
    if pem.contains("-----BEGIN RSA PUBLIC KEY-----") {
        PublicKey::from_pkcs1_pem(pem).map_err(|e| format!("not a PKCS#1 RSA public key: {e}"))
    } else {
        PublicKey::from_public_key_pem(pem).map_err(|e| format!("not an SPKI RSA public key: {e}"))
    }
}

/// The RS256 keys of a JWKS document. Keys of another type, for encryption or for another
/// algorithm are skipped; a document without any RS256 key is an error.
fn jwks_keys(document: &[u8]) -> Result<Vec<RsaKey>, String> {
    let jwks: Jwks =
        serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in jwks.keys.into_iter().enumerate() {
        let usable = jwk.kty == "RSA"
            && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256")
            && jwk.usage.as_deref().is_none_or(|usage| usage == "sig");
        if !usable {
            continue;
        }
        let key = jwk_key(&jwk).map_err(|e| format!("keys[{i}]: {e}"))?;
        keys.push(RsaKey { kid: jwk.kid, key });
    }
    if keys.is_empty() {
        return Err("no RSA signing key for RS256 in the document".into());
    }
    Ok(keys)
}

/// The public key of an RSA JWK, from its base64url `n` and `e`.
fn jwk_key(jwk: &Jwk) -> Result<PublicKey, String> {
    let n = jwk_number(jwk.n.as_deref(), "n")?;
    let e = jwk_number(jwk.e.as_deref(), "e")?;
    PublicKey::new(n, e).map_err(|e| format!("unusable RSA key: {e}"))
}

/// A big-endian unsigned integer member (`n`, `e`) of a JWK.
fn jwk_number(member: Option<&str>, name: &str) -> Result<BoxedUint, String> {
    let text = member.ok_or_else(|| format!("missing `{name}`"))?;
    let bytes = Base64UrlUnpadded::decode_vec(text.trim_end_matches('='))
        .map_err(|_| format!("`{name}` is not base64url"))?;
    let bits = u32::try_from(bytes.len())
        .ok()
        .and_then(|len| len.checked_mul(8))
        .filter(|&bits| bits > 0)
        .ok_or_else(|| format!("`{name}` is empty or too long"))?;
    BoxedUint::from_be_slice(&bytes, bits).map_err(|_| format!("`{name}` is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::{jwk, private_key};
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use std::collections::HashMap;

    fn reader(files: &[(&str, &[u8])]) -> impl Fn(&str) -> Result<Vec<u8>, String> {
        let files: HashMap<String, Vec<u8>> = files
            .iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect();
        move |name| {
            files
                .get(name)
                .cloned()
                .ok_or_else(|| "not granted".to_string())
        }
    }

    fn error(config: &Config, files: &[(&str, &[u8])]) -> String {
        match Keys::load(config, reader(files)) {
            Err(PluginError::BadConfig(message)) => message,
            Err(other) => panic!("expected bad-config, got {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn loads_secrets_pem_keys_and_jwks() {
        let public = private_key().to_public_key();
        let spki = public.to_public_key_pem(LineEnding::LF).unwrap();
        let pkcs1 = public.to_pkcs1_pem(LineEnding::LF).unwrap();
        let jwks = serde_json::json!({ "keys": [
            { "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA" },
            { "kty": "RSA", "use": "enc", "n": "AA", "e": "AQAB" },
            { "kty": "RSA", "alg": "PS256", "n": "AA", "e": "AQAB" },
            jwk(&public, "k1"),
        ]});
        let config = Config {
            hs256_secrets: vec!["secret".into()],
            hs256_secret: Some("an inline development secret, 32+ bytes".into()),
            rs256_public_keys: vec![spki, pkcs1],
            jwks_file: Some("jwks".into()),
            ..Config::default()
        };
        let jwks = jwks.to_string();
        let keys = Keys::load(
            &config,
            reader(&[
                ("secret", b"0123456789abcdef0123456789abcdef\n"),
                ("jwks", jwks.as_bytes()),
            ]),
        )
        .unwrap();
        assert_eq!(
            keys.hmac,
            [
                b"0123456789abcdef0123456789abcdef".to_vec(),
                b"an inline development secret, 32+ bytes".to_vec()
            ]
        );
        let kids: Vec<Option<&str>> = keys.rsa.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [None, None, Some("k1")]);
        assert!(keys.rsa.iter().all(|k| k.key == public));
    }

    #[test]
    fn bad_keys_are_named() {
        let none = Config::default();
        assert_eq!(
            error(&none, &[]),
            "no key configured: set hs256_secrets, hs256_secret, rs256_public_keys or jwks_file"
        );

        let missing = Config {
            hs256_secrets: vec!["s".into()],
            ..Config::default()
        };
        assert_eq!(
            error(&missing, &[]),
            "hs256_secrets[0]: cannot read granted file `s`: not granted"
        );
        assert_eq!(
            error(&missing, &[("s", b"short\n")]),
            "hs256_secrets[0]: secret shorter than 32 bytes"
        );

        let pem = Config {
            rs256_public_keys: vec![
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into(),
            ],
            ..Config::default()
        };
        assert!(error(&pem, &[]).starts_with("rs256_public_keys[0]: not an SPKI RSA public key"));

        let jwks = Config {
            jwks_file: Some("jwks".into()),
            ..Config::default()
        };
        assert!(error(&jwks, &[("jwks", b"[]")]).starts_with("jwks_file: not a JWKS document"));
        assert_eq!(
            error(&jwks, &[("jwks", br#"{"keys":[{"kty":"EC"}]}"#)]),
            "jwks_file: no RSA signing key for RS256 in the document"
        );
        assert_eq!(
            error(
                &jwks,
                &[("jwks", br#"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#)]
            ),
            "jwks_file: keys[0]: missing `n`"
        );
        assert_eq!(
            error(
                &jwks,
                &[("jwks", br#"{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}"#)]
            ),
            "jwks_file: keys[0]: `n` is not base64url"
        );
        assert!(
            error(
                &jwks,
                &[("jwks", br#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#)]
            )
            .starts_with("jwks_file: keys[0]: unusable RSA key")
        );
    }
}
