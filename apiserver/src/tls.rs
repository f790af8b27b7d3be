//! The cluster CA, the API server's serving certificate and its "kubelet
//! client" certificate (for calling the node agents), generated with rcgen
//! on first start and reused after.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
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
    /// The client certificate the API server presents to node agents.
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
}

impl Pki {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            kubelet_client_cert: dir.join("apiserver-kubelet-client.crt"),
            kubelet_client_key: dir.join("apiserver-kubelet-client.key"),
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
        // A new CA invalidates any serving or client certificate.
        let _ = std::fs::remove_file(&pki.server_cert);
        let _ = std::fs::remove_file(&pki.kubelet_client_cert);
    }
    ensure_kubelet_client(pki)?;
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

/// Creates the API server's client certificate for node agents (once per CA):
/// CN `kube-apiserver-kubelet-client`, O `system:masters`, clientAuth only.
fn ensure_kubelet_client(pki: &Pki) -> Result<(), TlsError> {
    if pki.kubelet_client_cert.exists() && pki.kubelet_client_key.exists() {
        return Ok(());
    }
    let ca_key = KeyPair::from_pem(&read(&pki.ca_key)?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(&pki.ca_cert)?, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    write_private(&pki.kubelet_client_key, &key.serialize_pem())?;
    write_private(&pki.kubelet_client_cert, &cert.pem())?;
    Ok(())
}

/// A rustls client config presenting the kubelet client certificate. The
/// agents' serving certificates are self-signed and not verified (as with
/// Kubernetes' default, no `--kubelet-certificate-authority`).
pub fn kubelet_client_config(pki: &Pki) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let cert_pem = read(&pki.kubelet_client_cert)?;
    let key_pem = read(&pki.kubelet_client_key)?;
    let invalid = |path: &Path, reason: String| TlsError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&pki.kubelet_client_cert, e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| invalid(&pki.kubelet_client_key, e.to_string()))?
        .ok_or_else(|| invalid(&pki.kubelet_client_key, "no private key found".into()))?;
    let mut config = tlsutil::unverified_client()?.with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
        assert!(kubelet_client_config(&pki).is_ok());
    }

    #[test]
    fn the_kubelet_client_certificate_is_signed_by_the_cluster_ca_for_client_auth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::in_dir(dir.path());
        ensure(&pki, &["localhost".to_string()]).expect("ensure");
        let ca_pem = pki.ca_pem().expect("ca");
        let ca = rustls_pemfile::certs(&mut ca_pem.as_bytes())
            .next()
            .expect("one")
            .expect("ca der");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        let client_pem = std::fs::read_to_string(&pki.kubelet_client_cert).expect("client");
        let client = rustls_pemfile::certs(&mut client_pem.as_bytes())
            .next()
            .expect("one")
            .expect("der");
        assert!(verifier
            .verify_client_cert(&client, &[], rustls::pki_types::UnixTime::now())
            .is_ok());
    }
}
