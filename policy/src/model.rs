//! The ODRL 2.2 information model. Every vocabulary term is held as a full IRI.

use chrono::{DateTime, Utc};

use crate::vocab::{self, ODRL};

/// The subclass of `odrl:Policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `odrl:Set` (also what a plain `odrl:Policy` means).
    Set,
    /// `odrl:Offer`: a provider's proposal.
    Offer,
    /// `odrl:Agreement`: granted by an assigner to an assignee.
    Agreement,
    /// `odrl:Request`: what a party asks for.
    Request,
}

impl PolicyKind {
    /// The compact DSP/ODRL term.
    pub fn term(self) -> &'static str {
        match self {
            PolicyKind::Set => "Set",
            PolicyKind::Offer => "Offer",
            PolicyKind::Agreement => "Agreement",
            PolicyKind::Request => "Request",
        }
    }

    /// Parses a full IRI of a policy class.
    pub fn from_iri(iri: &str) -> Option<PolicyKind> {
        match iri.strip_prefix(ODRL)? {
            "Set" | "Policy" => Some(PolicyKind::Set),
            "Offer" => Some(PolicyKind::Offer),
            "Agreement" => Some(PolicyKind::Agreement),
            "Request" => Some(PolicyKind::Request),
            _ => None,
        }
    }
}

/// How conflicts between permissions and prohibitions are resolved (`odrl:conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConflictStrategy {
    /// `odrl:perm`: permissions win.
    Perm,
    /// `odrl:prohibit`: prohibitions win.
    Prohibit,
    /// `odrl:invalid`: the whole policy is void when a conflict occurs (the ODRL default).
    #[default]
    Invalid,
}

impl ConflictStrategy {
    /// The compact term.
    pub fn term(self) -> &'static str {
        match self {
            ConflictStrategy::Perm => "perm",
            ConflictStrategy::Prohibit => "prohibit",
            ConflictStrategy::Invalid => "invalid",
        }
    }
}

/// An ODRL policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Set, Offer, Agreement or Request.
    pub kind: PolicyKind,
    /// `@id` / `odrl:uid`.
    pub uid: Option<String>,
    /// Policy-level target, inherited by every rule without its own.
    pub target: Option<Reference>,
    /// Policy-level assigner.
    pub assigner: Option<Reference>,
    /// Policy-level assignee.
    pub assignee: Option<Reference>,
    /// When an agreement was concluded (`dct:issued`/DSP `timestamp`).
    pub timestamp: Option<DateTime<Utc>>,
    /// Profiles the policy conforms to.
    pub profiles: Vec<String>,
    /// Explicit conflict strategy, if any.
    pub conflict: Option<ConflictStrategy>,
    /// Permissions.
    pub permissions: Vec<Rule>,
    /// Prohibitions.
    pub prohibitions: Vec<Rule>,
    /// Obligations (policy-level duties).
    pub obligations: Vec<Rule>,
}

/// An asset or party, possibly a collection, possibly refined.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The IRI.
    pub uid: String,
    /// Whether it is declared an `AssetCollection`/`PartyCollection` (members are `partOf` it).
    pub collection: bool,
    /// Constraints on the collection's members.
    pub refinement: Vec<Constraint>,
}

impl Reference {
    /// A plain reference to an IRI.
    pub fn new(uid: impl Into<String>) -> Reference {
        Reference {
            uid: uid.into(),
            collection: false,
            refinement: Vec::new(),
        }
    }
}

/// A permission, prohibition or duty.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule's IRI, if it has one.
    pub uid: Option<String>,
    /// What the rule is about; `None` (only possible from Turtle) means any action.
    pub action: Option<Action>,
    /// Further actions of a composite rule (ODRL 2.2 §2.7.2: the rule applies to each of
    /// its actions, as if it were one rule per action). Empty for an atomic rule.
    pub composite_actions: Vec<Action>,
    /// The asset (inherits the policy's when absent).
    pub target: Option<Reference>,
    /// The assigner (inherits the policy's when absent).
    pub assigner: Option<Reference>,
    /// The assignee (inherits the policy's when absent).
    pub assignee: Option<Reference>,
    /// Conditions, all of which must hold (conjunction).
    pub constraints: Vec<Constraint>,
    /// Duties of a permission (preconditions).
    pub duties: Vec<Rule>,
    /// Remedies of a prohibition (due when it is violated).
    pub remedies: Vec<Rule>,
    /// Consequences of a duty (due when it is not fulfilled).
    pub consequences: Vec<Rule>,
}

impl Rule {
    /// The rule's actions: its action and those of a composite rule.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.action.iter().chain(self.composite_actions.iter())
    }

    /// A rule with just an action.
    pub fn new(action: Action) -> Rule {
        Rule {
            uid: None,
            action: Some(action),
            composite_actions: Vec::new(),
            target: None,
            assigner: None,
            assignee: None,
            constraints: Vec::new(),
            duties: Vec::new(),
            remedies: Vec::new(),
            consequences: Vec::new(),
        }
    }
}

/// An action with optional refinements.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Full IRI, e.g. `http://www.w3.org/ns/odrl/2/use`.
    pub iri: String,
    /// Constraints narrowing the action.
    pub refinement: Vec<Constraint>,
}

impl Action {
    /// An unrefined action.
    pub fn new(iri: impl Into<String>) -> Action {
        Action {
            iri: iri.into(),
            refinement: Vec::new(),
        }
    }

    /// An action after checking that it is known (an unknown action is an error at `path`).
    pub fn checked(
        iri: String,
        refinement: Vec<Constraint>,
        path: &str,
    ) -> Result<Action, crate::PolicyError> {
        if !vocab::is_known_action(&iri) {
            return Err(crate::PolicyError::new(
                path,
                format!("unknown action '{}'", vocab::compact(&iri)),
            ));
        }
        Ok(Action { iri, refinement })
    }

    /// Whether this action is the same as, or included in, `other` (ODRL `includedIn`).
    pub fn is_included_in(&self, other: &str) -> bool {
        vocab::action_included_in(&self.iri, other)
    }
}

/// A constraint or logical constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// `leftOperand operator rightOperand`.
    Atomic(AtomicConstraint),
    /// `and`/`or`/`xone`/`andSequence` over constraints.
    Logical(LogicalConstraint),
}

/// `leftOperand operator rightOperand`.
#[derive(Debug, Clone, PartialEq)]
pub struct AtomicConstraint {
    /// The constraint's IRI, if any.
    pub uid: Option<String>,
    /// Full IRI of the left operand (or a bare extension term).
    pub left_operand: String,
    /// The operator.
    pub operator: Operator,
    /// The right operand.
    pub right_operand: Value,
    /// Unit of the right operand, if any.
    pub unit: Option<String>,
}

/// The logical operator of a [`LogicalConstraint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicalOperator {
    /// All operands hold.
    And,
    /// At least one operand holds.
    Or,
    /// Exactly one operand holds.
    Xone,
    /// All operands hold, evaluated in order.
    AndSequence,
}

impl LogicalOperator {
    /// The compact term.
    pub fn term(self) -> &'static str {
        match self {
            LogicalOperator::And => "and",
            LogicalOperator::Or => "or",
            LogicalOperator::Xone => "xone",
            LogicalOperator::AndSequence => "andSequence",
        }
    }

    /// Parses a compact term.
    pub fn from_term(term: &str) -> Option<LogicalOperator> {
        match term {
            "and" => Some(LogicalOperator::And),
            "or" => Some(LogicalOperator::Or),
            "xone" => Some(LogicalOperator::Xone),
            "andSequence" => Some(LogicalOperator::AndSequence),
            _ => None,
        }
    }
}

/// A logical constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalConstraint {
    /// The constraint's IRI, if any.
    pub uid: Option<String>,
    /// How the operands combine.
    pub operator: LogicalOperator,
    /// The operands.
    pub operands: Vec<Constraint>,
}

/// The ODRL 2.2 constraint operators (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lteq,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gteq,
    /// Is an instance of.
    IsA,
    /// The left operand contains the right operand.
    HasPart,
    /// The left operand is contained in the right operand.
    IsPartOf,
    /// The left operand is all of the right operand's members.
    IsAllOf,
    /// The left operand is any of the right operand's members.
    IsAnyOf,
    /// The left operand is none of the right operand's members.
    IsNoneOf,
}

impl Operator {
    /// Every operator.
    pub const ALL: [Operator; 12] = [
        Operator::Eq,
        Operator::Neq,
        Operator::Lt,
        Operator::Lteq,
        Operator::Gt,
        Operator::Gteq,
        Operator::IsA,
        Operator::HasPart,
        Operator::IsPartOf,
        Operator::IsAllOf,
        Operator::IsAnyOf,
        Operator::IsNoneOf,
    ];

    /// The compact term.
    pub fn term(self) -> &'static str {
        match self {
            Operator::Eq => "eq",
            Operator::Neq => "neq",
            Operator::Lt => "lt",
            Operator::Lteq => "lteq",
            Operator::Gt => "gt",
            Operator::Gteq => "gteq",
            Operator::IsA => "isA",
            Operator::HasPart => "hasPart",
            Operator::IsPartOf => "isPartOf",
            Operator::IsAllOf => "isAllOf",
            Operator::IsAnyOf => "isAnyOf",
            Operator::IsNoneOf => "isNoneOf",
        }
    }

    /// Parses a full IRI.
    pub fn from_iri(iri: &str) -> Option<Operator> {
        let local = iri.strip_prefix(ODRL)?;
        Operator::ALL.into_iter().find(|o| o.term() == local)
    }

    /// Whether the right operand may be a list.
    pub fn is_set_operator(self) -> bool {
        matches!(
            self,
            Operator::IsPartOf
                | Operator::HasPart
                | Operator::IsAllOf
                | Operator::IsAnyOf
                | Operator::IsNoneOf
        )
    }
}

/// A right operand (or any RDF value in the model).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An IRI (`{"@id": ...}` in JSON, `<...>` in Turtle).
    Iri(String),
    /// A literal with its lexical form and datatype IRI (`None` for plain strings).
    Literal {
        /// The lexical form.
        lexical: String,
        /// Datatype IRI; `None` means a plain string.
        datatype: Option<String>,
    },
    /// A list of values (`@list`/an array).
    List(Vec<Value>),
}

impl Value {
    /// A plain string literal.
    pub fn string(s: impl Into<String>) -> Value {
        Value::Literal {
            lexical: s.into(),
            datatype: None,
        }
    }

    /// A typed literal with an `xsd:` datatype.
    pub fn typed(lexical: impl Into<String>, xsd_local: &str) -> Value {
        Value::Literal {
            lexical: lexical.into(),
            datatype: Some(format!("{}{xsd_local}", vocab::XSD)),
        }
    }

    /// The members: the list's items, or the value itself.
    pub fn members(&self) -> &[Value] {
        match self {
            Value::List(items) => items,
            other => std::slice::from_ref(other),
        }
    }

    /// The IRI or lexical form (not for lists).
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Iri(s) => Some(s),
            Value::Literal { lexical, .. } => Some(lexical),
            Value::List(_) => None,
        }
    }
}
