//! `sluis catalog`: lists a peer's catalogue through the local connector's management API.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::config::Config;
use crate::mgmt_client::{MgmtClient, segment};
use crate::run::Ports;

/// Arguments of `sluis catalog`.
#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    /// The local connector's configuration (for its management URL and API key).
    #[arg(long, short, default_value = "sluis.toml", env = "SLUIS_CONFIG")]
    pub config: PathBuf,
    /// A peer of the federated catalogue, by participant id: show its stored catalogue.
    #[arg(long, conflicts_with = "url")]
    pub peer: Option<String>,
    /// Crawl the peer now before listing (with --peer).
    #[arg(long, requires = "peer")]
    pub refresh: bool,
    /// A connector's DSP base URL: fetch its catalogue live (through the local connector).
    #[arg(long)]
    pub url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The management client of the connector configured in `config`.
pub fn local_client(config: &Path) -> Result<MgmtClient> {
    let cfg = Config::load(config)?;
    let ports = cfg.data_dir.join("ports.json");
    let base = match std::fs::read_to_string(&ports) {
        Ok(text) => {
            let ports: Ports = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", ports.display()))?;
            ports.management_url
        }
        Err(_) => format!("http://{}", cfg.management.listen),
    };
    Ok(MgmtClient::new(&base, &cfg.management.api_key))
}

/// Runs `sluis catalog`.
pub async fn run(args: CatalogArgs) -> Result<()> {
    let client = local_client(&args.config)?;
    let datasets = match (&args.peer, &args.url) {
        (Some(peer), _) => {
            let path = format!("catalog/peers/{}", segment(peer));
            if args.refresh {
                let status = client.post(&format!("{path}/crawl"), &Value::Null).await?;
                if let Some(err) = status.get("lastError").and_then(Value::as_str) {
                    bail!("crawling {peer} failed: {err}");
                }
            }
            let answer = client.get(&format!("{path}/datasets")).await?;
            answer["datasets"].clone()
        }
        (None, Some(url)) => {
            let body = json!({ "connectorAddress": url });
            let catalog = client.post("catalog/request", &body).await?;
            catalog.get("dataset").cloned().unwrap_or(json!([]))
        }
        (None, None) => {
            let answer = client.get("catalog/peers").await?;
            return print_peers(&answer["peers"], args.json);
        }
    };
    print_datasets(&datasets, args.json)
}

fn print_datasets(datasets: &Value, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(datasets)?);
        return Ok(());
    }
    let items = datasets.as_array().map(Vec::as_slice).unwrap_or_default();
    println!("{:<50} {:<40} offers", "dataset", "title");
    for ds in items {
        let id = ds.get("id").or_else(|| ds.get("@id"));
        let offers = ds
            .get("offers")
            .or_else(|| ds.get("hasPolicy"))
            .and_then(Value::as_array)
            .map(|o| {
                o.iter()
                    .filter_map(|p| p["@id"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        println!(
            "{:<50} {:<40} {offers}",
            id.and_then(Value::as_str).unwrap_or("?"),
            ds.get("title").and_then(Value::as_str).unwrap_or("")
        );
    }
    println!("{} datasets", items.len());
    Ok(())
}

fn print_peers(peers: &Value, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(peers)?);
        return Ok(());
    }
    println!("peers (use --peer ID to list one's catalogue):");
    for p in peers.as_array().map(Vec::as_slice).unwrap_or_default() {
        println!(
            "  {}  {}  datasets={} last success={} last error={}",
            p["id"].as_str().unwrap_or("?"),
            p["url"].as_str().unwrap_or("?"),
            p["datasets"],
            p["lastSuccess"].as_str().unwrap_or("never"),
            p["lastError"].as_str().unwrap_or("none"),
        );
    }
    Ok(())
}
