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
use datafusion::datasource::ViewTable;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use sluis_policy::enforcement::EnforcementPlan;

use super::error::Redactor;
use super::{ActiveGrant, DataPlaneConfig, QueryError, enforce, sandbox, source};

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
    let statement = sandbox::parse(sql, cfg.max_sql_bytes)?;
    let state = sandbox::session_state(cfg).map_err(unavailable)?;
    let source = source::open(&state, &grant.source)
        .await
        .map_err(unavailable)?;
    let mut secrets = enforce::hidden_columns(&source.schema(), &grant.plan);
    secrets.push(grant.source.location.display().to_string());
    let redactor = Redactor::new(secrets);
    let view = enforce::view_plan(&grant.table_name, source, &grant.plan).map_err(unavailable)?;
    let view_schema = view.schema().as_arrow().clone();

    let ctx = SessionContext::new_with_state(state);
    ctx.register_table(
        TableReference::bare(grant.table_name.as_str()),
        Arc::new(ViewTable::new(view, None)),
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
            format!("the agreement allows queries from {}", start.to_rfc3339()),
        ));
    }
    if let Some(end) = plan.not_after
        && now > end
    {
        return Err(QueryError::refused(
            "not-after",
            format!("the agreement allowed queries until {}", end.to_rfc3339()),
        ));
    }
    Ok(())
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
    fn select_all_quotes_the_table_name() {
        assert_eq!(select_all("a\"b"), "SELECT * FROM \"a\"\"b\"");
    }
}
