//! Enforcement plans: what the data plane must apply beneath every query of an agreement.
//!
//! An [`EnforcementPlan`] is compiled from an agreement (see [`compile`]) and is the only
//! thing the data plane needs to know about ODRL. It is deliberately engine-neutral: the
//! connector turns it into DataFusion logical plan nodes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A literal value a row filter compares a column with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string (also used for dates and times in ISO 8601 form).
    String(String),
}

/// Comparison of a column value with the filter's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FilterOperator {
    /// `column = values[0]`
    Eq,
    /// `column <> values[0]`
    Neq,
    /// `column < values[0]`
    Lt,
    /// `column <= values[0]`
    Lteq,
    /// `column > values[0]`
    Gt,
    /// `column >= values[0]`
    Gteq,
    /// `column IN (values)`
    IsAnyOf,
    /// `column NOT IN (values)`
    IsNoneOf,
}

/// Only rows for which `column <operator> values` holds are visible. Rows where the column
/// is NULL are not visible (a filter never lets an unknown value through).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowFilter {
    /// Column the filter reads.
    pub column: String,
    /// How the column is compared.
    pub operator: FilterOperator,
    /// One value for the ordering operators, one or more for the set operators.
    pub values: Vec<Scalar>,
}

/// Which columns of the dataset are visible at all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "mode", content = "columns")]
pub enum ColumnAccess {
    /// Every column is visible (masks still apply).
    #[default]
    All,
    /// Only these columns are visible.
    Allow(Vec<String>),
    /// Every column but these is visible.
    Deny(Vec<String>),
}

impl ColumnAccess {
    /// Whether `column` is visible under this rule.
    pub fn allows(&self, column: &str) -> bool {
        match self {
            ColumnAccess::All => true,
            ColumnAccess::Allow(cols) => cols.iter().any(|c| c == column),
            ColumnAccess::Deny(cols) => !cols.iter().any(|c| c == column),
        }
    }
}

/// How a masked column is rewritten before the consumer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MaskKind {
    /// Replaced by a hex SHA-256 of its text form (joinable, not readable).
    Hash,
    /// Replaced by NULL.
    Redact,
}

/// A column the consumer sees only in masked form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMask {
    /// Column to mask.
    pub column: String,
    /// How to mask it.
    pub kind: MaskKind,
}

/// Everything the data plane must enforce for one agreement.
///
/// The default plan enforces nothing: it is what an unconstrained `use` permission compiles to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementPlan {
    /// All filters must hold for a row to be visible (conjunction).
    pub row_filters: Vec<RowFilter>,
    /// Which columns are visible.
    pub columns: ColumnAccess,
    /// Columns seen only masked.
    pub masks: Vec<ColumnMask>,
    /// When set, only aggregate queries are allowed and groups smaller than this are suppressed.
    pub aggregate_min_group_size: Option<u64>,
    /// Upper bound on rows returned by one query.
    pub max_rows_per_query: Option<u64>,
    /// Upper bound on the number of queries over the agreement's lifetime.
    pub max_queries: Option<u64>,
    /// No query before this instant.
    pub not_before: Option<DateTime<Utc>>,
    /// No query after this instant.
    pub not_after: Option<DateTime<Utc>>,
    /// When set, a query must declare one of these purposes (IRIs or profile terms).
    pub purposes: Option<Vec<String>>,
}
