//! Biscuit tokens bound to an agreement and to their holder.
//!
//! The provider's [`TokenIssuer`] mints a token whose authority block states the grant
//! (agreement, transfer, dataset, consumer, expiry) and checks the dataset and the expiry.
//! Anyone holding a token can [`attenuate`] it offline by appending a block with further
//! checks (earlier expiry, fewer columns); a block can only add checks, so it can never
//! widen the grant. The data plane verifies with [`TokenVerifier`] and revokes by the
//! transfer id of the (trusted) authority block.
//!
//! **Holder binding.** A token is not a bearer token: it names its holder, the consumer
//! participant of the grant. The data plane accepts it only from that participant, as
//! authenticated by the call itself (under mutual TLS, the participant id in the URI SAN of
//! the client certificate, as on the DSP listener; under DCP, a proof by the holder's key is
//! the same idea). A copy of the token in anyone else's hands is useless.
//!
//! **Delegation** is an explicit act of the holder that names the delegate: [`delegate`]
//! appends a block stating the delegate, the holder's certificate and the holder's signature
//! (with the certificate's key) over [`delegation_message`], which binds the delegate to this
//! very token (the signature of its last block). The token then belongs to the delegate, and
//! only to it; the delegate may delegate again, and anyone in the chain may still
//! [`attenuate`]. This module reads the delegations ([`VerifiedToken::delegations`], in chain
//! order); the data plane checks each proof against the data space's certificate authority
//! (the certificate names the holder before it, the signature is valid) and compares the last
//! delegate, or the consumer, with the caller. Someone who only copied a token cannot delegate
//! it: that takes the holder's private key.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{Algorithm, Term};
use biscuit_auth::error::{FailedCheck, Format, Logic, Token as BiscuitError};
use biscuit_auth::{
    AuthorizerBuilder, AuthorizerLimits, Biscuit, BlockBuilder, KeyPair, PrivateKey, PublicKey,
};
use chrono::{DateTime, Utc};

/// Largest token accepted (base64 text).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Why a token was not minted or not accepted. `Display` is meant for the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a well-formed Biscuit token.
    Malformed(String),
    /// Not signed by the provider's root key (forged or tampered).
    InvalidSignature,
    /// Past its expiry (the grant's or an attenuation's).
    Expired,
    /// Issued for another dataset.
    WrongDataset,
    /// The query reads a column the token does not allow.
    ColumnNotAllowed(String),
    /// A key given in hex is not an Ed25519 key.
    InvalidKey(String),
    /// An attenuation that would not narrow the token (e.g. no columns).
    InvalidAttenuation(String),
    /// Any other refusal by the token's checks; the detail is for the provider's log only
    /// (`Display` does not show it).
    Denied(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(m) => write!(f, "the access token is malformed: {m}"),
            TokenError::InvalidSignature => write!(
                f,
                "the access token was not issued by this provider (signature invalid); request a new transfer"
            ),
            TokenError::Expired => {
                write!(f, "the access token has expired; request a new transfer")
            }
            TokenError::WrongDataset => {
                write!(f, "the access token was issued for another dataset")
            }
            TokenError::ColumnNotAllowed(c) => {
                write!(f, "the access token does not allow reading column '{c}'")
            }
            TokenError::InvalidKey(m) => write!(f, "invalid key: {m}"),
            TokenError::InvalidAttenuation(m) => write!(f, "invalid attenuation: {m}"),
            // the detail names the token's internal checks: for the operator's log, not the consumer
            TokenError::Denied(_) => write!(f, "the access token does not allow this request"),
        }
    }
}

impl std::error::Error for TokenError {}

/// What a token grants: the facts of its authority block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The agreement's `@id`.
    pub agreement_id: String,
    /// The transfer process id (revocation is by this id).
    pub transfer_id: String,
    /// The dataset the agreement is for.
    pub dataset_id: String,
    /// The consumer's participant id.
    pub consumer: String,
    /// When the token stops being valid (stored to the second).
    pub expires_at: DateTime<Utc>,
}

/// A query's claim to be checked against a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// The dataset the query reads.
    pub dataset_id: String,
    /// The current time (the verifier never reads the clock itself).
    pub now: DateTime<Utc>,
    /// The columns the query reads.
    pub columns: Vec<String>,
}

/// An accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The authority block's facts.
    pub grant: Grant,
    /// The columns left by attenuation blocks, if any narrowed them.
    pub allowed_columns: Option<Vec<String>>,
    /// When the token stops being valid: the grant's expiry or an attenuation's earlier one.
    /// A data plane ends the queries still running under the token then.
    pub expires_at: DateTime<Utc>,
    /// The delegations, in chain order: each passes the token from the holder before it
    /// (the grant's consumer for the first) to its delegate. Their proofs are not checked
    /// here (that needs the data space's PKI): see the module documentation.
    pub delegations: Vec<Delegation>,
}

/// A holder's delegation of a token to another participant (see [`delegate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The participant the token belongs to after this delegation.
    pub delegate: String,
    /// The delegating holder's certificate (DER); it must name the holder before this
    /// delegation.
    pub certificate: Vec<u8>,
    /// The TLS signature scheme of `signature` (its IANA code, e.g. `0x0403` for ECDSA P-256
    /// with SHA-256).
    pub scheme: u16,
    /// The holder's signature over `message` with the key of `certificate`.
    pub signature: Vec<u8>,
    /// What the holder signed ([`delegation_message`] of the token as it was then).
    pub message: Vec<u8>,
}

/// Longest participant id a delegation may name (bytes).
const MAX_DELEGATE_LEN: usize = 512;

/// What the holder of `token` signs to delegate it to `delegate`: it names the delegate and
/// the signature of the token's last block, so that the proof fits this token only.
pub fn delegation_message(
    token: &str,
    root_public_key_hex: &str,
    delegate: &str,
) -> Result<Vec<u8>, TokenError> {
    let biscuit = parse(token, public_key(root_public_key_hex)?)?;
    let last = biscuit
        .revocation_identifiers()
        .pop()
        .ok_or_else(|| TokenError::Malformed("the token has no block".into()))?;
    Ok(signed_delegation(&last, delegate))
}

fn signed_delegation(previous_block: &[u8], delegate: &str) -> Vec<u8> {
    let mut message = b"sluis token delegation v1\n".to_vec();
    for byte in previous_block {
        message.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    message.push(b'\n');
    message.extend_from_slice(delegate.as_bytes());
    message
}

/// Appends to `token` the delegation to `delegate`, proved by the holder's `certificate`
/// (DER) and its `signature` (TLS scheme `scheme`) over [`delegation_message`].
pub fn delegate(
    token: &str,
    root_public_key_hex: &str,
    delegate: &str,
    certificate: &[u8],
    scheme: u16,
    signature: &[u8],
) -> Result<String, TokenError> {
    let plausible = !delegate.is_empty()
        && delegate.len() <= MAX_DELEGATE_LEN
        && delegate.chars().all(|c| c.is_ascii_graphic());
    if !plausible {
        return Err(TokenError::InvalidAttenuation(format!(
            "the delegate must be a participant id (an IRI of at most {MAX_DELEGATE_LEN} ASCII characters)"
        )));
    }
    let biscuit = parse(token, public_key(root_public_key_hex)?)?;
    let previous = biscuit
        .revocation_identifiers()
        .pop()
        .ok_or_else(|| TokenError::Malformed("the token has no block".into()))?;
    let mut params = HashMap::new();
    params.insert("delegate".to_string(), Term::from(delegate));
    params.insert("previous".to_string(), Term::Bytes(previous));
    params.insert("certificate".to_string(), Term::Bytes(certificate.to_vec()));
    params.insert("scheme".to_string(), Term::Integer(i64::from(scheme)));
    params.insert("signature".to_string(), Term::Bytes(signature.to_vec()));
    let block = BlockBuilder::new()
        .code_with_params(
            "delegation({delegate}, {previous}, {certificate}, {scheme}, {signature});",
            params,
            HashMap::new(),
        )
        .map_err(|e| TokenError::InvalidAttenuation(e.to_string()))?;
    biscuit
        .append(block)
        .and_then(|t| t.to_base64())
        .map_err(|e| TokenError::InvalidAttenuation(e.to_string()))
}

/// The delegations of `biscuit`, in chain order (by the block each one follows).
fn delegations(
    authorizer: &mut biscuit_auth::Authorizer,
    biscuit: &Biscuit,
) -> Result<Vec<Delegation>, TokenError> {
    let facts: Vec<biscuit_auth::builder::Fact> = authorizer
        .query_all("d($d, $p, $c, $s, $g) <- delegation($d, $p, $c, $s, $g)")
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    let blocks = biscuit.revocation_identifiers();
    let bad = |why: &str| TokenError::Malformed(format!("bad delegation: {why}"));
    let mut chain = Vec::with_capacity(facts.len());
    for f in facts {
        let [
            Term::Str(delegate),
            Term::Bytes(previous),
            Term::Bytes(certificate),
            Term::Integer(scheme),
            Term::Bytes(signature),
        ] = f.predicate.terms.as_slice()
        else {
            return Err(bad("unexpected terms"));
        };
        let after = blocks
            .iter()
            .position(|b| b == previous)
            .ok_or_else(|| bad("it follows no block of this token"))?;
        chain.push((
            after,
            Delegation {
                message: signed_delegation(previous, delegate),
                delegate: delegate.clone(),
                certificate: certificate.clone(),
                scheme: u16::try_from(*scheme).map_err(|_| bad("unknown signature scheme"))?,
                signature: signature.clone(),
            },
        ));
    }
    chain.sort_by_key(|(after, _)| *after);
    if chain.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(bad("two delegations of the same holder"));
    }
    Ok(chain.into_iter().map(|(_, d)| d).collect())
}

/// Narrowing a token offline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attenuation {
    /// An earlier expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Only these columns may be read.
    pub columns: Option<Vec<String>>,
}

/// Mints tokens with the provider's root key pair.
pub struct TokenIssuer {
    root: KeyPair,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never print the private key
        write!(f, "TokenIssuer({})", self.public_key_hex())
    }
}

impl TokenIssuer {
    /// A fresh Ed25519 root key pair.
    pub fn generate() -> Self {
        TokenIssuer {
            root: KeyPair::new_with_algorithm(Algorithm::Ed25519),
        }
    }

    /// Restores an issuer from its hex private key (see [`TokenIssuer::private_key_hex`]).
    pub fn from_private_key_hex(s: &str) -> Result<Self, TokenError> {
        let key = PrivateKey::from_bytes_hex(s.trim(), Algorithm::Ed25519).map_err(|_| {
            TokenError::InvalidKey("expected a 64-digit hex Ed25519 private key".into())
        })?;
        Ok(TokenIssuer {
            root: KeyPair::from(&key),
        })
    }

    /// The private key in hex (keep it secret).
    pub fn private_key_hex(&self) -> String {
        self.root.private().to_bytes_hex()
    }

    /// The public key in hex, for verifiers.
    pub fn public_key_hex(&self) -> String {
        self.root.public().to_bytes_hex()
    }

    /// Mints a base64url token for `g`.
    pub fn mint(&self, g: &Grant) -> Result<String, TokenError> {
        let mut params = HashMap::new();
        params.insert("agreement".to_string(), Term::from(g.agreement_id.as_str()));
        params.insert("transfer".to_string(), Term::from(g.transfer_id.as_str()));
        params.insert("dataset".to_string(), Term::from(g.dataset_id.as_str()));
        params.insert("consumer".to_string(), Term::from(g.consumer.as_str()));
        params.insert("expires".to_string(), date(g.expires_at)?);
        Biscuit::builder()
            .code_with_params(
                r#"
                agreement({agreement}); transfer({transfer}); dataset({dataset});
                consumer({consumer}); expires({expires});
                check if time($t), $t <= {expires};
                check if resource({dataset});
                "#,
                params,
                HashMap::new(),
            )
            .and_then(|b| b.build(&self.root))
            .and_then(|t| t.to_base64())
            .map_err(|e| TokenError::Malformed(format!("cannot mint: {e}")))
    }
}

/// Verifies tokens against the provider's public key.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    root: PublicKey,
}

impl TokenVerifier {
    /// A verifier for the issuer's hex public key.
    pub fn from_public_key_hex(s: &str) -> Result<Self, TokenError> {
        Ok(TokenVerifier {
            root: public_key(s)?,
        })
    }

    /// The grant of a token with a valid signature, before any other check: it tells the
    /// data plane which dataset a call is about. Always follow with [`TokenVerifier::verify`].
    pub fn inspect(&self, token: &str) -> Result<Grant, TokenError> {
        let biscuit = parse(token, self.root)?;
        let mut authorizer = AuthorizerBuilder::new()
            .set_limits(limits())
            .build(&biscuit)
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        grant(&mut authorizer)
    }

    /// Checks signature, expiry, dataset and columns; returns the grant.
    pub fn verify(&self, token: &str, req: &AccessRequest) -> Result<VerifiedToken, TokenError> {
        let biscuit = parse(token, self.root)?;
        let columns: BTreeSet<Term> = req.columns.iter().map(|c| Term::from(c.as_str())).collect();
        let mut params = HashMap::new();
        params.insert("now".to_string(), date(req.now)?);
        params.insert("dataset".to_string(), Term::from(req.dataset_id.as_str()));
        params.insert("columns".to_string(), Term::Set(columns));
        let mut authorizer = AuthorizerBuilder::new()
            .code_with_params(
                r#"
                time({now}); resource({dataset}); query_columns({columns});
                allow if agreement($a);
                "#,
                params,
                HashMap::new(),
            )
            .map(|b| b.set_limits(limits()))
            .and_then(|b| b.build(&biscuit))
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        let grant = grant(&mut authorizer)?;
        // clear reasons first, then let the token's own checks (incl. attenuations) decide
        if req.now > grant.expires_at {
            return Err(TokenError::Expired);
        }
        if req.dataset_id != grant.dataset_id {
            return Err(TokenError::WrongDataset);
        }
        let allowed_columns = allowed_columns(&mut authorizer)?;
        if let Some(allowed) = &allowed_columns
            && let Some(c) = req.columns.iter().find(|c| !allowed.contains(c))
        {
            return Err(TokenError::ColumnNotAllowed(c.clone()));
        }
        authorizer
            .authorize()
            .map_err(|e| classify(e, req, allowed_columns.as_deref()))?;
        let expires_at =
            narrowed_expiry(&mut authorizer)?.map_or(grant.expires_at, |e| e.min(grant.expires_at));
        let delegations = delegations(&mut authorizer, &biscuit)?;
        Ok(VerifiedToken {
            grant,
            allowed_columns,
            expires_at,
            delegations,
        })
    }
}

/// Appends a block narrowing `token` (verified against the root key first). The block only
/// adds checks, so whatever it says, it cannot widen what the token grants.
pub fn attenuate(
    token: &str,
    root_public_key_hex: &str,
    a: &Attenuation,
) -> Result<String, TokenError> {
    let biscuit = parse(token, public_key(root_public_key_hex)?)?;
    let mut code = String::new();
    let mut params = HashMap::new();
    if let Some(exp) = a.expires_at {
        // the fact only tells the data plane when to end running queries; the check enforces
        code.push_str("narrowed_expiry({expires});\ncheck if time($t), $t <= {expires};\n");
        params.insert("expires".to_string(), date(exp)?);
    }
    if let Some(cols) = &a.columns {
        if let Some(bad) = cols.iter().find(|c| !crate::vocab::is_column_name(c)) {
            return Err(TokenError::InvalidAttenuation(format!(
                "'{bad}' is not a column name"
            )));
        }
        let set: BTreeSet<Term> = cols.iter().map(|c| Term::from(c.as_str())).collect();
        code.push_str(
            "allowed_columns({columns});\n\
             check if query_columns($q), allowed_columns($s), $s.contains($q);\n",
        );
        params.insert("columns".to_string(), Term::Set(set));
    }
    if code.is_empty() {
        return Err(TokenError::InvalidAttenuation("nothing to narrow".into()));
    }
    let block = BlockBuilder::new()
        .code_with_params(code, params, HashMap::new())
        .map_err(|e| TokenError::InvalidAttenuation(e.to_string()))?;
    biscuit
        .append(block)
        .and_then(|t| t.to_base64())
        .map_err(|e| TokenError::InvalidAttenuation(e.to_string()))
}

fn public_key(hex: &str) -> Result<PublicKey, TokenError> {
    PublicKey::from_bytes_hex(hex.trim(), Algorithm::Ed25519)
        .map_err(|_| TokenError::InvalidKey("expected a 64-digit hex Ed25519 public key".into()))
}

fn parse(token: &str, root: PublicKey) -> Result<Biscuit, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    Biscuit::from_base64(token.trim(), root).map_err(|e| match e {
        BiscuitError::Format(
            Format::Signature(_)
            | Format::SealedSignature
            | Format::UnknownPublicKey
            | Format::InvalidKey(_),
        ) => TokenError::InvalidSignature,
        BiscuitError::Base64(_) => TokenError::Malformed("not base64url".into()),
        other => TokenError::Malformed(other.to_string()),
    })
}

fn limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        // generous: the machine may be busy; the rules are tiny
        max_time: Duration::from_millis(100),
    }
}

fn date(t: DateTime<Utc>) -> Result<Term, TokenError> {
    let secs = u64::try_from(t.timestamp())
        .map_err(|_| TokenError::Malformed("dates before 1970 are not supported".into()))?;
    Ok(Term::from(
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    ))
}

fn grant(authorizer: &mut biscuit_auth::Authorizer) -> Result<Grant, TokenError> {
    let rows: Vec<(String, String, String, String, SystemTime)> = authorizer
        .query(
            "grant($a, $t, $d, $c, $e) <- agreement($a), transfer($t), dataset($d), consumer($c), expires($e)",
        )
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    let [(agreement_id, transfer_id, dataset_id, consumer, expires)] = rows.as_slice() else {
        return Err(TokenError::Malformed(
            "the token does not state exactly one grant".into(),
        ));
    };
    let secs = expires
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| TokenError::Malformed("bad expiry".into()))?
        .as_secs();
    Ok(Grant {
        agreement_id: agreement_id.clone(),
        transfer_id: transfer_id.clone(),
        dataset_id: dataset_id.clone(),
        consumer: consumer.clone(),
        expires_at: DateTime::from_timestamp(secs as i64, 0)
            .ok_or_else(|| TokenError::Malformed("bad expiry".into()))?,
    })
}

/// The earliest expiry that attenuation blocks state, if any does. Like the column sets, these
/// facts only ever shorten what the authority block grants (the blocks' checks enforce them).
fn narrowed_expiry(
    authorizer: &mut biscuit_auth::Authorizer,
) -> Result<Option<DateTime<Utc>>, TokenError> {
    let facts: Vec<biscuit_auth::builder::Fact> = authorizer
        .query_all("exp($e) <- narrowed_expiry($e)")
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    let mut earliest: Option<DateTime<Utc>> = None;
    for f in facts {
        let Some(Term::Date(secs)) = f.predicate.terms.first() else {
            return Err(TokenError::Malformed(
                "narrowed_expiry must be a date".into(),
            ));
        };
        let at = DateTime::from_timestamp(i64::try_from(*secs).unwrap_or(i64::MAX), 0)
            .ok_or_else(|| TokenError::Malformed("bad expiry".into()))?;
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    Ok(earliest)
}

/// The intersection of the column sets of all attenuation blocks. These facts are not
/// trusted for granting (any holder may append a block); they only ever narrow.
fn allowed_columns(
    authorizer: &mut biscuit_auth::Authorizer,
) -> Result<Option<Vec<String>>, TokenError> {
    let facts: Vec<biscuit_auth::builder::Fact> = authorizer
        .query_all("cols($s) <- allowed_columns($s)")
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    let mut result: Option<Vec<String>> = None;
    for f in facts {
        let Some(Term::Set(set)) = f.predicate.terms.first() else {
            return Err(TokenError::Malformed(
                "allowed_columns must be a set".into(),
            ));
        };
        let cols: Vec<String> = set
            .iter()
            .filter_map(|t| match t {
                Term::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        result = Some(match result {
            None => cols,
            Some(prev) => prev.into_iter().filter(|c| cols.contains(c)).collect(),
        });
    }
    Ok(result)
}

fn classify(e: BiscuitError, req: &AccessRequest, allowed: Option<&[String]>) -> TokenError {
    let BiscuitError::FailedLogic(
        Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
    ) = &e
    else {
        return TokenError::Denied(e.to_string());
    };
    let rules: Vec<&str> = checks
        .iter()
        .map(|c| match c {
            FailedCheck::Block(b) => b.rule.as_str(),
            FailedCheck::Authorizer(a) => a.rule.as_str(),
        })
        .collect();
    if rules.iter().any(|r| r.contains("time(")) {
        return TokenError::Expired;
    }
    if rules.iter().any(|r| r.contains("resource(")) {
        return TokenError::WrongDataset;
    }
    if rules.iter().any(|r| r.contains("query_columns(")) {
        let first = req
            .columns
            .iter()
            .find(|c| allowed.is_none_or(|a| !a.contains(c)))
            .or(req.columns.first());
        return TokenError::ColumnNotAllowed(first.cloned().unwrap_or_default());
    }
    TokenError::Denied(e.to_string())
}
