//! # sluis-policy
//!
//! ODRL 2.2 for data spaces: parse policies from DSP 2025-1 JSON and JSON-LD, compare them
//! by meaning, compile agreements into data-plane [`enforcement`] plans, and mint and verify
//! the Biscuit [`token`]s bound to an agreement.
//!
//! ```
//! use sluis_policy::Policy;
//! let offer = Policy::from_json(&serde_json::json!({
//!     "@id": "urn:offer:1", "@type": "Offer",
//!     "permission": [{"action": "use"}]
//! })).unwrap();
//! assert_eq!(offer.id(), Some("urn:offer:1"));
//! ```

#![warn(missing_docs)]

pub mod enforcement;
pub mod equality;
pub mod error;
pub mod eval;
pub mod model;
pub mod parse;
pub mod profile;
pub mod report;
pub mod serialize;
pub mod strictness;
pub mod token;
pub mod value;
pub mod vocab;

pub use error::PolicyError;
pub use model::{
    Action, AtomicConstraint, ConflictStrategy, Constraint, LogicalConstraint, LogicalOperator,
    Operator, Policy, PolicyKind, Reference, Rule, Value,
};

use chrono::{DateTime, Utc};

impl Policy {
    /// Parses a policy from DSP 2025-1 compact JSON, or JSON-LD with prefixed (`odrl:`) or
    /// expanded (full IRI) terms. Unknown ODRL terms, operators and actions are errors.
    pub fn from_json(v: &serde_json::Value) -> Result<Policy, PolicyError> {
        parse::json::parse_policy(v)
    }

    /// Parses the one policy of a Turtle document.
    pub fn from_turtle(ttl: &str) -> Result<Policy, PolicyError> {
        parse::turtle::parse_policy(ttl)
    }

    /// The DSP 2025-1 compact JSON of this policy (without `@context`).
    pub fn to_dsp_json(&self) -> serde_json::Value {
        serialize::to_dsp_json(self)
    }

    /// The policy as Turtle (fails for bare, non-IRI extension terms).
    pub fn to_turtle(&self) -> Result<String, PolicyError> {
        serialize::to_turtle(self)
    }

    /// Set, Offer, Agreement or Request.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The policy's `@id`.
    pub fn id(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// The policy-level target.
    pub fn target(&self) -> Option<&str> {
        self.target.as_ref().map(|r| r.uid.as_str())
    }

    /// The policy-level assigner.
    pub fn assigner(&self) -> Option<&str> {
        self.assigner.as_ref().map(|r| r.uid.as_str())
    }

    /// The policy-level assignee.
    pub fn assignee(&self) -> Option<&str> {
        self.assignee.as_ref().map(|r| r.uid.as_str())
    }

    /// Same meaning, whatever the JSON shape: ignores `@id`, `@type`/kind, target, assigner,
    /// assignee, timestamp and profile; order of rules, constraints and set members is
    /// irrelevant; compact, prefixed and expanded terms are equal.
    pub fn equivalent(&self, other: &Policy) -> bool {
        equality::canonical(self) == equality::canonical(other)
    }

    /// Whether this policy permits nothing that `other` does not permit: same or narrower
    /// actions, assets and parties, constraints that imply `other`'s, and all of `other`'s
    /// duties, prohibitions and obligations. Sound, not complete (see [`strictness`]).
    pub fn at_least_as_strict_as(&self, other: &Policy) -> bool {
        strictness::at_least_as_strict(self, other)
    }

    /// The agreement a provider issues for this offer or request: the same rules, with the
    /// given identity, target, parties and conclusion time.
    pub fn to_agreement(
        &self,
        id: &str,
        target: &str,
        assigner: &str,
        assignee: &str,
        timestamp: DateTime<Utc>,
    ) -> Policy {
        Policy {
            kind: PolicyKind::Agreement,
            uid: Some(id.to_string()),
            target: Some(Reference::new(target)),
            assigner: Some(Reference::new(assigner)),
            assignee: Some(Reference::new(assignee)),
            timestamp: Some(timestamp),
            ..self.clone()
        }
    }
}
