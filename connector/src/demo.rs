//! `sluis demo`: a provider and a consumer on this machine go from catalogue to a
//! policy-enforced Arrow Flight query, and the demo checks what the consumer received.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use crate::dsp::messages::DataAddress;
use crate::engine::transfer::FORMAT_FLIGHT;
use crate::flight_client;
use crate::mgmt_client::{MgmtClient, segment};
use crate::scenario::{
    self, ALLOWED_REGION, DATASET_ID, HIDDEN_COLUMN, OFFER_ID, Running, Scenario,
};

/// What the consumer obtained through DSP: the agreement and the data address.
#[derive(Debug, Clone)]
pub struct Contracted {
    /// The consumer's negotiation, with history.
    pub negotiation: Value,
    /// The agreement.
    pub agreement: Value,
    /// The consumer's transfer, with history.
    pub transfer: Value,
    /// Where and how to pull the data.
    pub address: DataAddress,
}

/// Prints a step when `verbose`.
struct Out {
    verbose: bool,
    start: Instant,
}

impl Out {
    fn step(&self, title: &str) {
        if self.verbose {
            println!(
                "\n[{:>7.1} ms] {title}",
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    fn line(&self, text: impl AsRef<str>) {
        if self.verbose {
            println!("             {}", text.as_ref());
        }
    }
}

/// The consumer fetches the provider's catalogue, negotiates the demo offer to FINALIZED and
/// starts an `ArrowFlight-PULL` transfer, all through its own management API.
pub async fn contract(
    consumer: &MgmtClient,
    provider: &Running,
    dataset_id: &str,
    offer_id: &str,
    verbose: bool,
) -> Result<Contracted> {
    let out = Out {
        verbose,
        start: Instant::now(),
    };
    let dsp = &provider.ports.dsp_url;
    out.step(&format!(
        "Consumer fetches the provider's DSP catalogue from {dsp}"
    ));
    let catalog = consumer
        .post("catalog/request", &json!({ "connectorAddress": dsp }))
        .await
        .context("fetching the provider's catalogue")?;
    let dataset = catalog["dataset"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["@id"] == dataset_id))
        .with_context(|| {
            format!("the provider's catalogue does not list {dataset_id}: {catalog}")
        })?;
    out.line(format!(
        "dataset {dataset_id}  \"{}\"",
        dataset["dct:title"]
            .as_str()
            .or(dataset["title"].as_str())
            .unwrap_or("")
    ));
    for offer in dataset["hasPolicy"].as_array().into_iter().flatten() {
        out.line(format!("offer   {}", offer));
    }

    out.step("Consumer negotiates the offer (DSP contract negotiation over mutual TLS)");
    let started = consumer
        .post(
            "negotiations",
            &json!({
                "datasetId": dataset_id,
                "offerId": offer_id,
                "providerId": provider.ports.participant_id,
                "connectorAddress": dsp,
            }),
        )
        .await?;
    let id = started["id"]
        .as_str()
        .context("no negotiation id")?
        .to_string();
    let negotiation = consumer
        .get(&format!(
            "negotiations/{}?waitFor=FINALIZED&timeoutMs=30000",
            segment(&id)
        ))
        .await?;
    print_history(&out, &negotiation["history"]);
    let state = negotiation["negotiation"]["state"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        state == "FINALIZED",
        "the negotiation ended in {state}, not FINALIZED: {}",
        negotiation["negotiation"]["error"]
    );
    let agreement_id = negotiation["negotiation"]["agreementId"]
        .as_str()
        .context("no agreement id")?
        .to_string();
    let agreement = consumer
        .get(&format!("agreements/{}", segment(&agreement_id)))
        .await?;
    out.line(format!("agreement {}", agreement["policy"]));

    out.step("Consumer requests an ArrowFlight-PULL transfer");
    let started = consumer
        .post(
            "transfers",
            &json!({
                "agreementId": agreement_id,
                "format": FORMAT_FLIGHT,
                "providerId": provider.ports.participant_id,
                "connectorAddress": dsp,
            }),
        )
        .await?;
    let tid = started["id"]
        .as_str()
        .context("no transfer id")?
        .to_string();
    let transfer = consumer
        .get(&format!(
            "transfers/{}?waitFor=STARTED&timeoutMs=30000",
            segment(&tid)
        ))
        .await?;
    print_history(&out, &transfer["history"]);
    let address: DataAddress = serde_json::from_value(transfer["transfer"]["dataAddress"].clone())
        .with_context(|| format!("the transfer has no data address: {}", transfer["transfer"]))?;
    out.line(format!(
        "data address: {} (table {}, token {} bytes)",
        address.endpoint.as_deref().unwrap_or("?"),
        address.property("table").unwrap_or("?"),
        address.property("authorization").map(str::len).unwrap_or(0)
    ));
    Ok(Contracted {
        negotiation,
        agreement,
        transfer,
        address,
    })
}

fn print_history(out: &Out, history: &Value) {
    let entries = history.as_array().cloned().unwrap_or_default();
    let first = entries
        .first()
        .and_then(|e| e["at"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    for e in entries {
        let at = e["at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let offset = match (first, at) {
            (Some(f), Some(a)) => format!(
                "+{:.1} ms",
                (a - f).num_microseconds().unwrap_or(0) as f64 / 1e3
            ),
            _ => String::new(),
        };
        out.line(format!(
            "{:<10} {:>10}  {}",
            e["state"].as_str().unwrap_or(""),
            offset,
            e["note"].as_str().unwrap_or("")
        ));
    }
}

/// The rows and columns a consumer received, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Column names of the result schema.
    pub columns: Vec<String>,
    /// Number of rows.
    pub rows: usize,
    /// Distinct values of `region` seen.
    pub regions: Vec<String>,
}

/// Summarises query results.
pub fn summarise(batches: &[RecordBatch]) -> Received {
    let columns = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let mut regions = std::collections::BTreeSet::new();
    for b in batches {
        if let Some(col) = b.column_by_name("region") {
            let col =
                arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).expect("cast to utf8");
            let col = col.as_string::<i32>();
            for i in 0..col.len() {
                if col.is_valid(i) {
                    regions.insert(col.value(i).to_string());
                }
            }
        }
    }
    Received {
        columns,
        rows: batches.iter().map(RecordBatch::num_rows).sum(),
        regions: regions.into_iter().collect(),
    }
}

/// Runs the whole demo in `dir` (a temporary folder when `None`).
pub async fn run(rows: usize, dir: Option<PathBuf>) -> Result<()> {
    let tmp;
    let root: &Path = match &dir {
        Some(d) => d,
        None => {
            tmp = tempfile::Builder::new().prefix("sluis-demo-").tempdir()?;
            tmp.path()
        }
    };
    let start = Instant::now();
    println!(
        "Sluis demo: a provider and a consumer in a local data space ({})",
        root.display()
    );
    println!(
        "\n[    0.0 ms] Creating a data-space CA, two participant certificates and {rows} smart-meter readings"
    );
    let scn: Scenario = tokio::task::spawn_blocking({
        let root = root.to_path_buf();
        move || scenario::prepare(&root, rows)
    })
    .await??;
    println!(
        "             rows per region: {}",
        scn.sample
            .rows_per_region
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let exe = std::env::current_exe().context("locating the sluis binary")?;
    let provider = Running::start(&exe, &scn.provider, Duration::from_secs(60))?;
    let consumer = Running::start(&exe, &scn.consumer, Duration::from_secs(60))?;
    println!(
        "\n[{:>7.1} ms] Started provider {} (DSP {}, Flight {})\n             and consumer {} (DSP {})",
        start.elapsed().as_secs_f64() * 1e3,
        provider.ports.participant_id,
        provider.ports.dsp_url,
        provider.ports.flight_url,
        consumer.ports.participant_id,
        consumer.ports.dsp_url
    );
    let result = async {
        let contracted = contract(&consumer.mgmt(), &provider, DATASET_ID, OFFER_ID, true).await?;
        query_and_check(&scn, &contracted).await
    }
    .await;
    if result.is_err() {
        eprintln!(
            "\nlogs: {} and {}",
            provider.log.display(),
            consumer.log.display()
        );
    }
    result?;
    println!("\nDone in {:.1} s.", start.elapsed().as_secs_f64());
    Ok(())
}

async fn query_and_check(scn: &Scenario, c: &Contracted) -> Result<()> {
    let endpoint = c.address.endpoint.as_deref().context("no endpoint")?;
    let token = c.address.property("authorization").context("no token")?;
    let table = c.address.property("table").context("no table")?;
    println!("\n[  Flight ] Consumer queries {endpoint} with its token");
    // the token is bound to the consumer: its client certificate goes with it
    let certs = scn.consumer.dir.join("certs");
    let cert = flight_client::ClientCert::load(&certs.join("cert.pem"), &certs.join("key.pem"))?;
    let mut client = flight_client::connect(endpoint, &scn.ca_pem, Some(&cert), token).await?;
    let t0 = Instant::now();
    let batches = flight_client::query(&mut client, &format!("SELECT * FROM {table}")).await?;
    let secs = t0.elapsed().as_secs_f64();
    let got = summarise(&batches);
    println!(
        "             SELECT * FROM {table}: {} rows in {:.2} s",
        got.rows, secs
    );
    println!("             columns: {}", got.columns.join(", "));
    if let Some(b) = batches.iter().find(|b| b.num_rows() > 0) {
        let sample = b.slice(0, b.num_rows().min(5));
        println!("{}", arrow::util::pretty::pretty_format_batches(&[sample])?);
    }
    let probe =
        flight_client::query(&mut client, &format!("SELECT {HIDDEN_COLUMN} FROM {table}")).await;
    match &probe {
        Ok(_) => {
            println!("             SELECT {HIDDEN_COLUMN} ...: answered (this is a policy breach)")
        }
        Err(e) => println!("             SELECT {HIDDEN_COLUMN} ...: refused ({e})"),
    }
    let expected = scn
        .sample
        .rows_per_region
        .get(ALLOWED_REGION)
        .copied()
        .unwrap_or(0) as usize;
    println!("\nCheck:");
    let checks = [
        (
            format!("row count is the {ALLOWED_REGION} region's ({expected})"),
            got.rows == expected,
        ),
        (
            format!("only region {ALLOWED_REGION} present"),
            got.regions == [ALLOWED_REGION.to_string()],
        ),
        (
            format!("column {HIDDEN_COLUMN} absent"),
            !got.columns.iter().any(|c| c == HIDDEN_COLUMN),
        ),
        (
            format!("querying {HIDDEN_COLUMN} is refused"),
            probe.is_err(),
        ),
    ];
    for (what, ok) in &checks {
        println!("  [{}] {what}", if *ok { "ok" } else { "FAILED" });
    }
    if checks.iter().any(|(_, ok)| !ok) {
        bail!("the policy was not enforced as agreed");
    }
    println!("Policy enforced: the consumer received exactly what the agreement allows.");
    Ok(())
}
