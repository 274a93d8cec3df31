//! Sluis catalogue: DCAT 3 metadata in an oxigraph graph, served as DSP 2025-1 JSON.
//!
//! The oxigraph store is the source of truth. Each local dataset lives in its own named graph
//! (named by the dataset IRI) with its distributions and ODRL offers (`odrl:hasPolicy`), so a
//! dataset is replaced or removed in one transaction. The DSP `Catalog` and `Dataset` JSON is
//! produced from the graph. Data-source locations are stored under a Sluis-internal namespace
//! and never leave through DSP JSON or partner exports. See `README.md` for the graph layout.

#![deny(missing_docs)]

mod change;
mod dcatap;
mod dsp;
mod error;
mod graph;
mod import;
mod model;
mod odrl;
mod peers;
mod request;
mod sparql;
mod store;
pub mod vocab;

pub use change::CatalogChange;
pub use dcatap::MissingProperty;
pub use dsp::{DSP_CONTEXT, catalog_error_json};
pub use error::CatalogError;
pub use graph::SOURCE_KINDS;
pub use import::{CatalogAbout, ImportReport, RdfSyntax};
pub use model::{CatalogPage, DataSource, Dataset, Distribution, Page, ServiceInfo};
pub use peers::{PeerCatalogInfo, PeerStoreReport, SearchHit, peer_graph_name};
pub use request::{CatalogFilter, FilterTerm, OfferVisibility, VisibleToAll, visible_to_all};
pub use sparql::{MAX_RUNNING_QUERIES, SparqlAnswer, SparqlLimits, SparqlResultsSyntax};
pub use store::{CatalogStore, ScopeMarker};
