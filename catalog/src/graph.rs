//! [`Dataset`] ⇄ quads of its named graph.

use std::collections::HashSet;

use oxigraph::model::vocab::{rdf, xsd};
use oxigraph::model::{
    BlankNode, GraphName, Literal, NamedNode, NamedNodeRef, NamedOrBlankNode, Quad, Term,
};

use crate::error::{CatalogError, truncate};
use crate::model::{DataSource, Dataset, Distribution};
use crate::odrl::{self, iri};
use crate::vocab::*;

/// Longest title, keyword or location accepted, in bytes.
const MAX_SHORT: usize = 2048;
/// Longest description accepted, in bytes.
const MAX_LONG: usize = 64 * 1024;
/// Most keywords, themes, distributions or offers on one dataset.
const MAX_ITEMS: usize = 256;
/// Data source kinds the data plane can read.
pub const SOURCE_KINDS: &[&str] = &["parquet", "csv", "json", "arrow"];

/// Checks a dataset id: an absolute IRI outside the reserved `urn:sluis:graph:` space.
pub(crate) fn dataset_node(id: &str) -> Result<NamedNode, CatalogError> {
    let node = iri(id, "dataset")?;
    if id.starts_with(RESERVED_PREFIX) {
        return Err(CatalogError::invalid_id(
            "dataset",
            id,
            format!("the prefix {RESERVED_PREFIX} is reserved for the catalogue's own graphs"),
        ));
    }
    Ok(node)
}

fn text(value: &str, field: &str, max: usize) -> Result<Literal, CatalogError> {
    if value.trim().is_empty() {
        return Err(CatalogError::InvalidDataset(format!(
            "{field} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(CatalogError::InvalidDataset(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    Ok(Literal::new_simple_literal(value))
}

/// `YYYY-MM-DD` as `xsd:date`, an RFC 3339 date-time as `xsd:dateTime`.
fn date(value: &str, field: &str) -> Result<Literal, CatalogError> {
    if chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() {
        return Ok(Literal::new_typed_literal(value, xsd::DATE));
    }
    if chrono::DateTime::parse_from_rfc3339(value).is_ok() {
        return Ok(Literal::new_typed_literal(value, xsd::DATE_TIME));
    }
    Err(CatalogError::InvalidDataset(format!(
        "{field} {:?} is neither YYYY-MM-DD nor an RFC 3339 date-time",
        truncate(value, 60)
    )))
}

fn check_count<T>(items: &[T], field: &str) -> Result<(), CatalogError> {
    if items.len() > MAX_ITEMS {
        return Err(CatalogError::InvalidDataset(format!(
            "more than {MAX_ITEMS} {field}"
        )));
    }
    Ok(())
}

/// A DSP format term (`HttpData-PULL`) or an IRI, as the node stored under `dct:format`.
pub(crate) fn format_node(format: &str) -> Result<NamedNode, CatalogError> {
    if format.contains(':') {
        return iri(format, "format");
    }
    let ok = !format.is_empty()
        && format.len() <= 200
        && format
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(CatalogError::InvalidDataset(format!(
            "format {:?} must be a term such as HttpData-PULL or ArrowFlight-PULL, or an IRI",
            truncate(format, 60)
        )));
    }
    Ok(NamedNode::new_unchecked(format!("{FORMAT_NS}{format}")))
}

/// Inverse of [`format_node`].
pub(crate) fn format_term(node: &str) -> String {
    node.strip_prefix(FORMAT_NS).unwrap_or(node).to_string()
}

/// Everything [`dataset_to_quads`] produces.
pub(crate) struct DatasetQuads {
    /// The dataset's node, also the name of its graph.
    pub node: NamedNode,
    /// The quads of the graph.
    pub quads: Vec<Quad>,
    /// The ids of its offers.
    pub offer_ids: Vec<NamedNode>,
}

/// Validates `ds` and turns it into the quads of its named graph.
pub(crate) fn dataset_to_quads(ds: &Dataset) -> Result<DatasetQuads, CatalogError> {
    let node = dataset_node(&ds.id)?;
    let graph = GraphName::NamedNode(node.clone());
    let s: NamedOrBlankNode = node.clone().into();
    let mut quads = Vec::with_capacity(32);
    let mut add = |s: &NamedOrBlankNode, p: NamedNodeRef<'_>, o: Term| {
        quads.push(Quad::new(s.clone(), p, o, graph.clone()));
    };
    add(&s, rdf::TYPE, DCAT_DATASET.into_owned().into());
    add(&s, DCT_TITLE, text(&ds.title, "title", MAX_SHORT)?.into());
    if let Some(d) = &ds.description {
        add(
            &s,
            DCT_DESCRIPTION,
            text(d, "description", MAX_LONG)?.into(),
        );
    }
    for (field, items) in [
        ("keywords", &ds.keywords),
        ("themes", &ds.themes),
        ("languages", &ds.languages),
    ] {
        check_count(items, field)?;
    }
    for k in &ds.keywords {
        add(&s, DCAT_KEYWORD, text(k, "keyword", MAX_SHORT)?.into());
    }
    for t in &ds.themes {
        add(&s, DCAT_THEME, iri(t, "theme")?.into());
    }
    // Range types (DCAT-AP range shapes) are stated, so the export conforms without vocabularies.
    for l in &ds.languages {
        let lang: NamedOrBlankNode = iri(l, "language")?.into();
        add(&s, DCT_LANGUAGE, lang.clone().into());
        add(&lang, rdf::TYPE, DCT_LINGUISTIC_SYSTEM.into_owned().into());
    }
    if let Some(p) = &ds.landing_page {
        let page: NamedOrBlankNode = iri(p, "landing page")?.into();
        add(&s, DCAT_LANDING_PAGE, page.clone().into());
        add(&page, rdf::TYPE, FOAF_DOCUMENT.into_owned().into());
    }
    if let Some(p) = &ds.publisher {
        let agent: NamedOrBlankNode = iri(p, "publisher")?.into();
        add(&s, DCT_PUBLISHER, agent.clone().into());
        add(&agent, rdf::TYPE, FOAF_AGENT.into_owned().into());
        if let Some(name) = &ds.publisher_name {
            add(
                &agent,
                FOAF_NAME,
                text(name, "publisherName", MAX_SHORT)?.into(),
            );
        }
    } else if ds.publisher_name.is_some() {
        return Err(CatalogError::InvalidDataset(
            "publisherName needs a publisher IRI".into(),
        ));
    }
    if let Some(email) = &ds.contact_email {
        let mailto = if email.starts_with("mailto:") {
            email.clone()
        } else {
            format!("mailto:{email}")
        };
        let contact: NamedOrBlankNode = BlankNode::default().into();
        add(&s, DCAT_CONTACT_POINT, contact.clone().into());
        add(&contact, rdf::TYPE, VCARD_KIND.into_owned().into());
        add(
            &contact,
            VCARD_HAS_EMAIL,
            iri(&mailto, "contact e-mail")?.into(),
        );
    }
    if let Some(d) = &ds.issued {
        add(&s, DCT_ISSUED, date(d, "issued")?.into());
    }
    if let Some(d) = &ds.modified {
        add(&s, DCT_MODIFIED, date(d, "modified")?.into());
    }
    check_count(&ds.distributions, "distributions")?;
    for dist in &ds.distributions {
        let d: NamedOrBlankNode = match &dist.id {
            Some(id) => iri(id, "distribution")?.into(),
            None => BlankNode::default().into(),
        };
        add(&s, DCAT_DISTRIBUTION_P, d.clone().into());
        add(&d, rdf::TYPE, DCAT_DISTRIBUTION.into_owned().into());
        let format: NamedOrBlankNode = format_node(&dist.format)?.into();
        add(&d, DCT_FORMAT, format.clone().into());
        add(
            &format,
            rdf::TYPE,
            DCT_MEDIA_TYPE_OR_EXTENT.into_owned().into(),
        );
        if let Some(svc) = &dist.access_service {
            add(&d, DCAT_ACCESS_SERVICE, iri(svc, "access service")?.into());
        }
        if let Some(src) = &dist.source {
            if !SOURCE_KINDS.contains(&src.kind.as_str()) {
                return Err(CatalogError::InvalidDataset(format!(
                    "data source kind {:?} is not one of {}",
                    truncate(&src.kind, 40),
                    SOURCE_KINDS.join(", ")
                )));
            }
            add(
                &d,
                SLUIS_SOURCE_KIND,
                Literal::new_simple_literal(&src.kind).into(),
            );
            add(
                &d,
                SLUIS_SOURCE_LOCATION,
                text(&src.location, "data source location", MAX_SHORT)?.into(),
            );
        }
    }
    check_count(&ds.offers, "offers")?;
    let mut offer_ids = Vec::with_capacity(ds.offers.len());
    let mut offer_quads = Vec::new();
    for offer in &ds.offers {
        let id = odrl::offer_to_quads(offer, &graph, &mut offer_quads)?;
        if offer_ids.contains(&id) {
            return Err(CatalogError::InvalidOffer(format!(
                "two offers share the @id {}",
                id.as_str()
            )));
        }
        add(&s, ODRL_HAS_POLICY, id.clone().into());
        offer_ids.push(id);
    }
    quads.extend(offer_quads);
    Ok(DatasetQuads {
        node,
        quads,
        offer_ids,
    })
}

/// Reads a dataset back from the quads of its graph.
pub(crate) fn dataset_from_quads(
    node: &NamedNode,
    quads: &[Quad],
) -> Result<Dataset, CatalogError> {
    let idx = odrl::index(quads);
    let s: NamedOrBlankNode = node.clone().into();
    let get = |s: &NamedOrBlankNode, p: NamedNodeRef<'_>| -> Vec<&Term> {
        idx.get(s)
            .map(|edges| {
                edges
                    .iter()
                    .filter(|(q, _)| q.as_ref() == p)
                    .map(|(_, o)| o)
                    .collect()
            })
            .unwrap_or_default()
    };
    let title = best_literal(&get(&s, DCT_TITLE)).unwrap_or_default();
    let description = best_literal(&get(&s, DCT_DESCRIPTION));
    let mut ds = Dataset {
        id: node.as_str().to_string(),
        title,
        description,
        keywords: sorted(get(&s, DCAT_KEYWORD).into_iter().filter_map(literal_value)),
        themes: sorted(get(&s, DCAT_THEME).into_iter().filter_map(iri_value)),
        languages: sorted(get(&s, DCT_LANGUAGE).into_iter().filter_map(iri_value)),
        landing_page: get(&s, DCAT_LANDING_PAGE).into_iter().find_map(iri_value),
        publisher: get(&s, DCT_PUBLISHER).into_iter().find_map(iri_value),
        issued: get(&s, DCT_ISSUED).into_iter().find_map(literal_value),
        modified: get(&s, DCT_MODIFIED).into_iter().find_map(literal_value),
        ..Dataset::default()
    };
    if let Some(p) = &ds.publisher {
        let agent = NamedOrBlankNode::NamedNode(NamedNode::new_unchecked(p.clone()));
        ds.publisher_name = best_literal(&get(&agent, FOAF_NAME));
    }
    ds.contact_email = get(&s, DCAT_CONTACT_POINT)
        .into_iter()
        .find_map(|c| {
            let c = subject(c)?;
            get(&c, VCARD_HAS_EMAIL).into_iter().find_map(iri_value)
        })
        .map(|m| m.strip_prefix("mailto:").map(str::to_string).unwrap_or(m));
    for d in get(&s, DCAT_DISTRIBUTION_P) {
        let Some(dn) = subject(d) else { continue };
        ds.distributions.push(distribution(&dn, &get));
    }
    ds.distributions.sort_by(|a, b| {
        (&a.id, &a.format, &a.access_service).cmp(&(&b.id, &b.format, &b.access_service))
    });
    let mut offer_nodes: Vec<NamedNode> = get(&s, ODRL_HAS_POLICY)
        .into_iter()
        .filter_map(|t| match t {
            Term::NamedNode(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    offer_nodes.sort();
    for o in offer_nodes {
        ds.offers.push(odrl::offer_from_index(&idx, &o)?);
    }
    Ok(ds)
}

fn distribution<'a>(
    dn: &NamedOrBlankNode,
    get: &impl Fn(&NamedOrBlankNode, NamedNodeRef<'_>) -> Vec<&'a Term>,
) -> Distribution {
    let kind = get(dn, SLUIS_SOURCE_KIND)
        .into_iter()
        .find_map(literal_value);
    let location = get(dn, SLUIS_SOURCE_LOCATION)
        .into_iter()
        .find_map(literal_value);
    Distribution {
        id: match dn {
            NamedOrBlankNode::NamedNode(n) => Some(n.as_str().to_string()),
            _ => None,
        },
        format: get(dn, DCT_FORMAT)
            .into_iter()
            .find_map(|t| match t {
                Term::NamedNode(n) => Some(format_term(n.as_str())),
                Term::Literal(l) => Some(l.value().to_string()),
                _ => None,
            })
            .unwrap_or_default(),
        access_service: get(dn, DCAT_ACCESS_SERVICE).into_iter().find_map(iri_value),
        source: match (kind, location) {
            (Some(kind), Some(location)) => Some(DataSource { kind, location }),
            _ => None,
        },
    }
}

fn subject(t: &Term) -> Option<NamedOrBlankNode> {
    match t {
        Term::NamedNode(n) => Some(n.clone().into()),
        Term::BlankNode(b) => Some(b.clone().into()),
        _ => None,
    }
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let set: HashSet<String> = items.collect();
    let mut v: Vec<String> = set.into_iter().collect();
    v.sort();
    v
}

fn literal_value(t: &Term) -> Option<String> {
    match t {
        Term::Literal(l) => Some(l.value().to_string()),
        _ => None,
    }
}

fn iri_value(t: &Term) -> Option<String> {
    match t {
        Term::NamedNode(n) => Some(n.as_str().to_string()),
        _ => None,
    }
}

/// The literal to show for a possibly multilingual property: untagged, then English, then any.
pub(crate) fn best_literal(terms: &[&Term]) -> Option<String> {
    let lits: Vec<&Literal> = terms
        .iter()
        .filter_map(|t| match t {
            Term::Literal(l) => Some(l),
            _ => None,
        })
        .collect();
    lits.iter()
        .find(|l| l.language().is_none())
        .or_else(|| {
            lits.iter()
                .find(|l| l.language().is_some_and(|g| g.starts_with("en")))
        })
        .or_else(|| lits.iter().min_by_key(|l| l.value()))
        .map(|l| l.value().to_string())
}
