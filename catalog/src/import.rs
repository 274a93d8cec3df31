//! DCAT / DCAT-AP import (Turtle, JSON-LD) and export (Turtle, JSON-LD, DCAT-AP with a catalogue node).

use std::collections::{HashMap, HashSet, VecDeque};

use oxigraph::io::{JsonLdProfileSet, LoadedDocument, RdfFormat, RdfParser, RdfSerializer};
use oxigraph::model::vocab::rdf;
use oxigraph::model::{
    GraphName, GraphNameRef, Literal, NamedNode, NamedOrBlankNode, Quad, Term, Triple,
};
use serde::Serialize;

use crate::error::CatalogError;
use crate::graph::{self, dataset_node};
use crate::model::ServiceInfo;
use crate::store::{CatalogStore, loader_error};
use crate::vocab::*;

const RDFS_RESOURCE: oxigraph::model::NamedNodeRef<'static> =
    oxigraph::model::NamedNodeRef::new_unchecked("http://www.w3.org/2000/01/rdf-schema#Resource");

/// RDF syntaxes accepted by [`CatalogStore::import`] and produced by [`CatalogStore::export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RdfSyntax {
    /// `text/turtle`.
    Turtle,
    /// `application/ld+json`. Contexts are resolved from local copies only (DSP 2025-1, DCAT-AP 3.0.1).
    JsonLd,
    /// `application/n-triples`.
    NTriples,
}

impl RdfSyntax {
    /// The syntax of a media type (parameters such as `; charset=utf-8` are ignored).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type.split(';').next()?.trim() {
            "text/turtle" | "application/x-turtle" => Some(RdfSyntax::Turtle),
            "application/ld+json" | "application/json" => Some(RdfSyntax::JsonLd),
            "application/n-triples" => Some(RdfSyntax::NTriples),
            _ => None,
        }
    }

    /// The media type to answer with.
    pub fn media_type(self) -> &'static str {
        match self {
            RdfSyntax::Turtle => "text/turtle",
            RdfSyntax::JsonLd => "application/ld+json",
            RdfSyntax::NTriples => "application/n-triples",
        }
    }

    fn format(self) -> RdfFormat {
        match self {
            RdfSyntax::Turtle => RdfFormat::Turtle,
            RdfSyntax::JsonLd => RdfFormat::JsonLd {
                profile: JsonLdProfileSet::empty(),
            },
            RdfSyntax::NTriples => RdfFormat::NTriples,
        }
    }
}

/// What an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Ids of the datasets created or replaced, sorted.
    pub datasets: Vec<String>,
    /// Triples that belong to no dataset (catalogue records, agents described apart…),
    /// added to the catalogue graph `urn:sluis:graph:catalog`.
    pub catalog_triples: usize,
}

/// JSON-LD contexts known offline, by the IRI documents use.
const CONTEXTS: &[(&str, &[u8])] = &[
    (
        "https://w3id.org/dspace/2025/1/context.jsonld",
        include_bytes!("../contexts/dspace.jsonld"),
    ),
    (
        "https://w3id.org/dspace/2025/1/odrl-profile.jsonld",
        include_bytes!("../contexts/odrl.jsonld"),
    ),
    (
        "https://semiceu.github.io/DCAT-AP/releases/3.0.1/context/dcat-ap.jsonld",
        include_bytes!("../contexts/dcat-ap.context.jsonld"),
    ),
];

/// Resolves a JSON-LD context from [`CONTEXTS`]; anything else is refused (no network).
fn load_context(url: &str) -> Result<LoadedDocument, Box<dyn std::error::Error + Send + Sync>> {
    let (_, content) = CONTEXTS
        .iter()
        .find(|(u, _)| *u == url)
        .ok_or_else(|| format!("remote JSON-LD context {url} is not available offline; inline it or use the DSP 2025-1 or DCAT-AP 3.0.1 context"))?;
    Ok(LoadedDocument {
        url: url.to_string(),
        content: content.to_vec(),
        format: RdfFormat::JsonLd {
            profile: JsonLdProfileSet::empty(),
        },
    })
}

/// Parses a whole document into triples (graph names dropped). Fails on the first error.
pub(crate) fn parse_triples(data: &[u8], syntax: RdfSyntax) -> Result<Vec<Triple>, CatalogError> {
    let parser = RdfParser::from_format(syntax.format()).rename_blank_nodes();
    let mut out = Vec::new();
    for q in parser.for_slice(data).with_document_loader(load_context) {
        let q = q.map_err(|e| loader_error(oxigraph::store::LoaderError::Parsing(e.into())))?;
        out.push(Triple::from(q));
    }
    Ok(out)
}

/// Splits triples into per-dataset graphs: each dataset gets every triple reachable from it
/// through nodes that are neither datasets nor catalogues. The rest is catalogue-level.
/// Triple indexes per dataset, and those of no dataset.
type Split = (HashMap<NamedNode, Vec<usize>>, Vec<usize>);

fn split(triples: &[Triple]) -> Result<Split, CatalogError> {
    let mut by_subject: HashMap<&NamedOrBlankNode, Vec<usize>> = HashMap::new();
    for (i, t) in triples.iter().enumerate() {
        by_subject.entry(&t.subject).or_default().push(i);
    }
    let typed = |class: oxigraph::model::NamedNodeRef<'static>| {
        triples
            .iter()
            .filter(move |t| t.predicate == rdf::TYPE && t.object == Term::from(class.into_owned()))
            .map(|t| t.subject.clone())
    };
    let mut datasets = Vec::new();
    for s in typed(DCAT_DATASET) {
        match s {
            NamedOrBlankNode::NamedNode(n) => datasets.push(n),
            NamedOrBlankNode::BlankNode(_) => {
                return Err(CatalogError::Import(
                    "a dcat:Dataset without an IRI: give every dataset an IRI".into(),
                ));
            }
        }
    }
    let stop: HashSet<NamedOrBlankNode> = datasets
        .iter()
        .cloned()
        .map(NamedOrBlankNode::from)
        .chain(typed(DCAT_CATALOG))
        .collect();
    let mut assigned = vec![false; triples.len()];
    let mut graphs = HashMap::new();
    for d in &datasets {
        dataset_node(d.as_str())?;
        let start = NamedOrBlankNode::from(d.clone());
        let mut seen: HashSet<&NamedOrBlankNode> = HashSet::from([&start]);
        let mut queue = VecDeque::from([&start]);
        let mut members = Vec::new();
        while let Some(node) = queue.pop_front() {
            for &i in by_subject.get(node).map(Vec::as_slice).unwrap_or(&[]) {
                members.push(i);
                assigned[i] = true;
                let next = match &triples[i].object {
                    Term::NamedNode(n) => by_subject
                        .get_key_value(&NamedOrBlankNode::from(n.clone()))
                        .map(|(k, _)| *k),
                    Term::BlankNode(b) => by_subject
                        .get_key_value(&NamedOrBlankNode::from(b.clone()))
                        .map(|(k, _)| *k),
                    _ => None,
                };
                if let Some(k) = next
                    && !stop.contains(k)
                    && seen.insert(k)
                {
                    queue.push_back(k);
                }
            }
        }
        graphs.insert(d.clone(), members);
    }
    let rest = (0..triples.len()).filter(|i| !assigned[*i]).collect();
    Ok((graphs, rest))
}

impl CatalogStore {
    /// Imports DCAT / DCAT-AP metadata. Every `dcat:Dataset` (it needs an IRI) becomes a local
    /// dataset, replacing one with the same id; triples reachable from no dataset go to the
    /// catalogue graph. All or nothing: a syntax error (with its line and column), an invalid
    /// dataset id, an unreadable ODRL policy or an offer id used elsewhere stores nothing.
    ///
    /// Properties the [`crate::Dataset`] model does not know are kept in the graph (and in
    /// exports) until the dataset is next replaced through [`CatalogStore::put_dataset`].
    pub fn import(&self, data: &[u8], syntax: RdfSyntax) -> Result<ImportReport, CatalogError> {
        let triples = parse_triples(data, syntax)?;
        let (graphs, rest) = split(&triples)?;
        let mut report = ImportReport {
            catalog_triples: rest.len(),
            ..ImportReport::default()
        };
        let mut prepared = Vec::with_capacity(graphs.len());
        let mut offers: HashMap<Term, String> = HashMap::new();
        for (node, members) in graphs {
            let g = GraphName::NamedNode(node.clone());
            let quads: Vec<Quad> = members
                .iter()
                .map(|i| triples[*i].clone().in_graph(g.clone()))
                .collect();
            // The dataset must read back, offers included, or nothing is imported.
            let ds = graph::dataset_from_quads(&node, &quads)
                .map_err(|e| CatalogError::Import(format!("dataset {}: {e}", node.as_str())))?;
            for q in quads
                .iter()
                .filter(|q| q.predicate == ODRL_HAS_POLICY && q.subject == node.clone().into())
            {
                if let Some(other) = offers.insert(q.object.clone(), node.as_str().to_string()) {
                    return Err(CatalogError::Import(format!(
                        "offer {} is attached to both {other} and {}: offer ids must be unique",
                        q.object,
                        node.as_str()
                    )));
                }
            }
            let offerable = !ds.offers.is_empty() && !ds.distributions.is_empty();
            prepared.push((node, quads, offerable));
        }
        let mut ids = self
            .ids
            .write()
            .map_err(|_| CatalogError::Store("index lock poisoned".into()))?;
        let mut tx = self.store.start_transaction()?;
        for (offer, dataset) in &offers {
            for q in tx.quads_for_pattern(None, Some(ODRL_HAS_POLICY), Some(offer.as_ref()), None) {
                let q = q?;
                let owner = match (&q.graph_name, &q.subject) {
                    (GraphName::NamedNode(g), NamedOrBlankNode::NamedNode(s)) if g == s => {
                        s.as_str()
                    }
                    _ => continue,
                };
                if owner != dataset && !offers.values().any(|d| d == owner) {
                    return Err(CatalogError::OfferIdInUse {
                        offer: offer.to_string(),
                        dataset: owner.to_string(),
                    });
                }
            }
        }
        for (node, quads, _) in &prepared {
            tx.clear_graph(node.as_ref())?;
            tx.insert_named_graph(node.as_ref());
            tx.extend(quads.iter());
        }
        let catalog_graph = GraphName::NamedNode(NamedNode::new_unchecked(CATALOG_GRAPH));
        tx.extend(
            rest.iter()
                .map(|i| triples[*i].clone().in_graph(catalog_graph.clone()))
                .collect::<Vec<_>>()
                .iter(),
        );
        tx.commit()?;
        for (node, _, offerable) in prepared {
            report.datasets.push(node.as_str().to_string());
            ids.insert(node.into_string(), crate::store::Entry::new(offerable));
        }
        report.datasets.sort();
        Ok(report)
    }

    /// Exports the local catalogue (datasets and catalogue graph, no internal triples).
    ///
    /// With `about`, a `dcat:Catalog` node and the connector's `dcat:DataService` are added and
    /// every distribution gets `dcat:accessURL` (the DSP endpoint), as DCAT-AP requires.
    pub fn export(
        &self,
        syntax: RdfSyntax,
        about: Option<&CatalogAbout>,
    ) -> Result<Vec<u8>, CatalogError> {
        let mut triples: Vec<Triple> = self.public_quads()?.into_iter().map(Triple::from).collect();
        if let Some(about) = about {
            triples.extend(self.catalog_node(about, &triples)?);
        }
        triples.sort_by(|a, b| {
            (a.subject.to_string(), a.predicate.as_str())
                .cmp(&(b.subject.to_string(), b.predicate.as_str()))
        });
        triples.dedup();
        let mut ser = RdfSerializer::from_format(syntax.format());
        for (p, ns) in PREFIXES {
            if *p != "sluiscat" {
                ser = ser
                    .with_prefix(*p, *ns)
                    .map_err(|e| CatalogError::Store(e.to_string()))?;
            }
        }
        let mut w = ser.for_writer(Vec::new());
        for t in &triples {
            w.serialize_triple(t.as_ref())
                .map_err(|e| CatalogError::Store(e.to_string()))?;
        }
        w.finish().map_err(|e| CatalogError::Store(e.to_string()))
    }

    /// Triples describing the catalogue itself, its data service and distribution access URLs.
    fn catalog_node(
        &self,
        about: &CatalogAbout,
        existing: &[Triple],
    ) -> Result<Vec<Triple>, CatalogError> {
        let svc = &about.service;
        let cat: NamedOrBlankNode = crate::odrl::iri(&svc.catalog_id, "catalog")?.into();
        let service: NamedOrBlankNode = crate::odrl::iri(&svc.service_id, "service")?.into();
        let publisher: NamedOrBlankNode =
            crate::odrl::iri(&svc.participant_id, "participant")?.into();
        let endpoint: Term = crate::odrl::iri(&svc.endpoint_url, "endpoint URL")?.into();
        let lit = |s: &str| Term::from(Literal::new_simple_literal(s));
        let mut out = vec![
            Triple::new(cat.clone(), rdf::TYPE, DCAT_CATALOG.into_owned()),
            Triple::new(cat.clone(), DCT_TITLE, lit(&about.title)),
            Triple::new(cat.clone(), DCT_DESCRIPTION, lit(&about.description)),
            Triple::new(cat.clone(), DCT_PUBLISHER, publisher.clone()),
            Triple::new(publisher.clone(), rdf::TYPE, FOAF_AGENT.into_owned()),
            Triple::new(publisher, FOAF_NAME, lit(&about.publisher_name)),
            Triple::new(cat.clone(), DCAT_SERVICE, service.clone()),
            Triple::new(service.clone(), rdf::TYPE, DCAT_DATA_SERVICE.into_owned()),
            Triple::new(service.clone(), DCT_TITLE, lit(&about.title)),
            Triple::new(service, DCAT_ENDPOINT_URL, endpoint.clone()),
        ];
        if let Term::NamedNode(url) = &endpoint {
            out.push(Triple::new(url.clone(), rdf::TYPE, RDFS_RESOURCE));
        }
        for id in self
            .ids
            .read()
            .map_err(|_| CatalogError::Store("index lock poisoned".into()))?
            .keys()
        {
            out.push(Triple::new(
                cat.clone(),
                DCAT_DATASET_P,
                NamedNode::new_unchecked(id.clone()),
            ));
        }
        let has_url: HashSet<&NamedOrBlankNode> = existing
            .iter()
            .filter(|t| t.predicate == DCAT_ACCESS_URL)
            .map(|t| &t.subject)
            .collect();
        for t in existing.iter().filter(|t| {
            t.predicate == rdf::TYPE && t.object == Term::from(DCAT_DISTRIBUTION.into_owned())
        }) {
            if !has_url.contains(&t.subject) {
                out.push(Triple::new(
                    t.subject.clone(),
                    DCAT_ACCESS_URL,
                    endpoint.clone(),
                ));
            }
        }
        Ok(out)
    }

    /// The catalogue graph's triples count (imports append there).
    pub fn catalog_graph_len(&self) -> Result<usize, CatalogError> {
        let g = NamedNode::new_unchecked(CATALOG_GRAPH);
        Ok(self
            .store
            .quads_for_pattern(None, None, None, Some(GraphNameRef::NamedNode(g.as_ref())))
            .count())
    }
}

/// What a DCAT-AP export says about the catalogue itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogAbout {
    /// Ids and endpoint of the connector.
    pub service: ServiceInfo,
    /// `dct:title` of the catalogue (DCAT-AP mandatory).
    pub title: String,
    /// `dct:description` of the catalogue (DCAT-AP mandatory).
    pub description: String,
    /// `foaf:name` of the publisher (the participant).
    pub publisher_name: String,
}
