//! "At least as strict": every request one policy permits, the other permits too.
//!
//! Used when a consumer asks for a narrower version of an offer: the provider may agree to a
//! request that is at least as strict as its offer. The check is sound but not complete: it
//! answers `true` only when it can show the inclusion rule by rule, constraint by constraint
//! (same-operand bounds, subsets of sets, identical constraints), so a `false` may be a
//! narrower policy it cannot prove narrower.

use std::cmp::Ordering;

use crate::equality::{canonical_rule_of, canonical_value};
use crate::model::*;
use crate::value::{parse_datetime, parse_duration};
use crate::vocab::{self, XSD};

/// Whether `narrow` permits nothing that `wide` does not (see the module documentation).
pub fn at_least_as_strict(narrow: &Policy, wide: &Policy) -> bool {
    let strategy = |p: &Policy| p.conflict.unwrap_or_default();
    if !wide.prohibitions.is_empty() && strategy(narrow) != strategy(wide) {
        return false;
    }
    // a composite rule means one rule per action (ODRL 2.2 §2.7.2)
    let (narrow_perms, wide_perms) = (atomic(&narrow.permissions), atomic(&wide.permissions));
    let permissions = narrow_perms.iter().all(|pn| {
        wide_perms
            .iter()
            .any(|pw| permission_within(pn, narrow, pw, wide))
    });
    // every prohibition of the wide policy is kept (or broadened) by the narrow one
    let (narrow_bans, wide_bans) = (atomic(&narrow.prohibitions), atomic(&wide.prohibitions));
    let prohibitions = wide_bans.iter().all(|hw| {
        narrow_bans.iter().any(|hn| {
            rule_within(hw, wide, hn, narrow) && implies_all(&hw.constraints, &hn.constraints)
        })
    });
    let obligations = wide.obligations.iter().all(|ow| {
        let c = canonical_rule_of(ow, wide);
        narrow
            .obligations
            .iter()
            .any(|on| canonical_rule_of(on, narrow) == c)
    });
    permissions && prohibitions && obligations
}

/// The rules with every composite rule split into one rule per action.
fn atomic(rules: &[Rule]) -> Vec<Rule> {
    rules
        .iter()
        .flat_map(|r| {
            if r.composite_actions.is_empty() {
                return vec![r.clone()];
            }
            r.actions()
                .map(|a| Rule {
                    action: Some(a.clone()),
                    composite_actions: Vec::new(),
                    ..r.clone()
                })
                .collect()
        })
        .collect()
}

/// `pn` (of `narrow`) grants a subset of what `pw` (of `wide`) grants.
fn permission_within(pn: &Rule, narrow: &Policy, pw: &Rule, wide: &Policy) -> bool {
    rule_within(pn, narrow, pw, wide)
        && implies_all(&pn.constraints, &pw.constraints)
        && pw.duties.iter().all(|dw| {
            let c = canonical_rule_of(dw, wide);
            pn.duties
                .iter()
                .any(|dn| canonical_rule_of(dn, narrow) == c)
        })
}

/// Same or narrower action, same asset and parties (a rule without them covers any).
fn rule_within(n: &Rule, np: &Policy, w: &Rule, wp: &Policy) -> bool {
    // every action of the narrow rule lies under some action of the wide one
    let action = w.action.is_none()
        || (n.action.is_some()
            && n.actions().all(|a| {
                w.actions().any(|b| {
                    vocab::action_included_in(&a.iri, &b.iri)
                        && implies_all(&a.refinement, &b.refinement)
                })
            }));
    let same = |x: Option<&Reference>, y: Option<&Reference>| match (x, y) {
        (_, None) => true,
        (Some(a), Some(b)) => a == b,
        (None, Some(_)) => false,
    };
    action
        && same(
            n.target.as_ref().or(np.target.as_ref()),
            w.target.as_ref().or(wp.target.as_ref()),
        )
        && same(
            n.assignee.as_ref().or(np.assignee.as_ref()),
            w.assignee.as_ref().or(wp.assignee.as_ref()),
        )
}

/// The conjunction `given` implies every constraint of `required`.
fn implies_all(given: &[Constraint], required: &[Constraint]) -> bool {
    let mut facts = Vec::new();
    flatten(given, &mut facts);
    let mut goals = Vec::new();
    flatten(required, &mut goals);
    goals.iter().all(|g| implies(&facts, g))
}

fn flatten<'a>(cs: &'a [Constraint], out: &mut Vec<&'a Constraint>) {
    for c in cs {
        match c {
            Constraint::Logical(l)
                if matches!(
                    l.operator,
                    LogicalOperator::And | LogicalOperator::AndSequence
                ) || l.operands.len() == 1 =>
            {
                flatten(&l.operands, out)
            }
            other => out.push(other),
        }
    }
}

fn implies(facts: &[&Constraint], goal: &Constraint) -> bool {
    match goal {
        Constraint::Atomic(g) => facts.iter().any(|f| match f {
            Constraint::Atomic(a) => atomic_implies(a, g),
            Constraint::Logical(_) => *f == goal,
        }),
        Constraint::Logical(l) => match l.operator {
            // a disjunction is implied by anything implying one of its operands
            LogicalOperator::Or => l.operands.iter().any(|o| implies(facts, o)),
            _ => facts.contains(&goal),
        },
    }
}

/// `a` implies `g` (both atomic).
fn atomic_implies(a: &AtomicConstraint, g: &AtomicConstraint) -> bool {
    if a.left_operand != g.left_operand || a.unit != g.unit {
        return false;
    }
    let set = |c: &AtomicConstraint| -> Vec<String> {
        let mut v: Vec<String> = c
            .right_operand
            .members()
            .iter()
            .map(|m| canonical_value(m, false))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let subset = |x: &[String], y: &[String]| x.iter().all(|i| y.contains(i));
    use Operator::*;
    match (a.operator, g.operator) {
        (x, y) if x == y && set(a) == set(g) => true,
        (Eq | IsAnyOf, IsAnyOf) => subset(&set(a), &set(g)),
        (IsPartOf, IsPartOf) => subset(&set(a), &set(g)),
        (IsNoneOf, IsNoneOf) => subset(&set(g), &set(a)),
        (IsAllOf | HasPart, HasPart) => subset(&set(g), &set(a)),
        (Eq | Lt | Lteq | Gt | Gteq, Lt | Lteq | Gt | Gteq | Eq) => bound_implies(a, g),
        _ => false,
    }
}

/// Bounds on one ordered quantity: e.g. `x <= 5` implies `x < 10`.
fn bound_implies(a: &AtomicConstraint, g: &AtomicConstraint) -> bool {
    let Some(ord) = compare(&a.right_operand, &g.right_operand) else {
        return false;
    };
    use Operator::*;
    use Ordering::*;
    match (a.operator, g.operator) {
        (Eq, Eq) => ord == Equal,
        (Eq, Lteq) | (Lteq, Lteq) | (Lt, Lt) | (Lt, Lteq) => ord != Greater,
        (Eq, Lt) | (Lteq, Lt) => ord == Less,
        (Eq, Gteq) | (Gteq, Gteq) | (Gt, Gt) | (Gt, Gteq) => ord != Less,
        (Eq, Gt) | (Gteq, Gt) => ord == Greater,
        _ => false,
    }
}

/// Orders two single values of the same kind: dateTimes, durations (same month part), numbers.
fn compare(x: &Value, y: &Value) -> Option<Ordering> {
    let (
        Value::Literal {
            lexical: a,
            datatype: da,
        },
        Value::Literal {
            lexical: b,
            datatype: db,
        },
    ) = (x, y)
    else {
        return None;
    };
    let kind = |d: &Option<String>| {
        d.as_deref()
            .and_then(|d| d.strip_prefix(XSD))
            .map(str::to_string)
    };
    match (kind(da).as_deref(), kind(db).as_deref()) {
        (Some("duration"), Some("duration")) => {
            let (p, q) = (parse_duration(a)?, parse_duration(b)?);
            (p.months == q.months).then(|| p.exact.cmp(&q.exact))
        }
        _ => {
            if let (Some(p), Some(q)) = (parse_datetime(a), parse_datetime(b))
                && a.contains('-')
                && b.contains('-')
            {
                return Some(p.cmp(&q));
            }
            let (p, q) = (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?);
            p.partial_cmp(&q)
        }
    }
}
