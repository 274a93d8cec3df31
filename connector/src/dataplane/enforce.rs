//! Turning an [`EnforcementPlan`] into DataFusion logical plans.
//!
//! Two layers:
//! - [`view_plan`] builds the *view* the consumer queries: `scan(source) → Filter(row filters)
//!   → Projection(visible columns, masks aliased to the original names)`. It is served as the
//!   only table of the session by [`super::barrier::EnforcedTable`], so the raw source is never
//!   addressable; DataFusion's optimizer pushes the row filter and the projection into the
//!   source scan, but never the consumer's predicates into the view (see [`super::barrier`]).
//! - [`apply_query_rules`] wraps the consumer's planned query with the rules that depend on
//!   the query's shape: aggregate-only (at least k rows behind every group and every
//!   aggregate value; the model is in `policy/PROFILE.md`, section Aggregate-only), and a row
//!   limit.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, cast, ident, lit, when,
};
use sluis_policy::enforcement::{
    ColumnAccess, EnforcementPlan, FilterOperator, MaskKind, RowFilter, Scalar,
};

use super::QueryError;
use super::mask::{MaskKey, keyed_hash_hex};

/// Why an enforcement plan cannot be applied to a source. For the provider's log only: the
/// messages name columns the consumer must not learn.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The plan names a column the source does not have (a typo here could expose data).
    #[error("the enforcement plan names column `{0}`, which the source does not have")]
    UnknownColumn(String),
    /// A row filter has the wrong number of values for its operator.
    #[error("row filter on `{column}`: {operator:?} needs {expected}, got {got} value(s)")]
    FilterArity {
        /// Filtered column.
        column: String,
        /// Its operator.
        operator: FilterOperator,
        /// What the operator needs.
        expected: &'static str,
        /// How many values the filter has.
        got: usize,
    },
    /// No column would be visible.
    #[error("the enforcement plan leaves no column visible")]
    NothingVisible,
    /// DataFusion refused the plan (e.g. a filter value of the wrong type).
    #[error("building the enforced view: {0}")]
    DataFusion(#[from] DataFusionError),
}

/// The enforced view over `source` under `plan`, scanned under the name `table_name`; hash
/// masks are keyed with `mask_key` (the agreement's).
pub fn view_plan(
    table_name: &str,
    source: Arc<dyn TableProvider>,
    plan: &EnforcementPlan,
    mask_key: MaskKey,
) -> Result<LogicalPlan, EnforceError> {
    let schema = source.schema();
    check_columns(&schema, plan)?;
    let mut builder = LogicalPlanBuilder::scan(table_name, provider_as_source(source), None)?;
    if let Some(predicate) = row_predicate(&plan.row_filters)? {
        builder = builder.filter(predicate)?;
    }
    let projection = visible_exprs(&schema, plan, mask_key)?;
    if projection.is_empty() {
        return Err(EnforceError::NothingVisible);
    }
    Ok(builder.project(projection)?.build()?)
}

/// Every column the plan names must exist in the source, so that a misspelt deny or mask
/// fails closed instead of exposing the column.
fn check_columns(schema: &Schema, plan: &EnforcementPlan) -> Result<(), EnforceError> {
    let listed: &[String] = match &plan.columns {
        ColumnAccess::All => &[],
        ColumnAccess::Allow(cols) | ColumnAccess::Deny(cols) => cols,
    };
    let named = listed
        .iter()
        .chain(plan.masks.iter().map(|m| &m.column))
        .chain(plan.row_filters.iter().map(|f| &f.column));
    for name in named {
        if schema.field_with_name(name).is_err() {
            return Err(EnforceError::UnknownColumn(name.clone()));
        }
    }
    Ok(())
}

/// The conjunction of all row filters, or None without filters. A row whose filtered column
/// is NULL never passes: comparisons with NULL are not true, so `Filter` drops the row.
fn row_predicate(filters: &[RowFilter]) -> Result<Option<Expr>, EnforceError> {
    let mut conjunction: Option<Expr> = None;
    for filter in filters {
        let expr = filter_expr(filter)?;
        conjunction = Some(match conjunction {
            Some(acc) => acc.and(expr),
            None => expr,
        });
    }
    Ok(conjunction)
}

fn filter_expr(filter: &RowFilter) -> Result<Expr, EnforceError> {
    use FilterOperator::*;
    let column = ident(&filter.column);
    let values: Vec<Expr> = filter.values.iter().map(scalar_lit).collect();
    let arity = |expected: &'static str| EnforceError::FilterArity {
        column: filter.column.clone(),
        operator: filter.operator,
        expected,
        got: values.len(),
    };
    match filter.operator {
        IsAnyOf | IsNoneOf if values.is_empty() => Err(arity("one or more values")),
        IsAnyOf => Ok(column.in_list(values, false)),
        IsNoneOf => Ok(column.in_list(values, true)),
        _ if values.len() != 1 => Err(arity("exactly one value")),
        op => {
            let value = values.into_iter().next().expect("one value");
            Ok(match op {
                Eq => column.eq(value),
                Neq => column.not_eq(value),
                Lt => column.lt(value),
                Lteq => column.lt_eq(value),
                Gt => column.gt(value),
                _ => column.gt_eq(value),
            })
        }
    }
}

fn scalar_lit(value: &Scalar) -> Expr {
    match value {
        Scalar::Bool(b) => lit(*b),
        Scalar::Int(i) => lit(*i),
        Scalar::Float(f) => lit(*f),
        Scalar::String(s) => lit(s.clone()),
    }
}

/// One expression per visible column, in source order, masks aliased to the column's name.
fn visible_exprs(
    schema: &Schema,
    plan: &EnforcementPlan,
    mask_key: MaskKey,
) -> Result<Vec<Expr>, EnforceError> {
    let mut exprs = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        if !plan.columns.allows(name) {
            continue;
        }
        let mask = plan
            .masks
            .iter()
            .find(|m| &m.column == name)
            .map(|m| m.kind);
        let wire = on_the_wire(field.data_type());
        exprs.push(match mask {
            None if &wire == field.data_type() => ident(name),
            None => cast(ident(name), wire).alias(name),
            Some(MaskKind::Hash) => keyed_hash_hex(mask_key)
                .call(vec![cast(ident(name), DataType::Utf8)])
                .alias(name),
            Some(MaskKind::Redact) => lit(ScalarValue::try_from(&wire)?).alias(name),
        });
    }
    Ok(exprs)
}

/// The type a column of type `read` is sent as: string and binary views (how Parquet is read
/// inside the view) as plain strings and binaries, which every Flight client reads.
fn on_the_wire(read: &DataType) -> DataType {
    match read {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

/// Name of the group size column added beneath aggregate-only queries.
const GROUP_SIZE: &str = "__sluis_group_size";

/// Prefix of the hidden counts of contributing rows added beside the aggregates of
/// aggregate-only queries (one per aggregated column: `__sluis_contributors_0`, ...).
const CONTRIBUTORS: &str = "__sluis_contributors_";

/// Aggregate functions allowed in aggregate-only mode: each summarises its group. Functions
/// that return the group's members (`array_agg`, `string_agg`, `first_value`, ...) are not,
/// nor those of several columns (`corr`, `covar`, `regr_*`): their contributing rows are the
/// rows where every argument is set, which [`contributors`] does not count.
const SUMMARY_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "median",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "var_samp",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
];

/// Aggregates that may take `DISTINCT`: it does not change which rows they summarise into a
/// value (a count of values, or the extreme value). `sum(DISTINCT x)` over a group whose rows
/// but one share a value would return that one row's value plus a known one.
const DISTINCT_AGGREGATES: &[&str] = &["count", "approx_distinct", "min", "max"];

/// What the consumer may write, for the refusals of aggregate-only queries.
const ALLOWED: &str = "allowed: one aggregate query over the table, with WHERE, GROUP BY, HAVING, \
    ORDER BY and LIMIT; aggregates of one plain column (count also takes *), without FILTER";

/// Wraps the consumer's planned query with the agreement's query-shape rules.
pub fn apply_query_rules(
    plan: LogicalPlan,
    rules: &EnforcementPlan,
) -> Result<LogicalPlan, QueryError> {
    let mut plan = plan;
    if let Some(min_group) = rules.aggregate_min_group_size {
        let contributors = check_aggregate_only(&plan)?;
        plan = with_suppression(plan, min_group, &contributors).map_err(internal)?;
    }
    if let Some(max_rows) = rules.max_rows_per_query {
        let fetch = usize::try_from(max_rows).unwrap_or(usize::MAX);
        plan = LogicalPlanBuilder::from(plan)
            .limit(0, Some(fetch))
            .and_then(LogicalPlanBuilder::build)
            .map_err(internal)?;
    }
    Ok(plan)
}

fn internal(e: DataFusionError) -> QueryError {
    tracing::warn!(error = %e, "applying query rules failed");
    QueryError::Failed
}

fn aggregate_only(detail: impl Into<String>) -> QueryError {
    QueryError::refused("aggregate-only", detail)
}

/// The name of a plan node's operator (`Join`, `Window`, ...), for refusals.
fn operator(node: &LogicalPlan) -> String {
    let shown = node.display().to_string();
    shown
        .split(':')
        .next()
        .unwrap_or("this operator")
        .to_string()
}

/// Aggregate-only: the plan must be one chain from the result down to the view, without
/// subqueries (they could read the table again, unsuppressed). Its lowest aggregate is the
/// only one over the view's rows, and everything above it only sees what that aggregate
/// releases, so any operator that reads one input may run there (HAVING, ORDER BY, LIMIT,
/// DISTINCT, window functions, further aggregates). Between the view and the lowest aggregate
/// only WHERE and plain column selections may run: an expression there (`kwh * (id = 'x')`)
/// would single rows out just as it would inside the aggregate.
///
/// Returns the column each of the lowest aggregate's aggregates summarises (see
/// [`contributors`]).
fn check_aggregate_only(plan: &LogicalPlan) -> Result<Vec<Option<Column>>, QueryError> {
    let chain = one_chain(plan)?;
    let lowest = chain
        .iter()
        .rposition(|node| matches!(node, LogicalPlan::Aggregate(_)));
    let (Some(lowest), Some(LogicalPlan::TableScan(_))) = (lowest, chain.last()) else {
        return Err(aggregate_only(format!(
            "this agreement allows only aggregate queries over the table (GROUP BY with count, sum, avg, ...); {ALLOWED}"
        )));
    };
    for node in &chain[..lowest] {
        match node {
            LogicalPlan::Aggregate(agg) => check_summary_functions(agg)?,
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Window(_) => {}
            other => {
                return Err(aggregate_only(format!(
                    "{} is not allowed under this agreement; {ALLOWED}",
                    operator(other)
                )));
            }
        }
    }
    for node in &chain[lowest + 1..chain.len() - 1] {
        match node {
            LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {}
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| plain_column(e).is_some()) => {}
            LogicalPlan::Projection(_) => {
                return Err(aggregate_only(format!(
                    "a derived table beneath the aggregate may select only plain columns; compute expressions over the aggregates' results instead ({ALLOWED})"
                )));
            }
            other => {
                return Err(aggregate_only(format!(
                    "{} beneath the aggregate is not allowed: only WHERE and plain column selections may come between the table and the aggregate ({ALLOWED})",
                    operator(other)
                )));
            }
        }
    }
    let LogicalPlan::Aggregate(agg) = chain[lowest] else {
        unreachable!("`lowest` is the position of an aggregate");
    };
    agg.aggr_expr.iter().map(contributors).collect()
}

/// The nodes of `plan` from the root down to its one leaf; refused if a node has several
/// inputs (joins, unions) or a subquery.
fn one_chain(plan: &LogicalPlan) -> Result<Vec<&LogicalPlan>, QueryError> {
    let mut chain = Vec::new();
    let mut node = plan;
    loop {
        let mut has_subquery = false;
        node.apply_subqueries(|_| {
            has_subquery = true;
            Ok(TreeNodeRecursion::Stop)
        })
        .map_err(internal)?;
        if has_subquery {
            return Err(aggregate_only(format!(
                "subqueries are not allowed under this agreement; {ALLOWED}"
            )));
        }
        chain.push(node);
        match node.inputs().as_slice() {
            [] => return Ok(chain),
            [input] => node = *input,
            _ => {
                return Err(aggregate_only(format!(
                    "the query must read the table once (no joins or unions); {ALLOWED}"
                )));
            }
        }
    }
}

/// The column `expr` is, possibly renamed.
fn plain_column(expr: &Expr) -> Option<&Column> {
    match expr {
        Expr::Column(column) => Some(column),
        Expr::Alias(alias) => plain_column(&alias.expr),
        _ => None,
    }
}

fn check_summary_functions(agg: &Aggregate) -> Result<(), QueryError> {
    for expr in &agg.aggr_expr {
        summary_function(expr)?;
    }
    Ok(())
}

/// `expr` as an allowed summary aggregate.
fn summary_function(expr: &Expr) -> Result<&AggregateFunction, QueryError> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let refused = |name: &str| {
        aggregate_only(format!(
            "aggregate `{name}` is not allowed; use one of {}",
            SUMMARY_AGGREGATES.join(", ")
        ))
    };
    match expr {
        Expr::AggregateFunction(f) if SUMMARY_AGGREGATES.contains(&f.func.name()) => Ok(f),
        Expr::AggregateFunction(f) => Err(refused(f.func.name())),
        _ => Err(refused("this expression")),
    }
}

/// The column whose non-NULL rows an aggregate of the lowest aggregate summarises, or None
/// when it counts the group's rows (`count(*)`, `count(1)`). Refuses every aggregate whose
/// contributing rows cannot be counted that way: an argument other than a plain column
/// (`sum(kwh * (id = 'x')::int)`, `max(CASE ...)`), a `FILTER`, an ordering, a null
/// treatment or a `DISTINCT` that changes which rows make the value.
fn contributors(expr: &Expr) -> Result<Option<Column>, QueryError> {
    let f = summary_function(expr)?;
    let name = f.func.name();
    let params = &f.params;
    if params.filter.is_some() {
        return Err(aggregate_only(format!(
            "a FILTER clause in `{name}` is not allowed: it can pick single rows out of a group; restrict the rows of the whole query with WHERE ({ALLOWED})"
        )));
    }
    if params.distinct && !DISTINCT_AGGREGATES.contains(&name) {
        return Err(aggregate_only(format!(
            "DISTINCT is allowed only in {}, not in `{name}`",
            DISTINCT_AGGREGATES.join(", ")
        )));
    }
    if params.null_treatment.is_some() {
        return Err(aggregate_only(format!(
            "IGNORE NULLS and RESPECT NULLS are not allowed in `{name}`"
        )));
    }
    let column = params.args.first().and_then(plain_column);
    let literal = |e: &Expr| matches!(e, Expr::Literal(..));
    // approx_percentile_cont(column, percentile [, centroids]); WITHIN GROUP (ORDER BY column)
    // is planned as the same arguments, ordered by the column
    let ordered_by_column = match params.order_by.as_slice() {
        [] => true,
        [sort] => name == "approx_percentile_cont" && plain_column(&sort.expr) == column,
        _ => false,
    };
    let shaped = match (name, params.args.as_slice()) {
        ("count", [arg]) if literal(arg) => return Ok(None),
        ("approx_percentile_cont", [_, rest @ ..]) => {
            (1..=2).contains(&rest.len()) && rest.iter().all(literal)
        }
        (_, [_]) => true,
        _ => false,
    };
    match column {
        Some(column) if shaped && ordered_by_column => Ok(Some(column.clone())),
        _ => Err(aggregate_only(format!(
            "`{name}` must summarise one plain column of the table (count also takes *), without expressions or ordering inside it; compute expressions over the aggregates' results instead ({ALLOWED})"
        ))),
    }
}

/// Suppresses what the lowest aggregate would release from fewer than `min_group` rows:
/// `HAVING count(*) >= min_group` drops small groups, and the value of each aggregate over
/// column `c` (`contributors`, one per aggregate) becomes NULL unless `count(c)` (its
/// non-NULL, contributing rows) is at least `min_group`. The aggregate's original columns are
/// projected back, so the plan above it is unchanged but for the nullability of its columns,
/// which is recomputed up to the root.
fn with_suppression(
    plan: LogicalPlan,
    min_group: u64,
    contributors: &[Option<Column>],
) -> Result<LogicalPlan, DataFusionError> {
    let mut done = false;
    plan.transform_up(|node| match node {
        // every node after the lowest aggregate is one of its ancestors: the plan is a chain
        node if done => node.recompute_schema().map(Transformed::yes),
        LogicalPlan::Aggregate(agg) => {
            done = true;
            suppressed(agg, min_group, contributors).map(Transformed::yes)
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn suppressed(
    agg: Aggregate,
    min_group: u64,
    contributors: &[Option<Column>],
) -> Result<LogicalPlan, DataFusionError> {
    let floor = lit(i64::try_from(min_group).unwrap_or(i64::MAX));
    let mut aggr_expr = agg.aggr_expr.clone();
    aggr_expr.push(count(lit(1i64)).alias(GROUP_SIZE));
    // one hidden count per column, shared by the aggregates over it
    let mut counted: Vec<&Column> = Vec::new();
    let mut guards = Vec::with_capacity(contributors.len());
    for column in contributors {
        guards.push(column.as_ref().map(|column| {
            let i = counted
                .iter()
                .position(|c| *c == column)
                .unwrap_or_else(|| {
                    counted.push(column);
                    let name = format!("{CONTRIBUTORS}{}", counted.len() - 1);
                    aggr_expr.push(count(Expr::Column(column.clone())).alias(name));
                    counted.len() - 1
                });
            format!("{CONTRIBUTORS}{i}")
        }));
    }
    let first_aggregate = agg.schema.fields().len() - agg.aggr_expr.len();
    let mut released = Vec::with_capacity(agg.schema.fields().len());
    for (i, (qualifier, field)) in agg.schema.iter().enumerate() {
        let value = Expr::Column(Column::from((qualifier, field)));
        let guard = i
            .checked_sub(first_aggregate)
            .and_then(|j| guards.get(j)?.as_ref());
        released.push(match guard {
            Some(count) => when(ident(count).gt_eq(floor.clone()), value)
                .end()?
                .alias_qualified(qualifier.cloned(), field.name()),
            None => value,
        });
    }
    let with_counts = Aggregate::try_new(agg.input, agg.group_expr, aggr_expr)?;
    LogicalPlanBuilder::from(LogicalPlan::Aggregate(with_counts))
        .filter(ident(GROUP_SIZE).gt_eq(floor))?
        .project(released)?
        .build()
}

/// The visible columns of the view that `plan` references, in the view's column order.
///
/// The view is a table scan in the consumer's plan (never inlined), so only the consumer's
/// references count. An over-approximation: any column reference whose name is a view column
/// counts, even if it resolves to a same-named alias.
pub fn columns_read(plan: &LogicalPlan, view: &Schema) -> Vec<String> {
    let mut names = BTreeSet::new();
    collect_column_refs(plan, &mut names);
    view.fields()
        .iter()
        .map(|f| f.name())
        .filter(|n| names.contains(*n))
        .cloned()
        .collect()
}

fn collect_column_refs(node: &LogicalPlan, names: &mut BTreeSet<String>) {
    for expr in node.expressions() {
        names.extend(expr.column_refs().into_iter().map(|c| c.name.clone()));
    }
    let _ = node.apply_subqueries(|subquery| {
        collect_column_refs(subquery, names);
        Ok(TreeNodeRecursion::Continue)
    });
    for input in node.inputs() {
        collect_column_refs(input, names);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use sluis_policy::enforcement::EnforcementPlan;

    use super::super::query::tests::{north_readings, north_sample, run, sorted_rows};
    use super::super::{ActiveGrant, DataPlaneConfig, QueryError, prepare};

    /// The minimum group size of the test agreements.
    const K: u64 = 10;

    /// Table `t` under an aggregate-only agreement with groups of at least [`K`] rows: 100
    /// rows of group `a`, named `p0` to `p99`, with `n` = 0..99; `v` is set in row `p7` only
    /// (42.5), `w` in rows `p0` to `p9` only (`n`, exactly K contributing rows).
    fn one_group() -> (tempfile::TempDir, ActiveGrant) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("grp", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("v", DataType::Float64, true),
            Field::new("w", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values((0..100).map(|_| "a"))),
                Arc::new(StringArray::from_iter_values(
                    (0..100).map(|i| format!("p{i}")),
                )),
                Arc::new(Int64Array::from_iter_values(0..100)),
                Arc::new(Float64Array::from_iter(
                    (0..100).map(|i| (i == 7).then_some(42.5)),
                )),
                Arc::new(Float64Array::from_iter(
                    (0..100).map(|i| (i < 10).then_some(i as f64)),
                )),
            ],
        )
        .unwrap();
        super::super::write_parquet(&path, &batch, Default::default());
        let mut grant = north_readings(path, dir.path());
        grant.table_name = "t".into();
        grant.plan = EnforcementPlan {
            aggregate_min_group_size: Some(K),
            ..Default::default()
        };
        (dir, grant)
    }

    /// The refusal of `sql` under `grant` by the aggregate-only rule, or what happened instead.
    async fn refusal(grant: &ActiveGrant, sql: &str) -> Result<String, String> {
        match prepare(grant, sql, &DataPlaneConfig::default()).await {
            Err(
                e @ QueryError::Refused {
                    rule: "aggregate-only",
                    ..
                },
            ) => Ok(e.to_string()),
            Err(e) => Err(format!("{sql}: refused by another rule: {e}")),
            Ok(_) => Err(format!("{sql}: accepted")),
        }
    }

    async fn rows(grant: &ActiveGrant, sql: &str) -> Vec<String> {
        sorted_rows(&run(grant, sql).await)
    }

    /// Every way found to make an aggregate read one row of a large group is refused: a
    /// FILTER, a CASE, arithmetic with a boolean, any expression inside the aggregate or
    /// beneath it, DISTINCT sums, aggregates of several columns, orderings and subqueries.
    #[tokio::test]
    async fn aggregates_cannot_single_out_a_row() {
        let (_dir, grant) = one_group();
        let mut wrong_answers = Vec::new();
        for sql in [
            "SELECT sum(n) FILTER (WHERE name = 'p7') FROM t",
            "SELECT count(*) FILTER (WHERE name = 'p7' AND n > 6) FROM t",
            "SELECT grp, max(n) FILTER (WHERE name = 'p7') FROM t GROUP BY grp",
            "SELECT max(CASE WHEN name = 'p7' THEN n END) FROM t",
            "SELECT sum(CASE WHEN name = 'p7' THEN n ELSE 0 END) FROM t",
            "SELECT sum(n * CAST(name = 'p7' AS INT)) FROM t",
            "SELECT sum(n * (name = 'p7')::int) FROM t",
            "SELECT avg(n + n) FROM t",
            "SELECT sum(CAST(n AS DOUBLE)) FROM t",
            "SELECT count(CASE WHEN name = 'p7' AND n > 6 THEN 1 END) FROM t",
            "SELECT sum(x) FROM (SELECT n * CAST(name = 'p7' AS INT) AS x FROM t)",
            "SELECT sum(x) FROM (SELECT CASE WHEN name = 'p7' THEN n END AS x FROM t) s",
            "SELECT sum(DISTINCT n) FROM t",
            "SELECT corr(n, w) FROM t",
            "SELECT grp FROM t GROUP BY grp HAVING sum(CASE WHEN name = 'p7' THEN n END) > 6",
            "SELECT grp, count(*) FROM t GROUP BY grp ORDER BY max(CASE WHEN name = 'p7' THEN n END)",
            "SELECT max(s) FROM (SELECT sum(CASE WHEN name = 'p7' THEN n END) AS s FROM t)",
            "SELECT approx_percentile_cont(n * (name = 'p7')::int, 0.99) FROM t",
            "SELECT approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY n * (name = 'p7')::int) FROM t",
            "SELECT max(n) FROM (SELECT n FROM t ORDER BY n DESC LIMIT 10)",
            "SELECT count(*) FROM t WHERE n = (SELECT max(n) FROM t)",
            "SELECT (SELECT max(n) FROM t WHERE name = 'p7'), count(*) FROM t",
            "SELECT grp, sum(n) OVER () FROM t",
            "SELECT n FROM t",
            "SELECT count(*)",
        ] {
            match refusal(&grant, sql).await {
                // says what is allowed, never echoes the query's values
                Ok(message) if message.contains("allowed") && !message.contains("p7") => {}
                Ok(message) => wrong_answers.push(format!("{sql}: {message}")),
                Err(wrong) => wrong_answers.push(wrong),
            }
        }
        assert!(wrong_answers.is_empty(), "{wrong_answers:#?}");
    }

    /// Each aggregate's value needs K contributing rows (its argument not NULL), whatever the
    /// size of its group: `v` is set in one row of 100, `w` in exactly K. WHERE beneath the
    /// aggregate narrows the groups before they are counted.
    #[tokio::test]
    async fn each_aggregate_needs_k_contributing_rows() {
        let (_dir, grant) = one_group();
        for (sql, expected) in [
            ("SELECT sum(v) FROM t", vec![""]),
            (
                "SELECT max(v), min(v), avg(v), median(v), count(v), approx_percentile_cont(v, 0.5) FROM t",
                vec!["|||||"],
            ),
            (
                "SELECT grp, max(v), count(*) FROM t GROUP BY grp",
                vec!["a||100"],
            ),
            (
                "SELECT count(DISTINCT v), count(DISTINCT n) FROM t",
                vec!["|100"],
            ),
            ("SELECT sum(v) + 0, count(*) FROM t", vec!["|100"]),
            ("SELECT grp FROM t GROUP BY grp HAVING max(v) > 42", vec![]),
            // exactly K contributing rows, and one fewer
            ("SELECT sum(w), count(w) FROM t", vec!["45.0|10"]),
            (
                "SELECT sum(w), count(w), count(*) FROM t WHERE n > 0",
                vec!["||99"],
            ),
            // WHERE counts before the floor: one row is a group of one
            ("SELECT max(n) FROM t WHERE name = 'p7'", vec![]),
            ("SELECT grp, sum(n) FROM t WHERE n < 9 GROUP BY grp", vec![]),
            (
                "SELECT name = 'p7' AS me, max(n) FROM t GROUP BY name = 'p7'",
                vec!["false|99"],
            ),
            // results of small groups never reach ORDER BY, LIMIT or an outer aggregate
            (
                "SELECT name, count(*) FROM t GROUP BY name ORDER BY 2 DESC LIMIT 1",
                vec![],
            ),
            (
                "SELECT max(s), count(*) FROM (SELECT name, sum(n) AS s FROM t GROUP BY name)",
                vec!["|0"],
            ),
            (
                "SELECT grp, name, sum(n) FROM t GROUP BY ROLLUP(grp, name)",
                vec!["a||4950", "||4950"],
            ),
        ] {
            assert_eq!(rows(&grant, sql).await, expected, "{sql}");
        }
    }

    /// What a dashboard asks keeps working: summaries per group, HAVING, ORDER BY, window
    /// functions over the groups, percentiles (their extremes are the minimum and maximum).
    #[tokio::test]
    async fn summaries_of_large_groups_are_released() {
        let (_dir, grant) = one_group();
        for (sql, expected) in [
            (
                "SELECT grp, count(*), count(1), sum(n), avg(n), min(n), max(n), count(DISTINCT n) FROM t GROUP BY grp",
                "a|100|100|4950|49.5|0|99|100",
            ),
            (
                "SELECT s.grp, sum(s.m) AS total FROM (SELECT grp, n AS m FROM t WHERE n >= 50) s GROUP BY s.grp HAVING count(*) > 1 ORDER BY total",
                "a|3725",
            ),
            (
                "SELECT grp, sum(n), rank() OVER (ORDER BY sum(n)) FROM t GROUP BY grp",
                "a|4950|1",
            ),
            (
                "SELECT approx_percentile_cont(n, 1.0), approx_percentile_cont(0.0) WITHIN GROUP (ORDER BY n) FROM t",
                "99.0|0.0",
            ),
        ] {
            assert_eq!(rows(&grant, sql).await, [expected], "{sql}");
        }
    }

    /// The usual dashboard over the sample readings gives the same answers with and without
    /// aggregate-only, and the columns of the answer are the same.
    #[tokio::test]
    async fn dashboards_over_readings_are_unchanged() {
        let (_dir, open, _) = north_sample(20_000, 23);
        let mut aggregated = open.clone();
        aggregated.plan.aggregate_min_group_size = Some(50);
        for sql in [
            "SELECT region, count(*) AS n, round(sum(kwh), 3), round(avg(kwh), 6), min(kwh), max(kwh) FROM readings GROUP BY region",
            "SELECT date_trunc('month', reading_time) AS month, tariff, count(*), round(avg(kwh), 6) FROM readings GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT count(DISTINCT meter_id), approx_distinct(meter_id), median(kwh) FROM readings WHERE kwh > 1",
        ] {
            let expected = run(&open, sql).await;
            let got = run(&aggregated, sql).await;
            assert!(!expected.is_empty(), "{sql}");
            assert_eq!(sorted_rows(&got), sorted_rows(&expected), "{sql}");
            let names = |b: &[RecordBatch]| {
                let schema = b[0].schema();
                let fields = schema.fields().iter();
                fields.map(|f| f.name().clone()).collect::<Vec<_>>()
            };
            assert_eq!(names(&got), names(&expected), "{sql}");
        }
    }
}
