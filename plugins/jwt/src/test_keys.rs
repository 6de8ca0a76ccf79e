//! Keys shared by the tests: one RSA key pair, generated once from a fixed seed.

use base64ct::{Base64UrlUnpadded, Encoding};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use std::sync::OnceLock;

/// A 2048-bit RSA key pair, the same in every run.
pub fn private_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateKey::new(&mut StdRng::seed_from_u64(2026), 2048).expect("key generation")
    })
}

/// `public` as an RSA signing JWK with key id `kid`.
pub fn jwk(public: &PublicKey, kid: &str) -> serde_json::Value {
    serde_json::json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": Base64UrlUnpadded::encode_string(&public.n().to_be_bytes_trimmed_vartime()),
        "e": Base64UrlUnpadded::encode_string(&public.e().to_be_bytes_trimmed_vartime()),
    })
}
