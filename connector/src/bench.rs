//! `sluis bench`: negotiation and transfer latency and throughput between two real
//! `sluis serve` processes over loopback mutual TLS, against baselines measured in the same
//! run (a bare HTTPS + mutual TLS round trip to the provider, and a management API round
//! trip), so that the ratios mean something on a shared machine.
//!
//! Reproduce with `cargo run --release -- bench` (see `BENCHMARKS.md`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::client::PeerClient;
use crate::mgmt_client::MgmtClient;
use crate::scenario::{
    self, DATASET_ID, OFFER_ID, Running, start_negotiation, start_negotiation_with_offer,
    start_transfer, wait_for_state,
};
use crate::store::ProcessKind;
use crate::tls::{TlsFiles, TlsMaterial};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Negotiations (and transfers) run one after another, for latency.
    pub sequential: usize,
    /// Negotiations (and transfers) run by the concurrent workers, for throughput.
    pub total: usize,
    /// Concurrent workers.
    pub workers: usize,
    /// Keep the files here instead of a temporary folder.
    pub dir: Option<PathBuf>,
    /// Log filter of the two connectors.
    pub log: String,
}

/// Longest wait for one process.
const WAIT: Duration = Duration::from_secs(60);

/// Latencies of one kind of operation.
struct Sample {
    what: String,
    took: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn percentile(&self, p: usize) -> Duration {
        let mut v = self.took.clone();
        v.sort();
        v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    fn rate(&self) -> f64 {
        self.took.len() as f64 / self.wall.as_secs_f64()
    }

    fn row(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
            self.what,
            self.took.len(),
            ms(self.percentile(50)),
            ms(self.percentile(99)),
            ms(self.percentile(100)),
            self.rate()
        )
    }
}

/// Runs the benchmark and prints a Markdown table.
pub async fn run(opts: BenchOptions) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = opts.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let scn = scenario::prepare(&root, 1_000)?;
    let exe = std::env::current_exe().context("finding the sluis executable")?;
    let start = |files| Running::start_logging(&exe, files, Duration::from_secs(60), &opts.log);
    let provider = start(&scn.provider)?;
    let consumer = start(&scn.consumer)?;
    let c = consumer.mgmt();
    let mut rows = vec![
        floor_dsp(&scn, &provider, opts.sequential).await?,
        floor_mgmt(&c, opts.sequential).await?,
    ];
    // What an operator who read the catalogue has in hand; `None`: fetched every time.
    let offer = Some(Arc::new(catalogue_offer(&scn, &provider).await?));
    let fetched = " (the consumer fetches the offer each time)";
    // Warm-up: connections, caches, the first SQLite pages.
    negotiations(&c, &provider, None, 20, 4, "warm-up").await?;
    let (seq, _) = negotiations(
        &c,
        &provider,
        offer.clone(),
        opts.sequential,
        1,
        "negotiation, sequential",
    )
    .await?;
    let (seq_fetched, _) = negotiations(
        &c,
        &provider,
        None,
        opts.sequential,
        1,
        &format!("negotiation, sequential{fetched}"),
    )
    .await?;
    let parties = [
        ("provider", provider.pid()),
        ("consumer", consumer.pid()),
        ("driver", std::process::id()),
    ];
    let cpu = CpuMeter::start(&parties);
    let (conc_fetched, _) = negotiations(
        &c,
        &provider,
        None,
        opts.total,
        opts.workers,
        &format!("negotiation, {} concurrent{fetched}", opts.workers),
    )
    .await?;
    let mut cpu_rows = vec![cpu.per_job(&conc_fetched)];
    let cpu = CpuMeter::start(&parties);
    let (conc, agreements) = negotiations(
        &c,
        &provider,
        offer,
        opts.total,
        opts.workers,
        &format!("negotiation, {} concurrent", opts.workers),
    )
    .await?;
    cpu_rows.push(cpu.per_job(&conc));
    let tseq = transfers(
        &c,
        &provider,
        &agreements[..opts.sequential.min(agreements.len())],
        1,
        "transfer start, sequential",
    )
    .await?;
    let cpu = CpuMeter::start(&parties);
    let tconc = transfers(
        &c,
        &provider,
        &agreements,
        opts.workers,
        &format!("transfer start, {} concurrent", opts.workers),
    )
    .await?;
    cpu_rows.push(cpu.per_job(&tconc));
    rows.extend([seq, seq_fetched, conc, conc_fetched, tseq, tconc]);
    println!("| what | n | p50 ms | p99 ms | max ms | per s |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", r.row());
    }
    let floor = rows[0].percentile(50).as_secs_f64();
    for r in &rows[2..] {
        println!(
            "{}: p50 = {:.1} x the bare mTLS round trip",
            r.what,
            r.percentile(50).as_secs_f64() / floor
        );
    }
    for row in cpu_rows.iter().flatten() {
        println!("{row}");
    }
    Ok(())
}

/// CPU time used by each process over a phase: steadier than a rate on a shared machine,
/// since time spent waiting for the other tenants' work is not counted.
struct CpuMeter<'a> {
    parties: &'a [(&'static str, u32)],
    before: Option<Vec<Duration>>,
}

impl<'a> CpuMeter<'a> {
    fn start(parties: &'a [(&'static str, u32)]) -> Self {
        Self {
            parties,
            before: cpu_times(parties),
        }
    }

    /// `<phase>: CPU per operation: provider … ms, …`; `None` where /proc is not readable.
    fn per_job(&self, sample: &Sample) -> Option<String> {
        let (before, after) = (self.before.as_ref()?, cpu_times(self.parties)?);
        let n = sample.took.len().max(1) as f64;
        let parts: Vec<String> = self
            .parties
            .iter()
            .zip(before.iter().zip(&after))
            .map(|((who, _), (b, a))| {
                format!(
                    "{who} {:.3} ms",
                    a.saturating_sub(*b).as_secs_f64() * 1e3 / n
                )
            })
            .collect();
        Some(format!(
            "{}: CPU per operation: {}",
            sample.what,
            parts.join(", ")
        ))
    }
}

fn cpu_times(parties: &[(&'static str, u32)]) -> Option<Vec<Duration>> {
    parties.iter().map(|(_, pid)| cpu_time(*pid)).collect()
}

/// User plus system time of a process and all its threads (Linux `/proc/<pid>/stat`, in
/// clock ticks of 10 ms, the value of `USER_HZ` on every Linux architecture we build for).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces and parentheses: fields follow the last ')'
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// The floor: a DSP version request to the provider over a kept-alive mutual-TLS connection
/// with the consumer's certificate, from this process.
async fn floor_dsp(scn: &scenario::Scenario, provider: &Running, n: usize) -> Result<Sample> {
    let certs = scn.consumer.dir.join("certs");
    let tls = TlsMaterial::load(&TlsFiles {
        ca: certs.join("ca.pem"),
        cert: certs.join("cert.pem"),
        key: certs.join("key.pem"),
    })?;
    let client = PeerClient::new(&tls, WAIT)?;
    let base = provider
        .ports
        .dsp_url
        .trim_end_matches('/')
        .trim_end_matches(crate::protocol::BASE_PATH);
    let url = format!("{base}/.well-known/dspace-version");
    client.get_json(&url).await?;
    sequential("HTTPS + mTLS round trip (floor)", n, || async {
        client.get_json(&url).await.map(drop).map_err(Into::into)
    })
    .await
}

/// A management API round trip (the bench drives the consumer through it).
async fn floor_mgmt(c: &MgmtClient, n: usize) -> Result<Sample> {
    sequential("management API round trip", n, || async {
        c.get("transfers").await.map(drop)
    })
    .await
}

async fn sequential<F, Fut>(what: &str, n: usize, f: F) -> Result<Sample>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let wall = Instant::now();
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        took.push(t.elapsed());
    }
    Ok(Sample {
        what: what.into(),
        took,
        wall: wall.elapsed(),
    })
}

/// Runs `total` jobs on `workers` concurrent workers; `job(i)` returns its latency and a
/// result kept in job order.
async fn concurrently<F, Fut>(
    what: &str,
    total: usize,
    workers: usize,
    job: F,
) -> Result<(Sample, Vec<String>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(Duration, String)>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let wall = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (next, job) = (next.clone(), job.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(done);
                }
                done.push((i, job(i).await?));
            }
        });
    }
    let mut results = Vec::with_capacity(total);
    while let Some(r) = tasks.join_next().await {
        results.extend(r.context("a benchmark worker panicked")??);
    }
    let wall = wall.elapsed();
    results.sort_by_key(|(i, _)| *i);
    let (took, out) = results.into_iter().map(|(_, r)| r).unzip();
    Ok((
        Sample {
            what: what.into(),
            took,
            wall,
        },
        out,
    ))
}

/// The demo offer as the provider's catalogue shows it to the consumer.
async fn catalogue_offer(scn: &scenario::Scenario, provider: &Running) -> Result<Value> {
    let client = scenario::dsp_client(&scn.consumer)?;
    let url = crate::engine::join_url(
        &provider.ports.dsp_url,
        &format!("catalog/datasets/{DATASET_ID}"),
    );
    let (_, dataset) = client.get_json(&url).await?;
    dataset["hasPolicy"]
        .as_array()
        .and_then(|offers| offers.iter().find(|o| o["@id"] == OFFER_ID))
        .cloned()
        .with_context(|| format!("the provider's catalogue shows no offer {OFFER_ID}"))
}

/// `total` negotiations to FINALIZED on `workers` workers, for `offer` in hand (`None`: the
/// consumer fetches it from the catalogue each time); returns the latencies (management
/// request to FINALIZED) and the agreement ids.
async fn negotiations(
    c: &MgmtClient,
    provider: &Running,
    offer: Option<Arc<Value>>,
    total: usize,
    workers: usize,
    what: &str,
) -> Result<(Sample, Vec<String>)> {
    let (c, ports) = (c.clone(), provider.ports.clone());
    concurrently(what, total, workers, move |_| {
        let (c, ports, offer) = (c.clone(), ports.clone(), offer.clone());
        async move {
            let t = Instant::now();
            let id = match offer {
                Some(o) => start_negotiation_with_offer(&c, &ports, DATASET_ID, &o).await?,
                None => start_negotiation(&c, &ports, DATASET_ID, OFFER_ID).await?,
            };
            let n = reached(&c, ProcessKind::Negotiation, &id, "FINALIZED").await?;
            let agreement = n["negotiation"]["agreementId"].as_str().unwrap_or_default();
            Ok((t.elapsed(), agreement.to_string()))
        }
    })
    .await
}

/// One transfer per agreement to STARTED on `workers` workers.
async fn transfers(
    c: &MgmtClient,
    provider: &Running,
    agreements: &[String],
    workers: usize,
    what: &str,
) -> Result<Sample> {
    let (c, ports) = (c.clone(), provider.ports.clone());
    let agreements: Arc<[String]> = agreements.into();
    let (sample, _) = concurrently(what, agreements.len(), workers, move |i| {
        let (c, ports, agreements) = (c.clone(), ports.clone(), agreements.clone());
        async move {
            let t = Instant::now();
            let id = start_transfer(&c, &ports, &agreements[i]).await?;
            reached(&c, ProcessKind::Transfer, &id, "STARTED").await?;
            Ok((t.elapsed(), id))
        }
    })
    .await?;
    Ok(sample)
}

async fn reached(c: &MgmtClient, kind: ProcessKind, id: &str, state: &str) -> Result<Value> {
    let got = wait_for_state(c, kind, id, state, WAIT).await?;
    let now = got
        .as_object()
        .and_then(|o| o.values().find_map(|v| v.get("state")))
        .cloned()
        .unwrap_or_default();
    ensure!(now == state, "{id} ended in {now}, not {state}: {got}");
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_the_work_of_every_thread() {
        let me = std::process::id();
        let before = cpu_time(me).expect("/proc/self/stat is readable on Linux");
        let target = before + Duration::from_millis(200);
        // the work happens in other threads while this one waits; however busy the machine,
        // the process's count must reach the target before the deadline
        let deadline = Instant::now() + Duration::from_secs(30);
        let spin = || {
            let mut x = 0u64;
            while cpu_time(me).is_some_and(|t| t < target) && Instant::now() < deadline {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
        };
        std::thread::scope(|s| {
            s.spawn(spin);
            s.spawn(spin);
        });
        let used = cpu_time(me).unwrap().saturating_sub(before);
        assert!(used >= Duration::from_millis(200), "{used:?}");
        assert_eq!(cpu_time(u32::MAX), None, "no such process");
    }
}
