//! Evaluation: a pure function of (policy, request, state of the world).
//!
//! [`Evaluator::new`] checks once that every left operand of the policy can be evaluated
//! (an unknown one is an error, never ignored) and pre-parses right operands; then
//! [`Evaluator::decide`] (fast, no allocation for typical policies) or
//! [`Evaluator::report`] (with a FORCE compliance report) run per request.
//!
//! Readings chosen where ODRL 2.2 is loose (see also `conformance/odrl-cases/README.md`):
//! - a rule's target/assignee matches the request's when equal or when the request's is
//!   `odrl:partOf` it (transitively) in the state of the world;
//! - the requested action must be the rule's action or included in it (`read` under `use`);
//! - a duty blocks its permission only when the state of the world records it violated
//!   (as the ODRL test suite expects: unknown/NonSet duties do not block);
//! - set operators: `isAnyOf` = some left member is in the right set, `isNoneOf` = none is,
//!   `isAllOf` = every right member is among the left members, `isPartOf` = every left
//!   member is in the right set or `partOf` one of it, `hasPart` = every right member is
//!   among the left ones or `partOf` one of them, `isA` = the left value has the right
//!   value as `rdf:type` (or is it);
//! - a left operand without a value in the request or the world is unsatisfied (fail closed).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::error::PolicyError;
use crate::model::*;
use crate::report::*;
use crate::value::{Duration, parse_datetime, parse_duration};
use crate::vocab::{self, ODRL, SLUIS, XSD};

/// What is asked: a party wants to perform an action on a target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// The request's uid (for reports).
    pub uid: Option<String>,
    /// The requesting party.
    pub assignee: Option<String>,
    /// The requested action (IRI).
    pub action: Option<String>,
    /// The requested asset.
    pub target: Option<String>,
    /// Values the requester declares for left operands (e.g. `odrl:purpose`), by IRI.
    pub context: Vec<(String, Value)>,
}

impl Request {
    /// A request by `assignee` to perform `action` (a compact ODRL term such as `read`, a
    /// prefixed name or an IRI) on `target`.
    pub fn new(assignee: &str, action: &str, target: &str) -> Request {
        let action = if action.contains(':') {
            action.replacen("odrl:", vocab::ODRL, 1)
        } else {
            vocab::odrl(action)
        };
        Request {
            uid: None,
            assignee: Some(assignee.to_string()),
            action: Some(action),
            target: Some(target.to_string()),
            context: Vec::new(),
        }
    }

    /// Declares the value of a left operand (e.g. `odrl:purpose`) for this request.
    pub fn with(mut self, left_operand: &str, value: Value) -> Request {
        let iri = if left_operand.contains(':') {
            left_operand.replacen("odrl:", vocab::ODRL, 1)
        } else {
            vocab::odrl(left_operand)
        };
        self.context.push((iri, value));
        self
    }
}

/// The state of the world the request is judged in. "Now" is here, never read from a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// The current time.
    pub now: DateTime<Utc>,
    /// When the agreement started (for `odrl:elapsedTime`); defaults to the policy timestamp.
    pub agreement_start: Option<DateTime<Utc>>,
    /// How often the permission was exercised before (for `odrl:count`).
    pub use_count: u64,
    /// `odrl:partOf` memberships: member → collections.
    pub part_of: HashMap<String, Vec<String>>,
    /// `rdf:type`s of values (for `isA`).
    pub types: HashMap<String, Vec<String>>,
    /// Recorded duty states by duty uid.
    pub duties: HashMap<String, DeonticState>,
    /// Values of other left operands known to the provider (e.g. `odrl:spatial`), by IRI.
    pub operands: HashMap<String, Value>,
}

impl World {
    /// A world at `now` with nothing else known.
    pub fn at(now: DateTime<Utc>) -> World {
        World {
            now,
            agreement_start: None,
            use_count: 0,
            part_of: HashMap::new(),
            types: HashMap::new(),
            duties: HashMap::new(),
            operands: HashMap::new(),
        }
    }

    /// Whether `member` is `collection` or transitively `partOf` it.
    pub fn is_part_of(&self, member: &str, collection: &str) -> bool {
        if member == collection {
            return true;
        }
        if !self.part_of.contains_key(member) {
            return false;
        }
        let mut seen = vec![member];
        let mut i = 0;
        while i < seen.len() && seen.len() < 10_000 {
            if seen[i] == collection {
                return true;
            }
            if let Some(parents) = self.part_of.get(seen[i]) {
                for p in parents {
                    if !seen.contains(&p.as_str()) {
                        seen.push(p);
                    }
                }
            }
            i += 1;
        }
        false
    }
}

/// A connector-supplied left operand: its value for a request in a world.
pub type Resolver = Box<dyn Fn(&Request, &World) -> Option<Value> + Send + Sync>;

/// The extension point: resolvers for left operands outside ODRL 2.2 (claims from the
/// caller's certificate, say), and whether Sluis data-plane operands are deferred.
#[derive(Default)]
pub struct Extensions {
    resolvers: HashMap<String, Resolver>,
    defer_data_plane: bool,
}

impl Extensions {
    /// No extensions.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// Registers a resolver for the left operand `iri` (full IRI, or the bare term as parsed).
    pub fn with(mut self, iri: impl Into<String>, f: Resolver) -> Extensions {
        self.resolvers.insert(iri.into(), f);
        self
    }

    /// Treats Sluis data-plane left operands (`sluis:row.*`, `sluis:column`, ...) as satisfied
    /// here, because the data plane enforces them (the caller must compile the agreement
    /// with `enforcement::compile`).
    pub fn defer_data_plane(mut self) -> Extensions {
        self.defer_data_plane = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Typed<'a> {
    Time(DateTime<Utc>),
    Date(chrono::NaiveDate),
    Num(f64),
    Text(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Left<'p> {
    DateTime,
    ElapsedTime,
    Count,
    Recipient,
    Deferred,
    Named(&'p str),
}

enum Compiled<'p> {
    Atomic {
        src: &'p AtomicConstraint,
        left: Left<'p>,
        right: Vec<Typed<'p>>,
        duration: Option<Duration>,
    },
    Logical {
        src: &'p LogicalConstraint,
        operands: Vec<Compiled<'p>>,
    },
}

struct CompiledRule<'p> {
    kind: RuleKind,
    rule: &'p Rule,
    target: Option<&'p Reference>,
    assignee: Option<&'p Reference>,
    constraints: Vec<Compiled<'p>>,
}

/// A policy prepared for evaluation.
pub struct Evaluator<'p> {
    policy: &'p Policy,
    rules: Vec<CompiledRule<'p>>,
    extensions: &'p Extensions,
}

impl<'p> Evaluator<'p> {
    /// Prepares `policy`; fails if a left operand cannot be evaluated or a right operand
    /// does not fit its left operand (e.g. a dateTime that does not parse).
    pub fn new(
        policy: &'p Policy,
        extensions: &'p Extensions,
    ) -> Result<Evaluator<'p>, PolicyError> {
        let mut rules = Vec::new();
        let sections = [
            (RuleKind::Permission, "permission", &policy.permissions),
            (RuleKind::Prohibition, "prohibition", &policy.prohibitions),
            (RuleKind::Obligation, "obligation", &policy.obligations),
        ];
        for (kind, key, list) in sections {
            for (i, rule) in list.iter().enumerate() {
                let path = format!("{key}[{i}]");
                let mut constraints = Vec::new();
                // refinements of the action, target and assignee are premises too
                let refinements = rule
                    .actions()
                    .flat_map(|a| a.refinement.iter())
                    .chain(
                        rule.target
                            .iter()
                            .chain(policy.target.iter())
                            .take(1)
                            .flat_map(|r| r.refinement.iter()),
                    )
                    .chain(
                        rule.assignee
                            .iter()
                            .chain(policy.assignee.iter())
                            .take(1)
                            .flat_map(|r| r.refinement.iter()),
                    );
                for (j, c) in rule.constraints.iter().chain(refinements).enumerate() {
                    constraints.push(compile(c, &format!("{path}.constraint[{j}]"), extensions)?);
                }
                rules.push(CompiledRule {
                    kind,
                    rule,
                    target: rule.target.as_ref().or(policy.target.as_ref()),
                    assignee: rule.assignee.as_ref().or(policy.assignee.as_ref()),
                    constraints,
                });
            }
        }
        Ok(Evaluator {
            policy,
            rules,
            extensions,
        })
    }

    /// The decision alone (no report is built).
    pub fn decide(&self, req: &Request, world: &World) -> Decision {
        let mut perm = false;
        let mut prohibit = false;
        for r in &self.rules {
            let active = match r.kind {
                RuleKind::Permission if !perm => self.rule_active(r, req, world, None),
                RuleKind::Prohibition if !prohibit => self.rule_active(r, req, world, None),
                _ => continue,
            };
            match r.kind {
                RuleKind::Permission => perm |= active,
                RuleKind::Prohibition => prohibit |= active,
                RuleKind::Obligation => {}
            }
        }
        self.combine(perm, prohibit).0
    }

    /// The decision with the full compliance report.
    pub fn report(&self, req: &Request, world: &World) -> PolicyReport<'p> {
        let mut rules = Vec::with_capacity(self.rules.len());
        let (mut perm, mut prohibit) = (false, false);
        for r in &self.rules {
            let mut premises = Vec::new();
            let active = self.rule_active(r, req, world, Some(&mut premises));
            match r.kind {
                RuleKind::Permission => perm |= active,
                RuleKind::Prohibition => prohibit |= active,
                RuleKind::Obligation => {}
            }
            rules.push(RuleReport {
                kind: r.kind,
                rule: r.rule.uid.as_deref(),
                activation: if active {
                    ActivationState::Active
                } else {
                    ActivationState::Inactive
                },
                premises,
                conditions: r
                    .rule
                    .duties
                    .iter()
                    .map(|d| (d.uid.as_deref(), duty_state(d, world)))
                    .collect(),
            });
        }
        let (decision, conflict) = self.combine(perm, prohibit);
        PolicyReport {
            policy: self.policy.uid.as_deref(),
            decision,
            conflict,
            rules,
        }
    }

    fn combine(&self, perm: bool, prohibit: bool) -> (Decision, bool) {
        let conflict = perm && prohibit;
        let permit = match self.policy.conflict.unwrap_or_default() {
            ConflictStrategy::Perm => perm,
            ConflictStrategy::Prohibit | ConflictStrategy::Invalid => perm && !prohibit,
        };
        (
            if permit {
                Decision::Permit
            } else {
                Decision::Deny
            },
            conflict,
        )
    }

    fn rule_active(
        &self,
        r: &CompiledRule<'p>,
        req: &Request,
        world: &World,
        mut sink: Option<&mut Vec<PremiseReport<'p>>>,
    ) -> bool {
        let mut all = true;
        let mut note = |ok: bool,
                        make: fn(SatisfactionState) -> PremiseReport<'p>,
                        sink: &mut Option<&mut Vec<PremiseReport<'p>>>| {
            all &= ok;
            if let Some(s) = sink.as_deref_mut() {
                s.push(make(SatisfactionState::from_bool(ok)));
            }
        };
        if let Some(t) = r.target {
            let ok = req
                .target
                .as_deref()
                .is_some_and(|x| world.is_part_of(x, &t.uid));
            note(ok, PremiseReport::Target, &mut sink);
        }
        if let Some(p) = r.assignee {
            let ok = req
                .assignee
                .as_deref()
                .is_some_and(|x| world.is_part_of(x, &p.uid));
            note(ok, PremiseReport::Party, &mut sink);
        }
        if r.rule.action.is_some() {
            // a composite rule applies to each of its actions
            let ok = req.action.as_deref().is_some_and(|x| {
                r.rule
                    .actions()
                    .any(|a| vocab::action_included_in(x, &a.iri))
            });
            note(ok, PremiseReport::Action, &mut sink);
        }
        if sink.is_none() && !all {
            return false;
        }
        for c in &r.constraints {
            let mut report = sink.is_some().then(Vec::new);
            let ok = self.constraint(c, req, world, report.as_mut());
            all &= ok;
            if let (Some(s), Some(mut rep)) = (sink.as_deref_mut(), report) {
                s.extend(rep.pop().map(PremiseReport::Constraint));
            }
            if sink.is_none() && !all {
                return false;
            }
        }
        let duty_violated = r.kind == RuleKind::Permission
            && r.rule
                .duties
                .iter()
                .any(|d| duty_state(d, world) == DeonticState::Violated);
        all && !duty_violated
    }

    fn constraint(
        &self,
        c: &Compiled<'p>,
        req: &Request,
        world: &World,
        sink: Option<&mut Vec<ConstraintReport<'p>>>,
    ) -> bool {
        match c {
            Compiled::Atomic {
                src,
                left,
                right,
                duration,
            } => {
                let ok = self.atomic(src, *left, right, duration.as_ref(), req, world);
                if let Some(s) = sink {
                    s.push(ConstraintReport {
                        constraint: src.uid.as_deref(),
                        satisfaction: SatisfactionState::from_bool(ok),
                        logical: None,
                        operands: Vec::new(),
                    });
                }
                ok
            }
            Compiled::Logical { src, operands } => {
                let reporting = sink.is_some();
                let mut reports = Vec::with_capacity(if reporting { operands.len() } else { 0 });
                let mut satisfied = 0usize;
                let mut all = true;
                for o in operands {
                    let ok = self.constraint(o, req, world, reporting.then_some(&mut reports));
                    satisfied += usize::from(ok);
                    all &= ok;
                    // without a report, stop as soon as the outcome is known
                    if !reporting && decided(src.operator, ok, satisfied) {
                        break;
                    }
                }
                let ok = match src.operator {
                    LogicalOperator::And | LogicalOperator::AndSequence => all,
                    LogicalOperator::Or => satisfied > 0,
                    LogicalOperator::Xone => satisfied == 1,
                };
                if let Some(s) = sink {
                    s.push(ConstraintReport {
                        constraint: src.uid.as_deref(),
                        satisfaction: SatisfactionState::from_bool(ok),
                        logical: Some(src.operator),
                        operands: reports,
                    });
                }
                ok
            }
        }
    }

    fn atomic(
        &self,
        src: &AtomicConstraint,
        left: Left<'_>,
        right: &[Typed<'_>],
        duration: Option<&Duration>,
        req: &Request,
        world: &World,
    ) -> bool {
        let owned: Option<Cow<'_, Value>>;
        let deadline;
        let mut one = [Typed::Num(0.0)];
        let mut many = Vec::new();
        let lefts: &[Typed] = match left {
            Left::Deferred => return true,
            Left::DateTime => {
                one[0] = Typed::Time(world.now);
                &one
            }
            Left::Count => {
                one[0] = Typed::Num(world.use_count as f64);
                &one
            }
            Left::ElapsedTime => {
                // elapsed <op> d  ⇔  now <op> start + d
                let Some(start) = world.agreement_start.or(self.policy.timestamp) else {
                    return false;
                };
                let Some(end) = duration.and_then(|d| d.after(start)) else {
                    return false;
                };
                deadline = [Typed::Time(end)];
                one[0] = Typed::Time(world.now);
                return compare(src.operator, &one, &deadline, world);
            }
            Left::Recipient | Left::Named(_) => {
                owned = self.lookup(left, src, req, world);
                let Some(v) = owned.as_deref() else {
                    return false;
                };
                if let [m] = v.members() {
                    one[0] = typed_like(m, right.first());
                    &one
                } else {
                    typed_members(v, right.first(), &mut many);
                    &many
                }
            }
        };
        compare(src.operator, lefts, right, world)
    }

    fn lookup<'a>(
        &self,
        left: Left<'_>,
        src: &AtomicConstraint,
        req: &'a Request,
        world: &'a World,
    ) -> Option<Cow<'a, Value>> {
        let iri = src.left_operand.as_str();
        if let Some(f) = self.extensions.resolvers.get(iri) {
            return f(req, world).map(Cow::Owned);
        }
        if let Some((_, v)) = req.context.iter().find(|(k, _)| k == iri) {
            return Some(Cow::Borrowed(v));
        }
        if let Some(v) = world.operands.get(iri) {
            return Some(Cow::Borrowed(v));
        }
        match left {
            Left::Recipient => req.assignee.clone().map(|a| Cow::Owned(Value::Iri(a))),
            _ => None,
        }
    }
}

/// Whether a logical constraint's outcome is fixed after an operand evaluated to `ok`.
fn decided(op: LogicalOperator, ok: bool, satisfied: usize) -> bool {
    match op {
        LogicalOperator::And | LogicalOperator::AndSequence => !ok,
        LogicalOperator::Or => ok,
        LogicalOperator::Xone => satisfied > 1,
    }
}

fn duty_state(d: &Rule, world: &World) -> DeonticState {
    d.uid
        .as_ref()
        .and_then(|u| world.duties.get(u).copied())
        .unwrap_or(DeonticState::NonSet)
}

fn compile<'p>(
    c: &'p Constraint,
    path: &str,
    ext: &Extensions,
) -> Result<Compiled<'p>, PolicyError> {
    match c {
        Constraint::Logical(l) => Ok(Compiled::Logical {
            src: l,
            operands: l
                .operands
                .iter()
                .enumerate()
                .map(|(i, o)| compile(o, &format!("{path}.{}[{i}]", l.operator.term()), ext))
                .collect::<Result<_, _>>()?,
        }),
        Constraint::Atomic(a) => {
            let iri = a.left_operand.as_str();
            let left = if ext.resolvers.contains_key(iri) {
                Left::Named(iri)
            } else if iri.starts_with(SLUIS) {
                if !ext.defer_data_plane {
                    return Err(PolicyError::new(
                        format!("{path}.leftOperand"),
                        format!(
                            "'{}' is a data-plane constraint: evaluate with Extensions::defer_data_plane and compile the agreement",
                            vocab::compact(iri)
                        ),
                    ));
                }
                Left::Deferred
            } else {
                match iri.strip_prefix(ODRL) {
                    Some("dateTime") => Left::DateTime,
                    Some("elapsedTime") => Left::ElapsedTime,
                    Some("count") => Left::Count,
                    Some("recipient") => Left::Recipient,
                    Some(_) => Left::Named(iri),
                    None => {
                        return Err(PolicyError::new(
                            format!("{path}.leftOperand"),
                            format!(
                                "unknown leftOperand '{iri}': no resolver is registered for it"
                            ),
                        ));
                    }
                }
            };
            let err = |m: String| PolicyError::new(format!("{path}.rightOperand"), m);
            let mut right = Vec::new();
            let mut duration = None;
            for m in a.right_operand.members() {
                match left {
                    Left::DateTime => {
                        if let Some(day) = m.text().and_then(crate::value::parse_date) {
                            right.push(Typed::Date(day));
                            continue;
                        }
                        let t = m.text().and_then(parse_datetime).ok_or_else(|| {
                            err(format!(
                                "'{}' is not an xsd:dateTime",
                                m.text().unwrap_or_default()
                            ))
                        })?;
                        right.push(Typed::Time(t));
                    }
                    Left::ElapsedTime => {
                        let d = m.text().and_then(parse_duration).ok_or_else(|| {
                            err(format!(
                                "'{}' is not an xsd:duration",
                                m.text().unwrap_or_default()
                            ))
                        })?;
                        duration = Some(d);
                    }
                    Left::Count => {
                        let n = m
                            .text()
                            .and_then(|t| t.trim().parse::<f64>().ok())
                            .ok_or_else(|| {
                                err(format!(
                                    "'{}' is not a number",
                                    m.text().unwrap_or_default()
                                ))
                            })?;
                        right.push(Typed::Num(n));
                    }
                    _ => right.push(typed(m)),
                }
            }
            if right.is_empty() && duration.is_none() {
                return Err(err("empty rightOperand".into()));
            }
            Ok(Compiled::Atomic {
                src: a,
                left,
                right,
                duration,
            })
        }
    }
}

/// A value's typed reading from its datatype.
fn typed(v: &Value) -> Typed<'_> {
    match v {
        Value::Literal {
            lexical,
            datatype: Some(dt),
        } => match dt.strip_prefix(XSD) {
            Some("dateTime" | "dateTimeStamp" | "date") => {
                parse_datetime(lexical).map_or(Typed::Text(lexical), Typed::Time)
            }
            Some(
                "integer" | "int" | "long" | "short" | "decimal" | "double" | "float"
                | "nonNegativeInteger" | "positiveInteger",
            ) => lexical
                .trim()
                .parse()
                .map_or(Typed::Text(lexical), Typed::Num),
            _ => Typed::Text(lexical),
        },
        other => Typed::Text(other.text().unwrap_or_default()),
    }
}

/// The members of a left value, read like the right operand when it is typed.
fn typed_members<'a>(v: &'a Value, like: Option<&Typed<'_>>, out: &mut Vec<Typed<'a>>) {
    out.extend(v.members().iter().map(|m| typed_like(m, like)));
}

/// One left value, read like the right operand (a plain "5" compared with a number is 5).
fn typed_like<'a>(m: &'a Value, like: Option<&Typed<'_>>) -> Typed<'a> {
    match (typed(m), like) {
        (Typed::Text(s), Some(Typed::Time(_))) => {
            parse_datetime(s).map_or(Typed::Text(s), Typed::Time)
        }
        (Typed::Text(s), Some(Typed::Num(_))) => {
            s.trim().parse().map_or(Typed::Text(s), Typed::Num)
        }
        (t, _) => t,
    }
}

fn order(a: &Typed<'_>, b: &Typed<'_>) -> Option<Ordering> {
    match (a, b) {
        (Typed::Time(x), Typed::Time(y)) => Some(x.cmp(y)),
        (Typed::Time(x), Typed::Date(d)) => Some(x.date_naive().cmp(d)),
        (Typed::Date(d), Typed::Time(x)) => Some(d.cmp(&x.date_naive())),
        (Typed::Date(x), Typed::Date(y)) => Some(x.cmp(y)),
        (Typed::Num(x), Typed::Num(y)) => x.partial_cmp(y),
        (Typed::Text(x), Typed::Text(y)) if x == y => Some(Ordering::Equal),
        _ => None,
    }
}

fn same(a: &Typed<'_>, b: &Typed<'_>) -> bool {
    order(a, b) == Some(Ordering::Equal)
}

fn contains(set: &[Typed<'_>], x: &Typed<'_>) -> bool {
    set.iter().any(|s| same(s, x))
}

fn part_of(world: &World, x: &Typed<'_>, y: &Typed<'_>) -> bool {
    match (x, y) {
        (Typed::Text(a), Typed::Text(b)) => world.is_part_of(a, b),
        _ => same(x, y),
    }
}

fn compare(op: Operator, lefts: &[Typed<'_>], rights: &[Typed<'_>], world: &World) -> bool {
    let single = |f: fn(Ordering) -> bool| match (lefts, rights) {
        ([l], [r]) => order(l, r).is_some_and(f),
        _ => false,
    };
    match op {
        Operator::Eq => single(|o| o == Ordering::Equal),
        Operator::Neq => !single(|o| o == Ordering::Equal) && !lefts.is_empty(),
        Operator::Lt => single(|o| o == Ordering::Less),
        Operator::Lteq => single(|o| o != Ordering::Greater),
        Operator::Gt => single(|o| o == Ordering::Greater),
        Operator::Gteq => single(|o| o != Ordering::Less),
        Operator::IsAnyOf => lefts.iter().any(|l| contains(rights, l)),
        Operator::IsNoneOf => !lefts.is_empty() && !lefts.iter().any(|l| contains(rights, l)),
        Operator::IsAllOf => !lefts.is_empty() && rights.iter().all(|r| contains(lefts, r)),
        Operator::IsPartOf => {
            !lefts.is_empty()
                && lefts
                    .iter()
                    .all(|l| rights.iter().any(|r| part_of(world, l, r)))
        }
        Operator::HasPart => {
            !lefts.is_empty()
                && rights
                    .iter()
                    .all(|r| lefts.iter().any(|l| part_of(world, r, l)))
        }
        Operator::IsA => lefts.iter().any(|l| {
            rights.iter().any(|r| {
                same(l, r)
                    || matches!((l, r), (Typed::Text(a), Typed::Text(b))
                        if world.types.get(*a).is_some_and(|ts| ts.iter().any(|t| t == b)))
            })
        }),
    }
}
