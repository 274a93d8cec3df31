//! The management API: the operator's (and the TCK's) handle on the connector.
//!
//! JSON over HTTP on the management listener, guarded by the API key. Reads can wait for a
//! process to reach a state (`?waitFor=FINALIZED&timeoutMs=5000`): the waiter wakes on each
//! committed change instead of polling.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sluis_catalog::Page;
use tracing::{Instrument, error, info_span};

use crate::dsp::transfer::TransferMessage;
use crate::engine::negotiation::{self, StartNegotiation};
use crate::engine::transfer::{self, StartTransfer};
use crate::engine::{EngineError, join_url};
use crate::node::Shared;
use crate::store::Store;

/// Longest a read may wait for a state.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A management API error: status and a message saying what to do.
pub struct MgmtError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<EngineError> for MgmtError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(what) => {
                MgmtError(StatusCode::NOT_FOUND, format!("no such {what}"))
            }
            EngineError::Illegal(r) => MgmtError(StatusCode::CONFLICT, r),
            EngineError::BadRequest(r) => MgmtError(StatusCode::BAD_REQUEST, r),
            EngineError::Peer(p) => MgmtError(StatusCode::BAD_GATEWAY, p.to_string()),
            EngineError::Internal(err) => {
                error!(error = %format!("{err:#}"), "internal error");
                MgmtError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error: {err:#}"),
                )
            }
        }
    }
}

impl From<anyhow::Error> for MgmtError {
    fn from(e: anyhow::Error) -> Self {
        EngineError::Internal(e).into()
    }
}

type MgmtResult = Result<Response, MgmtError>;

/// The router of the management listener.
pub fn router(node: Shared) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/catalog", get(own_catalog))
        .route("/catalog/request", post(peer_catalog))
        .route(
            "/negotiations",
            get(list_negotiations).post(start_negotiation),
        )
        .route("/negotiations/{id}", get(get_negotiation))
        .route("/negotiations/{id}/{action}", post(negotiation_action))
        .route("/agreements/{id}", get(get_agreement))
        .route("/transfers", get(list_transfers).post(start_transfer))
        .route("/transfers/{id}", get(get_transfer))
        .route("/transfers/{id}/{action}", post(transfer_action))
        .merge(crate::mgmt_catalog::routes())
        .route("/audit", get(crate::audit::route))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            require_api_key,
        ));
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({ "status": "live" })) }),
        )
        .route("/health/ready", get(ready))
        .nest("/api/v1", api)
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(node)
}

async fn trace_request(req: Request, next: Next) -> Response {
    let span = info_span!("mgmt", method = %req.method(), path = %req.uri().path(), status = tracing::field::Empty);
    let resp = next.run(req).instrument(span.clone()).await;
    span.record("status", resp.status().as_u16());
    resp
}

async fn require_api_key(
    State(node): State<Shared>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    let expected = node.config.management.api_key.as_bytes();
    match given {
        Some(k) if constant_time_eq(k.as_bytes(), expected) => next.run(req).await,
        _ => MgmtError(
            StatusCode::UNAUTHORIZED,
            "send the management API key as x-api-key (see [management] api_key in the config)"
                .into(),
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The OpenAPI 3.1 document of this API (`connector/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn ready(State(node): State<Shared>) -> Response {
    match node.store.kv_get("ready-probe") {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => MgmtError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state store unavailable: {e:#}"),
        )
        .into_response(),
    }
}

/// Parses a JSON request body; an empty body or `null` reads as `T::default()` when allowed.
fn parse_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    empty: Option<T>,
) -> Result<T, MgmtError> {
    let trimmed = bytes.trim_ascii();
    if let Some(default) = empty
        && (trimmed.is_empty() || trimmed == b"null")
    {
        return Ok(default);
    }
    serde_json::from_slice(trimmed)
        .map_err(|e| MgmtError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn json_ok(status: StatusCode, v: impl serde::Serialize) -> MgmtResult {
    Ok((status, Json(v)).into_response())
}

// ---- catalogue --------------------------------------------------------------------------------

async fn own_catalog(State(node): State<Shared>) -> MgmtResult {
    let page = node
        .catalog
        .dsp_catalog(
            &node.service_info(),
            Page {
                offset: 0,
                limit: 10_000,
            },
        )
        .map_err(|e| anyhow::anyhow!(e))?;
    json_ok(StatusCode::OK, page.catalog)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerCatalogRequest {
    connector_address: String,
    /// When given, only a server whose certificate names this participant may answer.
    #[serde(default)]
    provider_id: Option<String>,
}

async fn peer_catalog(State(node): State<Shared>, body: Bytes) -> MgmtResult {
    let req: PeerCatalogRequest = parse_body(&body, None)?;
    let url = join_url(&req.connector_address, "catalog/request");
    let body = crate::dsp::messages::message("CatalogRequestMessage", json!({ "filter": [] }));
    let client = match &req.provider_id {
        Some(id) => node.peers.to_participant(id)?,
        None => node.peers.clone(),
    };
    let (_, catalog) = client
        .post_json(&url, &body)
        .await
        .map_err(EngineError::from)?;
    json_ok(StatusCode::OK, catalog)
}

// ---- negotiations -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WaitQuery {
    wait_for: Option<String>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ActionBody {
    reason: Option<String>,
    offer: Option<serde_json::Value>,
}

async fn start_negotiation(State(node): State<Shared>, body: Bytes) -> MgmtResult {
    let req: StartNegotiation = parse_body(&body, None)?;
    let n = negotiation::start(&node, req).await?;
    json_ok(StatusCode::CREATED, n)
}

async fn list_negotiations(State(node): State<Shared>) -> MgmtResult {
    json_ok(StatusCode::OK, node.store.negotiations(1000)?)
}

async fn get_negotiation(
    State(node): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> MgmtResult {
    get_process(&node, &id, &q, "negotiation", Store::negotiation, |n| {
        (n.state.as_str(), n.state.is_terminal())
    })
    .await
}

async fn negotiation_action(
    State(node): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> MgmtResult {
    let body: ActionBody = parse_body(&body, Some(ActionBody::default()))?;
    let reason = body
        .reason
        .unwrap_or_else(|| "terminated by the operator".into());
    let n = match action.as_str() {
        "offer" => negotiation::offer(&node, &id).await?,
        "request" => negotiation::counter_request(&node, &id, body.offer).await?,
        "agree" => negotiation::agree(&node, &id).await?,
        "verify" => negotiation::verify(&node, &id).await?,
        "finalize" => negotiation::finalize(&node, &id).await?,
        "accept" => negotiation::accept(&node, &id).await?,
        "terminate" => negotiation::terminate(&node, &id, &reason).await?,
        other => {
            return Err(MgmtError(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown action {other:?}: use offer, request, accept, agree, verify, finalize or terminate"
                ),
            ));
        }
    };
    json_ok(StatusCode::OK, n)
}

async fn get_agreement(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    let a = node
        .store
        .agreement(&id)?
        .ok_or_else(|| MgmtError(StatusCode::NOT_FOUND, "no such agreement".into()))?;
    json_ok(StatusCode::OK, a)
}

// ---- transfers --------------------------------------------------------------------------------

async fn start_transfer(State(node): State<Shared>, body: Bytes) -> MgmtResult {
    let req: StartTransfer = parse_body(&body, None)?;
    json_ok(StatusCode::CREATED, transfer::request(&node, req).await?)
}

async fn list_transfers(State(node): State<Shared>) -> MgmtResult {
    json_ok(StatusCode::OK, node.store.transfers(1000)?)
}

async fn get_transfer(
    State(node): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> MgmtResult {
    get_process(&node, &id, &q, "transfer", Store::transfer, |t| {
        (t.state.as_str(), t.state.is_terminal())
    })
    .await
}

/// A process with its history, after waiting for `?waitFor=` if asked.
async fn get_process<P: serde::Serialize>(
    node: &Shared,
    id: &str,
    q: &WaitQuery,
    key: &'static str,
    load: fn(&Store, &str) -> anyhow::Result<Option<P>>,
    state: fn(&P) -> (&'static str, bool),
) -> MgmtResult {
    let read = |node: &Shared| -> Result<Option<(String, bool)>, MgmtError> {
        Ok(load(&node.store, id)?.map(|p| {
            let (name, terminal) = state(&p);
            (name.to_string(), terminal)
        }))
    };
    wait_for(node, id, q, read).await?;
    let process = load(&node.store, id)?
        .ok_or_else(|| MgmtError(StatusCode::NOT_FOUND, format!("no such {key}")))?;
    let mut body = serde_json::Map::new();
    body.insert(
        key.into(),
        serde_json::to_value(process).map_err(anyhow::Error::from)?,
    );
    body.insert(
        "history".into(),
        serde_json::to_value(node.store.history(id)?).map_err(anyhow::Error::from)?,
    );
    json_ok(StatusCode::OK, body)
}

async fn transfer_action(
    State(node): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> MgmtResult {
    let body: ActionBody = parse_body(&body, Some(ActionBody::default()))?;
    let reason = body
        .reason
        .unwrap_or_else(|| format!("{action} by the operator"));
    let t = match action.as_str() {
        "start" | "resume" => transfer::start(&node, &id).await?,
        "suspend" => transfer::stop(&node, &id, TransferMessage::Suspension, &reason).await?,
        "complete" => transfer::stop(&node, &id, TransferMessage::Completion, &reason).await?,
        "terminate" => transfer::stop(&node, &id, TransferMessage::Termination, &reason).await?,
        other => {
            return Err(MgmtError(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown action {other:?}: use start, resume, suspend, complete or terminate"
                ),
            ));
        }
    };
    json_ok(StatusCode::OK, t)
}

/// Waits until `read` reports the wanted state (or a terminal one), or the timeout passes.
/// Subscribes before reading so that no change between the read and the wait is missed.
async fn wait_for(
    node: &Shared,
    id: &str,
    q: &WaitQuery,
    read: impl Fn(&Shared) -> Result<Option<(String, bool)>, MgmtError>,
) -> Result<(), MgmtError> {
    let Some(target) = q.wait_for.as_deref() else {
        return Ok(());
    };
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(10_000)).min(MAX_WAIT);
    let deadline = Instant::now() + timeout;
    let watch = node.store.watch(id);
    loop {
        let changed = watch.changed();
        match read(node)? {
            None => return Err(MgmtError(StatusCode::NOT_FOUND, "no such process".into())),
            Some((state, terminal)) if state == target || terminal => return Ok(()),
            Some(_) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        // only a commit that changed this process wakes the read
        let _ = tokio::time::timeout(left, changed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{OPENAPI, constant_time_eq};

    /// Every `.route(...)` of [`super::router`] is documented in `openapi.json`, with the
    /// methods it serves.
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut seen = 0;
        let routers = [
            (include_str!("mgmt.rs"), "pub fn router"),
            (include_str!("mgmt_catalog.rs"), "pub fn routes"),
        ];
        let chunks = routers.iter().flat_map(|(source, start)| {
            let router = &source[source.find(start).unwrap()..];
            let router = &router[..router.find("\n}\n").unwrap()];
            router.split(".route(").skip(1)
        });
        for chunk in chunks {
            let path = chunk.split('"').nth(1).unwrap();
            let full = if path.starts_with("/health") {
                path.to_string()
            } else {
                format!("/api/v1{path}")
            };
            let documented = &doc["paths"][&full];
            assert!(documented.is_object(), "{full} is not in openapi.json");
            let handlers = &chunk[..chunk.find(')').unwrap_or(chunk.len())];
            for method in ["get", "post", "put", "delete"] {
                if chunk.contains(&format!("{method}("))
                    || handlers.contains(&format!(".{method}("))
                {
                    assert!(
                        documented[method].is_object(),
                        "{method} {full} is not in openapi.json"
                    );
                }
            }
            seen += 1;
        }
        assert!(seen >= 12, "only {seen} routes found");
    }

    #[test]
    fn api_key_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
