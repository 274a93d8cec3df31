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

/// The policy as Turtle (ODRL 2.2 vocabulary). Rules and constraints without an IRI become
/// blank nodes; list right operands and `andSequence` operands become RDF lists. Fails for
/// terms that are not absolute IRIs (e.g. bare extension left operands from compact JSON).
pub fn to_turtle(p: &Policy) -> Result<String, crate::PolicyError> {
    let mut w = TurtleWriter::default();
    let subject = match &p.uid {
        Some(u) => w.iri(u)?,
        None => "[]".to_string(),
    };
    let mut props = vec![format!("a odrl:{}", p.kind.term())];
    if let Some(u) = &p.uid {
        props.push(format!("odrl:uid {}", w.iri(u)?));
    }
    for prof in &p.profiles {
        props.push(format!("odrl:profile {}", w.iri(prof)?));
    }
    if let Some(ts) = p.timestamp {
        props.push(format!(
            "dct:issued \"{}\"^^xsd:dateTime",
            ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ));
    }
    if let Some(c) = p.conflict {
        props.push(format!("odrl:conflict odrl:{}", c.term()));
    }
    w.refs(&mut props, &p.target, &p.assigner, &p.assignee)?;
    for (key, rules) in [
        ("permission", &p.permissions),
        ("prohibition", &p.prohibitions),
        ("obligation", &p.obligations),
    ] {
        for r in rules {
            props.push(format!("odrl:{key} {}", w.rule(r)?));
        }
    }
    Ok(format!(
        "@prefix odrl: <{}> .\n@prefix xsd: <{XSD}> .\n@prefix dct: <{}> .\n@prefix rdf: <{}> .\n\n{subject} {} .\n{}",
        vocab::ODRL,
        vocab::DCT,
        vocab::RDF,
        props.join(" ;\n    "),
        w.extra
    ))
}

#[derive(Default)]
struct TurtleWriter {
    /// Statements about collections (their type and refinements), written after the policy.
    extra: String,
}

impl TurtleWriter {
    fn iri(&self, s: &str) -> Result<String, crate::PolicyError> {
        let bad = |c: char| {
            matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`' | '\\') || c.is_whitespace()
        };
        if !vocab::is_absolute_iri(s) || s.chars().any(bad) {
            return Err(crate::PolicyError::new(
                "turtle",
                format!("'{s}' is not an absolute IRI and cannot be written as Turtle"),
            ));
        }
        Ok(format!("<{s}>"))
    }

    fn refs(
        &mut self,
        props: &mut Vec<String>,
        target: &Option<Reference>,
        assigner: &Option<Reference>,
        assignee: &Option<Reference>,
    ) -> Result<(), crate::PolicyError> {
        for (key, r) in [
            ("target", target),
            ("assigner", assigner),
            ("assignee", assignee),
        ] {
            let Some(r) = r else { continue };
            let node = self.iri(&r.uid)?;
            props.push(format!("odrl:{key} {node}"));
            if r.collection || !r.refinement.is_empty() {
                let ty = if key == "target" {
                    "AssetCollection"
                } else {
                    "PartyCollection"
                };
                let mut about = vec![format!("a odrl:{ty}")];
                for c in &r.refinement {
                    about.push(format!("odrl:refinement {}", self.constraint(c)?));
                }
                self.extra
                    .push_str(&format!("{node} {} .\n", about.join(" ; ")));
            }
        }
        Ok(())
    }

    fn rule(&mut self, r: &Rule) -> Result<String, crate::PolicyError> {
        let mut props = Vec::new();
        for a in r.actions() {
            if a.refinement.is_empty() {
                props.push(format!("odrl:action {}", self.iri(&a.iri)?));
            } else {
                let refinements = a
                    .refinement
                    .iter()
                    .map(|c| self.constraint(c))
                    .collect::<Result<Vec<_>, _>>()?;
                props.push(format!(
                    "odrl:action [ rdf:value {} ; odrl:refinement {} ]",
                    self.iri(&a.iri)?,
                    refinements.join(", ")
                ));
            }
        }
        self.refs(&mut props, &r.target, &r.assigner, &r.assignee)?;
        for c in &r.constraints {
            props.push(format!("odrl:constraint {}", self.constraint(c)?));
        }
        for (key, rules) in [
            ("duty", &r.duties),
            ("remedy", &r.remedies),
            ("consequence", &r.consequences),
        ] {
            for d in rules {
                props.push(format!("odrl:{key} {}", self.rule(d)?));
            }
        }
        self.node(r.uid.as_deref(), props)
    }

    fn constraint(&mut self, c: &Constraint) -> Result<String, crate::PolicyError> {
        match c {
            Constraint::Atomic(a) => {
                let mut props = vec![
                    format!("odrl:leftOperand {}", self.iri(&a.left_operand)?),
                    format!("odrl:operator odrl:{}", a.operator.term()),
                ];
                let right = match &a.right_operand {
                    Value::List(items) => format!(
                        "( {} )",
                        items
                            .iter()
                            .map(|v| self.value(v))
                            .collect::<Result<Vec<_>, _>>()?
                            .join(" ")
                    ),
                    v => self.value(v)?,
                };
                props.push(format!("odrl:rightOperand {right}"));
                if let Some(u) = &a.unit {
                    props.push(format!("odrl:unit {}", self.iri(u)?));
                }
                self.node(a.uid.as_deref(), props)
            }
            Constraint::Logical(l) => {
                let operands = l
                    .operands
                    .iter()
                    .map(|o| self.constraint(o))
                    .collect::<Result<Vec<_>, _>>()?;
                let objects = if l.operator == LogicalOperator::AndSequence {
                    format!("( {} )", operands.join(" "))
                } else {
                    operands.join(", ")
                };
                let props = vec![
                    "a odrl:LogicalConstraint".to_string(),
                    format!("odrl:{} {objects}", l.operator.term()),
                ];
                self.node(l.uid.as_deref(), props)
            }
        }
    }

    /// A node: a blank node with its properties inline, or an IRI described after the policy.
    fn node(
        &mut self,
        uid: Option<&str>,
        props: Vec<String>,
    ) -> Result<String, crate::PolicyError> {
        match uid {
            None => Ok(format!("[ {} ]", props.join(" ; "))),
            Some(u) => {
                let node = self.iri(u)?;
                if !props.is_empty() {
                    self.extra
                        .push_str(&format!("{node} {} .\n", props.join(" ;\n    ")));
                }
                Ok(node)
            }
        }
    }

    fn value(&self, v: &Value) -> Result<String, crate::PolicyError> {
        match v {
            Value::Iri(i) => self.iri(i),
            Value::Literal { lexical, datatype } => {
                let escaped = lexical
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r");
                match datatype {
                    None => Ok(format!("\"{escaped}\"")),
                    Some(dt) => Ok(format!("\"{escaped}\"^^{}", self.iri(dt)?)),
                }
            }
            Value::List(_) => Err(crate::PolicyError::new(
                "turtle",
                "nested lists cannot be written",
            )),
        }
    }
}
