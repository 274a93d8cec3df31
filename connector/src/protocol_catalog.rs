//! The DSP 2025-1 catalogue endpoints of the protocol listener.
//!
//! - `POST <base>/catalog/request`: one page of the `Catalog` the caller may see. The page is
//!   chosen with the query parameters `offset` and `limit` (default 50, at most 1000); the
//!   answer carries `Link: <…>; rel="next"` and `rel="previous"` headers to the neighbouring
//!   pages (POST the same `CatalogRequestMessage` to them). The `filter` of the message is the
//!   Sluis filter form (see `catalog/README.md`); an unsupported filter is 400 with a
//!   `CatalogError`.
//! - `GET <base>/catalog/datasets/{id}`: one `Dataset`; unknown or not visible is 404 with a
//!   `CatalogError`.
//!
//! Visibility: see [`crate::visibility`]. Catalogue reads run on the blocking pool.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use sluis_catalog::{CatalogError, CatalogFilter, OfferVisibility, Page};

use crate::dsp::messages::ErrorKind;
use crate::engine::negotiation;
use crate::mgmt_catalog::on_blocking_pool;
use crate::node::Shared;
use crate::protocol::{DspReject, caller, read};
use crate::tls::PeerIdentity;
use crate::visibility::{Caller, PeerClaims};

const CAT: ErrorKind = ErrorKind::Catalog;

/// The verified caller with its certificate claims, or 401.
fn visibility(
    peer: &Option<PeerIdentity>,
    claims: Option<Extension<PeerClaims>>,
) -> Result<Caller, DspReject> {
    Ok(Caller::with_claims(&caller(peer, CAT)?, claims))
}

/// Maps a catalogue error to a DSP `CatalogError` answer (internal details stay in the log).
fn reject(e: CatalogError) -> DspReject {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status.is_server_error() {
        tracing::error!(error = %e, "catalogue error");
    }
    let reason = e.to_dsp_error()["reason"][0]
        .as_str()
        .unwrap_or("catalogue error")
        .to_string();
    DspReject::new(status, CAT, reason)
}

/// Runs a catalogue read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, DspReject> {
    on_blocking_pool(f).await.map_err(reject)
}

/// Parses `offset` and `limit` from the query string.
pub fn parse_page(query: Option<&str>) -> Result<Page, String> {
    let mut page = Page::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{key} must be a non-negative integer"))
        };
        match key {
            "offset" => page.offset = number()?,
            "limit" => page.limit = number()?.clamp(1, Page::MAX_LIMIT),
            _ => return Err("only the query parameters offset and limit are accepted".into()),
        }
    }
    Ok(page)
}

/// The `Link` header value pointing at `page` with relation `rel`.
fn link(base: &str, page: Page, rel: &str) -> String {
    format!(
        "<{base}/catalog/request?offset={}&limit={}>; rel=\"{rel}\"",
        page.offset, page.limit
    )
}

/// `POST <base>/catalog/request`.
pub async fn catalog_request(
    State(node): State<Shared>,
    Extension(peer): Extension<Option<PeerIdentity>>,
    claims: Option<Extension<PeerClaims>>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, DspReject> {
    let who = visibility(&peer, claims)?;
    let page = parse_page(query.as_deref())
        .map_err(|m| DspReject::new(StatusCode::BAD_REQUEST, CAT, m))?;
    let (msg, _pids): (Value, _) = read(body, "CatalogRequestMessage", CAT).await?;
    let filter = CatalogFilter::from_request(&msg).map_err(reject)?;
    let svc = node.service_info();
    let catalog = node.catalog.clone();
    let result = blocking(move || catalog.dsp_catalog_for(&svc, page, &filter, &who)).await?;
    let mut resp = (StatusCode::OK, Json(result.catalog)).into_response();
    let links = [(result.next, "next"), (result.previous, "previous")];
    for (page, rel) in links {
        if let Some(page) = page
            && let Ok(v) = HeaderValue::from_str(&link(&node.urls.dsp, page, rel))
        {
            resp.headers_mut().append(header::LINK, v);
        }
    }
    Ok(resp)
}

/// `GET <base>/catalog/datasets/{id}`.
pub async fn dataset(
    State(node): State<Shared>,
    Extension(peer): Extension<Option<PeerIdentity>>,
    claims: Option<Extension<PeerClaims>>,
    Path(id): Path<String>,
) -> Result<Response, DspReject> {
    let who = visibility(&peer, claims)?;
    let svc = node.service_info();
    let catalog = node.catalog.clone();
    let not_found = || DspReject::new(StatusCode::NOT_FOUND, CAT, "no such dataset");
    let found = blocking(move || match catalog.dsp_dataset_for(&id, &svc, &who) {
        // An id that is not an IRI names no dataset.
        Err(CatalogError::InvalidId { .. }) => Ok(None),
        other => other,
    })
    .await?;
    let ds = found.ok_or_else(not_found)?;
    Ok((StatusCode::OK, Json(ds)).into_response())
}

/// Refuses a contract request for an offer the caller may not see, exactly as for an unknown
/// offer (nothing tells the caller the offer exists), and one whose `@id` is not an absolute
/// IRI (400, not a fault of ours).
pub fn check_requested_offer(node: &Shared, who: &Caller, offer: &Value) -> Result<(), DspReject> {
    let Some(id) = offer.get("@id").and_then(Value::as_str) else {
        return Ok(()); // the engine reports the missing @id
    };
    let reject = |e| DspReject::from_engine(ErrorKind::Negotiation, e);
    match negotiation::find_our_offer(node, id) {
        Ok(Some((_, ours))) if !who.is_visible(&ours) => Err(reject(negotiation::unknown_offer())),
        Err(e) => Err(reject(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_from_query() {
        assert_eq!(parse_page(None).unwrap(), Page::default());
        let p = parse_page(Some("offset=100&limit=5000")).unwrap();
        assert_eq!((p.offset, p.limit), (100, Page::MAX_LIMIT));
        assert!(parse_page(Some("offset=-1")).is_err());
        assert!(parse_page(Some("sort=title")).is_err());
    }
}
