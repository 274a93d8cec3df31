//! The catalogue part of the management API (under `/api/v1/catalog`, API key required).
//!
//! | route | what |
//! |---|---|
//! | `GET /catalog/datasets?offset=&limit=` | local datasets (management JSON, data sources included) |
//! | `POST /catalog/datasets` | create a dataset (409 when the id exists) |
//! | `GET/PUT/DELETE /catalog/datasets/{id}` | read, create or replace, remove |
//! | `GET /catalog/datasets/{id}/missing` | DCAT-AP 3.0.1 mandatory properties it lacks |
//! | `POST /catalog/import` | DCAT / DCAT-AP as Turtle (`text/turtle`) or JSON-LD (`application/ld+json`), all or nothing |
//! | `GET /catalog/export` | Turtle or JSON-LD by `Accept`, with the DCAT-AP catalogue node |
//! | `GET/POST /catalog/sparql` | read-only SPARQL 1.1 (`?query=` or a `application/sparql-query` body); JSON or CSV by `Accept` |
//! | `GET /catalog/search?q=` | datasets of the local and peer catalogues whose text matches |
//! | `GET/POST /catalog/peers`, `DELETE /catalog/peers/{id}` | the federated catalogue's peers with their crawl status |
//! | `POST /catalog/peers/{id}/crawl`, `GET /catalog/peers/{id}/datasets` | crawl now; a peer's stored datasets |
//!
//! Dataset ids in paths are percent-encoded.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sluis_catalog::{
    CatalogAbout, CatalogChange, CatalogError, CatalogStore, Dataset, RdfSyntax, SparqlLimits,
    SparqlResultsSyntax,
};

use crate::federation::{self, PeerConfig};
use crate::mgmt::MgmtError;
use crate::node::Shared;
use crate::protocol_catalog::parse_page;

/// Largest dataset or peer JSON body.
const MAX_JSON_BODY: usize = 1024 * 1024;
/// Largest import document.
const MAX_IMPORT_BODY: usize = 64 * 1024 * 1024;
/// Time limit of an operator's SPARQL query.
const SPARQL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most search hits returned.
const MAX_SEARCH_HITS: usize = 1000;

type MgmtResult = Result<Response, MgmtError>;

/// The catalogue routes, to merge into the management API's `/api/v1` router.
pub fn routes() -> Router<Shared> {
    let json_routes = Router::new()
        .route("/catalog/datasets", get(list_datasets).post(create_dataset))
        .route(
            "/catalog/datasets/{id}",
            get(get_dataset).put(put_dataset).delete(delete_dataset),
        )
        .route("/catalog/datasets/{id}/missing", get(missing))
        .route("/catalog/export", get(export))
        .route("/catalog/sparql", get(sparql_get).post(sparql_post))
        .route("/catalog/search", get(search))
        .route("/catalog/peers", get(list_peers).post(add_peer))
        .route("/catalog/peers/{id}", get(get_peer).delete(delete_peer))
        .route("/catalog/peers/{id}/crawl", post(crawl_peer))
        .route("/catalog/peers/{id}/datasets", get(peer_datasets))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    let import = Router::new()
        .route("/catalog/import", post(import))
        .layer(DefaultBodyLimit::max(MAX_IMPORT_BODY));
    json_routes.merge(import)
}

/// Maps a catalogue error to the management API's error answer.
fn catalog_error(e: CatalogError) -> MgmtError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status.is_server_error() {
        tracing::error!(error = %e, "catalogue error");
    }
    MgmtError(status, e.to_string())
}

fn bad_request(message: impl Into<String>) -> MgmtError {
    MgmtError(StatusCode::BAD_REQUEST, message.into())
}

fn not_found(what: &str) -> MgmtError {
    MgmtError(StatusCode::NOT_FOUND, format!("no such {what}"))
}

/// Runs catalogue work on the blocking pool.
pub async fn on_blocking_pool<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CatalogError::Store(format!("catalogue task failed: {e}")))?
}

/// [`on_blocking_pool`] with the error as a management answer.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, MgmtError> {
    on_blocking_pool(f).await.map_err(catalog_error)
}

fn json_ok(status: StatusCode, v: impl serde::Serialize) -> MgmtResult {
    Ok((status, Json(v)).into_response())
}

fn body_ok(media_type: &'static str, body: Vec<u8>) -> MgmtResult {
    Ok(([(header::CONTENT_TYPE, media_type)], body).into_response())
}

/// A JSON body of type `T` (unknown fields refused by `T`).
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MgmtError> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

// ---- datasets ---------------------------------------------------------------------------------

async fn list_datasets(State(node): State<Shared>, RawQuery(q): RawQuery) -> MgmtResult {
    let page = parse_page(q.as_deref()).map_err(bad_request)?;
    let catalog = node.catalog.clone();
    let (total, items) = blocking(move || {
        let ids = catalog.dataset_ids()?;
        let total = ids.len();
        let page_ids = ids.into_iter().skip(page.offset).take(page.limit);
        let mut items = Vec::new();
        for id in page_ids {
            items.extend(catalog.dataset(&id)?);
        }
        Ok((total, items))
    })
    .await?;
    json_ok(StatusCode::OK, json!({ "total": total, "datasets": items }))
}

/// Runs a logged catalogue write on the blocking pool (see [`crate::catalog_log`]).
async fn write<T: Send + 'static>(
    node: &Shared,
    apply: impl FnOnce(&CatalogStore) -> Result<(T, Option<CatalogChange>), CatalogError>
    + Send
    + 'static,
) -> Result<T, MgmtError> {
    let node = node.clone();
    blocking(move || node.catalog_log.record(|| apply(&node.catalog))).await
}

/// The change that stores `ds`.
fn put_change(ds: Dataset) -> Option<CatalogChange> {
    Some(CatalogChange::PutDataset {
        dataset: Box::new(ds),
    })
}

async fn create_dataset(State(node): State<Shared>, body: Bytes) -> MgmtResult {
    let ds: Dataset = parse_json(&body)?;
    let created = write(&node, move |catalog| {
        if catalog.dataset(&ds.id)?.is_some() {
            return Ok((None, None));
        }
        catalog.put_dataset(&ds)?;
        Ok((catalog.dataset(&ds.id)?, put_change(ds)))
    })
    .await?;
    match created {
        Some(ds) => json_ok(StatusCode::CREATED, ds),
        None => Err(MgmtError(
            StatusCode::CONFLICT,
            "a dataset with this id exists: PUT /catalog/datasets/{id} replaces it".into(),
        )),
    }
}

async fn get_dataset(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    let catalog = node.catalog.clone();
    let ds = blocking(move || catalog.dataset(&id)).await?;
    json_ok(StatusCode::OK, ds.ok_or_else(|| not_found("dataset"))?)
}

async fn put_dataset(
    State(node): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> MgmtResult {
    let ds: Dataset = parse_json(&body)?;
    if ds.id != id {
        return Err(bad_request(
            "the body's id differs from the id in the path: they must be equal",
        ));
    }
    let stored = write(&node, move |catalog| {
        let existed = catalog.dataset(&ds.id)?.is_some();
        catalog.put_dataset(&ds)?;
        Ok(((existed, catalog.dataset(&ds.id)?), put_change(ds)))
    })
    .await?;
    let status = if stored.0 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    json_ok(status, stored.1)
}

async fn delete_dataset(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    let removed = write(&node, move |catalog| {
        let removed = catalog.remove_dataset(&id)?;
        Ok((
            removed,
            removed.then_some(CatalogChange::RemoveDataset { id }),
        ))
    })
    .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found("dataset"))
    }
}

async fn missing(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    let catalog = node.catalog.clone();
    let missing = blocking(move || catalog.missing_mandatory(&id))
        .await?
        .ok_or_else(|| not_found("dataset"))?;
    json_ok(StatusCode::OK, json!({ "missing": missing }))
}

// ---- import / export --------------------------------------------------------------------------

fn media_type(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn import(State(node): State<Shared>, headers: HeaderMap, body: Bytes) -> MgmtResult {
    let syntax = match RdfSyntax::from_media_type(media_type(&headers, header::CONTENT_TYPE)) {
        Some(s @ (RdfSyntax::Turtle | RdfSyntax::JsonLd)) => s,
        _ => {
            return Err(MgmtError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type text/turtle or application/ld+json".into(),
            ));
        }
    };
    let report = write(&node, move |catalog| {
        let report = catalog.import(&body, syntax)?;
        // import accepts only UTF-8 text syntaxes, so the document is text
        let document = String::from_utf8_lossy(&body).into_owned();
        Ok((report, Some(CatalogChange::Import { syntax, document })))
    })
    .await?;
    json_ok(StatusCode::OK, report)
}

/// The export syntax asked for by `Accept` (Turtle when absent or `*/*`).
fn export_syntax(accept: &str) -> Option<RdfSyntax> {
    if accept.is_empty() {
        return Some(RdfSyntax::Turtle);
    }
    accept
        .split(',')
        .find_map(|m| match m.split(';').next()?.trim() {
            "*/*" => Some(RdfSyntax::Turtle),
            "text/turtle" => Some(RdfSyntax::Turtle),
            "application/ld+json" => Some(RdfSyntax::JsonLd),
            _ => None,
        })
}

async fn export(State(node): State<Shared>, headers: HeaderMap) -> MgmtResult {
    let syntax = export_syntax(media_type(&headers, header::ACCEPT)).ok_or_else(|| {
        MgmtError(
            StatusCode::NOT_ACCEPTABLE,
            "accept text/turtle or application/ld+json".into(),
        )
    })?;
    let about = CatalogAbout {
        service: node.service_info(),
        title: format!("Catalogue of {}", node.participant_id),
        description: format!(
            "Datasets offered by {} over the Dataspace Protocol",
            node.participant_id
        ),
        publisher_name: node.participant_id.clone(),
    };
    let catalog = node.catalog.clone();
    let body = blocking(move || catalog.export(syntax, Some(&about))).await?;
    body_ok(syntax.media_type(), body)
}

// ---- SPARQL -----------------------------------------------------------------------------------

/// The result syntax asked for by `Accept` (SPARQL JSON when absent or `*/*`).
fn results_syntax(accept: &str) -> Option<SparqlResultsSyntax> {
    if accept.is_empty() {
        return Some(SparqlResultsSyntax::Json);
    }
    accept.split(',').find_map(|m| {
        let m = m.split(';').next()?.trim();
        match m {
            "*/*" => Some(SparqlResultsSyntax::Json),
            other => SparqlResultsSyntax::from_media_type(other),
        }
    })
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn form_decode(s: &str) -> Result<String, MgmtError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad_request("malformed percent-encoding in the query"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad_request("the query is not UTF-8"))
}

/// The value of `key` in a form-encoded string.
fn form_value(form: &str, key: &str) -> Result<Option<String>, MgmtError> {
    for pair in form.split('&') {
        if let Some(v) = pair.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            return form_decode(v).map(Some);
        }
    }
    Ok(None)
}

async fn run_sparql(node: &Shared, headers: &HeaderMap, query: String) -> MgmtResult {
    let syntax = results_syntax(media_type(headers, header::ACCEPT)).ok_or_else(|| {
        MgmtError(
            StatusCode::NOT_ACCEPTABLE,
            "accept application/sparql-results+json or text/csv".into(),
        )
    })?;
    let limits = SparqlLimits {
        timeout: SPARQL_TIMEOUT,
        ..Default::default()
    };
    let catalog = node.catalog.clone();
    let answer = blocking(move || catalog.sparql_query(&query, syntax, limits)).await?;
    body_ok(answer.media_type, answer.body)
}

async fn sparql_get(
    State(node): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> MgmtResult {
    let query = form_value(q.as_deref().unwrap_or(""), "query")?
        .ok_or_else(|| bad_request("pass the SPARQL query as ?query="))?;
    run_sparql(&node, &headers, query).await
}

async fn sparql_post(State(node): State<Shared>, headers: HeaderMap, body: Bytes) -> MgmtResult {
    let text = std::str::from_utf8(&body).map_err(|_| bad_request("the body is not UTF-8"))?;
    let content_type = media_type(&headers, header::CONTENT_TYPE);
    let query = match content_type.split(';').next().unwrap_or("").trim() {
        "application/sparql-query" => text.to_string(),
        "application/x-www-form-urlencoded" => {
            if form_value(text, "update")?.is_some() {
                return Err(MgmtError(
                    StatusCode::FORBIDDEN,
                    "this endpoint is read-only: SPARQL updates are refused".into(),
                ));
            }
            form_value(text, "query")?.ok_or_else(|| bad_request("the form has no query"))?
        }
        "application/sparql-update" => {
            return Err(MgmtError(
                StatusCode::FORBIDDEN,
                "this endpoint is read-only: SPARQL updates are refused".into(),
            ));
        }
        _ => {
            return Err(MgmtError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the query as application/sparql-query or a form with query=".into(),
            ));
        }
    };
    run_sparql(&node, &headers, query).await
}

async fn search(State(node): State<Shared>, RawQuery(q): RawQuery) -> MgmtResult {
    let text = form_value(q.as_deref().unwrap_or(""), "q")?
        .filter(|t| !t.is_empty() && t.len() <= 1024)
        .ok_or_else(|| bad_request("pass the search text as ?q= (1 to 1024 bytes)"))?;
    let catalog = node.catalog.clone();
    let hits = blocking(move || catalog.search(&text, MAX_SEARCH_HITS)).await?;
    json_ok(StatusCode::OK, json!({ "hits": hits }))
}

// ---- peers ------------------------------------------------------------------------------------

async fn list_peers(State(node): State<Shared>) -> MgmtResult {
    json_ok(
        StatusCode::OK,
        json!({ "peers": node.federation.statuses() }),
    )
}

async fn get_peer(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    let status = node
        .federation
        .status(&id)
        .ok_or_else(|| not_found("peer"))?;
    json_ok(StatusCode::OK, status)
}

async fn add_peer(State(node): State<Shared>, body: Bytes) -> MgmtResult {
    let peer: PeerConfig = parse_json(&body)?;
    peer.validate().map_err(bad_request)?;
    let status = node.federation.add(&node.store, peer)?;
    json_ok(StatusCode::CREATED, status)
}

async fn delete_peer(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    match node.federation.remove(&node.store, &id) {
        Ok(true) => {}
        Ok(false) => return Err(not_found("peer")),
        Err(reason) => return Err(MgmtError(StatusCode::CONFLICT, reason)),
    }
    let catalog = node.catalog.clone();
    blocking(move || catalog.remove_peer_catalog(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn crawl_peer(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    let status = federation::crawl_now(&node, &id)
        .await
        .ok_or_else(|| not_found("peer"))?;
    json_ok(StatusCode::OK, status)
}

async fn peer_datasets(State(node): State<Shared>, Path(id): Path<String>) -> MgmtResult {
    let status = node
        .federation
        .status(&id)
        .ok_or_else(|| not_found("peer"))?;
    let catalog = node.catalog.clone();
    let datasets = blocking(move || catalog.peer_datasets(&id)).await?;
    json_ok(
        StatusCode::OK,
        json!({ "peer": status, "datasets": datasets }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        assert_eq!(export_syntax(""), Some(RdfSyntax::Turtle));
        assert_eq!(
            export_syntax("application/ld+json;q=1"),
            Some(RdfSyntax::JsonLd)
        );
        assert_eq!(export_syntax("image/png"), None);
        assert_eq!(results_syntax("text/csv"), Some(SparqlResultsSyntax::Csv));
        assert_eq!(results_syntax("*/*"), Some(SparqlResultsSyntax::Json));
    }

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_value("a=1&query=SELECT+%3Fs+%7B%7D", "query")
                .ok()
                .flatten()
                .as_deref(),
            Some("SELECT ?s {}")
        );
        assert!(form_value("query=%ZZ", "query").is_err());
    }
}
