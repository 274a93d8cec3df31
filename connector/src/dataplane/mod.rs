//! The data plane: an Arrow Flight service that runs a consumer's SQL over the one dataset its
//! transfer grants, with the agreement's [`EnforcementPlan`] applied beneath the query inside
//! DataFusion.
//!
//! The flow of every call:
//! 1. the token from the `authorization` metadata is checked by [`AccessControl`], with the
//!    participant id of the caller's client certificate (a token is bound to its holder),
//!    which returns the [`ActiveGrant`];
//! 2. a fresh, sandboxed DataFusion session is built (see [`sandbox`]) in which the only
//!    table is a view over the source with the enforcement plan applied (see [`enforce`]);
//!    Parquet footers, per-file statistics and the view's physical plan are kept between
//!    queries, each checked against the files' sizes and modification times (see
//!    [`barrier`]), and so are the view's first rows (see [`prefix`]);
//! 3. the consumer's SQL is parsed, checked (a single query, only the granted table) and
//!    planned over that view; query-level rules (aggregate-only, row limits) wrap the plan.
//!    The physical plan is kept for the next query with the same SQL over the same view
//!    (see [`prepare`]); the period, purpose, SQL and access checks still run every time;
//! 4. `DoGet` streams the result batch by batch, under a memory limit and a deadline.
//!
//! [`EnforcementPlan`]: sluis_policy::enforcement::EnforcementPlan

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub mod barrier;
pub mod enforce;
mod error;
mod flight_sql;
mod functions;
pub mod http;
mod kept;
mod mask;
pub mod memory;
mod pages;
mod plane;
pub mod prefix;
mod query;
pub mod revoke;
pub mod sandbox;
mod service;
pub mod slots;
mod source;
pub mod workers;

pub use error::QueryError;
pub use mask::{MASK_HEX_DIGITS, MaskKey};
pub use plane::{AuditedStream, Caller, DataPlane, PURPOSE_HEADER, Tally, bearer_token};
pub use query::{PreparedQuery, ResultStream, prepare, select_all};
pub use service::FlightDataPlane;

/// Test helper: `batch` written to a new Parquet file at `path` under `props`.
#[cfg(test)]
pub(crate) fn write_parquet(
    path: &std::path::Path,
    batch: &arrow::record_batch::RecordBatch,
    props: parquet::file::properties::WriterProperties,
) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// What a verified token grants: one transfer of one dataset under one agreement.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveGrant {
    /// The agreement the transfer runs under.
    pub agreement_id: String,
    /// The transfer process the token was minted for.
    pub transfer_id: String,
    /// The dataset (DCAT) the agreement is about.
    pub dataset_id: String,
    /// The consumer participant.
    pub consumer: String,
    /// The key of the agreement's hash masks (see [`MaskKey::derive`]).
    pub mask_key: MaskKey,
    /// The purpose the call declared in the [`PURPOSE_HEADER`] header (set by the data plane
    /// for each call; checked against the agreement's purposes at each query).
    pub purpose: Option<String>,
    /// The only table name the consumer's SQL can use.
    pub table_name: String,
    /// Where the data is.
    pub source: DataSource,
    /// What must be enforced beneath every query.
    pub plan: sluis_policy::enforcement::EnforcementPlan,
}

/// The format of a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Apache Parquet files.
    Parquet,
    /// CSV files with a header row.
    Csv,
    /// Newline-delimited JSON files.
    Json,
    /// Arrow IPC files.
    ArrowIpc,
}

/// Where a dataset's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    /// The file format.
    pub kind: SourceKind,
    /// A file, or a directory whose files (with the kind's extension) form the table.
    pub location: PathBuf,
}

/// Why a call is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The token is missing, malformed, expired or revoked (gRPC `UNAUTHENTICATED`).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The token is valid but does not allow this (gRPC `PERMISSION_DENIED`).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

/// Decides who may query what; implemented by the connector with Biscuit tokens and the
/// transfer store.
pub trait AccessControl: Send + Sync + 'static {
    /// Verify the token of a call. `holder`: the participant the call comes from (the
    /// participant id of its verified client certificate; None without one): a token is bound
    /// to its holder. `columns`: the dataset columns the query reads, once planned (None
    /// before planning).
    fn authorize(
        &self,
        token: &str,
        holder: Option<&str>,
        columns: Option<&[String]>,
    ) -> Result<ActiveGrant, AccessError>;
    /// Called once per query, once it is planned and before it runs: Err refuses it (e.g.
    /// the query count is used up). Records the admitted query (`channel`: `flight`,
    /// `flight-sql` or `http`) and returns its audit id.
    fn record_query(
        &self,
        grant: &ActiveGrant,
        sql: &str,
        channel: &str,
    ) -> Result<AuditId, AccessError>;

    /// Called when an admitted query's result stream ends, fails or is dropped.
    fn record_outcome(&self, _id: AuditId, _outcome: &QueryOutcome) {}

    /// Called when a query with a verified token is refused or fails before it runs.
    fn record_refusal(&self, _grant: &ActiveGrant, _sql: &str, _channel: &str, _reason: &str) {}

    /// For an admitted query under `token` and its `grant`: completes, with the refusal to end
    /// the query's stream with, once the grant ends while the query runs (its transfer is
    /// suspended, completed or terminated, or the token expires). By default a grant never
    /// ends on its own.
    fn revoked(&self, _token: &str, _grant: &ActiveGrant) -> revoke::Revoked {
        revoke::never()
    }
}

/// The id of an admitted query's audit record (0 where nothing is recorded).
pub type AuditId = i64;

/// How an admitted query ended, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOutcome {
    /// Rows sent.
    pub rows: u64,
    /// Bytes sent, in the wire format of the call.
    pub bytes: u64,
    /// Why the stream stopped early, if it did.
    pub error: Option<String>,
}

/// Resource limits of the data plane.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Deadline for one query, from the call's arrival to the last batch.
    pub query_timeout: Duration,
    /// Memory one query may use (DataFusion memory pool; no spilling to disk).
    pub memory_limit_bytes: usize,
    /// Memory all running queries together may use (see [`memory`]).
    pub memory_budget_bytes: usize,
    /// Memory the running queries of one consumer together may use; `None`: half of
    /// `memory_budget_bytes`, so that one consumer always leaves the other half to others.
    pub memory_per_consumer_bytes: Option<usize>,
    /// Rows per record batch. 4,096 by default rather than DataFusion's 8,192: beneath a
    /// row filter, a first batch then decodes and masks half the rows, about 0.5 ms sooner on
    /// the benchmark, at the same throughput (BENCHMARKS.md).
    pub batch_size: usize,
    /// Parallelism of one query.
    pub target_partitions: usize,
    /// Rows at the start of each view kept decoded, filtered and masked in memory once the
    /// view has been queried (0: none). A query's first batch then comes from memory; see
    /// [`prefix`].
    pub prefix_rows: usize,
    /// Longest SQL text accepted (bytes).
    pub max_sql_bytes: usize,
    /// Queries running at once across all consumers; more wait for a slot, the consumers
    /// with the fewest running first (see [`slots`]).
    pub max_concurrent_queries: usize,
    /// Queries one consumer may run at once; `None`: half of `max_concurrent_queries` (at
    /// least 1), so that one consumer can never hold every slot.
    pub max_queries_per_consumer: Option<usize>,
    /// Threads that plan and execute queries, apart from the control plane's (0: one for each
    /// partition of every query that may run at once; see [`workers`]).
    pub query_threads: usize,
}

impl DataPlaneConfig {
    /// Queries one consumer may run at once.
    pub fn queries_per_consumer(&self) -> usize {
        let total = self.max_concurrent_queries.max(1);
        self.max_queries_per_consumer
            .unwrap_or(total / 2)
            .clamp(1, total)
    }

    /// Threads of the query runtime. DataFusion computes a whole batch in one poll, which
    /// for a cross join or a sort can take seconds, and a tokio worker cannot be preempted in
    /// a poll: with one thread per core, two such queries kept a second consumer's light
    /// query waiting 34 s for a thread. With a thread for each partition of every query that
    /// may run at once, a query's task always finds an idle thread, and the OS shares the
    /// cores between the threads (at least the cores, at most [`MAX_QUERY_THREADS`]).
    pub fn query_worker_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        match self.query_threads {
            0 => self
                .max_concurrent_queries
                .saturating_mul(self.target_partitions)
                .clamp(cores, MAX_QUERY_THREADS.max(cores)),
            n => n,
        }
    }

    /// Memory the running queries of one consumer may use together.
    pub fn memory_per_consumer(&self) -> usize {
        self.memory_per_consumer_bytes
            .unwrap_or(self.memory_budget_bytes / 2)
            .min(self.memory_budget_bytes)
    }
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(300),
            memory_limit_bytes: 512 * 1024 * 1024,
            // four queries at their limit; two for one consumer
            memory_budget_bytes: 2048 * 1024 * 1024,
            memory_per_consumer_bytes: None,
            batch_size: 4096,
            target_partitions: 2,
            prefix_rows: 8192,
            max_sql_bytes: 64 * 1024,
            max_concurrent_queries: 16,
            max_queries_per_consumer: None,
            query_threads: 0,
        }
    }
}

/// Most threads the query runtime starts by default (see
/// [`DataPlaneConfig::query_worker_threads`]).
pub const MAX_QUERY_THREADS: usize = 256;

/// The server's TLS certificate chain and private key, PEM encoded.
#[derive(Clone)]
pub struct TlsIdentity {
    /// Certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Private key (PEM).
    pub key_pem: Vec<u8>,
    /// The data-space CA (PEM): the listener asks callers for a client certificate issued by
    /// it, whose participant id identifies the token's holder. None: no client certificates.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the key
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// Largest gRPC message a client may send (tickets and descriptors carry SQL only).
const MAX_REQUEST_MESSAGE_BYTES: usize = 1024 * 1024;

/// Serves the Flight data plane on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsIdentity>,
    access: Arc<dyn AccessControl>,
    cfg: DataPlaneConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_plane(listener, tls, DataPlane::try_new(access, cfg)?, shutdown).await
}

/// Serves Flight and Flight SQL over `plane` (which may also serve [`http`]) on `listener`
/// until `shutdown` completes.
pub async fn serve_plane(
    listener: tokio::net::TcpListener,
    tls: Option<TlsIdentity>,
    plane: DataPlane,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = FlightServiceServer::new(FlightDataPlane::with_plane(plane))
        .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES);
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        let identity = Identity::from_pem(tls.cert_pem, tls.key_pem);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = tls.client_ca_pem {
            // optional at the TLS level so that a call without one gets a clear refusal
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        builder = builder.tls_config(config)?;
    }
    builder
        .add_service(service)
        // without TCP_NODELAY a small last frame waits for the client's delayed ACK (40 ms)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}
