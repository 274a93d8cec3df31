//! Turning an [`EnforcementPlan`] into DataFusion logical plans.
//!
//! Two layers:
//! - [`view_plan`] builds the *view* the consumer queries: `scan(source) → Filter(row filters)
//!   → Projection(visible columns, masks aliased to the original names)`. It is served as the
//!   only table of the session by [`super::barrier::EnforcedTable`], so the raw source is never
//!   addressable; DataFusion's optimizer pushes the row filter and the projection into the
//!   source scan, but never the consumer's predicates into the view (see [`super::barrier`]).
//! - [`apply_query_rules`] wraps the consumer's planned query with the rules that depend on
//!   the query's shape: aggregate-only with a minimum group size, and a row limit.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, cast, ident, lit,
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

/// The names of the source columns the consumer must never see.
pub fn hidden_columns(schema: &Schema, plan: &EnforcementPlan) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|name| !plan.columns.allows(name))
        .cloned()
        .collect()
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

/// Aggregate functions allowed in aggregate-only mode: each summarises its group. Functions
/// that return the group's members (`array_agg`, `string_agg`, `first_value`, ...) are not.
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

/// Wraps the consumer's planned query with the agreement's query-shape rules.
pub fn apply_query_rules(
    plan: LogicalPlan,
    rules: &EnforcementPlan,
) -> Result<LogicalPlan, QueryError> {
    let mut plan = plan;
    if let Some(min_group) = rules.aggregate_min_group_size {
        check_aggregate_only(&plan)?;
        plan = with_group_size_floor(plan, min_group).map_err(internal)?;
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

/// Aggregate-only: the plan must be one chain from the result down to the view with an
/// aggregate on it, no joins, unions, window functions or subqueries (they could repeat rows
/// to inflate group sizes or return rows unaggregated), and only summary aggregates.
fn check_aggregate_only(plan: &LogicalPlan) -> Result<(), QueryError> {
    let mut node = plan;
    let mut aggregated = false;
    loop {
        let mut has_subquery = false;
        node.apply_subqueries(|_| {
            has_subquery = true;
            Ok(TreeNodeRecursion::Stop)
        })
        .map_err(internal)?;
        if has_subquery {
            return Err(aggregate_only(
                "subqueries are not allowed under this agreement",
            ));
        }
        match node {
            LogicalPlan::TableScan(_) if aggregated => return Ok(()),
            LogicalPlan::TableScan(_) | LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                return Err(aggregate_only(
                    "this agreement allows only aggregate queries (GROUP BY with count, sum, avg, ...)",
                ));
            }
            LogicalPlan::Aggregate(agg) => {
                check_summary_functions(agg)?;
                aggregated = true;
            }
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Distinct(_) => {}
            other => {
                return Err(aggregate_only(format!(
                    "{} is not allowed under this agreement; use one aggregate over the table",
                    other
                        .display()
                        .to_string()
                        .split(':')
                        .next()
                        .unwrap_or("this operator")
                )));
            }
        }
        match node.inputs().as_slice() {
            [input] => node = *input,
            _ => return Err(aggregate_only("the query must read the table once")),
        }
    }
}

fn check_summary_functions(agg: &Aggregate) -> Result<(), QueryError> {
    for expr in &agg.aggr_expr {
        let expr = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let name = match expr {
            Expr::AggregateFunction(f) => f.func.name().to_string(),
            _ => "this expression".to_string(),
        };
        if !SUMMARY_AGGREGATES.contains(&name.as_str()) {
            return Err(aggregate_only(format!(
                "aggregate `{name}` is not allowed; use one of {}",
                SUMMARY_AGGREGATES.join(", ")
            )));
        }
    }
    Ok(())
}

/// Adds `HAVING count(*) >= min_group` to the lowest aggregate (the one over the view's rows)
/// and projects its original columns back, so the plan above it is unchanged.
fn with_group_size_floor(
    plan: LogicalPlan,
    min_group: u64,
) -> Result<LogicalPlan, DataFusionError> {
    let mut done = false;
    plan.transform_up(|node| match node {
        LogicalPlan::Aggregate(agg) if !done => {
            done = true;
            Ok(Transformed::yes(floored(agg, min_group)?))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn floored(agg: Aggregate, min_group: u64) -> Result<LogicalPlan, DataFusionError> {
    let original: Vec<Expr> = agg
        .schema
        .iter()
        .map(|(qualifier, field)| Expr::Column(Column::from((qualifier, field))))
        .collect();
    let mut aggr_expr = agg.aggr_expr.clone();
    aggr_expr.push(count(lit(1i64)).alias(GROUP_SIZE));
    let with_size = Aggregate::try_new(agg.input.clone(), agg.group_expr.clone(), aggr_expr)?;
    let floor = i64::try_from(min_group).unwrap_or(i64::MAX);
    LogicalPlanBuilder::from(LogicalPlan::Aggregate(with_size))
        .filter(ident(GROUP_SIZE).gt_eq(lit(floor)))?
        .project(original)?
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
