//! The cluster CA and the API server's serving certificate, generated with
//! rcgen on first start and reused after.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Errors creating or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate or key in {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// PEM files of the cluster's PKI.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Pki {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }

    /// The CA certificate in PEM, for kubeconfigs.
    pub fn ca_pem(&self) -> Result<String, TlsError> {
        read(&self.ca_cert)
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Creates the CA (once) and a serving certificate for `sans` (whenever the
/// names change or it is missing).
pub fn ensure(pki: &Pki, sans: &[String]) -> Result<(), TlsError> {
    if !pki.ca_cert.exists() || !pki.ca_key.exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "skiff-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.self_signed(&key)?;
        write_private(&pki.ca_key, &key.serialize_pem())?;
        write_private(&pki.ca_cert, &cert.pem())?;
        // A new CA invalidates any serving certificate.
        let _ = std::fs::remove_file(&pki.server_cert);
    }
    let names_file = pki.server_cert.with_extension("sans");
    let wanted = sans.join(",");
    let current = std::fs::read_to_string(&names_file).unwrap_or_default();
    if pki.server_cert.exists() && pki.server_key.exists() && current == wanted {
        return Ok(());
    }
    let ca_key_pem = read(&pki.ca_key)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&read(&pki.ca_cert)?, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "skiff-apiserver");
    for san in sans {
        params
            .subject_alt_names
            .push(match san.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(san.clone().try_into()?),
            });
    }
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    write_private(&pki.server_key, &key.serialize_pem())?;
    write_private(&pki.server_cert, &cert.pem())?;
    write_private(&names_file, &wanted)?;
    Ok(())
}

/// A rustls server config for the serving certificate, offering HTTP/2 and 1.1.
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_pem = read(&pki.server_cert)?;
    let key_pem = read(&pki.server_key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            path: pki.server_cert.clone(),
            reason: e.to_string(),
        })?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| TlsError::Invalid {
            path: pki.server_key.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Invalid {
            path: pki.server_key.clone(),
            reason: "no private key found".to_string(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::in_dir(dir.path());
        let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        ensure(&pki, &sans).expect("first");
        let ca = pki.ca_pem().expect("ca");
        let server = std::fs::read_to_string(&pki.server_cert).expect("server");
        ensure(&pki, &sans).expect("second");
        assert_eq!(pki.ca_pem().expect("ca"), ca);
        assert_eq!(
            std::fs::read_to_string(&pki.server_cert).expect("server"),
            server
        );
        assert!(server_config(&pki).is_ok());
    }
}
