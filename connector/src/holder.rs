//! Who may present a data-plane token: the participant it names, or the delegate its holder
//! named with a proof (see [`sluis_policy::token`] for the model).
//!
//! Under mutual TLS the caller is the participant id in its client certificate. A token's
//! holder is its grant's consumer, passed on by each delegation in turn; a delegation counts
//! only if its certificate is one of the data space (verified against the CA), names the
//! holder before it, and its key signed the delegation.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use sluis_policy::token::{self, Delegation, VerifiedToken};

use crate::tls::{TlsMaterial, participant_id_of};

/// Checks the holder chain of tokens against the data space's PKI.
#[derive(Clone)]
pub struct Holders {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl Holders {
    /// Checks delegations against the CA of `tls`.
    pub fn new(tls: &TlsMaterial) -> Result<Self> {
        Ok(Self {
            verifier: tls.client_verifier()?,
        })
    }

    /// The participant `verified` belongs to now. The error says which delegation is not
    /// valid and why, without echoing its content.
    pub fn bound(&self, verified: &VerifiedToken) -> Result<String, String> {
        let mut holder = verified.grant.consumer.clone();
        for (i, d) in verified.delegations.iter().enumerate() {
            self.check(d, &holder)
                .map_err(|why| format!("delegation {} of the token is not valid: {why}", i + 1))?;
            holder = d.delegate.clone();
        }
        Ok(holder)
    }

    fn check(&self, d: &Delegation, holder: &str) -> Result<(), &'static str> {
        let cert = CertificateDer::from(d.certificate.as_slice());
        self.verifier
            .verify_client_cert(&cert, &[], UnixTime::now())
            .map_err(|_| "its certificate is not one of this data space")?;
        if participant_id_of(&cert).ok().as_deref() != Some(holder) {
            return Err("it was not made by the token's holder");
        }
        verify_signature(&cert, d.scheme, &d.message, &d.signature)
    }
}

/// Checks `signature` over `message` with the public key of `cert`.
fn verify_signature(
    cert: &CertificateDer<'_>,
    scheme: u16,
    message: &[u8],
    signature: &[u8],
) -> Result<(), &'static str> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| "its certificate cannot be read")?;
    let public_key = parsed.public_key().subject_public_key.data.as_ref();
    let scheme = rustls::SignatureScheme::from(scheme);
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, algs)| *algs)
        .ok_or("its signature scheme is not supported")?;
    candidates
        .iter()
        .any(|alg| alg.verify_signature(public_key, message, signature).is_ok())
        .then_some(())
        .ok_or("its signature is not valid")
}

/// Delegates `token` (of the provider whose token key is `root_public_key_hex`) to
/// `delegate`, proved with the certificate and key of `tls`, which must be the token's holder.
pub fn delegate(
    token: &str,
    root_public_key_hex: &str,
    delegate: &str,
    tls: &TlsMaterial,
) -> Result<String> {
    let message = token::delegation_message(token, root_public_key_hex, delegate)
        .context("reading the token")?;
    let (scheme, signature) = tls.sign(&message)?;
    token::delegate(
        token,
        root_public_key_hex,
        delegate,
        tls.chain[0].as_ref(),
        u16::from(scheme),
        &signature,
    )
    .context("appending the delegation")
}
