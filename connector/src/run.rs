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
use tracing::{info, warn};

use crate::access::ProviderAccess;
use crate::catalog_log::CatalogLog;
use crate::client::PeerClient;
use crate::config::{Config, DatasetConfig};
use crate::dataplane::{self, DataPlane, TlsIdentity};
use crate::engine::transfer::{FORMAT_FLIGHT, FORMAT_HTTP};
use crate::federation::{self, Federation};
use crate::node::{Node, PublicUrls};
use crate::protocol::BASE_PATH;
use crate::store::Store;
use crate::tls::TlsMaterial;
use crate::{engine, mgmt, outbox, protocol, server, visibility};

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
    /// The bound address of the DSP listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsp_listen: Option<SocketAddr>,
    /// The bound address of the management listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_listen: Option<SocketAddr>,
    /// The bound address of the Flight listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flight_listen: Option<SocketAddr>,
}

impl Ports {
    /// The ports recorded by an earlier start in `data_dir`, if any.
    pub fn read(data_dir: &Path) -> Option<Ports> {
        let text = std::fs::read_to_string(data_dir.join("ports.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
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
    let limits = config.data_plane.limits();
    let store = Store::open(&config.state_db())?;
    let tokens = token_issuer(&store)?;
    let catalog_log = CatalogLog::open(&config.data_dir)?;
    let catalog = catalog_log.restore().context("restoring the catalogue")?;
    visibility::install(&catalog)?;
    for ds in &config.datasets {
        publish(&catalog, ds)?;
    }
    let federation = Federation::new(
        &config.peers,
        &store,
        Duration::from_secs(config.federation.crawl_interval_secs.max(1)),
    )?;

    let before = Ports::read(&config.data_dir);
    let before = |f: fn(&Ports) -> Option<SocketAddr>| before.as_ref().and_then(f);
    let protocol_l = bind_again(
        config.protocol.listen,
        before(|p| p.dsp_listen),
        "DSP protocol listener",
    )
    .await?;
    let mgmt_l = bind_again(
        config.management.listen,
        before(|p| p.management_listen),
        "management listener",
    )
    .await?;
    let flight_l = bind_again(
        config.data_plane.listen,
        before(|p| p.flight_listen),
        "data-plane (Flight) listener",
    )
    .await?;
    let (dsp_addr, flight_addr) = (protocol_l.local_addr()?, flight_l.local_addr()?);
    let mgmt_addr = mgmt_l.local_addr()?;
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
        management: format!("http://{mgmt_addr}"),
    };
    let node = Arc::new(Node {
        participant_id: config.participant_id.clone(),
        peers: PeerClient::new(&tls, Duration::from_secs(30))?,
        config,
        store,
        catalog,
        tokens,
        urls,
        federation,
        catalog_log,
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let access = Arc::new(ProviderAccess::new(node.clone(), &tls)?);
    let plane = DataPlane::try_new(access, limits)?;
    let fds = server::open_files_limit();
    let (dsp_limits, mgmt_limits) = (
        server::Limits::protocol(&node.config.http, fds),
        server::Limits::management(&node.config.http, fds),
    );
    info!(
        open_files = fds,
        dsp_connections = dsp_limits.max_connections,
        dsp_connections_per_ip = dsp_limits.max_connections_per_ip,
        management_connections = mgmt_limits.max_connections,
        "connection limits"
    );
    if node.config.management.is_plain_off_loopback() {
        warn!(
            listen = %mgmt_addr,
            "THE MANAGEMENT API IS SERVED OVER PLAIN HTTP OFF LOOPBACK (management.allow_plain_http_off_loopback = true): its API key crosses the network in clear; put a TLS-terminating proxy in front of it or listen on 127.0.0.1"
        );
    }
    let protocol_task = tokio::spawn(server::serve_tls(
        protocol_l,
        tls.protocol_server_config()?,
        protocol::router(node.clone()).merge(dataplane::http::router(plane.clone())),
        dsp_limits,
        stopped(stop.clone()),
    ));
    let mgmt_task = tokio::spawn(server::serve_plain(
        mgmt_l,
        mgmt::router(node.clone()),
        mgmt_limits,
        stopped(stop.clone()),
    ));
    // Flight calls are served on the query threads: a flood of them (TLS, encoding, the
    // queries themselves) leaves this runtime's threads to DSP, management and health
    let flight_l = flight_l
        .into_std()
        .context("handing the Flight listener to the query threads")?;
    let flight_identity = TlsIdentity {
        cert_pem: tls.cert_pem.clone(),
        key_pem: tls.key_pem.clone(),
        client_ca_pem: Some(tls.ca_pem.clone()),
    };
    let flight_stop = stopped(stop.clone());
    let query_runtime = plane.query_runtime().clone();
    let flight_task = query_runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(flight_l)
            .context("registering the Flight listener with the query threads")?;
        dataplane::serve_plane(listener, Some(flight_identity), plane, flight_stop).await
    });
    let outbox_task = tokio::spawn(outbox::run(node.clone(), stopped(stop.clone())));
    let crawler_task = tokio::spawn(federation::run(node.clone(), stopped(stop.clone())));
    let (negotiations, transfers) = engine::resume(&node)?;
    info!(
        negotiations,
        transfers, "resumed the automatic steps of unfinished processes"
    );
    write_ports(&node, [dsp_addr, mgmt_addr, flight_addr])?;
    info!(
        participant = %node.participant_id,
        dsp = %node.urls.dsp,
        flight = %node.urls.flight,
        management = %node.urls.management,
        "sluis is running"
    );
    let _ = tokio::join!(protocol_task, mgmt_task, outbox_task, crawler_task);
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

/// Binds `configured`; when it asks for any free port (port 0) and an earlier start
/// recorded the port it got, binds that port again: partners keep our DSP callback address
/// with every process in flight, so a restart must come back where they expect us.
async fn bind_again(
    configured: SocketAddr,
    recorded: Option<SocketAddr>,
    what: &str,
) -> Result<tokio::net::TcpListener> {
    if let Some(again) = recorded.filter(|r| configured.port() == 0 && r.ip() == configured.ip()) {
        match server::bind(again, what).await {
            Ok(listener) => return Ok(listener),
            Err(e) => warn!(
                error = %format!("{e:#}"),
                "cannot bind the port recorded in ports.json again; taking a new one: partners with processes in flight will not reach this connector until they learn the new address"
            ),
        }
    }
    server::bind(configured, what).await
}

fn write_ports(node: &Node, [dsp, management, flight]: [SocketAddr; 3]) -> Result<()> {
    let ports = Ports {
        participant_id: node.participant_id.clone(),
        dsp_url: node.urls.dsp.clone(),
        management_url: node.urls.management.clone(),
        flight_url: node.urls.flight.clone(),
        pid: std::process::id(),
        dsp_listen: Some(dsp),
        management_listen: Some(management),
        flight_listen: Some(flight),
    };
    let path = node.config.data_dir.join("ports.json");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&ports)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}
