//! Serialising to DSP 2025-1 compact JSON.

use serde_json::{Map, Value as Json, json};

use crate::model::*;
use crate::vocab::{self, XSD};

/// The DSP 2025-1 compact JSON of `p` (no `@context`: the enclosing message carries it).
pub fn to_dsp_json(p: &Policy) -> Json {
    let mut o = Map::new();
    if let Some(id) = &p.uid {
        o.insert("@id".into(), json!(id));
    }
    o.insert("@type".into(), json!(p.kind.term()));
    match p.profiles.as_slice() {
        [] => {}
        [one] => {
            o.insert("profile".into(), json!(one));
        }
        many => {
            o.insert("profile".into(), json!(many));
        }
    }
    put_refs(&mut o, &p.target, &p.assigner, &p.assignee);
    if let Some(ts) = p.timestamp {
        o.insert(
            "timestamp".into(),
            json!(ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        );
    }
    if let Some(c) = p.conflict {
        o.insert("conflict".into(), json!(c.term()));
    }
    put_rules(&mut o, "permission", &p.permissions);
    put_rules(&mut o, "prohibition", &p.prohibitions);
    put_rules(&mut o, "obligation", &p.obligations);
    Json::Object(o)
}

fn put_refs(
    o: &mut Map<String, Json>,
    target: &Option<Reference>,
    assigner: &Option<Reference>,
    assignee: &Option<Reference>,
) {
    for (key, r) in [
        ("target", target),
        ("assigner", assigner),
        ("assignee", assignee),
    ] {
        if let Some(r) = r {
            o.insert(key.into(), reference(r, key));
        }
    }
}

fn reference(r: &Reference, key: &str) -> Json {
    if !r.collection && r.refinement.is_empty() {
        return json!(r.uid);
    }
    let ty = if key == "target" {
        "AssetCollection"
    } else {
        "PartyCollection"
    };
    let mut o = Map::new();
    o.insert("@id".into(), json!(r.uid));
    o.insert("@type".into(), json!(ty));
    if !r.refinement.is_empty() {
        o.insert("refinement".into(), constraints(&r.refinement));
    }
    Json::Object(o)
}

fn put_rules(o: &mut Map<String, Json>, key: &str, rules: &[Rule]) {
    if !rules.is_empty() {
        o.insert(
            key.into(),
            Json::Array(rules.iter().flat_map(atomic_rules).collect()),
        );
    }
}

/// DSP has one action per rule: a composite rule is written as one rule per action, which
/// ODRL 2.2 defines as its meaning.
fn atomic_rules(r: &Rule) -> Vec<Json> {
    if r.composite_actions.is_empty() {
        return vec![rule(r)];
    }
    r.actions()
        .map(|a| {
            let mut one = r.clone();
            one.action = Some(a.clone());
            one.composite_actions.clear();
            rule(&one)
        })
        .collect()
}

fn rule(r: &Rule) -> Json {
    let mut o = Map::new();
    if let Some(id) = &r.uid {
        o.insert("@id".into(), json!(id));
    }
    if let Some(a) = &r.action {
        o.insert("action".into(), action(a));
    }
    put_refs(&mut o, &r.target, &r.assigner, &r.assignee);
    if !r.constraints.is_empty() {
        o.insert("constraint".into(), constraints(&r.constraints));
    }
    put_rules(&mut o, "duty", &r.duties);
    put_rules(&mut o, "remedy", &r.remedies);
    put_rules(&mut o, "consequence", &r.consequences);
    Json::Object(o)
}

fn action(a: &Action) -> Json {
    let name = vocab::compact(&a.iri);
    if a.refinement.is_empty() {
        return json!(name);
    }
    // DSP 2025-1 only has string actions; a refined action takes the ODRL JSON-LD form.
    json!({"rdf:value": {"@id": name}, "refinement": constraints(&a.refinement)})
}

fn constraints(cs: &[Constraint]) -> Json {
    Json::Array(cs.iter().map(constraint).collect())
}

fn constraint(c: &Constraint) -> Json {
    let mut o = Map::new();
    match c {
        Constraint::Atomic(a) => {
            if let Some(id) = &a.uid {
                o.insert("@id".into(), json!(id));
            }
            o.insert("leftOperand".into(), json!(vocab::compact(&a.left_operand)));
            o.insert("operator".into(), json!(a.operator.term()));
            o.insert("rightOperand".into(), value(&a.right_operand));
            if let Some(u) = &a.unit {
                o.insert("unit".into(), json!(vocab::compact(u)));
            }
        }
        Constraint::Logical(l) => {
            if let Some(id) = &l.uid {
                o.insert("@id".into(), json!(id));
            }
            o.insert(l.operator.term().into(), constraints(&l.operands));
        }
    }
    Json::Object(o)
}

/// A value in compact JSON: plain strings stay strings (the schema forbids bare numbers),
/// typed literals become `{"@value", "@type"}`, IRIs `{"@id"}`, lists arrays.
pub fn value(v: &Value) -> Json {
    match v {
        Value::Iri(i) => json!({"@id": vocab::prefixed(i)}),
        Value::Literal {
            lexical,
            datatype: None,
        } => json!(lexical),
        Value::Literal {
            lexical,
            datatype: Some(dt),
        } if dt == &format!("{XSD}string") => json!(lexical),
        Value::Literal {
            lexical,
            datatype: Some(dt),
        } => json!({"@value": lexical, "@type": vocab::compact(dt)}),
        Value::List(items) => Json::Array(items.iter().map(value).collect()),
    }
}
