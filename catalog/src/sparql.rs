//! The operator's read-only SPARQL 1.1 query endpoint, with a time limit and an output cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use oxigraph::io::{RdfFormat, RdfSerializer};
use oxigraph::sparql::results::{QueryResultsFormat, QueryResultsSerializer};
use oxigraph::sparql::{CancellationToken, QueryEvaluationError, QueryResults, SparqlEvaluator};

use crate::error::CatalogError;
use crate::store::CatalogStore;

/// Result syntaxes for SELECT and ASK; CONSTRUCT and DESCRIBE always answer Turtle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparqlResultsSyntax {
    /// `application/sparql-results+json`.
    Json,
    /// `text/csv`.
    Csv,
    /// `text/tab-separated-values`.
    Tsv,
    /// `application/sparql-results+xml`.
    Xml,
}

impl SparqlResultsSyntax {
    /// The syntax for an `Accept` media type, if supported.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type.split(';').next()?.trim() {
            "application/sparql-results+json" | "application/json" => Some(Self::Json),
            "text/csv" => Some(Self::Csv),
            "text/tab-separated-values" => Some(Self::Tsv),
            "application/sparql-results+xml" => Some(Self::Xml),
            _ => None,
        }
    }

    fn format(self) -> QueryResultsFormat {
        match self {
            Self::Json => QueryResultsFormat::Json,
            Self::Csv => QueryResultsFormat::Csv,
            Self::Tsv => QueryResultsFormat::Tsv,
            Self::Xml => QueryResultsFormat::Xml,
        }
    }
}

/// Limits of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparqlLimits {
    /// Wall-clock time after which evaluation is cancelled.
    pub timeout: Duration,
    /// Largest serialized answer; bigger answers fail (add LIMIT).
    pub max_bytes: usize,
}

impl Default for SparqlLimits {
    fn default() -> Self {
        SparqlLimits {
            timeout: Duration::from_secs(10),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A serialized query answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparqlAnswer {
    /// Media type of `body`.
    pub media_type: &'static str,
    /// The serialized results.
    pub body: Vec<u8>,
}

/// Longest query text accepted.
const MAX_QUERY: usize = 64 * 1024;

/// Most SPARQL evaluations running at once per store, counting cancelled ones that have not
/// yet stopped (oxigraph cancels cooperatively: a join over already-read data runs on until
/// its next read).
pub const MAX_RUNNING_QUERIES: usize = 2;

/// Releases a running-query slot when the evaluation thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn eval_error(e: QueryEvaluationError, limits: &SparqlLimits) -> CatalogError {
    match e {
        QueryEvaluationError::Cancelled => CatalogError::Timeout(limits.timeout.as_millis()),
        other => CatalogError::Sparql(other.to_string()),
    }
}

/// A writer that refuses to grow past a cap, so huge answers fail instead of exhausting memory.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            return Err(std::io::Error::other("answer too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_large(limits: &SparqlLimits) -> impl Fn(std::io::Error) -> CatalogError + '_ {
    move |e| {
        CatalogError::Sparql(format!(
            "writing the answer failed ({e}); answers are capped at {} bytes: add LIMIT",
            limits.max_bytes
        ))
    }
}

impl CatalogStore {
    /// Runs a read-only SPARQL 1.1 query over every graph (the default graph is the union of
    /// all named graphs; `GRAPH ?g` names them). Updates and `SERVICE` are refused.
    pub fn sparql_query(
        &self,
        query: &str,
        syntax: SparqlResultsSyntax,
        limits: SparqlLimits,
    ) -> Result<SparqlAnswer, CatalogError> {
        if query.len() > MAX_QUERY {
            return Err(CatalogError::Sparql(format!(
                "query longer than {MAX_QUERY} bytes"
            )));
        }
        let slot = self.take_query_slot()?;
        let token = CancellationToken::new();
        let (tx, rx) = mpsc::channel();
        let (store, query, token2) = (self.clone(), query.to_string(), token.clone());
        // The evaluation runs on its own thread so the caller gets its answer at the deadline
        // even when oxigraph has not yet reached a cancellation point.
        std::thread::Builder::new()
            .name("sluis-sparql".into())
            .spawn(move || {
                let answer = store.evaluate(&query, syntax, limits, token2);
                // Free the slot before answering, so the caller's next query finds it free.
                drop(slot);
                let _ = tx.send(answer);
            })
            .map_err(|e| CatalogError::Sparql(format!("cannot start the query: {e}")))?;
        match rx.recv_timeout(limits.timeout) {
            Ok(answer) => answer,
            Err(_) => {
                token.cancel();
                Err(CatalogError::Timeout(limits.timeout.as_millis()))
            }
        }
    }

    fn take_query_slot(&self) -> Result<Slot, CatalogError> {
        let running = self.running_queries.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(self.running_queries.clone());
        if running >= MAX_RUNNING_QUERIES {
            return Err(CatalogError::Sparql(format!(
                "{running} queries are still running (a cancelled query stops at its next read): try again shortly"
            )));
        }
        Ok(slot)
    }

    fn evaluate(
        &self,
        query: &str,
        syntax: SparqlResultsSyntax,
        limits: SparqlLimits,
        token: CancellationToken,
    ) -> Result<SparqlAnswer, CatalogError> {
        // Built without oxigraph's HTTP client: SERVICE has no handler and fails.
        let evaluator = SparqlEvaluator::new().with_cancellation_token(token);
        let mut prepared = match evaluator.parse_query(query) {
            Ok(p) => p,
            Err(e) => {
                if SparqlEvaluator::new().parse_update(query).is_ok() {
                    return Err(CatalogError::Sparql(
                        "SPARQL updates are refused: this endpoint is read-only; change the catalogue through the management API".into(),
                    ));
                }
                return Err(CatalogError::Sparql(format!("syntax error: {e}")));
            }
        };
        prepared.dataset_mut().set_default_graph_as_union();
        let results = prepared
            .on_store(&self.store)
            .execute()
            .map_err(|e| eval_error(e, &limits))?;
        let mut out = Capped {
            buf: Vec::new(),
            max: limits.max_bytes,
        };
        let media_type = match results {
            QueryResults::Solutions(solutions) => {
                let ser = QueryResultsSerializer::from_format(syntax.format());
                let mut w = ser
                    .serialize_solutions_to_writer(&mut out, solutions.variables().to_vec())
                    .map_err(too_large(&limits))?;
                for s in solutions {
                    let s = s.map_err(|e| eval_error(e, &limits))?;
                    w.serialize(&s).map_err(too_large(&limits))?;
                }
                w.finish().map_err(too_large(&limits))?;
                syntax.format().media_type()
            }
            QueryResults::Boolean(b) => {
                QueryResultsSerializer::from_format(syntax.format())
                    .serialize_boolean_to_writer(&mut out, b)
                    .map_err(too_large(&limits))?;
                syntax.format().media_type()
            }
            QueryResults::Graph(triples) => {
                let mut w = RdfSerializer::from_format(RdfFormat::Turtle).for_writer(&mut out);
                for t in triples {
                    let t = t.map_err(|e| eval_error(e, &limits))?;
                    w.serialize_triple(&t).map_err(too_large(&limits))?;
                }
                w.finish().map_err(too_large(&limits))?;
                "text/turtle"
            }
        };
        Ok(SparqlAnswer {
            media_type,
            body: out.buf,
        })
    }
}
