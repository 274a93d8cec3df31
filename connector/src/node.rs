//! The running connector's shared state: one [`Node`] per process, shared by the listeners.

use std::sync::Arc;

use sluis_catalog::{CatalogStore, ServiceInfo};
use sluis_policy::token::TokenIssuer;

use crate::client::PeerClient;
use crate::config::Config;
use crate::store::Store;

/// URLs at which this connector's listeners are reached.
#[derive(Debug, Clone)]
pub struct PublicUrls {
    /// DSP base URL (`https://host:port/dsp`).
    pub dsp: String,
    /// Flight endpoint (`grpc+tls://host:port`).
    pub flight: String,
    /// Management base URL.
    pub management: String,
}

/// Everything a request handler needs.
pub struct Node {
    /// This participant's id.
    pub participant_id: String,
    /// The loaded configuration.
    pub config: Config,
    /// Negotiations, transfers, agreements, outbox.
    pub store: Store,
    /// The DCAT catalogue.
    pub catalog: CatalogStore,
    /// Client for partner connectors.
    pub peers: PeerClient,
    /// Mints data-plane tokens.
    pub tokens: TokenIssuer,
    /// Public URLs of the listeners.
    pub urls: PublicUrls,
    /// The federated catalogue's peers and crawl status.
    pub federation: crate::federation::Federation,
    /// The catalogue's durable change log (management API writes go through it).
    pub catalog_log: crate::catalog_log::CatalogLog,
}

/// Shared handle.
pub type Shared = Arc<Node>;

impl Node {
    /// What the catalogue needs to describe this connector's DSP service.
    pub fn service_info(&self) -> ServiceInfo {
        ServiceInfo {
            catalog_id: format!("{}#catalog", self.participant_id),
            participant_id: self.participant_id.clone(),
            service_id: format!("{}#dsp", self.participant_id),
            endpoint_url: self.urls.dsp.clone(),
        }
    }
}

/// A new process (or agreement) id: a UUIDv7, so that ids made one after another sort
/// together and the store's indexes on them grow at one end instead of touching a random page
/// per insert (which cost about 20 % of the CPU of a negotiation, BENCHMARKS.md).
pub fn new_pid() -> String {
    format!("urn:uuid:{}", uuid::Uuid::now_v7())
}

/// The table name a dataset is queried by: the last segment of its id, as an SQL identifier.
pub fn table_name(dataset_id: &str) -> String {
    let last = dataset_id
        .rsplit([':', '/', '#'])
        .find(|s| !s.is_empty())
        .unwrap_or("dataset");
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 't');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_sort_in_the_order_they_were_made() {
        let pids: Vec<String> = (0..1000).map(|_| new_pid()).collect();
        assert!(pids.windows(2).all(|w| w[0] < w[1]));
        assert!(
            pids.iter()
                .all(|p| p.starts_with("urn:uuid:") && p.len() == 45)
        );
    }

    #[test]
    fn table_names_are_identifiers() {
        assert_eq!(
            table_name("urn:sluis:dataset:meter-readings"),
            "meter_readings"
        );
        assert_eq!(table_name("https://data.example/ds/42"), "t42");
        assert_eq!(table_name("https://data.example/ds/Trips#"), "trips");
    }
}
