//! Errors of the catalogue crate.

use thiserror::Error;

/// Everything that can go wrong in the catalogue.
///
/// Messages name what is wrong and what to do; they never carry internal paths or
/// data-source locations, so the connector may forward them to callers.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// An identifier (dataset, distribution, offer, service, theme, ...) is not an absolute IRI.
    #[error("invalid {what} id {id:?}: {reason}")]
    InvalidId {
        /// Which kind of identifier was refused.
        what: &'static str,
        /// The refused value (truncated to 200 characters).
        id: String,
        /// Why it was refused.
        reason: String,
    },
    /// A dataset field other than an id is malformed.
    #[error("invalid dataset: {0}")]
    InvalidDataset(String),
    /// An ODRL offer is not in the DSP 2025-1 compact form this catalogue accepts.
    #[error("invalid offer: {0}")]
    InvalidOffer(String),
    /// An offer id is already used by another dataset; offer ids must be unique.
    #[error(
        "offer id {offer:?} is already used by dataset {dataset:?}: give the offer another @id"
    )]
    OfferIdInUse {
        /// The offer id.
        offer: String,
        /// The dataset that already carries it.
        dataset: String,
    },
    /// An RDF document (import or dump) could not be parsed.
    #[error("syntax error{}: {message}", location.map(|(l, c)| format!(" at line {l}, column {c}")).unwrap_or_default())]
    Syntax {
        /// 1-based line and column, when the parser knows them.
        location: Option<(u64, u64)>,
        /// The parser's message.
        message: String,
    },
    /// Imported RDF is well formed but cannot be stored as catalogue content.
    #[error("import refused: {0}")]
    Import(String),
    /// A SPARQL query was refused or failed.
    #[error("SPARQL: {0}")]
    Sparql(String),
    /// A SPARQL query ran past its time limit and was cancelled.
    #[error("SPARQL query cancelled after its time limit of {0} ms: narrow the query or add LIMIT")]
    Timeout(u128),
    /// A DSP catalogue request filter is not supported.
    #[error("unsupported filter: {0}")]
    UnsupportedFilter(String),
    /// A peer catalogue could not be stored.
    #[error("invalid peer catalogue: {0}")]
    InvalidPeerCatalog(String),
    /// The graph store failed.
    #[error("catalogue store error: {0}")]
    Store(String),
    /// The graph holds something this crate cannot read back (should not happen).
    #[error("catalogue graph is inconsistent: {0}")]
    Corrupt(String),
}

impl CatalogError {
    /// The HTTP status this error maps to: 400 for bad input, 409 for an offer id in use,
    /// 503 for a query past its time limit, 500 for store failures.
    pub fn http_status(&self) -> u16 {
        match self {
            CatalogError::OfferIdInUse { .. } => 409,
            CatalogError::Timeout(_) => 503,
            CatalogError::Store(_) | CatalogError::Corrupt(_) => 500,
            _ => 400,
        }
    }

    /// A DSP `CatalogError` body for a partner: the message for input errors, a generic
    /// reason for internal ones (nothing internal leaks).
    pub fn to_dsp_error(&self) -> serde_json::Value {
        let status = self.http_status();
        let reason = if status >= 500 && !matches!(self, CatalogError::Timeout(_)) {
            "internal catalogue error".to_string()
        } else {
            self.to_string()
        };
        crate::dsp::catalog_error_json(&status.to_string(), &reason)
    }

    pub(crate) fn invalid_id(what: &'static str, id: &str, reason: impl ToString) -> Self {
        CatalogError::InvalidId {
            what,
            id: truncate(id, 200),
            reason: reason.to_string(),
        }
    }
}

/// Shortens a caller-supplied value for an error message.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

impl From<oxigraph::store::StorageError> for CatalogError {
    fn from(e: oxigraph::store::StorageError) -> Self {
        CatalogError::Store(e.to_string())
    }
}
