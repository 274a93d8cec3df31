//! The federated catalogue on the consumer side: each peer's fetched DSP catalogue in its own
//! named graph, with the time it was fetched, and a simple search over all graphs.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use oxigraph::model::vocab::{rdf, xsd};
use oxigraph::model::{
    BlankNode, GraphName, GraphNameRef, Literal, NamedNode, NamedOrBlankNode, Quad, Term,
};
use oxigraph::store::Transaction;
use serde::Serialize;
use serde_json::Value;

use crate::error::{CatalogError, truncate};
use crate::graph::{self, best_literal, format_node};
use crate::model::Dataset;
use crate::odrl::{self, iri};
use crate::store::{CatalogStore, is_dataset_graph};
use crate::vocab::*;

/// Deepest nesting of `catalog` inside a peer catalogue.
const MAX_NESTING: usize = 4;
/// Most datasets kept from one peer catalogue.
const MAX_PEER_DATASETS: usize = 200_000;
/// Most skipped-item reasons reported.
const MAX_REASONS: usize = 20;

/// What [`CatalogStore::store_peer_catalog`] kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerStoreReport {
    /// Datasets stored.
    pub datasets: usize,
    /// Datasets or offers left out because they were malformed.
    pub skipped: usize,
    /// Why (the first few).
    pub reasons: Vec<String>,
}

/// A stored peer catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerCatalogInfo {
    /// The peer's participant id.
    pub peer_id: String,
    /// The named graph holding its catalogue.
    pub graph: String,
    /// When it was fetched (RFC 3339).
    pub fetched_at: String,
    /// Number of datasets in it.
    pub datasets: usize,
}

/// One search result (camelCase in JSON, as the management API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    /// The dataset id.
    pub dataset_id: String,
    /// Its title, if any.
    pub title: Option<String>,
    /// The peer offering it; `None` for a local dataset.
    pub peer_id: Option<String>,
    /// When the peer catalogue was fetched; `None` for a local dataset.
    pub fetched_at: Option<String>,
}

/// The named graph of a peer: `urn:sluis:graph:peer:` + the percent-encoded participant id.
pub fn peer_graph_name(peer_id: &str) -> String {
    let mut name = String::from(PEER_GRAPH_PREFIX);
    for b in peer_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name
}

/// Converts a peer's DSP catalogue JSON into quads of `graph`.
struct PeerWriter {
    graph: GraphName,
    quads: Vec<Quad>,
    report: PeerStoreReport,
}

impl PeerWriter {
    fn add(&mut self, s: impl Into<NamedOrBlankNode>, p: impl Into<NamedNode>, o: impl Into<Term>) {
        self.quads.push(Quad::new(s, p, o, self.graph.clone()));
    }

    fn skip(&mut self, reason: String) {
        self.report.skipped += 1;
        if self.report.reasons.len() < MAX_REASONS {
            self.report.reasons.push(reason);
        }
    }

    fn catalog(&mut self, v: &Value, depth: usize) -> Result<(), CatalogError> {
        if depth > MAX_NESTING {
            return Err(CatalogError::InvalidPeerCatalog(format!(
                "catalogs nest deeper than {MAX_NESTING}"
            )));
        }
        let obj = v.as_object().ok_or_else(|| {
            CatalogError::InvalidPeerCatalog("a catalog must be a JSON object".into())
        })?;
        if obj.get("@type").and_then(Value::as_str) != Some("Catalog") {
            return Err(CatalogError::InvalidPeerCatalog(
                "@type must be \"Catalog\"".into(),
            ));
        }
        let cat: NamedOrBlankNode = match obj.get("@id").and_then(Value::as_str) {
            Some(id) => iri(id, "catalog")
                .map_err(|e| CatalogError::InvalidPeerCatalog(e.to_string()))?
                .into(),
            None => BlankNode::default().into(),
        };
        self.add(cat.clone(), rdf::TYPE, DCAT_CATALOG);
        if let Some(p) = obj.get("participantId").and_then(Value::as_str)
            && let Ok(p) = iri(p, "participant")
        {
            self.add(cat.clone(), DSPACE_PARTICIPANT_ID, p);
        }
        for svc in items(obj.get("service")) {
            self.service(&cat, svc);
        }
        for ds in items(obj.get("dataset")) {
            if self.report.datasets >= MAX_PEER_DATASETS {
                return Err(CatalogError::InvalidPeerCatalog(format!(
                    "more than {MAX_PEER_DATASETS} datasets"
                )));
            }
            self.dataset(&cat, ds);
        }
        for nested in items(obj.get("catalog")) {
            self.catalog(nested, depth + 1)?;
        }
        Ok(())
    }

    fn service(&mut self, cat: &NamedOrBlankNode, v: &Value) {
        let (Some(id), Some(url)) = (
            v.get("@id")
                .and_then(Value::as_str)
                .and_then(|i| iri(i, "service").ok()),
            v.get("endpointURL").and_then(Value::as_str),
        ) else {
            self.skip("a service without an IRI @id or endpointURL".into());
            return;
        };
        self.add(cat.clone(), DCAT_SERVICE, id.clone());
        self.add(id.clone(), rdf::TYPE, DCAT_DATA_SERVICE);
        self.add(
            id,
            DCAT_ENDPOINT_URL,
            Literal::new_simple_literal(truncate(url, 2048)),
        );
    }

    fn dataset(&mut self, cat: &NamedOrBlankNode, v: &Value) {
        let Some(id) = v
            .get("@id")
            .and_then(Value::as_str)
            .and_then(|i| iri(i, "dataset").ok())
        else {
            self.skip("a dataset without an IRI @id".into());
            return;
        };
        self.report.datasets += 1;
        self.add(cat.clone(), DCAT_DATASET_P, id.clone());
        self.add(id.clone(), rdf::TYPE, DCAT_DATASET);
        for (key, prop) in [
            ("dct:title", DCT_TITLE),
            ("dct:description", DCT_DESCRIPTION),
            ("dcat:keyword", DCAT_KEYWORD),
        ] {
            for text in items(v.get(key)) {
                if let Some(lit) = literal(text) {
                    self.add(id.clone(), prop, lit);
                }
            }
        }
        for t in items(v.get("dcat:theme")) {
            if let Some(theme) = t
                .get("@id")
                .and_then(Value::as_str)
                .and_then(|i| iri(i, "theme").ok())
            {
                self.add(id.clone(), DCAT_THEME, theme);
            }
        }
        for offer in items(v.get("hasPolicy")) {
            let mut quads = Vec::new();
            match odrl::offer_to_quads(offer, &self.graph, &mut quads) {
                Ok(offer_id) => {
                    self.add(id.clone(), ODRL_HAS_POLICY, offer_id);
                    self.quads.extend(quads);
                }
                Err(e) => self.skip(format!("an offer of {}: {e}", id.as_str())),
            }
        }
        for d in items(v.get("distribution")) {
            let node: NamedOrBlankNode = match d
                .get("@id")
                .and_then(Value::as_str)
                .and_then(|i| iri(i, "distribution").ok())
            {
                Some(n) => n.into(),
                None => BlankNode::default().into(),
            };
            let Some(format) = d
                .get("format")
                .and_then(Value::as_str)
                .and_then(|f| format_node(f).ok())
            else {
                self.skip(format!(
                    "a distribution of {} without a valid format",
                    id.as_str()
                ));
                continue;
            };
            self.add(id.clone(), DCAT_DISTRIBUTION_P, node.clone());
            self.add(node.clone(), rdf::TYPE, DCAT_DISTRIBUTION);
            self.add(node.clone(), DCT_FORMAT, format);
            let svc = match d.get("accessService") {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(Value::Object(o)) => o.get("@id").and_then(Value::as_str),
                _ => None,
            };
            if let Some(svc) = svc.and_then(|s| iri(s, "access service").ok()) {
                self.add(node, DCAT_ACCESS_SERVICE, svc);
            }
        }
    }
}

/// An array's items, or a single value as one item.
fn items(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
        None => vec![],
    }
}

/// A string, or a JSON-LD value object with `@value` (and `@language`).
fn literal(v: &Value) -> Option<Literal> {
    match v {
        Value::String(s) => Some(Literal::new_simple_literal(truncate(s, 64 * 1024))),
        Value::Object(o) => {
            let value = truncate(o.get("@value")?.as_str()?, 64 * 1024);
            match o.get("@language").and_then(Value::as_str) {
                Some(lang) => Literal::new_language_tagged_literal(value, lang).ok(),
                None => Some(Literal::new_simple_literal(value)),
            }
        }
        _ => None,
    }
}

/// Clears a peer graph and its bookkeeping in `tx`; `false` when no catalogue was stored.
fn forget_peer(tx: &mut Transaction<'_>, graph: &NamedNode) -> Result<bool, CatalogError> {
    let peers = NamedNode::new_unchecked(PEERS_GRAPH);
    let old: Vec<Quad> = tx
        .quads_for_pattern(
            Some(graph.as_ref().into()),
            None,
            None,
            Some(GraphNameRef::NamedNode(peers.as_ref())),
        )
        .collect::<Result<_, _>>()?;
    for q in &old {
        tx.remove(q);
    }
    tx.clear_graph(graph.as_ref())?;
    Ok(!old.is_empty())
}

impl CatalogStore {
    /// Stores (replacing) the DSP catalogue fetched from `peer_id` at `fetched_at` in the
    /// peer's own named graph. Malformed datasets and offers are left out and counted; a body
    /// that is not a DSP `Catalog` stores nothing.
    pub fn store_peer_catalog(
        &self,
        peer_id: &str,
        fetched_at: DateTime<Utc>,
        catalog: &Value,
    ) -> Result<PeerStoreReport, CatalogError> {
        let peer = iri(peer_id, "peer")?;
        let graph = NamedNode::new_unchecked(peer_graph_name(peer_id));
        let mut w = PeerWriter {
            graph: GraphName::NamedNode(graph.clone()),
            quads: Vec::new(),
            report: PeerStoreReport::default(),
        };
        w.catalog(catalog, 0)?;
        let peers = GraphName::NamedNode(NamedNode::new_unchecked(PEERS_GRAPH));
        let when = Literal::new_typed_literal(
            fetched_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            xsd::DATE_TIME,
        );
        let meta = [
            Quad::new(graph.clone(), rdf::TYPE, SLUIS_PEER_GRAPH, peers.clone()),
            Quad::new(graph.clone(), SLUIS_PEER, peer, peers.clone()),
            Quad::new(graph.clone(), SLUIS_FETCHED_AT, when, peers.clone()),
        ];
        let mut tx = self.store.start_transaction()?;
        forget_peer(&mut tx, &graph)?;
        tx.insert_named_graph(graph.as_ref());
        tx.extend(w.quads.iter());
        tx.extend(meta.iter());
        tx.commit()?;
        Ok(w.report)
    }

    /// Forgets a peer's catalogue. `false` when none was stored.
    pub fn remove_peer_catalog(&self, peer_id: &str) -> Result<bool, CatalogError> {
        iri(peer_id, "peer")?;
        let graph = NamedNode::new_unchecked(peer_graph_name(peer_id));
        let mut tx = self.store.start_transaction()?;
        if !forget_peer(&mut tx, &graph)? {
            return Ok(false);
        }
        tx.remove_named_graph(graph.as_ref())?;
        tx.commit()?;
        Ok(true)
    }

    /// Every stored peer catalogue, by peer id.
    pub fn peer_catalogs(&self) -> Result<Vec<PeerCatalogInfo>, CatalogError> {
        let mut out = Vec::new();
        for (graph, (peer_id, fetched_at)) in self.peer_graphs()? {
            let g = NamedNode::new_unchecked(graph.clone());
            let datasets = self
                .store
                .quads_for_pattern(
                    None,
                    Some(rdf::TYPE),
                    Some(DCAT_DATASET.into()),
                    Some(GraphNameRef::NamedNode(g.as_ref())),
                )
                .count();
            out.push(PeerCatalogInfo {
                peer_id,
                graph,
                fetched_at,
                datasets,
            });
        }
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Ok(out)
    }

    /// Peer graph name → (peer id, fetched at).
    fn peer_graphs(&self) -> Result<BTreeMap<String, (String, String)>, CatalogError> {
        let peers = NamedNode::new_unchecked(PEERS_GRAPH);
        let g = Some(GraphNameRef::NamedNode(peers.as_ref()));
        let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
        for q in self.store.quads_for_pattern(None, None, None, g) {
            let q = q?;
            let NamedOrBlankNode::NamedNode(s) = &q.subject else {
                continue;
            };
            let entry = out.entry(s.as_str().to_string()).or_default();
            match (&q.predicate, &q.object) {
                (p, Term::NamedNode(o)) if *p == SLUIS_PEER => entry.0 = o.as_str().to_string(),
                (p, Term::Literal(l)) if *p == SLUIS_FETCHED_AT => entry.1 = l.value().to_string(),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The datasets of a peer's stored catalogue, read back from its graph (offers included).
    pub fn peer_datasets(&self, peer_id: &str) -> Result<Vec<Dataset>, CatalogError> {
        iri(peer_id, "peer")?;
        let graph = NamedNode::new_unchecked(peer_graph_name(peer_id));
        let quads: Vec<Quad> = self
            .store
            .quads_for_pattern(
                None,
                None,
                None,
                Some(GraphNameRef::NamedNode(graph.as_ref())),
            )
            .collect::<Result<_, _>>()?;
        let mut ids: Vec<NamedNode> = quads
            .iter()
            .filter(|q| {
                q.predicate == rdf::TYPE && q.object == Term::from(DCAT_DATASET.into_owned())
            })
            .filter_map(|q| match &q.subject {
                NamedOrBlankNode::NamedNode(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids.iter()
            .map(|id| graph::dataset_from_quads(id, &quads))
            .collect()
    }

    /// Datasets, local and from peers, whose title, description or a keyword contains `text`
    /// (ignoring case). At most `limit` hits (clamped to 1000), local first, then by id.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<SearchHit>, CatalogError> {
        let needle = text.trim().to_lowercase();
        if needle.is_empty() || needle.len() > 1024 {
            return Err(CatalogError::InvalidDataset(
                "search text must be 1 to 1024 bytes".into(),
            ));
        }
        let peers = self.peer_graphs()?;
        let mut found: HashSet<(NamedNode, NamedNode)> = HashSet::new();
        for p in [DCT_TITLE, DCT_DESCRIPTION, DCAT_KEYWORD] {
            for q in self.store.quads_for_pattern(None, Some(p), None, None) {
                let q = q?;
                let (GraphName::NamedNode(g), NamedOrBlankNode::NamedNode(s), Term::Literal(l)) =
                    (&q.graph_name, &q.subject, &q.object)
                else {
                    continue;
                };
                let local = g == s && is_dataset_graph(g.as_str());
                if (local || peers.contains_key(g.as_str()))
                    && l.value().to_lowercase().contains(&needle)
                {
                    found.insert((g.clone(), s.clone()));
                }
            }
        }
        let mut hits: Vec<SearchHit> = Vec::with_capacity(found.len());
        for (g, s) in found {
            let titles: Vec<Term> = self
                .store
                .quads_for_pattern(
                    Some(s.as_ref().into()),
                    Some(DCT_TITLE),
                    None,
                    Some(GraphNameRef::NamedNode(g.as_ref())),
                )
                .map(|q| q.map(|q| q.object))
                .collect::<Result<_, _>>()?;
            let peer = peers.get(g.as_str());
            hits.push(SearchHit {
                dataset_id: s.as_str().to_string(),
                title: best_literal(&titles.iter().collect::<Vec<_>>()),
                peer_id: peer.map(|p| p.0.clone()),
                fetched_at: peer.map(|p| p.1.clone()),
            });
        }
        hits.sort_by(|a, b| (&a.peer_id, &a.dataset_id).cmp(&(&b.peer_id, &b.dataset_id)));
        hits.truncate(limit.clamp(1, 1000));
        Ok(hits)
    }
}
