//! Namespaces and terms used in the catalogue graph.

use oxigraph::model::NamedNodeRef;

/// DCAT 3.
pub const DCAT: &str = "http://www.w3.org/ns/dcat#";
/// Dublin Core terms.
pub const DCT: &str = "http://purl.org/dc/terms/";
/// ODRL 2.2.
pub const ODRL: &str = "http://www.w3.org/ns/odrl/2/";
/// Dataspace Protocol 2025-1.
pub const DSPACE: &str = "https://w3id.org/dspace/2025/1/";
/// The Sluis ODRL profile (data-plane constraints such as `sluis:row.region`).
pub const SLUIS_ODRL: &str = "https://w3id.org/sluis/odrl#";
/// Sluis-internal catalogue terms (data sources, peer graph bookkeeping).
/// Never emitted in DSP JSON or partner exports.
pub const SLUIS: &str = "https://w3id.org/sluis/catalog#";
/// XML Schema datatypes.
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
/// FOAF.
pub const FOAF: &str = "http://xmlns.com/foaf/0.1/";
/// vCard.
pub const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
/// RDF.
pub const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";

/// Prefixes used when compacting vocabulary IRIs in ODRL JSON and when writing Turtle.
pub const PREFIXES: &[(&str, &str)] = &[
    ("odrl", ODRL),
    ("sluis", SLUIS_ODRL),
    ("dspace", DSPACE),
    ("dcat", DCAT),
    ("dct", DCT),
    ("xsd", XSD),
    ("foaf", FOAF),
    ("vcard", VCARD),
    ("rdf", RDF),
    ("sluiscat", SLUIS),
];

/// Named graph holding catalogue-level triples that belong to no single dataset (imports).
pub const CATALOG_GRAPH: &str = "urn:sluis:graph:catalog";
/// Named graph holding bookkeeping about peer catalogue graphs.
pub const PEERS_GRAPH: &str = "urn:sluis:graph:peers";
/// Prefix of every named graph holding a peer's fetched catalogue.
pub const PEER_GRAPH_PREFIX: &str = "urn:sluis:graph:peer:";
/// Dataset ids must not start with this reserved prefix.
pub const RESERVED_PREFIX: &str = "urn:sluis:graph:";

macro_rules! terms {
    ($($name:ident = $ns:ident + $local:literal;)*) => {
        $(
            #[doc = concat!("`", $local, "`")]
            pub const $name: NamedNodeRef<'static> =
                NamedNodeRef::new_unchecked(concat_ns!($ns, $local));
        )*
    };
}

macro_rules! concat_ns {
    (DCAT, $l:literal) => {
        concat!("http://www.w3.org/ns/dcat#", $l)
    };
    (DCT, $l:literal) => {
        concat!("http://purl.org/dc/terms/", $l)
    };
    (ODRL, $l:literal) => {
        concat!("http://www.w3.org/ns/odrl/2/", $l)
    };
    (SLUIS, $l:literal) => {
        concat!("https://w3id.org/sluis/catalog#", $l)
    };
    (FOAF, $l:literal) => {
        concat!("http://xmlns.com/foaf/0.1/", $l)
    };
    (VCARD, $l:literal) => {
        concat!("http://www.w3.org/2006/vcard/ns#", $l)
    };
    (DSPACE, $l:literal) => {
        concat!("https://w3id.org/dspace/2025/1/", $l)
    };
}

terms! {
    DCAT_CATALOG = DCAT + "Catalog";
    DCAT_DATASET = DCAT + "Dataset";
    DCAT_DISTRIBUTION = DCAT + "Distribution";
    DCAT_DATA_SERVICE = DCAT + "DataService";
    DCAT_DATASET_P = DCAT + "dataset";
    DCAT_SERVICE = DCAT + "service";
    DCAT_DISTRIBUTION_P = DCAT + "distribution";
    DCAT_ACCESS_SERVICE = DCAT + "accessService";
    DCAT_ACCESS_URL = DCAT + "accessURL";
    DCAT_ENDPOINT_URL = DCAT + "endpointURL";
    DCAT_KEYWORD = DCAT + "keyword";
    DCAT_THEME = DCAT + "theme";
    DCAT_LANDING_PAGE = DCAT + "landingPage";
    DCAT_CONTACT_POINT = DCAT + "contactPoint";
    DCT_TITLE = DCT + "title";
    DCT_DESCRIPTION = DCT + "description";
    DCT_PUBLISHER = DCT + "publisher";
    DCT_FORMAT = DCT + "format";
    DCT_ISSUED = DCT + "issued";
    DCT_MODIFIED = DCT + "modified";
    DCT_LANGUAGE = DCT + "language";
    DCT_MEDIA_TYPE_OR_EXTENT = DCT + "MediaTypeOrExtent";
    DCT_LINGUISTIC_SYSTEM = DCT + "LinguisticSystem";
    FOAF_DOCUMENT = FOAF + "Document";
    ODRL_HAS_POLICY = ODRL + "hasPolicy";
    ODRL_OFFER = ODRL + "Offer";
    FOAF_AGENT = FOAF + "Agent";
    FOAF_NAME = FOAF + "name";
    VCARD_KIND = VCARD + "Kind";
    VCARD_HAS_EMAIL = VCARD + "hasEmail";
    VCARD_FN = VCARD + "fn";
    SLUIS_SOURCE_KIND = SLUIS + "sourceKind";
    SLUIS_SOURCE_LOCATION = SLUIS + "sourceLocation";
    SLUIS_FETCHED_AT = SLUIS + "fetchedAt";
    SLUIS_PEER = SLUIS + "peer";
    SLUIS_PEER_GRAPH = SLUIS + "PeerCatalogGraph";
    DSPACE_PARTICIPANT_ID = DSPACE + "participantId";
}

/// Format terms of DSP (`HttpData-PULL`) are stored as IRIs in this namespace.
pub const FORMAT_NS: &str = "https://w3id.org/sluis/format#";
