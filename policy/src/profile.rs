//! The Sluis ODRL profile (see `PROFILE.md`): its IRIs, its JSON-LD context, and builders for
//! the constraints and duties the data plane enforces, so that a connector can write offers
//! in code rather than JSON.
//!
//! ```
//! use sluis_policy::{profile, Operator, Policy, PolicyKind, Rule, Action, Value, vocab};
//! let mut permission = Rule::new(Action::new(vocab::odrl("use")));
//! permission.constraints = vec![
//!     profile::row_filter("region", Operator::Eq, Value::string("north")),
//!     profile::deny_columns(&["customer_name"]),
//! ];
//! let offer = profile::offer("urn:sluis:offer:meter-readings-north", vec![permission]);
//! let plan = sluis_policy::enforcement::compile(&offer).unwrap();
//! assert_eq!(plan.row_filters.len(), 1);
//! ```

use chrono::{DateTime, SecondsFormat, Utc};

use crate::enforcement::MaskKind;
use crate::model::*;
use crate::vocab::{self, odrl, sluis};

pub use crate::vocab::{SLUIS as NAMESPACE, SLUIS_PROFILE as PROFILE};

/// The profile's JSON-LD context (`context/sluis-profile.jsonld`).
pub const CONTEXT_JSONLD: &str = include_str!("../context/sluis-profile.jsonld");

fn atomic(left: String, operator: Operator, right: Value) -> Constraint {
    Constraint::Atomic(AtomicConstraint {
        uid: None,
        left_operand: left,
        operator,
        right_operand: right,
        unit: None,
    })
}

fn strings(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| Value::string(*s)).collect())
}

fn integer(n: u64) -> Value {
    Value::typed(n.to_string(), "integer")
}

/// An offer conforming to the profile, with these permissions.
pub fn offer(id: &str, permissions: Vec<Rule>) -> Policy {
    Policy {
        kind: PolicyKind::Offer,
        uid: Some(id.to_string()),
        target: None,
        assigner: None,
        assignee: None,
        timestamp: None,
        profiles: vec![PROFILE.to_string()],
        conflict: None,
        permissions,
        prohibitions: Vec::new(),
        obligations: Vec::new(),
    }
}

/// `sluis:row.<column> <operator> value`: only rows where the column satisfies it.
pub fn row_filter(column: &str, operator: Operator, value: Value) -> Constraint {
    atomic(
        format!("{}{column}", vocab::SLUIS_ROW_PREFIX),
        operator,
        value,
    )
}

/// `sluis:column isNoneOf [..]`: these columns are never read.
pub fn deny_columns(columns: &[&str]) -> Constraint {
    atomic(sluis("column"), Operator::IsNoneOf, strings(columns))
}

/// `sluis:column isPartOf [..]`: only these columns are read.
pub fn allow_columns(columns: &[&str]) -> Constraint {
    atomic(sluis("column"), Operator::IsPartOf, strings(columns))
}

/// A duty `sluis:hash`/`sluis:redact` on these columns.
pub fn mask(kind: MaskKind, columns: &[&str]) -> Rule {
    let action = match kind {
        MaskKind::Hash => sluis("hash"),
        MaskKind::Redact => sluis("redact"),
    };
    let mut duty = Rule::new(Action::new(action));
    duty.constraints = vec![atomic(sluis("column"), Operator::IsAnyOf, strings(columns))];
    duty
}

/// `sluis:aggregateOnly gteq n`: aggregate queries only, groups of at least `n` rows.
pub fn aggregate_only(min_group_size: u64) -> Constraint {
    atomic(
        sluis("aggregateOnly"),
        Operator::Gteq,
        integer(min_group_size),
    )
}

/// `sluis:rowCount lteq n`: at most `n` rows per query.
pub fn max_rows_per_query(n: u64) -> Constraint {
    atomic(sluis("rowCount"), Operator::Lteq, integer(n))
}

/// `odrl:count lteq n`: at most `n` queries.
pub fn max_queries(n: u64) -> Constraint {
    atomic(odrl("count"), Operator::Lteq, integer(n))
}

/// `odrl:dateTime gteq t`.
pub fn not_before(t: DateTime<Utc>) -> Constraint {
    atomic(odrl("dateTime"), Operator::Gteq, date_time(t))
}

/// `odrl:dateTime lteq t`.
pub fn not_after(t: DateTime<Utc>) -> Constraint {
    atomic(odrl("dateTime"), Operator::Lteq, date_time(t))
}

/// `odrl:elapsedTime lteq d` (an xsd:duration such as `P30D`), counted from the agreement.
pub fn valid_for(duration: &str) -> Constraint {
    atomic(
        odrl("elapsedTime"),
        Operator::Lteq,
        Value::typed(duration, "duration"),
    )
}

/// `odrl:purpose isAnyOf [..]` (IRIs).
pub fn purposes(iris: &[&str]) -> Constraint {
    let list = iris.iter().map(|i| Value::Iri(i.to_string())).collect();
    atomic(odrl("purpose"), Operator::IsAnyOf, Value::List(list))
}

fn date_time(t: DateTime<Utc>) -> Value {
    Value::typed(t.to_rfc3339_opts(SecondsFormat::AutoSi, true), "dateTime")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforcement::{ColumnAccess, compile};

    #[test]
    fn builders_compile_to_the_plan_the_profile_describes() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let mut permission = Rule::new(Action::new(odrl("use")));
        permission.constraints = vec![
            row_filter("region", Operator::IsAnyOf, strings(&["north", "east"])),
            allow_columns(&["region", "kwh", "meter_id"]),
            aggregate_only(10),
            max_rows_per_query(1000),
            max_queries(50),
            not_before(t0),
            valid_for("P90D"),
            purposes(&["https://w3id.org/dpv#ResearchAndDevelopment"]),
        ];
        permission.duties = vec![mask(MaskKind::Hash, &["meter_id"])];
        let o = offer("urn:o", vec![permission]);
        let a = o.to_agreement("urn:a", "urn:d", "urn:p", "urn:c", t0);
        let plan = compile(&a).unwrap();
        assert_eq!(
            plan.columns,
            ColumnAccess::Allow(vec!["region".into(), "kwh".into(), "meter_id".into()])
        );
        assert_eq!(plan.aggregate_min_group_size, Some(10));
        assert_eq!(plan.max_rows_per_query, Some(1000));
        assert_eq!(plan.max_queries, Some(50));
        assert_eq!(plan.not_before, Some(t0));
        assert_eq!(plan.not_after, Some(t0 + chrono::TimeDelta::days(90)));
        assert_eq!(plan.masks.len(), 1);
        // and the JSON round trip keeps the meaning
        let back = Policy::from_json(&a.to_dsp_json()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn context_is_json() {
        let v: serde_json::Value = serde_json::from_str(CONTEXT_JSONLD).unwrap();
        assert_eq!(v["@context"]["sluis"], NAMESPACE);
    }
}
