//! The consumer's command-line actions, `sluis negotiate` and `sluis transfer`: thin clients
//! of the local management API that start a process and wait for its outcome.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::config::Config;
use crate::mgmt_client::{MgmtClient, segment};
use crate::run::Ports;

/// Longest single wait asked of the management API (it caps waits at 60 s).
const WAIT_STEP: Duration = Duration::from_secs(30);

/// A management client for the connector that `config` describes: its URL from
/// `<data_dir>/ports.json` (written by `sluis serve`) unless `url` is given, and its API key.
pub fn client_for(config: &Path, url: Option<&str>) -> Result<MgmtClient> {
    let cfg = Config::load(config)?;
    let url = match url {
        Some(u) => u.to_string(),
        None => {
            let ports_file = cfg.data_dir.join("ports.json");
            let text = std::fs::read_to_string(&ports_file).with_context(|| {
                format!(
                    "reading {}: is `sluis serve --config {}` running? (or pass --management-url)",
                    ports_file.display(),
                    config.display()
                )
            })?;
            let ports: Ports = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a ports file", ports_file.display()))?;
            ports.management_url
        }
    };
    Ok(MgmtClient::new(&url, &cfg.management.api_key))
}

/// Starts a negotiation (the DSP TCK's start shape), waits until it is FINALIZED and returns
/// the agreement. Fails with the state and reason if it ends otherwise or takes too long.
pub async fn negotiate(
    mgmt: &MgmtClient,
    dataset_id: &str,
    offer_id: &str,
    provider_id: &str,
    connector_address: &str,
    timeout: Duration,
) -> Result<Value> {
    let start = json!({
        "datasetId": dataset_id,
        "offerId": offer_id,
        "providerId": provider_id,
        "connectorAddress": connector_address,
    });
    let id = start_process(mgmt, "negotiations", &start).await?;
    let n = wait_for(
        mgmt,
        "negotiations",
        "negotiation",
        &id,
        "FINALIZED",
        timeout,
    )
    .await?;
    let agreement_id = n["agreementId"]
        .as_str()
        .context("the finalized negotiation names no agreement")?;
    mgmt.get(&format!("agreements/{}", segment(agreement_id)))
        .await
        .context("reading the agreement")
}

/// Requests a transfer under an agreement, waits until it is STARTED and returns the
/// transfer with its `dataAddress` (endpoint and token).
pub async fn transfer(
    mgmt: &MgmtClient,
    agreement_id: &str,
    format: &str,
    provider_id: &str,
    connector_address: &str,
    timeout: Duration,
) -> Result<Value> {
    let start = json!({
        "agreementId": agreement_id,
        "format": format,
        "providerId": provider_id,
        "connectorAddress": connector_address,
    });
    let id = start_process(mgmt, "transfers", &start).await?;
    wait_for(mgmt, "transfers", "transfer", &id, "STARTED", timeout).await
}

/// POSTs a start request to `kind` and returns the new process's local id.
async fn start_process(mgmt: &MgmtClient, kind: &str, body: &Value) -> Result<String> {
    let process = mgmt
        .post(kind, body)
        .await
        .with_context(|| format!("starting the {}", kind.trim_end_matches('s')))?;
    process["id"]
        .as_str()
        .map(str::to_string)
        .context("the management API answered without a process id")
}

/// Waits until process `id` is in `target`; any other terminal state is an error.
async fn wait_for(
    mgmt: &MgmtClient,
    kind: &str,
    key: &str,
    id: &str,
    target: &str,
    timeout: Duration,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let step = deadline
            .saturating_duration_since(Instant::now())
            .min(WAIT_STEP);
        let path = format!(
            "{kind}/{}?waitFor={target}&timeoutMs={}",
            segment(id),
            step.as_millis()
        );
        let got = mgmt.get(&path).await?;
        let process = &got[key];
        let state = process["state"].as_str().unwrap_or_default();
        if state == target {
            return Ok(process.clone());
        }
        if matches!(state, "TERMINATED" | "COMPLETED" | "FINALIZED") {
            bail!(
                "the {key} {id} ended {state}: {}",
                process["error"].as_str().unwrap_or("no reason given")
            );
        }
        if Instant::now() >= deadline {
            bail!("the {key} {id} is still {state} after {timeout:?}");
        }
    }
}
