//! The federated catalogue (consumer side): a crawler that fetches the DSP catalogues of the
//! peers named in the config (`[[peer]]`) or added through the management API, and stores
//! each in its own named graph of the catalogue with the time it was fetched.
//!
//! Every peer is crawled on its own schedule (`[federation] crawl_interval_secs`) and on
//! demand. A crawl follows the `Link: <…>; rel="next"` pagination of the peer's answers. A
//! peer that is unreachable or answers something that is not a DSP `Catalog` is retried with
//! exponential backoff (with jitter, capped at the interval); its status says when it last
//! succeeded and why it last failed. Peers are crawled independently: one peer's failure
//! never stops the others. Peers added through the API are kept in the state store.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluis_catalog::DSP_CONTEXT;
use tokio::sync::Notify;
use tracing::{Instrument, info, info_span, warn};

use crate::client::PeerError;
use crate::engine::join_url;
use crate::node::Shared;
use crate::store::Store;

/// Most pages followed in one crawl.
const MAX_PAGES: usize = 1000;
/// Most datasets kept from one peer.
const MAX_DATASETS: usize = 200_000;
/// First retry delay after a failure; doubles per consecutive failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// State-store key of the peers added through the API.
const PEERS_KEY: &str = "federation-peers";

/// A peer whose catalogue is crawled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's participant id (an IRI); its catalogue's `participantId` must equal it.
    pub id: String,
    /// The peer's DSP base URL (`https://host:port/dsp`).
    pub url: String,
}

impl PeerConfig {
    /// Checks the id is an IRI and the URL an https URL.
    pub fn validate(&self) -> Result<(), String> {
        if !self.id.contains(':') || self.id.len() > 2048 || self.id.contains(char::is_whitespace) {
            return Err(format!("peer id {:?} is not an IRI", trunc(&self.id)));
        }
        if !self.url.starts_with("https://") || self.url.len() > 2048 {
            return Err(format!(
                "peer url {:?} must be the https URL of its DSP base",
                trunc(&self.url)
            ));
        }
        Ok(())
    }
}

/// `at` plus `d` (a day when `d` does not fit).
fn later(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    at + chrono::TimeDelta::from_std(d).unwrap_or_else(|_| chrono::TimeDelta::days(1))
}

fn trunc(s: &str) -> String {
    s.chars().take(200).collect()
}

/// How the crawl of one peer is going.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// The peer.
    pub id: String,
    /// Its DSP base URL.
    pub url: String,
    /// `config` or `api`.
    pub source: &'static str,
    /// When a crawl last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// When a crawl last failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Why it last failed (cleared by a success).
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// When the next crawl is due.
    pub next_crawl: Option<DateTime<Utc>>,
    /// Datasets stored by the last successful crawl.
    pub datasets: usize,
    /// Datasets or offers the last crawl left out as malformed.
    pub skipped: usize,
}

impl PeerStatus {
    fn new(peer: &PeerConfig, source: &'static str) -> Self {
        PeerStatus {
            id: peer.id.clone(),
            url: peer.url.clone(),
            source,
            next_crawl: Some(Utc::now()),
            ..Default::default()
        }
    }

    fn succeeded(
        &mut self,
        at: DateTime<Utc>,
        report: &sluis_catalog::PeerStoreReport,
        every: Duration,
    ) {
        self.last_success = Some(at);
        self.last_error = None;
        self.consecutive_failures = 0;
        self.datasets = report.datasets;
        self.skipped = report.skipped;
        self.next_crawl = Some(later(at, every));
    }

    fn failed(&mut self, at: DateTime<Utc>, reason: String, every: Duration) {
        self.last_error_at = Some(at);
        self.last_error = Some(reason);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let exp = FIRST_RETRY
            .saturating_mul(1 << self.consecutive_failures.min(16))
            .min(every);
        let jitter = Duration::from_millis(fastrand::u64(0..=exp.as_millis() as u64 / 4));
        self.next_crawl = Some(later(at, exp + jitter));
    }
}

/// The crawler's peers and their status.
pub struct Federation {
    peers: Mutex<BTreeMap<String, PeerStatus>>,
    wake: Notify,
    every: Duration,
}

/// Why a crawl failed, as recorded in the peer's status.
#[derive(Debug, thiserror::Error)]
enum CrawlError {
    #[error("{0}")]
    Peer(#[from] PeerError),
    #[error("invalid DSP catalogue: {0}")]
    Invalid(String),
    #[error("storing the catalogue failed: {0}")]
    Store(String),
    #[error("preparing a TLS client for this peer failed: {0}")]
    Client(String),
}

impl Federation {
    /// The peers of the config and those added earlier through the API.
    pub fn new(config: &[PeerConfig], store: &Store, every: Duration) -> Result<Self> {
        let mut peers = BTreeMap::new();
        for p in config {
            peers.insert(p.id.clone(), PeerStatus::new(p, "config"));
        }
        for p in api_peers(store)? {
            peers
                .entry(p.id.clone())
                .or_insert_with(|| PeerStatus::new(&p, "api"));
        }
        Ok(Federation {
            peers: Mutex::new(peers),
            wake: Notify::new(),
            every,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PeerStatus>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every peer's status.
    pub fn statuses(&self) -> Vec<PeerStatus> {
        self.lock().values().cloned().collect()
    }

    /// One peer's status.
    pub fn status(&self, id: &str) -> Option<PeerStatus> {
        self.lock().get(id).cloned()
    }

    /// Adds (or re-points) a peer through the API, keeps it in the state store and crawls
    /// it soon.
    pub fn add(&self, store: &Store, peer: PeerConfig) -> Result<PeerStatus> {
        let mut peers = self.lock();
        let status = PeerStatus::new(&peer, "api");
        peers.insert(peer.id.clone(), status.clone());
        save_api_peers(store, &peers)?;
        drop(peers);
        self.wake.notify_one();
        Ok(status)
    }

    /// Forgets a peer added through the API. `Ok(false)` when unknown; an error for a peer
    /// of the config (remove it there).
    pub fn remove(&self, store: &Store, id: &str) -> Result<bool, String> {
        let mut peers = self.lock();
        match peers.get(id).map(|p| p.source) {
            None => return Ok(false),
            Some("config") => {
                return Err("this peer is listed in the config: remove its [[peer]] entry".into());
            }
            Some(_) => {}
        }
        peers.remove(id);
        save_api_peers(store, &peers).map_err(|e| format!("{e:#}"))?;
        Ok(true)
    }

    fn due(&self, now: DateTime<Utc>) -> Vec<PeerConfig> {
        self.lock()
            .values()
            .filter(|s| s.next_crawl.is_some_and(|t| t <= now))
            .map(|s| PeerConfig {
                id: s.id.clone(),
                url: s.url.clone(),
            })
            .collect()
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock().values().filter_map(|s| s.next_crawl).min()
    }

    fn record(&self, id: &str, outcome: &Result<sluis_catalog::PeerStoreReport, CrawlError>) {
        let now = Utc::now();
        if let Some(s) = self.lock().get_mut(id) {
            match outcome {
                Ok(report) => s.succeeded(now, report, self.every),
                Err(e) => s.failed(now, e.to_string(), self.every),
            }
        }
    }
}

fn api_peers(store: &Store) -> Result<Vec<PeerConfig>> {
    match store.kv_get(PEERS_KEY)? {
        Some(text) => {
            serde_json::from_str(&text).context("reading the peers added through the API")
        }
        None => Ok(Vec::new()),
    }
}

fn save_api_peers(store: &Store, peers: &BTreeMap<String, PeerStatus>) -> Result<()> {
    let list: Vec<PeerConfig> = peers
        .values()
        .filter(|s| s.source == "api")
        .map(|s| PeerConfig {
            id: s.id.clone(),
            url: s.url.clone(),
        })
        .collect();
    store.kv_put(PEERS_KEY, &serde_json::to_string(&list)?)
}

/// Crawls one peer now and records the outcome; returns its status.
pub async fn crawl_now(node: &Shared, id: &str) -> Option<PeerStatus> {
    let peer = node.federation.status(id)?;
    let peer = PeerConfig {
        id: peer.id,
        url: peer.url,
    };
    crawl_and_record(node, &peer).await;
    node.federation.status(id)
}

async fn crawl_and_record(node: &Shared, peer: &PeerConfig) {
    let span = info_span!("crawl", peer = %peer.id);
    let outcome = crawl(node, peer).instrument(span.clone()).await;
    match &outcome {
        Ok(r) => {
            info!(parent: &span, datasets = r.datasets, skipped = r.skipped, "peer catalogue stored")
        }
        Err(e) => warn!(parent: &span, error = %e, "peer catalogue crawl failed"),
    }
    node.federation.record(&peer.id, &outcome);
}

/// Runs the crawler until `stop` resolves.
pub async fn run(node: Shared, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let due = node.federation.due(Utc::now());
        let crawls = due.iter().map(|p| crawl_and_record(&node, p));
        futures::future::join_all(crawls).await;
        let wait = node
            .federation
            .next_due()
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(node.federation.every)
            .max(Duration::from_millis(50));
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
            _ = node.federation.wake.notified() => {}
        }
    }
}

/// Fetches every page of a peer's catalogue and stores it in the peer's graph.
async fn crawl(
    node: &Shared,
    peer: &PeerConfig,
) -> Result<sluis_catalog::PeerStoreReport, CrawlError> {
    let fetched_at = Utc::now();
    let request = crate::dsp::messages::message("CatalogRequestMessage", json!({ "filter": [] }));
    let mut url = join_url(&peer.url, "catalog/request");
    let mut first: Option<Value> = None;
    let mut datasets: Vec<Value> = Vec::new();
    // only a server whose certificate names the peer's participant id may answer
    let client = node
        .peers
        .to_participant(&peer.id)
        .map_err(|e| CrawlError::Client(format!("{e:#}")))?;
    for _ in 0..MAX_PAGES {
        let (headers, page) = client.post_json_with_headers(&url, &request).await?;
        check_catalog(&page, &peer.id)?;
        if let Some(items) = page.get("dataset").and_then(Value::as_array) {
            datasets.extend(items.iter().cloned());
        }
        if datasets.len() > MAX_DATASETS {
            return Err(CrawlError::Invalid(format!(
                "more than {MAX_DATASETS} datasets"
            )));
        }
        first.get_or_insert(page);
        match next_link(&headers, &peer.url)? {
            Some(next) => url = next,
            None => break,
        }
    }
    let mut catalog = first.unwrap_or(Value::Null);
    catalog["dataset"] = Value::Array(datasets);
    let catalog_store = node.catalog.clone();
    let id = peer.id.clone();
    tokio::task::spawn_blocking(move || catalog_store.store_peer_catalog(&id, fetched_at, &catalog))
        .await
        .map_err(|e| CrawlError::Store(e.to_string()))?
        .map_err(|e| CrawlError::Store(e.to_string()))
}

/// A page must be a DSP 2025-1 `Catalog` of the expected participant.
fn check_catalog(page: &Value, peer_id: &str) -> Result<(), CrawlError> {
    let bad = |m: String| Err(CrawlError::Invalid(m));
    let Some(obj) = page.as_object() else {
        return bad("the answer is not a JSON object".into());
    };
    if obj.get("@type").and_then(Value::as_str) != Some("Catalog") {
        return bad(format!(
            "@type is {}, expected \"Catalog\"",
            obj.get("@type")
                .map(|t| trunc(&t.to_string()))
                .unwrap_or("missing".into())
        ));
    }
    let context_ok = obj
        .get("@context")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|i| i == DSP_CONTEXT));
    if !context_ok {
        return bad("@context does not contain the DSP 2025-1 context".into());
    }
    match obj.get("participantId").and_then(Value::as_str) {
        Some(p) if p == peer_id => {}
        other => {
            return bad(format!(
                "participantId is {:?}, expected the peer's id {peer_id:?}",
                other.map(trunc)
            ));
        }
    }
    if obj.get("dataset").is_some_and(|d| !d.is_array()) {
        return bad("dataset is not an array".into());
    }
    Ok(())
}

/// The `rel="next"` target of the `Link` headers; it must stay on the peer's DSP base.
fn next_link(headers: &http::HeaderMap, base: &str) -> Result<Option<String>, CrawlError> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let target = parts.next().unwrap_or("").trim();
            let is_next = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            if is_next {
                if !target.starts_with(base.trim_end_matches('/')) {
                    return Err(CrawlError::Invalid(format!(
                        "the next page {:?} is not under the peer's DSP base",
                        trunc(target)
                    )));
                }
                return Ok(Some(target.to_string()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_stay_on_the_peer() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::LINK,
            "<https://p/dsp/catalog/request?offset=0&limit=2>; rel=\"previous\""
                .parse()
                .unwrap(),
        );
        h.append(
            http::header::LINK,
            "<https://p/dsp/catalog/request?offset=4&limit=2>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h, "https://p/dsp").unwrap().as_deref(),
            Some("https://p/dsp/catalog/request?offset=4&limit=2")
        );
        assert!(next_link(&h, "https://q/dsp").is_err());
        assert_eq!(
            next_link(&http::HeaderMap::new(), "https://p/dsp").unwrap(),
            None
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let peer = PeerConfig {
            id: "did:web:p".into(),
            url: "https://p/dsp".into(),
        };
        let mut s = PeerStatus::new(&peer, "config");
        let every = Duration::from_secs(60);
        let now = Utc::now();
        s.failed(now, "x".into(), every);
        let first = s.next_crawl.unwrap() - now;
        for _ in 0..20 {
            s.failed(now, "x".into(), every);
        }
        let last = s.next_crawl.unwrap() - now;
        assert!(first < last);
        assert!(last.to_std().unwrap() <= every + every / 4);
        assert_eq!(s.consecutive_failures, 21);
    }

    #[test]
    fn catalogues_are_checked() {
        let ok =
            json!({"@context": [DSP_CONTEXT], "@type": "Catalog", "participantId": "did:web:p"});
        assert!(check_catalog(&ok, "did:web:p").is_ok());
        assert!(check_catalog(&ok, "did:web:q").is_err());
        assert!(check_catalog(&json!({"@type": "Dataset"}), "did:web:p").is_err());
        assert!(check_catalog(&json!([1]), "did:web:p").is_err());
    }
}
