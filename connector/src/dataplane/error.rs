//! Errors of the data plane and the messages consumers see.
//!
//! A consumer must never learn a hidden column's name, a server path or a value from a row it
//! cannot see. So DataFusion's messages reach the consumer only for syntax and planning
//! errors, and only after [`Redactor`] has checked them; everything that happens while
//! reading data gets a fixed message, with the details in the server log.

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

/// Checks DataFusion messages before a consumer sees them.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Strings that must never appear: hidden column names, the source location.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor that withholds any message containing one of `secrets` (empty ones ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        Self {
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// `message` if it reveals none of the secrets, else a fixed text.
    fn clean(&self, message: String) -> String {
        let lower = message.to_lowercase();
        if self
            .secrets
            .iter()
            .any(|s| lower.contains(&s.to_lowercase()))
        {
            "the query cannot be planned over the visible schema (call GetSchema for it)".into()
        } else {
            message
        }
    }

    /// Maps an error from parsing or planning the consumer's SQL.
    pub fn planning(&self, e: DataFusionError) -> QueryError {
        match classify(&e) {
            Class::MissingColumn => QueryError::refused(
                "visible-columns",
                "the query names a column that is not in the dataset's visible schema \
                 (hidden and unknown columns are refused alike; call GetSchema for the visible columns)",
            ),
            Class::Syntax | Class::Plan => QueryError::Invalid(self.clean(root_message(&e))),
            Class::Resources => QueryError::ResourcesExhausted,
            Class::Other => {
                tracing::warn!(error = %e, "planning failed");
                QueryError::Failed
            }
        }
    }

    /// Maps an error from building the physical plan or running it.
    pub fn execution(&self, e: DataFusionError) -> QueryError {
        match classify(&e) {
            Class::Resources => QueryError::ResourcesExhausted,
            _ => {
                tracing::warn!(error = %e, "query failed while running");
                QueryError::Failed
            }
        }
    }
}

/// The kinds of DataFusion errors the data plane treats differently.
enum Class {
    /// A column the query names does not exist in the view.
    MissingColumn,
    /// SQL syntax.
    Syntax,
    /// Planning errors about the query itself (types, functions, grouping).
    Plan,
    /// Memory limit.
    Resources,
    /// Anything else: I/O, internal, execution.
    Other,
}

fn classify(e: &DataFusionError) -> Class {
    match e {
        DataFusionError::SchemaError(inner, _) => match inner.as_ref() {
            datafusion::common::SchemaError::FieldNotFound { .. } => Class::MissingColumn,
            _ => Class::Plan,
        },
        DataFusionError::SQL(..) => Class::Syntax,
        DataFusionError::Plan(_) | DataFusionError::NotImplemented(_) => Class::Plan,
        DataFusionError::ResourcesExhausted(_) => Class::Resources,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify(inner)
        }
        DataFusionError::Shared(inner) => classify(inner),
        DataFusionError::Collection(errors) => {
            // the most telling member decides: a hidden column must never slip through
            let classes: Vec<Class> = errors.iter().map(classify).collect();
            if classes.iter().any(|c| matches!(c, Class::MissingColumn)) {
                Class::MissingColumn
            } else {
                classes.into_iter().next().unwrap_or(Class::Other)
            }
        }
        _ => Class::Other,
    }
}

/// The innermost message, without DataFusion's wrapping prefixes and backtraces.
fn root_message(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::Plan(m) | DataFusionError::NotImplemented(m) => m.clone(),
        DataFusionError::SQL(p, _) => p.to_string(),
        other => other.strip_backtrace(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::{Column, SchemaError};

    #[test]
    fn missing_column_is_refused_without_naming_it() {
        let r = Redactor::new(["customer_name".to_string()]);
        let e = DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(Column::from_name("customer_name")),
                valid_fields: vec![],
            }),
            Box::new(None),
        )
        .context("while planning");
        let q = r.planning(e);
        assert!(matches!(
            q,
            QueryError::Refused {
                rule: "visible-columns",
                ..
            }
        ));
        assert!(!q.to_string().contains("customer_name"));
    }

    #[test]
    fn plan_errors_that_name_a_secret_are_withheld() {
        let r = Redactor::new(["customer_name".to_string(), "/srv/data".to_string()]);
        let q = r.planning(DataFusionError::Plan("cannot coerce Customer_Name".into()));
        assert!(!q.to_string().to_lowercase().contains("customer_name"));
        let q = r.planning(DataFusionError::Plan("no function sqrt2".into()));
        assert_eq!(q, QueryError::Invalid("no function sqrt2".into()));
    }

    #[test]
    fn execution_errors_are_fixed_messages() {
        let r = Redactor::default();
        let q = r.execution(DataFusionError::Execution(
            "cannot cast 'Anna Jansen'".into(),
        ));
        assert_eq!(q, QueryError::Failed);
        assert!(!Status::from(q).message().contains("Anna"));
        let q = r.execution(DataFusionError::ResourcesExhausted("pool".into()));
        assert_eq!(Status::from(q).code(), tonic::Code::ResourceExhausted);
    }
}
