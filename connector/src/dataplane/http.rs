//! `HttpData-PULL`: the enforced data over HTTPS, for clients without Flight.
//!
//! Served on the **protocol listener** (HTTPS with the data space's client certificates), at
//! `/data`, which a transfer's `HttpData-PULL` DataAddress names. The token is bound to its
//! holder: the call must come with the client certificate of the participant it was issued
//! (or delegated) to.
//!
//! - `GET /data` — the whole granted table; `GET /data?sql=<SQL>` — a query;
//!   `POST /data` — a query as the `text/plain` body;
//! - `Authorization: Bearer <token>` (the DataAddress's `authorization` property), and the
//!   optional purpose header `sluis-purpose`;
//! - `Accept` chooses the format: `application/vnd.apache.arrow.stream` (the default, also for
//!   `*/*`), `text/csv` (with a header row) or `application/json` (an array of row objects).
//!
//! The same [`DataPlane`] as Flight runs the query: the same sandbox, enforcement, checks and
//! audit (channel `http`). Errors before the first byte are JSON `{"error": ...}` with 400,
//! 401, 403, 406, 422, 500, 503 or 504; an error while streaming aborts the chunked body, so a
//! truncated result is never mistaken for a complete one.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tracing::{Instrument, field};

use super::plane::{DataPlane, PURPOSE_HEADER, Tally};
use super::query::select_all;
use super::{AccessError, QueryError};
use crate::tls::PeerIdentity;

/// The path of the endpoint on the protocol listener.
pub const PATH: &str = "/data";

/// The `endpointType` of an `HttpData-PULL` DataAddress.
pub const ENDPOINT_TYPE: &str = "https://w3id.org/idsa/v4.1/HTTP";

/// The public URL of the endpoint, from the DSP base URL (`https://host:port/dsp`).
pub fn endpoint(dsp_url: &str) -> String {
    let base = dsp_url.trim_end_matches('/');
    let origin = base
        .strip_suffix(crate::protocol::BASE_PATH)
        .unwrap_or(base);
    format!("{origin}{PATH}")
}

/// The routes of the endpoint, to merge into the protocol listener's router.
pub fn router<S: Clone + Send + Sync + 'static>(plane: DataPlane) -> Router<S> {
    Router::new()
        .route(PATH, get(pull_get).post(pull_post))
        .with_state(plane)
}

/// The query string of `GET /data`.
#[derive(Debug, Default, Deserialize)]
pub struct PullQuery {
    /// The SQL; absent or blank for the whole table.
    pub sql: Option<String>,
}

/// The participant of the connection's client certificate, put on each request by the
/// protocol listener (see [`crate::server`]).
type Peer = Option<Extension<Option<PeerIdentity>>>;

async fn pull_get(
    State(plane): State<DataPlane>,
    peer: Peer,
    headers: HeaderMap,
    Query(query): Query<PullQuery>,
) -> Response {
    pull(plane, peer, headers, query.sql).await
}

async fn pull_post(
    State(plane): State<DataPlane>,
    peer: Peer,
    headers: HeaderMap,
    body: String,
) -> Response {
    pull(plane, peer, headers, Some(body)).await
}

async fn pull(plane: DataPlane, peer: Peer, headers: HeaderMap, sql: Option<String>) -> Response {
    let holder = peer.and_then(|Extension(p)| p).map(|PeerIdentity(id)| id);
    let span = tracing::info_span!(
        "http_data",
        transfer_id = field::Empty,
        agreement_id = field::Empty
    );
    match respond(&plane, &headers, holder, sql)
        .instrument(span)
        .await
    {
        Ok(response) => response,
        Err(e) => error_response(e),
    }
}

async fn respond(
    plane: &DataPlane,
    headers: &HeaderMap,
    holder: Option<String>,
    sql: Option<String>,
) -> Result<Response, QueryError> {
    let format = Format::from_accept(headers.get(header::ACCEPT))?;
    let header = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    let caller = plane.authorize(
        header(header::AUTHORIZATION.as_str()),
        header(PURPOSE_HEADER),
        holder,
    )?;
    let sql = sql
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| select_all(&caller.grant.table_name));
    let results = plane.run(&caller, &sql, "http").await?;
    let tally = results.tally();
    let mut encoder = Encoder::new(format, results.schema()).map_err(encoding_failed)?;
    let head = encoder.take();
    let batches = results.map(move |batch| {
        batch
            .map_err(|e| e.to_string())
            .and_then(|b| encoder.write(&b).map_err(|e| e.to_string()))
            .map_err(std::io::Error::other)
    });
    let body = futures::stream::once(async move { Ok(head) })
        .chain(batches)
        .chain(finish_stream(format))
        .map(count_bytes(tally));
    Ok((
        [(header::CONTENT_TYPE, format.content_type())],
        Body::from_stream(body),
    )
        .into_response())
}

/// The closing bytes of a format (the `]` of a JSON array).
fn finish_stream(
    format: Format,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::once(async move { Ok(Bytes::from_static(format.trailer())) })
}

fn count_bytes(
    tally: Arc<Tally>,
) -> impl FnMut(Result<Bytes, std::io::Error>) -> Result<Bytes, std::io::Error> {
    move |chunk| {
        if let Ok(bytes) = &chunk {
            tally.add_bytes(bytes.len());
        }
        chunk
    }
}

fn encoding_failed(e: impl std::fmt::Display) -> QueryError {
    tracing::warn!(error = %e, "encoding a result failed");
    QueryError::Failed
}

/// The response formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Arrow IPC stream.
    ArrowStream,
    /// CSV with a header row.
    Csv,
    /// A JSON array of row objects.
    Json,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

impl Format {
    /// The first supported type the `Accept` header lists (quality values are not weighed);
    /// Arrow without the header or for `*/*`.
    pub fn from_accept(accept: Option<&HeaderValue>) -> Result<Self, QueryError> {
        let Some(accept) = accept else {
            return Ok(Self::ArrowStream);
        };
        let text = accept.to_str().unwrap_or_default();
        text.split(',')
            .filter_map(|item| item.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .find_map(|t| match t.as_str() {
                ARROW_STREAM | "*/*" | "application/*" => Some(Self::ArrowStream),
                "text/csv" | "text/*" => Some(Self::Csv),
                "application/json" => Some(Self::Json),
                _ => None,
            })
            .ok_or_else(|| {
                QueryError::Invalid(format!(
                    "not acceptable: `Accept: {text}`; ask for {ARROW_STREAM}, text/csv or application/json"
                ))
            })
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::ArrowStream => ARROW_STREAM,
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
        }
    }

    fn trailer(self) -> &'static [u8] {
        match self {
            // the end-of-stream marker of the Arrow IPC stream format
            Self::ArrowStream => &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            Self::Csv => b"",
            Self::Json => b"]",
        }
    }
}

/// Encodes batches into chunks of one format.
enum Encoder {
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
    Csv { first: bool },
    Json { first: bool },
}

impl Encoder {
    fn new(format: Format, schema: SchemaRef) -> Result<Self, arrow::error::ArrowError> {
        Ok(match format {
            Format::ArrowStream => Self::Arrow(Box::new(
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema)?,
            )),
            Format::Csv => Self::Csv { first: true },
            Format::Json => Self::Json { first: true },
        })
    }

    /// What is buffered so far (the Arrow schema message, the `[` of JSON).
    fn take(&mut self) -> Bytes {
        match self {
            Self::Arrow(w) => Bytes::from(std::mem::take(w.get_mut())),
            Self::Csv { .. } => Bytes::new(),
            Self::Json { .. } => Bytes::from_static(b"["),
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<Bytes, arrow::error::ArrowError> {
        match self {
            Self::Arrow(w) => {
                w.write(batch)?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
            Self::Csv { first } => {
                let mut out = Vec::new();
                arrow::csv::WriterBuilder::new()
                    .with_header(std::mem::take(first))
                    .build(&mut out)
                    .write(batch)?;
                Ok(Bytes::from(out))
            }
            Self::Json { first } => json_rows(batch, first),
        }
    }
}

/// The rows of `batch` as comma-separated JSON objects, continuing an array.
fn json_rows(batch: &RecordBatch, first: &mut bool) -> Result<Bytes, arrow::error::ArrowError> {
    if batch.num_rows() == 0 {
        return Ok(Bytes::new());
    }
    let mut lines = arrow::json::LineDelimitedWriter::new(Vec::new());
    lines.write(batch)?;
    lines.finish()?;
    let text = lines.into_inner();
    let mut out = Vec::with_capacity(text.len() + 1);
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if !std::mem::take(first) {
            out.push(b',');
        }
        out.extend_from_slice(line);
    }
    Ok(Bytes::from(out))
}

fn error_response(e: QueryError) -> Response {
    let status = match &e {
        QueryError::Access(AccessError::Unauthenticated(_)) => StatusCode::UNAUTHORIZED,
        QueryError::Access(AccessError::PermissionDenied(_)) | QueryError::Refused { .. } => {
            StatusCode::FORBIDDEN
        }
        QueryError::Invalid(m) if m.starts_with("not acceptable") => StatusCode::NOT_ACCEPTABLE,
        QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
        QueryError::ResourcesExhausted => StatusCode::UNPROCESSABLE_ENTITY,
        QueryError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        QueryError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        QueryError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        QueryError::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "HTTP data call failed");
    } else {
        tracing::info!(refusal = %e, "HTTP data call refused");
    }
    let mut response = (status, axum::Json(json!({ "error": e.to_string() }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn accept_chooses_the_format() {
        let f = |v: &str| Format::from_accept(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(Format::from_accept(None).unwrap(), Format::ArrowStream);
        assert_eq!(f("text/csv").unwrap(), Format::Csv);
        assert_eq!(f("application/json;q=0.9, text/csv").unwrap(), Format::Json);
        assert_eq!(f("*/*").unwrap(), Format::ArrowStream);
        assert!(f("image/png").is_err());
    }

    #[test]
    fn endpoint_is_beside_the_dsp_base() {
        assert_eq!(
            endpoint("https://p.example:8443/dsp"),
            "https://p.example:8443/data"
        );
        assert_eq!(endpoint("https://p.example/x/"), "https://p.example/x/data");
    }

    #[test]
    fn json_batches_join_into_one_array() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap();
        let mut enc = Encoder::new(Format::Json, schema).unwrap();
        let mut out = enc.take().to_vec();
        out.extend_from_slice(&enc.write(&batch).unwrap());
        out.extend_from_slice(&enc.write(&batch.slice(0, 0)).unwrap());
        out.extend_from_slice(&enc.write(&batch).unwrap());
        out.extend_from_slice(Format::Json.trailer());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!([{"a":1,"b":"x"},{"a":2},{"a":1,"b":"x"},{"a":2}]));
    }
}
