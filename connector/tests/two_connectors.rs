//! End to end: two real `sluis` processes on loopback, mutual TLS, DSP catalogue,
//! negotiation and transfer, then Arrow Flight queries under the agreement.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluis_connector::demo::{self, Contracted, summarise};
use sluis_connector::flight_client;
use sluis_connector::mgmt_client::segment;
use sluis_connector::scenario::{
    self, ALLOWED_REGION, DATASET_ID, HIDDEN_COLUMN, OFFER_ID, OTHER_DATASET_ID, OTHER_OFFER_ID,
    Running, Scenario,
};

const ROWS: usize = 20_000;

struct Space {
    _dir: tempfile::TempDir,
    scn: Scenario,
    provider: Running,
    consumer: Running,
}

fn start() -> Space {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), ROWS).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_sluis"));
    let provider = Running::start(exe, &scn.provider, Duration::from_secs(60)).unwrap();
    let consumer = Running::start(exe, &scn.consumer, Duration::from_secs(60)).unwrap();
    Space {
        _dir: dir,
        scn,
        provider,
        consumer,
    }
}

impl Space {
    async fn contract(&self, dataset: &str, offer: &str) -> Contracted {
        demo::contract(&self.consumer.mgmt(), &self.provider, dataset, offer, false)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e:#}\nprovider log:\n{}",
                    std::fs::read_to_string(&self.provider.log).unwrap_or_default()
                )
            })
    }

    fn north_rows(&self) -> usize {
        self.scn.sample.rows_per_region[ALLOWED_REGION] as usize
    }
}

fn token(c: &Contracted) -> &str {
    c.address.property("authorization").expect("token")
}

async fn query(
    space: &Space,
    token: &str,
    sql: &str,
) -> anyhow::Result<Vec<arrow::record_batch::RecordBatch>> {
    let endpoint = space.provider.ports.flight_url.clone();
    let mut client = flight_client::connect(&endpoint, &space.scn.ca_pem, token).await?;
    flight_client::query(&mut client, sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_receives_exactly_the_permitted_rows_and_columns() {
    let space = start();
    let c = space.contract(DATASET_ID, OFFER_ID).await;

    // The agreement is the offer, bound to both parties, in force.
    let policy = &c.agreement["policy"];
    assert_eq!(policy["@type"], "Agreement");
    assert_eq!(policy["target"], DATASET_ID);
    assert_eq!(policy["assigner"], scenario::PROVIDER_ID);
    assert_eq!(policy["assignee"], scenario::CONSUMER_ID);
    assert!(policy["timestamp"].is_string());
    assert_eq!(c.negotiation["negotiation"]["state"], "FINALIZED");
    let states: Vec<&str> = c.negotiation["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["REQUESTED", "AGREED", "VERIFIED", "FINALIZED"]);
    assert_eq!(c.transfer["transfer"]["state"], "STARTED");

    let table = c.address.property("table").unwrap();
    let all = summarise(
        &query(&space, token(&c), &format!("SELECT * FROM {table}"))
            .await
            .unwrap(),
    );
    assert_eq!(all.rows, space.north_rows());
    assert_eq!(all.regions, [ALLOWED_REGION]);
    assert!(
        !all.columns.iter().any(|c| c == HIDDEN_COLUMN),
        "{:?}",
        all.columns
    );
    for visible in ["meter_id", "region", "reading_time", "kwh", "tariff"] {
        assert!(
            all.columns.iter().any(|c| c == visible),
            "{visible} missing from {:?}",
            all.columns
        );
    }

    // A consumer's own filter cannot widen the row filter.
    let widened = summarise(
        &query(
            &space,
            token(&c),
            &format!("SELECT region FROM {table} WHERE region <> '{ALLOWED_REGION}' OR 1 = 1"),
        )
        .await
        .unwrap(),
    );
    assert_eq!(widened.rows, space.north_rows());
    assert_eq!(widened.regions, [ALLOWED_REGION]);

    // The hidden column cannot be named.
    let hidden = query(
        &space,
        token(&c),
        &format!("SELECT {HIDDEN_COLUMN} FROM {table}"),
    )
    .await;
    assert!(hidden.is_err(), "the hidden column was served");
}

#[tokio::test(flavor = "multi_thread")]
async fn pyarrow_flight_client_reads_with_the_token() {
    let space = start();
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let table = c.address.property("table").unwrap();
    let sql = format!("SELECT * FROM {table}");
    let got = pyarrow(&space, token(&c), &sql);
    assert_eq!(got["rows"], space.north_rows(), "{got}");
    assert_eq!(got["regions"], serde_json::json!([ALLOWED_REGION]), "{got}");
    let columns: Vec<&str> = got["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(!columns.contains(&HIDDEN_COLUMN), "{columns:?}");

    let refused = pyarrow(&space, "", &sql);
    assert_eq!(refused["error"], "FlightUnauthenticatedError", "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_without_a_valid_token_for_the_dataset_are_refused() {
    let space = start();
    let north = space.contract(DATASET_ID, OFFER_ID).await;
    let south = space.contract(OTHER_DATASET_ID, OTHER_OFFER_ID).await;
    let north_table = north.address.property("table").unwrap();
    let south_table = south.address.property("table").unwrap();
    assert_ne!(north_table, south_table);
    let sql = format!("SELECT * FROM {north_table}");

    let err = query(&space, "", &sql).await.unwrap_err().to_string();
    assert!(err.contains("Unauthenticated"), "{err}");
    let err = query(&space, "not-a-biscuit", &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Unauthenticated"), "{err}");

    // The south token works for its own table, and only there.
    let own = summarise(
        &query(
            &space,
            token(&south),
            &format!("SELECT * FROM {south_table}"),
        )
        .await
        .unwrap(),
    );
    assert_eq!(own.regions, ["south"]);
    let err = query(&space, token(&south), &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PermissionDenied") || err.contains("InvalidArgument"),
        "{err}"
    );

    // A token minted by another provider's key is not accepted.
    let forged = sluis_policy::token::TokenIssuer::generate()
        .mint(&sluis_policy::token::Grant {
            agreement_id: "urn:x".into(),
            transfer_id: "urn:x".into(),
            dataset_id: DATASET_ID.into(),
            consumer: scenario::CONSUMER_ID.into(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        })
        .unwrap();
    let err = query(&space, &forged, &sql).await.unwrap_err().to_string();
    assert!(err.contains("Unauthenticated"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_the_transfer_revokes_its_token_at_once() {
    let space = start();
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let table = c.address.property("table").unwrap();
    let sql = format!("SELECT count(*) AS n FROM {table}");
    query(&space, token(&c), &sql).await.unwrap();

    // The provider's operator suspends the transfer.
    let provider_pid = c.transfer["transfer"]["providerPid"].as_str().unwrap();
    space
        .provider
        .mgmt()
        .post(
            &format!("transfers/{}/suspend", segment(provider_pid)),
            &Value::Null,
        )
        .await
        .unwrap();
    let err = query(&space, token(&c), &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PermissionDenied") && err.contains("SUSPENDED"),
        "{err}"
    );
}

/// Runs the pyarrow client script; the venv is the one the test command installs.
fn pyarrow(space: &Space, token: &str, sql: &str) -> Value {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_flight.py");
    let ca = space.scn.root.join("ca.pem");
    let out = Command::new(&python)
        .arg(script)
        .args([
            "--endpoint",
            &space
                .provider
                .ports
                .flight_url
                .replace("127.0.0.1", "localhost"),
        ])
        .arg("--ca")
        .arg(ca)
        .args(["--token", token, "--sql", sql])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "pyarrow client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pyarrow client printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `SLUIS_PYTHON`, else the workspace's `.venv`; the test command (`./test.sh`) creates it.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUIS_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "pyarrow is needed: run ./test.sh (it creates .venv with pyarrow) or set SLUIS_PYTHON"
    );
    venv
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attenuated_token_only_narrows() {
    use sluis_policy::token::{Attenuation, attenuate};
    let space = start();
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let table = c.address.property("table").unwrap();
    let key = c.address.property("tokenPublicKey").unwrap();

    // A colleague gets region and kwh only.
    let narrow = attenuate(
        token(&c),
        key,
        &Attenuation {
            expires_at: None,
            columns: Some(vec!["region".into(), "kwh".into()]),
        },
    )
    .unwrap();
    let got = summarise(
        &query(&space, &narrow, &format!("SELECT * FROM {table}"))
            .await
            .unwrap(),
    );
    assert_eq!(got.columns, ["region", "kwh"]);
    assert_eq!(got.rows, space.north_rows());
    assert_eq!(got.regions, [ALLOWED_REGION]);
    assert!(
        query(&space, &narrow, &format!("SELECT meter_id FROM {table}"))
            .await
            .is_err()
    );

    // Attenuating again cannot bring back a column, nor the hidden one.
    let wider = attenuate(
        &narrow,
        key,
        &Attenuation {
            expires_at: None,
            columns: Some(vec![
                "region".into(),
                "kwh".into(),
                "meter_id".into(),
                HIDDEN_COLUMN.into(),
            ]),
        },
    )
    .unwrap();
    let got = summarise(
        &query(&space, &wider, &format!("SELECT * FROM {table}"))
            .await
            .unwrap(),
    );
    assert_eq!(got.columns, ["region", "kwh"]);
    assert!(
        query(
            &space,
            &wider,
            &format!("SELECT {HIDDEN_COLUMN} FROM {table}")
        )
        .await
        .is_err()
    );

    // An attenuated expiry in the past refuses the token.
    let expired = attenuate(
        token(&c),
        key,
        &Attenuation {
            expires_at: Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
            columns: None,
        },
    )
    .unwrap();
    let err = query(&space, &expired, &format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PermissionDenied") || err.contains("Unauthenticated"),
        "{err}"
    );
}
