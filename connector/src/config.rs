//! `sluis.toml`: the connector's configuration, overridable by `SLUIS_…` environment variables.
//!
//! An override names a key path with `__` between levels: `SLUIS_PROTOCOL__LISTEN=0.0.0.0:8443`
//! sets `[protocol] listen`. Relative paths are resolved against the config file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::dataplane::DataPlaneConfig;
use crate::tls::TlsFiles;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This participant's id (an IRI such as `did:web:provider.example`); must match the
    /// URI SAN of the TLS certificate.
    pub participant_id: String,
    /// Where the state store, catalogue log and keys live.
    pub data_dir: PathBuf,
    /// The DSP listener (partner connectors, mutual TLS).
    pub protocol: ListenerConfig,
    /// The management listener (the operator).
    pub management: ManagementConfig,
    /// The Arrow Flight listener (data consumers) and the limits of its queries.
    pub data_plane: DataPlaneSection,
    /// Certificates.
    pub tls: TlsConfig,
    /// Negotiation behaviour.
    #[serde(default)]
    pub negotiation: NegotiationConfig,
    /// Transfer behaviour.
    #[serde(default)]
    pub transfer: TransferConfig,
    /// Datasets published at start (the management API can add more).
    #[serde(default, rename = "dataset")]
    pub datasets: Vec<DatasetConfig>,
    /// Peers whose DSP catalogues the federated catalogue crawls (the management API can
    /// add more).
    #[serde(default, rename = "peer")]
    pub peers: Vec<crate::federation::PeerConfig>,
    /// The crawler's schedule.
    #[serde(default)]
    pub federation: FederationConfig,
    /// Timeouts and connection limits of the HTTP listeners (DSP with `/data`, management).
    #[serde(default)]
    pub http: HttpLimitsConfig,
    /// Log format.
    #[serde(default)]
    pub log: LogConfig,
}

/// The federated catalogue's crawler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Seconds between two crawls of a peer (failures are retried sooner, with backoff).
    #[serde(default = "default_crawl_interval")]
    pub crawl_interval_secs: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            crawl_interval_secs: default_crawl_interval(),
        }
    }
}

fn default_crawl_interval() -> u64 {
    3600
}

/// Timeouts and connection limits of the two HTTP listeners: the DSP listener (with the
/// `HttpData-PULL` routes) and the management listener. A client that holds a connection
/// without finishing its request is cut off, and no client can take every connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimitsConfig {
    /// Seconds a client may take for the TLS handshake and for a request's headers; an idle
    /// keep-alive connection is closed after as long.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send a request's whole body, from the end of its headers.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Connections the DSP listener serves at once; more wait until one closes. Default: half
    /// of the file descriptors this process may open, less a reserve (see `server::Limits`).
    pub max_connections: Option<usize>,
    /// Connections the DSP listener serves at once from one IP address; more are closed at
    /// once. Default: a quarter of `max_connections`.
    pub max_connections_per_ip: Option<usize>,
}

impl Default for HttpLimitsConfig {
    fn default() -> Self {
        Self {
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_connections: None,
            max_connections_per_ip: None,
        }
    }
}

fn default_header_timeout() -> u64 {
    10
}

fn default_body_timeout() -> u64 {
    30
}

impl HttpLimitsConfig {
    fn validate(&self) -> Result<()> {
        let ranges: [(&str, Option<u64>, std::ops::RangeInclusive<u64>); 4] = [
            (
                "header_timeout_secs",
                Some(self.header_timeout_secs),
                1..=3600,
            ),
            ("body_timeout_secs", Some(self.body_timeout_secs), 1..=3600),
            (
                "max_connections",
                self.max_connections.map(|n| n as u64),
                1..=1 << 20,
            ),
            (
                "max_connections_per_ip",
                self.max_connections_per_ip.map(|n| n as u64),
                1..=1 << 20,
            ),
        ];
        for (key, value, range) in ranges {
            if let Some(value) = value
                && !range.contains(&value)
            {
                bail!(
                    "key `http.{key}`: {value} is outside {}..={}",
                    range.start(),
                    range.end()
                );
            }
        }
        Ok(())
    }
}

/// A listener address and the URL peers reach it at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Socket address to bind (port 0 picks a free port; see `ports.json` in the data dir).
    pub listen: SocketAddr,
    /// Public URL; defaults to one built from the bound address.
    pub public_url: Option<String>,
}

/// The data plane's listener, and the limits of the queries it runs (defaults: those of
/// [`DataPlaneConfig::default`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPlaneSection {
    /// Socket address to bind (port 0 picks a free port; see `ports.json` in the data dir).
    pub listen: SocketAddr,
    /// Public URL; defaults to one built from the bound address.
    pub public_url: Option<String>,
    /// Seconds one query may take, from the call's arrival to its last batch.
    #[serde(default = "defaults::query_timeout_secs")]
    pub query_timeout_secs: u64,
    /// MiB of memory one query may use (no spilling to disk).
    #[serde(default = "defaults::memory_limit_mib")]
    pub memory_limit_mib: usize,
    /// MiB of memory all running queries together may use (default: 2,048, or
    /// `memory_limit_mib` if that is more, so that an existing config keeps working).
    #[serde(default)]
    pub memory_budget_mib: Option<usize>,
    /// MiB of memory the running queries of one consumer together may use (default: half of
    /// `memory_budget_mib`).
    #[serde(default)]
    pub memory_per_consumer_mib: Option<usize>,
    /// Queries running at once across all consumers; more wait for a slot.
    #[serde(default = "defaults::max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// Queries one consumer may run at once (default: half of `max_concurrent_queries`, at
    /// least 1).
    #[serde(default)]
    pub max_queries_per_consumer: Option<usize>,
    /// Threads that run queries, apart from DSP, management and health (0: one for each
    /// partition of every query that may run at once).
    #[serde(default)]
    pub query_threads: usize,
    /// Parallelism of one query.
    #[serde(default = "defaults::target_partitions")]
    pub target_partitions: usize,
    /// Rows per record batch.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Rows at the start of each queried view kept decoded in memory (0: none).
    #[serde(default = "defaults::prefix_rows")]
    pub prefix_rows: usize,
}

impl DataPlaneSection {
    /// The limits as the data plane takes them.
    pub fn limits(&self) -> DataPlaneConfig {
        DataPlaneConfig {
            query_timeout: Duration::from_secs(self.query_timeout_secs),
            memory_limit_bytes: mib(self.memory_limit_mib),
            memory_budget_bytes: mib(self.memory_budget_mib()),
            memory_per_consumer_bytes: self.memory_per_consumer_mib.map(mib),
            batch_size: self.batch_size,
            target_partitions: self.target_partitions,
            max_concurrent_queries: self.max_concurrent_queries,
            max_queries_per_consumer: self.max_queries_per_consumer,
            query_threads: self.query_threads,
            prefix_rows: self.prefix_rows,
            ..DataPlaneConfig::default()
        }
    }

    fn memory_budget_mib(&self) -> usize {
        self.memory_budget_mib
            .unwrap_or_else(|| defaults::memory_budget_mib().max(self.memory_limit_mib))
    }

    fn validate(&self) -> Result<()> {
        let ranges: [(&str, usize, std::ops::RangeInclusive<usize>); 10] = [
            (
                "query_timeout_secs",
                usize::try_from(self.query_timeout_secs).unwrap_or(usize::MAX),
                1..=86_400,
            ),
            ("memory_limit_mib", self.memory_limit_mib, 16..=1 << 20),
            (
                "max_concurrent_queries",
                self.max_concurrent_queries,
                1..=65_536,
            ),
            ("target_partitions", self.target_partitions, 1..=1024),
            ("batch_size", self.batch_size, 1..=1 << 20),
            ("prefix_rows", self.prefix_rows, 0..=1 << 20),
            // a query's limit above the budget would be a limit it can never reach
            (
                "memory_budget_mib",
                self.memory_budget_mib(),
                self.memory_limit_mib..=1 << 24,
            ),
            (
                "memory_per_consumer_mib",
                self.memory_per_consumer_mib.unwrap_or(16),
                16..=self.memory_budget_mib(),
            ),
            (
                "max_queries_per_consumer",
                self.max_queries_per_consumer.unwrap_or(1),
                1..=self.max_concurrent_queries,
            ),
            ("query_threads", self.query_threads, 0..=1024),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                bail!(
                    "key `data_plane.{key}`: {value} is outside {}..={}",
                    range.start(),
                    range.end()
                );
            }
        }
        Ok(())
    }
}

/// `n` MiB in bytes.
fn mib(n: usize) -> usize {
    n.saturating_mul(1024 * 1024)
}

/// Defaults of [`DataPlaneSection`], from [`DataPlaneConfig::default`].
mod defaults {
    use crate::dataplane::DataPlaneConfig;

    pub fn query_timeout_secs() -> u64 {
        DataPlaneConfig::default().query_timeout.as_secs()
    }
    pub fn memory_limit_mib() -> usize {
        DataPlaneConfig::default().memory_limit_bytes / (1024 * 1024)
    }
    pub fn memory_budget_mib() -> usize {
        DataPlaneConfig::default().memory_budget_bytes / (1024 * 1024)
    }
    pub fn max_concurrent_queries() -> usize {
        DataPlaneConfig::default().max_concurrent_queries
    }
    pub fn target_partitions() -> usize {
        DataPlaneConfig::default().target_partitions
    }
    pub fn batch_size() -> usize {
        DataPlaneConfig::default().batch_size
    }
    pub fn prefix_rows() -> usize {
        DataPlaneConfig::default().prefix_rows
    }
}

/// The management listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Socket address to bind; keep it on loopback unless fronted by a proxy.
    pub listen: SocketAddr,
    /// Key the operator sends as `x-api-key` (or `Authorization: Bearer …`).
    pub api_key: String,
    /// Serve plain HTTP on an address other than loopback, where the API key crosses the
    /// network in clear. Refused unless set; the connector then warns at every start.
    #[serde(default)]
    pub allow_plain_http_off_loopback: bool,
}

/// The API key of the commented template ([`DEFAULT_CONFIG`]): refused, so that no
/// connector runs with a key that everyone can read. `sluis init` writes a random one.
pub const PLACEHOLDER_API_KEY: &str = "change-me-to-a-long-random-secret";

impl ManagementConfig {
    fn validate(&self) -> Result<()> {
        if self.api_key == PLACEHOLDER_API_KEY {
            bail!(
                "key `management.api_key`: this is the placeholder of the config template; set a long random secret (e.g. the output of `openssl rand -hex 32`), or write a new config with `sluis init`, which generates one"
            );
        }
        if self.api_key.len() < 16 {
            bail!("key `management.api_key`: use at least 16 characters");
        }
        if self.is_plain_off_loopback() && !self.allow_plain_http_off_loopback {
            bail!(
                "key `management.listen`: {} is not a loopback address, and the management API speaks plain HTTP, so the API key would cross the network in clear; listen on 127.0.0.1 and reach it through an SSH tunnel or a TLS-terminating reverse proxy, or accept the risk with `management.allow_plain_http_off_loopback = true`",
                self.listen
            );
        }
        Ok(())
    }

    /// Whether the API is served in clear beyond this machine (allowed only when asked for).
    pub fn is_plain_off_loopback(&self) -> bool {
        !self.listen.ip().is_loopback()
    }
}

/// PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Data-space CA bundle.
    pub ca: PathBuf,
    /// Own certificate.
    pub cert: PathBuf,
    /// Own key.
    pub key: PathBuf,
}

impl TlsConfig {
    /// As [`TlsFiles`].
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// Whether a role decides on its own or waits for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Follow the automatic rules.
    #[default]
    Auto,
    /// Wait for the operator to act through the management API.
    Manual,
}

/// How the provider answers contract requests (kept as a name for [`Mode`]).
pub type ProviderMode = Mode;

/// What the provider does with a request that its automatic rules do not agree to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Otherwise {
    /// Terminate the negotiation.
    #[default]
    Terminate,
    /// Send the catalogue offer back as a `ContractOfferMessage`; a counter-request that still
    /// does not match it is then terminated.
    CounterOffer,
    /// Leave the decision to the operator.
    Manual,
}

/// Negotiation behaviour: the decision rules of both roles.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NegotiationConfig {
    /// Provider: `auto` agrees when the request means the same as the offer (and applies
    /// `agree_when_narrower` and `otherwise`); `manual` waits for the operator.
    #[serde(default)]
    pub provider_mode: Mode,
    /// Provider: also agree when the requested policy is at least as strict as the offer.
    #[serde(default)]
    pub agree_when_narrower: bool,
    /// Provider: what to do with any other request.
    #[serde(default)]
    pub otherwise: Otherwise,
    /// Consumer: `auto` accepts an offer that means the same as what it requested and
    /// verifies an agreement that matches it; `manual` waits for the operator.
    #[serde(default)]
    pub consumer_mode: Mode,
}

/// Transfer behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// Provider: `auto` starts a requested transfer at once; `manual` waits for the operator.
    #[serde(default)]
    pub provider_mode: Mode,
    /// Lifetime of a data-plane token, in seconds.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// Provider: who resumes a transfer the provider suspended. `manual` (the default): only
    /// the provider (its operator, through the management API); a consumer's
    /// `TransferStartMessage` is refused with a `TransferError` (400). `auto`: a consumer's
    /// request to resume is accepted.
    #[serde(default = "manual")]
    pub consumer_resume: Mode,
}

fn manual() -> Mode {
    Mode::Manual
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            consumer_resume: Mode::Manual,
            provider_mode: Mode::Auto,
            token_ttl_secs: default_token_ttl(),
        }
    }
}

fn default_token_ttl() -> u64 {
    3600
}

/// A dataset published from the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// The dataset's IRI or URN.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Keywords.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Where the data is.
    pub source: SourceConfig,
    /// Offers as ODRL JSON files (DSP compact form).
    #[serde(default)]
    pub offer_files: Vec<PathBuf>,
}

/// A data source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `parquet`, `csv`, `json` or `arrow`.
    pub kind: String,
    /// File or directory.
    pub location: PathBuf,
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Log settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    #[serde(default)]
    pub format: LogFormat,
}

const ENV_PREFIX: &str = "SLUIS_";

/// The top-level keys an environment variable may override. Other `SLUIS_` variables
/// (`SLUIS_CONFIG`, tools' own settings) are not configuration and are left alone; a wrong
/// key inside one of these sections is still refused by name.
const OVERRIDABLE: &[&str] = &[
    "participant_id",
    "data_dir",
    "protocol",
    "management",
    "data_plane",
    "tls",
    "negotiation",
    "transfer",
    "federation",
    "http",
    "log",
];

impl Config {
    /// Reads `path`, applies environment overrides, resolves paths and validates.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the config file {}: create one with `sluis init`",
                path.display()
            )
        })?;
        let vars = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX));
        Self::parse(&text, path, vars)
    }

    /// Parses config text; `origin` names the file in errors and anchors relative paths.
    pub fn parse(
        text: &str,
        origin: &Path,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table: toml::Table = text
            .parse()
            .with_context(|| format!("invalid TOML in {}", origin.display()))?;
        for (key, value) in env.filter(|(k, _)| overrides_config(k)) {
            apply_override(&mut table, &key, &value)
                .with_context(|| format!("in environment variable {key}"))?;
        }
        let mut cfg: Config = table
            .try_into()
            .with_context(|| format!("invalid configuration in {}", origin.display()))?;
        let base = origin.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()
            .with_context(|| format!("invalid configuration in {}", origin.display()))?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.data_dir);
        abs(&mut self.tls.ca);
        abs(&mut self.tls.cert);
        abs(&mut self.tls.key);
        for ds in &mut self.datasets {
            abs(&mut ds.source.location);
            ds.offer_files.iter_mut().for_each(abs);
        }
    }

    fn validate(&self) -> Result<()> {
        if !self.participant_id.contains(':') {
            bail!(
                "key `participant_id`: {:?} is not an IRI (e.g. did:web:example.org)",
                self.participant_id
            );
        }
        self.management.validate()?;
        self.http.validate()?;
        self.data_plane.validate()?;
        for (i, ds) in self.datasets.iter().enumerate() {
            if !ds.id.contains(':') {
                bail!("key `dataset[{i}].id`: {:?} is not an IRI or URN", ds.id);
            }
            if !["parquet", "csv", "json", "arrow"].contains(&ds.source.kind.as_str()) {
                bail!(
                    "key `dataset[{i}].source.kind`: {:?} is not one of parquet, csv, json, arrow",
                    ds.source.kind
                );
            }
        }
        for (i, peer) in self.peers.iter().enumerate() {
            peer.validate()
                .map_err(|e| anyhow::anyhow!("key `peer[{i}]`: {e}"))?;
        }
        Ok(())
    }

    /// The state store file.
    pub fn state_db(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }
}

fn overrides_config(var: &str) -> bool {
    let Some(path) = var.strip_prefix(ENV_PREFIX) else {
        return false;
    };
    let top = path
        .split("__")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    OVERRIDABLE.contains(&top.as_str())
}

fn apply_override(table: &mut toml::Table, key: &str, value: &str) -> Result<()> {
    let path: Vec<String> = key[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let (last, parents) = path.split_last().context("empty key")?;
    let mut cur = table;
    for p in parents {
        cur = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("`{p}` is not a section"))?;
    }
    // Numbers and booleans keep their type; anything else is a string.
    let parsed = value
        .parse::<i64>()
        .map(toml::Value::Integer)
        .or_else(|_| value.parse::<bool>().map(toml::Value::Boolean))
        .unwrap_or_else(|_| toml::Value::String(value.to_string()));
    cur.insert(last.clone(), parsed);
    Ok(())
}

/// A commented default config with a fresh random API key, as `sluis init` writes it.
pub fn default_config_with_fresh_key() -> Result<String> {
    let mut key = [0u8; 32];
    // the operating system's generator, through the crypto provider the TLS stack uses
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("the operating system's random number generator failed"))?;
    Ok(DEFAULT_CONFIG.replacen(PLACEHOLDER_API_KEY, &hex::encode(key), 1))
}

/// The commented config template; its API key is [`PLACEHOLDER_API_KEY`], which
/// [`Config::load`] refuses (see [`default_config_with_fresh_key`]).
pub const DEFAULT_CONFIG: &str = r#"# Sluis connector configuration. Every key can be overridden by an environment variable:
# SLUIS_<SECTION>__<KEY>, e.g. SLUIS_PROTOCOL__LISTEN=0.0.0.0:8443.

# This participant's id, an IRI. It must be the URI SAN of the certificate below.
participant_id = "did:web:connector.example"
# State store, keys and catalogue log.
data_dir = "data"

[protocol]            # DSP 2025-1 for partner connectors, mutual TLS
listen = "127.0.0.1:8443"
# public_url = "https://connector.example/dsp"

[management]          # the operator's API over plain HTTP; keep it on loopback
listen = "127.0.0.1:8444"
api_key = "change-me-to-a-long-random-secret"   # refused: `sluis init` writes a random key
# allow_plain_http_off_loopback = false   # another address is refused unless set (the key would travel in clear)

[data_plane]          # Arrow Flight for data consumers
listen = "127.0.0.1:8445"
# public_url = "grpc+tls://connector.example:8445"
# query_timeout_secs = 300      # one query, from the call to its last batch
# memory_limit_mib = 512        # one query's memory (no spilling)
# memory_budget_mib = 2048      # all running queries' memory together
# memory_per_consumer_mib = 1024  # one consumer's running queries together (default: half the budget)
# max_concurrent_queries = 16   # more wait for a slot, the consumer running fewest first
# max_queries_per_consumer = 8  # one consumer's running queries (default: half the slots)
# query_threads = 0             # threads running queries, apart from DSP and health (0: slots x partitions)
# target_partitions = 2         # parallelism of one query
# batch_size = 4096             # rows per record batch
# prefix_rows = 8192            # first rows of each queried view kept in memory (0: none)

[tls]                 # create with: sluis certs ca --out certs && sluis certs issue ...
ca = "certs/ca.pem"
cert = "certs/cert.pem"
key = "certs/key.pem"

[negotiation]
provider_mode = "auto"        # auto: agree when the request means the same as the offer; manual: wait for the operator
agree_when_narrower = false   # auto: also agree when the request is at least as strict as the offer
otherwise = "terminate"       # auto, any other request: terminate, counter-offer or manual
consumer_mode = "auto"        # auto: accept a matching offer, verify a matching agreement; manual: wait

[transfer]
provider_mode = "auto"        # auto: start a requested transfer at once; manual: wait for the operator
token_ttl_secs = 3600
consumer_resume = "manual"    # manual: a transfer the provider suspended resumes only when the operator resumes it; auto: also at the consumer's request

# [http]              # both HTTP listeners: DSP (with /data) and management
# header_timeout_secs = 10      # TLS handshake and a request's headers; idle keep-alive
# body_timeout_secs = 30        # a request's whole body, after its headers
# max_connections = 4096        # DSP listener; default: from the file-descriptor limit
# max_connections_per_ip = 1024 # DSP listener, one address; default: a quarter of the above

[log]
format = "pretty"        # or "json"

# [[dataset]]
# id = "urn:example:dataset:meter-readings"
# title = "Smart meter readings"
# source = { kind = "parquet", location = "data/meter_readings.parquet" }
# offer_files = ["offers/meter-readings.json"]

# The federated catalogue: peers whose DSP catalogues are crawled (more via the management API).
# [federation]
# crawl_interval_secs = 3600
# [[peer]]
# id = "did:web:provider.example"
# url = "https://provider.example:8443/dsp"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The template with a real key, as `sluis init` writes it.
    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn template() -> String {
        DEFAULT_CONFIG.replace(PLACEHOLDER_API_KEY, KEY)
    }

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        Config::parse(
            text,
            Path::new("/etc/sluis/sluis.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn default_config_parses_and_resolves_paths() {
        let cfg = parse(&template(), &[]).unwrap();
        assert_eq!(cfg.tls.ca, PathBuf::from("/etc/sluis/certs/ca.pem"));
        assert_eq!(cfg.negotiation.provider_mode, ProviderMode::Auto);
    }

    #[test]
    fn environment_overrides_keys() {
        let cfg = parse(
            &template(),
            &[
                ("SLUIS_PROTOCOL__LISTEN", "127.0.0.1:9000"),
                ("SLUIS_TRANSFER__TOKEN_TTL_SECS", "60"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.protocol.listen.port(), 9000);
        assert_eq!(cfg.transfer.token_ttl_secs, 60);
    }

    #[test]
    fn data_plane_limits_default_to_the_data_plane_s_and_can_be_set() {
        let cfg = parse(&template(), &[]).unwrap();
        let (got, want) = (cfg.data_plane.limits(), DataPlaneConfig::default());
        assert_eq!(
            format!("{got:?}"),
            format!("{want:?}"),
            "no key set: the data plane's own defaults"
        );

        let set = template()
            .replace("# memory_limit_mib = 512", "memory_limit_mib = 64")
            .replace("# prefix_rows = 8192", "prefix_rows = 0");
        let cfg = parse(
            &set,
            &[
                ("SLUIS_DATA_PLANE__QUERY_TIMEOUT_SECS", "30"),
                ("SLUIS_DATA_PLANE__MAX_CONCURRENT_QUERIES", "4"),
            ],
        )
        .unwrap();
        let limits = cfg.data_plane.limits();
        assert_eq!(limits.memory_limit_bytes, 64 * 1024 * 1024);
        assert_eq!(limits.prefix_rows, 0);
        assert_eq!(limits.query_timeout, Duration::from_secs(30));
        assert_eq!(limits.max_concurrent_queries, 4);
        assert_eq!(limits.batch_size, want.batch_size);
        assert_eq!(
            limits.queries_per_consumer(),
            2,
            "half the slots by default"
        );
        assert_eq!(limits.memory_per_consumer(), want.memory_budget_bytes / 2);

        let fair = parse(
            &template(),
            &[
                ("SLUIS_DATA_PLANE__MAX_QUERIES_PER_CONSUMER", "3"),
                ("SLUIS_DATA_PLANE__MEMORY_BUDGET_MIB", "1024"),
                ("SLUIS_DATA_PLANE__MEMORY_PER_CONSUMER_MIB", "768"),
                ("SLUIS_DATA_PLANE__QUERY_THREADS", "1"),
            ],
        )
        .unwrap()
        .data_plane
        .limits();
        assert_eq!(fair.queries_per_consumer(), 3);
        assert_eq!(fair.memory_budget_bytes, 1024 * 1024 * 1024);
        assert_eq!(fair.memory_per_consumer(), 768 * 1024 * 1024);
        assert_eq!(fair.query_threads, 1);
        let big_queries = parse(
            &template(),
            &[("SLUIS_DATA_PLANE__MEMORY_LIMIT_MIB", "4096")],
        )
        .unwrap()
        .data_plane
        .limits();
        assert_eq!(big_queries.memory_budget_bytes, 4096 * 1024 * 1024);

        for (key, value) in [
            ("QUERY_TIMEOUT_SECS", "0"),
            ("MEMORY_LIMIT_MIB", "1"),
            ("MAX_CONCURRENT_QUERIES", "0"),
            ("TARGET_PARTITIONS", "0"),
            ("BATCH_SIZE", "0"),
            ("PREFIX_ROWS", "99999999"),
            ("MAX_QUERIES_PER_CONSUMER", "17"),
            ("MEMORY_BUDGET_MIB", "256"),
            ("MEMORY_PER_CONSUMER_MIB", "4096"),
            ("QUERY_THREADS", "5000"),
        ] {
            let var = format!("SLUIS_DATA_PLANE__{key}");
            let err = format!("{:#}", parse(&template(), &[(&var, value)]).unwrap_err());
            let named = format!("data_plane.{}", key.to_ascii_lowercase());
            assert!(err.contains(&named), "{err}");
        }
    }

    #[test]
    fn other_sluis_variables_are_not_configuration() {
        let cfg = parse(
            &template(),
            &[
                ("SLUIS_CONFIG", "/x.toml"),
                ("SLUIS_PYTHON", "/usr/bin/python3"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.participant_id, "did:web:connector.example");
        let err = format!(
            "{:#}",
            parse(&template(), &[("SLUIS_PROTOCOL__LISTN", "127.0.0.1:1")]).unwrap_err()
        );
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn errors_name_file_and_key() {
        let bad = template().replace("listen = \"127.0.0.1:8443\"", "listen = \"nowhere\"");
        let err = format!("{:#}", parse(&bad, &[]).unwrap_err());
        assert!(err.contains("/etc/sluis/sluis.toml"), "{err}");
        assert!(err.contains("listen"), "{err}");

        let typo = template().replace("token_ttl_secs", "token_tll_secs");
        let err = format!("{:#}", parse(&typo, &[]).unwrap_err());
        assert!(err.contains("token_tll_secs"), "{err}");

        let short = template().replace(KEY, "x");
        let err = format!("{:#}", parse(&short, &[]).unwrap_err());
        assert!(err.contains("management.api_key"), "{err}");
    }

    #[test]
    fn the_template_s_placeholder_key_is_refused_and_init_writes_a_random_one() {
        let err = format!("{:#}", parse(DEFAULT_CONFIG, &[]).unwrap_err());
        assert!(err.contains("management.api_key"), "{err}");
        assert!(
            err.contains("placeholder") && err.contains("sluis init"),
            "{err}"
        );
        let written = default_config_with_fresh_key().unwrap();
        let cfg = parse(&written, &[]).unwrap();
        assert_ne!(cfg.management.api_key, PLACEHOLDER_API_KEY);
        assert_eq!(cfg.management.api_key.len(), 64);
        let again = parse(&default_config_with_fresh_key().unwrap(), &[]).unwrap();
        assert_ne!(
            again.management.api_key, cfg.management.api_key,
            "a fresh key each time"
        );
    }

    #[test]
    fn a_plain_management_listener_off_loopback_is_refused_unless_allowed() {
        let open = [("SLUIS_MANAGEMENT__LISTEN", "0.0.0.0:8444")];
        let err = format!("{:#}", parse(&template(), &open).unwrap_err());
        assert!(
            err.contains("management.listen") && err.contains("0.0.0.0:8444"),
            "{err}"
        );
        assert!(err.contains("allow_plain_http_off_loopback"), "{err}");
        let allowed = [
            open[0],
            ("SLUIS_MANAGEMENT__ALLOW_PLAIN_HTTP_OFF_LOOPBACK", "true"),
        ];
        let cfg = parse(&template(), &allowed).unwrap();
        assert!(cfg.management.is_plain_off_loopback());
        let local = parse(&template(), &[("SLUIS_MANAGEMENT__LISTEN", "[::1]:8444")]).unwrap();
        assert!(!local.management.is_plain_off_loopback());
    }

    #[test]
    fn http_limits_default_and_are_checked() {
        let cfg = parse(&template(), &[]).unwrap();
        assert_eq!(cfg.http.header_timeout_secs, 10);
        assert_eq!(cfg.http.body_timeout_secs, 30);
        assert_eq!(cfg.http.max_connections, None);
        let cfg = parse(&template(), &[("SLUIS_HTTP__MAX_CONNECTIONS_PER_IP", "8")]).unwrap();
        assert_eq!(cfg.http.max_connections_per_ip, Some(8));
        let err = format!(
            "{:#}",
            parse(&template(), &[("SLUIS_HTTP__BODY_TIMEOUT_SECS", "0")]).unwrap_err()
        );
        assert!(err.contains("http.body_timeout_secs"), "{err}");
    }
}
