//! One consumer query: from SQL text to a planned, enforced query, and to a result stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use sluis_policy::enforcement::EnforcementPlan;

use super::barrier::{EnforcedTable, ViewKey};
use super::error::Redactor;
use super::{ActiveGrant, DataPlaneConfig, QueryError, enforce, sandbox, source};
use datafusion::object_store::ObjectMeta;

/// A query that passed every check and is planned over the enforced view; not yet running.
#[derive(Debug)]
pub struct PreparedQuery {
    state: SessionState,
    plan: LogicalPlan,
    redactor: Redactor,
    /// The schema of the result, as the consumer will receive it.
    pub schema: SchemaRef,
    /// The visible dataset columns the query reads (for [`super::AccessControl::authorize`]).
    pub columns: Vec<String>,
}

/// The SQL an empty ticket or a path descriptor stands for: the whole granted table.
pub fn select_all(table_name: &str) -> String {
    format!("SELECT * FROM \"{}\"", table_name.replace('"', "\"\""))
}

/// Checks and plans `sql` for `grant`: the period, the sandbox, the granted table, the
/// enforcement view beneath the query and the query-shape rules on top of it.
pub async fn prepare(
    grant: &ActiveGrant,
    sql: &str,
    cfg: &DataPlaneConfig,
) -> Result<PreparedQuery, QueryError> {
    check_period(&grant.plan, Utc::now())?;
    check_purpose(&grant.plan, grant.purpose.as_deref())?;
    let statement = sandbox::parse(sql, cfg.max_sql_bytes)?;
    let state = sandbox::session_state(cfg).map_err(unavailable)?;
    let source = source::open(&state, &grant.source)
        .await
        .map_err(unavailable)?;
    let key = view_key(grant, &source.files, cfg);
    let mut secrets = enforce::hidden_columns(&source.table.schema(), &grant.plan);
    secrets.push(grant.source.location.display().to_string());
    let redactor = Redactor::new(secrets);
    let view = enforce::view_plan(&grant.table_name, source.table, &grant.plan, grant.mask_key)
        .map_err(unavailable)?;
    let view_schema = view.schema().as_arrow().clone();

    let ctx = SessionContext::new_with_state(state);
    ctx.register_table(
        TableReference::bare(grant.table_name.as_str()),
        Arc::new(EnforcedTable::new(view, Some(key))),
    )
    .map_err(unavailable)?;
    let state = ctx.state();
    sandbox::check_tables(&state, &statement, &grant.table_name)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| redactor.planning(e))?;
    sandbox::verify(&plan)?;
    let plan = enforce::apply_query_rules(plan, &grant.plan)?;
    Ok(PreparedQuery {
        columns: enforce::columns_read(&plan, &view_schema),
        schema: Arc::new(plan.schema().as_arrow().clone()),
        state,
        plan,
        redactor,
    })
}

/// What the enforced view of `grant` over `files` is made from (see [`ViewKey`]).
fn view_key(grant: &ActiveGrant, files: &[ObjectMeta], cfg: &DataPlaneConfig) -> ViewKey {
    ViewKey {
        view: format!(
            "{:?}\0{:?}\0{:?}",
            grant.table_name, grant.source, grant.plan
        ),
        mask_key: grant.mask_key,
        files: files
            .iter()
            .map(|f| {
                let modified = f.last_modified.timestamp_nanos_opt().unwrap_or(i64::MIN);
                (f.location.to_string(), f.size, modified, f.e_tag.clone())
            })
            .collect(),
        session: (cfg.batch_size, cfg.target_partitions),
    }
}

impl PreparedQuery {
    /// Starts the query: optimises it (pushing filters and projections into the scan) and
    /// returns its batches as they are produced, until `deadline`.
    pub async fn execute(self, deadline: Instant) -> Result<ResultStream, QueryError> {
        let physical = self
            .state
            .create_physical_plan(&self.plan)
            .await
            .map_err(|e| self.redactor.planning(e))?;
        let inner = execute_stream(physical, self.state.task_ctx())
            .map_err(|e| self.redactor.execution(e))?;
        Ok(ResultStream {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            redactor: self.redactor,
            finished: false,
        })
    }
}

/// The batches of a running query. Ends with [`QueryError::Timeout`] at the deadline; errors
/// are mapped so that they reveal nothing of the data.
pub struct ResultStream {
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<Sleep>>,
    redactor: Redactor,
    finished: bool,
}

impl ResultStream {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Stream for ResultStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.finished = true;
            return Poll::Ready(Some(Err(QueryError::Timeout)));
        }
        let item = match self.inner.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        Poll::Ready(match item {
            Some(Ok(batch)) => Some(Ok(batch)),
            Some(Err(e)) => {
                self.finished = true;
                Some(Err(self.redactor.execution(e)))
            }
            None => {
                self.finished = true;
                None
            }
        })
    }
}

/// `not_before` / `not_after`, checked against the time of each query.
fn check_period(plan: &EnforcementPlan, now: DateTime<Utc>) -> Result<(), QueryError> {
    if let Some(start) = plan.not_before
        && now < start
    {
        return Err(QueryError::refused(
            "not-before",
            format!(
                "the agreement's constraint odrl:dateTime (or elapsedTime) allows queries from {}",
                start.to_rfc3339()
            ),
        ));
    }
    if let Some(end) = plan.not_after
        && now > end
    {
        return Err(QueryError::refused(
            "not-after",
            format!(
                "the agreement's constraint odrl:dateTime (or elapsedTime) allowed queries until {}",
                end.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

/// `purposes`: the purpose the call declared must be one the agreement names.
fn check_purpose(plan: &EnforcementPlan, declared: Option<&str>) -> Result<(), QueryError> {
    let Some(allowed) = &plan.purposes else {
        return Ok(());
    };
    if declared.is_some_and(|d| allowed.iter().any(|a| a == d)) {
        return Ok(());
    }
    let said = declared.map_or_else(|| "no purpose".to_string(), |d| format!("purpose `{d}`"));
    Err(QueryError::refused(
        "purpose",
        format!(
            "the agreement's constraint odrl:purpose allows queries only for {}; this call declared {said}: send one of them in the `{}` header",
            allowed.join(", "),
            super::PURPOSE_HEADER
        ),
    ))
}

/// The source or the enforcement plan is broken: the provider must fix it, the consumer
/// learns nothing about it.
fn unavailable(e: impl std::fmt::Display) -> QueryError {
    tracing::error!(error = %e, "dataset cannot be served");
    QueryError::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn period_is_checked_at_query_time() {
        let now = Utc::now();
        let mut plan = EnforcementPlan::default();
        assert!(check_period(&plan, now).is_ok());
        plan.not_before = Some(now + Duration::hours(1));
        let e = check_period(&plan, now).unwrap_err();
        assert!(matches!(
            e,
            QueryError::Refused {
                rule: "not-before",
                ..
            }
        ));
        plan.not_before = Some(now - Duration::hours(2));
        plan.not_after = Some(now - Duration::hours(1));
        let e = check_period(&plan, now).unwrap_err();
        assert!(matches!(
            e,
            QueryError::Refused {
                rule: "not-after",
                ..
            }
        ));
        plan.not_after = Some(now + Duration::hours(1));
        assert!(check_period(&plan, now).is_ok());
    }

    #[test]
    fn purpose_is_checked_and_the_refusal_names_the_constraint() {
        let mut plan = EnforcementPlan::default();
        assert!(check_purpose(&plan, None).is_ok());
        plan.purposes = Some(vec!["dpv:ResearchAndDevelopment".into()]);
        assert!(check_purpose(&plan, Some("dpv:ResearchAndDevelopment")).is_ok());
        for declared in [
            None,
            Some("dpv:Marketing"),
            Some("dpv:researchanddevelopment"),
        ] {
            let e = check_purpose(&plan, declared).unwrap_err();
            assert!(matches!(
                e,
                QueryError::Refused {
                    rule: "purpose",
                    ..
                }
            ));
            assert!(e.to_string().contains("odrl:purpose"), "{e}");
        }
    }

    use crate::dataplane::{DataSource, MaskKey, SourceKind};
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;
    use sluis_policy::enforcement::{ColumnAccess, FilterOperator, RowFilter, Scalar};
    use std::path::Path;

    /// Rows `(city, people)` of a small table, in three formats.
    fn cities() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("city", DataType::Utf8, false),
            Field::new("people", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["Gent", "Delft", "Brugge"])),
                Arc::new(Int64Array::from(vec![265, 105, 119])),
            ],
        )
        .unwrap()
    }

    /// The Parquet file at `path` as table `readings`, north rows only.
    fn north_readings(path: std::path::PathBuf, dir: &Path) -> ActiveGrant {
        ActiveGrant {
            table_name: "readings".into(),
            source: DataSource {
                kind: SourceKind::Parquet,
                location: path,
            },
            plan: EnforcementPlan {
                row_filters: vec![RowFilter {
                    column: "region".into(),
                    operator: FilterOperator::Eq,
                    values: vec![Scalar::String("north".into())],
                }],
                ..Default::default()
            },
            ..city_grant(SourceKind::Parquet, dir)
        }
    }

    fn city_grant(kind: SourceKind, location: &Path) -> ActiveGrant {
        ActiveGrant {
            agreement_id: "a".into(),
            transfer_id: "t".into(),
            dataset_id: "d".into(),
            consumer: "c".into(),
            mask_key: Default::default(),
            purpose: None,
            table_name: "cities".into(),
            source: DataSource {
                kind,
                location: location.to_path_buf(),
            },
            plan: EnforcementPlan {
                row_filters: vec![RowFilter {
                    column: "people".into(),
                    operator: FilterOperator::Gt,
                    values: vec![Scalar::Int(110)],
                }],
                columns: ColumnAccess::Allow(vec!["city".into()]),
                ..Default::default()
            },
        }
    }

    /// The batches of `sql` over `grant`'s view.
    async fn run(grant: &ActiveGrant, sql: &str) -> Vec<RecordBatch> {
        let cfg = DataPlaneConfig::default();
        let prepared = prepare(grant, sql, &cfg).await.unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let stream = prepared.execute(deadline).await.unwrap();
        stream.try_collect().await.unwrap()
    }

    /// The single integer a `count(*)` query returns.
    fn count(batches: &[RecordBatch]) -> u64 {
        let n = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
        n.unwrap().value(0) as u64
    }

    async fn visible_cities(grant: &ActiveGrant) -> Vec<String> {
        let batches = run(grant, "SELECT * FROM cities ORDER BY city").await;
        assert!(batches.iter().all(|b| b.num_columns() == 1));
        batches
            .iter()
            .flat_map(|b| {
                let a = arrow::array::as_string_array(b.column(0)).clone();
                (0..a.len()).map(move |i| a.value(i).to_string())
            })
            .collect()
    }

    #[tokio::test]
    async fn every_source_kind_serves_the_enforced_view() {
        let dir = tempfile::tempdir().unwrap();
        let batch = cities();

        // a directory of CSV files: only `.csv` files belong to the table
        let csv_dir = dir.path().join("csv");
        std::fs::create_dir(&csv_dir).unwrap();
        for (i, rows) in [(0, 0..2), (1, 2..3)] {
            let file = std::fs::File::create(csv_dir.join(format!("part-{i}.csv"))).unwrap();
            let mut writer = arrow::csv::Writer::new(file);
            writer.write(&batch.slice(rows.start, rows.len())).unwrap();
        }
        std::fs::write(csv_dir.join("notes.txt"), "city,people\nAntwerpen,530\n").unwrap();
        let grant = city_grant(SourceKind::Csv, &csv_dir);
        assert_eq!(visible_cities(&grant).await, ["Brugge", "Gent"]);

        let json = dir.path().join("cities.json");
        let mut writer =
            arrow::json::LineDelimitedWriter::new(std::fs::File::create(&json).unwrap());
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        assert_eq!(
            visible_cities(&city_grant(SourceKind::Json, &json)).await,
            ["Brugge", "Gent"]
        );

        let ipc = dir.path().join("cities.arrow");
        let file = std::fs::File::create(&ipc).unwrap();
        let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let grant = city_grant(SourceKind::ArrowIpc, &ipc);
        assert_eq!(visible_cities(&grant).await, ["Brugge", "Gent"]);
    }

    #[tokio::test]
    async fn a_plan_that_does_not_match_the_source_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let ipc = dir.path().join("cities.arrow");
        let batch = cities();
        let file = std::fs::File::create(&ipc).unwrap();
        let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let cfg = DataPlaneConfig::default();
        // a misspelt deny must not expose the column it meant to hide
        let mut grant = city_grant(SourceKind::ArrowIpc, &ipc);
        grant.plan.columns = ColumnAccess::Deny(vec!["People".into()]);
        let e = prepare(&grant, "SELECT * FROM cities", &cfg)
            .await
            .unwrap_err();
        assert_eq!(e, QueryError::Unavailable);
        // a missing source says nothing about where it was looked for
        let grant = city_grant(SourceKind::Parquet, &dir.path().join("gone.parquet"));
        let e = prepare(&grant, "SELECT * FROM cities", &cfg)
            .await
            .unwrap_err();
        assert_eq!(e, QueryError::Unavailable);
        assert!(!e.to_string().contains("gone"));
    }

    #[tokio::test]
    async fn row_filters_and_projections_reach_the_parquet_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        crate::sample::generate_meter_readings(&path, 10_000, 3).unwrap();
        let mut grant = north_readings(path, dir.path());
        grant.plan.columns = ColumnAccess::Deny(vec!["customer_name".into()]);
        let cfg = DataPlaneConfig::default();
        let prepared = prepare(&grant, "SELECT avg(kwh) FROM readings", &cfg)
            .await
            .unwrap();
        let physical = prepared
            .state
            .create_physical_plan(&prepared.plan)
            .await
            .unwrap();
        let shown = datafusion::physical_plan::displayable(physical.as_ref())
            .indent(true)
            .to_string();
        let scan = shown
            .lines()
            .find(|l| l.contains("DataSourceExec"))
            .unwrap();
        // only the columns needed are read, and the row filter prunes inside the scan
        assert!(scan.contains("projection=[region, kwh]"), "{shown}");
        assert!(scan.contains("predicate=region@"), "{shown}");
        assert!(!shown.contains("customer_name"), "{shown}");
    }

    /// A predicate that fails on any row outside the north region: if the optimizer let it
    /// run below (or merged with) the row filter, the query would fail on hidden rows, and
    /// the failure would tell the consumer that such rows exist.
    const ERRORS_ON_HIDDEN_ROWS: &str = "SELECT count(*) AS n FROM readings \
        WHERE 10 / (CASE WHEN region = 'north' THEN 1 ELSE 0 END) = 10 AND kwh >= 0";

    #[tokio::test]
    async fn consumer_predicates_never_see_hidden_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let summary = crate::sample::generate_meter_readings(&path, 20_000, 7).unwrap();
        let grant = north_readings(path, dir.path());
        let cfg = DataPlaneConfig::default();
        let prepared = prepare(&grant, ERRORS_ON_HIDDEN_ROWS, &cfg).await.unwrap();
        let physical = prepared
            .state
            .create_physical_plan(&prepared.plan)
            .await
            .unwrap();
        let shown = datafusion::physical_plan::displayable(physical.as_ref())
            .indent(true)
            .to_string();
        // the consumer's predicate is evaluated above the barrier, never in the scan
        let barrier = shown.find("PolicyBarrierExec").expect("a barrier");
        let consumer = shown.find("CASE WHEN").expect("the consumer's filter");
        assert!(consumer < barrier, "{shown}");
        assert_eq!(shown.matches("CASE WHEN").count(), 1, "{shown}");

        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let batches: Vec<RecordBatch> = prepared
            .execute(deadline)
            .await
            .unwrap()
            .try_collect()
            .await
            .expect("the predicate only ever sees north rows");
        let n = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n as u64, summary.rows_per_region["north"]);
    }

    /// Footers and statistics are cached across queries; a rewritten file must not be
    /// served from them.
    #[tokio::test]
    async fn a_rewritten_source_is_read_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        for (rows, seed) in [(20_000, 1), (5_000, 2), (20_000, 3)] {
            let summary = crate::sample::generate_meter_readings(&path, rows, seed).unwrap();
            let grant = north_readings(path.clone(), dir.path());
            let n = count(&run(&grant, "SELECT count(*) FROM readings").await);
            assert_eq!(n, summary.rows_per_region["north"]);
        }
    }

    fn first_string(batches: &[RecordBatch]) -> String {
        let column = batches[0].column(0).as_any().downcast_ref::<StringArray>();
        column.unwrap().value(0).to_string()
    }

    /// View plans are kept between queries: a grant that differs in anything the view is
    /// made from must never be served another grant's view.
    #[tokio::test]
    async fn kept_view_plans_are_never_shared_between_different_views() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let summary = crate::sample::generate_meter_readings(&path, 20_000, 11).unwrap();
        let north = north_readings(path.clone(), dir.path());
        let mut south = north.clone();
        south.plan.row_filters[0].values = vec![Scalar::String("south".into())];
        for _ in 0..2 {
            for (grant, region) in [(&north, "north"), (&south, "south")] {
                let n = count(&run(grant, "SELECT count(*) FROM readings").await);
                assert_eq!(n, summary.rows_per_region[region]);
            }
        }
        let mut hashed = north.clone();
        hashed.plan.masks = vec![sluis_policy::enforcement::ColumnMask {
            column: "meter_id".into(),
            kind: sluis_policy::enforcement::MaskKind::Hash,
        }];
        let mut rekeyed = hashed.clone();
        rekeyed.mask_key = MaskKey::derive(b"another secret", "a");
        let first = "SELECT meter_id FROM readings ORDER BY reading_time, meter_id LIMIT 1";
        let plain = first_string(&run(&north, first).await);
        let masked = first_string(&run(&hashed, first).await);
        let remasked = first_string(&run(&rekeyed, first).await);
        assert!(plain.starts_with("MTR-"), "{plain}");
        assert!(
            !masked.starts_with("MTR-") && masked != remasked,
            "{masked} {remasked}"
        );
        assert_eq!(first_string(&run(&hashed, first).await), masked);
    }

    #[test]
    fn select_all_quotes_the_table_name() {
        assert_eq!(select_all("a\"b"), "SELECT * FROM \"a\"\"b\"");
    }
}
