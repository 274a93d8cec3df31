//! End-to-end tests of the data plane: a real Parquet file from `sample.rs`, a real TLS Flight
//! server on 127.0.0.1:0 and a real `arrow_flight::FlightClient` over TLS. The only fixture is
//! the access control: a map from token to grant.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, Schema};
use arrow_flight::{FlightClient, FlightDescriptor, Ticket};
use futures::TryStreamExt;
use sluis_connector::dataplane::{
    AccessControl, AccessError, ActiveGrant, AuditId, DataPlaneConfig, DataSource, MASK_HEX_DIGITS,
    MaskKey, SourceKind, TlsIdentity, serve,
};
use sluis_connector::sample::{SampleSummary, generate_meter_readings};
use sluis_policy::enforcement::{
    ColumnAccess, ColumnMask, EnforcementPlan, FilterOperator, MaskKind, RowFilter, Scalar,
};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const ROWS: usize = 100_000;
const TABLE: &str = "meter_readings";

/// The sample file, generated once per test binary.
fn sample() -> &'static (PathBuf, SampleSummary) {
    static SAMPLE: OnceLock<(PathBuf, SampleSummary)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        // kept for the whole test run
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("readings.parquet");
        let summary = generate_meter_readings(&path, ROWS, 42).unwrap();
        (path, summary)
    })
}

/// Access control fixture: tokens map to grants; `refuse_queries` holds transfer ids whose
/// queries `record_query` refuses.
#[derive(Default)]
struct Grants {
    by_token: HashMap<String, ActiveGrant>,
    refuse_queries: HashSet<String>,
    recorded: Mutex<Vec<String>>,
    columns_seen: Mutex<Vec<Vec<String>>>,
}

impl AccessControl for Grants {
    fn authorize(
        &self,
        token: &str,
        _holder: Option<&str>,
        columns: Option<&[String]>,
    ) -> Result<ActiveGrant, AccessError> {
        if let Some(columns) = columns {
            self.columns_seen.lock().unwrap().push(columns.to_vec());
        }
        self.by_token
            .get(token)
            .cloned()
            .ok_or_else(|| AccessError::Unauthenticated("unknown token".into()))
    }

    fn record_query(
        &self,
        grant: &ActiveGrant,
        sql: &str,
        _channel: &str,
    ) -> Result<AuditId, AccessError> {
        if self.refuse_queries.contains(&grant.transfer_id) {
            return Err(AccessError::PermissionDenied(
                "the agreement's query count is used up".into(),
            ));
        }
        self.recorded.lock().unwrap().push(sql.to_string());
        Ok(0)
    }
}

fn grant(transfer: &str, plan: EnforcementPlan) -> ActiveGrant {
    ActiveGrant {
        agreement_id: format!("urn:uuid:agreement-{transfer}"),
        transfer_id: transfer.to_string(),
        dataset_id: "urn:uuid:dataset-meter-readings".into(),
        consumer: "did:web:consumer.example".into(),
        mask_key: MaskKey::derive(
            b"provider secret",
            &format!("urn:uuid:agreement-{transfer}"),
        ),
        purpose: None,
        table_name: TABLE.into(),
        source: DataSource {
            kind: SourceKind::Parquet,
            location: sample().0.clone(),
        },
        plan,
    }
}

/// North only, `customer_name` denied, `meter_id` hashed.
fn north_plan() -> EnforcementPlan {
    EnforcementPlan {
        row_filters: vec![RowFilter {
            column: "region".into(),
            operator: FilterOperator::IsAnyOf,
            values: vec![Scalar::String("north".into())],
        }],
        columns: ColumnAccess::Deny(vec!["customer_name".into()]),
        masks: vec![ColumnMask {
            column: "meter_id".into(),
            kind: MaskKind::Hash,
        }],
        ..Default::default()
    }
}

struct Server {
    cert_pem: String,
    port: u16,
    access: Arc<Grants>,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(grants: Grants) -> Server {
        let cfg = DataPlaneConfig {
            query_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        Server::start_with(grants, cfg).await
    }

    async fn start_with(grants: Grants, cfg: DataPlaneConfig) -> Server {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = key.cert.pem();
        let tls = TlsIdentity {
            cert_pem: cert_pem.clone().into_bytes(),
            key_pem: key.signing_key.serialize_pem().into_bytes(),
            client_ca_pem: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let access = Arc::new(grants);
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(serve(listener, Some(tls), access.clone(), cfg, shutdown));
        Server {
            cert_pem,
            port,
            access,
            _stop: stop,
        }
    }

    /// A client over TLS that sends `token` (None: no authorization header).
    async fn client(&self, token: Option<&str>) -> FlightClient {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.cert_pem))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FlightClient::new(channel);
        if let Some(token) = token {
            client
                .add_header("authorization", &format!("Bearer {token}"))
                .unwrap();
        }
        client
    }
}

async fn fetch(client: &mut FlightClient, sql: &str) -> Result<Vec<RecordBatch>, tonic::Status> {
    let stream = client
        .do_get(Ticket::new(sql.to_string()))
        .await
        .map_err(status)?;
    stream.try_collect().await.map_err(status)
}

/// The batches of `ticket`.
async fn fetch_ticket(
    client: &mut FlightClient,
    ticket: Vec<u8>,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let stream = client.do_get(Ticket::new(ticket)).await.map_err(status)?;
    stream.try_collect().await.map_err(status)
}

/// The batches of the first endpoint of `info`.
async fn fetch_endpoint(
    client: &mut FlightClient,
    info: &arrow_flight::FlightInfo,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    fetch_ticket(client, ticket.ticket.to_vec()).await
}

fn status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn field_names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let array = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            (0..array.len()).map(move |i| array.value(i).to_string())
        })
        .collect()
}

const VISIBLE: [&str; 5] = ["meter_id", "region", "reading_time", "kwh", "tariff"];

async fn north_server() -> Server {
    let mut grants = Grants::default();
    grants
        .by_token
        .insert("tok-north".into(), grant("t-north", north_plan()));
    let mut refused = grant("t-spent", north_plan());
    refused.agreement_id = "urn:uuid:agreement-spent".into();
    grants.by_token.insert("tok-spent".into(), refused);
    grants.refuse_queries.insert("t-spent".into());
    Server::start(grants).await
}

#[tokio::test]
async fn do_get_returns_exactly_the_permitted_rows_and_columns() {
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let batches = fetch(&mut client, "").await.unwrap();
    let north = sample().1.rows_per_region["north"] as usize;
    assert!(north > 0 && north < ROWS);
    assert_eq!(row_count(&batches), north);
    assert_eq!(field_names(&batches[0].schema()), VISIBLE);
    assert!(strings(&batches, "region").iter().all(|r| r == "north"));

    // meter ids arrive as the agreement's keyed hash of the real ids, never in clear
    let key = grant("t-north", north_plan()).mask_key;
    let fleet: HashSet<String> = (0..ROWS / 100)
        .map(|i| key.mask(format!("MTR-{i:07}").as_bytes()))
        .collect();
    let ids = strings(&batches, "meter_id");
    assert!(
        ids.iter()
            .all(|id| id.len() == MASK_HEX_DIGITS && fleet.contains(id))
    );
    assert_eq!(server.access.recorded.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn sql_runs_over_the_enforced_view() {
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let sql = format!("SELECT region, count(*) AS n FROM {TABLE} GROUP BY region");
    let batches = fetch(&mut client, &sql).await.unwrap();
    assert_eq!(row_count(&batches), 1);
    assert_eq!(strings(&batches, "region"), ["north"]);
    let n = batches[0]
        .column_by_name("n")
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(n as u64, sample().1.rows_per_region["north"]);

    // a filter on another region finds nothing: the row filter is beneath the query
    let sql = format!("SELECT count(*) AS n FROM {TABLE} WHERE region = 'south'");
    let batches = fetch(&mut client, &sql).await.unwrap();
    let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(n, 0);
    // the columns each planned query reads were handed to access control
    let seen = server.access.columns_seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![vec!["region".to_string()], vec!["region".to_string()]]
    );
}

#[tokio::test]
async fn denied_column_is_invisible_and_refused_without_being_named() {
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let schema = client
        .get_schema(FlightDescriptor::new_cmd(""))
        .await
        .unwrap();
    assert_eq!(field_names(&schema), VISIBLE);
    let schema = client
        .get_schema(FlightDescriptor::new_path(vec![TABLE.into()]))
        .await
        .unwrap();
    assert_eq!(field_names(&schema), VISIBLE);

    for sql in [
        format!("SELECT customer_name FROM {TABLE}"),
        format!("SELECT \"customer_name\" FROM {TABLE}"),
        format!("SELECT count(*) FROM {TABLE} WHERE customer_name = 'Anna Jansen'"),
        format!("SELECT m.customer_name FROM {TABLE} m"),
        format!("SELECT * FROM {TABLE} ORDER BY customer_name"),
    ] {
        let e = fetch(&mut client, &sql).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{sql}: {e:?}");
        assert!(
            !e.message().contains("customer_name"),
            "{sql}: {}",
            e.message()
        );
        assert!(e.message().contains("visible-columns"), "{}", e.message());
        let e = client
            .get_schema(FlightDescriptor::new_cmd(sql.clone()))
            .await
            .unwrap_err();
        assert!(!status(e).message().contains("customer_name"));
    }
    // an unknown column gets the same answer: no oracle for hidden names
    let e = fetch(&mut client, &format!("SELECT no_such_column FROM {TABLE}"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(server.access.recorded.lock().unwrap().is_empty());
}

#[tokio::test]
async fn every_sandbox_escape_is_refused() {
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let path = sample().0.display().to_string();
    let escapes = [
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{path}'"),
        format!("COPY {TABLE} TO '/tmp/sluis-escape.csv'"),
        format!("COPY (SELECT * FROM {TABLE}) TO '/tmp/sluis-escape.parquet'"),
        format!("INSERT INTO {TABLE} VALUES ('a', 'north', now(), 1.0, 'x')"),
        format!("DROP TABLE {TABLE}"),
        "CREATE TABLE x AS SELECT 1".to_string(),
        format!("SELECT * INTO copy_of FROM {TABLE}"),
        "SET datafusion.execution.batch_size = 1".to_string(),
        format!("EXPLAIN ANALYZE SELECT * FROM {TABLE}"),
        format!("EXPLAIN SELECT * FROM {TABLE}"),
        format!("SELECT 1; SELECT * FROM {TABLE}"),
        "SELECT * FROM information_schema.tables".to_string(),
        "SELECT * FROM information_schema.columns".to_string(),
        format!("SELECT * FROM read_parquet('{path}')"),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        format!("SELECT * FROM '{path}'"),
        "SELECT * FROM generate_series(1, 10)".to_string(),
        "SELECT * FROM range(10)".to_string(),
        "SELECT * FROM other_table".to_string(),
        format!("SELECT * FROM datafusion.other.{TABLE}"),
        format!("SELECT * FROM {TABLE} a JOIN secret b ON a.region = b.region"),
        format!("WITH x AS (SELECT * FROM secret) SELECT * FROM {TABLE}"),
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT * FROM r"
            .to_string(),
    ];
    for sql in &escapes {
        let e = fetch(&mut client, sql).await.unwrap_err();
        assert!(
            matches!(e.code(), Code::PermissionDenied | Code::InvalidArgument),
            "{sql}: {e:?}"
        );
        assert!(!e.message().contains(&path), "{sql}: {}", e.message());
        assert!(
            !e.message().contains("customer_name"),
            "{sql}: {}",
            e.message()
        );
    }
    assert!(!std::path::Path::new("/tmp/sluis-escape.csv").exists());
    assert!(server.access.recorded.lock().unwrap().is_empty());
    // the refusal says which rule refused
    let e = fetch(&mut client, "DROP TABLE meter_readings")
        .await
        .unwrap_err();
    assert!(e.message().contains("select-only"), "{}", e.message());
    let e = fetch(&mut client, "SELECT * FROM other_table")
        .await
        .unwrap_err();
    assert!(e.message().contains("granted-table"), "{}", e.message());
}

#[tokio::test]
async fn tokens_are_required_and_record_query_can_refuse() {
    let server = north_server().await;
    let mut anonymous = server.client(None).await;
    let e = fetch(&mut anonymous, "").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = anonymous
        .get_schema(FlightDescriptor::new_cmd(""))
        .await
        .unwrap_err();
    assert_eq!(status(e).code(), Code::Unauthenticated);

    let mut forged = server.client(Some("tok-forged")).await;
    let e = fetch(&mut forged, "").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    let mut spent = server.client(Some("tok-spent")).await;
    let e = fetch(&mut spent, "").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("query count"), "{}", e.message());
}

#[tokio::test]
async fn flight_info_and_list_flights_describe_the_granted_dataset() {
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let flights: Vec<_> = client
        .list_flights("")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(flights.len(), 1);
    let info = &flights[0];
    assert_eq!(info.flight_descriptor.as_ref().unwrap().path, [TABLE]);
    let schema: Schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(field_names(&schema), VISIBLE);

    let sql = format!("SELECT tariff, sum(kwh) AS total FROM {TABLE} GROUP BY tariff");
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(sql))
        .await
        .unwrap();
    let schema: Schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(field_names(&schema), ["tariff", "total"]);
    let batches = fetch_endpoint(&mut client, &info).await.unwrap();
    assert_eq!(row_count(&batches), 4);

    let e = client
        .get_flight_info(FlightDescriptor::new_path(vec!["elsewhere".into()]))
        .await
        .unwrap_err();
    assert_eq!(status(e).code(), Code::PermissionDenied);
}

#[tokio::test]
async fn aggregate_only_and_row_limits_are_enforced() {
    let mut grants = aggregate_only_grants();
    let limited = EnforcementPlan {
        max_rows_per_query: Some(1234),
        masks: vec![ColumnMask {
            column: "customer_name".into(),
            kind: MaskKind::Redact,
        }],
        ..Default::default()
    };
    grants
        .by_token
        .insert("tok-limit".into(), grant("t-limit", limited));
    let server = Server::start(grants).await;

    let mut client = server.client(Some("tok-agg")).await;
    for sql in [
        format!("SELECT * FROM {TABLE}"),
        format!("SELECT kwh FROM {TABLE} WHERE region = 'north'"),
        format!("SELECT meter_id, row_number() OVER () FROM {TABLE}"),
        format!("SELECT region, array_agg(customer_name) FROM {TABLE} GROUP BY region"),
        format!(
            "SELECT a.region, count(*) FROM {TABLE} a JOIN {TABLE} b ON a.meter_id = b.meter_id GROUP BY a.region"
        ),
        format!(
            "SELECT region, count(*) FROM (SELECT * FROM {TABLE} UNION ALL SELECT * FROM {TABLE}) GROUP BY region"
        ),
    ] {
        let e = fetch(&mut client, &sql).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{sql}: {e:?}");
        assert!(
            e.message().contains("aggregate-only"),
            "{sql}: {}",
            e.message()
        );
    }
    let sql = format!("SELECT region, count(*) AS n FROM {TABLE} GROUP BY region ORDER BY region");
    let batches = fetch(&mut client, &sql).await.unwrap();
    let counts: BTreeMap<String, u64> = strings(&batches, "region")
        .into_iter()
        .zip(
            batches[0]
                .column(1)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|n| *n as u64),
        )
        .collect();
    assert_eq!(counts, sample().1.rows_per_region);

    // per meter the groups have about 100 readings: all fall below the floor and vanish
    let sql = format!("SELECT meter_id, avg(kwh) FROM {TABLE} GROUP BY meter_id");
    assert_eq!(row_count(&fetch(&mut client, &sql).await.unwrap()), 0);
    // a global aggregate over a small selection is suppressed too
    let sql = format!("SELECT count(*) FROM {TABLE} WHERE meter_id = 'MTR-0000001'");
    assert_eq!(row_count(&fetch(&mut client, &sql).await.unwrap()), 0);

    let mut client = server.client(Some("tok-limit")).await;
    let batches = fetch(&mut client, "").await.unwrap();
    assert_eq!(row_count(&batches), 1234);
    let names = batches[0].column_by_name("customer_name").unwrap();
    assert_eq!(names.null_count(), names.len());
}

#[tokio::test]
async fn memory_and_time_limits_stop_queries() {
    let mut grants = Grants::default();
    grants
        .by_token
        .insert("tok".into(), grant("t-limits", EnforcementPlan::default()));
    let small_memory = DataPlaneConfig {
        memory_limit_bytes: 256 * 1024,
        ..Default::default()
    };
    let server = Server::start_with(grants, small_memory).await;
    let mut client = server.client(Some("tok")).await;
    // a full sort must hold every row: far more than 256 KiB, and spilling is disabled
    let e = fetch(
        &mut client,
        &format!("SELECT * FROM {TABLE} ORDER BY kwh, meter_id"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // a streaming scan needs little memory and passes
    let batches = fetch(&mut client, &format!("SELECT kwh FROM {TABLE}"))
        .await
        .unwrap();
    assert_eq!(row_count(&batches), ROWS);

    let mut grants = Grants::default();
    grants
        .by_token
        .insert("tok".into(), grant("t-limits", EnforcementPlan::default()));
    let no_time = DataPlaneConfig {
        query_timeout: Duration::from_millis(1),
        ..Default::default()
    };
    let server = Server::start_with(grants, no_time).await;
    let mut client = server.client(Some("tok")).await;
    let e = fetch(&mut client, "").await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
}

#[tokio::test]
async fn agreement_period_is_checked_at_every_query() {
    let now = chrono::Utc::now();
    let mut grants = Grants::default();
    let ended = EnforcementPlan {
        not_after: Some(now - chrono::Duration::minutes(1)),
        ..Default::default()
    };
    let future = EnforcementPlan {
        not_before: Some(now + chrono::Duration::hours(1)),
        ..Default::default()
    };
    grants
        .by_token
        .insert("tok-ended".into(), grant("t-ended", ended));
    grants
        .by_token
        .insert("tok-future".into(), grant("t-future", future));
    let server = Server::start(grants).await;
    for (token, rule) in [("tok-ended", "not-after"), ("tok-future", "not-before")] {
        let mut client = server.client(Some(token)).await;
        let e = fetch(&mut client, "").await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.message().contains(rule), "{}", e.message());
    }
}

/// Predicates that fail on any hidden row (a division by zero, a failing cast): if the
/// optimizer let them run beneath the row filter, the failure would reveal that hidden rows
/// exist and, by bisection, their values.
#[tokio::test]
async fn failing_predicates_cannot_probe_hidden_rows() {
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let north = sample().1.rows_per_region["north"] as i64;
    for predicate in [
        "10 / (CASE WHEN region = 'north' THEN 1 ELSE 0 END) = 10",
        "CAST(CASE WHEN region = 'north' THEN '1' ELSE region END AS INT) = 1",
        "kwh >= 0 AND 1 / (CASE WHEN region <> 'north' THEN 0 ELSE 1 END) = 1",
    ] {
        let sql = format!("SELECT count(*) FROM {TABLE} WHERE {predicate}");
        let batches = fetch(&mut client, &sql)
            .await
            .unwrap_or_else(|e| panic!("{predicate}: {e}"));
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(n, north, "{predicate}");
    }
}

#[tokio::test]
async fn flight_sql_commands_are_planned_over_the_same_view() {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    use prost::Message;
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let command = |sql: &str| {
        let c = CommandStatementQuery {
            query: sql.into(),
            transaction_id: None,
        };
        FlightDescriptor::new_cmd(c.as_any().encode_to_vec())
    };
    let schema = client
        .get_schema(command(&format!("SELECT * FROM {TABLE}")))
        .await
        .unwrap();
    assert_eq!(field_names(&schema), VISIBLE);
    // a statement naming the hidden column is refused at planning, over Flight SQL too
    let info = client
        .get_flight_info(command(&format!("SELECT customer_name FROM {TABLE}")))
        .await
        .unwrap_err();
    assert_eq!(status(info).code(), Code::PermissionDenied);
    // and an accepted statement's ticket runs under the same row filter
    let info = client
        .get_flight_info(command(&format!("SELECT region FROM {TABLE}")))
        .await
        .unwrap();
    let batches = fetch_endpoint(&mut client, &info).await.unwrap();
    assert_eq!(
        row_count(&batches),
        sample().1.rows_per_region["north"] as usize
    );
    assert!(strings(&batches, "region").iter().all(|r| r == "north"));
}

/// Aggregates that pick one meter's readings out of a region of thousands: under the old
/// group-size floor each returned that meter's exact values.
fn single_meter_picks() -> Vec<String> {
    let one = "meter_id = 'MTR-0000001'";
    vec![
        format!("SELECT max(kwh) FILTER (WHERE {one}) FROM {TABLE}"),
        format!("SELECT region, sum(kwh * CAST({one} AS INT)) FROM {TABLE} GROUP BY region"),
        format!("SELECT max(CASE WHEN {one} THEN kwh END) FROM {TABLE}"),
        format!("SELECT sum(x) FROM (SELECT CASE WHEN {one} THEN kwh END AS x FROM {TABLE})"),
    ]
}

/// The aggregate-only grant of the tests below: groups of at least 500 readings.
fn aggregate_only_grants() -> Grants {
    let mut grants = Grants::default();
    let aggregate = EnforcementPlan {
        aggregate_min_group_size: Some(500),
        ..Default::default()
    };
    grants
        .by_token
        .insert("tok-agg".into(), grant("t-agg", aggregate));
    grants
}

/// The region counts of a `SELECT region, count(*) AS n ... GROUP BY region` result.
fn region_counts(batches: &[RecordBatch]) -> BTreeMap<String, u64> {
    let counts = batches.iter().flat_map(|b| {
        let n = b.column_by_name("n").unwrap().as_primitive::<Int64Type>();
        n.values().iter().map(|n| *n as u64).collect::<Vec<_>>()
    });
    strings(batches, "region").into_iter().zip(counts).collect()
}

/// Issue 17: aggregates that single out rows are refused on every Flight channel: a ticket's
/// SQL, a Flight SQL statement (at GetFlightInfo and at DoGet with a ticket made by hand) and
/// a prepared statement (at creation, at GetFlightInfo and at DoGet); dashboards still work.
#[tokio::test]
async fn aggregate_only_refuses_single_row_picks_on_every_flight_channel() {
    use arrow_flight::Action;
    use arrow_flight::sql::{
        ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
        CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt,
        TicketStatementQuery,
    };
    use prost::Message;
    let server = Server::start(aggregate_only_grants()).await;
    let mut client = server.client(Some("tok-agg")).await;
    let statement = |sql: &str| {
        let c = CommandStatementQuery {
            query: sql.into(),
            transaction_id: None,
        };
        c.as_any().encode_to_vec()
    };
    let prepared = |sql: &str| {
        let c = CommandPreparedStatementQuery {
            prepared_statement_handle: sql.to_string().into(),
        };
        c.as_any().encode_to_vec()
    };
    let ticket_statement = |sql: &str| {
        let t = TicketStatementQuery {
            statement_handle: sql.to_string().into(),
        };
        t.as_any().encode_to_vec()
    };
    let create = |sql: &str| {
        let request = ActionCreatePreparedStatementRequest {
            query: sql.into(),
            transaction_id: None,
        };
        Action::new("CreatePreparedStatement", request.as_any().encode_to_vec())
    };
    let aggregate_only = |sql: &str, channel: &str, e: tonic::Status| {
        assert_eq!(e.code(), Code::PermissionDenied, "{channel} {sql}: {e:?}");
        assert!(
            e.message().contains("aggregate-only") && !e.message().contains("MTR-"),
            "{channel} {sql}: {}",
            e.message()
        );
    };
    for sql in single_meter_picks() {
        let e = fetch(&mut client, &sql).await.unwrap_err();
        aggregate_only(&sql, "DoGet", e);
        for (channel, command) in [("statement", statement(&sql)), ("prepared", prepared(&sql))] {
            let e = client
                .get_flight_info(FlightDescriptor::new_cmd(command.clone()))
                .await
                .unwrap_err();
            aggregate_only(&sql, channel, status(e));
        }
        for (channel, ticket) in [
            ("statement ticket", ticket_statement(&sql)),
            ("prepared ticket", prepared(&sql)),
        ] {
            let e = match client.do_get(Ticket::new(ticket)).await {
                Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
                Err(e) => e,
            };
            aggregate_only(&sql, channel, status(e));
        }
        let e = match client.do_action(create(&sql)).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
            Err(e) => e,
        };
        aggregate_only(&sql, "CreatePreparedStatement", status(e));
    }

    // a dashboard's query, over each channel
    let sql =
        format!("SELECT region, count(*) AS n, avg(kwh), max(kwh) FROM {TABLE} GROUP BY region");
    let expected = &sample().1.rows_per_region;
    assert_eq!(
        &region_counts(&fetch(&mut client, &sql).await.unwrap()),
        expected
    );
    let created: Vec<_> = client
        .do_action(create(&sql))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let created = Any::decode(created[0].clone()).unwrap();
    let handle = created
        .unpack::<ActionCreatePreparedStatementResult>()
        .unwrap()
        .unwrap()
        .prepared_statement_handle;
    assert_eq!(handle, sql.as_bytes());
    for command in [statement(&sql), prepared(&sql)] {
        let info = client
            .get_flight_info(FlightDescriptor::new_cmd(command))
            .await
            .unwrap();
        let batches = fetch_endpoint(&mut client, &info).await.unwrap();
        assert_eq!(&region_counts(&batches), expected);
    }
}

/// `HttpData-PULL` in process over real HTTP (the handler of the protocol listener, without
/// its TLS): `(status, JSON body)` of `GET /data?sql=` (`post`: false) or `POST /data`.
async fn http_pull(
    plane: sluis_connector::dataplane::DataPlane,
    token: &str,
    sql: &str,
    post: bool,
) -> (u16, serde_json::Value) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = sluis_connector::dataplane::http::router::<()>(plane);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // the query string, percent-encoded byte by byte
    let query: String = sql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let (method, uri, body) = if post {
        (
            "POST",
            format!("http://127.0.0.1:{port}/data"),
            sql.to_string(),
        )
    } else {
        (
            "GET",
            format!("http://127.0.0.1:{port}/data?sql={query}"),
            String::new(),
        )
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    server.abort();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Issue 17 over `HttpData-PULL`: the same refusals by GET and POST, and the same answers.
#[tokio::test]
async fn aggregate_only_refuses_single_row_picks_over_http() {
    let access: Arc<Grants> = Arc::new(aggregate_only_grants());
    let plane = sluis_connector::dataplane::DataPlane::new(access, DataPlaneConfig::default());
    for post in [false, true] {
        for sql in single_meter_picks() {
            let (status, body) = http_pull(plane.clone(), "tok-agg", &sql, post).await;
            let error = body["error"].as_str().unwrap_or_default();
            assert_eq!(status, 403, "post {post} {sql}: {body}");
            assert!(
                error.contains("aggregate-only"),
                "post {post} {sql}: {body}"
            );
        }
        let sql = format!("SELECT region, count(*) AS n, sum(kwh) FROM {TABLE} GROUP BY region");
        let (status, body) = http_pull(plane.clone(), "tok-agg", &sql, post).await;
        assert_eq!(status, 200, "{body}");
        let counts: BTreeMap<String, u64> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["region"].as_str().unwrap().into(),
                    row["n"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(&counts, &sample().1.rows_per_region);
    }
}

/// Issue 17, item 8: a consumer holding its slots with open queries, and queueing more,
/// cannot keep another consumer's query waiting; and its queries draw on its share of the
/// memory budget, not on the whole of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_flooding_its_slots_cannot_block_another_consumer() {
    let mut grants = Grants::default();
    grants
        .by_token
        .insert("tok-a".into(), grant("t-a", EnforcementPlan::default()));
    let mut other = grant("t-b", EnforcementPlan::default());
    other.consumer = "did:web:second-consumer.example".into();
    grants.by_token.insert("tok-b".into(), other);
    let cfg = DataPlaneConfig {
        max_concurrent_queries: 2,
        query_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let server = Arc::new(Server::start_with(grants, cfg).await);

    // consumer a: four queries, each kept open after its first batch until the test ends
    let (opened_tx, mut opened) = tokio::sync::mpsc::channel(4);
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let holders: Vec<_> = (0..4)
        .map(|_| {
            let (server, opened_tx, mut done) = (server.clone(), opened_tx.clone(), done.clone());
            tokio::spawn(async move {
                let mut client = server.client(Some("tok-a")).await;
                let sql = format!("SELECT * FROM {TABLE}");
                let mut batches = client.do_get(Ticket::new(sql)).await.unwrap();
                batches.try_next().await.unwrap().unwrap();
                opened_tx.send(()).await.unwrap();
                let _ = done.wait_for(|d| *d).await;
            })
        })
        .collect();
    opened.recv().await.unwrap();
    // time for a's other queries to take every slot they can
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut more = 0;
    while opened.try_recv().is_ok() {
        more += 1;
    }

    let started = std::time::Instant::now();
    let mut client = server.client(Some("tok-b")).await;
    let counted = fetch(&mut client, &format!("SELECT count(*) FROM {TABLE}")).await;
    let took = started.elapsed();
    let counted = counted.unwrap();
    assert_eq!(row_count(&counted), 1);
    assert!(took < Duration::from_secs(5), "b waited {took:?} behind a");
    assert_eq!(more, 0, "a ran more than its half of the slots");
    done_tx.send(true).unwrap();
    for h in holders {
        h.await.unwrap();
    }

    // a consumer's share of the memory budget bounds its queries below their own limit
    let mut grants = Grants::default();
    grants
        .by_token
        .insert("tok".into(), grant("t-share", EnforcementPlan::default()));
    let small_share = DataPlaneConfig {
        memory_per_consumer_bytes: Some(256 * 1024),
        ..Default::default()
    };
    let server = Server::start_with(grants, small_share).await;
    let mut client = server.client(Some("tok")).await;
    let sort = format!("SELECT * FROM {TABLE} ORDER BY kwh, meter_id");
    let e = fetch(&mut client, &sort).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("share"), "{e:?}");
    let batches = fetch(&mut client, &format!("SELECT kwh FROM {TABLE}"))
        .await
        .unwrap();
    assert_eq!(row_count(&batches), ROWS);
}

/// Runs the calling test again in a child process of this test binary, so that an abort of
/// the provider (a stack overflow, a failed allocation) fails this one test and not the whole
/// binary. Returns true in the child, which runs the test's body; in the parent it waits for
/// the child, asserts that the body passed, and returns false.
fn in_child_process(test: &str) -> bool {
    const CHILD: &str = "SLUIS_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |s: &str| {
        s.chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
    };
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the test (or the provider under it) failed in its process: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        tail(&stdout),
        tail(&stderr)
    );
    false
}

/// A Flight SQL `CommandStatementQuery` descriptor for `sql`.
fn statement_command(sql: &str) -> FlightDescriptor {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    use prost::Message;
    let c = CommandStatementQuery {
        query: sql.into(),
        transaction_id: None,
    };
    FlightDescriptor::new_cmd(c.as_any().encode_to_vec())
}

/// The status of `sql` on every channel that plans it: DoGet with the SQL as the ticket,
/// GetSchema, Flight SQL GetFlightInfo with a statement, and Flight SQL
/// CreatePreparedStatement. Each must answer alike; the one answer is returned, or None if the
/// query ran.
async fn refusal_on_every_channel(client: &mut FlightClient, sql: &str) -> Option<(Code, String)> {
    use arrow_flight::sql::{ActionCreatePreparedStatementRequest, ProstMessageExt};
    use prost::Message;
    let answer =
        |r: Result<(), tonic::Status>| r.err().map(|s| (s.code(), s.message().to_string()));
    let mut answers = vec![answer(fetch(client, sql).await.map(|_| ()))];
    answers.push(answer(
        client
            .get_schema(FlightDescriptor::new_cmd(sql.to_string()))
            .await
            .map(|_| ())
            .map_err(status),
    ));
    answers.push(answer(
        client
            .get_flight_info(statement_command(sql))
            .await
            .map(|_| ())
            .map_err(status),
    ));
    let prepare = ActionCreatePreparedStatementRequest {
        query: sql.into(),
        transaction_id: None,
    };
    let action =
        arrow_flight::Action::new("CreatePreparedStatement", prepare.as_any().encode_to_vec());
    let prepared = match client.do_action(action).await {
        Ok(results) => results.try_collect::<Vec<_>>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    answers.push(answer(prepared.map_err(status)));
    for other in &answers[1..] {
        assert_eq!(other, &answers[0], "{sql}: the channels answer alike");
    }
    answers.swap_remove(0)
}

/// Naming a hidden column, or the server's file path, where a name fails (a function, a type,
/// a struct field, a column) gets exactly the answer an unknown name gets, on every channel:
/// no bisection over candidate names. The engine's version is not available either.
#[tokio::test]
async fn a_hidden_or_unknown_name_gets_the_same_answer_in_every_position() {
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let path = sample().0.display().to_string();
    let dir = sample().0.parent().unwrap().display().to_string();
    let positions = [
        "SELECT {}(kwh) FROM meter_readings",
        "SELECT \"{}\"(kwh) FROM meter_readings",
        "SELECT CAST(kwh AS {}) FROM meter_readings",
        "SELECT CAST(kwh AS \"{}\") FROM meter_readings",
        "SELECT named_struct('a', kwh)['{}'] FROM meter_readings",
        "SELECT {} FROM meter_readings",
        "SELECT \"{}\" FROM meter_readings",
        "SELECT m.{} FROM meter_readings m",
        "SELECT count(*) FROM meter_readings GROUP BY {}",
        "SELECT kwh FROM meter_readings ORDER BY \"{}\"",
        "SELECT {}.kwh FROM meter_readings",
    ];
    // each secret and an unknown name of the same length (a syntax error may say where)
    let twin = |secret: &str| format!("{}z", &secret[..secret.len() - 1]);
    for position in positions {
        let with = |name: &str| position.replace("{}", name);
        for secret in [
            "customer_name",
            "Customer_Name",
            path.as_str(),
            dir.as_str(),
        ] {
            let unknown = refusal_on_every_channel(&mut client, &with(&twin(secret)))
                .await
                .unwrap_or_else(|| panic!("{position} is refused"));
            let answer = refusal_on_every_channel(&mut client, &with(secret)).await;
            assert_eq!(answer.as_ref(), Some(&unknown), "{}", with(secret));
            assert!(
                !unknown.1.contains("customer") && !unknown.1.contains("ustomer_nam"),
                "{}",
                unknown.1
            );
            assert_ne!(unknown.0, Code::Internal, "{position}");
        }
    }
    // the engine and its version are not available: answered as an unknown function
    let unknown = refusal_on_every_channel(&mut client, "SELECT zz_unknown()").await;
    for leak in [
        "SELECT version()",
        "SELECT input_file_name() FROM meter_readings",
    ] {
        assert_eq!(
            refusal_on_every_channel(&mut client, leak).await,
            unknown,
            "{leak}"
        );
    }
    let (_, message) = unknown.unwrap();
    for hint in ["Did you mean", "DataFusion", "Error during planning"] {
        assert!(!message.contains(hint), "{message}");
    }
}

/// A ticket, command or action body that claims to be Flight SQL but does not decode is
/// `INVALID_ARGUMENT` with a fixed text, never `INTERNAL` or the decoder's own message.
#[tokio::test]
async fn malformed_flight_sql_messages_are_invalid_arguments() {
    use arrow_flight::sql::{Any, TicketStatementQuery};
    use prost::Message;
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let prefix = "type.googleapis.com/arrow.flight.protocol.sql.";
    let garbled = |type_url: &str| {
        Any {
            type_url: type_url.into(),
            value: vec![0xff, 0xff, 0xff].into(),
        }
        .encode_to_vec()
    };
    let ticket_url = format!("{prefix}TicketStatementQuery");
    assert_eq!(
        ticket_url,
        <TicketStatementQuery as arrow_flight::sql::ProstMessageExt>::type_url()
    );
    let mut answers = Vec::new();
    for bytes in [
        garbled(&ticket_url),
        garbled(&format!("{prefix}CommandPreparedStatementQuery")),
        garbled(&format!("{prefix}CommandNoSuchThing")),
    ] {
        let e = fetch_ticket(&mut client, bytes.clone()).await.unwrap_err();
        answers.push(e.clone());
        let e = client
            .get_flight_info(FlightDescriptor::new_cmd(bytes))
            .await
            .unwrap_err();
        answers.push(status(e));
    }
    let action = arrow_flight::Action::new(
        "CreatePreparedStatement",
        garbled(&format!("{prefix}ActionCreatePreparedStatementRequest")),
    );
    answers.push(status(client.do_action(action).await.err().unwrap()));
    for e in &answers {
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        for internal in ["Decode", "decode", "ParseError", "NoSuchThing", "buffer"] {
            assert!(!e.message().contains(internal), "{}", e.message());
        }
        assert_eq!(e.message(), answers[0].message());
    }
}

/// A consumer's alias or name that is also a name used inside the data plane (the group
/// size column of aggregate-only, the enforced view's names) is answered as any other query,
/// never with an internal error.
#[tokio::test]
async fn aliases_that_collide_with_internal_names_are_no_internal_errors() {
    let mut grants = Grants::default();
    let aggregate = EnforcementPlan {
        aggregate_min_group_size: Some(10),
        ..Default::default()
    };
    grants
        .by_token
        .insert("tok-agg".into(), grant("t-agg", aggregate));
    grants
        .by_token
        .insert("tok-north".into(), grant("t-north", north_plan()));
    let server = Server::start(grants).await;
    for token in ["tok-agg", "tok-north"] {
        let mut client = server.client(Some(token)).await;
        for alias in [
            "__sluis_group_size",
            "meter_readings",
            "customer_name",
            "region",
            "count(*)",
            "count(Int64(1))",
        ] {
            for sql in [
                format!("SELECT region, count(*) AS \"{alias}\" FROM {TABLE} GROUP BY region"),
                format!("SELECT region AS \"{alias}\", count(*) FROM {TABLE} GROUP BY region"),
                format!(
                    "SELECT \"{alias}\", count(*) FROM (SELECT region AS \"{alias}\" FROM {TABLE}) GROUP BY \"{alias}\""
                ),
                format!(
                    "SELECT count(*) AS \"{alias}\", sum(kwh) AS \"{alias}2\" FROM {TABLE} AS \"{alias}\""
                ),
            ] {
                if let Err(e) = fetch(&mut client, &sql).await {
                    assert!(
                        matches!(e.code(), Code::InvalidArgument | Code::PermissionDenied),
                        "{token}: {sql}: {e:?}"
                    );
                }
            }
        }
    }
}

/// Long chains of operators (a sum of 1,400 terms, AND, OR, `||`, casts), many UNION
/// members, joins and CTE uses: each is refused with `query-size` before it can exhaust a
/// stack, and the provider still answers afterwards. Runs in a child process: on a
/// regression the provider would abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_queries_are_refused_and_the_provider_lives_on() {
    if !in_child_process("deep_and_long_queries_are_refused_and_the_provider_lives_on") {
        return;
    }
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    let terms = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    let cte_chain = {
        let mut sql = format!("WITH c0 AS (SELECT kwh FROM {TABLE})");
        // 51 SELECT blocks, within the syntax limit; planned, each use copies the CTE: 2^25
        for i in 1..26 {
            sql.push_str(&format!(
                ", c{i} AS (SELECT * FROM c{} UNION ALL SELECT * FROM c{})",
                i - 1,
                i - 1
            ));
        }
        sql + " SELECT count(*) FROM c25"
    };
    let hostile = [
        format!("SELECT {} FROM {TABLE}", terms(1400, "kwh", " + ")),
        format!("SELECT {} FROM {TABLE}", terms(20_000, "1", "+")),
        format!(
            "SELECT count(*) FROM {TABLE} WHERE {}",
            terms(5000, "kwh > 0", " AND ")
        ),
        format!(
            "SELECT count(*) FROM {TABLE} WHERE {}",
            terms(5000, "kwh > 0", " OR ")
        ),
        format!("SELECT {} FROM {TABLE}", terms(5000, "region", " || ")),
        format!("SELECT kwh{} FROM {TABLE}", "::DOUBLE".repeat(5000)),
        terms(1500, &format!("SELECT kwh FROM {TABLE}"), " UNION ALL "),
        format!("SELECT count(*) FROM {}", terms(1000, TABLE, ", ")),
        format!(
            "SELECT count(*) FROM {TABLE} a {}",
            terms(500, &format!("JOIN {TABLE} USING (region)"), " ")
        ),
        cte_chain,
    ];
    for sql in &hostile {
        eprintln!("{}...", &sql[..80]);
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            refusal_on_every_channel(&mut client, sql),
        );
        let (code, message) = answer
            .await
            .unwrap_or_else(|_| panic!("{}... took more than 30 s", &sql[..80]))
            .unwrap_or_else(|| panic!("{}... ran", &sql[..80]));
        assert_eq!(code, Code::PermissionDenied, "{}: {message}", &sql[..80]);
        assert!(message.contains("query-size"), "{}: {message}", &sql[..80]);
    }
    // within the limits: still planned and run
    let sum = format!(
        "SELECT {} AS s FROM {TABLE} LIMIT 1",
        terms(100, "kwh", " + ")
    );
    assert_eq!(row_count(&fetch(&mut client, &sum).await.unwrap()), 1);
    let or = format!(
        "SELECT count(*) FROM {TABLE} WHERE {}",
        terms(100, "kwh > 0", " OR ")
    );
    assert_eq!(row_count(&fetch(&mut client, &or).await.unwrap()), 1);
}

/// Functions whose results grow (`repeat`, `lpad`, `array_repeat`, `range`, ...) are refused
/// with `RESOURCE_EXHAUSTED` beyond their bounds instead of asking the allocator for
/// gigabytes, and work within them. Runs in a child process: on a regression the provider
/// would abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_functions_cannot_exhaust_the_providers_memory() {
    if !in_child_process("growing_functions_cannot_exhaust_the_providers_memory") {
        return;
    }
    let server = north_server().await;
    let mut client = server.client(Some("tok-north")).await;
    for call in [
        "repeat(region, 1000000000)",
        "repeat('ab', 2000000000)",
        "lpad(region, 2000000000, 'x')",
        "rpad('a', 2000000000)",
        "array_repeat(kwh, 2000000000)",
        "range(0, 4000000000)",
        "generate_series(1, 4000000000)",
        "cardinality(range(0, 4000000000))",
        "[repeat(region, 100000000), repeat(region, 100000000)]",
        "replace(repeat(region, 100000), 'n', repeat('x', 100000))",
        "concat(repeat(tariff, 200000), repeat(tariff, 200000))",
        "encode(encode(encode(encode(encode(encode(encode(encode(repeat(region, 50000), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex')",
        "levenshtein(repeat(region, 200000), repeat(tariff, 200000))",
        "generate_series(TIMESTAMP '1970-01-01', TIMESTAMP '2100-01-01', INTERVAL '1 nanosecond')",
        "repeat(region, 150000) || repeat(tariff, 150000)",
    ] {
        let sql = format!("SELECT {call} FROM {TABLE} LIMIT 5");
        let e = fetch(&mut client, &sql).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{call}: {e:?}");
    }
    let sql = format!(
        "SELECT repeat(region, 3) AS r, lpad(region, 8, '*') AS p, range(0, 3) AS n FROM {TABLE} LIMIT 1"
    );
    let batches = fetch(&mut client, &sql).await.unwrap();
    assert_eq!(strings(&batches, "r"), ["northnorthnorth"]);
    assert_eq!(strings(&batches, "p"), ["***north"]);
    // `||` is bounded like `concat`, yet keeps its own NULL rule: each step of this chain
    // doubles the value (to 4 GiB unbounded)
    let doubling = (1..=12)
        .map(|i| format!(", s{i} AS (SELECT v || v AS v FROM s{})", i - 1))
        .collect::<String>();
    let sql = format!(
        "WITH s0 AS (SELECT repeat(region, 200000) AS v FROM {TABLE} LIMIT 1){doubling} \
         SELECT length(v) FROM s12"
    );
    let e = fetch(&mut client, &sql).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let sql = format!(
        "SELECT region || '-' || tariff AS rt, region || CAST(NULL AS VARCHAR) AS n \
         FROM {TABLE} WHERE tariff = 'green' LIMIT 1"
    );
    let batches = fetch(&mut client, &sql).await.unwrap();
    assert_eq!(strings(&batches, "rt"), ["north-green"]);
    let nulls = batches[0].column_by_name("n").unwrap();
    assert!(nulls.is_null(0), "a NULL side makes `||` NULL");
    // more than the allowed number of growing calls in one query
    let many: Vec<String> = (0..40)
        .map(|i| format!("repeat(region, 2) AS r{i}"))
        .collect();
    let many = many.join(", ");
    let e = fetch(&mut client, &format!("SELECT {many} FROM {TABLE}"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("query-size"), "{}", e.message());
}

/// The deadline stops a query that burns CPU (joins that multiply rows, a sort of their
/// product, expensive functions), and its work stops with it: a light query answers at once
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_the_work_of_cpu_bound_queries() {
    let mut grants = Grants::default();
    grants.by_token.insert(
        "tok".into(),
        grant("t-deadline", EnforcementPlan::default()),
    );
    let cfg = DataPlaneConfig {
        query_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let server = Server::start_with(grants, cfg).await;
    let mut client = server.client(Some("tok")).await;
    for sql in [
        format!("SELECT count(*) FROM {TABLE} a, {TABLE} b"),
        format!("SELECT count(*) FROM {TABLE} a JOIN {TABLE} b ON a.region = b.region"),
        format!("SELECT count(*) FROM {TABLE} a JOIN {TABLE} b ON a.kwh < b.kwh"),
        format!("SELECT max(levenshtein(a.meter_id, b.customer_name)) FROM {TABLE} a, {TABLE} b"),
        format!("SELECT a.meter_id, b.meter_id FROM {TABLE} a, {TABLE} b ORDER BY 1, 2 LIMIT 1"),
        format!(
            "SELECT count(*) FROM {TABLE} WHERE regexp_like(repeat(meter_id, 20000), '^(a|aa)*b$')"
        ),
        format!("SELECT sum(length(upper(repeat(customer_name, 5000)))) FROM {TABLE}"),
    ] {
        let started = std::time::Instant::now();
        let e = fetch(&mut client, &sql).await.unwrap_err();
        let took = started.elapsed();
        eprintln!("{took:?}: {sql}");
        assert!(
            matches!(e.code(), Code::DeadlineExceeded | Code::ResourceExhausted),
            "{sql}: {e:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{sql}: answered after {took:?}"
        );
        let started = std::time::Instant::now();
        let light = format!("SELECT count(*) FROM {TABLE} WHERE region = 'north'");
        fetch(&mut client, &light).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "{sql}: a light query after it took {took:?}"
        );
    }
}

/// Issue 17, item 2, over HttpData-PULL (GET and POST): a hidden column or the source path
/// named as a function, type, field or column is answered exactly like an unknown name, and
/// the engine's version like an unknown function; never a 5xx.
#[tokio::test]
async fn a_hidden_or_unknown_name_gets_the_same_answer_over_http() {
    let mut grants = Grants::default();
    grants
        .by_token
        .insert("tok-north".into(), grant("t-north", north_plan()));
    let plane =
        sluis_connector::dataplane::DataPlane::new(Arc::new(grants), DataPlaneConfig::default());
    let path = sample().0.display().to_string();
    let twin = |secret: &str| format!("{}z", &secret[..secret.len() - 1]);
    for post in [false, true] {
        let answer = |sql: String| {
            let plane = plane.clone();
            async move { http_pull(plane, "tok-north", &sql, post).await }
        };
        for position in [
            "SELECT {}(kwh) FROM meter_readings",
            "SELECT CAST(kwh AS \"{}\") FROM meter_readings",
            "SELECT named_struct('a', kwh)['{}'] FROM meter_readings",
            "SELECT \"{}\" FROM meter_readings",
        ] {
            for secret in ["customer_name", path.as_str()] {
                let unknown = answer(position.replace("{}", &twin(secret))).await;
                let hidden = answer(position.replace("{}", secret)).await;
                assert_eq!(hidden, unknown, "post {post}: {position} with {secret}");
                assert!((400..500).contains(&unknown.0), "{unknown:?}");
                assert!(
                    !unknown.1.to_string().contains("ustomer_nam"),
                    "{unknown:?}"
                );
            }
        }
        let unknown = answer("SELECT zz_unknown()".into()).await;
        assert_eq!(
            answer("SELECT version()".into()).await,
            unknown,
            "post {post}"
        );
        assert!((400..500).contains(&unknown.0), "{unknown:?}");
    }
}
