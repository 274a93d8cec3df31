//! The catalogue's data model, as the connector's management API sees it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A DCAT dataset with its distributions and ODRL offers.
///
/// Stored in the graph as `dcat:Dataset` in its own named graph (named by the dataset id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dataset {
    /// Absolute IRI (`https://…`, `urn:…`, `did:…`).
    pub id: String,
    /// `dct:title` (DCAT-AP mandatory).
    pub title: String,
    /// `dct:description` (DCAT-AP mandatory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `dcat:keyword`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// `dcat:theme`: IRIs of concepts (for example EU data themes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub themes: Vec<String>,
    /// `dct:publisher`: IRI of the publishing agent (usually the participant id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// `foaf:name` of the publisher (DCAT-AP requires a name on the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_name: Option<String>,
    /// `dcat:contactPoint`: an e-mail address (`mailto:` added when missing) as a `vcard:Kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
    /// `dct:issued`: `YYYY-MM-DD` or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    /// `dct:modified`: `YYYY-MM-DD` or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// `dct:language`: IRIs (for example `http://publications.europa.eu/resource/authority/language/ENG`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// `dcat:landingPage`: IRI of a web page about the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    /// `dcat:distribution`.
    #[serde(default)]
    pub distributions: Vec<Distribution>,
    /// `odrl:hasPolicy`: DSP 2025-1 compact ODRL `Offer` objects, each with an `@id`.
    #[serde(default)]
    pub offers: Vec<Value>,
}

/// A `dcat:Distribution`: how the dataset is transferred.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Distribution {
    /// IRI of the distribution; a blank node when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// DSP transfer format: `ArrowFlight-PULL` or `HttpData-PULL` (or an IRI).
    pub format: String,
    /// IRI of the `dcat:DataService`; the connector's own service when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_service: Option<String>,
    /// Where the data lives. Internal: never shown to partners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataSource>,
}

/// Location of the data behind a distribution. Internal to the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// `parquet`, `csv`, `json` or `arrow`.
    pub kind: String,
    /// A file or directory path.
    pub location: String,
}

/// The connector's identity and DSP endpoint, used when producing DSP JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// `@id` of the root `Catalog`.
    pub catalog_id: String,
    /// The provider's participant id (`participantId`).
    pub participant_id: String,
    /// `@id` of the connector's `DataService`.
    pub service_id: String,
    /// The DSP base URL (`endpointURL`).
    pub endpoint_url: String,
}

/// A window into the list of datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Number of visible datasets to skip.
    pub offset: usize,
    /// Maximum number of datasets to return (clamped to [`Page::MAX_LIMIT`]).
    pub limit: usize,
}

impl Page {
    /// Largest page served; bigger limits are clamped.
    pub const MAX_LIMIT: usize = 1000;
    /// Page size when the caller names none.
    pub const DEFAULT_LIMIT: usize = 50;
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: Page::DEFAULT_LIMIT,
        }
    }
}

/// One page of the DSP catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogPage {
    /// The DSP 2025-1 `Catalog` JSON.
    pub catalog: Value,
    /// Number of datasets visible to the caller (across all pages).
    pub total: usize,
    /// The next page, for a `Link: <…>; rel="next"` header.
    pub next: Option<Page>,
    /// The previous page, for a `Link: <…>; rel="previous"` header.
    pub previous: Option<Page>,
}
