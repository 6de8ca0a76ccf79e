//! HTTPS termination: the configured certificates, chosen by the name the client asks for (SNI).
//!
//! As LAIN's webrouter did, a request is served with the first configured certificate valid for
//! its server name (wildcards included, checked by webpki the way clients check them); a client
//! that sends no name, or a name no certificate covers, gets the first certificate. Clients may
//! speak HTTP/2 or HTTP/1.1 (ALPN). rustls with the *ring* provider, which the Docker client
//! already builds.

use super::CertificateConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// Why the certificates cannot be used; names the `[[router.certificates]]` entry.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM.
    #[error("router.certificates[{index}]: {what} {path}: {reason}")]
    File {
        /// Entry number.
        index: usize,
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// One certificate chain with its key.
#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
}

impl Entry {
    fn covers(&self, name: &str) -> bool {
        let (Some(leaf), Ok(name)) = (self.key.cert.first(), ServerName::try_from(name)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

/// Picks a certificate by SNI.
#[derive(Debug)]
struct BySni {
    entries: Vec<Entry>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|name| self.entries.iter().find(|e| e.covers(name)))
            .or_else(|| self.entries.first())?;
        Some(chosen.key.clone())
    }
}

fn load(index: usize, c: &CertificateConfig) -> Result<Entry, TlsError> {
    let file_error = |what, path: &Path, reason: String| TlsError::File {
        index,
        what,
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .and_then(Iterator::collect)
        .map_err(|e| file_error("certificate", &c.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "certificate",
            &c.cert,
            "no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key)
        .map_err(|e| file_error("key", &c.key, e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| file_error("key", &c.key, e.to_string()))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().map_err(|e| {
        file_error(
            "key",
            &c.key,
            format!("does not match the certificate: {e}"),
        )
    })?;
    Ok(Entry { key: Arc::new(key) })
}

/// The server configuration for `certificates` (at least one).
pub fn server_config(
    certificates: &[CertificateConfig],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let entries = certificates
        .iter()
        .enumerate()
        .map(|(i, c)| load(i, c))
        .collect::<Result<Vec<_>, _>>()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { entries }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
