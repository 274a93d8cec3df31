//! Calls to partner connectors: DSP over HTTPS with mutual TLS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::tls::TlsMaterial;

/// Largest response body read from a peer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a call to a peer failed. The text names the peer URL and the reason.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No connection, TLS refused, or the request could not be sent.
    #[error("peer {url} unreachable: {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("peer {url} did not answer within {secs} s")]
    Timeout {
        /// The URL called.
        url: String,
        /// The time limit.
        secs: u64,
    },
    /// An answer that is not JSON or too large.
    #[error("peer {url} sent an invalid answer: {reason}")]
    InvalidAnswer {
        /// The URL called.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A non-success status.
    #[error("peer {url} refused with {status}: {body}")]
    Refused {
        /// The URL called.
        url: String,
        /// The status.
        status: StatusCode,
        /// The error body (DSP error JSON, abbreviated).
        body: String,
    },
}

impl PeerError {
    /// Whether trying again later may succeed (network trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            PeerError::Unreachable { .. } | PeerError::Timeout { .. } => true,
            PeerError::InvalidAnswer { .. } => false,
            PeerError::Refused { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
        }
    }
}

type Https = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTPS client presenting this participant's certificate.
#[derive(Clone)]
pub struct PeerClient {
    client: Https,
    timeout: Duration,
    tls: TlsMaterial,
    /// Clients that also check the server's participant id, by that id.
    pinned: Arc<Mutex<HashMap<String, Https>>>,
}

impl PeerClient {
    /// A client for the given TLS material.
    pub fn new(tls: &TlsMaterial, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: https(tls.client_config()?, timeout),
            timeout,
            tls: tls.clone(),
            pinned: Arc::default(),
        })
    }

    /// A client whose calls succeed only if the server's certificate carries
    /// `participant_id` (its URI SAN): the party the operator named, not merely any member of
    /// the data space. Clients are cached per participant.
    pub fn to_participant(&self, participant_id: &str) -> anyhow::Result<PeerClient> {
        let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        let client = match pinned.get(participant_id) {
            Some(c) => c.clone(),
            None => {
                let c = https(self.tls.client_config_for(participant_id)?, self.timeout);
                if pinned.len() >= MAX_PINNED {
                    pinned.clear();
                }
                pinned.insert(participant_id.to_string(), c.clone());
                c
            }
        };
        Ok(PeerClient {
            client,
            ..self.clone()
        })
    }

    /// POSTs a JSON body; returns the status and the JSON answer (`Null` when empty).
    pub async fn post_json(
        &self,
        url: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), PeerError> {
        let (status, _, json) = self.call(Method::POST, url, Some(body)).await?;
        Ok((status, json))
    }

    /// POSTs a JSON body; returns the JSON answer and the answer's headers (for `Link`).
    pub async fn post_json_with_headers(
        &self,
        url: &str,
        body: &Value,
    ) -> Result<(http::HeaderMap, Value), PeerError> {
        let (_, headers, json) = self.call(Method::POST, url, Some(body)).await?;
        Ok((headers, json))
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, url: &str) -> Result<(StatusCode, Value), PeerError> {
        let (status, _, json) = self.call(Method::GET, url, None).await?;
        Ok((status, json))
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, http::HeaderMap, Value), PeerError> {
        let unreachable = |reason: String| PeerError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| unreachable(format!("invalid URL: {e}")))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let collected = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| PeerError::InvalidAnswer {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok((status, headers, collected))
        };
        let (status, headers, bytes) =
            tokio::time::timeout(self.timeout, fut)
                .await
                .map_err(|_| PeerError::Timeout {
                    url: url.to_string(),
                    secs: self.timeout.as_secs(),
                })??;
        if !status.is_success() {
            return Err(PeerError::Refused {
                url: url.to_string(),
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(512).collect(),
            });
        }
        if bytes.is_empty() {
            return Ok((status, headers, Value::Null));
        }
        let json = serde_json::from_slice(&bytes).map_err(|e| PeerError::InvalidAnswer {
            url: url.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        Ok((status, headers, json))
    }
}

/// Most participant-pinned clients kept; the cache starts over beyond it.
const MAX_PINNED: usize = 1024;

fn https(config: rustls::ClientConfig, timeout: Duration) -> Https {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// The error and its causes on one line (hyper's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
