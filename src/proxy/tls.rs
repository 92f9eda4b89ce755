//! The TLS listener's certificate: read from PEM files, or made at start-up from a private
//! CA (rcgen) whose certificate clients are told to trust (`AWS_CA_BUNDLE`).
//!
//! TLS is terminated on top of the connection's [`super::conn::ClientStream`], so the faults
//! that act on the TCP connection (reset, blackhole) still act on it, under TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the TLS listener could not be set up (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1; a CA key must be PKCS#8)")]
    NoKey(PathBuf),
    #[error("cannot write the CA certificate to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} is not a usable CA: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("rustls refused the certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server configuration from a certificate chain and a private key in PEM files.
pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsSetupError::Read {
            path: path.into(),
            source,
        })
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate(cert.into()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsSetupError::NoKey(key.into()))?;
    server_config(chain, key_der)
}

/// A private CA and a certificate it signs for `names` (DNS names or IP addresses); the CA
/// certificate is written to `ca_path` for clients to trust. A new CA each start: nothing
/// secret is written to disk.
pub fn self_signed(names: &[String], ca_path: &Path) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let ca = PrivateCa::generate()?;
    ca.write(ca_path)?;
    ca.server_config(names)
}

/// The certificate authority clients are told to trust: made at start-up, or loaded from
/// files (`--tls-ca-cert`/`--tls-ca-key`) so that a CA installed once in a trust store serves
/// every run. It signs the TLS listener's certificate and, in forward-proxy mode, one
/// certificate per host a client asks to reach.
pub struct PrivateCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: CertificateDer<'static>,
    pem: String,
}

impl PrivateCa {
    pub fn generate() -> Result<PrivateCa, TlsSetupError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "s3chaos private CA (generated at start-up)");
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(PrivateCa {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and private key (PKCS#8), both PEM. Checked by signing a
    /// certificate and verifying it, so a key that does not belong to the certificate is
    /// refused at start-up rather than by every client.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<PrivateCa, TlsSetupError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TlsSetupError::Read {
                path: path.into(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| TlsSetupError::NoCertificate(cert.into()))?;
        let signing_key = rcgen::KeyPair::from_pem(&key_pem).map_err(|_| TlsSetupError::NoKey(key.into()))?;
        let issuer = rcgen::Issuer::from_ca_cert_der(&der, signing_key).map_err(|e| TlsSetupError::BadCa {
            path: cert.into(),
            reason: e.to_string(),
        })?;
        let ca = PrivateCa {
            issuer,
            cert: der,
            pem: cert_pem,
        };
        ca.check_signs().map_err(|reason| TlsSetupError::BadCa {
            path: cert.into(),
            reason,
        })?;
        Ok(ca)
    }

    /// Signs a certificate for `s3chaos.invalid` and verifies it against the CA certificate.
    fn check_signs(&self) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier;
        let leaf = rcgen::CertificateParams::new(vec!["s3chaos.invalid".to_owned()])
            .and_then(|p| p.signed_by(&rcgen::KeyPair::generate()?, &self.issuer))
            .map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("s3chaos.invalid").map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(leaf.der(), &[], &name, &[], rustls::pki_types::UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("a certificate it signs does not verify ({e}): is the key the certificate's?"))
    }

    /// Writes the CA certificate (never its key) for clients to trust.
    pub fn write(&self, path: &Path) -> Result<(), TlsSetupError> {
        std::fs::write(path, &self.pem).map_err(|source| TlsSetupError::Write {
            path: path.into(),
            source,
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    /// A server configuration with a fresh certificate for `names` (IP addresses become IP
    /// SANs, the rest DNS names), signed by this CA.
    pub fn server_config(&self, names: &[String]) -> Result<Arc<ServerConfig>, TlsSetupError> {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().map_or("s3chaos", String::as_str));
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        server_config(vec![leaf.der().clone(), self.cert.clone()], key)
    }
}

/// Keeps only HTTP/1.1 in a server configuration's ALPN offer (`--no-http2`).
pub fn http1_only(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut config = (**config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // h2 first, as a client that offers both prefers it; `--no-http2` takes it out.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_load_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
        let config = from_pem_files(&cert_path, &key_path).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(http1_only(&config).alpn_protocols, vec![b"http/1.1".to_vec()]);

        let err = from_pem_files(&key_path, &key_path).unwrap_err();
        assert!(matches!(err, TlsSetupError::NoCertificate(_)), "{err}");
        let err = from_pem_files(&cert_path, &cert_path).unwrap_err();
        assert!(matches!(err, TlsSetupError::NoKey(_)), "{err}");
        let err = from_pem_files(&dir.path().join("missing.pem"), &key_path).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn the_generated_ca_is_written_for_clients() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        self_signed(
            &["127.0.0.1".to_owned(), "s3.test".to_owned(), "*.s3.test".to_owned()],
            &ca,
        )
        .unwrap();
        let pem = std::fs::read(&ca).unwrap();
        assert_eq!(CertificateDer::pem_slice_iter(&pem).count(), 1);
        let err = self_signed(&["localhost".to_owned()], &dir.path().join("no/such/dir/ca.pem")).unwrap_err();
        assert!(matches!(err, TlsSetupError::Write { .. }), "{err}");
    }

    /// A CA kept in files (made here with rcgen, as `openssl req -x509` would) signs
    /// certificates that verify against it; a key that is not the certificate's is refused.
    #[test]
    fn a_ca_loads_from_files_and_a_wrong_key_is_refused() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path, other_key) = (
            dir.path().join("ca.pem"),
            dir.path().join("ca.key"),
            dir.path().join("other.key"),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();

        let ca = PrivateCa::from_pem_files(&cert_path, &key_path).unwrap();
        assert_eq!(ca.pem(), cert.pem());
        let config = ca.server_config(&["s3.us-east-1.amazonaws.com".to_owned()]).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");

        let err = PrivateCa::from_pem_files(&cert_path, &other_key).err().unwrap();
        assert!(err.to_string().contains("is the key the certificate's?"), "{err}");
        let err = PrivateCa::from_pem_files(&key_path, &key_path).err().unwrap();
        assert!(matches!(err, TlsSetupError::NoCertificate(_)), "{err}");
    }
}
