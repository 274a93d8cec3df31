//! What every data-plane protocol shares (Flight, Flight SQL and HTTP): verifying the token,
//! the declared purpose, planning under a deadline, admitting a query (count and audit),
//! running it in a concurrency slot, and tallying what was sent for the audit log.
//!
//! Consumers share the data plane fairly: slots are handed out per consumer ([`slots`]),
//! query memory is charged to the consumer's share of one budget ([`memory`]), and queries
//! are planned and executed on threads of their own ([`workers`]), so that a consumer's flood
//! of expensive queries neither blocks another consumer's query nor the provider's DSP,
//! management and health answers.
//!
//! [`slots`]: super::slots
//! [`memory`]: super::memory
//! [`workers`]: super::workers

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, timeout_at};
use tracing::Span;

use super::memory::{MemoryBudget, QueryPool};
use super::query::{PreparedQuery, prepare};
use super::revoke::Revocable;
use super::slots::FairSlots;
use super::workers::{Offloaded, QueryWorkers};
use super::{AccessControl, AccessError, ActiveGrant, AuditId, DataPlaneConfig, QueryError};

/// The header (gRPC metadata or HTTP) in which a consumer declares the purpose of its
/// queries, checked against the agreement's `odrl:purpose` constraint.
pub const PURPOSE_HEADER: &str = "sluis-purpose";

/// Longest purpose accepted (bytes).
const MAX_PURPOSE_BYTES: usize = 512;

/// The protocol-independent data plane.
#[derive(Clone)]
pub struct DataPlane {
    access: Arc<dyn AccessControl>,
    cfg: Arc<DataPlaneConfig>,
    /// One per running query, at most `cfg.queries_per_consumer()` for one consumer.
    slots: Arc<FairSlots>,
    /// The memory all running queries share.
    memory: Arc<MemoryBudget>,
    /// The threads queries are planned and executed on.
    workers: Arc<QueryWorkers>,
}

/// A verified call: its token and what it grants.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token (asked again with the columns once the query is planned).
    pub token: String,
    /// The participant the call comes from (its client certificate), if known.
    pub holder: Option<String>,
    /// What the token grants, with the purpose the call declared.
    pub grant: ActiveGrant,
}

impl DataPlane {
    /// A data plane deciding access with `access`, within the limits of `cfg`. Panics if
    /// the query threads cannot be started; see [`DataPlane::try_new`].
    pub fn new(access: Arc<dyn AccessControl>, cfg: DataPlaneConfig) -> Self {
        Self::try_new(access, cfg).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A data plane deciding access with `access`, within the limits of `cfg`, with its own
    /// query threads.
    pub fn try_new(access: Arc<dyn AccessControl>, cfg: DataPlaneConfig) -> anyhow::Result<Self> {
        let threads = cfg.query_worker_threads();
        let workers = QueryWorkers::new(threads).map_err(|e| {
            anyhow::anyhow!(
                "cannot start the data plane's {threads} query threads: {e}; lower `data_plane.query_threads` or the process's thread limit"
            )
        })?;
        Ok(Self {
            access,
            slots: FairSlots::new(cfg.max_concurrent_queries, cfg.queries_per_consumer()),
            memory: MemoryBudget::new(cfg.memory_budget_bytes, cfg.memory_per_consumer()),
            workers: Arc::new(workers),
            cfg: Arc::new(cfg),
        })
    }

    /// The runtime queries run on; the Flight listener is served on it too, so that the
    /// control plane's runtime only answers DSP, management and health calls.
    pub fn query_runtime(&self) -> &tokio::runtime::Handle {
        self.workers.handle()
    }

    /// The limits.
    pub fn config(&self) -> &DataPlaneConfig {
        &self.cfg
    }

    /// The deadline of a query arriving now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.cfg.query_timeout
    }

    /// Verifies the `authorization` header value for the caller `holder` (see
    /// [`AccessControl::authorize`]) and records the grant's ids on the current span;
    /// `purpose` is the value of the [`PURPOSE_HEADER`].
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        purpose: Option<&[u8]>,
        holder: Option<String>,
    ) -> Result<Caller, QueryError> {
        let token = bearer_token(authorization)?;
        let mut grant = self.access.authorize(&token, holder.as_deref(), None)?;
        grant.purpose = declared_purpose(purpose)?;
        let span = Span::current();
        span.record("transfer_id", grant.transfer_id.as_str());
        span.record("agreement_id", grant.agreement_id.as_str());
        Ok(Caller {
            token,
            holder,
            grant,
        })
    }

    /// Plans `sql` for `caller` before `deadline`, then asks access control again with the
    /// columns the query reads. A refusal is written to the audit log.
    pub async fn plan(
        &self,
        caller: &Caller,
        sql: &str,
        channel: &'static str,
        deadline: Instant,
    ) -> Result<PreparedQuery, QueryError> {
        let planned = self.plan_unaudited(caller, sql, deadline).await;
        if let Err(e) = &planned {
            self.access
                .record_refusal(&caller.grant, sql, channel, &e.to_string());
        }
        planned
    }

    async fn plan_unaudited(
        &self,
        caller: &Caller,
        sql: &str,
        deadline: Instant,
    ) -> Result<PreparedQuery, QueryError> {
        let (grant, sql, cfg) = (caller.grant.clone(), sql.to_owned(), self.cfg.clone());
        // planning an intricate statement takes CPU: on the query threads too
        let planning = self.workers.run(async move {
            timeout_at(deadline, prepare(&grant, &sql, &cfg))
                .await
                .map_err(|_| QueryError::Timeout)?
        });
        let prepared = planning.await?;
        self.access.authorize(
            &caller.token,
            caller.holder.as_deref(),
            Some(&prepared.columns),
        )?;
        Ok(prepared)
    }

    /// Runs `sql` for `caller`: waits for a slot, plans, admits (count, audit) and starts it.
    /// Every refusal after the token was verified is written to the audit log.
    pub async fn run(
        &self,
        caller: &Caller,
        sql: &str,
        channel: &'static str,
    ) -> Result<AuditedStream, QueryError> {
        let result = self.start(caller, sql, channel).await;
        if let Err(e) = &result {
            self.access
                .record_refusal(&caller.grant, sql, channel, &e.to_string());
        }
        result
    }

    async fn start(
        &self,
        caller: &Caller,
        sql: &str,
        channel: &'static str,
    ) -> Result<AuditedStream, QueryError> {
        let deadline = self.deadline();
        let consumer = caller.grant.consumer.as_str();
        let slot = timeout_at(deadline, self.slots.acquire(consumer))
            .await
            .map_err(|_| QueryError::Timeout)??;
        let prepared = self.plan_unaudited(caller, sql, deadline).await?;
        let charged = QueryPool::charge(prepared.memory_pool(), self.memory.share(consumer));
        debug_assert!(
            charged,
            "every query's pool is a fresh QueryPool (sandbox::runtime)"
        );
        let id = self.access.record_query(&caller.grant, sql, channel)?;
        let tally = Arc::new(Tally {
            access: self.access.clone(),
            id,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        let inner = self.workers.execute(prepared, deadline, slot).await;
        let revoked = self.access.revoked(&caller.token, &caller.grant);
        Ok(AuditedStream {
            inner: Revocable::new(inner.map_err(|e| tally.fail(e))?, revoked),
            tally,
            span: Span::current(),
        })
    }
}

/// What an admitted query sent; written to the audit log when the last handle is dropped
/// (the stream ended, failed, or the client went away).
pub struct Tally {
    access: Arc<dyn AccessControl>,
    id: AuditId,
    rows: AtomicU64,
    bytes: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Tally {
    /// Adds `n` bytes sent to the client.
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn fail(&self, e: QueryError) -> QueryError {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        e
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let error = self.error.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.access.record_outcome(
            self.id,
            &super::QueryOutcome {
                rows: self.rows.load(Ordering::Relaxed),
                bytes: self.bytes.load(Ordering::Relaxed),
                error,
            },
        );
    }
}

/// The batches of an admitted query, counted for the audit log. The query (and its slot)
/// stops when this is dropped.
pub struct AuditedStream {
    inner: Revocable<Offloaded>,
    tally: Arc<Tally>,
    span: Span,
}

impl AuditedStream {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.inner.get_ref().schema()
    }

    /// The tally to add the bytes sent to.
    pub fn tally(&self) -> Arc<Tally> {
        self.tally.clone()
    }
}

impl Stream for AuditedStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let span = self.span.clone();
        let _entered = span.enter();
        let item = futures::ready!(self.inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(batch)) => {
                self.tally
                    .rows
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                tracing::info!(error = %e, "query stopped while streaming");
                self.tally.fail(e.clone());
            }
            None => {}
        }
        Poll::Ready(item)
    }
}

/// The token from an `authorization: Bearer <token>` header value.
pub fn bearer_token(value: Option<&[u8]>) -> Result<String, QueryError> {
    let unauthenticated = |why: &str| {
        QueryError::Access(AccessError::Unauthenticated(format!(
            "{why}: send the transfer's token in the `authorization` header as `Bearer <token>`"
        )))
    };
    let value = value.ok_or_else(|| unauthenticated("no authorization header"))?;
    let value = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.is_ascii())
        .ok_or_else(|| unauthenticated("the authorization header is not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthenticated("the authorization header has no bearer token"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthenticated(
            "the authorization header has no bearer token",
        ));
    }
    Ok(token.to_string())
}

/// The purpose declared in the [`PURPOSE_HEADER`], if any.
fn declared_purpose(value: Option<&[u8]>) -> Result<Option<String>, QueryError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_PURPOSE_BYTES)
        .ok_or_else(|| {
            QueryError::Invalid(format!(
                "the `{PURPOSE_HEADER}` header must be one IRI or term of at most {MAX_PURPOSE_BYTES} bytes"
            ))
        })?;
    Ok(Some(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let parse = |v: &str| bearer_token(Some(v.as_bytes()));
        assert_eq!(parse("Bearer abc").unwrap(), "abc");
        assert_eq!(parse("bearer  abc ").unwrap(), "abc");
        for bad in ["Basic abc", "Bearer ", "abc", "Bearer \u{e9}"] {
            let e = parse(bad).unwrap_err();
            assert!(
                matches!(e, QueryError::Access(AccessError::Unauthenticated(_))),
                "{bad}"
            );
        }
        assert!(bearer_token(None).is_err());
    }

    #[test]
    fn purposes_are_bounded_text() {
        assert_eq!(declared_purpose(None).unwrap(), None);
        assert_eq!(
            declared_purpose(Some(b" dpv:Research "))
                .unwrap()
                .as_deref(),
            Some("dpv:Research")
        );
        assert!(declared_purpose(Some(b"")).is_err());
        assert!(declared_purpose(Some(&[0xff])).is_err());
        assert!(declared_purpose(Some(&[b'a'; 600])).is_err());
    }
}
