//! A two-party data space on one machine: files for a provider and a consumer, and real
//! `sluis serve` processes started from them. The demo and the integration tests use it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::mgmt_client::{MgmtClient, segment};
use crate::run::Ports;
use crate::sample::{SampleSummary, generate_meter_readings};
use crate::store::ProcessKind;
use crate::tls;

/// The provider's participant id in the scenario.
pub const PROVIDER_ID: &str = "did:web:provider.energy-dataspace.example";
/// The consumer's participant id in the scenario.
pub const CONSUMER_ID: &str = "did:web:consumer.grid-analytics.example";
/// The demo dataset.
pub const DATASET_ID: &str = "urn:sluis:dataset:meter-readings";
/// The demo offer: rows of the north region only, without the personal column.
pub const OFFER_ID: &str = "urn:sluis:offer:meter-readings-north";
/// The region the offer allows.
pub const ALLOWED_REGION: &str = "north";
/// The personal column the offer hides.
pub const HIDDEN_COLUMN: &str = "customer_name";

/// A second dataset over the same data, for tests of tokens that belong elsewhere.
pub const OTHER_DATASET_ID: &str = "urn:sluis:dataset:meter-readings-south";
/// Its offer: south rows only.
pub const OTHER_OFFER_ID: &str = "urn:sluis:offer:meter-readings-south";

/// How many datasets the scenario's provider publishes from its config.
pub const CONFIG_DATASETS: usize = 3;
/// A third dataset over the same data, whose offer meters and masks (for tests of purposes,
/// query counts and per-agreement hash masks).
pub const METERED_DATASET_ID: &str = "urn:sluis:dataset:meter-readings-metered";
/// Its offer: see [`metered_offer`].
pub const METERED_OFFER_ID: &str = "urn:sluis:offer:meter-readings-metered";
/// The purpose the metered offer requires.
pub const METERED_PURPOSE: &str = "https://w3id.org/dpv#ResearchAndDevelopment";
/// The queries the metered offer allows per agreement.
pub const METERED_MAX_QUERIES: u64 = 3;

/// The demo offer (DSP 2025-1 compact ODRL with the Sluis profile).
pub fn demo_offer() -> serde_json::Value {
    region_offer(OFFER_ID, ALLOWED_REGION)
}

/// The second dataset's offer.
pub fn other_offer() -> serde_json::Value {
    region_offer(OTHER_OFFER_ID, "south")
}

/// North rows, `customer_name` hidden, `meter_id` hashed, for [`METERED_PURPOSE`] only, at
/// most [`METERED_MAX_QUERIES`] queries.
pub fn metered_offer() -> serde_json::Value {
    let mut offer = region_offer(METERED_OFFER_ID, ALLOWED_REGION);
    let permission = &mut offer["permission"][0];
    if let Some(constraints) = permission["constraint"].as_array_mut() {
        constraints.push(json!({ "leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": [METERED_PURPOSE] }));
        constraints.push(json!({ "leftOperand": "count", "operator": "lteq",
            "rightOperand": { "@value": METERED_MAX_QUERIES.to_string(), "@type": "xsd:integer" } }));
    }
    permission["duty"] = json!([{
        "action": "sluis:hash",
        "constraint": [{ "leftOperand": "sluis:column", "operator": "isAnyOf", "rightOperand": ["meter_id"] }]
    }]);
    offer
}

fn region_offer(id: &str, region: &str) -> serde_json::Value {
    json!({
        "@id": id,
        "@type": "Offer",
        "profile": "https://w3id.org/sluis/odrl",
        "permission": [{
            "action": "use",
            "constraint": [
                { "leftOperand": "sluis:row.region", "operator": "eq", "rightOperand": region },
                { "leftOperand": "sluis:column", "operator": "isNoneOf", "rightOperand": [HIDDEN_COLUMN] }
            ]
        }]
    })
}

/// Files of one participant.
#[derive(Debug, Clone)]
pub struct ParticipantFiles {
    /// Participant id.
    pub id: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its `sluis.toml`.
    pub config: PathBuf,
    /// Its management API key.
    pub api_key: String,
}

/// The prepared data space.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Root folder.
    pub root: PathBuf,
    /// The data-space CA certificate (PEM).
    pub ca_pem: Vec<u8>,
    /// The provider.
    pub provider: ParticipantFiles,
    /// The consumer.
    pub consumer: ParticipantFiles,
    /// What the sample dataset holds.
    pub sample: SampleSummary,
}

/// Writes a CA, two participants (certificates, configs on port 0), the sample dataset
/// with `rows` rows and the offer into `root`.
pub fn prepare(root: &Path, rows: usize) -> Result<Scenario> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let ca = tls::create_ca("Sluis demo data-space CA")?;
    tls::write_file(&root.join("ca.pem"), ca.cert_pem.as_bytes())?;
    tls::write_private(&root.join("ca-key.pem"), ca.key_pem.as_bytes())?;
    let provider = participant(root, "provider", PROVIDER_ID, &ca)?;
    let consumer = participant(root, "consumer", CONSUMER_ID, &ca)?;
    let data = provider.dir.join("meter_readings.parquet");
    let sample = generate_meter_readings(&data, rows, 42)?;
    let mut cfg = std::fs::read_to_string(&provider.config)?;
    for (dataset, offer, title) in [
        (DATASET_ID, demo_offer(), "Smart meter readings"),
        (
            OTHER_DATASET_ID,
            other_offer(),
            "Smart meter readings, south",
        ),
        (
            METERED_DATASET_ID,
            metered_offer(),
            "Smart meter readings, metered",
        ),
    ] {
        let file = format!(
            "{}.json",
            crate::node::table_name(offer["@id"].as_str().unwrap_or("offer"))
        );
        tls::write_file(
            &provider.dir.join(&file),
            serde_json::to_string_pretty(&offer)?.as_bytes(),
        )?;
        cfg.push_str(&format!(
            r#"
[[dataset]]
id = "{dataset}"
title = "{title}"
description = "Synthetic 15-minute smart-meter readings with region, tariff and customer."
keywords = ["energy", "smart meter", "consumption"]
source = {{ kind = "parquet", location = "meter_readings.parquet" }}
offer_files = ["{file}"]
"#
        ));
    }
    tls::write_file(&provider.config, cfg.as_bytes())?;
    Ok(Scenario {
        root: root.to_path_buf(),
        ca_pem: ca.cert_pem.into_bytes(),
        provider,
        consumer,
        sample,
    })
}

/// Adds another participant of the data space prepared in `root` (certificate signed by the
/// same CA, config on port 0), with extra URI SANs as certificate claims.
pub fn add_participant(
    root: &Path,
    name: &str,
    id: &str,
    claims: &[&str],
) -> Result<ParticipantFiles> {
    let read = |f: &str| {
        std::fs::read_to_string(root.join(f))
            .with_context(|| format!("reading {}: run scenario::prepare first", f))
    };
    let ca = tls::IssuedCert {
        cert_pem: read("ca.pem")?,
        key_pem: read("ca-key.pem")?,
    };
    let files = participant(root, name, id, &ca)?;
    if !claims.is_empty() {
        let cert = tls::issue_participant_cert_with_claims(
            &ca,
            id,
            &["127.0.0.1".into(), "localhost".into()],
            claims,
        )?;
        tls::write_participant_files(&files.dir.join("certs"), &ca, &cert)?;
    }
    Ok(files)
}

/// Appends TOML to a participant's config.
pub fn append_config(files: &ParticipantFiles, text: &str) -> Result<()> {
    let mut cfg = std::fs::read_to_string(&files.config)?;
    cfg.push_str(text);
    tls::write_file(&files.config, cfg.as_bytes())
}

fn participant(
    root: &Path,
    name: &str,
    id: &str,
    ca: &tls::IssuedCert,
) -> Result<ParticipantFiles> {
    let dir = root.join(name);
    let cert = tls::issue_participant_cert(ca, id, &["127.0.0.1".into(), "localhost".into()])?;
    tls::write_participant_files(&dir.join("certs"), ca, &cert)?;
    let api_key = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let config = dir.join("sluis.toml");
    let text = loopback_config(id, &api_key);
    tls::write_file(&config, text.as_bytes())?;
    Ok(ParticipantFiles {
        id: id.to_string(),
        dir,
        config,
        api_key,
    })
}

/// The config of a participant on loopback, every listener on port 0, with its certificates
/// in `certs/` and its state in `data/` beside the config file.
pub fn loopback_config(id: &str, api_key: &str) -> String {
    format!(
        r#"participant_id = "{id}"
data_dir = "data"

[protocol]
listen = "127.0.0.1:0"

[management]
listen = "127.0.0.1:0"
api_key = "{api_key}"

[data_plane]
listen = "127.0.0.1:0"

[tls]
ca = "certs/ca.pem"
cert = "certs/cert.pem"
key = "certs/key.pem"
"#
    )
}

/// Starts a negotiation for `offer_id` of `dataset_id` at `provider` through the consumer's
/// management API; returns the consumer's process id.
pub async fn start_negotiation(
    consumer: &MgmtClient,
    provider: &Ports,
    dataset_id: &str,
    offer_id: &str,
) -> Result<String> {
    let body = json!({
        "datasetId": dataset_id,
        "offerId": offer_id,
        "providerId": provider.participant_id,
        "connectorAddress": provider.dsp_url,
    });
    start_process(consumer, "negotiations", &body).await
}

/// Starts a negotiation for `offer`, as the provider's catalogue showed it, of `dataset_id`
/// at `provider` (the consumer does not fetch the offer again); returns the consumer's
/// process id.
pub async fn start_negotiation_with_offer(
    consumer: &MgmtClient,
    provider: &Ports,
    dataset_id: &str,
    offer: &serde_json::Value,
) -> Result<String> {
    let body = json!({
        "datasetId": dataset_id,
        "offerId": offer["@id"],
        "providerId": provider.participant_id,
        "connectorAddress": provider.dsp_url,
        "offer": offer,
    });
    start_process(consumer, "negotiations", &body).await
}

/// Starts an `ArrowFlight-PULL` transfer under `agreement_id` at `provider` through the
/// consumer's management API; returns the consumer's process id.
pub async fn start_transfer(
    consumer: &MgmtClient,
    provider: &Ports,
    agreement_id: &str,
) -> Result<String> {
    let body = json!({
        "agreementId": agreement_id,
        "format": crate::engine::transfer::FORMAT_FLIGHT,
        "providerId": provider.participant_id,
        "connectorAddress": provider.dsp_url,
    });
    start_process(consumer, "transfers", &body).await
}

async fn start_process(
    consumer: &MgmtClient,
    path: &str,
    body: &serde_json::Value,
) -> Result<String> {
    let started = consumer.post(path, body).await?;
    started["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("POST {path} answered without an id: {started}"))
}

/// Reads a process with its history once it is in `state` or a terminal state, or after
/// `timeout` (the connector wakes the wait on each committed change; nothing polls).
pub async fn wait_for_state(
    mgmt: &MgmtClient,
    kind: ProcessKind,
    id: &str,
    state: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let path = match kind {
        ProcessKind::Negotiation => "negotiations",
        ProcessKind::Transfer => "transfers",
    };
    mgmt.get(&format!(
        "{path}/{}?waitFor={state}&timeoutMs={}",
        segment(id),
        timeout.as_millis()
    ))
    .await
}

/// A running `sluis serve` child process; killed when dropped.
pub struct Running {
    /// Its files.
    pub files: ParticipantFiles,
    /// Where it listens.
    pub ports: Ports,
    /// Its log file.
    pub log: PathBuf,
    child: std::process::Child,
}

impl Running {
    /// Starts `exe serve --config …` and waits until it has written `ports.json` (a restart
    /// on the same files binds the ports recorded there again). The log of each start is
    /// appended to `sluis.log`.
    pub fn start(exe: &Path, files: &ParticipantFiles, timeout: Duration) -> Result<Self> {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        Self::start_logging(exe, files, timeout, &filter)
    }

    /// [`Running::start`] with the log filter `filter` (`RUST_LOG` syntax).
    pub fn start_logging(
        exe: &Path,
        files: &ParticipantFiles,
        timeout: Duration,
        filter: &str,
    ) -> Result<Self> {
        let ports_file = files.dir.join("data").join("ports.json");
        let log = files.dir.join("sluis.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = std::process::Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(&files.config)
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut running = Running {
            files: files.clone(),
            ports: Ports {
                participant_id: String::new(),
                dsp_url: String::new(),
                management_url: String::new(),
                flight_url: String::new(),
                pid: child.id(),
                dsp_listen: None,
                management_listen: None,
                flight_listen: None,
            },
            log,
            child,
        };
        running.ports = running.wait_for_ports(&ports_file, timeout)?;
        Ok(running)
    }

    fn wait_for_ports(&mut self, file: &Path, timeout: Duration) -> Result<Ports> {
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(file)
                && let Ok(ports) = serde_json::from_str::<Ports>(&text)
                && ports.pid == self.child.id()
            {
                return Ok(ports);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready; its log {} says:\n{}",
                    self.files.id,
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} was not ready after {timeout:?}; see {}",
                    self.files.id,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A management API client for it.
    pub fn mgmt(&self) -> MgmtClient {
        MgmtClient::new(&self.ports.management_url, &self.files.api_key)
    }

    /// Its operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A DSP client presenting a participant's certificate (to call peers as that participant).
pub fn dsp_client(files: &ParticipantFiles) -> Result<crate::client::PeerClient> {
    let certs = files.dir.join("certs");
    let material = tls::TlsMaterial::load(&tls::TlsFiles {
        ca: certs.join("ca.pem"),
        cert: certs.join("cert.pem"),
        key: certs.join("key.pem"),
    })?;
    crate::client::PeerClient::new(&material, Duration::from_secs(30))
}
