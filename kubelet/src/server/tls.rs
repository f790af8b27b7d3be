//! TLS of the agent's server: a self-signed serving certificate made at
//! start (nothing verifies it: the API server, like Kubernetes without
//! `--kubelet-certificate-authority`, does not), and client certificates
//! required and verified against the cluster CA.

use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors building the server's TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The serving certificate could not be generated.
    #[error("cannot generate the agent's serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// No CA certificate to verify clients against.
    #[error("no client CA: the agent's server needs the cluster CA to verify the API server")]
    NoClientCa,
    /// The CA or the certificate was rejected.
    #[error("invalid client CA: {0}")]
    ClientCa(String),
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server config serving a fresh self-signed certificate for
/// `names` (IP addresses or DNS names), requiring client certificates
/// signed by one of `client_ca` (DER).
pub fn server_config(
    names: &[String],
    client_ca: &[Vec<u8>],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in client_ca {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoClientCa);
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "skiff-agent");
    for name in names {
        params.subject_alt_names.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into()?),
        });
    }
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The DER certificates in a PEM bundle (for callers holding the CA as PEM).
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_certificates_decode_to_the_der_bytes() {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["ca".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let decoded = pem_certificates(&cert.pem());
        assert_eq!(decoded, vec![cert.der().to_vec()]);
    }

    #[test]
    fn a_server_without_a_client_ca_is_refused() {
        assert!(matches!(
            server_config(&["127.0.0.1".into()], &[]),
            Err(TlsError::NoClientCa)
        ));
    }
}
