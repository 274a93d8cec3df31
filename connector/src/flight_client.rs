//! The consumer side of the data plane: an Arrow Flight client over mutual TLS with the
//! transfer's token. Tokens are bound to their holder, so the client presents the
//! certificate of the participant the token was issued (or delegated) to.

use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, Ticket};
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The client certificate and key (PEM) of the participant a token belongs to.
#[derive(Clone)]
pub struct ClientCert {
    /// Certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Private key (PEM).
    pub key_pem: Vec<u8>,
}

impl ClientCert {
    /// Reads the PEM files, naming the one that cannot be read.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read(p).with_context(|| format!("reading the client {what} {}", p.display()))
        };
        Ok(Self {
            cert_pem: read(cert, "certificate")?,
            key_pem: read(key, "private key")?,
        })
    }
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the key
        f.debug_struct("ClientCert").finish_non_exhaustive()
    }
}

/// Connects to a Flight endpoint (`grpc+tls://host:port`), trusting the data-space CA and
/// presenting `cert` (the token's holder).
pub async fn connect(
    endpoint: &str,
    ca_pem: &[u8],
    cert: Option<&ClientCert>,
    token: &str,
) -> Result<FlightClient> {
    let mut client = FlightClient::new(channel(endpoint, ca_pem, cert).await?);
    client
        .add_header("authorization", &format!("Bearer {token}"))
        .context("the token is not a valid header value")?;
    Ok(client)
}

/// A TLS channel to a Flight endpoint (`grpc+tls://host:port`), for Flight and Flight SQL
/// clients, presenting `cert` if given.
pub async fn channel(endpoint: &str, ca_pem: &[u8], cert: Option<&ClientCert>) -> Result<Channel> {
    let https = endpoint
        .strip_prefix("grpc+tls://")
        .map(|rest| format!("https://{rest}"))
        .with_context(|| {
            format!("unsupported Flight endpoint {endpoint}: expected grpc+tls://host:port")
        })?;
    let host = https
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_default();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    if let Some(c) = cert {
        tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
    }
    let channel: Channel = Endpoint::from_shared(https.clone())?
        .tls_config(tls)?
        .connect()
        .await
        .with_context(|| format!("connecting to the Flight endpoint {endpoint}"))?;
    Ok(channel)
}

/// Runs `sql` with DoGet and collects the result.
pub async fn query(client: &mut FlightClient, sql: &str) -> Result<Vec<RecordBatch>> {
    let stream = client
        .do_get(Ticket::new(sql.to_string()))
        .await
        .map_err(|e| anyhow::anyhow!("{}", flight_message(&e)))?;
    stream
        .try_collect()
        .await
        .map_err(|e| anyhow::anyhow!("{}", flight_message(&e)))
}

/// The server's message of a Flight error, without the transport noise.
pub fn flight_message(e: &arrow_flight::error::FlightError) -> String {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}
