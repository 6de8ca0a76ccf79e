//! Secret files (LAIN's lvault): per app and proc, encrypted at rest in the state store.
//!
//! [`vault::Vault`] keeps each file as an AEAD ciphertext (ChaCha20-Poly1305 from *ring*, which
//! the TLS stack already builds) under a cluster master key read from a key file. The app, proc
//! and path are the associated data, so a ciphertext copied to another name fails to open, and
//! any changed byte is reported as tampering rather than returned. Rotation re-encrypts every
//! file under a new key while both keys can still open them, so readers never see a gap.
//!
//! The reconciler reads an instance's declared `secret_files` from the vault when it creates the
//! instance and hands them to the runtime, which places them before the first start (Docker:
//! into the container's own layer; process runtime: 0600 files in the instance's directory).
//! Contents never enter a spec that is stored, a label, an env var or a log line.
//!
//! With several kernels on one etcd, every kernel needs the same key file; `rotate-key` rewrites
//! the one of the kernel that runs it, so copy the new key to the others before they restart.

mod config;
pub mod vault;

pub use config::Config;
