//! Crash recovery: two real `sluis serve` processes over loopback mutual TLS; 200 negotiations
//! and transfers in flight when the provider is killed with SIGKILL and restarted on the same
//! data directory and ports. Every process must then reach its end state on both sides, none
//! may be lost, and no agreement or transfer may exist twice.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::future::try_join_all;
use serde_json::Value;
use sluis_connector::mgmt_client::MgmtClient;
use sluis_connector::scenario::{
    self, DATASET_ID, OFFER_ID, Running, start_negotiation, start_transfer, wait_for_state,
};
use sluis_connector::store::ProcessKind;

/// Negotiations finalized before the crash; their agreements feed the transfers in flight.
const BEFORE: usize = 50;
/// Negotiations started just before the crash.
const NEGOTIATIONS_IN_FLIGHT: usize = 150;
/// Transfers started just before the crash (one per agreement made before it).
const TRANSFERS_IN_FLIGHT: usize = BEFORE;
/// Transfers started after the restart, under agreements made across the crash.
const TRANSFERS_AFTER: usize = 25;
/// Longest wait for one process to reach its end state.
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_killed_with_200_processes_in_flight_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_sluis"));
    let start = |files| Running::start(exe, files, Duration::from_secs(60)).unwrap();
    let mut provider = start(&scn.provider);
    let consumer = start(&scn.consumer);
    let result = crash_and_recover(exe, &scn, &mut provider, &consumer).await;
    if let Err(e) = result {
        panic!(
            "{e:#}\n--- provider log (tail) ---\n{}\n--- consumer log (tail) ---\n{}",
            tail(&provider.log),
            tail(&consumer.log)
        );
    }
}

async fn crash_and_recover(
    exe: &Path,
    scn: &scenario::Scenario,
    provider: &mut Running,
    consumer: &Running,
) -> Result<()> {
    let c = consumer.mgmt();
    let t0 = Instant::now();
    let before = negotiate(&c, provider, BEFORE).await?;
    let agreements = finalized_agreements(&c, &before).await?;
    eprintln!("{BEFORE} agreements before the crash in {:?}", t0.elapsed());

    // 150 negotiations and 50 transfers started at once; the provider dies as soon as the
    // consumer has accepted all 200, while their messages are on the wire.
    let (negotiations, transfers) = tokio::try_join!(
        negotiate(&c, provider, NEGOTIATIONS_IN_FLIGHT),
        transfer(&c, provider, &agreements[..TRANSFERS_IN_FLIGHT]),
    )?;
    provider.kill();
    let unfinished = unfinished_at_consumer(&c).await?;
    eprintln!("provider killed; {unfinished} of 200 processes unfinished at the consumer");
    ensure!(
        unfinished > 0,
        "every process had finished before the kill: nothing was in flight, so the test proves nothing"
    );

    let dsp_before = provider.ports.dsp_url.clone();
    *provider = Running::start(exe, &scn.provider, Duration::from_secs(60))?;
    ensure!(
        provider.ports.dsp_url == dsp_before,
        "the provider came back at {}, not at {dsp_before} where the consumer expects it",
        provider.ports.dsp_url
    );
    let t1 = Instant::now();
    let across = finalized_agreements(&c, &negotiations).await?;
    let mut all_transfers = transfers;
    for t in &all_transfers {
        expect_state(&c, ProcessKind::Transfer, t, "STARTED").await?;
    }
    eprintln!("all 200 recovered {:?} after the restart", t1.elapsed());

    let after = transfer(&c, provider, &across[..TRANSFERS_AFTER]).await?;
    for t in &after {
        expect_state(&c, ProcessKind::Transfer, t, "STARTED").await?;
    }
    all_transfers.extend(after);

    let all_negotiations: Vec<String> = before.into_iter().chain(negotiations).collect();
    both_sides_agree(&c, &provider.mgmt(), &all_negotiations, &all_transfers).await?;
    no_agreement_twice(&scn.consumer.dir, all_negotiations.len())?;
    no_agreement_twice(&scn.provider.dir, all_negotiations.len())
}

/// Starts `n` negotiations of the demo offer at once; returns the consumer's ids.
async fn negotiate(c: &MgmtClient, provider: &Running, n: usize) -> Result<Vec<String>> {
    try_join_all((0..n).map(|_| start_negotiation(c, &provider.ports, DATASET_ID, OFFER_ID))).await
}

/// Starts one transfer per agreement at once; returns the consumer's ids.
async fn transfer(
    c: &MgmtClient,
    provider: &Running,
    agreements: &[String],
) -> Result<Vec<String>> {
    try_join_all(
        agreements
            .iter()
            .map(|a| start_transfer(c, &provider.ports, a)),
    )
    .await
}

/// Waits for every negotiation to be FINALIZED; returns their agreement ids.
async fn finalized_agreements(c: &MgmtClient, ids: &[String]) -> Result<Vec<String>> {
    let mut agreements = Vec::new();
    for id in ids {
        let n = expect_state(c, ProcessKind::Negotiation, id, "FINALIZED").await?;
        let agreement = n["negotiation"]["agreementId"]
            .as_str()
            .with_context(|| format!("negotiation {id} is FINALIZED without an agreement"))?;
        agreements.push(agreement.to_string());
    }
    Ok(agreements)
}

/// Waits for the process to reach `state`; fails with its state, reason and history if it
/// ends elsewhere.
async fn expect_state(c: &MgmtClient, kind: ProcessKind, id: &str, state: &str) -> Result<Value> {
    let got = wait_for_state(c, kind, id, state, WAIT).await?;
    let key = match kind {
        ProcessKind::Negotiation => "negotiation",
        ProcessKind::Transfer => "transfer",
    };
    let process = &got[key];
    ensure!(
        process["state"] == state,
        "{key} {id} is {} (reason: {}), not {state}; history: {}",
        process["state"],
        process["error"],
        got["history"]
    );
    Ok(got)
}

async fn unfinished_at_consumer(c: &MgmtClient) -> Result<usize> {
    let negotiations = c.get("negotiations").await?;
    let transfers = c.get("transfers").await?;
    let open = |list: &Value, done: &str| {
        list.as_array()
            .map_or(0, |l| l.iter().filter(|p| p["state"] != done).count())
    };
    Ok(open(&negotiations, "FINALIZED") + open(&transfers, "STARTED"))
}

/// Both sides know exactly the same processes, pair by pair, in the same state, under the
/// same agreement.
async fn both_sides_agree(
    consumer: &MgmtClient,
    provider: &MgmtClient,
    negotiations: &[String],
    transfers: &[String],
) -> Result<()> {
    for (path, ids, state) in [
        ("negotiations", negotiations, "FINALIZED"),
        ("transfers", transfers, "STARTED"),
    ] {
        let (ours, theirs) = (consumer.get(path).await?, provider.get(path).await?);
        let ours = by_consumer_pid(&ours, path, "consumer")?;
        let theirs = by_consumer_pid(&theirs, path, "provider")?;
        ensure!(
            ours.len() == ids.len() && theirs.len() == ids.len(),
            "{} {path} started, the consumer knows {}, the provider {}",
            ids.len(),
            ours.len(),
            theirs.len()
        );
        for id in ids {
            let (c, p) = (&ours[id.as_str()], theirs.get(id.as_str()));
            let p =
                p.with_context(|| format!("the provider does not know consumer process {id}"))?;
            ensure!(
                c["state"] == state && p["state"] == state,
                "{path} {id}: consumer {} provider {}, expected {state}",
                c["state"],
                p["state"]
            );
            ensure!(
                c["providerPid"] == p["id"] && c["agreementId"] == p["agreementId"],
                "{path} {id}: the sides disagree: consumer {c}, provider {p}"
            );
        }
        let agreements: HashSet<_> = theirs.values().map(|p| p["agreementId"].clone()).collect();
        ensure!(
            agreements.len() == ids.len(),
            "{path}: {} processes share {} agreements at the provider",
            ids.len(),
            agreements.len()
        );
    }
    Ok(())
}

/// The processes of one side by the consumer's process id; a consumer pid seen twice is a
/// process opened twice.
fn by_consumer_pid<'a>(
    list: &'a Value,
    what: &str,
    side: &str,
) -> Result<HashMap<&'a str, &'a Value>> {
    let mut out = HashMap::new();
    for p in list.as_array().context("the list is not an array")? {
        let pid = p["consumerPid"].as_str().context("no consumerPid")?;
        ensure!(
            out.insert(pid, p).is_none(),
            "the {side} has two {what} for consumer process {pid}"
        );
    }
    Ok(out)
}

/// The store holds one agreement per negotiation, and no more.
fn no_agreement_twice(participant_dir: &Path, negotiations: usize) -> Result<()> {
    let db = participant_dir.join("data").join("state.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", db.display()))?;
    let (agreements, negotiations_with): (usize, usize) = conn.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT negotiation_id) FROM agreement",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!(
        agreements == negotiations && negotiations_with == negotiations,
        "{}: {agreements} agreements for {negotiations_with} negotiations, expected {negotiations}",
        db.display()
    );
    Ok(())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
