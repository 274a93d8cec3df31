//! DSP 2025-1 compact ODRL JSON ⇄ ODRL RDF.
//!
//! A direct mapping of the compact form (the terms of the DSP `odrl.jsonld` context), so the
//! graph holds real ODRL triples (`odrl:permission`, `odrl:constraint`, `odrl:leftOperand`, …)
//! and the DSP JSON is produced back from them. Arrays that ODRL treats as sets come back in a
//! canonical order; `andSequence` and right-operand arrays are RDF lists, so their order holds.

use std::collections::HashMap;

use oxigraph::model::vocab::{rdf, xsd};
use oxigraph::model::{
    BlankNode, GraphName, Literal, NamedNode, NamedOrBlankNode, Quad, Term, TermRef,
};
use serde_json::{Map, Value};

use crate::error::{CatalogError, truncate};
use crate::vocab::{ODRL, PREFIXES};

/// Deepest nesting of logical constraints and duties accepted.
const MAX_DEPTH: usize = 16;
/// Most RDF nodes one offer may produce; bounds hostile input.
const MAX_NODES: usize = 10_000;

/// Operators the DSP 2025-1 schema allows.
const OPERATORS: &[&str] = &[
    "eq",
    "gt",
    "gteq",
    "lteq",
    "hasPart",
    "isA",
    "isAllOf",
    "isAnyOf",
    "isNoneOf",
    "isPartOf",
    "lt",
    "term-lteq",
    "neq",
];

/// Logical constraint operands: (JSON key, is an ordered list).
const LOGICAL: &[(&str, bool)] = &[
    ("and", false),
    ("or", false),
    ("xone", false),
    ("andSequence", true),
];

fn odrl(local: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("{ODRL}{local}"))
}

fn invalid(msg: impl Into<String>) -> CatalogError {
    CatalogError::InvalidOffer(msg.into())
}

/// Parses an absolute IRI given in an `@id`-typed position.
pub(crate) fn iri(value: &str, what: &'static str) -> Result<NamedNode, CatalogError> {
    if value.len() > 4096 {
        return Err(CatalogError::invalid_id(
            what,
            value,
            "longer than 4096 bytes",
        ));
    }
    NamedNode::new(value)
        .map_err(|e| CatalogError::invalid_id(what, value, format!("not an absolute IRI ({e})")))
}

/// Expands a vocabulary term (`use`, `odrl:use`, `sluis:row.region`, or an absolute IRI).
pub(crate) fn expand_term(term: &str, what: &'static str) -> Result<NamedNode, CatalogError> {
    match term.split_once(':') {
        None => {
            let ok = !term.is_empty()
                && term
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(invalid(format!(
                    "{what} {:?} is neither an ODRL term nor a prefixed name nor an IRI",
                    truncate(term, 100)
                )));
            }
            Ok(odrl(term))
        }
        Some((prefix, local)) => match PREFIXES.iter().find(|(p, _)| *p == prefix) {
            Some((_, ns)) => iri(&format!("{ns}{local}"), what),
            None => iri(term, what),
        },
    }
}

/// Compacts a vocabulary IRI back to the form [`expand_term`] accepts.
pub(crate) fn compact_term(iri: &str) -> String {
    if let Some(local) = iri.strip_prefix(ODRL)
        && !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return local.to_string();
    }
    for (prefix, ns) in PREFIXES {
        if let Some(local) = iri.strip_prefix(ns)
            && !local.is_empty()
            && !local.contains(['/', '#', ':'])
        {
            return format!("{prefix}:{local}");
        }
    }
    iri.to_string()
}

/// Converts one compact ODRL offer to quads in `graph`. Returns the offer's node.
pub(crate) fn offer_to_quads(
    offer: &Value,
    graph: &GraphName,
    out: &mut Vec<Quad>,
) -> Result<NamedNode, CatalogError> {
    let mut w = Writer {
        graph,
        out,
        nodes: 0,
    };
    w.policy(offer)
}

struct Writer<'a> {
    graph: &'a GraphName,
    out: &'a mut Vec<Quad>,
    nodes: usize,
}

fn as_object<'v>(v: &'v Value, what: &str) -> Result<&'v Map<String, Value>, CatalogError> {
    v.as_object()
        .ok_or_else(|| invalid(format!("{what} must be a JSON object")))
}

fn as_str<'v>(v: &'v Value, what: &str) -> Result<&'v str, CatalogError> {
    v.as_str()
        .ok_or_else(|| invalid(format!("{what} must be a string")))
}

/// An array, or a single value standing for a one-element array.
fn as_items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), CatalogError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!(
            "{what} has unsupported key {:?} (allowed: {})",
            truncate(k, 60),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

impl Writer<'_> {
    fn add(&mut self, s: &NamedOrBlankNode, p: NamedNode, o: impl Into<Term>) {
        self.out
            .push(Quad::new(s.clone(), p, o, self.graph.clone()));
    }

    fn new_node(
        &mut self,
        obj: &Map<String, Value>,
        what: &'static str,
    ) -> Result<NamedOrBlankNode, CatalogError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(invalid(format!("offer has more than {MAX_NODES} nodes")));
        }
        match obj.get("@id") {
            Some(id) => Ok(iri(as_str(id, "@id")?, what)?.into()),
            None => Ok(BlankNode::default().into()),
        }
    }

    /// `assigner` and `assignee` of a policy or rule.
    fn parties(
        &mut self,
        node: &NamedOrBlankNode,
        obj: &Map<String, Value>,
    ) -> Result<(), CatalogError> {
        for party in ["assigner", "assignee"] {
            if let Some(p) = obj.get(party) {
                let party_iri = iri(as_str(p, party)?, "party")?;
                self.add(node, odrl(party), party_iri);
            }
        }
        Ok(())
    }

    fn policy(&mut self, v: &Value) -> Result<NamedNode, CatalogError> {
        let obj = as_object(v, "an offer")?;
        check_keys(
            obj,
            &[
                "@id",
                "@type",
                "profile",
                "assigner",
                "assignee",
                "permission",
                "prohibition",
                "obligation",
            ],
            "offer",
        )?;
        let id = obj
            .get("@id")
            .ok_or_else(|| invalid("offer has no @id: every offer needs an IRI as @id"))?;
        let id = iri(as_str(id, "offer @id")?, "offer")?;
        if let Some(t) = obj.get("@type") {
            let t = as_str(t, "offer @type")?;
            if t != "Offer" && t != "odrl:Offer" {
                return Err(invalid(format!(
                    "offer @type must be \"Offer\", not {:?}",
                    truncate(t, 60)
                )));
            }
        }
        if !obj.contains_key("permission") && !obj.contains_key("prohibition") {
            return Err(invalid("offer needs a permission or a prohibition"));
        }
        let node: NamedOrBlankNode = id.clone().into();
        self.nodes += 1;
        self.add(&node, rdf::TYPE.into_owned(), odrl("Offer"));
        if let Some(p) = obj.get("profile") {
            for item in as_items(p) {
                let profile = iri(as_str(item, "profile")?, "profile")?;
                self.add(&node, odrl("profile"), profile);
            }
        }
        self.parties(&node, obj)?;
        for key in ["permission", "prohibition", "obligation"] {
            self.rules(&node, obj, key, 0)?;
        }
        Ok(id)
    }

    /// Writes the rules under `key` (`permission`, `duty`, …) of `obj` as children of `parent`.
    fn rules(
        &mut self,
        parent: &NamedOrBlankNode,
        obj: &Map<String, Value>,
        key: &str,
        depth: usize,
    ) -> Result<(), CatalogError> {
        let Some(v) = obj.get(key) else { return Ok(()) };
        let items = v
            .as_array()
            .ok_or_else(|| invalid(format!("{key} must be an array")))?;
        if items.is_empty() {
            return Err(invalid(format!(
                "{key} must not be empty (leave it out instead)"
            )));
        }
        for item in items {
            let rule = self.rule(item, key, depth + 1)?;
            self.add(parent, odrl(key), rule);
        }
        Ok(())
    }

    fn rule(
        &mut self,
        v: &Value,
        kind: &str,
        depth: usize,
    ) -> Result<NamedOrBlankNode, CatalogError> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!("rules nest deeper than {MAX_DEPTH}")));
        }
        let obj = as_object(v, kind)?;
        // Nested rules: duties of a permission, remedies of a prohibition, consequences of a duty.
        let nested: &[&str] = match kind {
            "permission" => &["duty"],
            "prohibition" => &["remedy"],
            _ => &["consequence"],
        };
        let mut allowed = vec![
            "@id",
            "@type",
            "action",
            "constraint",
            "assigner",
            "assignee",
        ];
        allowed.extend_from_slice(nested);
        check_keys(obj, &allowed, kind)?;
        let node = self.new_node(obj, "rule")?;
        let action = obj
            .get("action")
            .ok_or_else(|| invalid(format!("{kind} has no action")))?;
        let action = expand_term(as_str(action, "action")?, "action")?;
        self.add(&node, odrl("action"), action);
        self.parties(&node, obj)?;
        self.constraints(&node, obj.get("constraint"), "constraint", depth)?;
        for key in nested {
            self.rules(&node, obj, key, depth)?;
        }
        Ok(node)
    }

    fn constraints(
        &mut self,
        parent: &NamedOrBlankNode,
        v: Option<&Value>,
        key: &str,
        depth: usize,
    ) -> Result<(), CatalogError> {
        let Some(v) = v else { return Ok(()) };
        let items = v
            .as_array()
            .ok_or_else(|| invalid(format!("{key} must be an array")))?;
        for item in items {
            let c = self.constraint(item, depth + 1)?;
            self.add(parent, odrl(key), c);
        }
        Ok(())
    }

    fn constraint(&mut self, v: &Value, depth: usize) -> Result<NamedOrBlankNode, CatalogError> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!("constraints nest deeper than {MAX_DEPTH}")));
        }
        let obj = as_object(v, "constraint")?;
        let logical: Vec<_> = LOGICAL
            .iter()
            .filter(|(k, _)| obj.contains_key(*k))
            .collect();
        match logical.as_slice() {
            [] => self.atomic(obj),
            [(key, ordered)] => {
                check_keys(obj, &["@id", "@type", key], "logical constraint")?;
                let node = self.new_node(obj, "constraint")?;
                let items = obj[*key]
                    .as_array()
                    .ok_or_else(|| invalid(format!("{key} must be an array of constraints")))?;
                let mut children = Vec::with_capacity(items.len());
                for item in items {
                    children.push(self.constraint(item, depth + 1)?);
                }
                if *ordered {
                    let head = self.list(children.into_iter().map(Term::from).collect());
                    self.add(&node, odrl(key), head);
                } else {
                    for child in children {
                        self.add(&node, odrl(key), child);
                    }
                }
                Ok(node)
            }
            _ => Err(invalid(
                "a logical constraint has exactly one of and, or, xone, andSequence",
            )),
        }
    }

    fn atomic(&mut self, obj: &Map<String, Value>) -> Result<NamedOrBlankNode, CatalogError> {
        check_keys(
            obj,
            &[
                "@id",
                "@type",
                "leftOperand",
                "operator",
                "rightOperand",
                "rightOperandReference",
                "unit",
                "dataType",
                "status",
            ],
            "constraint",
        )?;
        let node = self.new_node(obj, "constraint")?;
        let left = obj
            .get("leftOperand")
            .ok_or_else(|| invalid("constraint has no leftOperand"))?;
        let left = expand_term(as_str(left, "leftOperand")?, "leftOperand")?;
        self.add(&node, odrl("leftOperand"), left);
        let op = obj
            .get("operator")
            .ok_or_else(|| invalid("constraint has no operator"))?;
        let op = as_str(op, "operator")?;
        let op_local = op.strip_prefix("odrl:").unwrap_or(op);
        if !OPERATORS.contains(&op_local) {
            return Err(invalid(format!(
                "operator {:?} is not one of {}",
                truncate(op, 60),
                OPERATORS.join(", ")
            )));
        }
        self.add(&node, odrl("operator"), odrl(op_local));
        match (obj.get("rightOperand"), obj.get("rightOperandReference")) {
            (Some(r), None) => {
                let value = self.right_operand(r, true)?;
                self.add(&node, odrl("rightOperand"), value);
            }
            (None, Some(r)) => {
                let reference = iri(as_str(r, "rightOperandReference")?, "rightOperandReference")?;
                self.add(&node, odrl("rightOperandReference"), reference);
            }
            _ => {
                return Err(invalid(
                    "constraint needs exactly one of rightOperand and rightOperandReference",
                ));
            }
        }
        for (key, what) in [("unit", "unit"), ("dataType", "dataType")] {
            if let Some(v) = obj.get(key) {
                let value = iri(as_str(v, key)?, what)?;
                self.add(&node, odrl(key), value);
            }
        }
        if let Some(v) = obj.get("status") {
            let value = self.right_operand(v, false)?;
            self.add(&node, odrl("status"), value);
        }
        Ok(node)
    }

    /// A right operand: string, number, boolean, `{"@value",…}`, `{"@id"}`, or (top level) an array.
    fn right_operand(&mut self, v: &Value, allow_array: bool) -> Result<Term, CatalogError> {
        Ok(match v {
            Value::String(s) => Literal::new_simple_literal(s.as_str()).into(),
            Value::Bool(b) => Literal::from(*b).into(),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Literal::from(i).into(),
                None => Literal::from(n.as_f64().unwrap_or(f64::NAN)).into(),
            },
            Value::Array(items) if allow_array => {
                let mut terms = Vec::with_capacity(items.len());
                for item in items {
                    terms.push(self.right_operand(item, false)?);
                }
                self.list(terms)
            }
            Value::Object(obj) => value_object(obj)?,
            _ => {
                return Err(invalid(
                    "rightOperand must be a string, number, boolean, value object or array of them",
                ));
            }
        })
    }

    /// Writes an RDF list and returns its head.
    fn list(&mut self, items: Vec<Term>) -> Term {
        let mut head: Term = rdf::NIL.into_owned().into();
        for item in items.into_iter().rev() {
            let cell: NamedOrBlankNode = BlankNode::default().into();
            self.nodes += 1;
            self.add(&cell, rdf::FIRST.into_owned(), item);
            self.add(&cell, rdf::REST.into_owned(), head);
            head = cell.into();
        }
        head
    }
}

/// `{"@id": iri}`, `{"@value": v, "@type": t}` or `{"@value": v, "@language": l}`.
fn value_object(obj: &Map<String, Value>) -> Result<Term, CatalogError> {
    if let Some(id) = obj.get("@id") {
        check_keys(obj, &["@id"], "rightOperand")?;
        return Ok(iri(as_str(id, "rightOperand @id")?, "rightOperand")?.into());
    }
    check_keys(obj, &["@value", "@type", "@language"], "rightOperand")?;
    let value = obj
        .get("@value")
        .ok_or_else(|| invalid("rightOperand object needs @id or @value"))?;
    let lexical = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(invalid("@value must be a string, number or boolean")),
    };
    match (obj.get("@type"), obj.get("@language")) {
        (Some(t), None) => {
            let datatype = expand_term(as_str(t, "@type")?, "datatype")?;
            Ok(Literal::new_typed_literal(lexical, datatype).into())
        }
        (None, Some(l)) => Literal::new_language_tagged_literal(lexical, as_str(l, "@language")?)
            .map(Term::from)
            .map_err(|e| invalid(format!("bad @language: {e}"))),
        (None, None) => Ok(Literal::new_simple_literal(lexical).into()),
        (Some(_), Some(_)) => Err(invalid("@value cannot have both @type and @language")),
    }
}

/// Outgoing edges of each subject of a small graph.
pub(crate) type Index = HashMap<NamedOrBlankNode, Vec<(NamedNode, Term)>>;

/// Builds the [`Index`] of a set of quads.
pub(crate) fn index<'q>(quads: impl IntoIterator<Item = &'q Quad>) -> Index {
    let mut idx: Index = HashMap::new();
    for q in quads {
        idx.entry(q.subject.clone())
            .or_default()
            .push((q.predicate.clone(), q.object.clone()));
    }
    idx
}

/// Reads back the compact ODRL JSON of the offer `node` from `idx`.
pub(crate) fn offer_from_index(idx: &Index, node: &NamedNode) -> Result<Value, CatalogError> {
    let r = Reader { idx };
    let subject: NamedOrBlankNode = node.clone().into();
    let mut obj = Map::new();
    obj.insert("@id".into(), Value::String(node.as_str().to_string()));
    obj.insert("@type".into(), "Offer".into());
    let profiles: Vec<Value> = r
        .objects(&subject, "profile")
        .filter_map(|t| match t {
            Term::NamedNode(n) => Some(Value::String(n.as_str().to_string())),
            _ => None,
        })
        .collect();
    match profiles.len() {
        0 => {}
        1 => {
            obj.insert("profile".into(), profiles[0].clone());
        }
        _ => {
            obj.insert("profile".into(), sorted(profiles));
        }
    }
    r.parties(&subject, &mut obj);
    for key in ["permission", "prohibition", "obligation"] {
        r.rules(&subject, key, &mut obj, 0)?;
    }
    Ok(Value::Object(obj))
}

struct Reader<'a> {
    idx: &'a Index,
}

/// Sorts a JSON array into canonical order (ODRL sets have no order).
fn sorted(mut items: Vec<Value>) -> Value {
    items.sort_by_cached_key(|v| v.to_string());
    Value::Array(items)
}

fn corrupt(msg: &str) -> CatalogError {
    CatalogError::Corrupt(format!("ODRL policy: {msg}"))
}

impl Reader<'_> {
    fn objects<'s>(
        &'s self,
        s: &NamedOrBlankNode,
        local: &'s str,
    ) -> impl Iterator<Item = &'s Term> + 's {
        let edges = self.idx.get(s).map(Vec::as_slice).unwrap_or(&[]);
        edges
            .iter()
            .filter(move |(p, _)| p.as_str().strip_prefix(ODRL) == Some(local))
            .map(|(_, o)| o)
    }

    fn one<'s>(&'s self, s: &NamedOrBlankNode, local: &'s str) -> Option<&'s Term> {
        self.objects(s, local).next()
    }

    fn parties(&self, s: &NamedOrBlankNode, obj: &mut Map<String, Value>) {
        for party in ["assigner", "assignee"] {
            if let Some(Term::NamedNode(n)) = self.one(s, party) {
                obj.insert(party.into(), n.as_str().into());
            }
        }
    }

    fn rules(
        &self,
        s: &NamedOrBlankNode,
        key: &str,
        obj: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), CatalogError> {
        self.children(s, key, obj, |child| self.rule(child, key, depth + 1))
    }

    /// Reads the nodes under `key` of `s` with `read` into a sorted array (ODRL sets).
    fn children(
        &self,
        s: &NamedOrBlankNode,
        key: &str,
        obj: &mut Map<String, Value>,
        read: impl Fn(NamedOrBlankNode) -> Result<Value, CatalogError>,
    ) -> Result<(), CatalogError> {
        let mut items = Vec::new();
        for t in self.objects(s, key) {
            items.push(read(as_subject(t)?)?);
        }
        if !items.is_empty() {
            obj.insert(key.into(), sorted(items));
        }
        Ok(())
    }

    fn rule(&self, s: NamedOrBlankNode, kind: &str, depth: usize) -> Result<Value, CatalogError> {
        if depth > MAX_DEPTH {
            return Err(corrupt("rules nest too deep"));
        }
        let mut obj = Map::new();
        if let NamedOrBlankNode::NamedNode(n) = &s {
            obj.insert("@id".into(), n.as_str().into());
        }
        match self.one(&s, "action") {
            Some(Term::NamedNode(a)) => {
                obj.insert("action".into(), compact_term(a.as_str()).into())
            }
            _ => return Err(corrupt("a rule has no action IRI")),
        };
        self.parties(&s, &mut obj);
        self.constraints(&s, "constraint", &mut obj, depth)?;
        let nested = match kind {
            "permission" => "duty",
            "prohibition" => "remedy",
            _ => "consequence",
        };
        self.rules(&s, nested, &mut obj, depth)?;
        Ok(Value::Object(obj))
    }

    fn constraints(
        &self,
        s: &NamedOrBlankNode,
        key: &str,
        obj: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), CatalogError> {
        self.children(s, key, obj, |child| self.constraint(child, depth + 1))
    }

    fn constraint(&self, s: NamedOrBlankNode, depth: usize) -> Result<Value, CatalogError> {
        if depth > MAX_DEPTH {
            return Err(corrupt("constraints nest too deep"));
        }
        let mut obj = Map::new();
        if let NamedOrBlankNode::NamedNode(n) = &s {
            obj.insert("@id".into(), n.as_str().into());
        }
        for (key, ordered) in LOGICAL {
            let operands: Vec<&Term> = self.objects(&s, key).collect();
            if operands.is_empty() {
                continue;
            }
            let value = if *ordered {
                let mut items = Vec::new();
                for t in self.list(operands[0])? {
                    items.push(self.constraint(as_subject(&t)?, depth + 1)?);
                }
                Value::Array(items)
            } else {
                let mut items = Vec::new();
                for t in operands {
                    items.push(self.constraint(as_subject(t)?, depth + 1)?);
                }
                sorted(items)
            };
            obj.insert((*key).into(), value);
            return Ok(Value::Object(obj));
        }
        match self.one(&s, "leftOperand") {
            Some(Term::NamedNode(l)) => {
                obj.insert("leftOperand".into(), compact_term(l.as_str()).into())
            }
            _ => return Err(corrupt("a constraint has no leftOperand IRI")),
        };
        match self.one(&s, "operator") {
            Some(Term::NamedNode(o)) => {
                obj.insert("operator".into(), compact_term(o.as_str()).into())
            }
            _ => return Err(corrupt("a constraint has no operator IRI")),
        };
        let rights: Vec<&Term> = self.objects(&s, "rightOperand").collect();
        match rights.as_slice() {
            [] => {}
            [one] => {
                obj.insert("rightOperand".into(), self.right_operand(one)?);
            }
            many => {
                // Several values (as imported Turtle may state) read as a set.
                let mut items = Vec::new();
                for t in many {
                    items.push(term_value(t.as_ref()));
                }
                obj.insert("rightOperand".into(), sorted(items));
            }
        }
        for key in ["rightOperandReference", "unit", "dataType"] {
            if let Some(Term::NamedNode(n)) = self.one(&s, key) {
                obj.insert(key.into(), n.as_str().into());
            }
        }
        if let Some(t) = self.one(&s, "status") {
            obj.insert("status".into(), term_value(t.as_ref()));
        }
        Ok(Value::Object(obj))
    }

    fn right_operand(&self, t: &Term) -> Result<Value, CatalogError> {
        if self.is_list(t) {
            let items = self.list(t)?;
            return Ok(Value::Array(
                items.iter().map(|i| term_value(i.as_ref())).collect(),
            ));
        }
        Ok(term_value(t.as_ref()))
    }

    fn is_list(&self, t: &Term) -> bool {
        match t {
            Term::NamedNode(n) => n.as_ref() == rdf::NIL,
            Term::BlankNode(b) => self
                .idx
                .get(&NamedOrBlankNode::BlankNode(b.clone()))
                .is_some_and(|edges| edges.iter().any(|(p, _)| p.as_ref() == rdf::FIRST)),
            _ => false,
        }
    }

    /// Items of the RDF list starting at `head` (bounded, cycle-safe).
    fn list(&self, head: &Term) -> Result<Vec<Term>, CatalogError> {
        let mut items = Vec::new();
        let mut cur = head.clone();
        loop {
            if let Term::NamedNode(n) = &cur
                && n.as_ref() == rdf::NIL
            {
                return Ok(items);
            }
            if items.len() > MAX_NODES {
                return Err(corrupt("an RDF list is too long or cyclic"));
            }
            let subject = as_subject(&cur)?;
            let edges = self.idx.get(&subject).map(Vec::as_slice).unwrap_or(&[]);
            let first = edges.iter().find(|(p, _)| p.as_ref() == rdf::FIRST);
            let rest = edges.iter().find(|(p, _)| p.as_ref() == rdf::REST);
            match (first, rest) {
                (Some((_, f)), Some((_, r))) => {
                    items.push(f.clone());
                    cur = r.clone();
                }
                _ => return Err(corrupt("an RDF list cell lacks rdf:first or rdf:rest")),
            }
        }
    }
}

fn as_subject(t: &Term) -> Result<NamedOrBlankNode, CatalogError> {
    match t {
        Term::NamedNode(n) => Ok(n.clone().into()),
        Term::BlankNode(b) => Ok(b.clone().into()),
        _ => Err(corrupt("a literal where a node was expected")),
    }
}

/// JSON form of a right-operand term; non-string literals become value objects so the
/// output stays within the DSP schema (string, object or array).
fn term_value(t: TermRef<'_>) -> Value {
    match t {
        TermRef::NamedNode(n) => serde_json::json!({ "@id": n.as_str() }),
        TermRef::BlankNode(b) => serde_json::json!({ "@id": format!("_:{}", b.as_str()) }),
        TermRef::Literal(l) => {
            if let Some(lang) = l.language() {
                serde_json::json!({ "@value": l.value(), "@language": lang })
            } else if l.datatype() == xsd::STRING {
                Value::String(l.value().to_string())
            } else {
                serde_json::json!({ "@value": l.value(), "@type": compact_term(l.datatype().as_str()) })
            }
        }
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}
