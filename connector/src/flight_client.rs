//! The consumer side of the data plane: an Arrow Flight client over TLS with a bearer token.

use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, Ticket};
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Connects to a Flight endpoint (`grpc+tls://host:port`), trusting the data-space CA.
pub async fn connect(endpoint: &str, ca_pem: &[u8], token: &str) -> Result<FlightClient> {
    let mut client = FlightClient::new(channel(endpoint, ca_pem).await?);
    client
        .add_header("authorization", &format!("Bearer {token}"))
        .context("the token is not a valid header value")?;
    Ok(client)
}

/// A TLS channel to a Flight endpoint (`grpc+tls://host:port`), for Flight and Flight SQL
/// clients.
pub async fn channel(endpoint: &str, ca_pem: &[u8]) -> Result<Channel> {
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
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
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
