//! Verification of a bearer token: a pure function of the token, the policy, the keys and the time.
//!
//! Order of the checks (each failure is a denial with its reason, except the first):
//! 1. The token is a compact JWS: three base64url parts, the first a JSON object. Otherwise it is
//!    not ours.
//! 2. The header's `alg` is `HS256` or `RS256` and a key of that type is configured; `none`, any
//!    other algorithm, or one without a configured key is denied (so a public RSA key is never
//!    used as an HMAC secret). A `crit` header is denied: no extension is understood.
//! 3. The signature verifies with one of the candidate keys. For RS256 (RSASSA-PKCS1-v1_5 with
//!    SHA-256) a `kid` selects the JWKS keys of that id; if none has it, the keys without an id
//!    (PEM keys) are tried, and if there are none the kid is unknown.
//! 4. The claims: `exp` (required unless `require_exp` is off), `nbf` and `iat` against the time
//!    with the leeway, `iss` equal to the issuer, `aud` (a string or a list) holding the audience,
//!    a non-empty string subject, groups as a list of strings or one string (absent: none).

use crate::config::Policy;
use crate::keys::Keys;
use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use lain_sdk_guest::Principal;
use lain_sdk_guest::auth::AuthResult;
use rsa::sha2::Sha256;
use serde_json::{Map, Value};

/// A JSON object: a JWS header or a JWT claims set.
type Object = Map<String, Value>;

/// Verifies `token` at `now` (Unix seconds).
pub fn verify(token: &str, policy: &Policy, keys: &Keys, now: i64) -> AuthResult {
    match check(token, policy, keys, now) {
        Ok(principal) => AuthResult::Authenticated(principal),
        Err(rejection) => rejection,
    }
}

/// The principal, or the rejection (`NotMine` or `Denied`).
fn check(token: &str, policy: &Policy, keys: &Keys, now: i64) -> Result<Principal, AuthResult> {
    let jws = split(token).ok_or(AuthResult::NotMine)?;
    let header: Object = serde_json::from_slice(&jws.header).map_err(|_| AuthResult::NotMine)?;
    if header.contains_key("crit") {
        return Err(deny("critical header extensions are not supported"));
    }
    let valid = match header.get("alg").and_then(Value::as_str) {
        Some("HS256") if keys.hmac.is_empty() => {
            return Err(deny("alg HS256 but no HS256 secret is configured"));
        }
        Some("HS256") => keys
            .hmac
            .iter()
            .any(|secret| hs256_valid(secret, jws.signed, &jws.signature)),
        Some("RS256") if keys.rsa.is_empty() => {
            return Err(deny("alg RS256 but no RS256 key is configured"));
        }
        Some("RS256") => rs256_candidates(&header, keys)?.any(|key| {
            key.pkcs1v15_verify::<Sha256>(jws.signed, &jws.signature)
                .is_ok()
        }),
        Some("none") => return Err(deny("alg none is not accepted")),
        Some(other) => return Err(deny(&format!("alg {other} is not supported"))),
        None => return Err(deny("no alg in the header")),
    };
    if !valid {
        return Err(deny("bad signature"));
    }
    let claims: Object = serde_json::from_slice(&jws.payload)
        .map_err(|_| deny("the claims are not a JSON object"))?;
    check_claims(&claims, policy, now)
}

/// A compact JWS, its parts decoded.
struct Jws<'t> {
    header: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
    /// The signing input, `header.payload` as sent.
    signed: &'t [u8],
}

/// Splits and decodes a compact JWS: three base64url parts, the first two non-empty.
fn split(token: &str) -> Option<Jws<'_>> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    let signed = token.get(..header.len() + 1 + payload.len())?.as_bytes();
    let decode = |part: &str| Base64UrlUnpadded::decode_vec(part).ok();
    Some(Jws {
        header: decode(header)?,
        payload: decode(payload)?,
        signature: decode(signature)?,
        signed,
    })
}

/// Whether `signature` is the HMAC-SHA256 of `signed` under `secret` (compared in constant time).
fn hs256_valid(secret: &[u8], signed: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(signed);
    mac.verify_slice(signature).is_ok()
}

/// The RSA keys to try for a token with this header (see the module docs).
fn rs256_candidates<'k>(
    header: &Object,
    keys: &'k Keys,
) -> Result<impl Iterator<Item = &'k rsa::PublicKey>, AuthResult> {
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(deny("kid is not a string")),
    };
    let has_kid = |kid: &str| keys.rsa.iter().any(|k| k.kid.as_deref() == Some(kid));
    // `None`: try every key; `Some(id)`: only the keys whose id is `id` (`None` for PEM keys).
    let select: Option<Option<&str>> = match kid {
        None => None,
        Some(kid) if has_kid(kid) => Some(Some(kid)),
        Some(_) if keys.rsa.iter().any(|k| k.kid.is_none()) => Some(None),
        Some(kid) => return Err(deny(&format!("unknown kid {kid:?}"))),
    };
    Ok(keys
        .rsa
        .iter()
        .filter(move |k| select.is_none_or(|id| k.kid.as_deref() == id))
        .map(|k| &k.key))
}

/// Checks the time, issuer and audience claims and reads the principal.
fn check_claims(claims: &Object, policy: &Policy, now: i64) -> Result<Principal, AuthResult> {
    let leeway = policy.leeway;
    let exp = numeric_date(claims, "exp")?;
    match exp {
        Some(exp) if now >= exp.saturating_add(leeway) => return Err(deny("expired")),
        None if policy.require_exp => return Err(deny("no exp claim")),
        _ => {}
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(deny("not valid yet (nbf)"));
    }
    if numeric_date(claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(deny("issued in the future (iat)"));
    }
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == policy.issuer => {}
        Some(iss) => return Err(deny(&format!("issuer {iss:?} is not {:?}", policy.issuer))),
        None => return Err(deny("no iss claim")),
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == policy.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&policy.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(deny(&format!("audience {:?} not in aud", policy.audience)));
    }
    let subject = match claims.get(&policy.subject_claim) {
        Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
        _ => return Err(deny(&format!("no string {} claim", policy.subject_claim))),
    };
    Ok(Principal {
        subject,
        groups: groups(claims, &policy.groups_claim)?,
        provider: "jwt".into(),
        expires_at: exp,
    })
}

/// A NumericDate claim as whole seconds; absent is `None`, anything but a number is denied.
fn numeric_date(claims: &Object, name: &str) -> Result<Option<i64>, AuthResult> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            // Fractional or huge dates: `as` saturates, which keeps the comparisons meaningful.
            .or_else(|| value.as_f64().map(|f| f.floor() as i64))
            .map(Some)
            .ok_or_else(|| deny(&format!("{name} is not a number"))),
    }
}

/// The groups claim: a list of strings, one string, or absent (no groups).
fn groups(claims: &Object, name: &str) -> Result<Vec<String>, AuthResult> {
    let malformed = || deny(&format!("{name} claim is not a list of strings"));
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(group)) => Ok(vec![group.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(String::from).ok_or_else(malformed))
            .collect(),
        Some(_) => Err(malformed()),
    }
}

/// A denial with `reason`.
fn deny(reason: &str) -> AuthResult {
    AuthResult::Denied(reason.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RsaKey;
    use crate::test_keys::private_key;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn policy() -> Policy {
        Policy {
            issuer: "https://sso.example.com".into(),
            audience: "lain".into(),
            leeway: 60,
            subject_claim: "sub".into(),
            groups_claim: "groups".into(),
            require_exp: true,
        }
    }

    fn hs256_keys() -> Keys {
        Keys {
            hmac: vec![SECRET.to_vec()],
            rsa: vec![],
        }
    }

    /// RS256 keys: the test key under kid `k1` (as from a JWKS document).
    fn rs256_keys() -> Keys {
        let key = private_key().to_public_key();
        Keys {
            hmac: vec![],
            rsa: vec![RsaKey {
                kid: Some("k1".into()),
                key,
            }],
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://sso.example.com",
            "aud": ["other", "lain"],
            "sub": "alice",
            "groups": ["dev", "admins"],
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "exp": NOW + 300,
        })
    }

    fn b64(bytes: &[u8]) -> String {
        Base64UrlUnpadded::encode_string(bytes)
    }

    /// A compact JWS of `header` and `claims`, signed by `sign` over the signing input.
    fn token(header: Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = sign(signed.as_bytes());
        format!("{signed}.{}", b64(&signature))
    }

    fn hmac(secret: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> {
        move |data| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }

    fn rsa(data: &[u8]) -> Vec<u8> {
        private_key().pkcs1v15_sign::<Sha256>(data).unwrap()
    }

    fn hs256(claims: &Value) -> String {
        token(json!({"alg": "HS256", "typ": "JWT"}), claims, hmac(SECRET))
    }

    fn rs256(claims: &Value) -> String {
        token(
            json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
            claims,
            rsa,
        )
    }

    fn with(changes: Value) -> Value {
        let mut claims = claims();
        if let (Value::Object(claims), Value::Object(changes)) = (&mut claims, changes) {
            for (key, value) in changes {
                match value {
                    Value::Null => claims.remove(&key),
                    value => claims.insert(key, value),
                };
            }
        }
        claims
    }

    fn denial(result: AuthResult) -> String {
        match result {
            AuthResult::Denied(reason) => reason,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn valid_hs256_token() {
        match verify(&hs256(&claims()), &policy(), &hs256_keys(), NOW) {
            AuthResult::Authenticated(p) => {
                assert_eq!(p.subject, "alice");
                assert_eq!(p.groups, ["dev", "admins"]);
                assert_eq!(p.provider, "jwt");
                assert_eq!(p.expires_at, Some(NOW + 300));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn valid_rs256_token() {
        let token = rs256(&with(json!({"aud": "lain", "groups": "ops"})));
        match verify(&token, &policy(), &rs256_keys(), NOW) {
            AuthResult::Authenticated(p) => {
                assert_eq!(
                    (p.subject.as_str(), p.groups, p.expires_at),
                    ("alice", vec!["ops".to_string()], Some(NOW + 300))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_signatures_are_denied() {
        let forged = token(
            json!({"alg": "HS256"}),
            &claims(),
            hmac(b"another secret, also 32 bytes long"),
        );
        assert_eq!(
            denial(verify(&forged, &policy(), &hs256_keys(), NOW)),
            "bad signature"
        );

        // A valid RS256 token whose claims were changed after signing.
        let genuine = rs256(&claims());
        let parts: Vec<&str> = genuine.split('.').collect();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(with(json!({"sub": "root"})).to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            denial(verify(&tampered, &policy(), &rs256_keys(), NOW)),
            "bad signature"
        );
    }

    #[test]
    fn time_claims_are_checked_with_leeway() {
        let keys = hs256_keys();
        let check = |claims: Value| verify(&hs256(&claims), &policy(), &keys, NOW);
        assert_eq!(denial(check(with(json!({"exp": NOW - 60})))), "expired");
        assert!(matches!(
            check(with(json!({"exp": NOW - 59}))),
            AuthResult::Authenticated(_)
        ));
        assert_eq!(denial(check(with(json!({"exp": null})))), "no exp claim");
        assert_eq!(
            denial(check(with(json!({"exp": "tomorrow"})))),
            "exp is not a number"
        );
        assert_eq!(
            denial(check(with(json!({"nbf": NOW + 61})))),
            "not valid yet (nbf)"
        );
        assert!(matches!(
            check(with(json!({"nbf": NOW + 60}))),
            AuthResult::Authenticated(_)
        ));
        assert_eq!(
            denial(check(with(json!({"iat": NOW + 61})))),
            "issued in the future (iat)"
        );

        let lenient = Policy {
            require_exp: false,
            ..policy()
        };
        let no_exp = verify(&hs256(&with(json!({"exp": null}))), &lenient, &keys, NOW);
        assert!(matches!(no_exp, AuthResult::Authenticated(p) if p.expires_at.is_none()));
    }

    #[test]
    fn issuer_audience_subject_and_groups_are_checked() {
        let keys = hs256_keys();
        let check = |claims: Value| verify(&hs256(&claims), &policy(), &keys, NOW);
        assert_eq!(
            denial(check(with(json!({"iss": "https://evil.example.com"})))),
            "issuer \"https://evil.example.com\" is not \"https://sso.example.com\""
        );
        assert_eq!(denial(check(with(json!({"iss": null})))), "no iss claim");
        assert_eq!(
            denial(check(with(json!({"aud": "other"})))),
            "audience \"lain\" not in aud"
        );
        assert_eq!(
            denial(check(with(json!({"aud": ["a", "b"]})))),
            "audience \"lain\" not in aud"
        );
        assert_eq!(
            denial(check(with(json!({"aud": null})))),
            "audience \"lain\" not in aud"
        );
        assert_eq!(
            denial(check(with(json!({"sub": ""})))),
            "no string sub claim"
        );
        assert_eq!(
            denial(check(with(json!({"groups": ["a", 1]})))),
            "groups claim is not a list of strings"
        );
        assert!(
            matches!(check(with(json!({"groups": null}))), AuthResult::Authenticated(p) if p.groups.is_empty())
        );

        let custom = Policy {
            subject_claim: "email".into(),
            groups_claim: "roles".into(),
            ..policy()
        };
        let token = hs256(&with(
            json!({"email": "alice@example.com", "roles": ["ops"]}),
        ));
        match verify(&token, &custom, &keys, NOW) {
            AuthResult::Authenticated(p) => assert_eq!(
                (p.subject.as_str(), p.groups),
                ("alice@example.com", vec!["ops".to_string()])
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alg_none_and_unsupported_algs_are_denied() {
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims().to_string().as_bytes())
        );
        assert_eq!(
            denial(verify(&none, &policy(), &hs256_keys(), NOW)),
            "alg none is not accepted"
        );
        let es256 = token(json!({"alg": "ES256"}), &claims(), hmac(SECRET));
        assert_eq!(
            denial(verify(&es256, &policy(), &hs256_keys(), NOW)),
            "alg ES256 is not supported"
        );
        let no_alg = token(json!({"typ": "JWT"}), &claims(), hmac(SECRET));
        assert_eq!(
            denial(verify(&no_alg, &policy(), &hs256_keys(), NOW)),
            "no alg in the header"
        );
        let crit = token(
            json!({"alg": "HS256", "crit": ["exp"]}),
            &claims(),
            hmac(SECRET),
        );
        assert_eq!(
            denial(verify(&crit, &policy(), &hs256_keys(), NOW)),
            "critical header extensions are not supported"
        );
    }

    #[test]
    fn hs256_against_an_rs256_only_config_is_denied() {
        // Key confusion: the attacker signs with HMAC, using the server's public key as the secret.
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let public_pem = private_key()
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let confused = token(
            json!({"alg": "HS256", "kid": "k1"}),
            &claims(),
            hmac(public_pem.as_bytes()),
        );
        assert_eq!(
            denial(verify(&confused, &policy(), &rs256_keys(), NOW)),
            "alg HS256 but no HS256 secret is configured"
        );
        assert_eq!(
            denial(verify(&rs256(&claims()), &policy(), &hs256_keys(), NOW)),
            "alg RS256 but no RS256 key is configured"
        );
    }

    #[test]
    fn kid_selects_the_key() {
        let unknown = token(json!({"alg": "RS256", "kid": "k2"}), &claims(), rsa);
        assert_eq!(
            denial(verify(&unknown, &policy(), &rs256_keys(), NOW)),
            "unknown kid \"k2\""
        );

        // A token without kid is tried against every key.
        let no_kid = token(json!({"alg": "RS256"}), &claims(), rsa);
        assert!(matches!(
            verify(&no_kid, &policy(), &rs256_keys(), NOW),
            AuthResult::Authenticated(_)
        ));

        // A kid no JWKS key has falls back to the keys without id (PEM keys).
        let mut keys = rs256_keys();
        let other = rsa::PrivateKey::new(
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1),
            1024,
        )
        .unwrap();
        keys.rsa[0].key = other.to_public_key();
        keys.rsa.push(RsaKey {
            kid: None,
            key: private_key().to_public_key(),
        });
        assert!(matches!(
            verify(&unknown, &policy(), &keys, NOW),
            AuthResult::Authenticated(_)
        ));
        // ...but a kid that names a key is verified with that key only.
        assert_eq!(
            denial(verify(&rs256(&claims()), &policy(), &keys, NOW)),
            "bad signature"
        );
    }

    #[test]
    fn what_is_not_a_compact_jws_is_not_ours() {
        let keys = hs256_keys();
        let valid = hs256(&claims());
        let unsigned = valid.rsplit_once('.').map_or("", |(signed, _)| signed);
        let opaque = [
            "",
            "deadbeefcafe",
            unsigned,
            "a.b.c.d",
            ".e30.",
            "e30..c2ln",
            "e30.e30.c2lnbmF0dXJl=",
            "e30.e30.!!",
            "eyJ.e30.",
            "bm90IGpzb24.e30.",
        ];
        for token in opaque {
            assert!(
                matches!(verify(token, &policy(), &keys, NOW), AuthResult::NotMine),
                "{token:?} was judged"
            );
        }
        // A JWS whose claims are not JSON is ours, and denied.
        let not_json = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(b"not json"));
        let signature = hmac(SECRET)(not_json.as_bytes());
        let token = format!("{not_json}.{}", b64(&signature));
        assert_eq!(
            denial(verify(&token, &policy(), &keys, NOW)),
            "the claims are not a JSON object"
        );
    }
}
