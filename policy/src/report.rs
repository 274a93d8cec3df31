//! Compliance reports in the FORCE vocabulary (`https://w3id.org/force/compliance-report#`).

use crate::model::LogicalOperator;

/// The FORCE compliance report namespace.
pub const REPORT: &str = "https://w3id.org/force/compliance-report#";

/// Whether a rule applies to the request in the state of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationState {
    /// `report:Active`.
    Active,
    /// `report:Inactive`.
    Inactive,
}

/// Whether a premise holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SatisfactionState {
    /// `report:Satisfied`.
    Satisfied,
    /// `report:Unsatisfied`.
    Unsatisfied,
}

impl SatisfactionState {
    /// From a boolean.
    pub fn from_bool(b: bool) -> SatisfactionState {
        if b {
            SatisfactionState::Satisfied
        } else {
            SatisfactionState::Unsatisfied
        }
    }
}

/// The state of a duty as recorded in the state of the world (`report:deonticState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeonticState {
    /// Not yet decided (`report:NonSet`).
    NonSet,
    /// Fulfilled.
    Fulfilled,
    /// Violated.
    Violated,
}

/// The kind of rule a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `report:PermissionReport`.
    Permission,
    /// `report:ProhibitionReport`.
    Prohibition,
    /// `report:ObligationReport`.
    Obligation,
}

/// The outcome for the request as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Some permission is active and no prohibition overrides it.
    Permit,
    /// No active permission, or an active prohibition wins.
    Deny,
}

/// The report on one policy for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyReport<'p> {
    /// The policy's uid.
    pub policy: Option<&'p str>,
    /// The decision under the policy's conflict strategy.
    pub decision: Decision,
    /// Whether an active permission and an active prohibition collided.
    pub conflict: bool,
    /// One report per rule (permissions, prohibitions, obligations in order).
    pub rules: Vec<RuleReport<'p>>,
}

/// The report on one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReport<'p> {
    /// Permission, prohibition or obligation.
    pub kind: RuleKind,
    /// The rule's uid.
    pub rule: Option<&'p str>,
    /// Active when every premise is satisfied (and, for a permission, no duty is violated).
    pub activation: ActivationState,
    /// Target, party, action and constraint premises, in that order.
    pub premises: Vec<PremiseReport<'p>>,
    /// The duties of a permission with their recorded state (`report:conditionReport`).
    pub conditions: Vec<(Option<&'p str>, DeonticState)>,
}

/// A premise of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum PremiseReport<'p> {
    /// `report:TargetReport`.
    Target(SatisfactionState),
    /// `report:PartyReport`.
    Party(SatisfactionState),
    /// `report:ActionReport`.
    Action(SatisfactionState),
    /// `report:ConstraintReport`.
    Constraint(ConstraintReport<'p>),
}

/// The report on one constraint (logical constraints carry their operands' reports).
#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintReport<'p> {
    /// The constraint's uid.
    pub constraint: Option<&'p str>,
    /// Whether it holds.
    pub satisfaction: SatisfactionState,
    /// For a logical constraint, its operator.
    pub logical: Option<LogicalOperator>,
    /// For a logical constraint, its operands' reports.
    pub operands: Vec<ConstraintReport<'p>>,
}

impl<'p> ConstraintReport<'p> {
    /// This report and all nested operand reports, depth first.
    pub fn flatten(&self) -> Vec<&ConstraintReport<'p>> {
        let mut out = vec![self];
        for o in &self.operands {
            out.extend(o.flatten());
        }
        out
    }
}

impl PolicyReport<'_> {
    /// The report as Turtle in the FORCE vocabulary. Report nodes are blank nodes; `request`
    /// names the evaluated request and `created` is the evaluation time (the world's "now").
    pub fn to_turtle(
        &self,
        request: Option<&str>,
        created: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let mut out = String::from(
            "@prefix report: <https://w3id.org/force/compliance-report#> .\n\
             @prefix odrl: <http://www.w3.org/ns/odrl/2/> .\n\
             @prefix dct: <http://purl.org/dc/terms/> .\n\
             @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n\n",
        );
        out.push_str("[] a report:PolicyReport ;\n");
        out.push_str(&format!(
            "  dct:created \"{}\"^^xsd:dateTime ;\n",
            created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        if let Some(p) = self.policy {
            out.push_str(&format!("  report:policy {} ;\n", iri(p)));
        }
        if let Some(r) = request {
            out.push_str(&format!("  report:policyRequest {} ;\n", iri(r)));
        }
        let rules: Vec<String> = self.rules.iter().map(RuleReport::to_turtle).collect();
        out.push_str(&format!(
            "  report:ruleReport {} .\n",
            rules.join(" ,\n    ")
        ));
        out
    }
}

impl RuleReport<'_> {
    fn to_turtle(&self) -> String {
        let kind = match self.kind {
            RuleKind::Permission => "PermissionReport",
            RuleKind::Prohibition => "ProhibitionReport",
            RuleKind::Obligation => "ObligationReport",
        };
        let mut parts = vec![
            format!("a report:{kind}"),
            "report:attemptState report:Attempted".into(),
        ];
        if let Some(r) = self.rule {
            parts.push(format!("report:rule {}", iri(r)));
        }
        let activation = match self.activation {
            ActivationState::Active => "Active",
            ActivationState::Inactive => "Inactive",
        };
        parts.push(format!("report:activationState report:{activation}"));
        let premises: Vec<String> = self.premises.iter().map(PremiseReport::to_turtle).collect();
        if !premises.is_empty() {
            parts.push(format!("report:premiseReport {}", premises.join(", ")));
        }
        for (duty, state) in &self.conditions {
            let state = match state {
                DeonticState::NonSet => "NonSet",
                DeonticState::Fulfilled => "Fulfilled",
                DeonticState::Violated => "Violated",
            };
            let rule = duty
                .as_deref()
                .map(|d| format!("; report:rule {}", iri(d)))
                .unwrap_or_default();
            parts.push(format!("report:conditionReport [ a report:DutyReport{rule}; report:deonticState report:{state} ]"));
        }
        format!("[ {} ]", parts.join(" ; "))
    }
}

impl PremiseReport<'_> {
    fn to_turtle(&self) -> String {
        let (kind, s) = match self {
            PremiseReport::Target(s) => ("TargetReport", s),
            PremiseReport::Party(s) => ("PartyReport", s),
            PremiseReport::Action(s) => ("ActionReport", s),
            PremiseReport::Constraint(c) => return c.to_turtle(),
        };
        format!(
            "[ a report:{kind} ; report:satisfactionState report:{} ]",
            state(*s)
        )
    }
}

impl ConstraintReport<'_> {
    fn to_turtle(&self) -> String {
        let mut parts = vec!["a report:ConstraintReport".to_string()];
        if let Some(c) = self.constraint {
            parts.push(format!("report:constraint {}", iri(c)));
        }
        if let Some(op) = self.logical {
            parts.push(format!(
                "report:constraintLogicalOperand odrl:{}",
                op.term()
            ));
            let nested: Vec<String> = self
                .operands
                .iter()
                .map(ConstraintReport::to_turtle)
                .collect();
            parts.push(format!("report:premiseReport {}", nested.join(", ")));
        }
        parts.push(format!(
            "report:satisfactionState report:{}",
            state(self.satisfaction)
        ));
        format!("[ {} ]", parts.join(" ; "))
    }
}

fn state(s: SatisfactionState) -> &'static str {
    match s {
        SatisfactionState::Satisfied => "Satisfied",
        SatisfactionState::Unsatisfied => "Unsatisfied",
    }
}

/// An IRI in Turtle form; blank-node labels of the input are kept as blank nodes.
fn iri(s: &str) -> String {
    if let Some(label) = s.strip_prefix("_:") {
        return format!("_:{label}");
    }
    let escaped: String = s
        .chars()
        .filter(|c| {
            !matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`' | '\\') && !c.is_whitespace()
        })
        .collect();
    format!("<{escaped}>")
}
