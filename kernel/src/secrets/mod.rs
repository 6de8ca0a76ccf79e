//! Secret files (LAIN's lvault): per app and proc, encrypted at rest in the state store.
//!
//! [`vault::Vault`] keeps each file as an AEAD ciphertext (ChaCha20-Poly1305 from *ring*, which
//! the TLS stack already builds) under a cluster master key read from a key file. The app, proc
//! and path are the associated data, so a ciphertext copied to another name fails to open, and
//! any changed byte is reported as tampering rather than returned. Rotation re-encrypts every
//! file under a new key while both keys can still open them, so readers never see a gap.
//!
//! Status: the vault and its tests. Placing secrets into instances, the API, `lain secret` and
//! the rights that guard them are the rest of issue 7.

pub mod vault;
