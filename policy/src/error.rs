//! The error of policy creation.

use std::fmt;

/// A policy that could not be created, naming the offending term and where it is, e.g.
/// `permission[0].constraint[1].operator: unknown operator 'eqq'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Where in the input the problem is (JSON path or Turtle subject).
    pub path: String,
    /// What is wrong and, where useful, what is expected instead.
    pub message: String,
}

impl PolicyError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> PolicyError {
        PolicyError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for PolicyError {}

/// Bounds on untrusted input.
pub mod limits {
    /// Deepest nesting of logical constraints, refinements and duties.
    pub const MAX_DEPTH: usize = 16;
    /// Most nodes (rules, constraints, values) in one policy.
    pub const MAX_NODES: usize = 20_000;
    /// Longest string (IRI or literal).
    pub const MAX_STRING: usize = 4096;
}
