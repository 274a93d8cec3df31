//! The DSP 2025-1 HTTP binding on the protocol listener.
//!
//! Handlers only translate: read the caller from the TLS connection, parse and bound the
//! body, call [`crate::engine`] or the catalogue, and map the outcome to the status codes and
//! error types DSP prescribes (201 on creation, 200 otherwise, 400 for illegal transitions,
//! 404 for unknown processes or processes of other parties).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{Instrument, error, info_span};

use crate::dsp::DSP_VERSION;
use crate::dsp::messages::ContractRequestMessage;
use crate::dsp::messages::{self, ErrorKind, MAX_BODY_BYTES, error_body};
use crate::dsp::transfer::TransferMessage;
use crate::engine::{EngineError, negotiation, transfer};
use crate::node::Shared;
use crate::protocol_catalog;
use crate::store::Store;
use crate::tls::PeerIdentity;
use crate::visibility::{Caller, PeerClaims};

/// The DSP base path under the protocol listener.
pub const BASE_PATH: &str = "/dsp";

/// A DSP error response.
#[derive(Debug)]
pub struct DspReject {
    status: StatusCode,
    kind: ErrorKind,
    reason: String,
    pids: Option<(String, String)>,
}

impl DspReject {
    pub(crate) fn new(status: StatusCode, kind: ErrorKind, reason: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            reason: reason.into(),
            pids: None,
        }
    }

    fn with_pids(mut self, pids: &BodyPids) -> Self {
        self.pids = pids_of(&pids.0);
        self
    }

    /// The DSP answer to an engine refusal: 404, 400, 502, or 500 with nothing internal.
    pub(crate) fn from_engine(kind: ErrorKind, e: EngineError) -> Self {
        let (status, reason) = match &e {
            EngineError::NotFound(what) => (StatusCode::NOT_FOUND, format!("no such {what}")),
            EngineError::Illegal(r) | EngineError::BadRequest(r) => {
                (StatusCode::BAD_REQUEST, r.clone())
            }
            EngineError::Peer(p) => (StatusCode::BAD_GATEWAY, p.to_string()),
            EngineError::Internal(err) => {
                error!(error = %format!("{err:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        };
        Self::new(status, kind, reason)
    }
}

impl IntoResponse for DspReject {
    fn into_response(self) -> Response {
        let pids = self.pids.as_ref().map(|(p, c)| (p.as_str(), c.as_str()));
        let body = error_body(self.kind, self.status.as_str(), &self.reason, pids);
        (self.status, Json(body)).into_response()
    }
}

type DspResult = Result<Response, DspReject>;

/// The router of the protocol listener.
pub fn router(node: Shared) -> Router {
    use negotiation as n;
    use transfer as t;
    let dsp = Router::new()
        .route("/catalog/request", post(protocol_catalog::catalog_request))
        .route("/catalog/datasets/{id}", get(protocol_catalog::dataset))
        .route("/negotiations/request", post(negotiation_request))
        .route(
            "/negotiations/{pid}",
            process_get(
                NEG,
                "no such negotiation",
                Store::negotiation,
                |n| &n.peer_id,
                negotiation::dsp_view,
            ),
        )
        .route(
            "/negotiations/{pid}/request",
            post(negotiation_counter_request),
        )
        .route(
            "/negotiations/{pid}/offers",
            neg("ContractOfferMessage", |n, c, p, m| {
                Box::pin(async move { n::on_offer(&n, &c, &p, m).await })
            }),
        )
        .route(
            "/negotiations/{pid}/events",
            neg("ContractNegotiationEventMessage", |n, c, p, m| {
                Box::pin(async move { n::on_event(&n, &c, &p, m).await })
            }),
        )
        .route(
            "/negotiations/{pid}/agreement",
            neg("ContractAgreementMessage", |n, c, p, m| {
                Box::pin(async move { n::on_agreement(&n, &c, &p, m).await })
            }),
        )
        .route(
            "/negotiations/{pid}/agreement/verification",
            neg("ContractAgreementVerificationMessage", |n, c, p, m| {
                Box::pin(async move { n::on_verification(&n, &c, &p, m).await })
            }),
        )
        .route(
            "/negotiations/{pid}/termination",
            neg("ContractNegotiationTerminationMessage", |n, c, p, m| {
                Box::pin(async move { n::on_termination(&n, &c, &p, m).await })
            }),
        )
        .route("/transfers/request", post(transfer_request))
        .route(
            "/transfers/{pid}",
            process_get(
                TR,
                "no such transfer",
                Store::transfer,
                |t| &t.peer_id,
                transfer::dsp_view,
            ),
        )
        .route(
            "/transfers/{pid}/start",
            tr("TransferStartMessage", |n, c, p, m| {
                Box::pin(async move { t::on_start(&n, &c, &p, m).await })
            }),
        )
        .route(
            "/transfers/{pid}/completion",
            tr("TransferCompletionMessage", |n, c, p, m| {
                Box::pin(async move { t::on_completion(&n, &c, &p, m).await })
            }),
        )
        .route(
            "/transfers/{pid}/suspension",
            tr("TransferSuspensionMessage", |n, c, p, m| {
                Box::pin(
                    async move { t::on_stop(&n, &c, &p, m, TransferMessage::Suspension).await },
                )
            }),
        )
        .route(
            "/transfers/{pid}/termination",
            tr("TransferTerminationMessage", |n, c, p, m| {
                Box::pin(
                    async move { t::on_stop(&n, &c, &p, m, TransferMessage::Termination).await },
                )
            }),
        );
    Router::new()
        .route("/.well-known/dspace-version", get(version))
        .nest(BASE_PATH, dsp)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(node)
}

async fn trace_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let caller = req
        .extensions()
        .get::<Option<PeerIdentity>>()
        .and_then(|p| p.as_ref().map(|p| p.0.clone()))
        .unwrap_or_default();
    let span = info_span!("dsp", method = %req.method(), path = %req.uri().path(), caller = %caller, status = tracing::field::Empty);
    let resp = next.run(req).instrument(span.clone()).await;
    span.record("status", resp.status().as_u16());
    tracing::debug!(parent: &span, "handled");
    resp
}

async fn not_found() -> DspReject {
    DspReject::new(
        StatusCode::NOT_FOUND,
        ErrorKind::Catalog,
        "no such DSP endpoint",
    )
}

async fn version(State(node): State<Shared>) -> Json<Value> {
    Json(json!({
        "protocolVersions": [{
            "version": DSP_VERSION,
            "path": BASE_PATH,
            "binding": "HTTPS",
            "serviceId": node.service_info().service_id,
        }]
    }))
}

/// The verified caller, or 401.
pub(crate) fn caller(peer: &Option<PeerIdentity>, kind: ErrorKind) -> Result<String, DspReject> {
    peer.as_ref().map(|p| p.0.clone()).ok_or_else(|| {
        DspReject::new(
            StatusCode::UNAUTHORIZED,
            kind,
            "a client certificate of the data space is required",
        )
    })
}

/// The body of a message, kept for the process ids it names: read only when a refusal needs
/// them (DSP error answers carry them), not for every message.
#[derive(Clone)]
pub(crate) struct BodyPids(Bytes);

/// Reads a bounded body and parses the expected message. Refusals carry the process ids
/// the body names (best effort), as the DSP error schemas require.
pub(crate) async fn read<T: DeserializeOwned>(
    body: Body,
    expected: &'static str,
    kind: ErrorKind,
) -> Result<(T, BodyPids), DspReject> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| body_refusal(&e, kind))?;
    let pids = BodyPids(bytes);
    match messages::parse(&pids.0, expected) {
        Ok(msg) => Ok((msg, pids)),
        Err(e) => {
            Err(DspReject::new(StatusCode::BAD_REQUEST, kind, e.to_string()).with_pids(&pids))
        }
    }
}

/// Why a body could not be read: too slow (408), too large (413), or cut off (400).
fn body_refusal(e: &axum::Error, kind: ErrorKind) -> DspReject {
    if crate::server::is_body_timeout(e) {
        return DspReject::new(
            StatusCode::REQUEST_TIMEOUT,
            kind,
            "the body did not arrive in time: send the whole body without pauses",
        );
    }
    let too_large = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .any(|e| e.is::<http_body_util::LengthLimitError>());
    if too_large {
        return DspReject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            kind,
            format!("the body exceeds {MAX_BODY_BYTES} bytes"),
        );
    }
    DspReject::new(StatusCode::BAD_REQUEST, kind, "the body could not be read")
}

/// The `providerPid` and `consumerPid` a body names, for error answers (in any JSON-LD form).
fn pids_of(bytes: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let named = |v: &Value| v.get("providerPid").is_some() || v.get("consumerPid").is_some();
    let v = if named(&v) {
        v
    } else {
        crate::dsp::jsonld::normalise(&v).unwrap_or(v)
    };
    let pid = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(256).collect::<String>())
            .unwrap_or_default()
    };
    Some((pid("providerPid"), pid("consumerPid")))
}

/// Runs an engine call to its end even if the caller hangs up meanwhile: hyper drops the
/// handler of a closed connection, and a change must not be cut apart from what follows its
/// commit (the automatic next step).
async fn to_completion<T: Send + 'static>(
    call: impl std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::spawn(call).await.unwrap_or_else(|e| {
        Err(EngineError::Internal(anyhow::anyhow!(
            "the engine task failed: {e}"
        )))
    })
}

/// 201 for a process created now, 200 for a repeated creation message.
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn ok(status: StatusCode, body: Value) -> DspResult {
    Ok((status, Json(body)).into_response())
}

// ---- negotiation ------------------------------------------------------------------------------

const NEG: ErrorKind = ErrorKind::Negotiation;

async fn negotiation_request(
    State(node): State<Shared>,
    Extension(peer): Extension<Option<PeerIdentity>>,
    claims: Option<Extension<PeerClaims>>,
    body: Body,
) -> DspResult {
    let (who, msg, pids) = contract_request(&node, &peer, claims, body).await?;
    let engine = node.clone();
    let (n, created) =
        to_completion(async move { negotiation::on_initial_request(&engine, &who, msg).await })
            .await
            .map_err(|e| DspReject::from_engine(NEG, e).with_pids(&pids))?;
    ok(created_or_ok(created), negotiation::dsp_view(&n))
}

/// A `ContractRequestMessage` from the verified caller, for an offer it may see, with the
/// process ids it names.
async fn contract_request(
    node: &Shared,
    peer: &Option<PeerIdentity>,
    claims: Option<Extension<PeerClaims>>,
    body: Body,
) -> Result<(String, ContractRequestMessage, BodyPids), DspReject> {
    let who = caller(peer, NEG)?;
    let (msg, pids): (ContractRequestMessage, _) =
        read(body, "ContractRequestMessage", NEG).await?;
    protocol_catalog::check_requested_offer(node, &Caller::with_claims(&who, claims), &msg.offer)
        .map_err(|e| e.with_pids(&pids))?;
    Ok((who, msg, pids))
}

/// `ContractRequestMessage` on an existing process (a consumer's counter-request).
async fn negotiation_counter_request(
    State(node): State<Shared>,
    Extension(peer): Extension<Option<PeerIdentity>>,
    claims: Option<Extension<PeerClaims>>,
    Path(pid): Path<String>,
    body: Body,
) -> DspResult {
    let (who, msg, pids) = contract_request(&node, &peer, claims, body).await?;
    let engine = node.clone();
    let n =
        to_completion(
            async move { negotiation::on_counter_request(&engine, &who, &pid, msg).await },
        )
        .await
        .map_err(|e| DspReject::from_engine(NEG, e).with_pids(&pids))?;
    ok(StatusCode::OK, negotiation::dsp_view(&n))
}

// ---- transfer ---------------------------------------------------------------------------------

const TR: ErrorKind = ErrorKind::Transfer;

async fn transfer_request(
    State(node): State<Shared>,
    Extension(peer): Extension<Option<PeerIdentity>>,
    body: Body,
) -> DspResult {
    let who = caller(&peer, TR)?;
    let (msg, pids) = read(body, "TransferRequestMessage", TR).await?;
    let engine = node.clone();
    let (t, created) = to_completion(async move { transfer::on_request(&engine, &who, msg).await })
        .await
        .map_err(|e| DspReject::from_engine(TR, e).with_pids(&pids))?;
    ok(created_or_ok(created), transfer::dsp_view(&t))
}

/// A GET route for process `{pid}` as its DSP view: found only if the caller is its peer
/// (anyone else gets the same 404 as for an unknown pid).
fn process_get<P: Send + 'static>(
    kind: ErrorKind,
    missing: &'static str,
    find: fn(&Store, &str) -> anyhow::Result<Option<P>>,
    peer_of: fn(&P) -> &str,
    view: fn(&P) -> Value,
) -> axum::routing::MethodRouter<Shared> {
    get(
        move |State(node): State<Shared>,
              Extension(peer): Extension<Option<PeerIdentity>>,
              Path(pid): Path<String>| async move {
            let who = caller(&peer, kind)?;
            let process = find(&node.store, &pid)
                .map_err(|e| DspReject::from_engine(kind, e.into()))?
                .filter(|p| peer_of(p) == who)
                .ok_or_else(|| DspReject::new(StatusCode::NOT_FOUND, kind, missing))?;
            ok(StatusCode::OK, view(&process))
        },
    )
}

/// An engine entry point for a message about an existing process: (node, caller, pid,
/// message).
type Inbound<T, P> =
    fn(Shared, String, String, T) -> futures::future::BoxFuture<'static, Result<P, EngineError>>;

/// A POST route for a message about process `{pid}`: caller, bounded body, engine, reply.
/// `answer` gives the body of the 200 answer (`None`: an empty body).
fn inbound<T, P>(
    expected: &'static str,
    kind: ErrorKind,
    handle: Inbound<T, P>,
    answer: fn(&P) -> Option<Value>,
) -> axum::routing::MethodRouter<Shared>
where
    T: DeserializeOwned + Send + 'static,
    P: Send + 'static,
{
    post(
        move |State(node): State<Shared>,
              Extension(peer): Extension<Option<PeerIdentity>>,
              Path(pid): Path<String>,
              body: Body| async move {
            let who = caller(&peer, kind)?;
            let (msg, pids) = read(body, expected, kind).await?;
            let process = to_completion(handle(node, who, pid, msg))
                .await
                .map_err(|e| DspReject::from_engine(kind, e).with_pids(&pids))?;
            Ok::<_, DspReject>(match answer(&process) {
                Some(body) => (StatusCode::OK, Json(body)).into_response(),
                None => StatusCode::OK.into_response(),
            })
        },
    )
}

fn neg<T: DeserializeOwned + Send + 'static>(
    expected: &'static str,
    handle: Inbound<T, crate::store::Negotiation>,
) -> axum::routing::MethodRouter<Shared> {
    inbound(expected, NEG, handle, |_| None)
}

fn tr<T: DeserializeOwned + Send + 'static>(
    expected: &'static str,
    handle: Inbound<T, crate::store::Transfer>,
) -> axum::routing::MethodRouter<Shared> {
    inbound(expected, TR, handle, |_| None)
}
