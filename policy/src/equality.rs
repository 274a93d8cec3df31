//! Semantic equality of policies: same meaning whatever the JSON shape.
//!
//! Both policies are reduced to a canonical form: rules and constraints as sorted sets of
//! canonical strings, nested `and` flattened into the enclosing conjunction, literals in
//! their canonical lexical form (numbers, dateTimes), and set-valued right operands sorted.

use crate::model::*;
use crate::value::parse_datetime;
use crate::vocab::XSD;

/// The canonical form of a policy's meaning (ignores `@id`, kind, policy-level target,
/// assigner, assignee, timestamp and profile).
pub fn canonical(p: &Policy) -> String {
    let section = |name: &str, rules: &[Rule]| {
        let mut items: Vec<String> = rules.iter().map(|r| canonical_rule(r, p)).collect();
        items.sort();
        items.dedup();
        format!("{name}[{}]", items.join(","))
    };
    format!(
        "conflict={:?};{};{};{}",
        p.conflict.unwrap_or_default(),
        section("permission", &p.permissions),
        section("prohibition", &p.prohibitions),
        section("obligation", &p.obligations)
    )
}

/// The canonical form of one rule of `p` (used to compare duties and obligations).
pub fn canonical_rule_of(r: &Rule, p: &Policy) -> String {
    canonical_rule(r, p)
}

fn canonical_rule(r: &Rule, p: &Policy) -> String {
    // a rule-level party or asset equal to the policy's adds nothing
    let own = |rule: &Option<Reference>, policy: &Option<Reference>| match rule {
        Some(x) if Some(x) != policy.as_ref() => canonical_ref(x),
        _ => String::new(),
    };
    let nested = |rules: &[Rule]| {
        let mut items: Vec<String> = rules.iter().map(|d| canonical_rule(d, p)).collect();
        items.sort();
        items.dedup();
        items.join(",")
    };
    format!(
        "{{{}|t={}|a={}|e={}|c={}|d=[{}]|r=[{}]|q=[{}]}}",
        actions(r),
        own(&r.target, &p.target),
        own(&r.assigner, &p.assigner),
        own(&r.assignee, &p.assignee),
        conjunction(&r.constraints),
        nested(&r.duties),
        nested(&r.remedies),
        nested(&r.consequences),
    )
}

/// A rule's actions with their refinements, as a sorted set (`*` for any action).
fn actions(r: &Rule) -> String {
    let mut items: Vec<String> = r
        .actions()
        .map(|a| format!("{}{}", a.iri, conjunction(&a.refinement)))
        .collect();
    if items.is_empty() {
        return "*".into();
    }
    items.sort();
    items.dedup();
    items.join("+")
}

fn canonical_ref(r: &Reference) -> String {
    format!(
        "{}{}{}",
        r.uid,
        if r.collection { "*" } else { "" },
        conjunction(&r.refinement)
    )
}

/// A conjunction of constraints as a sorted set, with nested `and`s flattened.
fn conjunction(cs: &[Constraint]) -> String {
    let mut items = Vec::new();
    flatten_and(cs, &mut items);
    items.sort();
    items.dedup();
    format!("[{}]", items.join("&"))
}

fn flatten_and(cs: &[Constraint], out: &mut Vec<String>) {
    for c in cs {
        match c {
            Constraint::Logical(l) if l.operator == LogicalOperator::And => {
                flatten_and(&l.operands, out)
            }
            other => out.push(canonical_constraint(other)),
        }
    }
}

fn canonical_constraint(c: &Constraint) -> String {
    match c {
        Constraint::Atomic(a) => format!(
            "({} {} {}{})",
            a.left_operand,
            a.operator.term(),
            canonical_value(&a.right_operand, a.operator.is_set_operator()),
            a.unit
                .as_deref()
                .map(|u| format!(" unit={u}"))
                .unwrap_or_default()
        ),
        Constraint::Logical(l) if l.operands.len() == 1 => canonical_constraint(&l.operands[0]),
        Constraint::Logical(l) => {
            let mut items: Vec<String> = l.operands.iter().map(canonical_constraint).collect();
            if l.operator != LogicalOperator::AndSequence {
                items.sort();
                if l.operator != LogicalOperator::Xone {
                    items.dedup();
                }
            }
            format!("{}({})", l.operator.term(), items.join(","))
        }
    }
}

/// A value's canonical text; lists of set operators are sets.
pub fn canonical_value(v: &Value, is_set: bool) -> String {
    match v {
        // an IRI and a plain string with the same text compare equal, as in evaluation
        // (DSP compact JSON writes IRIs in right operands as plain strings)
        Value::Iri(i) => format!("\"{i}\""),
        Value::Literal { lexical, datatype } => canonical_literal(lexical, datatype.as_deref()),
        Value::List(items) if items.len() == 1 => canonical_value(&items[0], is_set),
        Value::List(items) => {
            let mut texts: Vec<String> = items.iter().map(|i| canonical_value(i, false)).collect();
            if is_set {
                texts.sort();
                texts.dedup();
                if texts.len() == 1 {
                    return texts.pop().unwrap_or_default();
                }
            }
            format!("[{}]", texts.join(","))
        }
    }
}

fn canonical_literal(lexical: &str, datatype: Option<&str>) -> String {
    let local = datatype.and_then(|d| d.strip_prefix(XSD));
    match local {
        None if datatype.is_some() => format!("\"{lexical}\"^^<{}>", datatype.unwrap_or_default()),
        None | Some("string") => format!("\"{lexical}\""),
        Some("integer" | "int" | "long" | "short" | "nonNegativeInteger" | "positiveInteger") => {
            match lexical.trim().parse::<i128>() {
                Ok(n) => format!("{n}"),
                Err(_) => format!("\"{lexical}\"^^xsd:{}", local.unwrap_or_default()),
            }
        }
        Some("decimal" | "double" | "float") => match lexical.trim().parse::<f64>() {
            Ok(n) => format!("{n:?}"),
            Err(_) => format!("\"{lexical}\"^^xsd:decimal"),
        },
        Some("dateTime" | "dateTimeStamp" | "date") => match parse_datetime(lexical) {
            Some(t) => format!("{}^^dateTime", t.to_rfc3339()),
            None => format!("\"{lexical}\"^^xsd:dateTime"),
        },
        Some(other) => format!("\"{}\"^^xsd:{other}", lexical.trim()),
    }
}
