//! The provider's data-plane access control: a Biscuit token is verified offline against our
//! public key, then checked against live state — the transfer must still be STARTED (so
//! suspension, termination and completion revoke it at once, and end the queries still
//! streaming under it, see [`AccessControl::revoked`]) — and the agreement is compiled
//! into the enforcement plan the data plane applies. Every query is written to the audit log
//! ([`crate::audit`]), from which the agreement's query count is counted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::json;

use chrono::Utc;
use sluis_policy::Policy;
use sluis_policy::enforcement::{ColumnAccess, EnforcementPlan, compile};
use sluis_policy::token::{AccessRequest, TokenError, TokenVerifier, VerifiedToken};
use tracing::info;

use crate::audit::{Admission, AuditLog, QueryEntry};
use crate::dataplane::revoke::Revoked;
use crate::dataplane::{
    AccessControl, AccessError, ActiveGrant, AuditId, DataSource, MaskKey, QueryOutcome, SourceKind,
};
use crate::dsp::Role;
use crate::dsp::transfer::TransferState;
use crate::engine::transfer::FORMAT_FLIGHT;
use crate::holder::Holders;
use crate::node::{Shared, table_name};
use crate::tls::TlsMaterial;

/// Access control backed by the node's store, catalogue and token key.
pub struct ProviderAccess {
    node: Shared,
    verifier: TokenVerifier,
    plans: Mutex<HashMap<String, EnforcementPlan>>,
    /// Every query, and the agreements' query counts.
    audit: AuditLog,
    /// The provider secret hash-mask keys are derived from (the token signing key).
    mask_secret: Vec<u8>,
    /// Checks who a token belongs to (its holder, or its holder's delegate).
    holders: Holders,
}

impl ProviderAccess {
    /// Access control for `node`; token delegations are checked against the CA of `tls`.
    pub fn new(node: Shared, tls: &TlsMaterial) -> anyhow::Result<Self> {
        let verifier = TokenVerifier::from_public_key_hex(&node.tokens.public_key_hex())
            .map_err(|e| anyhow::anyhow!("loading the token public key: {e}"))?;
        let audit = AuditLog::open(&crate::audit::path(&node.config.data_dir))?;
        let mask_secret = hex::decode(node.tokens.private_key_hex())
            .map_err(|e| anyhow::anyhow!("reading the token private key: {e}"))?;
        Ok(Self {
            node,
            verifier,
            plans: Mutex::default(),
            audit,
            mask_secret,
            holders: Holders::new(tls)?,
        })
    }

    fn plan(&self, agreement_id: &str) -> Result<EnforcementPlan, AccessError> {
        if let Some(p) = self
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(agreement_id)
        {
            return Ok(p.clone());
        }
        let agreement = self
            .node
            .store
            .agreement(agreement_id)
            .map_err(internal)?
            .ok_or_else(|| {
                AccessError::PermissionDenied("the token's agreement is unknown".into())
            })?;
        let policy = Policy::from_json(&agreement.policy)
            .map_err(|e| internal(anyhow::anyhow!("stored agreement: {e}")))?;
        let plan = compile(&policy).map_err(|e| {
            AccessError::PermissionDenied(format!("the agreement cannot be enforced: {e}"))
        })?;
        self.plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agreement_id.to_string(), plan.clone());
        Ok(plan)
    }

    fn source(&self, dataset_id: &str) -> Result<DataSource, AccessError> {
        let dataset = self
            .node
            .catalog
            .dataset(dataset_id)
            .map_err(|e| internal(anyhow::anyhow!(e)))?
            .ok_or_else(|| {
                AccessError::PermissionDenied("the dataset is no longer published".into())
            })?;
        let source = dataset
            .distributions
            .iter()
            .filter(|d| d.format == FORMAT_FLIGHT)
            .find_map(|d| d.source.clone())
            .ok_or_else(|| {
                AccessError::PermissionDenied("the dataset has no Flight distribution".into())
            })?;
        let kind = match source.kind.as_str() {
            "parquet" => SourceKind::Parquet,
            "csv" => SourceKind::Csv,
            "json" => SourceKind::Json,
            "arrow" => SourceKind::ArrowIpc,
            other => return Err(internal(anyhow::anyhow!("unknown source kind {other}"))),
        };
        Ok(DataSource {
            kind,
            location: PathBuf::from(source.location),
        })
    }
}

fn internal(e: anyhow::Error) -> AccessError {
    tracing::error!(error = %format!("{e:#}"), "data-plane access check failed");
    AccessError::PermissionDenied("internal error while checking access".into())
}

/// Narrows the visible columns to those an attenuated token still allows.
fn narrow(columns: ColumnAccess, allowed: &[String]) -> ColumnAccess {
    let keep = |c: &String| allowed.contains(c);
    match columns {
        ColumnAccess::All => ColumnAccess::Allow(allowed.to_vec()),
        ColumnAccess::Allow(cols) => ColumnAccess::Allow(cols.into_iter().filter(keep).collect()),
        ColumnAccess::Deny(denied) => ColumnAccess::Allow(
            allowed
                .iter()
                .filter(|c| !denied.contains(c))
                .cloned()
                .collect(),
        ),
    }
}

impl AccessControl for ProviderAccess {
    fn authorize(
        &self,
        token: &str,
        holder: Option<&str>,
        columns: Option<&[String]>,
    ) -> Result<ActiveGrant, AccessError> {
        let claimed = self
            .verifier
            .inspect(token)
            .map_err(|e| AccessError::Unauthenticated(e.to_string()))?;
        let verified = self
            .verifier
            .verify(
                token,
                &AccessRequest {
                    dataset_id: claimed.dataset_id.clone(),
                    now: Utc::now(),
                    columns: columns.map(<[String]>::to_vec).unwrap_or_default(),
                },
            )
            .map_err(|e| AccessError::PermissionDenied(e.to_string()))?;
        check_holder(&self.holders, &verified, holder)?;
        let grant = verified.grant;
        let transfer = self
            .node
            .store
            .transfer(&grant.transfer_id)
            .map_err(internal)?
            .filter(|t| {
                t.role == Role::Provider
                    && t.peer_id == grant.consumer
                    && t.agreement_id == grant.agreement_id
            })
            .ok_or_else(|| {
                AccessError::PermissionDenied("the token's transfer is unknown".into())
            })?;
        if transfer.state != TransferState::Started {
            return Err(revoked_in(transfer.state));
        }
        let mut plan = self.plan(&grant.agreement_id)?;
        if let Some(allowed) = &verified.allowed_columns {
            plan.columns = narrow(plan.columns, allowed);
        }
        Ok(ActiveGrant {
            mask_key: MaskKey::derive(&self.mask_secret, &grant.agreement_id),
            purpose: None,
            agreement_id: grant.agreement_id,
            transfer_id: grant.transfer_id,
            table_name: table_name(&grant.dataset_id),
            source: self.source(&grant.dataset_id)?,
            dataset_id: grant.dataset_id,
            consumer: grant.consumer,
            plan,
        })
    }

    fn record_query(
        &self,
        grant: &ActiveGrant,
        sql: &str,
        channel: &str,
    ) -> Result<AuditId, AccessError> {
        let max = grant.plan.max_queries;
        let admission = self
            .audit
            .admit(&entry(grant, sql, channel), max, &compliance_report(grant))
            .map_err(internal)?;
        match admission {
            Admission::Admitted { id, number } => {
                info!(
                    agreement = %grant.agreement_id,
                    transfer = %grant.transfer_id,
                    consumer = %grant.consumer,
                    query = number,
                    audit_id = id,
                    sql = %sql.chars().take(2000).collect::<String>(),
                    "query admitted"
                );
                Ok(id)
            }
            Admission::Exhausted { max } => Err(AccessError::PermissionDenied(format!(
                "the agreement allows {max} queries and all are used (constraint: odrl:count)"
            ))),
        }
    }

    fn record_outcome(&self, id: AuditId, outcome: &QueryOutcome) {
        if let Err(e) = self
            .audit
            .finish(id, outcome.rows, outcome.bytes, outcome.error.as_deref())
        {
            tracing::error!(error = %format!("{e:#}"), audit_id = id, "writing a query's outcome to the audit log failed");
        }
    }

    fn record_refusal(&self, grant: &ActiveGrant, sql: &str, channel: &str, reason: &str) {
        if let Err(e) = self.audit.refuse(&entry(grant, sql, channel), reason) {
            tracing::error!(error = %format!("{e:#}"), "writing a refusal to the audit log failed");
        }
    }

    /// Watches the transfer in the store (woken by each commit that changes it, no polling)
    /// and the clock: the grant ends when the transfer leaves STARTED, or when the token (or
    /// an attenuation of it) or the agreement's period expires.
    fn revoked(&self, token: &str, grant: &ActiveGrant) -> Revoked {
        let request = AccessRequest {
            dataset_id: grant.dataset_id.clone(),
            now: Utc::now(),
            columns: Vec::new(),
        };
        let token_expiry = match self.verifier.verify(token, &request) {
            Ok(verified) => verified.expires_at,
            Err(e) => {
                let refusal = AccessError::PermissionDenied(e.to_string());
                return Box::pin(std::future::ready(refusal));
            }
        };
        let ends = grant
            .plan
            .not_after
            .map_or(token_expiry, |period| period.min(token_expiry));
        let node = self.node.clone();
        let transfer_id = grant.transfer_id.clone();
        Box::pin(async move {
            let watch = node.store.watch(&transfer_id);
            let left = (ends - Utc::now()).to_std().unwrap_or_default();
            let expiry = tokio::time::sleep(left);
            tokio::pin!(expiry);
            loop {
                // subscribed before reading: no change between the read and the wait is missed
                let changed = watch.changed();
                if let Err(refusal) = still_started(&node, &transfer_id) {
                    return refusal;
                }
                tokio::select! {
                    () = changed => {}
                    () = &mut expiry => {
                        return AccessError::PermissionDenied(format!(
                            "{}; the running query is stopped",
                            TokenError::Expired
                        ));
                    }
                }
            }
        })
    }
}

/// Tokens are bound to their holder: the caller must be the participant the token belongs to
/// (see [`crate::holder`]). Neither participant id is echoed.
fn check_holder(
    holders: &Holders,
    verified: &VerifiedToken,
    caller: Option<&str>,
) -> Result<(), AccessError> {
    let Some(caller) = caller else {
        return Err(AccessError::Unauthenticated(
            "no client certificate: a token is bound to its holder; connect with the client certificate of the participant it was issued (or delegated) to".into(),
        ));
    };
    let bound = holders
        .bound(verified)
        .map_err(AccessError::PermissionDenied)?;
    if bound != caller {
        return Err(AccessError::PermissionDenied(
            "the token belongs to another participant: present it with the client certificate of the participant it was issued (or delegated) to".into(),
        ));
    }
    Ok(())
}

/// Ok while the transfer is STARTED; otherwise why its tokens are revoked.
fn still_started(node: &Shared, transfer_id: &str) -> Result<(), AccessError> {
    match node.store.transfer(transfer_id).map_err(internal)? {
        Some(t) if t.state == TransferState::Started => Ok(()),
        Some(t) => Err(revoked_in(t.state)),
        None => Err(AccessError::PermissionDenied(
            "the token's transfer is unknown".into(),
        )),
    }
}

/// The refusal for a token whose transfer is in `state` (not STARTED).
fn revoked_in(state: TransferState) -> AccessError {
    AccessError::PermissionDenied(format!(
        "the transfer is {}: its tokens are revoked",
        state.as_str()
    ))
}

fn entry<'a>(grant: &'a ActiveGrant, sql: &'a str, channel: &'a str) -> QueryEntry<'a> {
    QueryEntry {
        agreement_id: &grant.agreement_id,
        transfer_id: &grant.transfer_id,
        consumer: &grant.consumer,
        purpose: grant.purpose.as_deref(),
        channel,
        sql,
    }
}

/// What an admitted query was checked against and what is enforced beneath it.
fn compliance_report(grant: &ActiveGrant) -> serde_json::Value {
    json!({
        "decision": "permit",
        "checked": {
            "token": "valid, transfer STARTED",
            "period": { "notBefore": grant.plan.not_before, "notAfter": grant.plan.not_after },
            "purpose": { "declared": grant.purpose, "allowed": grant.plan.purposes },
            "maxQueries": grant.plan.max_queries,
        },
        "enforced": grant.plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn attenuation_only_narrows() {
        let allowed = cols(&["a", "b"]);
        assert_eq!(
            narrow(ColumnAccess::All, &allowed),
            ColumnAccess::Allow(cols(&["a", "b"]))
        );
        assert_eq!(
            narrow(ColumnAccess::Allow(cols(&["b", "c"])), &allowed),
            ColumnAccess::Allow(cols(&["b"]))
        );
        assert_eq!(
            narrow(ColumnAccess::Deny(cols(&["a"])), &allowed),
            ColumnAccess::Allow(cols(&["b"]))
        );
    }
}
