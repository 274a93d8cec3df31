//! One consumer query: from SQL text to a planned, enforced query, and to a result stream.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, PlanProperties};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use sluis_policy::enforcement::EnforcementPlan;

use super::barrier::EnforcedTable;
use super::error::{execution_error, planning_error};
use super::kept::{Kept, PlanKey};
use super::{ActiveGrant, DataPlaneConfig, QueryError, enforce, functions, sandbox, source};
use datafusion::object_store::ObjectMeta;

/// A query that passed every check and is planned over the enforced view; not yet running.
#[derive(Debug)]
pub struct PreparedQuery {
    /// A copy of the planned statement's physical plan, with its own execution state.
    physical: Arc<dyn ExecutionPlan>,
    /// This query's session: its memory pool and settings.
    task: Arc<TaskContext>,
    /// The schema of the result, as the consumer will receive it.
    pub schema: SchemaRef,
    /// The visible dataset columns the query reads (for [`super::AccessControl::authorize`]).
    pub columns: Vec<String>,
}

/// A statement planned over an enforced view, kept for the next query with the same SQL.
#[derive(Debug)]
struct Planned {
    physical: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    columns: Vec<String>,
}

/// Statements planned for earlier queries, by view key and SQL text.
fn planned_statements() -> &'static Kept<Arc<Planned>> {
    static PLANNED: LazyLock<Kept<Arc<Planned>>> = LazyLock::new(|| Kept::new(STATEMENTS));
    &PLANNED
}

/// Statements kept: dashboards and polling clients repeat a few; each is a few kB.
const STATEMENTS: usize = 1024;

/// The SQL an empty ticket or a path descriptor stands for: the whole granted table.
pub fn select_all(table_name: &str) -> String {
    format!("SELECT * FROM \"{}\"", table_name.replace('"', "\"\""))
}

/// Checks and plans `sql` for `grant`: the period, the sandbox, the granted table, the
/// enforcement view beneath the query and the query-shape rules on top of it.
///
/// Planning a new statement takes about 0.8 ms, a third of a first batch, so its plan is kept
/// and reused by the next query with the same SQL over the same view (same grant, files and
/// settings). The period, purpose and SQL checks run for every query, as do the access
/// checks of the caller ([`super::DataPlane`]).
pub async fn prepare(
    grant: &ActiveGrant,
    sql: &str,
    cfg: &DataPlaneConfig,
) -> Result<PreparedQuery, QueryError> {
    check_period(&grant.plan, Utc::now())?;
    check_purpose(&grant.plan, grant.purpose.as_deref())?;
    let statement = sandbox::parse(sql, cfg.max_sql_bytes)?;
    let state = sandbox::session_state(cfg).map_err(unavailable)?;
    let task = sandbox::task_context(&state, cfg).map_err(unavailable)?;
    let listing = source::list(&state, &grant.source)
        .await
        .map_err(unavailable)?;
    let view = view_key(grant, &listing.files, cfg);
    let key = PlanKey::of(&(view, sql));
    let planned = match planned_statements().get(&key) {
        Some(planned) => planned,
        None => {
            let (planned, reusable) = plan(grant, statement, state, listing, view, cfg).await?;
            let planned = Arc::new(planned);
            if reusable {
                planned_statements().put(key, Arc::clone(&planned));
            }
            planned
        }
    };
    Ok(PreparedQuery {
        // the kept plan is never executed: every query runs a copy
        physical: reset_plan_states(Arc::clone(&planned.physical)).map_err(unavailable)?,
        task,
        schema: Arc::clone(&planned.schema),
        columns: planned.columns.clone(),
    })
}

/// Plans `statement` over the enforced view of `grant` (keyed `view`); says whether the plan
/// may be reused (see [`plans_alike`]).
async fn plan(
    grant: &ActiveGrant,
    statement: Statement,
    state: SessionState,
    listing: source::Listing,
    view: PlanKey,
    cfg: &DataPlaneConfig,
) -> Result<(Planned, bool), QueryError> {
    let table = match enforced_views().get(&view) {
        Some(kept) => kept,
        None => {
            let made = enforced_view(grant, &state, listing, view, cfg).await?;
            enforced_views().put(view, made.clone());
            made
        }
    };
    let view_schema = table.schema();

    let ctx = SessionContext::new_with_state(state);
    ctx.register_table(TableReference::bare(grant.table_name.as_str()), table)
        .map_err(unavailable)?;
    let state = ctx.state();
    sandbox::check_tables(&state, &statement, &grant.table_name)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(planning_error)?;
    // first: a plan that multiplies (each use of a CTE copies it) is refused before any
    // walk over all of it
    sandbox::check_plan(&plan)?;
    sandbox::verify(&plan)?;
    sandbox::check_reserved_names(&plan)?;
    let plan = functions::bound_calls(plan)?;
    let plan = enforce::apply_query_rules(plan, &grant.plan)?;
    let physical = state
        .create_physical_plan(&plan)
        .await
        .map_err(planning_error)?;
    let physical = with_deadline_checks(physical).map_err(planning_error)?;
    let planned = Planned {
        physical,
        columns: enforce::columns_read(&plan, view_schema.as_ref()),
        schema: Arc::new(plan.schema().as_arrow().clone()),
    };
    Ok((planned, plans_alike(&plan)))
}

/// Enforced views made for earlier statements, by view key: a new statement over a known
/// view skips opening the source and building the view (about 0.15 ms).
fn enforced_views() -> &'static Kept<Arc<EnforcedTable>> {
    static VIEWS: LazyLock<Kept<Arc<EnforcedTable>>> = LazyLock::new(|| Kept::new(VIEWS_KEPT));
    &VIEWS
}

/// Views kept: one per agreement in use.
const VIEWS_KEPT: usize = 256;

/// Opens `grant`'s source over `listing` and builds its enforced view, keyed `view`.
async fn enforced_view(
    grant: &ActiveGrant,
    state: &SessionState,
    listing: source::Listing,
    view: PlanKey,
    cfg: &DataPlaneConfig,
) -> Result<Arc<EnforcedTable>, QueryError> {
    let table = source::open(state, &grant.source, listing)
        .await
        .map_err(unavailable)?;
    let enforced = enforce::view_plan(&grant.table_name, table, &grant.plan, grant.mask_key)
        .map_err(unavailable)?;
    Ok(Arc::new(EnforcedTable::new(
        enforced,
        view,
        cfg.prefix_rows,
    )))
}

/// Whether planning `plan` again would give the same physical plan. Not so with a function
/// whose result depends on when or how often it is called: the optimizer folds `now()` or
/// `current_date` into a constant, and a kept plan would answer with a stale one.
fn plans_alike(plan: &LogicalPlan) -> bool {
    let mut alike = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    alike = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    alike
}

/// The digest of everything the enforced view of `grant` over `files` is made from: the
/// table name, the source, the enforcement plan, the mask key, each file's path, size,
/// modification time and entity tag, and the session's settings (with the rows of its kept
/// prefix). Any change (another plan or key, a file added, removed or rewritten) makes another
/// key.
fn view_key(grant: &ActiveGrant, files: &[ObjectMeta], cfg: &DataPlaneConfig) -> PlanKey {
    let files: Vec<_> = files
        .iter()
        .map(|f| {
            let modified = f.last_modified.timestamp_nanos_opt().unwrap_or(i64::MIN);
            (f.location.as_ref(), f.size, modified, f.e_tag.as_deref())
        })
        .collect();
    PlanKey::of(&(
        format!(
            "{:?}\0{:?}\0{:?}",
            grant.table_name, grant.source, grant.plan
        ),
        grant.mask_key,
        files,
        (cfg.batch_size, cfg.target_partitions, cfg.prefix_rows),
    ))
}

impl PreparedQuery {
    /// The memory pool the query will execute with (to charge it to its consumer's share).
    pub fn memory_pool(&self) -> &Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
        self.task.memory_pool()
    }

    /// Starts the query and returns its batches as they are produced, until `deadline`.
    pub fn execute(self, deadline: Instant) -> Result<ResultStream, QueryError> {
        let task = match Arc::try_unwrap(self.task) {
            Ok(task) => {
                let config = task
                    .session_config()
                    .clone()
                    .with_extension(Arc::new(QueryDeadline(deadline.into_std())));
                Arc::new(task.with_session_config(config))
            }
            // not shared in practice (each query makes its own); then the checks are off and
            // the deadline is checked between batches only
            Err(task) => task,
        };
        let inner = execute_stream(self.physical, task).map_err(execution_error)?;
        Ok(ResultStream {
            schema: inner.schema(),
            inner: Some(inner),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    /// The policy barriers in `plan`.
    #[cfg(test)]
    fn barriers(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
        let mut barriers = Vec::new();
        let _ = plan.apply(|node| {
            if node.as_ref().is::<super::barrier::PolicyBarrierExec>() {
                barriers.push(Arc::clone(node));
            }
            Ok(TreeNodeRecursion::Continue)
        });
        barriers
    }

    /// The barrier behind `node`, which [`Self::barriers`] found.
    #[cfg(test)]
    fn barrier(node: &Arc<dyn ExecutionPlan>) -> &super::barrier::PolicyBarrierExec {
        node.as_ref().downcast_ref().expect("a policy barrier")
    }

    /// Every plan this query runs: its own, then each view beneath a barrier.
    #[cfg(test)]
    fn plans(&self) -> Vec<Arc<dyn ExecutionPlan>> {
        let mut plans = vec![Arc::clone(&self.physical)];
        let mut i = 0;
        while let Some(plan) = plans.get(i).cloned() {
            let views = Self::barriers(&plan).into_iter();
            plans.extend(views.map(|b| Arc::clone(Self::barrier(&b).view())));
            i += 1;
        }
        plans
    }

    /// The rows this query streams from kept view prefixes.
    #[cfg(test)]
    fn prefix_rows(&self) -> usize {
        let barriers = Self::barriers(&self.physical).into_iter();
        barriers.map(|b| Self::barrier(&b).prefix_rows()).sum()
    }

    /// Every plan this query runs, shown one after the other.
    #[cfg(test)]
    fn shown(&self) -> String {
        let shown = self.plans().into_iter().map(|plan| {
            datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string()
        });
        shown.collect::<Vec<_>>().join("\n")
    }
}

/// The batches of a running query. Ends with [`QueryError::Timeout`] at the deadline; errors
/// are mapped so that they reveal nothing of the data.
///
/// The query's work stops when it ends: DataFusion runs parts of a plan in tasks of their
/// own, which are aborted when the stream that reads them is dropped, so the stream is
/// dropped at once at the end, the deadline or an error, not when the caller lets go of
/// this one (a gRPC response may be held until the client reads it).
pub struct ResultStream {
    /// None once the query has ended.
    inner: Option<SendableRecordBatchStream>,
    schema: SchemaRef,
    deadline: Pin<Box<Sleep>>,
}

impl ResultStream {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

impl Stream for ResultStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            return Poll::Ready(None);
        }
        let item = if self.deadline.as_mut().poll(cx).is_ready() {
            Some(Err(QueryError::Timeout))
        } else {
            let inner = self.inner.as_mut().expect("running");
            match inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                // a batch that took past the deadline to make is not sent
                Poll::Ready(Some(Ok(_))) if Instant::now() >= self.deadline.deadline() => {
                    Some(Err(QueryError::Timeout))
                }
                Poll::Ready(Some(Ok(batch))) => Some(Ok(batch)),
                // a [`DeadlineExec`] inside the plan stopped it
                Poll::Ready(Some(Err(_))) if Instant::now() >= self.deadline.deadline() => {
                    Some(Err(QueryError::Timeout))
                }
                Poll::Ready(Some(Err(e))) => Some(Err(execution_error(e))),
                Poll::Ready(None) => None,
            }
        };
        if !matches!(item, Some(Ok(_))) {
            // ended: drop the plan's streams now, which aborts its tasks
            self.inner = None;
        }
        Poll::Ready(item)
    }
}

/// The deadline of a running query, in its task context's session config, for the
/// [`DeadlineExec`]s of its plan.
#[derive(Debug, Clone, Copy)]
struct QueryDeadline(std::time::Instant);

/// Puts a [`DeadlineExec`] above every operator that can make many batches out of one (joins,
/// unnest). Above them, an aggregate or a sort consumes batch after batch in one poll of the
/// result stream without ever waiting, so the result stream's own deadline is not looked at:
/// a join of 100,000 rows with itself on a column of 4 values answered its 1 s deadline
/// after 5.6 s.
fn with_deadline_checks(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let multiplies = node.name().contains("Join") || node.name() == "UnnestExec";
        Ok(if multiplies {
            Transformed::yes(Arc::new(DeadlineExec::new(node)) as Arc<dyn ExecutionPlan>)
        } else {
            Transformed::no(node)
        })
    })
    .map(|t| t.data)
}

/// Ends its input's stream with an error once the query's [`QueryDeadline`] has passed,
/// checked at every batch; the result stream then answers `DEADLINE_EXCEEDED`.
#[derive(Debug)]
struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl DeadlineExec {
    fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = Arc::clone(input.properties());
        Self { input, properties }
    }
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeadlineExec")
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(DeadlineExec::new(children.swap_remove(0))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let Some(deadline) = context.session_config().get_extension::<QueryDeadline>() else {
            return Ok(input);
        };
        let deadline = deadline.0;
        let schema = input.schema();
        let checked = input.map(move |batch| {
            if std::time::Instant::now() >= deadline {
                Err(DataFusionError::Execution(
                    "the query's deadline has passed".into(),
                ))
            } else {
                batch
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, checked)))
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
pub(super) mod tests {
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
    pub(crate) fn north_readings(path: std::path::PathBuf, dir: &Path) -> ActiveGrant {
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

    /// `rows` generated meter readings (seed `seed`) in a new directory, and a grant of their
    /// north rows as table `readings`.
    pub(crate) fn north_sample(
        rows: usize,
        seed: u64,
    ) -> (tempfile::TempDir, ActiveGrant, crate::sample::SampleSummary) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        let summary = crate::sample::generate_meter_readings(&path, rows, seed).unwrap();
        let grant = north_readings(path, dir.path());
        (dir, grant, summary)
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
    pub(crate) async fn run(grant: &ActiveGrant, sql: &str) -> Vec<RecordBatch> {
        let cfg = DataPlaneConfig::default();
        collect(prepare(grant, sql, &cfg).await.unwrap()).await
    }

    /// Every batch of `prepared`, run with a deadline of 30 s.
    async fn collect(prepared: PreparedQuery) -> Vec<RecordBatch> {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let stream = prepared.execute(deadline).unwrap();
        stream.try_collect().await.unwrap()
    }

    /// The single integer a `count(*)` query returns.
    fn count(batches: &[RecordBatch]) -> u64 {
        let n = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
        n.unwrap().value(0) as u64
    }

    /// The cities `grant` shows, asked twice: the second query runs the kept plan.
    async fn visible_cities(grant: &ActiveGrant) -> Vec<String> {
        let sql = "SELECT * FROM cities ORDER BY city";
        let batches = run(grant, sql).await;
        assert_eq!(run(grant, sql).await, batches);
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
        let (_dir, mut grant, _) = north_sample(10_000, 3);
        grant.plan.columns = ColumnAccess::Deny(vec!["customer_name".into()]);
        let cfg = DataPlaneConfig::default();
        let prepared = prepare(&grant, "SELECT avg(kwh) FROM readings", &cfg)
            .await
            .unwrap();
        let shown = prepared.shown();
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
        let (_dir, grant, summary) = north_sample(20_000, 7);
        let cfg = DataPlaneConfig::default();
        let prepared = prepare(&grant, ERRORS_ON_HIDDEN_ROWS, &cfg).await.unwrap();
        let shown = prepared.shown();
        // the consumer's predicate is evaluated above the barrier, never in the scan
        let barrier = shown.find("PolicyBarrierExec").expect("a barrier");
        let consumer = shown.find("CASE WHEN").expect("the consumer's filter");
        assert!(consumer < barrier, "{shown}");
        assert_eq!(shown.matches("CASE WHEN").count(), 1, "{shown}");

        // fails if the predicate ever sees a row of another region
        let batches = collect(prepared).await;
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
        let (_dir, north, summary) = north_sample(20_000, 11);
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

    /// The one value of a one-row, one-column result, as text.
    fn only_value(batches: &[RecordBatch]) -> String {
        assert_eq!(count_rows(batches), 1);
        arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
    }

    fn count_rows(batches: &[RecordBatch]) -> usize {
        batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Whether a plan of `sql` over `grant`'s view is kept.
    async fn is_kept(grant: &ActiveGrant, sql: &str) -> bool {
        let cfg = DataPlaneConfig::default();
        let state = sandbox::session_state(&cfg).unwrap();
        let listing = source::list(&state, &grant.source).await.unwrap();
        let key = PlanKey::of(&(view_key(grant, &listing.files, &cfg), sql));
        planned_statements().get(&key).is_some()
    }

    /// A statement's plan is kept, yet every query is checked against the time of the query
    /// and the call's purpose, and a time-dependent function is evaluated afresh.
    #[tokio::test]
    async fn a_kept_statement_plan_is_checked_and_evaluated_afresh_at_every_query() {
        let (_dir, mut grant, _) = north_sample(2_000, 5);
        let research = "dpv:ResearchAndDevelopment";
        grant.plan.purposes = Some(vec![research.into()]);
        grant.plan.not_after = Some(Utc::now() + Duration::milliseconds(800));
        grant.purpose = Some(research.into());
        let cfg = DataPlaneConfig::default();
        let sql = "SELECT count(*) FROM readings";
        assert!(!is_kept(&grant, sql).await);
        let n = count(&run(&grant, sql).await);
        assert!(
            is_kept(&grant, sql).await,
            "a repeatable statement's plan is kept"
        );
        assert_eq!(count(&run(&grant, sql).await), n);

        // the purpose is the call's, not the plan's
        grant.purpose = Some("dpv:Marketing".into());
        let e = prepare(&grant, sql, &cfg).await.unwrap_err();
        assert!(e.to_string().contains("odrl:purpose"), "{e}");

        // `now()` is folded into a constant by the optimizer: such a plan is never kept
        grant.purpose = Some(research.into());
        let clock = "SELECT CAST(now() AS VARCHAR) FROM readings LIMIT 1";
        let before = only_value(&run(&grant, clock).await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_ne!(only_value(&run(&grant, clock).await), before);

        // the period is checked against the time of each query
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        let e = prepare(&grant, sql, &cfg).await.unwrap_err();
        assert!(
            matches!(
                e,
                QueryError::Refused {
                    rule: "not-after",
                    ..
                }
            ),
            "{e}"
        );
    }

    /// Queries running one kept plan at once each get their own execution state: a
    /// grouped aggregate repartitions its rows, and shared channels would mix them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_runs_of_a_kept_plan_do_not_share_state() {
        let (_dir, grant, summary) = north_sample(20_000, 13);
        let sql =
            "SELECT meter_id, count(*) AS n FROM readings GROUP BY meter_id ORDER BY meter_id";
        let expected = run(&grant, sql).await;
        let rows: usize = count_rows(&expected);
        assert!(rows > 1, "{rows}");
        let runs = (0..8).map(|_| {
            let grant = grant.clone();
            tokio::spawn(async move { run(&grant, sql).await })
        });
        for batches in futures::future::join_all(runs).await {
            let batches = batches.unwrap();
            assert_eq!(
                arrow::compute::concat_batches(&expected[0].schema(), &batches).unwrap(),
                arrow::compute::concat_batches(&expected[0].schema(), &expected).unwrap()
            );
        }
        let total: i64 = expected
            .iter()
            .map(|b| {
                arrow::compute::sum(b.column(1).as_any().downcast_ref::<Int64Array>().unwrap())
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(total as u64, summary.rows_per_region["north"]);
    }

    /// Every row of `batches` as text, sorted.
    pub(crate) fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
        let mut rows: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |i| {
                    let values = b
                        .columns()
                        .iter()
                        .map(|c| arrow::util::display::array_value_to_string(c, i).unwrap());
                    values.collect::<Vec<_>>().join("|")
                })
            })
            .collect();
        rows.sort_unstable();
        rows
    }

    /// `sql` over `grant` prepared under `cfg` once the view's prefix is kept (the first
    /// query starts computing it).
    async fn with_prefix(grant: &ActiveGrant, sql: &str, cfg: &DataPlaneConfig) -> PreparedQuery {
        for _ in 0..500 {
            let prepared = prepare(grant, sql, cfg).await.unwrap();
            if prepared.prefix_rows() > 0 {
                return prepared;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no prefix kept within 5 s");
    }

    /// Parquet strings are read as views inside the view, but every column leaves it as a
    /// plain type, masked, redacted or not.
    #[tokio::test]
    async fn views_send_plain_strings() {
        let (_dir, mut grant, _) = north_sample(2_000, 19);
        grant.plan.masks = vec![
            sluis_policy::enforcement::ColumnMask {
                column: "meter_id".into(),
                kind: sluis_policy::enforcement::MaskKind::Hash,
            },
            sluis_policy::enforcement::ColumnMask {
                column: "customer_name".into(),
                kind: sluis_policy::enforcement::MaskKind::Redact,
            },
        ];
        let prepared = prepare(
            &grant,
            "SELECT * FROM readings",
            &DataPlaneConfig::default(),
        )
        .await
        .unwrap();
        let schema = Arc::clone(&prepared.schema);
        let types: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types[..3],
            [DataType::Utf8, DataType::Utf8, DataType::Utf8],
            "{schema:?}"
        );
        for batch in collect(prepared).await {
            assert_eq!(batch.schema(), schema);
        }
    }

    /// A view's kept first rows, streamed from memory before the rest of the file, are
    /// exactly the rows the view gives without them: filtered and masked, none twice, none
    /// lost; and two grants over the same file each get their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_prefixes_give_exactly_the_rows_of_their_view() {
        let (_dir, north, summary) = north_sample(20_000, 17);
        let mut north = north;
        north.plan.masks = vec![sluis_policy::enforcement::ColumnMask {
            column: "meter_id".into(),
            kind: sluis_policy::enforcement::MaskKind::Hash,
        }];
        let mut south = north.clone();
        south.plan.row_filters[0].values = vec![Scalar::String("south".into())];
        let sql = "SELECT meter_id, region, kwh, reading_time FROM readings";
        let without = DataPlaneConfig {
            prefix_rows: 0,
            ..Default::default()
        };
        for (grant, region) in [(&north, "north"), (&south, "south")] {
            let expected =
                sorted_rows(&collect(prepare(grant, sql, &without).await.unwrap()).await);
            assert_eq!(expected.len() as u64, summary.rows_per_region[region]);
            assert!(expected.iter().all(|r| r.contains(&format!("|{region}|"))));
            assert!(!expected.iter().any(|r| r.starts_with("MTR-")), "masked");
            // within the one row group of the file, and all of it
            for prefix_rows in [1000, 50_000] {
                let cfg = DataPlaneConfig {
                    prefix_rows,
                    ..Default::default()
                };
                let prepared = with_prefix(grant, sql, &cfg).await;
                let kept = prepared.prefix_rows();
                assert!(kept < prefix_rows.min(20_000), "{kept}");
                assert_eq!(sorted_rows(&collect(prepared).await), expected);
            }
        }
    }

    /// 2,000 rows `(region, n)` in pages of 100 rows: sorted by region (each page holds one
    /// region), or regions alternating row by row (every page holds both).
    fn write_regions(path: &Path, sorted: bool) {
        let region = |i: usize| {
            let north = if sorted {
                i < 1000
            } else {
                i.is_multiple_of(2)
            };
            if north { "north" } else { "south" }
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("region", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values((0..2000).map(region))),
                Arc::new(Int64Array::from_iter_values(0..2000)),
            ],
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .build();
        super::super::write_parquet(path, &batch, props);
    }

    /// Whether the Parquet scan of `prepared` prunes pages with the page index.
    fn prunes_pages(prepared: &PreparedQuery) -> bool {
        use datafusion::datasource::physical_plan::ParquetSource;
        use datafusion::datasource::source::DataSourceExec;
        let mut enabled = None;
        for plan in prepared.plans() {
            plan.apply(|node| {
                if let Some(scan) = node.as_ref().downcast_ref::<DataSourceExec>()
                    && let Some((_, source)) = scan.downcast_to_file_source::<ParquetSource>()
                {
                    enabled = Some(source.table_parquet_options().global.enable_page_index);
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        }
        enabled.expect("a Parquet scan")
    }

    /// Page-index pruning by the row filter is kept only where it skips pages; the rows
    /// are the same either way.
    #[tokio::test]
    async fn page_pruning_is_kept_only_where_it_skips_pages() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DataPlaneConfig::default();
        for sorted in [true, false] {
            let path = dir.path().join(format!("sorted-{sorted}.parquet"));
            write_regions(&path, sorted);
            let grant = north_readings(path, dir.path());
            let sql = "SELECT count(*), sum(n % 2) FROM readings";
            let prepared = prepare(&grant, sql, &cfg).await.unwrap();
            assert_eq!(prunes_pages(&prepared), sorted, "{}", prepared.shown());
            let batches = collect(prepared).await;
            assert_eq!(count(&batches), 1000);
            let odd = batches[0].column(1).as_any().downcast_ref::<Int64Array>();
            // sorted: north is rows 0-999 (500 odd); alternating: the even rows (no odd)
            assert_eq!(odd.unwrap().value(0), if sorted { 500 } else { 0 });
        }
    }

    /// A chain of `n` terms joined by `op` over the table `t(a BIGINT, b BOOLEAN, s TEXT)`.
    fn chain(op: &str, n: usize) -> String {
        match op {
            "+" => format!("SELECT {} FROM t", vec!["a"; n].join(" + ")),
            "AND" | "OR" => format!(
                "SELECT count(*) FROM t WHERE {}",
                vec!["b"; n].join(&format!(" {op} "))
            ),
            "||" => format!("SELECT {} FROM t", vec!["s"; n].join(" || ")),
            "::" => format!("SELECT a{} FROM t", "::BIGINT".repeat(n)),
            other => panic!("no chain for {other}"),
        }
    }

    /// Plans and runs `sql` over a small `t` in DataFusion alone (no sandbox limits), on a
    /// thread with a 2 MiB stack (a Tokio worker's), with a runtime on that thread.
    fn run_on_small_stack(sql: String) {
        let thread = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let cfg = DataPlaneConfig::default();
                    let ctx = SessionContext::new_with_state(sandbox::session_state(&cfg).unwrap());
                    let schema = Arc::new(Schema::new(vec![
                        Field::new("a", DataType::Int64, false),
                        Field::new("b", DataType::Boolean, false),
                        Field::new("s", DataType::Utf8, false),
                    ]));
                    let batch = RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(Int64Array::from(vec![1, 2, 3])),
                            Arc::new(arrow::array::BooleanArray::from(vec![true, false, true])),
                            Arc::new(StringArray::from(vec!["x", "y", "z"])),
                        ],
                    )
                    .unwrap();
                    let table =
                        datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])
                            .unwrap();
                    ctx.register_table("t", Arc::new(table)).unwrap();
                    let df = ctx.sql(&sql).await.unwrap();
                    df.collect().await.unwrap();
                });
            });
        thread.unwrap().join().unwrap();
    }

    /// Measures the longest chain of each kind that parsing, planning, optimising and running
    /// take on a 2 MiB stack; a longer one overflows it and aborts the process, so each try
    /// runs in a child process. Prints the results; run it by hand:
    /// `cargo nextest run --locked -p sluis-connector --lib --run-ignored only stack_needed_by_deep_expressions --no-capture`
    #[test]
    #[ignore = "a measurement, run by hand (about a minute)"]
    fn stack_needed_by_deep_expressions() {
        if let (Ok(op), Ok(n)) = (
            std::env::var("SLUIS_CHAIN_OP"),
            std::env::var("SLUIS_CHAIN_N"),
        ) {
            run_on_small_stack(chain(&op, n.parse().unwrap()));
            return;
        }
        let passes = |op: &str, n: usize| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "dataplane::query::tests::stack_needed_by_deep_expressions",
                    "--exact",
                    "--ignored",
                ])
                .env("SLUIS_CHAIN_OP", op)
                .env("SLUIS_CHAIN_N", n.to_string())
                .output()
                .unwrap()
                .status
                .success()
        };
        for op in ["+", "AND", "OR", "||", "::"] {
            // the longest chain that passes, by bisection between 16 and 16,384 terms
            let (mut ok, mut fails) = (16usize, 16_384usize);
            if passes(op, fails) {
                println!("chain `{op}`: passes at {fails} terms");
                continue;
            }
            assert!(passes(op, ok), "{op} fails at {ok}");
            while fails - ok > ok / 16 {
                let mid = (ok + fails) / 2;
                if passes(op, mid) {
                    ok = mid
                } else {
                    fails = mid
                }
            }
            println!("chain `{op}`: passes at {ok} terms, overflows 2 MiB at {fails}");
        }
    }

    #[test]
    fn select_all_quotes_the_table_name() {
        assert_eq!(select_all("a\"b"), "SELECT * FROM \"a\"\"b\"");
    }
}
