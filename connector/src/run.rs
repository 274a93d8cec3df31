//! `sluis serve`: opens the state, binds the three listeners and runs until stopped.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sluis_catalog::{CatalogStore, DataSource, Dataset, Distribution};
use sluis_policy::token::TokenIssuer;
use tokio::sync::watch;
use tracing::info;

use crate::access::ProviderAccess;
use crate::client::PeerClient;
use crate::config::{Config, DatasetConfig};
use crate::dataplane::{self, DataPlane, DataPlaneConfig, TlsIdentity};
use crate::engine::transfer::{FORMAT_FLIGHT, FORMAT_HTTP};
use crate::node::{Node, PublicUrls};
use crate::protocol::BASE_PATH;
use crate::store::Store;
use crate::tls::TlsMaterial;
use crate::{mgmt, outbox, protocol, server};

/// Written to `<data_dir>/ports.json` once every listener is bound, so that tools and tests
/// can find a connector started on port 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// The participant id.
    pub participant_id: String,
    /// DSP base URL.
    pub dsp_url: String,
    /// Management base URL.
    pub management_url: String,
    /// Flight endpoint.
    pub flight_url: String,
    /// Process id of the connector.
    pub pid: u32,
}

const TOKEN_KEY: &str = "token-private-key";

/// Runs the connector until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    serve_until(config, stop_rx).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the connector until `stop` turns true.
pub async fn serve_until(config: Config, stop: watch::Receiver<bool>) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let tls = TlsMaterial::load(&config.tls.files())?;
    let cert_id = tls.own_participant_id()?;
    if cert_id != config.participant_id {
        bail!(
            "the certificate {} is for {cert_id}, but participant_id is {}: issue a certificate for this participant with `sluis certs issue`",
            config.tls.cert.display(),
            config.participant_id
        );
    }
    let store = Store::open(&config.state_db())?;
    let tokens = token_issuer(&store)?;
    let catalog = CatalogStore::new().context("creating the catalogue")?;
    for ds in &config.datasets {
        publish(&catalog, ds)?;
    }

    let protocol_l = server::bind(config.protocol.listen, "DSP protocol listener").await?;
    let mgmt_l = server::bind(config.management.listen, "management listener").await?;
    let flight_l = server::bind(config.data_plane.listen, "data-plane (Flight) listener").await?;
    let (dsp_addr, flight_addr) = (protocol_l.local_addr()?, flight_l.local_addr()?);
    let urls = PublicUrls {
        dsp: config
            .protocol
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://{}{BASE_PATH}", public_host(dsp_addr))),
        flight: config
            .data_plane
            .public_url
            .clone()
            .unwrap_or_else(|| format!("grpc+tls://{}", public_host(flight_addr))),
        management: format!("http://{}", mgmt_l.local_addr()?),
    };
    let node = Arc::new(Node {
        participant_id: config.participant_id.clone(),
        peers: PeerClient::new(&tls, Duration::from_secs(30))?,
        config,
        store,
        catalog,
        tokens,
        urls,
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let access = Arc::new(ProviderAccess::new(node.clone())?);
    let plane = DataPlane::new(access, DataPlaneConfig::default());
    let protocol_task = tokio::spawn(server::serve_tls(
        protocol_l,
        tls.protocol_server_config()?,
        protocol::router(node.clone()).merge(dataplane::http::router(plane.clone())),
        stopped(stop.clone()),
    ));
    let mgmt_task = tokio::spawn(server::serve_plain(
        mgmt_l,
        mgmt::router(node.clone()),
        stopped(stop.clone()),
    ));
    let flight_task = tokio::spawn(dataplane::serve_plane(
        flight_l,
        Some(TlsIdentity {
            cert_pem: tls.cert_pem.clone(),
            key_pem: tls.key_pem.clone(),
        }),
        plane,
        stopped(stop.clone()),
    ));
    let outbox_task = tokio::spawn(outbox::run(node.clone(), stopped(stop.clone())));
    write_ports(&node)?;
    info!(
        participant = %node.participant_id,
        dsp = %node.urls.dsp,
        flight = %node.urls.flight,
        management = %node.urls.management,
        "sluis is running"
    );
    let _ = tokio::join!(protocol_task, mgmt_task, outbox_task);
    flight_task.await.context("the data plane panicked")??;
    info!("sluis stopped");
    Ok(())
}

/// The host:port peers use: an unspecified bind address is advertised as loopback.
fn public_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

fn token_issuer(store: &Store) -> Result<TokenIssuer> {
    if let Some(hex) = store.kv_get(TOKEN_KEY)? {
        return TokenIssuer::from_private_key_hex(&hex)
            .map_err(|e| anyhow::anyhow!("the stored token key is unusable: {e}"));
    }
    let issuer = TokenIssuer::generate();
    store.kv_put(TOKEN_KEY, &issuer.private_key_hex())?;
    Ok(issuer)
}

/// Publishes a dataset from the config: its distributions and its offers.
fn publish(catalog: &CatalogStore, ds: &DatasetConfig) -> Result<()> {
    if !ds.source.location.exists() {
        bail!(
            "dataset {}: the source {} does not exist",
            ds.id,
            ds.source.location.display()
        );
    }
    let offers = ds
        .offer_files
        .iter()
        .map(|f| read_offer(f).with_context(|| format!("dataset {}", ds.id)))
        .collect::<Result<Vec<_>>>()?;
    let source = DataSource {
        kind: ds.source.kind.clone(),
        location: ds.source.location.display().to_string(),
    };
    let distributions = [FORMAT_FLIGHT, FORMAT_HTTP]
        .into_iter()
        .map(|format| Distribution {
            id: None,
            format: format.to_string(),
            access_service: None,
            source: Some(source.clone()),
        })
        .collect();
    let dataset = Dataset {
        id: ds.id.clone(),
        title: ds.title.clone(),
        description: ds.description.clone(),
        keywords: ds.keywords.clone(),
        distributions,
        offers,
        ..Default::default()
    };
    catalog
        .put_dataset(&dataset)
        .with_context(|| format!("publishing dataset {}", ds.id))
}

fn read_offer(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the offer file {}", path.display()))?;
    let offer: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the offer file {} is not JSON", path.display()))?;
    sluis_policy::Policy::from_json(&offer).map_err(|e| {
        anyhow::anyhow!(
            "the offer file {} is not a valid ODRL offer: {e}",
            path.display()
        )
    })?;
    Ok(offer)
}

fn write_ports(node: &Node) -> Result<()> {
    let ports = Ports {
        participant_id: node.participant_id.clone(),
        dsp_url: node.urls.dsp.clone(),
        management_url: node.urls.management.clone(),
        flight_url: node.urls.flight.clone(),
        pid: std::process::id(),
    };
    let path = node.config.data_dir.join("ports.json");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&ports)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}
