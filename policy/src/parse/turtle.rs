//! Parsing ODRL policies from Turtle (via `oxttl`).
//!
//! A Turtle document is read into a [`Graph`]; [`policy_from_graph`] then builds the policy
//! rooted at one subject. Multi-valued properties (`odrl:and a, b`) and RDF lists are both
//! accepted where ODRL allows several values.

use std::collections::HashMap;

use oxrdf::{NamedOrBlankNode, Term};

use crate::error::{PolicyError, limits};
use crate::model::*;
use crate::value::parse_datetime;
use crate::vocab::{self, DCT, ODRL, RDF};

/// An RDF term as the policy builder needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Object {
    /// An IRI.
    Iri(String),
    /// A blank node (by its label).
    Blank(String),
    /// A literal with its datatype IRI.
    Literal {
        /// Lexical form.
        lexical: String,
        /// Datatype IRI (`xsd:string` for plain literals).
        datatype: String,
    },
}

impl Object {
    /// The node key of an IRI or blank node (blank nodes as `_:label`).
    pub fn key(&self) -> Option<String> {
        match self {
            Object::Iri(i) => Some(i.clone()),
            Object::Blank(b) => Some(format!("_:{b}")),
            Object::Literal { .. } => None,
        }
    }

    /// The IRI, if it is one.
    pub fn iri(&self) -> Option<&str> {
        match self {
            Object::Iri(i) => Some(i),
            _ => None,
        }
    }
}

/// Triples indexed by subject, in document order.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    by_subject: HashMap<String, Vec<(String, Object)>>,
    triples: usize,
}

/// Most triples read from one Turtle document.
pub const MAX_TRIPLES: usize = 200_000;

impl Graph {
    /// Parses a Turtle document.
    pub fn parse(ttl: &str) -> Result<Graph, PolicyError> {
        let mut g = Graph::default();
        g.add_turtle(ttl)?;
        Ok(g)
    }

    /// Adds the triples of a Turtle document.
    pub fn add_turtle(&mut self, ttl: &str) -> Result<(), PolicyError> {
        for triple in oxttl::TurtleParser::new().for_slice(ttl) {
            let t = triple.map_err(|e| PolicyError::new("turtle", e.to_string()))?;
            let subject = match t.subject {
                NamedOrBlankNode::NamedNode(n) => n.into_string(),
                NamedOrBlankNode::BlankNode(b) => format!("_:{}", b.as_str()),
            };
            let object = match t.object {
                Term::NamedNode(n) => Object::Iri(n.into_string()),
                Term::BlankNode(b) => Object::Blank(b.as_str().to_string()),
                Term::Literal(l) => Object::Literal {
                    lexical: l.value().to_string(),
                    datatype: l.datatype().as_str().to_string(),
                },
                #[allow(unreachable_patterns)]
                _ => {
                    return Err(PolicyError::new(
                        "turtle",
                        "RDF 1.2 triple terms are not supported",
                    ));
                }
            };
            let too_long = match &object {
                Object::Iri(s) | Object::Blank(s) => s.len(),
                Object::Literal { lexical, .. } => lexical.len(),
            } > limits::MAX_STRING;
            if too_long || subject.len() > limits::MAX_STRING {
                return Err(PolicyError::new(
                    "turtle",
                    format!("a term is longer than {} bytes", limits::MAX_STRING),
                ));
            }
            self.triples += 1;
            if self.triples > MAX_TRIPLES {
                return Err(PolicyError::new(
                    "turtle",
                    format!("more than {MAX_TRIPLES} triples"),
                ));
            }
            self.by_subject
                .entry(subject)
                .or_default()
                .push((t.predicate.into_string(), object));
        }
        Ok(())
    }

    /// All objects of `subject predicate ?o`, in document order.
    pub fn objects<'a>(
        &'a self,
        subject: &str,
        predicate: &str,
    ) -> impl Iterator<Item = &'a Object> + use<'a> {
        let predicate = predicate.to_string();
        self.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter(move |(p, _)| *p == predicate)
            .map(|(_, o)| o)
    }

    /// The first object of `subject predicate ?o`.
    pub fn object(&self, subject: &str, predicate: &str) -> Option<&Object> {
        self.objects(subject, predicate).next()
    }

    /// Whether `subject` has `rdf:type type_iri`.
    pub fn has_type(&self, subject: &str, type_iri: &str) -> bool {
        self.objects(subject, &format!("{RDF}type"))
            .any(|o| o.iri() == Some(type_iri))
    }

    /// Subjects with `rdf:type type_iri`.
    pub fn subjects_of_type(&self, type_iri: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_subject
            .keys()
            .filter(|s| self.has_type(s, type_iri))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// All (subject, object) pairs of a predicate.
    pub fn pairs<'a>(
        &'a self,
        predicate: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Object)> + 'a {
        self.by_subject.iter().flat_map(move |(s, pos)| {
            pos.iter()
                .filter(move |(p, _)| p == predicate)
                .map(move |(_, o)| (s.as_str(), o))
        })
    }

    /// Whether `o` is an RDF list (`rdf:nil` or a node with `rdf:first`).
    pub fn is_list(&self, o: &Object) -> bool {
        o.iri() == Some(&format!("{RDF}nil"))
            || o.key()
                .is_some_and(|k| self.object(&k, &format!("{RDF}first")).is_some())
    }

    /// The members of `o`: an RDF list's items, or `o` itself.
    pub fn list_items(&self, o: &Object) -> Vec<Object> {
        let first = format!("{RDF}first");
        let rest = format!("{RDF}rest");
        let nil = format!("{RDF}nil");
        let mut out = Vec::new();
        let mut cur = o.clone();
        for _ in 0..limits::MAX_NODES {
            if cur.iri() == Some(nil.as_str()) {
                return out;
            }
            let Some(key) = cur.key() else {
                return vec![o.clone()];
            };
            match (self.object(&key, &first), self.object(&key, &rest)) {
                (Some(f), Some(r)) => {
                    out.push(f.clone());
                    cur = r.clone();
                }
                _ if out.is_empty() => return vec![o.clone()],
                _ => break,
            }
        }
        out
    }
}

/// Parses the single policy of a Turtle document (the subject typed as an ODRL policy).
pub fn parse_policy(ttl: &str) -> Result<Policy, PolicyError> {
    let g = Graph::parse(ttl)?;
    let mut roots: Vec<String> = ["Set", "Offer", "Agreement", "Request", "Policy"]
        .iter()
        .flat_map(|t| g.subjects_of_type(&vocab::odrl(t)))
        .collect();
    roots.dedup();
    match roots.as_slice() {
        [one] => policy_from_graph(&g, one),
        [] => Err(PolicyError::new(
            "turtle",
            "no odrl:Set, Offer, Agreement or Request found",
        )),
        _ => Err(PolicyError::new(
            "turtle",
            "more than one policy in the document",
        )),
    }
}

/// Builds the policy rooted at `subject`.
pub fn policy_from_graph(g: &Graph, subject: &str) -> Result<Policy, PolicyError> {
    let mut b = Builder { g, nodes: 0 };
    b.policy(subject)
}

struct Builder<'g> {
    g: &'g Graph,
    nodes: usize,
}

fn odrl(local: &str) -> String {
    vocab::odrl(local)
}

impl Builder<'_> {
    fn tick(&mut self, at: &str, depth: usize) -> Result<(), PolicyError> {
        self.nodes += 1;
        if self.nodes > limits::MAX_NODES {
            return Err(PolicyError::new(at, "policy too large"));
        }
        if depth > limits::MAX_DEPTH {
            return Err(PolicyError::new(at, "nested too deeply"));
        }
        Ok(())
    }

    fn policy(&mut self, s: &str) -> Result<Policy, PolicyError> {
        let g = self.g;
        let kind = ["Set", "Offer", "Agreement", "Request", "Policy"]
            .iter()
            .find(|t| g.has_type(s, &odrl(t)))
            .and_then(|t| PolicyKind::from_iri(&odrl(t)))
            .unwrap_or(PolicyKind::Set);
        let uid = match g.object(s, &odrl("uid")) {
            Some(o) => o.iri().map(str::to_string),
            None => (!s.starts_with("_:")).then(|| s.to_string()),
        };
        let timestamp = [format!("{DCT}issued"), format!("{ODRL}timestamp")]
            .iter()
            .find_map(|p| g.object(s, p))
            .map(|o| match o {
                Object::Literal { lexical, .. } => parse_datetime(lexical).ok_or_else(|| {
                    PolicyError::new(s, format!("'{lexical}' is not an xsd:dateTime"))
                }),
                _ => Err(PolicyError::new(s, "timestamp must be a literal")),
            })
            .transpose()?;
        let conflict = match g.object(s, &odrl("conflict")).and_then(Object::iri) {
            None => None,
            Some(i) => Some(match i.strip_prefix(ODRL) {
                Some("perm") => ConflictStrategy::Perm,
                Some("prohibit") => ConflictStrategy::Prohibit,
                Some("invalid") => ConflictStrategy::Invalid,
                _ => {
                    return Err(PolicyError::new(
                        s,
                        format!("unknown conflict strategy '{i}'"),
                    ));
                }
            }),
        };
        let mut permissions = self.rules(s, "permission", 1)?;
        let mut prohibitions = self.rules(s, "prohibition", 1)?;
        let mut obligations = self.rules(s, "obligation", 1)?;
        // a compact policy states the action once for all its rules
        if let Some(o) = g.object(s, &odrl("action")).cloned() {
            let action = self.action(s, &o, 0)?;
            for r in permissions
                .iter_mut()
                .chain(prohibitions.iter_mut())
                .chain(obligations.iter_mut())
            {
                if r.action.is_none() {
                    r.action = Some(action.clone());
                }
            }
        }
        Ok(Policy {
            kind,
            uid,
            target: self.reference(s, "target", 0)?,
            assigner: self.reference(s, "assigner", 0)?,
            assignee: self.reference(s, "assignee", 0)?,
            timestamp,
            profiles: g
                .objects(s, &odrl("profile"))
                .filter_map(|o| o.iri().map(str::to_string))
                .collect(),
            conflict,
            permissions,
            prohibitions,
            obligations,
        })
    }

    fn reference(
        &mut self,
        s: &str,
        key: &str,
        depth: usize,
    ) -> Result<Option<Reference>, PolicyError> {
        let Some(o) = self.g.object(s, &odrl(key)) else {
            return Ok(None);
        };
        let at = format!("{s} odrl:{key}");
        self.tick(&at, depth)?;
        let Some(k) = o.key() else {
            return Err(PolicyError::new(at, "expected an IRI"));
        };
        let collection = self.g.has_type(&k, &odrl("AssetCollection"))
            || self.g.has_type(&k, &odrl("PartyCollection"));
        let refinement = self.constraints(&k, "refinement", depth + 1)?;
        Ok(Some(Reference {
            uid: k,
            collection: collection || !refinement.is_empty(),
            refinement,
        }))
    }

    fn rules(&mut self, s: &str, key: &str, depth: usize) -> Result<Vec<Rule>, PolicyError> {
        let objects: Vec<Object> = self.g.objects(s, &odrl(key)).cloned().collect();
        objects
            .iter()
            .map(|o| {
                let k = o.key().ok_or_else(|| {
                    PolicyError::new(format!("{s} odrl:{key}"), "expected a rule node")
                })?;
                self.rule(&k, key, depth)
            })
            .collect()
    }

    fn rule(&mut self, s: &str, key: &str, depth: usize) -> Result<Rule, PolicyError> {
        self.tick(s, depth)?;
        let objects: Vec<Object> = self.g.objects(s, &odrl("action")).cloned().collect();
        let mut actions = objects
            .iter()
            .map(|o| self.action(s, o, depth))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut rule = Rule {
            uid: (!s.starts_with("_:")).then(|| s.to_string()),
            action: actions.next(),
            composite_actions: actions.collect(),
            target: self.reference(s, "target", depth)?,
            assigner: self.reference(s, "assigner", depth)?,
            assignee: self.reference(s, "assignee", depth)?,
            constraints: self.constraints(s, "constraint", depth + 1)?,
            duties: Vec::new(),
            remedies: Vec::new(),
            consequences: Vec::new(),
        };
        match key {
            "permission" => rule.duties = self.rules(s, "duty", depth + 1)?,
            "prohibition" => rule.remedies = self.rules(s, "remedy", depth + 1)?,
            _ => rule.consequences = self.rules(s, "consequence", depth + 1)?,
        }
        Ok(rule)
    }

    fn action(&mut self, s: &str, o: &Object, depth: usize) -> Result<Action, PolicyError> {
        let at = format!("{s} odrl:action");
        let (iri, refinement) = match o {
            Object::Iri(i) if self.g.object(i, &format!("{RDF}value")).is_none() => {
                (i.clone(), Vec::new())
            }
            Object::Literal { .. } => return Err(PolicyError::new(at, "an action must be an IRI")),
            node => {
                let k = node.key().unwrap_or_default();
                let value = self
                    .g
                    .object(&k, &format!("{RDF}value"))
                    .and_then(Object::iri)
                    .ok_or_else(|| PolicyError::new(&at, "a refined action needs rdf:value"))?
                    .to_string();
                (value, self.constraints(&k, "refinement", depth + 1)?)
            }
        };
        Action::checked(iri, refinement, &at)
    }

    fn constraints(
        &mut self,
        s: &str,
        key: &str,
        depth: usize,
    ) -> Result<Vec<Constraint>, PolicyError> {
        let objects: Vec<Object> = self
            .g
            .objects(s, &odrl(key))
            .flat_map(|o| self.g.list_items(o))
            .collect();
        objects
            .iter()
            .map(|o| self.constraint(s, o, depth))
            .collect()
    }

    fn constraint(
        &mut self,
        parent: &str,
        o: &Object,
        depth: usize,
    ) -> Result<Constraint, PolicyError> {
        let Some(k) = o.key() else {
            return Err(PolicyError::new(parent, "a constraint must be a node"));
        };
        self.tick(&k, depth)?;
        let uid = (!k.starts_with("_:")).then(|| k.clone());
        for op in [
            LogicalOperator::And,
            LogicalOperator::Or,
            LogicalOperator::Xone,
            LogicalOperator::AndSequence,
        ] {
            let pred = odrl(op.term());
            if self.g.object(&k, &pred).is_some() {
                let items: Vec<Object> = self
                    .g
                    .objects(&k, &pred)
                    .flat_map(|x| self.g.list_items(x))
                    .collect();
                let operands = items
                    .iter()
                    .map(|x| self.constraint(&k, x, depth + 1))
                    .collect::<Result<_, _>>()?;
                return Ok(Constraint::Logical(LogicalConstraint {
                    uid,
                    operator: op,
                    operands,
                }));
            }
        }
        let left_operand = self
            .g
            .object(&k, &odrl("leftOperand"))
            .and_then(Object::iri)
            .ok_or_else(|| PolicyError::new(&k, "a constraint needs an IRI leftOperand"))?
            .to_string();
        vocab::check_left_operand(&left_operand)
            .map_err(|m| PolicyError::new(format!("{k} odrl:leftOperand"), m))?;
        let op_iri = self
            .g
            .object(&k, &odrl("operator"))
            .and_then(Object::iri)
            .ok_or_else(|| PolicyError::new(&k, "a constraint needs an IRI operator"))?;
        let operator = Operator::from_iri(op_iri).ok_or_else(|| {
            PolicyError::new(
                format!("{k} odrl:operator"),
                format!("unknown operator '{}'", vocab::compact(op_iri)),
            )
        })?;
        let objects: Vec<&Object> = self.g.objects(&k, &odrl("rightOperand")).collect();
        // an RDF list stays a list even with one member (as a one-member JSON array does)
        let is_list = objects.len() == 1 && self.g.is_list(objects[0]);
        let rights: Vec<Value> = objects
            .iter()
            .flat_map(|x| self.g.list_items(x))
            .map(|x| value(&x))
            .collect();
        // values count against the size bound like every other node
        self.nodes += rights.len();
        if self.nodes > limits::MAX_NODES {
            return Err(PolicyError::new(&k, "policy too large"));
        }
        let right_operand = match rights.len() {
            0 if !is_list => return Err(PolicyError::new(&k, "a constraint needs a rightOperand")),
            1 if !is_list => rights.into_iter().next().unwrap_or(Value::List(Vec::new())),
            _ => Value::List(rights),
        };
        Ok(Constraint::Atomic(AtomicConstraint {
            uid,
            left_operand,
            operator,
            right_operand,
            unit: self
                .g
                .object(&k, &odrl("unit"))
                .and_then(Object::iri)
                .map(str::to_string),
        }))
    }
}

/// An RDF object as a model value (plain strings keep `datatype: None`).
pub fn value(o: &Object) -> Value {
    match o {
        Object::Iri(i) => Value::Iri(i.clone()),
        Object::Blank(b) => Value::Iri(format!("_:{b}")),
        Object::Literal { lexical, datatype } => Value::Literal {
            lexical: lexical.clone(),
            datatype: (datatype != &format!("{}string", vocab::XSD)).then(|| datatype.clone()),
        },
    }
}
