//! Errors of the data plane and the messages consumers see.
//!
//! A consumer must never learn a hidden column's name, a server path or a value from a row it
//! cannot see, nor tell them apart from unknown names by the answer. So DataFusion's messages
//! never reach the consumer: planning errors get one of a few fixed texts by kind
//! ([`planning_error`]), and everything that happens while reading data gets a fixed message
//! ([`execution_error`]), with the details in the server log.

use datafusion::error::DataFusionError;
use tonic::Status;

use super::AccessError;

/// Why a query was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The token was refused.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The request or its SQL is malformed (gRPC `INVALID_ARGUMENT`).
    #[error("invalid query: {0}")]
    Invalid(String),
    /// A rule of the sandbox or of the agreement refused the query (gRPC `PERMISSION_DENIED`).
    #[error("query refused by rule `{rule}`: {detail}")]
    Refused {
        /// Short name of the rule, stable for clients and audit.
        rule: &'static str,
        /// What the rule requires.
        detail: String,
    },
    /// The query hit its memory limit, or its consumer's share of the provider's query
    /// memory (gRPC `RESOURCE_EXHAUSTED`).
    #[error(
        "the query exceeded its memory limit or this consumer's share of the provider's query memory; aggregate or filter more, ask for fewer rows, or run fewer queries at once"
    )]
    ResourcesExhausted,
    /// The consumer has as many queries running and waiting as the provider allows (gRPC
    /// `RESOURCE_EXHAUSTED`, HTTP 429).
    #[error("too many queries: {0}")]
    Busy(String),
    /// The query hit its deadline (gRPC `DEADLINE_EXCEEDED`).
    #[error("the query exceeded its time limit; aggregate or filter more, or ask for fewer rows")]
    Timeout,
    /// The dataset cannot be served: its source or enforcement plan is broken (gRPC
    /// `UNAVAILABLE`). The details are in the provider's log only.
    #[error("the dataset cannot be served right now; the provider's log has the details")]
    Unavailable,
    /// Running the query failed (gRPC `INTERNAL`); details are in the provider's log only.
    #[error(
        "the query failed while running (for example a cast or arithmetic error on some value); correct the query and retry"
    )]
    Failed,
}

impl QueryError {
    /// A refusal by `rule`.
    pub fn refused(rule: &'static str, detail: impl Into<String>) -> Self {
        Self::Refused {
            rule,
            detail: detail.into(),
        }
    }
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Self {
        let message = e.to_string();
        match e {
            QueryError::Access(AccessError::Unauthenticated(_)) => Status::unauthenticated(message),
            QueryError::Access(AccessError::PermissionDenied(_)) | QueryError::Refused { .. } => {
                Status::permission_denied(message)
            }
            QueryError::Invalid(_) => Status::invalid_argument(message),
            QueryError::ResourcesExhausted | QueryError::Busy(_) => {
                Status::resource_exhausted(message)
            }
            QueryError::Timeout => Status::deadline_exceeded(message),
            QueryError::Unavailable => Status::unavailable(message),
            QueryError::Failed => Status::internal(message),
        }
    }
}

/// What a consumer is told when the query names a column, function, type or field the
/// view does not have. One text for every such name, hidden or unknown alike.
pub(super) const UNAVAILABLE_NAME: &str = "the query names a column, function, type or field \
    that is not available (hidden and unknown names are refused alike); call GetSchema for the \
    visible columns";

/// What a consumer is told for every other planning error.
pub(super) const NOT_PLANNABLE: &str = "the query cannot be planned over the visible schema: \
    check that each function and operator gets values of the types it takes, and the grouping \
    and aggregates; call GetSchema for the visible columns";

/// What a consumer is told when the query uses SQL the data plane does not run.
pub(super) const NOT_SUPPORTED: &str =
    "the query uses a SQL feature the data plane does not support; rewrite it without it";

/// Maps an error from planning the consumer's (parsed) SQL over the view.
///
/// The consumer gets one of a few fixed texts chosen by the kind of error, never
/// DataFusion's message: a message that quoted the names in the query, and was withheld only
/// when it quoted a secret, told the consumer which names are secrets (hidden columns, the
/// source path) by the difference. The kind depends only on the SQL and the visible schema,
/// which the consumer knows. The full message goes to the provider's log.
pub fn planning_error(e: DataFusionError) -> QueryError {
    let class = classify(&e);
    tracing::info!(error = %e, "query refused at planning");
    match class {
        Class::MissingName => QueryError::refused("visible-columns", UNAVAILABLE_NAME),
        Class::NotSupported => QueryError::Invalid(NOT_SUPPORTED.into()),
        Class::Plan | Class::Syntax | Class::Other => QueryError::Invalid(NOT_PLANNABLE.into()),
        Class::Resources => QueryError::ResourcesExhausted,
    }
}

/// Maps an error from building the physical plan or running it: a fixed text, the details in
/// the provider's log (they may quote values of rows the consumer cannot see).
pub fn execution_error(e: DataFusionError) -> QueryError {
    match classify(&e) {
        Class::Resources => QueryError::ResourcesExhausted,
        _ => {
            tracing::warn!(error = %e, "query failed while running");
            QueryError::Failed
        }
    }
}

/// The kinds of DataFusion errors the data plane treats differently.
enum Class {
    /// A name the query uses (column, function, type, struct field) does not exist.
    MissingName,
    /// SQL syntax (while planning: e.g. an interval or type text).
    Syntax,
    /// A SQL feature DataFusion does not implement.
    NotSupported,
    /// Planning errors about the query itself (types, grouping).
    Plan,
    /// Memory limit.
    Resources,
    /// Anything else: I/O, internal, execution.
    Other,
}

/// Plan-error messages that mean a name is not known (DataFusion has no variant for them).
const MISSING_NAME_MESSAGES: [&str; 3] = [
    "Invalid function '",
    "not found in struct",
    "Unsupported SQL type",
];

fn classify(e: &DataFusionError) -> Class {
    match e {
        DataFusionError::SchemaError(inner, _) => match inner.as_ref() {
            datafusion::common::SchemaError::FieldNotFound { .. } => Class::MissingName,
            _ => Class::Plan,
        },
        DataFusionError::SQL(..) => Class::Syntax,
        DataFusionError::Plan(m) | DataFusionError::NotImplemented(m)
            if MISSING_NAME_MESSAGES.iter().any(|n| m.contains(n)) =>
        {
            Class::MissingName
        }
        DataFusionError::Plan(_) => Class::Plan,
        DataFusionError::NotImplemented(_) => Class::NotSupported,
        DataFusionError::ResourcesExhausted(_) => Class::Resources,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify(inner)
        }
        DataFusionError::Shared(inner) => classify(inner),
        DataFusionError::Collection(errors) => {
            // the first member decides, unless one is a missing name (the most helpful)
            let classes: Vec<Class> = errors.iter().map(classify).collect();
            if classes.iter().any(|c| matches!(c, Class::MissingName)) {
                Class::MissingName
            } else {
                classes.into_iter().next().unwrap_or(Class::Other)
            }
        }
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::{Column, SchemaError};

    fn missing_column(name: &str) -> DataFusionError {
        DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(Column::from_name(name)),
                valid_fields: vec![],
            }),
            Box::new(None),
        )
        .context("while planning")
    }

    /// The answer is the same text whatever the name, secret or unknown: no bisection over
    /// candidate names.
    #[test]
    fn planning_errors_do_not_depend_on_the_names_in_them() {
        for (secret, unknown) in [
            (missing_column("customer_name"), missing_column("no_such")),
            (
                DataFusionError::Plan(
                    "Invalid function 'customer_name'.\nDid you mean 'current_date'?".into(),
                ),
                DataFusionError::Plan("Invalid function 'sqrt2'.\nDid you mean 'sqrt'?".into()),
            ),
            (
                DataFusionError::NotImplemented("Unsupported SQL type customer_name".into()),
                DataFusionError::NotImplemented("Unsupported SQL type frobnicate".into()),
            ),
            (
                DataFusionError::Plan("cannot coerce /srv/data/readings.parquet".into()),
                DataFusionError::Plan("cannot coerce Utf8 to Int64".into()),
            ),
        ] {
            let (secret, unknown) = (planning_error(secret), planning_error(unknown));
            assert_eq!(secret, unknown);
            let said = Status::from(secret).message().to_string();
            for leak in ["customer_name", "/srv", "current_date", "sqrt", "Utf8"] {
                assert!(!said.contains(leak), "{said}");
            }
        }
        assert!(matches!(
            planning_error(missing_column("x")),
            QueryError::Refused {
                rule: "visible-columns",
                ..
            }
        ));
        let internal = planning_error(DataFusionError::Internal("bug".into()));
        assert_eq!(
            Status::from(internal).code(),
            tonic::Code::InvalidArgument,
            "bad input is never a server error"
        );
    }

    #[test]
    fn execution_errors_are_fixed_messages() {
        let q = execution_error(DataFusionError::Execution(
            "cannot cast 'Anna Jansen'".into(),
        ));
        assert_eq!(q, QueryError::Failed);
        assert!(!Status::from(q).message().contains("Anna"));
        let q = execution_error(DataFusionError::ResourcesExhausted("pool".into()));
        assert_eq!(Status::from(q).code(), tonic::Code::ResourceExhausted);
    }
}
