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
pub struct PolicyReport {
    /// The policy's uid.
    pub policy: Option<String>,
    /// The decision under the policy's conflict strategy.
    pub decision: Decision,
    /// Whether an active permission and an active prohibition collided.
    pub conflict: bool,
    /// One report per rule (permissions, prohibitions, obligations in order).
    pub rules: Vec<RuleReport>,
}

/// The report on one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReport {
    /// Permission, prohibition or obligation.
    pub kind: RuleKind,
    /// The rule's uid.
    pub rule: Option<String>,
    /// Active when every premise is satisfied (and, for a permission, no duty is violated).
    pub activation: ActivationState,
    /// Target, party, action and constraint premises, in that order.
    pub premises: Vec<PremiseReport>,
    /// The duties of a permission with their recorded state (`report:conditionReport`).
    pub conditions: Vec<(Option<String>, DeonticState)>,
}

/// A premise of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum PremiseReport {
    /// `report:TargetReport`.
    Target(SatisfactionState),
    /// `report:PartyReport`.
    Party(SatisfactionState),
    /// `report:ActionReport`.
    Action(SatisfactionState),
    /// `report:ConstraintReport`.
    Constraint(ConstraintReport),
}

/// The report on one constraint (logical constraints carry their operands' reports).
#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintReport {
    /// The constraint's uid.
    pub constraint: Option<String>,
    /// Whether it holds.
    pub satisfaction: SatisfactionState,
    /// For a logical constraint, its operator.
    pub logical: Option<LogicalOperator>,
    /// For a logical constraint, its operands' reports.
    pub operands: Vec<ConstraintReport>,
}

impl ConstraintReport {
    /// This report and all nested operand reports, depth first.
    pub fn flatten(&self) -> Vec<&ConstraintReport> {
        let mut out = vec![self];
        for o in &self.operands {
            out.extend(o.flatten());
        }
        out
    }
}
