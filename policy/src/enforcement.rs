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
    /// When set, only aggregate queries are allowed, and groups and aggregate values computed
    /// from fewer rows than this are suppressed (see PROFILE.md, Aggregate-only).
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
    /// Prohibitions and obligations of actions other than reading (e.g. `distribute`,
    /// `compensate`), as `prohibition distribute` / `obligation compensate`. The data plane
    /// cannot enforce them and they do not widen what a query may read; the consumer is
    /// bound by them through the agreement. Listed so that nothing is dropped silently.
    #[serde(default)]
    pub out_of_band: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Compiling an agreement (the Sluis profile, see PROFILE.md)
// ---------------------------------------------------------------------------------------

use crate::model::{AtomicConstraint, Constraint, LogicalOperator, Operator, Policy, Rule, Value};
use crate::value::{parse_datetime, parse_duration};
use crate::vocab::{self, ODRL, SLUIS, XSD};

/// An agreement the data plane could not enforce completely. Compiling never drops a
/// constraint: whatever it cannot express is this error (ignoring it would grant access).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CompileError {
    /// Where in the agreement, e.g. `permission[0].constraint[1]`.
    pub path: String,
    /// What cannot be enforced.
    pub message: String,
}

fn cerr(path: &str, message: impl Into<String>) -> CompileError {
    CompileError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Compiles an agreement into the plan the data plane applies beneath every query.
///
/// The agreement must have exactly one permission whose action is `use` or `read`; its
/// constraints and its `sluis:hash`/`sluis:redact` duties become the plan. A prohibition of
/// reading may deny columns; prohibitions and obligations of other actions are listed in
/// `out_of_band`. Everything else the data plane cannot enforce is an error.
pub fn compile(agreement: &Policy) -> Result<EnforcementPlan, CompileError> {
    let readable: Vec<(usize, &Rule)> = agreement
        .permissions
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.actions()
                .any(|a| a.iri == vocab::odrl("use") || a.iri == vocab::odrl("read"))
        })
        .collect();
    let (index, permission) = match readable.as_slice() {
        [one] => *one,
        [] => {
            return Err(cerr(
                "permission",
                "no permission to use or read the dataset",
            ));
        }
        _ => {
            return Err(cerr(
                "permission",
                "more than one use/read permission: their disjunction cannot be enforced as one plan",
            ));
        }
    };
    let path = format!("permission[{index}]");
    if permission.actions().any(|a| !a.refinement.is_empty()) {
        return Err(cerr(
            &format!("{path}.action"),
            "action refinements are not enforceable",
        ));
    }
    let mut plan = EnforcementPlan::default();
    let mut b = Builder {
        plan: &mut plan,
        allow: None,
        deny: Vec::new(),
        timestamp: agreement.timestamp,
    };
    for (i, c) in permission.constraints.iter().enumerate() {
        b.constraint(c, &format!("{path}.constraint[{i}]"))?;
    }
    for (i, d) in permission.duties.iter().enumerate() {
        b.duty(d, &format!("{path}.duty[{i}]"))?;
    }
    for (i, r) in agreement.prohibitions.iter().enumerate() {
        b.prohibition(r, &format!("prohibition[{i}]"))?;
    }
    for (i, r) in agreement.obligations.iter().enumerate() {
        let action = out_of_band_action(r, &format!("obligation[{i}]"))?;
        b.plan.out_of_band.push(format!("obligation {action}"));
    }
    b.finish();
    Ok(plan)
}

struct Builder<'a> {
    plan: &'a mut EnforcementPlan,
    allow: Option<Vec<String>>,
    deny: Vec<String>,
    timestamp: Option<DateTime<Utc>>,
}

impl Builder<'_> {
    fn constraint(&mut self, c: &Constraint, path: &str) -> Result<(), CompileError> {
        match c {
            Constraint::Atomic(a) => self.atomic(a, path),
            Constraint::Logical(l) => match (l.operator, l.operands.as_slice()) {
                // a conjunction (in any order) is the plan's own conjunction
                (LogicalOperator::And | LogicalOperator::AndSequence, ops) | (_, ops @ [_]) => {
                    let key = l.operator.term();
                    for (i, o) in ops.iter().enumerate() {
                        self.constraint(o, &format!("{path}.{key}[{i}]"))?;
                    }
                    Ok(())
                }
                (op, _) => Err(cerr(
                    path,
                    format!(
                        "'{}' over several constraints is not enforceable by the data plane; \
                         use isAnyOf on one row operand or separate agreements",
                        op.term()
                    ),
                )),
            },
        }
    }

    fn atomic(&mut self, a: &AtomicConstraint, path: &str) -> Result<(), CompileError> {
        let left = a.left_operand.as_str();
        if let Some(column) = left.strip_prefix(vocab::SLUIS_ROW_PREFIX) {
            return self.row_filter(column, a, path);
        }
        match (left.strip_prefix(SLUIS), left.strip_prefix(ODRL)) {
            (Some("column"), _) => self.columns(a, path),
            (Some("aggregateOnly"), _) => {
                let n = bound(a, path, Operator::Gteq)?;
                let cur = self.plan.aggregate_min_group_size.unwrap_or(0);
                self.plan.aggregate_min_group_size = Some(cur.max(n.max(1)));
                Ok(())
            }
            (Some("rowCount"), _) => {
                let n = bound(a, path, Operator::Lteq)?;
                self.plan.max_rows_per_query = Some(min_opt(self.plan.max_rows_per_query, n));
                Ok(())
            }
            (_, Some("count")) => {
                let n = bound(a, path, Operator::Lteq)?;
                self.plan.max_queries = Some(min_opt(self.plan.max_queries, n));
                Ok(())
            }
            (_, Some("dateTime")) => self.date_time(a, path),
            (_, Some("elapsedTime")) => self.elapsed(a, path),
            (_, Some("purpose")) => self.purpose(a, path),
            _ => Err(cerr(
                path,
                format!(
                    "leftOperand '{}' is not enforceable by the data plane",
                    vocab::compact(left)
                ),
            )),
        }
    }

    fn row_filter(
        &mut self,
        column: &str,
        a: &AtomicConstraint,
        path: &str,
    ) -> Result<(), CompileError> {
        let operator = match a.operator {
            Operator::Eq => FilterOperator::Eq,
            Operator::Neq => FilterOperator::Neq,
            Operator::Lt => FilterOperator::Lt,
            Operator::Lteq => FilterOperator::Lteq,
            Operator::Gt => FilterOperator::Gt,
            Operator::Gteq => FilterOperator::Gteq,
            Operator::IsAnyOf => FilterOperator::IsAnyOf,
            Operator::IsNoneOf => FilterOperator::IsNoneOf,
            other => {
                return Err(cerr(
                    &format!("{path}.operator"),
                    format!(
                        "operator '{}' is not supported on a row operand",
                        other.term()
                    ),
                ));
            }
        };
        let values = a
            .right_operand
            .members()
            .iter()
            .map(|v| scalar(v, &format!("{path}.rightOperand")))
            .collect::<Result<Vec<_>, _>>()?;
        let set_op = matches!(operator, FilterOperator::IsAnyOf | FilterOperator::IsNoneOf);
        if values.is_empty() || (!set_op && values.len() != 1) {
            return Err(cerr(
                &format!("{path}.rightOperand"),
                format!("'{}' needs exactly one value", a.operator.term()),
            ));
        }
        self.plan.row_filters.push(RowFilter {
            column: column.to_string(),
            operator,
            values,
        });
        Ok(())
    }

    fn columns(&mut self, a: &AtomicConstraint, path: &str) -> Result<(), CompileError> {
        let cols = column_list(&a.right_operand, path)?;
        match a.operator {
            Operator::IsNoneOf | Operator::Neq => self.deny.extend(cols),
            Operator::IsPartOf | Operator::IsAnyOf | Operator::Eq => {
                self.allow = Some(match self.allow.take() {
                    None => cols,
                    Some(prev) => prev.into_iter().filter(|c| cols.contains(c)).collect(),
                });
            }
            other => {
                return Err(cerr(
                    &format!("{path}.operator"),
                    format!(
                        "operator '{}' is not supported on sluis:column (use isNoneOf or isPartOf)",
                        other.term()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn date_time(&mut self, a: &AtomicConstraint, path: &str) -> Result<(), CompileError> {
        let text = a.right_operand.text().unwrap_or_default();
        if let Some(day) = crate::value::parse_date(text) {
            return self.date(day, a.operator, path);
        }
        let t = parse_datetime(text).ok_or_else(|| {
            cerr(
                &format!("{path}.rightOperand"),
                format!("'{text}' is not an xsd:dateTime"),
            )
        })?;
        let tick = chrono::TimeDelta::nanoseconds(1);
        match a.operator {
            Operator::Gteq => self.not_before(t),
            Operator::Gt => self.not_before(t + tick),
            Operator::Lteq => self.not_after(t),
            Operator::Lt => self.not_after(t - tick),
            other => return Err(unsupported_op(other, "dateTime", path)),
        }
        Ok(())
    }

    /// Bounds by a whole UTC day, as the evaluator reads a date (`lteq` includes the day).
    fn date(
        &mut self,
        day: chrono::NaiveDate,
        op: Operator,
        path: &str,
    ) -> Result<(), CompileError> {
        let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let next = start + chrono::TimeDelta::days(1);
        let tick = chrono::TimeDelta::nanoseconds(1);
        match op {
            Operator::Gteq => self.not_before(start),
            Operator::Gt => self.not_before(next),
            Operator::Lteq => self.not_after(next - tick),
            Operator::Lt => self.not_after(start - tick),
            other => return Err(unsupported_op(other, "dateTime", path)),
        }
        Ok(())
    }

    fn elapsed(&mut self, a: &AtomicConstraint, path: &str) -> Result<(), CompileError> {
        let text = a.right_operand.text().unwrap_or_default();
        let d = parse_duration(text).ok_or_else(|| {
            cerr(
                &format!("{path}.rightOperand"),
                format!("'{text}' is not an xsd:duration"),
            )
        })?;
        let start = self.timestamp.ok_or_else(|| {
            cerr(
                path,
                "elapsedTime needs the agreement's timestamp to start from",
            )
        })?;
        let end = d
            .after(start)
            .ok_or_else(|| cerr(&format!("{path}.rightOperand"), "duration out of range"))?;
        match a.operator {
            Operator::Lteq => self.not_after(end),
            Operator::Lt => self.not_after(end - chrono::TimeDelta::nanoseconds(1)),
            other => return Err(unsupported_op(other, "elapsedTime", path)),
        }
        Ok(())
    }

    fn purpose(&mut self, a: &AtomicConstraint, path: &str) -> Result<(), CompileError> {
        if !matches!(a.operator, Operator::Eq | Operator::IsAnyOf) {
            return Err(unsupported_op(a.operator, "purpose", path));
        }
        let purposes: Vec<String> = a
            .right_operand
            .members()
            .iter()
            .filter_map(|v| v.text().map(str::to_string))
            .collect();
        if purposes.is_empty() {
            return Err(cerr(&format!("{path}.rightOperand"), "no purpose given"));
        }
        self.plan.purposes = Some(match self.plan.purposes.take() {
            None => purposes,
            Some(prev) => prev.into_iter().filter(|p| purposes.contains(p)).collect(),
        });
        Ok(())
    }

    fn duty(&mut self, d: &Rule, path: &str) -> Result<(), CompileError> {
        let action = d.action.as_ref().map_or("", |a| a.iri.as_str());
        let kind = match action.strip_prefix(SLUIS) {
            Some("hash") => MaskKind::Hash,
            Some("redact") => MaskKind::Redact,
            _ => {
                return Err(cerr(
                    &format!("{path}.action"),
                    format!(
                        "duty '{}' is not enforceable by the data plane (only sluis:hash and sluis:redact)",
                        vocab::compact(action)
                    ),
                ));
            }
        };
        let columns = match d.constraints.as_slice() {
            [Constraint::Atomic(a)]
                if a.left_operand == vocab::sluis("column")
                    && matches!(a.operator, Operator::IsAnyOf | Operator::Eq) =>
            {
                column_list(&a.right_operand, &format!("{path}.constraint[0]"))?
            }
            _ => {
                return Err(cerr(
                    path,
                    "a mask duty needs exactly one constraint 'sluis:column isAnyOf [columns]'",
                ));
            }
        };
        if !d.consequences.is_empty()
            || d.target.is_some()
            || d.action.as_ref().is_some_and(|a| !a.refinement.is_empty())
            || !d.composite_actions.is_empty()
        {
            return Err(cerr(
                path,
                "a mask duty cannot have a target, refinement or consequence",
            ));
        }
        for column in columns {
            // the strongest mask wins when two duties name the same column
            match self.plan.masks.iter_mut().find(|m| m.column == column) {
                Some(m) if kind == MaskKind::Redact => m.kind = MaskKind::Redact,
                Some(_) => {}
                None => self.plan.masks.push(ColumnMask { column, kind }),
            }
        }
        Ok(())
    }

    /// A prohibition of reading may only deny columns (`sluis:column isAnyOf [..]`);
    /// prohibitions of other actions are out of band.
    fn prohibition(&mut self, r: &Rule, path: &str) -> Result<(), CompileError> {
        let Some(action) = &r.action else {
            return Err(cerr(
                path,
                "a prohibition of every action leaves nothing to read",
            ));
        };
        let read = vocab::odrl("read");
        if !r
            .actions()
            .any(|a| vocab::action_included_in(&read, &a.iri))
        {
            let action = out_of_band_action(r, path)?;
            self.plan.out_of_band.push(format!("prohibition {action}"));
            return Ok(());
        }
        match r.constraints.as_slice() {
            [Constraint::Atomic(a)]
                if a.left_operand == vocab::sluis("column")
                    && matches!(a.operator, Operator::IsAnyOf | Operator::Eq)
                    && action.refinement.is_empty()
                    && r.composite_actions.is_empty() =>
            {
                let cols = column_list(&a.right_operand, &format!("{path}.constraint[0]"))?;
                self.deny.extend(cols);
                Ok(())
            }
            [] => Err(cerr(
                path,
                format!(
                    "the agreement prohibits '{}' outright",
                    vocab::compact(&action.iri)
                ),
            )),
            _ => Err(cerr(
                path,
                "a prohibition of use/read is enforceable only as one constraint 'sluis:column isAnyOf [columns]'",
            )),
        }
    }

    fn not_before(&mut self, t: DateTime<Utc>) {
        self.plan.not_before = Some(self.plan.not_before.map_or(t, |p| p.max(t)));
    }

    fn not_after(&mut self, t: DateTime<Utc>) {
        self.plan.not_after = Some(self.plan.not_after.map_or(t, |p| p.min(t)));
    }

    fn finish(&mut self) {
        let deny = std::mem::take(&mut self.deny);
        self.plan.columns = match self.allow.take() {
            Some(allow) => {
                ColumnAccess::Allow(allow.into_iter().filter(|c| !deny.contains(c)).collect())
            }
            None if deny.is_empty() => ColumnAccess::All,
            None => {
                let mut d = deny;
                d.dedup();
                ColumnAccess::Deny(d)
            }
        };
    }
}

/// The compact action of a rule the data plane leaves to the agreement.
fn out_of_band_action(r: &Rule, path: &str) -> Result<String, CompileError> {
    if r.action.is_none() {
        return Err(cerr(
            path,
            "a rule without an action applies to reading too",
        ));
    }
    let names: Vec<String> = r.actions().map(|a| vocab::compact(&a.iri)).collect();
    Ok(names.join("+"))
}

fn unsupported_op(op: Operator, left: &str, path: &str) -> CompileError {
    cerr(
        &format!("{path}.operator"),
        format!("operator '{}' is not supported on {left}", op.term()),
    )
}

fn min_opt(cur: Option<u64>, n: u64) -> u64 {
    cur.map_or(n, |c| c.min(n))
}

/// A non-negative integer bound with `expected` (or its strict twin, adjusted by one).
fn bound(a: &AtomicConstraint, path: &str, expected: Operator) -> Result<u64, CompileError> {
    let text = a.right_operand.text().unwrap_or_default().trim();
    let n: u64 = text.parse().map_err(|_| {
        cerr(
            &format!("{path}.rightOperand"),
            format!("'{text}' is not a non-negative integer"),
        )
    })?;
    match (expected, a.operator) {
        (Operator::Lteq, Operator::Lteq) | (Operator::Gteq, Operator::Gteq) => Ok(n),
        (Operator::Lteq, Operator::Lt) => Ok(n.saturating_sub(1)),
        (Operator::Gteq, Operator::Gt) => Ok(n.saturating_add(1)),
        (_, other) => Err(unsupported_op(
            other,
            &vocab::compact(&a.left_operand),
            path,
        )),
    }
}

fn column_list(v: &Value, path: &str) -> Result<Vec<String>, CompileError> {
    let mut out = Vec::new();
    for (i, m) in v.members().iter().enumerate() {
        let name = m.text().unwrap_or_default();
        if !vocab::is_column_name(name) {
            return Err(cerr(
                &format!("{path}.rightOperand[{i}]"),
                format!("'{name}' is not a column name"),
            ));
        }
        if !out.iter().any(|c| c == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err(cerr(&format!("{path}.rightOperand"), "no columns given"));
    }
    Ok(out)
}

/// A row-filter value: plain strings stay strings; typed literals become their scalar.
fn scalar(v: &Value, path: &str) -> Result<Scalar, CompileError> {
    let bad = |msg: String| cerr(path, msg);
    match v {
        Value::Literal { lexical, datatype } => {
            let local = datatype
                .as_deref()
                .map(|d| d.strip_prefix(XSD).unwrap_or(d));
            match local {
                None | Some("string" | "date" | "time") => Ok(Scalar::String(lexical.clone())),
                Some(
                    "integer" | "int" | "long" | "short" | "nonNegativeInteger" | "positiveInteger",
                ) => lexical
                    .trim()
                    .parse()
                    .map(Scalar::Int)
                    .map_err(|_| bad(format!("'{lexical}' is not an integer"))),
                Some("decimal" | "double" | "float") => lexical
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Scalar::Float)
                    .ok_or_else(|| bad(format!("'{lexical}' is not a number"))),
                Some("boolean") => match lexical.trim() {
                    "true" | "1" => Ok(Scalar::Bool(true)),
                    "false" | "0" => Ok(Scalar::Bool(false)),
                    _ => Err(bad(format!("'{lexical}' is not a boolean"))),
                },
                Some("dateTime" | "dateTimeStamp") => parse_datetime(lexical)
                    .map(|t| Scalar::String(t.to_rfc3339()))
                    .ok_or_else(|| bad(format!("'{lexical}' is not an xsd:dateTime"))),
                Some(other) => Err(bad(format!(
                    "datatype '{other}' is not supported in a row filter"
                ))),
            }
        }
        Value::Iri(i) => Ok(Scalar::String(i.clone())),
        Value::List(_) => Err(bad("nested lists are not allowed".into())),
    }
}
