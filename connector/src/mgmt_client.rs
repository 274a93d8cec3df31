//! A client for a connector's management API (used by the CLI, the demo and the tests).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Management API client.
#[derive(Clone)]
pub struct MgmtClient {
    base: String,
    api_key: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A plain-HTTP connector that sends each request at once: without `TCP_NODELAY`, a request
/// written in two segments waits for the server's delayed ACK (40 ms on Linux).
fn connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http
}

impl MgmtClient {
    /// A client for the management API at `base` (e.g. `http://127.0.0.1:8444`).
    pub fn new(base: &str, api_key: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector()),
        }
    }

    /// GET a path under `/api/v1`; errors unless 2xx.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await.map(|(_, v)| v)
    }

    /// POST JSON to a path under `/api/v1`; errors unless 2xx.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body))
            .await
            .map(|(_, v)| v)
    }

    /// Any call; returns the status and JSON body of a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let json_type = [(header::CONTENT_TYPE.as_str(), "application/json")];
        let (status, text) = self.raw(method.clone(), path, &json_type, bytes).await?;
        let url = format!("{}/api/v1/{}", self.base, path.trim_start_matches('/'));
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {url}: answer is not JSON"))?
        };
        if !status.is_success() {
            bail!(
                "{method} {url} failed with {status}: {}",
                json.get("error").unwrap_or(&json)
            );
        }
        Ok((status, json))
    }
}

impl MgmtClient {
    /// Any call with raw bytes and extra headers; returns the status and the body as text,
    /// whatever the status (for tests and tools that look at errors).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, String)> {
        let url = format!("{}/api/v1/{}", self.base, path.trim_start_matches('/'));
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("x-api-key", &self.api_key);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(90),
            self.client.request(req.body(Full::new(Bytes::from(body)))?),
        )
        .await
        .with_context(|| format!("{method} {url}: no answer within 90 s"))?
        .with_context(|| format!("{method} {url}: is the connector running?"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Percent-encodes an id for use as one path segment.
pub fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
