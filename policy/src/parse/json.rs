//! Parsing ODRL policies from JSON: DSP 2025-1 compact terms, JSON-LD with prefixed terms
//! (DSP 2024-1 style `odrl:permission`) and expanded JSON-LD (full IRIs, arrays everywhere).
//!
//! This is not a general JSON-LD processor: it understands the shapes these three forms take
//! for ODRL, plus simple prefix and term definitions in an inline `@context`. Anything it
//! does not understand inside an ODRL node is an error rather than ignored.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::error::{PolicyError, limits};
use crate::model::*;
use crate::vocab::{self, DCT, DSPACE, ODRL, RDF, SLUIS, XSD};

/// Parses one policy object.
pub fn parse_policy(v: &Json) -> Result<Policy, PolicyError> {
    let mut p = Parser::new(v);
    p.policy(one(v), "")
}

struct Parser {
    prefixes: HashMap<String, String>,
    terms: HashMap<String, String>,
    nodes: usize,
}

/// One JSON object with its keys expanded to IRIs.
struct Node<'a> {
    path: String,
    props: Vec<(String, &'a Json)>,
}

impl<'a> Node<'a> {
    fn get(&self, iri: &str) -> Option<&'a Json> {
        self.props.iter().find(|(k, _)| k == iri).map(|(_, v)| *v)
    }

    fn odrl(&self, local: &str) -> Option<&'a Json> {
        self.get(&vocab::odrl(local))
    }

    fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Unwraps a one-element array (expanded JSON-LD wraps every value in one).
fn one(v: &Json) -> &Json {
    match v {
        Json::Array(a) if a.len() == 1 => &a[0],
        other => other,
    }
}

/// The items of a value: an array's, an `@list`'s, or the value alone.
fn many(v: &Json) -> Vec<&Json> {
    match v {
        Json::Array(a) => a.iter().flat_map(many_inner).collect(),
        Json::Object(o) if o.contains_key("@list") => many(&o["@list"]),
        other => vec![other],
    }
}

fn many_inner(v: &Json) -> Vec<&Json> {
    match v {
        Json::Object(o) if o.contains_key("@list") => many(&o["@list"]),
        other => vec![other],
    }
}

fn err(path: &str, msg: impl Into<String>) -> PolicyError {
    PolicyError::new(path, msg)
}

impl Parser {
    fn new(root: &Json) -> Parser {
        let mut prefixes: HashMap<String, String> = [
            ("odrl", ODRL),
            ("sluis", SLUIS),
            ("xsd", XSD),
            ("dct", DCT),
            ("rdf", RDF),
            ("dspace", DSPACE),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let mut terms = HashMap::new();
        if let Some(ctx) = root.get("@context") {
            for c in many(ctx) {
                if let Json::Object(defs) = c {
                    for (k, d) in defs {
                        let iri = match d {
                            Json::String(s) => s.clone(),
                            Json::Object(o) => match o.get("@id") {
                                Some(Json::String(s)) => s.clone(),
                                _ => continue,
                            },
                            _ => continue,
                        };
                        if iri.ends_with(['/', '#']) {
                            prefixes.insert(k.clone(), iri);
                        } else {
                            terms.insert(k.clone(), iri);
                        }
                    }
                }
            }
        }
        Parser {
            prefixes,
            terms,
            nodes: 0,
        }
    }

    /// Expands a term, prefixed name or IRI. Bare ODRL terms mean `odrl:` terms (the DSP
    /// context); other bare words stay as they are (extension terms, checked by the caller).
    fn expand(&self, s: &str) -> String {
        if let Some(iri) = self.terms.get(s) {
            return self.expand(iri);
        }
        if let Some((prefix, local)) = s.split_once(':')
            && !local.starts_with("//")
            && let Some(ns) = self.prefixes.get(prefix)
        {
            return format!("{ns}{local}");
        }
        if !s.contains(':') && vocab::is_odrl_term(s) {
            return vocab::odrl(s);
        }
        s.to_string()
    }

    fn tick(&mut self, path: &str, depth: usize) -> Result<(), PolicyError> {
        self.nodes += 1;
        if self.nodes > limits::MAX_NODES {
            return Err(err(
                path,
                format!("policy too large (more than {} nodes)", limits::MAX_NODES),
            ));
        }
        if depth > limits::MAX_DEPTH {
            return Err(err(
                path,
                format!("nested too deeply (more than {} levels)", limits::MAX_DEPTH),
            ));
        }
        Ok(())
    }

    /// Expands the keys of an object; rejects ODRL-namespace and bare keys outside `allowed`.
    fn node<'a>(
        &self,
        v: &'a Json,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Result<Node<'a>, PolicyError> {
        let Json::Object(map) = v else {
            return Err(err(
                path,
                format!("expected a {what} object, found {}", kind(v)),
            ));
        };
        let props = self.expand_keys(map, path, what, allowed)?;
        Ok(Node {
            path: path.to_string(),
            props,
        })
    }

    fn expand_keys<'a>(
        &self,
        map: &'a Map<String, Json>,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Result<Vec<(String, &'a Json)>, PolicyError> {
        let mut props = Vec::with_capacity(map.len());
        for (k, v) in map {
            if k.starts_with('@') {
                props.push((k.clone(), v));
                continue;
            }
            let iri = self.expand(k);
            let known = match iri.strip_prefix(ODRL) {
                Some(local) => allowed.contains(&local),
                None => is_metadata_key(&iri),
            };
            if !known {
                return Err(err(
                    &join(path, k),
                    format!("unknown property '{k}' in a {what}"),
                ));
            }
            props.push((iri, v));
        }
        Ok(props)
    }

    fn string(&self, v: &Json, path: &str) -> Result<String, PolicyError> {
        let s = match one(v) {
            Json::String(s) => s,
            Json::Object(o) => match (o.get("@id"), o.get("@value")) {
                (Some(Json::String(s)), _) | (None, Some(Json::String(s))) => s,
                _ => return Err(err(path, "expected a string or {\"@id\": ...}")),
            },
            other => {
                return Err(err(
                    path,
                    format!("expected a string, found {}", kind(other)),
                ));
            }
        };
        if s.len() > limits::MAX_STRING {
            return Err(err(
                path,
                format!("longer than {} bytes", limits::MAX_STRING),
            ));
        }
        Ok(s.clone())
    }

    fn iri(&self, v: &Json, path: &str) -> Result<String, PolicyError> {
        Ok(self.expand(&self.string(v, path)?))
    }

    fn policy(&mut self, v: &Json, path: &str) -> Result<Policy, PolicyError> {
        const ALLOWED: &[&str] = &[
            "uid",
            "target",
            "assigner",
            "assignee",
            "profile",
            "conflict",
            "permission",
            "prohibition",
            "obligation",
        ];
        let n = self.node(v, path, "policy", ALLOWED)?;
        let kind = match n.get("@type") {
            None => PolicyKind::Set,
            Some(t) => self.policy_kind(t, &n.at("@type"))?,
        };
        let uid = self.uid(&n)?;
        let timestamp = self.timestamp(&n)?;
        let profiles = match n.odrl("profile") {
            None => Vec::new(),
            Some(p) => many(p)
                .into_iter()
                .enumerate()
                .map(|(i, x)| self.iri(x, &format!("{}[{i}]", n.at("profile"))))
                .collect::<Result<_, _>>()?,
        };
        let conflict = match n.odrl("conflict") {
            None => None,
            Some(c) => Some(self.conflict(c, &n.at("conflict"))?),
        };
        if n.odrl("inheritFrom").is_some() {
            return Err(err(
                &n.at("inheritFrom"),
                "policy inheritance is not supported",
            ));
        }
        Ok(Policy {
            kind,
            uid,
            target: self.opt_ref(&n, "target", 0)?,
            assigner: self.opt_ref(&n, "assigner", 0)?,
            assignee: self.opt_ref(&n, "assignee", 0)?,
            timestamp,
            profiles,
            conflict,
            permissions: self.rules(&n, "permission", 1)?,
            prohibitions: self.rules(&n, "prohibition", 1)?,
            obligations: self.rules(&n, "obligation", 1)?,
        })
    }

    fn policy_kind(&self, t: &Json, path: &str) -> Result<PolicyKind, PolicyError> {
        let mut found = None;
        for (i, ty) in many(t).into_iter().enumerate() {
            let iri = self.iri(ty, &format!("{path}[{i}]"))?;
            match PolicyKind::from_iri(&iri) {
                Some(k) => found = Some(k),
                None if iri.starts_with(ODRL) => {
                    return Err(err(
                        path,
                        format!("'{}' is not a policy type", vocab::compact(&iri)),
                    ));
                }
                None => {}
            }
        }
        found.ok_or_else(|| err(path, "expected Set, Offer, Agreement or Request"))
    }

    fn conflict(&self, v: &Json, path: &str) -> Result<ConflictStrategy, PolicyError> {
        let iri = self.iri(v, path)?;
        match iri.strip_prefix(ODRL) {
            Some("perm") => Ok(ConflictStrategy::Perm),
            Some("prohibit") => Ok(ConflictStrategy::Prohibit),
            Some("invalid") => Ok(ConflictStrategy::Invalid),
            _ => Err(err(
                path,
                format!("unknown conflict strategy '{iri}' (expected perm, prohibit or invalid)"),
            )),
        }
    }

    fn uid(&self, n: &Node) -> Result<Option<String>, PolicyError> {
        match n.get("@id").or_else(|| n.odrl("uid")) {
            None => Ok(None),
            Some(v) => Ok(Some(self.iri(v, &n.at("@id"))?)),
        }
    }

    fn timestamp(&self, n: &Node) -> Result<Option<chrono::DateTime<chrono::Utc>>, PolicyError> {
        let keys = [
            "timestamp".to_string(),
            format!("{DSPACE}timestamp"),
            format!("{ODRL}timestamp"),
            format!("{DCT}issued"),
        ];
        let Some(v) = keys.iter().find_map(|k| n.get(k)) else {
            return Ok(None);
        };
        let path = n.at("timestamp");
        let s = self.string(v, &path)?;
        crate::value::parse_datetime(&s)
            .map(Some)
            .ok_or_else(|| err(&path, format!("'{s}' is not an xsd:dateTime")))
    }

    fn opt_ref(
        &mut self,
        n: &Node,
        key: &str,
        depth: usize,
    ) -> Result<Option<Reference>, PolicyError> {
        match n.odrl(key) {
            None => Ok(None),
            Some(v) => Ok(Some(self.reference(one(v), &n.at(key), depth)?)),
        }
    }

    fn reference(&mut self, v: &Json, path: &str, depth: usize) -> Result<Reference, PolicyError> {
        self.tick(path, depth)?;
        if !v.is_object() {
            return Ok(Reference::new(self.iri(v, path)?));
        }
        let n = self.node(
            v,
            path,
            "asset or party",
            &["uid", "source", "refinement", "partOf"],
        )?;
        let uid = match n
            .get("@id")
            .or_else(|| n.odrl("uid"))
            .or_else(|| n.odrl("source"))
        {
            Some(u) => self.iri(u, &n.at("@id"))?,
            None => return Err(err(path, "an asset or party needs an @id")),
        };
        let collection = match n.get("@type") {
            None => false,
            Some(t) => many(t).into_iter().any(|x| {
                self.string(x, path)
                    .map(|s| {
                        let iri = self.expand(&s);
                        iri == vocab::odrl("AssetCollection")
                            || iri == vocab::odrl("PartyCollection")
                    })
                    .unwrap_or(false)
            }),
        };
        let refinement = self.constraints(&n, "refinement", depth + 1)?;
        Ok(Reference {
            uid,
            collection: collection || !refinement.is_empty(),
            refinement,
        })
    }

    fn rules(&mut self, n: &Node, key: &str, depth: usize) -> Result<Vec<Rule>, PolicyError> {
        let Some(v) = n.odrl(key) else {
            return Ok(Vec::new());
        };
        many(v)
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.rule(r, &format!("{}[{i}]", n.at(key)), key, depth))
            .collect()
    }

    fn rule(&mut self, v: &Json, path: &str, key: &str, depth: usize) -> Result<Rule, PolicyError> {
        self.tick(path, depth)?;
        const ALLOWED: &[&str] = &[
            "uid",
            "action",
            "target",
            "assigner",
            "assignee",
            "constraint",
            "duty",
            "remedy",
            "consequence",
            "failure",
        ];
        let n = self.node(v, path, key, ALLOWED)?;
        let action = match n.odrl("action") {
            Some(a) => self.action(one(a), &n.at("action"), depth)?,
            None => return Err(err(path, format!("a {key} needs an action"))),
        };
        let mut rule = Rule::new(action);
        rule.uid = self.uid(&n)?;
        rule.target = self.opt_ref(&n, "target", depth)?;
        rule.assigner = self.opt_ref(&n, "assigner", depth)?;
        rule.assignee = self.opt_ref(&n, "assignee", depth)?;
        rule.constraints = self.constraints(&n, "constraint", depth + 1)?;
        let failure = self.rules(&n, "failure", depth + 1)?;
        match key {
            "permission" => {
                rule.duties = self.rules(&n, "duty", depth + 1)?;
                self.forbid(&n, &["remedy", "consequence", "failure"], key)?;
            }
            "prohibition" => {
                rule.remedies = self.rules(&n, "remedy", depth + 1)?;
                rule.remedies.extend(failure);
                self.forbid(&n, &["duty", "consequence"], key)?;
            }
            _ => {
                rule.consequences = self.rules(&n, "consequence", depth + 1)?;
                rule.consequences.extend(failure);
                self.forbid(&n, &["duty", "remedy"], key)?;
            }
        }
        Ok(rule)
    }

    fn forbid(&self, n: &Node, keys: &[&str], what: &str) -> Result<(), PolicyError> {
        match keys.iter().find(|k| n.odrl(k).is_some()) {
            Some(k) => Err(err(&n.at(k), format!("a {what} cannot have a {k}"))),
            None => Ok(()),
        }
    }

    fn action(&mut self, v: &Json, path: &str, depth: usize) -> Result<Action, PolicyError> {
        let (iri, refinement) = match v {
            Json::Object(map) if !map.contains_key("@id") || map.len() > 1 => {
                let n = self.node(v, path, "action", &["refinement"])?;
                let value = n
                    .get(&format!("{RDF}value"))
                    .or_else(|| n.get("value"))
                    .or_else(|| n.get("@id"))
                    .ok_or_else(|| err(path, "an action object needs rdf:value"))?;
                (
                    self.iri(value, &n.at("rdf:value"))?,
                    self.constraints(&n, "refinement", depth + 1)?,
                )
            }
            _ => (self.iri(v, path)?, Vec::new()),
        };
        Action::checked(iri, refinement, path)
    }

    fn constraints(
        &mut self,
        n: &Node,
        key: &str,
        depth: usize,
    ) -> Result<Vec<Constraint>, PolicyError> {
        let Some(v) = n.odrl(key) else {
            return Ok(Vec::new());
        };
        many(v)
            .into_iter()
            .enumerate()
            .map(|(i, c)| self.constraint(c, &format!("{}[{i}]", n.at(key)), depth))
            .collect()
    }

    fn constraint(
        &mut self,
        v: &Json,
        path: &str,
        depth: usize,
    ) -> Result<Constraint, PolicyError> {
        self.tick(path, depth)?;
        const ALLOWED: &[&str] = &[
            "uid",
            "leftOperand",
            "operator",
            "rightOperand",
            "rightOperandReference",
            "unit",
            "dataType",
            "and",
            "or",
            "xone",
            "andSequence",
        ];
        let n = self.node(v, path, "constraint", ALLOWED)?;
        let uid = self.uid(&n)?;
        let logical: Vec<(LogicalOperator, &Json)> = ["and", "or", "xone", "andSequence"]
            .into_iter()
            .filter_map(|k| {
                n.odrl(k)
                    .map(|x| (LogicalOperator::from_term(k).expect("term"), x))
            })
            .collect();
        match logical.as_slice() {
            [] => Ok(Constraint::Atomic(self.atomic(&n, uid)?)),
            [(op, operands)] => {
                if n.odrl("leftOperand").is_some() || n.odrl("operator").is_some() {
                    return Err(err(
                        path,
                        "a constraint is either atomic or logical, not both",
                    ));
                }
                let key = n.at(op.term());
                let items = many(operands);
                if items.is_empty() {
                    return Err(err(&key, "a logical constraint needs at least one operand"));
                }
                let operands = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| self.constraint(c, &format!("{key}[{i}]"), depth + 1))
                    .collect::<Result<_, _>>()?;
                Ok(Constraint::Logical(LogicalConstraint {
                    uid,
                    operator: *op,
                    operands,
                }))
            }
            _ => Err(err(
                path,
                "a logical constraint has exactly one of and, or, xone, andSequence",
            )),
        }
    }

    fn atomic(&mut self, n: &Node, uid: Option<String>) -> Result<AtomicConstraint, PolicyError> {
        let path = &n.path;
        let left = n
            .odrl("leftOperand")
            .ok_or_else(|| err(path, "a constraint needs a leftOperand"))?;
        let left_path = n.at("leftOperand");
        let left_operand = self.iri(left, &left_path)?;
        vocab::check_left_operand(&left_operand).map_err(|m| err(&left_path, m))?;
        let op = n
            .odrl("operator")
            .ok_or_else(|| err(path, "a constraint needs an operator"))?;
        let op_path = n.at("operator");
        let op_iri = self.iri(op, &op_path)?;
        let operator = Operator::from_iri(&op_iri).ok_or_else(|| {
            err(
                &op_path,
                format!("unknown operator '{}'", vocab::compact(&op_iri)),
            )
        })?;
        if n.odrl("rightOperandReference").is_some() {
            return Err(err(
                &n.at("rightOperandReference"),
                "rightOperandReference is not supported",
            ));
        }
        let right = n
            .odrl("rightOperand")
            .ok_or_else(|| err(path, "a constraint needs a rightOperand"))?;
        let data_type = match n.odrl("dataType") {
            Some(d) => Some(self.iri(d, &n.at("dataType"))?),
            None => None,
        };
        let right_path = n.at("rightOperand");
        let right_operand = match right {
            // a one-member array stays a list for set operators (round trip); elsewhere it
            // is the JSON-LD wrapping of a single value
            Json::Array(items) if items.len() == 1 && operator.is_set_operator() => {
                self.list(items.iter(), &right_path, data_type.as_deref(), 0)?
            }
            _ => self.value(right, &right_path, data_type.as_deref(), 0)?,
        };
        let unit = match n.odrl("unit") {
            Some(u) => Some(self.iri(u, &n.at("unit"))?),
            None => None,
        };
        Ok(AtomicConstraint {
            uid,
            left_operand,
            operator,
            right_operand,
            unit,
        })
    }

    fn value(
        &mut self,
        v: &Json,
        path: &str,
        data_type: Option<&str>,
        depth: usize,
    ) -> Result<Value, PolicyError> {
        self.tick(path, depth)?;
        let literal = |lexical: String, dt: Option<String>| Value::Literal {
            lexical,
            datatype: dt.or_else(|| data_type.map(str::to_string)),
        };
        match v {
            Json::String(s) => {
                if s.len() > limits::MAX_STRING {
                    return Err(err(
                        path,
                        format!("longer than {} bytes", limits::MAX_STRING),
                    ));
                }
                Ok(literal(s.clone(), None))
            }
            Json::Bool(b) => Ok(literal(b.to_string(), Some(format!("{XSD}boolean")))),
            Json::Number(num) => {
                let dt = if num.is_f64() { "decimal" } else { "integer" };
                Ok(literal(num.to_string(), Some(format!("{XSD}{dt}"))))
            }
            Json::Array(items) if items.len() == 1 => self.value(&items[0], path, data_type, depth),
            Json::Array(items) => self.list(items.iter(), path, data_type, depth),
            Json::Object(o) => {
                if let Some(list) = o.get("@list") {
                    return self.list(many(list).into_iter(), path, data_type, depth);
                }
                if let Some(id) = o.get("@id") {
                    return Ok(Value::Iri(self.iri(id, path)?));
                }
                match o.get("@value") {
                    Some(Json::String(s)) => {
                        let dt = match o.get("@type") {
                            Some(t) => Some(self.iri(t, &join(path, "@type"))?),
                            None => None,
                        };
                        Ok(literal(s.clone(), dt))
                    }
                    Some(other) => self.value(other, path, data_type, depth),
                    None => Err(err(
                        path,
                        "expected a value: a string, {\"@value\": ...}, {\"@id\": ...} or an array",
                    )),
                }
            }
            Json::Null => Err(err(path, "a rightOperand cannot be null")),
        }
    }

    fn list<'a>(
        &mut self,
        items: impl Iterator<Item = &'a Json>,
        path: &str,
        data_type: Option<&str>,
        depth: usize,
    ) -> Result<Value, PolicyError> {
        let values = items
            .enumerate()
            .map(|(i, x)| self.value(x, &format!("{path}[{i}]"), data_type, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if values.iter().any(|v| matches!(v, Value::List(_))) {
            return Err(err(path, "nested lists are not allowed in a rightOperand"));
        }
        Ok(Value::List(values))
    }
}

/// Keys outside ODRL that may annotate a policy node (descriptions, DSP fields, etc.).
/// Only full IRIs (after prefix expansion) count: a key with an unknown prefix, say a typo
/// of `odrl:`, is an error rather than ignored metadata.
fn is_metadata_key(iri: &str) -> bool {
    ["http://", "https://", "urn:", "did:"]
        .iter()
        .any(|scheme| iri.starts_with(scheme))
        || iri == "timestamp"
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
