//! Catalogue changes as values, for the connector's durable change log.
//!
//! The connector commits a [`CatalogChange`] to its transactional state store, then applies
//! it here; at start it loads the latest [`CatalogStore::dump`] snapshot and replays the
//! changes logged after it. Each change is applied in one oxigraph transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CatalogError;
use crate::import::RdfSyntax;
use crate::model::Dataset;
use crate::store::CatalogStore;

/// One write to the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum CatalogChange {
    /// [`CatalogStore::put_dataset`].
    PutDataset {
        /// The dataset.
        dataset: Box<Dataset>,
    },
    /// [`CatalogStore::remove_dataset`].
    RemoveDataset {
        /// The dataset id.
        id: String,
    },
    /// [`CatalogStore::import`] of a text document.
    Import {
        /// Its syntax.
        syntax: RdfSyntax,
        /// The document.
        document: String,
    },
    /// [`CatalogStore::store_peer_catalog`].
    StorePeerCatalog {
        /// The peer's participant id.
        peer_id: String,
        /// When the catalogue was fetched.
        fetched_at: DateTime<Utc>,
        /// The DSP catalogue JSON as fetched.
        catalog: Value,
    },
    /// [`CatalogStore::remove_peer_catalog`].
    RemovePeerCatalog {
        /// The peer's participant id.
        peer_id: String,
    },
}

impl CatalogStore {
    /// Applies a logged change. A change that failed when first applied fails again the same
    /// way, so the connector logs only changes that succeeded (or tolerates replay errors).
    pub fn apply(&self, change: &CatalogChange) -> Result<(), CatalogError> {
        match change {
            CatalogChange::PutDataset { dataset } => self.put_dataset(dataset),
            CatalogChange::RemoveDataset { id } => self.remove_dataset(id).map(drop),
            CatalogChange::Import { syntax, document } => {
                self.import(document.as_bytes(), *syntax).map(drop)
            }
            CatalogChange::StorePeerCatalog {
                peer_id,
                fetched_at,
                catalog,
            } => self
                .store_peer_catalog(peer_id, *fetched_at, catalog)
                .map(drop),
            CatalogChange::RemovePeerCatalog { peer_id } => {
                self.remove_peer_catalog(peer_id).map(drop)
            }
        }
    }
}
