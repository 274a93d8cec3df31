//! Data-space PKI: a local CA, participant certificates, and the rustls configurations
//! for mutual TLS between connectors.
//!
//! A participant id is an IRI carried in the certificate as a URI SAN. The protocol
//! listener accepts clients without a certificate only so that `/.well-known/dspace-version`
//! stays public; every DSP route requires a verified [`PeerIdentity`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The verified participant id of a TLS peer, taken from its certificate's URI SAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub String);

/// PEM files of one participant: its certificate, key and the data-space CA bundle.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Data-space trust anchors (PEM, one or more certificates).
    pub ca: PathBuf,
    /// This participant's certificate chain (PEM).
    pub cert: PathBuf,
    /// This participant's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Loaded TLS material of one participant.
#[derive(Clone)]
pub struct TlsMaterial {
    /// Trust anchors for peers.
    pub roots: Arc<RootCertStore>,
    /// Own certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Own private key.
    key: Arc<PrivateKeyDer<'static>>,
    /// PEM of the chain, for tonic.
    pub cert_pem: Vec<u8>,
    /// PEM of the key, for tonic.
    pub key_pem: Vec<u8>,
    /// PEM of the CA bundle, for clients.
    pub ca_pem: Vec<u8>,
}

impl TlsMaterial {
    /// Reads and checks the PEM files; errors name the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<Self> {
        let ca_pem = read(&files.ca, "CA bundle")?;
        let cert_pem = read(&files.cert, "certificate")?;
        let key_pem = read(&files.key, "private key")?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert =
                cert.with_context(|| format!("{}: not a PEM certificate", files.ca.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{}: unusable CA certificate", files.ca.display()))?;
        }
        if roots.is_empty() {
            bail!(
                "{}: no certificate found in the CA bundle",
                files.ca.display()
            );
        }
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: not a PEM certificate", files.cert.display()))?;
        if chain.is_empty() {
            bail!("{}: no certificate found", files.cert.display());
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .with_context(|| format!("{}: not a PEM private key", files.key.display()))?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key: Arc::new(key),
            cert_pem,
            key_pem,
            ca_pem,
        })
    }

    /// The participant id in our own certificate.
    pub fn own_participant_id(&self) -> Result<String> {
        participant_id_of(&self.chain[0])
    }

    /// Server config of the protocol listener: client certificates are verified against the
    /// data-space CA when presented, and optional so that the well-known document stays public.
    pub fn protocol_server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let verifier = WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(self.chain.clone(), self.key.clone_key())
        .context("own certificate and key do not match")?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Signs `message` with our certificate's key: a proof by the holder of this certificate
    /// (a token delegation, see [`crate::holder`]). Returns the TLS scheme and the signature.
    pub fn sign(&self, message: &[u8]) -> Result<(rustls::SignatureScheme, Vec<u8>)> {
        use rustls::SignatureScheme as S;
        let key = rustls::crypto::ring::sign::any_supported_type(&self.key)
            .context("our private key cannot sign")?;
        let signer = key
            .choose_scheme(&[
                S::ECDSA_NISTP256_SHA256,
                S::ECDSA_NISTP384_SHA384,
                S::ED25519,
                S::RSA_PSS_SHA256,
            ])
            .context("our key type has no signature scheme usable for proofs")?;
        let signature = signer.sign(message).context("signing")?;
        Ok((signer.scheme(), signature))
    }

    /// A verifier of client certificates against the data-space CA.
    pub fn client_verifier(&self) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .context("building the client certificate verifier")
    }

    /// Client config for calls to peer connectors: presents our certificate, verifies theirs.
    /// ALPN is left to the HTTP connector.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(self.roots.clone())
        .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
        .context("own certificate and key do not match")?;
        Ok(cfg)
    }
}

impl TlsMaterial {
    /// Client config for calls to one participant: as [`TlsMaterial::client_config`], and the
    /// server's certificate must also carry `participant_id` as its URI SAN, so that a
    /// connector address cannot impersonate the provider the operator named.
    pub fn client_config_for(&self, participant_id: &str) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots.clone(),
            provider.clone(),
        )
        .build()
        .context("building the server certificate verifier")?;
        let verifier = Arc::new(ExpectParticipant {
            inner,
            expected: participant_id.to_string(),
        });
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .context("own certificate and key do not match")?;
        Ok(cfg)
    }
}

/// The WebPKI server check, plus: the certificate names the expected participant.
#[derive(Debug)]
struct ExpectParticipant {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: String,
}

impl rustls::client::danger::ServerCertVerifier for ExpectParticipant {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match participant_id_of(end_entity) {
            Ok(id) if id == self.expected => Ok(verified),
            Ok(id) => Err(rustls::Error::General(format!(
                "the peer's certificate names participant {id}, not {}",
                self.expected
            ))),
            Err(e) => Err(rustls::Error::General(e.to_string())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read the {what} {}: check [tls] in the config, or create one with `sluis certs`",
            path.display()
        )
    })
}

/// Extracts the participant id (first URI SAN) from a DER certificate.
pub fn participant_id_of(cert: &CertificateDer<'_>) -> Result<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| anyhow!("unparseable certificate: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| anyhow!("bad subjectAltName: {e}"))?
        .ok_or_else(|| anyhow!("certificate has no subjectAltName"))?;
    san.value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .ok_or_else(|| anyhow!("certificate carries no participant id (URI SAN)"))
}

/// A generated certificate and key, PEM-encoded.
pub struct IssuedCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
}

/// Creates a self-signed data-space CA.
pub fn create_ca(name: &str) -> Result<IssuedCert> {
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).context("self-signing the CA")?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a participant certificate (server and client auth) signed by the CA.
///
/// `hosts` are DNS names or IP addresses the participant's listeners are reached at.
pub fn issue_participant_cert(
    ca: &IssuedCert,
    participant_id: &str,
    hosts: &[String],
) -> Result<IssuedCert> {
    issue_participant_cert_with_claims(ca, participant_id, hosts, &[])
}

/// [`issue_participant_cert`] with further URI SANs after the participant id: claims such as
/// the party collections the participant belongs to (catalogue-scope visibility reads them).
pub fn issue_participant_cert_with_claims(
    ca: &IssuedCert,
    participant_id: &str,
    hosts: &[String],
    claims: &[&str],
) -> Result<IssuedCert> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("reading the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).context("reading the CA")?;
    let key = KeyPair::generate().context("generating the participant key")?;
    let mut params = CertificateParams::new(hosts.to_vec())
        .with_context(|| format!("invalid host names {hosts:?}"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, participant_id);
    let uri = participant_id
        .to_string()
        .try_into()
        .map_err(|_| anyhow!("participant id {participant_id:?} is not an ASCII IRI"))?;
    params.subject_alt_names.push(SanType::URI(uri));
    for claim in claims {
        let uri = claim
            .to_string()
            .try_into()
            .map_err(|_| anyhow!("claim {claim:?} is not an ASCII IRI"))?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the participant certificate")?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a CA and one participant's files into `dir` and returns their paths.
pub fn write_participant_files(
    dir: &Path,
    ca: &IssuedCert,
    participant: &IssuedCert,
) -> Result<TlsFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    write_file(&files.ca, ca.cert_pem.as_bytes())?;
    write_file(&files.cert, participant.cert_pem.as_bytes())?;
    write_private(&files.key, participant.key_pem.as_bytes())?;
    Ok(files)
}

/// Writes a file, naming it in the error.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes a secret readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificate_carries_participant_id_and_chains_to_ca() {
        let ca = create_ca("Test CA").unwrap();
        let leaf =
            issue_participant_cert(&ca, "did:web:provider.example", &["127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = write_participant_files(dir.path(), &ca, &leaf).unwrap();
        let material = TlsMaterial::load(&files).unwrap();
        assert_eq!(
            material.own_participant_id().unwrap(),
            "did:web:provider.example"
        );
        material.protocol_server_config().unwrap();
        material.client_config().unwrap();
    }

    #[test]
    fn missing_files_are_named() {
        let err = TlsMaterial::load(&TlsFiles {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        })
        .err()
        .unwrap();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }
}
