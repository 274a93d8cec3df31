//! Data-plane benchmark (`sluis bench-flight`): DoGet throughput with and without policy
//! against pyarrow's own C++ Flight server on the same Parquet file, time to first batch, and
//! 1,000 concurrent streams.
//!
//! ```sh
//! cargo build --release --workspace --bins --lib
//! $CARGO_TARGET_DIR/release/sluis bench-flight --rows 10000000
//! ```
//!
//! Everything runs on loopback without TLS (the same for all three servers). The pyarrow
//! server is `connector/examples/pyarrow_flight_server.py`, run with the workspace's `.venv`
//! (or `SLUIS_PYTHON`). The Sluis server runs in this process, so the memory figures include
//! the client side. It is a subcommand rather than a cargo example so that a release build
//! of the binary (the same features as production) is all it needs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use crate::dataplane::{
    AccessControl, AccessError, ActiveGrant, AuditId, DataPlaneConfig, DataSource, MaskKey,
    SourceKind, serve,
};
use anyhow::{Context, Result};
use arrow_flight::{FlightClient, Ticket};
use futures::{StreamExt, TryStreamExt};
use sluis_policy::enforcement::{
    ColumnMask, EnforcementPlan, FilterOperator, MaskKind, RowFilter, Scalar,
};
use tonic::transport::{Channel, Endpoint};

const TABLE: &str = "meter_readings";

/// Tokens → grants; nothing else (the benchmark measures the data plane, not Biscuit).
struct Fixed(HashMap<String, ActiveGrant>);

impl AccessControl for Fixed {
    fn authorize(
        &self,
        token: &str,
        _: Option<&str>,
        _: Option<&[String]>,
    ) -> Result<ActiveGrant, AccessError> {
        self.0
            .get(token)
            .cloned()
            .ok_or_else(|| AccessError::Unauthenticated("unknown token".into()))
    }

    fn record_query(&self, _: &ActiveGrant, _: &str, _: &str) -> Result<AuditId, AccessError> {
        Ok(0)
    }
}

fn grant(file: &Path, plan: EnforcementPlan) -> ActiveGrant {
    ActiveGrant {
        agreement_id: "urn:bench:agreement".into(),
        transfer_id: "urn:bench:transfer".into(),
        dataset_id: "urn:bench:dataset".into(),
        consumer: "did:web:bench".into(),
        mask_key: MaskKey::derive(b"bench secret", "urn:bench:agreement"),
        purpose: None,
        table_name: TABLE.into(),
        source: DataSource {
            kind: SourceKind::Parquet,
            location: file.to_path_buf(),
        },
        plan,
    }
}

/// Half the rows (two regions of four) and `meter_id` hashed.
fn enforced_plan() -> EnforcementPlan {
    EnforcementPlan {
        masks: mask_only_plan().masks,
        ..filter_only_plan()
    }
}

/// `meter_id` hashed, every row.
fn mask_only_plan() -> EnforcementPlan {
    EnforcementPlan {
        masks: vec![ColumnMask {
            column: "meter_id".into(),
            kind: MaskKind::Hash,
        }],
        ..Default::default()
    }
}

/// Half the rows (two regions of four), no mask.
fn filter_only_plan() -> EnforcementPlan {
    EnforcementPlan {
        row_filters: vec![RowFilter {
            column: "region".into(),
            operator: FilterOperator::IsAnyOf,
            values: vec![
                Scalar::String("north".into()),
                Scalar::String("south".into()),
            ],
        }],
        ..Default::default()
    }
}

async fn channel(port: u16) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?)
}

fn with_token(channel: Channel, token: Option<&str>) -> Result<FlightClient> {
    let mut c = FlightClient::new(channel);
    if let Some(t) = token {
        c.add_header("authorization", &format!("Bearer {t}"))?;
    }
    Ok(c)
}

async fn client(port: u16, token: Option<&str>) -> Result<FlightClient> {
    with_token(channel(port).await?, token)
}

/// One full DoGet: (rows, bytes of Arrow data, seconds).
async fn drain(c: &mut FlightClient, ticket: &str) -> Result<(usize, usize, f64)> {
    let start = Instant::now();
    let mut stream = c.do_get(Ticket::new(ticket.to_string())).await?;
    let (mut rows, mut bytes) = (0, 0);
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
    }
    Ok((rows, bytes, start.elapsed().as_secs_f64()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Time from DoGet to the first record batch of `sql`, in ms; then reads the rest.
async fn first_batch(c: &mut FlightClient, sql: String) -> Result<f64> {
    let start = Instant::now();
    let mut stream = c.do_get(Ticket::new(sql)).await?;
    stream.next().await.context("no batch")??;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    while stream.try_next().await?.is_some() {}
    Ok(ms)
}

/// `streams` concurrent DoGets of `sql` over `channels` connections: (errors, seconds).
async fn concurrent(
    port: u16,
    token: &str,
    sql: &str,
    streams: usize,
    channels: usize,
) -> Result<(usize, f64)> {
    let mut connections = Vec::new();
    for _ in 0..channels {
        connections.push(channel(port).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    for i in 0..streams {
        let mut c = with_token(connections[i % channels].clone(), Some(token))?;
        let sql = sql.to_string();
        tasks.push(tokio::spawn(async move { drain(&mut c, &sql).await }));
    }
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if errors == 0 {
                    eprintln!("first stream error: {e:#}");
                }
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    Ok((errors, start.elapsed().as_secs_f64()))
}

/// Peak and current resident memory of this process (MB), from /proc.
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn python() -> PathBuf {
    std::env::var_os("SLUIS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
        PathBuf::from,
    )
}

/// Starts the pyarrow Flight server on `file`; returns it and its port.
fn pyarrow_server(file: &Path) -> Result<(Child, u16)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pyarrow_flight_server.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the pyarrow Flight server (is .venv installed?)")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let port = line
        .trim()
        .parse()
        .with_context(|| format!("pyarrow server said {line:?}"))?;
    Ok((child, port))
}

/// A part of the benchmark, to run alone (for a profile, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// DoGet of every visible row: enforced, unenforced and pyarrow.
    Throughput,
    /// Time to first batch of a small enforced query.
    FirstBatch,
    /// 1,000 concurrent streams, with the memory used.
    Concurrent,
}

/// Runs the benchmark on `rows` rows in `file` (generated when missing) and prints the figures:
/// the phases in `only` (all when empty), `first_batch_runs` queries for the first batch,
/// `rounds` full reads of each configuration for the throughput, on a data plane under `cfg`
/// (the first-batch phase also measures one keeping no rows of views);
/// `configs` narrows the throughput phase to some configurations (all when empty).
pub async fn run(
    rows: usize,
    file: Option<PathBuf>,
    only: &[Phase],
    first_batch_runs: usize,
    rounds: usize,
    cfg: DataPlaneConfig,
    configs: &[String],
) -> Result<()> {
    let file = file.unwrap_or_else(|| PathBuf::from(format!("/tmp/sluis-bench-{rows}.parquet")));
    if !file.exists() {
        let t = Instant::now();
        crate::sample::generate_meter_readings(&file, rows, 42)?;
        println!(
            "generated {rows} rows in {:.1} s: {}",
            t.elapsed().as_secs_f64(),
            file.display()
        );
    }

    let grants = HashMap::from([
        ("enforced".to_string(), grant(&file, enforced_plan())),
        ("open".to_string(), grant(&file, EnforcementPlan::default())),
        ("filter".to_string(), grant(&file, filter_only_plan())),
        ("mask".to_string(), grant(&file, mask_only_plan())),
    ]);
    let access = Arc::new(Fixed(grants));
    let port = serve_on_loopback(Arc::clone(&access), cfg.clone()).await?;
    let runs = |phase| only.is_empty() || only.contains(&phase);
    if runs(Phase::Throughput) {
        compare_throughput(&file, rows, port, rounds.max(1), configs).await?;
    }
    if runs(Phase::FirstBatch) {
        // the baseline: the same data plane keeping no first rows of views
        let cfg = DataPlaneConfig {
            prefix_rows: 0,
            ..cfg
        };
        let unkept = serve_on_loopback(access, cfg).await?;
        compare_first_batch(port, unkept, first_batch_runs).await?;
    }
    if runs(Phase::Concurrent) {
        let (peak_before, _) = memory_mb();
        let small = format!("SELECT * FROM {TABLE} LIMIT 10000");
        let (errors, secs) = concurrent(port, "enforced", &small, 1000, 10).await?;
        let (peak, now) = memory_mb();
        println!(
            "1000 concurrent streams ({small}, 10 connections): {errors} errors in {secs:.1} s; \
             peak RSS {peak:.0} MB (before: {peak_before:.0} MB), RSS after {now:.0} MB"
        );
    }
    Ok(())
}

/// Serves the data plane over `access` under `cfg` on a loopback port, in the background.
async fn serve_on_loopback(access: Arc<Fixed>, cfg: DataPlaneConfig) -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(serve(listener, None, access, cfg, std::future::pending()));
    Ok(port)
}

/// Time to first batch of a small enforced query, `runs` times each: the same SQL text every
/// time (its plan is kept after the first), and a new text every time (planned each time;
/// the enforced view's plan is still kept); on the data plane at `port` (which keeps the
/// view's first rows) and at `unkept` (which keeps none). The four alternate, run by run.
async fn compare_first_batch(port: u16, unkept: u16, runs: usize) -> Result<()> {
    let sql =
        |limit: usize| format!("SELECT meter_id, kwh FROM {TABLE} WHERE kwh > 1.0 LIMIT {limit}");
    let mut planes = [
        ("first rows kept", client(port, Some("enforced")).await?),
        ("no rows kept", client(unkept, Some("enforced")).await?),
    ];
    // the first query of a view starts keeping its first rows, in the background
    for (_, c) in &mut planes {
        first_batch(c, sql(1000)).await?;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut times = vec![Vec::new(); 4];
    for i in 0..runs {
        for (j, (_, c)) in planes.iter_mut().enumerate() {
            times[2 * j].push(first_batch(c, sql(1000)).await?);
            // a LIMIT above 1000 keeps the first batch the same and the text new
            times[2 * j + 1].push(first_batch(c, sql(1001 + i)).await?);
        }
    }
    let kinds = ["same SQL repeated", "new SQL each run"];
    for (k, times) in times.iter_mut().enumerate() {
        let (plane, kind) = (planes[k / 2].0, kinds[k % 2]);
        times.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(times, 0.5), percentile(times, 0.99));
        println!(
            "time to first batch ({}), {plane}, {kind}, {runs} runs: p50 {p50:.2} ms, p99 {p99:.2} ms",
            sql(1000)
        );
    }
    Ok(())
}

/// The configurations the throughput phase compares, in the order of each round: (name,
/// short name, token; None for pyarrow's server).
const CONFIGS: [(&str, &str, Option<&str>); 5] = [
    (
        "sluis, 50 % row filter + hash mask",
        "enforced",
        Some("enforced"),
    ),
    ("sluis, no policy", "no policy", Some("open")),
    ("pyarrow FlightServerBase", "pyarrow", None),
    ("sluis, 50 % row filter only", "filter", Some("filter")),
    ("sluis, hash mask only", "mask", Some("mask")),
];

/// DoGet of every visible row, enforced and not, against pyarrow's server on the same file.
///
/// The configurations take turns, one full read each per round, so that a slow spell of a
/// shared machine falls on all of them; the ratios are the medians of the per-round ratios.
/// `only`: the short names of the configurations to run (all when empty), for a profile.
async fn compare_throughput(
    file: &Path,
    rows: usize,
    port: u16,
    rounds: usize,
    only: &[String],
) -> Result<()> {
    let (mut py, py_port) = pyarrow_server(file)?;
    let chosen = |short: &str| only.is_empty() || only.iter().any(|o| o == short);
    let mut clients = Vec::new();
    for (_, short, token) in CONFIGS {
        clients.push(match (chosen(short), token) {
            (false, _) => None,
            (true, Some(t)) => Some(client(port, Some(t)).await?),
            (true, None) => Some(client(py_port, None).await?),
        });
    }
    // (rows, bytes, seconds) per configuration per round
    let mut runs: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); CONFIGS.len()];
    println!("DoGet of every visible row of {rows} source rows, {rounds} rounds:");
    for round in 0..rounds {
        let mut line = Vec::new();
        for (i, (_, short, token)) in CONFIGS.iter().enumerate() {
            let Some(c) = clients[i].as_mut() else {
                continue;
            };
            let ticket = if token.is_some() { "" } else { "all" };
            runs[i].push(drain(c, ticket).await?);
            line.push(format!("{short} {:.2} s", runs[i][round].2));
        }
        println!("  round {}: {}", round + 1, line.join(", "));
    }
    let _ = py.kill();
    for ((name, _, _), taken) in CONFIGS.iter().zip(&runs) {
        if taken.is_empty() {
            continue;
        }
        let (got, bytes, best) = taken
            .iter()
            .copied()
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .unwrap_or_default();
        let mut secs: Vec<f64> = taken.iter().map(|r| r.2).collect();
        secs.sort_by(f64::total_cmp);
        println!(
            "  {name:<36} {got:>9} rows sent; best {best:>6.2} s, median {:>6.2} s; {:>8.1} MB/s sent, {:>6.2} M source rows/s (best)",
            percentile(&secs, 0.5),
            bytes as f64 / 1e6 / best,
            rows as f64 / 1e6 / best
        );
    }
    if runs[..3].iter().any(Vec::is_empty) {
        return Ok(());
    }
    let median_ratio = |num: usize, den: usize| {
        let mut r: Vec<f64> = (0..rounds)
            .map(|k| runs[num][k].2 / runs[den][k].2)
            .collect();
        r.sort_by(f64::total_cmp);
        percentile(&r, 0.5)
    };
    println!(
        "  enforced / unenforced (source rows/s): {:.2}x; unenforced / pyarrow (same rows, time): {:.2}x (medians of the per-round ratios)",
        median_ratio(1, 0),
        median_ratio(2, 1)
    );
    Ok(())
}
