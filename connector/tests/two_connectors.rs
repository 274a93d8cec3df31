//! End to end: two real `sluis` processes on loopback, mutual TLS, DSP catalogue,
//! negotiation and transfer, then Arrow Flight queries under the agreement.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluis_connector::dataplane::MASK_HEX_DIGITS;
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
    start_with_provider_data_plane("")
}

/// Both connectors, the provider's `[data_plane]` section extended with `keys`.
fn start_with_provider_data_plane(keys: &str) -> Space {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), ROWS).unwrap();
    let config = std::fs::read_to_string(&scn.provider.config).unwrap();
    let config = config.replacen("[data_plane]\n", &format!("[data_plane]\n{keys}"), 1);
    std::fs::write(&scn.provider.config, config).unwrap();
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

    /// The consumer's client certificate: its tokens are bound to it.
    fn consumer_cert(&self) -> flight_client::ClientCert {
        participant_cert(&self.scn.consumer)
    }

    fn north_rows(&self) -> usize {
        self.scn.sample.rows_per_region[ALLOWED_REGION] as usize
    }
}

/// The client certificate of a participant of the scenario.
fn participant_cert(files: &scenario::ParticipantFiles) -> flight_client::ClientCert {
    let certs = files.dir.join("certs");
    flight_client::ClientCert::load(&certs.join("cert.pem"), &certs.join("key.pem")).unwrap()
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
    let cert = space.consumer_cert();
    let mut client =
        flight_client::connect(&endpoint, &space.scn.ca_pem, Some(&cert), token).await?;
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

/// The query limits in the provider's `sluis.toml` hold in its running data plane.
#[tokio::test(flavor = "multi_thread")]
async fn the_configured_query_memory_limit_holds() {
    let space = start_with_provider_data_plane("memory_limit_mib = 16\n");
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let table = c.address.property("table").unwrap();
    // a streaming scan needs little memory
    let rows: usize = query(&space, token(&c), &format!("SELECT * FROM {table}"))
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, space.north_rows());
    // sorting the ~25 million rows of a self cross join needs far more than 16 MiB (the
    // default limit is 512 MiB)
    let sql = format!("SELECT a.kwh FROM {table} a CROSS JOIN {table} b ORDER BY a.kwh");
    let e = query(&space, token(&c), &sql).await.unwrap_err();
    let shown = format!("{e:#}");
    assert!(shown.contains("memory"), "{shown}");
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
    python_client(space, "read_flight.py", &["--token", token, "--sql", sql])
}

/// Runs the ADBC Flight SQL client script.
fn adbc(space: &Space, token: &str, purpose: &str, sql: &str) -> Value {
    python_client(
        space,
        "adbc_query.py",
        &["--token", token, "--purpose", purpose, "--sql", sql],
    )
}

/// Runs `tests/python/<script>` against the provider's Flight endpoint; parses its JSON line.
fn python_client(space: &Space, script: &str, args: &[&str]) -> Value {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let ca = space.scn.root.join("ca.pem");
    let out = Command::new(&python)
        .arg(&script)
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
        .args(consumer_cert_args(space))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed {:?}: {e}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `--cert <file> --key <file>` of the consumer's client certificate, for the clients.
fn consumer_cert_args(space: &Space) -> Vec<PathBuf> {
    let certs = space.scn.consumer.dir.join("certs");
    vec![
        "--cert".into(),
        certs.join("cert.pem"),
        "--key".into(),
        certs.join("key.pem"),
    ]
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

/// The provider's audit rows of `agreement`, newest first.
async fn audit(space: &Space, agreement: &str) -> Vec<Value> {
    let path = format!("audit?agreementId={}&limit=50", segment(agreement));
    let got = space.provider.mgmt().get(&path).await.unwrap();
    got["queries"].as_array().cloned().unwrap_or_default()
}

fn agreement_id(c: &Contracted) -> String {
    c.agreement["id"]
        .as_str()
        .expect("agreement id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn adbc_flight_sql_driver_reads_exactly_the_permitted_data() {
    let space = start();
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let table = c.address.property("table").unwrap();

    let got = adbc(&space, token(&c), "", &format!("SELECT * FROM {table}"));
    assert_eq!(got["frame"], "pandas", "{got}");
    assert_eq!(got["rows"], space.north_rows(), "{got}");
    assert_eq!(got["statement_rows"], space.north_rows(), "{got}");
    assert_eq!(got["regions"], serde_json::json!([ALLOWED_REGION]), "{got}");
    assert_eq!(
        got["columns"],
        serde_json::json!(["meter_id", "region", "reading_time", "kwh", "tariff"]),
        "{got}"
    );
    assert_eq!(got["statement_columns"], got["columns"], "{got}");
    // the driver's catalogue shows the contracted dataset only
    assert_eq!(
        got["tables"],
        serde_json::json!([format!("datafusion.public.{table}")]),
        "{got}"
    );

    // a filter of the consumer's own cannot widen the row filter
    let widened = adbc(
        &space,
        token(&c),
        "",
        &format!("SELECT region FROM {table} WHERE region <> 'north' OR 1 = 1"),
    );
    assert_eq!(widened["rows"], space.north_rows(), "{widened}");
    assert_eq!(widened["regions"], serde_json::json!([ALLOWED_REGION]));

    for (tok, sql, expected) in [
        (
            token(&c),
            format!("SELECT {HIDDEN_COLUMN} FROM {table}"),
            "visible-columns",
        ),
        (token(&c), format!("DROP TABLE {table}"), "select-only"),
        (
            token(&c),
            "SELECT * FROM datafusion.public.meter_readings_south".to_string(),
            "granted-table",
        ),
        ("", format!("SELECT * FROM {table}"), "authorization"),
        ("forged", format!("SELECT * FROM {table}"), "nauthenticated"),
    ] {
        let refused = adbc(&space, tok, "", &sql);
        let message = refused["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{sql}: {refused}");
        assert!(!message.contains("Anna"), "{refused}");
    }

    // every query is in the audit log with its decision, rows and bytes
    let rows = audit(&space, &agreement_id(&c)).await;
    let permits: Vec<&Value> = rows.iter().filter(|r| r["decision"] == "permit").collect();
    assert!(permits.len() >= 4, "{rows:?}");
    let full = permits
        .iter()
        .find(|r| r["sql"] == format!("SELECT * FROM {table}") && r["channel"] == "flight-sql")
        .expect("the SELECT * of the ADBC driver");
    assert_eq!(full["rows"], space.north_rows(), "{full}");
    assert!(full["bytes"].as_u64().unwrap() > 0, "{full}");
    assert_eq!(full["consumer"], scenario::CONSUMER_ID);
    assert!(
        full["report"]["enforced"]["rowFilters"].is_array(),
        "{full}"
    );
    let refusals: Vec<&str> = rows
        .iter()
        .filter(|r| r["decision"] == "deny")
        .map(|r| r["reason"].as_str().unwrap_or_default())
        .collect();
    for rule in ["visible-columns", "select-only", "granted-table"] {
        assert!(
            refusals.iter().any(|r| r.contains(rule)),
            "{rule} not audited: {refusals:?}"
        );
    }
}

/// Runs `sql` over Flight with `purpose` declared (None: no purpose header).
async fn query_for(
    space: &Space,
    token: &str,
    purpose: Option<&str>,
    sql: &str,
) -> anyhow::Result<Vec<arrow::record_batch::RecordBatch>> {
    let endpoint = space.provider.ports.flight_url.clone();
    let cert = space.consumer_cert();
    let mut client =
        flight_client::connect(&endpoint, &space.scn.ca_pem, Some(&cert), token).await?;
    if let Some(p) = purpose {
        client.add_header(sluis_connector::dataplane::PURPOSE_HEADER, p)?;
    }
    flight_client::query(&mut client, sql).await
}

fn meter_ids(batches: &[arrow::record_batch::RecordBatch]) -> std::collections::BTreeSet<String> {
    use arrow::array::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("meter_id").unwrap().as_string::<i32>();
            ids.iter().flatten().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn purposes_masks_and_query_counts_hold_across_a_restart() {
    use scenario::{METERED_DATASET_ID, METERED_MAX_QUERIES, METERED_OFFER_ID, METERED_PURPOSE};
    let mut space = start();
    let first = space.contract(METERED_DATASET_ID, METERED_OFFER_ID).await;
    let second = space.contract(METERED_DATASET_ID, METERED_OFFER_ID).await;
    let table = first.address.property("table").unwrap().to_string();
    let sql = format!("SELECT DISTINCT meter_id FROM {table}");
    let purpose = Some(METERED_PURPOSE);

    // no purpose, or another purpose: refused, naming the constraint; not counted
    for declared in [None, Some("https://w3id.org/dpv#Marketing")] {
        let e = query_for(&space, token(&first), declared, &sql)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("odrl:purpose"), "{e}");
    }

    // masks are keyed per agreement: stable within one, different between two
    let a1 = meter_ids(
        &query_for(&space, token(&first), purpose, &sql)
            .await
            .unwrap(),
    );
    let a1_again = meter_ids(
        &query_for(&space, token(&first), purpose, &sql)
            .await
            .unwrap(),
    );
    let b1 = meter_ids(
        &query_for(&space, token(&second), purpose, &sql)
            .await
            .unwrap(),
    );
    assert!(!a1.is_empty());
    assert_eq!(a1, a1_again);
    assert_eq!(a1.len(), b1.len());
    assert!(a1.is_disjoint(&b1));
    assert!(
        a1.iter()
            .all(|m| m.len() == MASK_HEX_DIGITS && !m.starts_with("MTR"))
    );

    // the count survives a restart of the provider
    space.provider.kill();
    let exe = Path::new(env!("CARGO_BIN_EXE_sluis"));
    space.provider = Running::start(exe, &space.scn.provider, Duration::from_secs(60)).unwrap();
    let used = 2;
    for _ in used..METERED_MAX_QUERIES {
        query_for(&space, token(&first), purpose, &sql)
            .await
            .unwrap();
    }
    let e = query_for(&space, token(&first), purpose, &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("odrl:count"), "{e}");
    // the other agreement has its own count
    query_for(&space, token(&second), purpose, &sql)
        .await
        .unwrap();

    let rows = audit(&space, &agreement_id(&first)).await;
    let permits = rows.iter().filter(|r| r["decision"] == "permit").count();
    assert_eq!(permits as u64, METERED_MAX_QUERIES, "{rows:?}");
    let denials: Vec<&str> = rows
        .iter()
        .filter(|r| r["decision"] == "deny")
        .map(|r| r["reason"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(denials.len(), 3, "{denials:?}");
    assert!(denials[0].contains("odrl:count"), "{denials:?}");
    assert!(rows.iter().all(|r| r["channel"] == "flight"));
}

/// Starts a second transfer of `c`'s agreement with `HttpData-PULL`; its data address.
async fn http_transfer(
    space: &Space,
    c: &Contracted,
) -> sluis_connector::dsp::messages::DataAddress {
    let consumer = space.consumer.mgmt();
    let started = consumer
        .post(
            "transfers",
            &serde_json::json!({
                "agreementId": agreement_id(c),
                "format": "HttpData-PULL",
                "providerId": scenario::PROVIDER_ID,
                "connectorAddress": space.provider.ports.dsp_url,
            }),
        )
        .await
        .unwrap();
    let tid = started["id"].as_str().unwrap();
    let transfer = consumer
        .get(&format!(
            "transfers/{}?waitFor=STARTED&timeoutMs=30000",
            segment(tid)
        ))
        .await
        .unwrap();
    serde_json::from_value(transfer["transfer"]["dataAddress"].clone()).unwrap()
}

/// Runs the urllib client against an HttpData-PULL endpoint.
fn http_pull(space: &Space, url: &str, token: &str, accept: &str, sql: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/http_pull.py");
    let out = Command::new(python())
        .arg(&script)
        .args([
            "--url", url, "--token", token, "--accept", accept, "--sql", sql,
        ])
        .arg("--ca")
        .arg(space.scn.root.join("ca.pem"))
        .args(consumer_cert_args(space))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_data_pull_serves_the_enforced_data_in_three_formats() {
    let space = start();
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let address = http_transfer(&space, &c).await;
    assert_eq!(
        address.endpoint_type,
        sluis_connector::dataplane::http::ENDPOINT_TYPE
    );
    let url = address.endpoint.clone().unwrap();
    assert!(
        url.starts_with("https://") && url.ends_with("/data"),
        "{url}"
    );
    let tok = address.property("authorization").unwrap().to_string();
    let table = address.property("table").unwrap().to_string();
    let visible = serde_json::json!(["kwh", "meter_id", "reading_time", "region", "tariff"]);

    for (accept, content_type) in [
        ("", "application/vnd.apache.arrow.stream"),
        ("text/csv", "text/csv"),
        ("application/json", "application/json"),
    ] {
        let got = http_pull(&space, &url, &tok, accept, "");
        assert_eq!(got["status"], 200, "{accept}: {got}");
        assert!(
            got["content_type"]
                .as_str()
                .unwrap()
                .starts_with(content_type),
            "{got}"
        );
        assert_eq!(got["rows"], space.north_rows(), "{accept}: {got}");
        assert_eq!(got["regions"], serde_json::json!([ALLOWED_REGION]), "{got}");
        let mut columns: Vec<Value> = got["columns"].as_array().unwrap().clone();
        columns.sort_by_key(|c| c.as_str().unwrap().to_string());
        assert_eq!(Value::Array(columns), visible, "{accept}: {got}");
    }

    let some = http_pull(
        &space,
        &url,
        &tok,
        "application/json",
        &format!("SELECT region, kwh FROM {table} WHERE region <> 'north' OR 1 = 1 LIMIT 7"),
    );
    assert_eq!(some["rows"], 7, "{some}");
    assert_eq!(
        some["regions"],
        serde_json::json!([ALLOWED_REGION]),
        "{some}"
    );

    for (token, accept, sql, status, needle) in [
        ("", "", String::new(), 401, "authorization"),
        ("forged", "", String::new(), 401, ""),
        (tok.as_str(), "image/png", String::new(), 406, "Accept"),
        (
            tok.as_str(),
            "",
            format!("SELECT {HIDDEN_COLUMN} FROM {table}"),
            403,
            "visible-columns",
        ),
        (
            tok.as_str(),
            "",
            "SELECT * FROM meter_readings_south".to_string(),
            403,
            "granted-table",
        ),
        (
            tok.as_str(),
            "",
            format!("DELETE FROM {table}"),
            403,
            "select-only",
        ),
    ] {
        let got = http_pull(&space, &url, token, accept, &sql);
        assert_eq!(got["status"], status, "{sql}: {got}");
        assert!(got["error"].as_str().unwrap().contains(needle), "{got}");
    }

    // the HTTP queries are audited under their own transfer
    let rows = audit(&space, &agreement_id(&c)).await;
    let http: Vec<&Value> = rows.iter().filter(|r| r["channel"] == "http").collect();
    assert!(
        http.iter()
            .any(|r| r["decision"] == "permit" && r["rows"] == 7),
        "{rows:?}"
    );
    assert!(http.iter().any(|r| r["decision"] == "deny"), "{rows:?}");
}

/// Runs the `sluis` binary; (success, stdout, stderr).
fn sluis(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluis"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_attenuates_offline_and_queries_with_the_narrower_token() {
    let space = start();
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let table = c.address.property("table").unwrap();
    let key = c.address.property("tokenPublicKey").unwrap();
    let endpoint = space.provider.ports.flight_url.clone();
    let ca = space.scn.root.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let certs = space.scn.consumer.dir.join("certs");
    let (cert, cert_key) = (certs.join("cert.pem"), certs.join("key.pem"));
    // `sluis query` against the provider with a token and SQL, then any further arguments
    let query = |token: &str, sql: &str, more: &[&str]| {
        let mut args = vec![
            "query",
            "--endpoint",
            endpoint.as_str(),
            "--ca",
            ca,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            cert_key.to_str().unwrap(),
            "--token",
            token,
            "--sql",
            sql,
        ];
        args.extend_from_slice(more);
        sluis(&args)
    };

    let (ok, narrow, err) = sluis(&[
        "token",
        "attenuate",
        "--token",
        token(&c),
        "--public-key",
        key,
        "--expires-in",
        "30m",
        "--columns",
        "region,kwh",
    ]);
    assert!(ok, "{err}");
    let narrow = narrow.trim();

    // the narrower token reads its columns, into a CSV file
    let out = tempfile::tempdir().unwrap();
    let csv = out.path().join("r.csv");
    let sql = format!("SELECT region, kwh FROM {table}");
    let (ok, printed, err) = query(narrow, &sql, &["--out", csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        printed.contains(&format!("wrote {} rows", space.north_rows())),
        "{printed}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().next(), Some("region,kwh"));
    assert_eq!(text.lines().count(), space.north_rows() + 1);

    // SELECT * shows only those columns; naming another one is refused
    let (ok, _, err) = query(
        narrow,
        &format!("SELECT * FROM {table}"),
        &["--out", csv.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().next(), Some("region,kwh"));
    let sql = format!("SELECT meter_id FROM {table}");
    let (ok, _, err) = query(narrow, &sql, &[]);
    assert!(!ok, "{sql} was served to the narrower token");
    assert!(err.contains("refused"), "{err}");
    // which the full token reads (printed as a table)
    let (ok, printed, err) = query(token(&c), &sql, &["--max-rows", "3"]);
    assert!(ok, "{err}");
    assert!(printed.contains("meter_id"), "{printed}");
    assert!(
        printed.contains(&format!("{} rows", space.north_rows())),
        "{printed}"
    );

    // widening fails: a later expiry is refused, and more columns add a check, not a right
    let (ok, _, err) = sluis(&[
        "token",
        "attenuate",
        "--token",
        narrow,
        "--public-key",
        key,
        "--expires-in",
        "3650d",
    ]);
    assert!(!ok);
    assert!(err.contains("cannot widen"), "{err}");
    let (ok, wider, err) = sluis(&[
        "token",
        "attenuate",
        "--token",
        narrow,
        "--public-key",
        key,
        "--columns",
        "region,kwh,meter_id,customer_name",
    ]);
    assert!(ok, "{err}");
    let sql = format!("SELECT meter_id FROM {table}");
    let (ok, _, err) = query(wider.trim(), &sql, &[]);
    assert!(!ok, "a re-attenuated token read meter_id");
    assert!(err.contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_negotiation_with_the_offer_in_hand_finalizes_and_the_provider_still_checks_it() {
    use sluis_connector::store::ProcessKind;
    let space = start();
    let consumer = space.consumer.mgmt();
    let ports = &space.provider.ports;
    let catalogue = scenario::dsp_client(&space.scn.consumer).unwrap();
    let url = format!("{}/catalog/datasets/{DATASET_ID}", ports.dsp_url);
    let (_, dataset) = catalogue.get_json(&url).await.unwrap();
    let offer = dataset["hasPolicy"]
        .as_array()
        .and_then(|offers| offers.iter().find(|o| o["@id"] == OFFER_ID))
        .cloned()
        .expect("the demo offer in the provider's catalogue");
    let wait = |id: String, state: &'static str| {
        let consumer = consumer.clone();
        async move {
            let got = scenario::wait_for_state(
                &consumer,
                ProcessKind::Negotiation,
                &id,
                state,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
            got["negotiation"].clone()
        }
    };

    // as the catalogue showed it: agreed and finalized without a second catalogue read
    let id = scenario::start_negotiation_with_offer(&consumer, ports, DATASET_ID, &offer)
        .await
        .unwrap();
    let n = wait(id, "FINALIZED").await;
    assert_eq!(n["state"], "FINALIZED", "{n}");
    assert!(n["agreementId"].is_string(), "{n}");

    // an offer that is not the one named: refused before anything is sent
    let mut other = offer.clone();
    other["@id"] = OTHER_OFFER_ID.into();
    let body = serde_json::json!({
        "datasetId": DATASET_ID, "offerId": OFFER_ID, "providerId": ports.participant_id,
        "connectorAddress": ports.dsp_url, "offer": other,
    });
    let (status, text) = consumer
        .raw(
            http::Method::POST,
            "negotiations",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("@id differs"), "{text}");

    // an offer the consumer widened (its constraints dropped): the provider does not agree
    let mut widened = offer.clone();
    widened["permission"][0]["constraint"] = serde_json::json!([]);
    let id = scenario::start_negotiation_with_offer(&consumer, ports, DATASET_ID, &widened)
        .await
        .unwrap();
    let n = wait(id, "TERMINATED").await;
    assert_eq!(n["state"], "TERMINATED", "{n}");
    assert!(n["agreementId"].is_null(), "{n}");
}

/// `GET path` on the provider's management listener (plain HTTP), timed.
async fn timed_get(addr: std::net::SocketAddr, path: &str) -> (Duration, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    (started.elapsed(), answer)
}

/// Issue 17, item 8: one consumer floods the provider with expensive queries, more than the
/// slots it may hold. A second consumer's light query, the provider's health check and a DSP
/// catalogue request still answer at once: the flooding consumer holds only half the slots,
/// and queries run on threads of their own at a lower priority. Before, the flood took every
/// slot (the light query waited until a heavy one ended) and shared the threads that answer
/// DSP and health.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_flooding_the_data_plane_starves_neither_other_consumers_nor_the_control_plane()
{
    let space = start_with_provider_data_plane("max_concurrent_queries = 4\n");
    let exe = Path::new(env!("CARGO_BIN_EXE_sluis"));
    let second_files = scenario::add_participant(
        &space.scn.root,
        "second-consumer",
        "did:web:second-consumer.example",
        &[],
    )
    .unwrap();
    let second = scenario::Running::start(exe, &second_files, Duration::from_secs(60)).unwrap();
    let flooding = space.contract(DATASET_ID, OFFER_ID).await;
    let light = demo::contract(&second.mgmt(), &space.provider, DATASET_ID, OFFER_ID, false)
        .await
        .unwrap();
    let table = flooding.address.property("table").unwrap().to_string();

    // seconds of CPU each over the ~5,000 visible rows, and little memory: every pair's hash
    let heavy = format!(
        "SELECT count(*) FROM {table} a CROSS JOIN {table} b \
         WHERE md5(concat(a.meter_id, b.meter_id, a.tariff, b.tariff)) < '0'"
    );
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (endpoint, ca) = (
                space.provider.ports.flight_url.clone(),
                space.scn.ca_pem.clone(),
            );
            let (token, sql) = (token(&flooding).to_string(), heavy.clone());
            let cert = space.consumer_cert();
            tokio::spawn(async move {
                let mut client =
                    flight_client::connect(&endpoint, &ca, Some(&cert), &token).await?;
                flight_client::query(&mut client, &sql).await
            })
        })
        .collect();
    // the flood is running: its first queries hold their slots and keep the cores busy
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        flood.iter().all(|q| !q.is_finished()),
        "the heavy queries ended too soon to flood anything"
    );

    let light_sql = format!(
        "SELECT count(*) AS n FROM {}",
        light.address.property("table").unwrap()
    );
    let started = std::time::Instant::now();
    let endpoint = space.provider.ports.flight_url.clone();
    let second_cert = participant_cert(&second_files);
    let mut client = flight_client::connect(
        &endpoint,
        &space.scn.ca_pem,
        Some(&second_cert),
        token(&light),
    )
    .await
    .unwrap();
    let answer = flight_client::query(&mut client, &light_sql).await;
    let light_took = started.elapsed();
    let batches = answer.unwrap();
    assert_eq!(summarise(&batches).rows, 1);

    let management = space.provider.ports.management_listen.unwrap();
    let (health_took, health) = timed_get(management, "/health/live").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let started = std::time::Instant::now();
    let catalog = second
        .mgmt()
        .post(
            "catalog/request",
            &serde_json::json!({ "connectorAddress": space.provider.ports.dsp_url }),
        )
        .await
        .unwrap();
    let catalog_took = started.elapsed();
    assert!(catalog["dataset"].is_array(), "{catalog}");

    let still_flooding = flood.iter().filter(|q| !q.is_finished()).count();
    for q in &flood {
        q.abort();
    }
    println!(
        "light query {light_took:?}, health {health_took:?}, DSP catalogue {catalog_took:?}, \
         {still_flooding} of 8 heavy queries still running or waiting"
    );
    assert!(
        still_flooding > 0,
        "the flood ended before the measurements did"
    );
    // bounds far above the few milliseconds each takes alone, far below the heavy queries'
    assert!(
        light_took < Duration::from_secs(5),
        "light query took {light_took:?}"
    );
    assert!(
        health_took < Duration::from_secs(2),
        "health took {health_took:?}"
    );
    assert!(
        catalog_took < Duration::from_secs(2),
        "DSP catalogue took {catalog_took:?}"
    );
}

/// Issue 17, items 13 and 9: the consumer fetches an offer of a dataset whose id holds `/`,
/// `#`, `?` or `%` (one path segment, percent-encoded; the provider decodes it), and a
/// request for an offer whose `@id` is not an absolute IRI ends in a refusal (400 from the
/// provider), not in retries of a 500.
#[tokio::test(flavor = "multi_thread")]
async fn dataset_ids_with_reserved_characters_negotiate_between_two_connectors() {
    use sluis_connector::store::ProcessKind;
    let space = start();
    let provider = space.provider.mgmt();
    let consumer = space.consumer.mgmt();
    let ports = &space.provider.ports;
    let ids = [
        "https://provider.example/ds/1",
        "https://provider.example/ds/2#part",
        "https://provider.example/ds/3?version=2&x=y",
        "https://provider.example/ds/4%C3%A9",
        "urn:sluis:dataset:a/b?c=d#e%25f",
    ];
    for (i, id) in ids.iter().enumerate() {
        let offer_id = format!("urn:sluis:offer:reserved-{i}");
        let dataset = serde_json::json!({
            "id": id,
            "title": format!("Reserved characters {i}"),
            "distributions": [{"format": "ArrowFlight-PULL",
                "source": {"kind": "parquet", "location": "/srv/data/x.parquet"}}],
            "offers": [{"@id": offer_id, "@type": "Offer", "permission": [{"action": "use"}]}],
        });
        provider.post("catalog/datasets", &dataset).await.unwrap();
        let started = scenario::start_negotiation(&consumer, ports, id, &offer_id).await;
        let pid = started.unwrap_or_else(|e| panic!("{id}: {e:#}"));
        let n = scenario::wait_for_state(
            &consumer,
            ProcessKind::Negotiation,
            &pid,
            "FINALIZED",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        assert_eq!(n["negotiation"]["state"], "FINALIZED", "{id}: {n}");
        assert_eq!(n["negotiation"]["datasetId"], *id, "{n}");
    }
    // A space cannot be in a dataset id (not an IRI), but asking for one is a clean "not
    // found" from the provider, not a URL the consumer cannot even send.
    let err = scenario::start_negotiation(
        &consumer,
        ports,
        "https://provider.example/ds/with space",
        "urn:sluis:offer:reserved-0",
    )
    .await
    .expect_err("no such dataset");
    let err = format!("{err:#}");
    assert!(err.contains("404") && !err.contains("invalid URL"), "{err}");

    // An offer @id that is not an IRI: the provider refuses it, the negotiation ends.
    let offer = serde_json::json!({
        "@id": "not an IRI", "@type": "Offer", "permission": [{"action": "use"}]
    });
    match scenario::start_negotiation_with_offer(&consumer, ports, DATASET_ID, &offer).await {
        // refused by the consumer itself: nothing sent
        Err(e) => assert!(format!("{e:#}").contains("400"), "{e:#}"),
        Ok(pid) => {
            let n = scenario::wait_for_state(
                &consumer,
                ProcessKind::Negotiation,
                &pid,
                "TERMINATED",
                Duration::from_secs(20),
            )
            .await
            .unwrap();
            let n = &n["negotiation"];
            assert_eq!(n["state"], "TERMINATED", "{n}");
            assert!(n.to_string().contains("400"), "{n}");
        }
    }
}

// ---- revocation ends running streams (issue 17, item 4) ----------------------------------------

/// Every visible row next to every other: a result of hundreds of millions of rows, a stream
/// that runs far longer than the test.
fn long_sql(table: &str) -> String {
    format!(
        "SELECT a.*, b.meter_id AS other_meter, b.reading_time AS other_time \
         FROM {table} a CROSS JOIN {table} b"
    )
}

/// The provider's id of the transfer a token was minted for (the token's grant).
fn provider_transfer_of(address: &sluis_connector::dsp::messages::DataAddress) -> String {
    let key = address.property("tokenPublicKey").unwrap();
    let verifier = sluis_policy::token::TokenVerifier::from_public_key_hex(key).unwrap();
    let token = address.property("authorization").unwrap();
    verifier.inspect(token).unwrap().transfer_id
}

/// The provider's operator acts on its transfer `id`; returns when the change is committed.
async fn provider_acts(space: &Space, id: &str, action: &str) -> std::time::Instant {
    space
        .provider
        .mgmt()
        .post(&format!("transfers/{}/{action}", segment(id)), &Value::Null)
        .await
        .unwrap();
    std::time::Instant::now()
}

/// Reads what is left of `stream` once its grant ended at `ended`: how long it still ran, the
/// rows it sent meanwhile, and the error it ended with (None: it ended without one).
async fn drain<S>(mut stream: S, ended: std::time::Instant) -> (Duration, usize, Option<String>)
where
    S: futures::Stream<Item = Result<arrow::record_batch::RecordBatch, String>> + Unpin,
{
    use futures::StreamExt;
    let give_up = tokio::time::Instant::from_std(ended) + Duration::from_secs(15);
    let mut rows = 0;
    loop {
        match tokio::time::timeout_at(give_up, stream.next()).await {
            Err(_) => return (ended.elapsed(), rows, Some("still running".into())),
            Ok(None) => return (ended.elapsed(), rows, None),
            Ok(Some(Ok(batch))) => rows += batch.num_rows(),
            Ok(Some(Err(e))) => return (ended.elapsed(), rows, Some(e)),
        }
    }
}

/// The stream ended within a second of `ended`, refused with `PermissionDenied` naming `why`.
fn assert_ended(what: &str, (took, rows, error): (Duration, usize, Option<String>), why: &str) {
    assert!(
        took < Duration::from_secs(1),
        "{what}: the stream ran {took:?} (and {rows} rows) after its grant ended: {error:?}"
    );
    let error = error.unwrap_or_else(|| panic!("{what}: the stream ended without an error"));
    assert!(
        error.contains("PermissionDenied") && error.contains(why),
        "{what}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_ends_running_streams_within_a_second() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use futures::{StreamExt, TryStreamExt};

    let space = start();
    let endpoint = space.provider.ports.flight_url.clone();
    let flight_error = |e: arrow_flight::error::FlightError| flight_client::flight_message(&e);

    // Flight DoGet, suspended by the provider
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let sql = long_sql(c.address.property("table").unwrap());
    let cert = space.consumer_cert();
    let mut client = flight_client::connect(&endpoint, &space.scn.ca_pem, Some(&cert), token(&c))
        .await
        .unwrap();
    let mut stream = client
        .do_get(arrow_flight::Ticket::new(sql.clone()))
        .await
        .unwrap()
        .map_err(flight_error);
    stream.next().await.unwrap().expect("the stream runs");
    let ended = provider_acts(&space, &provider_transfer_of(&c.address), "suspend").await;
    assert_ended("DoGet", drain(stream, ended).await, "SUSPENDED");

    // Flight SQL, terminated by the provider
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let channel = flight_client::channel(&endpoint, &space.scn.ca_pem, Some(&cert))
        .await
        .unwrap();
    let mut sql_client = FlightSqlServiceClient::new(channel);
    sql_client.set_header("authorization", format!("Bearer {}", token(&c)));
    let info = sql_client.execute(sql.clone(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = sql_client
        .do_get(ticket)
        .await
        .unwrap()
        .map_err(flight_error);
    stream.next().await.unwrap().expect("the stream runs");
    let ended = provider_acts(&space, &provider_transfer_of(&c.address), "terminate").await;
    assert_ended("Flight SQL", drain(stream, ended).await, "TERMINATED");

    // HTTP pull, completed by the provider
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let address = http_transfer(&space, &c).await;
    let mut body = HttpStream::post(&space, &address, &sql).await;
    body.read_at_least(64 * 1024).await;
    let ended = provider_acts(&space, &provider_transfer_of(&address), "complete").await;
    let (took, truncated) = body.read_to_end(ended).await;
    assert!(
        took < Duration::from_secs(1),
        "HTTP: the body ran {took:?} after its grant ended"
    );
    assert!(truncated, "HTTP: a revoked stream must not look complete");

    // Flight DoGet under a token (attenuated) that expires while the query runs
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let short = sluis_policy::token::attenuate(
        token(&c),
        c.address.property("tokenPublicKey").unwrap(),
        &sluis_policy::token::Attenuation {
            expires_at: Some(expires_at),
            columns: None,
        },
    )
    .unwrap();
    let mut client = flight_client::connect(&endpoint, &space.scn.ca_pem, Some(&cert), &short)
        .await
        .unwrap();
    let mut stream = client
        .do_get(arrow_flight::Ticket::new(sql))
        .await
        .unwrap()
        .map_err(flight_error);
    stream.next().await.unwrap().expect("the stream runs");
    // tokens state their expiry to the second
    let whole_second = chrono::DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap();
    let left = (whole_second - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let expired = std::time::Instant::now() + left;
    assert_ended("expiry", drain(stream, expired).await, "expired");
}

/// A raw HTTP/1.1 `POST /data` to the provider's `HttpData-PULL` endpoint over TLS, with the
/// consumer's client certificate, read as it arrives.
struct HttpStream {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    got: Vec<u8>,
}

impl HttpStream {
    async fn post(
        space: &Space,
        address: &sluis_connector::dsp::messages::DataAddress,
        sql: &str,
    ) -> Self {
        let material = participant_tls(&space.scn.consumer);
        Self::post_as(Some(&material), &material, address, sql).await
    }

    /// `POST /data` presenting `client`'s certificate (None: none), trusting the CA of `trust`.
    async fn post_as(
        client: Option<&sluis_connector::tls::TlsMaterial>,
        trust: &sluis_connector::tls::TlsMaterial,
        address: &sluis_connector::dsp::messages::DataAddress,
        sql: &str,
    ) -> Self {
        use tokio::io::AsyncWriteExt;
        let url = address.endpoint.clone().unwrap();
        let authority = url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let config = match client {
            Some(m) => m.client_config().unwrap(),
            None => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(trust.roots.clone())
            .with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let token = address.property("authorization").unwrap();
        let request = format!(
            "POST /data HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/csv\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{sql}",
            sql.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        Self {
            tls,
            got: Vec::new(),
        }
    }

    /// The whole (short) answer: status line, headers and body.
    async fn answer(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.tls.read_to_end(&mut all)).await;
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Reads until `n` bytes arrived; the answer must be a 200.
    async fn read_at_least(&mut self, n: usize) {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; 64 * 1024];
        while self.got.len() < n {
            let read = tokio::time::timeout(Duration::from_secs(30), self.tls.read(&mut buf))
                .await
                .expect("the answer comes")
                .unwrap();
            assert!(read > 0, "{}", String::from_utf8_lossy(&self.got));
            self.got.extend_from_slice(&buf[..read]);
        }
        assert!(
            self.got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&self.got[..200.min(self.got.len())])
        );
    }

    /// Reads until the connection ends (15 s at most after `ended`): how long after `ended`,
    /// and whether the chunked body was cut off rather than finished.
    async fn read_to_end(&mut self, ended: std::time::Instant) -> (Duration, bool) {
        use tokio::io::AsyncReadExt;
        let give_up = tokio::time::Instant::from_std(ended) + Duration::from_secs(15);
        let mut buf = vec![0; 64 * 1024];
        loop {
            match tokio::time::timeout_at(give_up, self.tls.read(&mut buf)).await {
                Err(_) => return (ended.elapsed(), false),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(read)) => {
                    // keep only the tail: the body is large
                    self.got.extend_from_slice(&buf[..read]);
                    let keep = self.got.len().saturating_sub(16);
                    self.got.drain(..keep);
                }
            }
        }
        (ended.elapsed(), !self.got.ends_with(b"\r\n0\r\n\r\n"))
    }
}

/// The TLS material (certificate, key, CA) of a participant of the scenario.
fn participant_tls(files: &scenario::ParticipantFiles) -> sluis_connector::tls::TlsMaterial {
    let certs = files.dir.join("certs");
    sluis_connector::tls::TlsMaterial::load(&sluis_connector::tls::TlsFiles {
        ca: certs.join("ca.pem"),
        cert: certs.join("cert.pem"),
        key: certs.join("key.pem"),
    })
    .unwrap()
}

// ---- tokens are bound to their holder (issue 17, item 5) ---------------------------------------

const OTHER_ID: &str = "did:web:other.example";

/// `sql` over Flight DoGet with `token`, presenting `cert` (None: no client certificate).
async fn query_as(
    space: &Space,
    cert: Option<&flight_client::ClientCert>,
    token: &str,
    sql: &str,
) -> anyhow::Result<Vec<arrow::record_batch::RecordBatch>> {
    let endpoint = space.provider.ports.flight_url.clone();
    let mut client = flight_client::connect(&endpoint, &space.scn.ca_pem, cert, token).await?;
    flight_client::query(&mut client, sql).await
}

/// `sql` over Flight SQL with `token`, presenting `cert`.
async fn flight_sql_as(
    space: &Space,
    cert: Option<&flight_client::ClientCert>,
    token: &str,
    sql: &str,
) -> Result<(), String> {
    let endpoint = space.provider.ports.flight_url.clone();
    let channel = flight_client::channel(&endpoint, &space.scn.ca_pem, cert)
        .await
        .unwrap();
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.set_header("authorization", format!("Bearer {token}"));
    client
        .execute(sql.to_string(), None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_work_only_from_their_holders_certificate() {
    let space = start();
    let other_files = scenario::add_participant(&space.scn.root, "other", OTHER_ID, &[]).unwrap();
    let other = participant_cert(&other_files);
    let consumer = space.consumer_cert();
    let c = space.contract(DATASET_ID, OFFER_ID).await;
    let table = c.address.property("table").unwrap();
    let sql = format!("SELECT count(*) AS n FROM {table}");

    // Flight: the holder reads; another participant and no certificate are refused
    query_as(&space, Some(&consumer), token(&c), &sql)
        .await
        .unwrap();
    let err = query_as(&space, Some(&other), token(&c), &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PermissionDenied") && err.contains("another participant"),
        "{err}"
    );
    let err = query_as(&space, None, token(&c), &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Unauthenticated") && err.contains("no client certificate"),
        "{err}"
    );

    // Flight SQL: the same
    flight_sql_as(&space, Some(&consumer), token(&c), &sql)
        .await
        .unwrap();
    let err = flight_sql_as(&space, Some(&other), token(&c), &sql)
        .await
        .unwrap_err();
    assert!(err.contains("another participant"), "{err}");
    let err = flight_sql_as(&space, None, token(&c), &sql)
        .await
        .unwrap_err();
    assert!(err.contains("no client certificate"), "{err}");

    // HTTP pull: the same (403 for another participant, 401 without a certificate)
    let address = http_transfer(&space, &c).await;
    let consumer_tls = participant_tls(&space.scn.consumer);
    let other_tls = participant_tls(&other_files);
    let ok = HttpStream::post_as(Some(&consumer_tls), &consumer_tls, &address, &sql)
        .await
        .answer()
        .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let refused = HttpStream::post_as(Some(&other_tls), &consumer_tls, &address, &sql)
        .await
        .answer()
        .await;
    assert!(
        refused.starts_with("HTTP/1.1 403") && refused.contains("another participant"),
        "{refused}"
    );
    let refused = HttpStream::post_as(None, &consumer_tls, &address, &sql)
        .await
        .answer()
        .await;
    assert!(
        refused.starts_with("HTTP/1.1 401") && refused.contains("no client certificate"),
        "{refused}"
    );

    // delegation: the holder names the delegate; then only the delegate's certificate works
    let key = c.address.property("tokenPublicKey").unwrap();
    let delegated =
        sluis_connector::holder::delegate(token(&c), key, OTHER_ID, &consumer_tls).unwrap();
    query_as(&space, Some(&other), &delegated, &sql)
        .await
        .unwrap();
    let err = query_as(&space, Some(&consumer), &delegated, &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("another participant"), "{err}");
    // a copy of the token cannot be delegated by anyone but its holder
    let stolen = sluis_connector::holder::delegate(token(&c), key, OTHER_ID, &other_tls).unwrap();
    let err = query_as(&space, Some(&other), &stolen, &sql)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not made by the token's holder"), "{err}");
}
