//! [`CatalogStore`]: the oxigraph-backed catalogue.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use hashlink::LruCache;

use oxigraph::io::{RdfFormat, RdfParseError, RdfParser};
use oxigraph::model::vocab::rdf;
use oxigraph::model::{
    GraphName, GraphNameRef, NamedNode, NamedNodeRef, NamedOrBlankNode, Quad, Term,
};
use oxigraph::store::{LoaderError, Store};
use serde_json::Value;

use crate::dsp;
use crate::error::CatalogError;
use crate::graph::{self, dataset_node};
use crate::model::{CatalogPage, Dataset, Page, ServiceInfo};
use crate::vocab::*;

/// The catalogue: an in-memory oxigraph [`Store`] holding one named graph per dataset
/// (named by the dataset IRI), plus catalogue-level and peer graphs under `urn:sluis:graph:`.
///
/// Cloning is cheap and clones share the same graph.
#[derive(Clone)]
pub struct CatalogStore {
    pub(crate) store: Store,
    /// Ids of the local datasets, sorted (the order of DSP catalogue pages), each with whether
    /// it is offerable and a lazily filled [`Summary`]. Derived from the graph (rebuilt on
    /// load) and replaced under its write lock together with each commit.
    pub(crate) ids: Arc<RwLock<BTreeMap<String, Entry>>>,
    /// SPARQL evaluations still running (see `sparql::MAX_RUNNING_QUERIES`).
    pub(crate) running_queries: Arc<std::sync::atomic::AtomicUsize>,
    /// Tells offers with catalogue-scope constraints from offers everyone may see.
    pub(crate) scope_marker: Arc<RwLock<Option<ScopeMarker>>>,
    /// The RDF property every marked offer carries (see [`CatalogStore::set_scope_property`]).
    pub(crate) scope_property: Arc<RwLock<Option<NamedNode>>>,
    /// Recently served datasets, each with the [`Entry::version`] it was read at.
    hot: Arc<Mutex<HotDatasets>>,
}

/// Recently served datasets by id, each with the [`Entry::version`] it was read at.
type HotDatasets = LruCache<String, (u64, Arc<Dataset>)>;

/// Datasets kept parsed for serving (see [`CatalogStore::served_dataset`]): the first pages
/// of the catalogue; about 8 MB (resident memory at 100,000 datasets went from 266 to 274 MB).
/// On the disk store a dataset read from the graph costs tens of RocksDB lookups, and a page
/// of 50 took 18 ms.
const HOT_DATASETS: usize = 1024;

/// Source of [`Entry::version`]s.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

/// Returns `true` for an offer that carries catalogue-scope constraints, so that the
/// caller's [`crate::OfferVisibility`] must decide; `false` for an offer everyone may see.
pub type ScopeMarker = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

impl std::fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogStore")
            .field("datasets", &self.ids.read().map(|i| i.len()).unwrap_or(0))
            .finish()
    }
}

/// An entry of the id index.
pub(crate) struct Entry {
    /// Has an offer and a distribution (DSP lists only such datasets).
    pub offerable: bool,
    /// What filters and visibility need, read from the graph on first use. A write replaces
    /// the whole entry, so a summary never outlives the graph state it was read from.
    pub summary: OnceLock<Arc<Summary>>,
    /// Unique to this entry: a dataset cached at another version is stale.
    pub version: u64,
}

impl Entry {
    pub(crate) fn new(offerable: bool) -> Self {
        Entry {
            offerable,
            summary: OnceLock::new(),
            version: NEXT_VERSION.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The parts of a dataset that catalogue filters and visibility predicates look at.
#[derive(Debug)]
pub(crate) struct Summary {
    pub id: String,
    /// Some offer needs no visibility check (see [`ScopeMarker`]).
    pub open: bool,
    /// The offers that do, as compact JSON text: a tenth of the memory of `Value`s.
    pub restricted: Vec<Box<str>>,
    pub has_distribution: bool,
    pub title: String,
    pub description: String,
    pub keywords: Vec<String>,
    pub themes: Vec<String>,
    pub formats: Vec<String>,
}

impl Summary {
    /// Lower-cases the text fields once, for case-insensitive filters.
    pub(crate) fn of(ds: &Dataset, marker: Option<&ScopeMarker>) -> Self {
        let (restricted, open): (Vec<&Value>, Vec<&Value>) =
            ds.offers.iter().partition(|o| marker.is_none_or(|m| m(o)));
        Summary {
            id: ds.id.clone(),
            open: !open.is_empty(),
            restricted: restricted
                .iter()
                .map(|o| o.to_string().into_boxed_str())
                .collect(),
            has_distribution: !ds.distributions.is_empty(),
            title: ds.title.to_lowercase(),
            description: ds.description.as_deref().unwrap_or("").to_lowercase(),
            keywords: ds.keywords.iter().map(|k| k.to_lowercase()).collect(),
            themes: ds.themes.clone(),
            formats: ds.distributions.iter().map(|d| d.format.clone()).collect(),
        }
    }
}

/// Whether a named graph holds a local dataset (its name is the dataset IRI).
pub(crate) fn is_dataset_graph(g: &str) -> bool {
    !g.starts_with(RESERVED_PREFIX)
}

fn lock_err<T>(_: T) -> CatalogError {
    CatalogError::Store("catalogue index lock poisoned by an earlier panic".into())
}

/// Maps an oxigraph parse/load error to [`CatalogError::Syntax`] with a 1-based line and column.
pub(crate) fn loader_error(e: LoaderError) -> CatalogError {
    match e {
        LoaderError::Parsing(RdfParseError::Syntax(s)) => {
            let location = s.location().map(|r| (r.start.line + 1, r.start.column + 1));
            let text = s.to_string();
            // The parser's text repeats the location ("Parser error at line …: msg"); keep msg.
            let message = match (location, text.split_once(": ")) {
                (Some(_), Some((head, msg))) if head.starts_with("Parser error at") => {
                    msg.to_string()
                }
                _ => text,
            };
            CatalogError::Syntax { location, message }
        }
        LoaderError::Parsing(other) => CatalogError::Syntax {
            location: None,
            message: other.to_string(),
        },
        other => CatalogError::Store(other.to_string()),
    }
}

impl CatalogStore {
    /// An empty in-memory catalogue.
    pub fn new() -> Result<Self, CatalogError> {
        Ok(Self::from_store(Store::new()?))
    }

    /// Opens (creating if needed) a disk-backed catalogue in the RocksDB directory `path`.
    /// Nothing is loaded at start (only the id index is rebuilt) and every write is durable
    /// once its transaction commits. Only one process may open `path` at a time.
    #[cfg(feature = "rocksdb")]
    pub fn open(path: &std::path::Path) -> Result<Self, CatalogError> {
        let cat = Self::from_store(Store::open(path)?);
        cat.rebuild_index()?;
        Ok(cat)
    }

    /// Copies every quad of `other` into this catalogue in one transaction (moving a
    /// catalogue between back ends).
    pub fn extend_from(&self, other: &CatalogStore) -> Result<(), CatalogError> {
        let quads = other.store.iter().collect::<Result<Vec<_>, _>>()?;
        self.store.extend(quads)?;
        self.rebuild_index()
    }

    fn from_store(store: Store) -> Self {
        CatalogStore {
            store,
            ids: Arc::new(RwLock::new(BTreeMap::new())),
            running_queries: Arc::default(),
            scope_marker: Arc::default(),
            scope_property: Arc::default(),
            hot: Arc::new(Mutex::new(LruCache::new(HOT_DATASETS))),
        }
    }

    /// Installs the [`ScopeMarker`]: visibility predicates are then asked only about offers
    /// it marks, and other offers are shown to everyone. Drops the cached summaries.
    pub fn set_scope_marker(&self, marker: ScopeMarker) -> Result<(), CatalogError> {
        let mut ids = self.ids.write().map_err(lock_err)?;
        *self.scope_marker.write().map_err(lock_err)? = Some(marker);
        for entry in ids.values_mut() {
            *entry = Entry::new(entry.offerable);
        }
        Ok(())
    }

    /// Declares that every offer the [`ScopeMarker`] marks has the property `iri` (e.g.
    /// `odrl:assignee`) somewhere in its dataset's graph. Unfiltered catalogue pages then look
    /// up the datasets with that property in the graph's index and check only those against
    /// the caller, instead of every dataset: the first page costs about what it costs for a
    /// caller that sees everything.
    pub fn set_scope_property(&self, iri: &str) -> Result<(), CatalogError> {
        let node = crate::odrl::iri(iri, "scope property")?;
        *self.scope_property.write().map_err(lock_err)? = Some(node);
        Ok(())
    }

    pub(crate) fn scope_property(&self) -> Result<Option<NamedNode>, CatalogError> {
        Ok(self.scope_property.read().map_err(lock_err)?.clone())
    }

    pub(crate) fn scope_marker(&self) -> Result<Option<ScopeMarker>, CatalogError> {
        Ok(self.scope_marker.read().map_err(lock_err)?.clone())
    }

    /// The underlying oxigraph store (read it; write only through this type).
    pub fn oxigraph(&self) -> &Store {
        &self.store
    }

    /// Inserts `ds`, or replaces the dataset with the same id, in one transaction.
    pub fn put_dataset(&self, ds: &Dataset) -> Result<(), CatalogError> {
        let built = graph::dataset_to_quads(ds)?;
        let mut ids = self.ids.write().map_err(lock_err)?;
        let graph = GraphName::NamedNode(built.node.clone());
        let mut tx = self.store.start_transaction()?;
        for offer in &built.offer_ids {
            if let Some(other) = offer_owner(&tx_quads(&tx, offer)?, &graph) {
                return Err(CatalogError::OfferIdInUse {
                    offer: offer.as_str().to_string(),
                    dataset: other,
                });
            }
        }
        tx.clear_graph(built.node.as_ref())?;
        tx.insert_named_graph(built.node.as_ref());
        tx.extend(built.quads.iter());
        tx.commit()?;
        ids.insert(
            ds.id.clone(),
            Entry::new(!ds.offers.is_empty() && !ds.distributions.is_empty()),
        );
        Ok(())
    }

    /// Removes a dataset with its distributions and offers. `false` when it did not exist.
    pub fn remove_dataset(&self, id: &str) -> Result<bool, CatalogError> {
        let node = dataset_node(id)?;
        let mut ids = self.ids.write().map_err(lock_err)?;
        let mut tx = self.store.start_transaction()?;
        let g = GraphNameRef::NamedNode(node.as_ref());
        if tx
            .quads_for_pattern(None, None, None, Some(g))
            .next()
            .is_none()
        {
            return Ok(false);
        }
        tx.clear_graph(node.as_ref())?;
        tx.remove_named_graph(node.as_ref())?;
        tx.commit()?;
        ids.remove(id);
        Ok(true)
    }

    /// Reads a dataset back from its graph.
    pub fn dataset(&self, id: &str) -> Result<Option<Dataset>, CatalogError> {
        let node = dataset_node(id)?;
        self.read_dataset(&node)
    }

    /// The local dataset `id` for serving: from the cache of recently served datasets when
    /// its entry has not changed since, else read from the graph and cached.
    ///
    /// Every write replaces the dataset's [`Entry`] under the index's write lock after it
    /// commits, and the version is read before the graph: a cached dataset is therefore never
    /// older than the entry it is served for.
    pub(crate) fn served_dataset(
        &self,
        node: &NamedNode,
    ) -> Result<Option<Arc<Dataset>>, CatalogError> {
        let id = node.as_str();
        let Some(version) = self
            .ids
            .read()
            .map_err(lock_err)?
            .get(id)
            .map(|e| e.version)
        else {
            return Ok(None);
        };
        if let Some((v, ds)) = self.hot.lock().map_err(lock_err)?.get(id)
            && *v == version
        {
            return Ok(Some(ds.clone()));
        }
        let Some(ds) = self.read_dataset(node)? else {
            return Ok(None);
        };
        let ds = Arc::new(ds);
        self.hot
            .lock()
            .map_err(lock_err)?
            .insert(id.to_string(), (version, ds.clone()));
        Ok(Some(ds))
    }

    pub(crate) fn read_dataset(&self, node: &NamedNode) -> Result<Option<Dataset>, CatalogError> {
        let quads = self
            .store
            .quads_for_pattern(
                None,
                None,
                None,
                Some(GraphNameRef::NamedNode(node.as_ref())),
            )
            .collect::<Result<Vec<Quad>, _>>()?;
        if quads.is_empty() {
            return Ok(None);
        }
        graph::dataset_from_quads(node, &quads).map(Some)
    }

    /// Every local dataset, in id order.
    pub fn datasets(&self) -> Result<Vec<Dataset>, CatalogError> {
        let ids = self.dataset_ids()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(ds) = self.read_dataset(&NamedNode::new_unchecked(id))? {
                out.push(ds);
            }
        }
        Ok(out)
    }

    /// The ids of the local datasets, sorted.
    pub fn dataset_ids(&self) -> Result<Vec<String>, CatalogError> {
        Ok(self.ids.read().map_err(lock_err)?.keys().cloned().collect())
    }

    /// Number of local datasets.
    pub fn len(&self) -> Result<usize, CatalogError> {
        Ok(self.ids.read().map_err(lock_err)?.len())
    }

    /// Whether the catalogue holds no local dataset.
    pub fn is_empty(&self) -> Result<bool, CatalogError> {
        Ok(self.len()? == 0)
    }

    /// The local dataset carrying the offer `offer_id`, and the offer's compact JSON. The
    /// dataset comes from the cache of recently served datasets (see `served_dataset`), so
    /// that a negotiation's repeated lookups of its offer read the graph once.
    pub fn find_offer(
        &self,
        offer_id: &str,
    ) -> Result<Option<(Arc<Dataset>, Value)>, CatalogError> {
        let offer = crate::odrl::iri(offer_id, "offer")?;
        for q in self.store.quads_for_pattern(
            None,
            Some(ODRL_HAS_POLICY),
            Some(offer.as_ref().into()),
            None,
        ) {
            let q = q?;
            let (GraphName::NamedNode(g), NamedOrBlankNode::NamedNode(s)) =
                (&q.graph_name, &q.subject)
            else {
                continue;
            };
            if g != s || !is_dataset_graph(g.as_str()) {
                continue;
            }
            let Some(ds) = self.served_dataset(s)? else {
                continue;
            };
            let json = ds.offers.iter().find(|o| o["@id"] == offer_id).cloned();
            if let Some(json) = json {
                return Ok(Some((ds, json)));
            }
        }
        Ok(None)
    }

    /// One page of the DSP 2025-1 `Catalog`, everyone seeing every offer.
    ///
    /// The protocol endpoint should call [`CatalogStore::dsp_catalog_for`] with the caller's
    /// visibility predicate instead.
    pub fn dsp_catalog(&self, svc: &ServiceInfo, page: Page) -> Result<CatalogPage, CatalogError> {
        self.dsp_catalog_for(
            svc,
            page,
            &crate::CatalogFilter::default(),
            &crate::visible_to_all,
        )
    }

    /// The DSP 2025-1 `Dataset` JSON of one dataset, everyone seeing every offer.
    /// `None` when unknown or not offerable (no offer or no distribution).
    pub fn dsp_dataset(&self, id: &str, svc: &ServiceInfo) -> Result<Option<Value>, CatalogError> {
        self.dsp_dataset_for(id, svc, &crate::visible_to_all)
    }

    /// [`CatalogStore::dsp_dataset`] showing only the offers `visible` accepts; `None` when none is.
    pub fn dsp_dataset_for(
        &self,
        id: &str,
        svc: &ServiceInfo,
        visible: &dyn crate::OfferVisibility,
    ) -> Result<Option<Value>, CatalogError> {
        let Some(ds) = self.served_dataset(&dataset_node(id)?)? else {
            return Ok(None);
        };
        let offers = visible_offers(&ds, visible, self.scope_marker()?.as_ref());
        Ok(dsp::dataset_json(&ds, offers, svc, true))
    }

    /// All local datasets (without internal data sources) as Turtle, for partners.
    pub fn export_turtle(&self) -> Result<String, CatalogError> {
        let bytes = self.export(crate::RdfSyntax::Turtle, None)?;
        String::from_utf8(bytes).map_err(|e| CatalogError::Store(e.to_string()))
    }

    /// Quads of local dataset graphs and the catalogue graph, without Sluis-internal triples.
    pub(crate) fn public_quads(&self) -> Result<Vec<Quad>, CatalogError> {
        let mut out = Vec::new();
        for q in self.store.iter() {
            let q = q?;
            let keep = match &q.graph_name {
                GraphName::NamedNode(g) => {
                    is_dataset_graph(g.as_str()) || g.as_str() == CATALOG_GRAPH
                }
                _ => false,
            };
            if keep && !q.predicate.as_str().starts_with(SLUIS) {
                out.push(q);
            }
        }
        Ok(out)
    }

    /// The whole store as N-Quads (internal triples and peer graphs included), for the
    /// connector's durable log. [`CatalogStore::load`] reads it back.
    pub fn dump(&self) -> Result<Vec<u8>, CatalogError> {
        // oxigraph iterates one MVCC snapshot: the dump is consistent without blocking readers
        // or writers (the id index is rebuilt by `load`).
        self.store
            .dump_to_writer(RdfFormat::NQuads, Vec::new())
            .map_err(|e| CatalogError::Store(e.to_string()))
    }

    /// Rebuilds a catalogue from a [`CatalogStore::dump`]. All or nothing: on an error the
    /// half-built store is dropped.
    ///
    /// Parsing and inserting overlap: one thread parses N-Quads into chunks while this one
    /// inserts them (each step takes about half of the time).
    pub fn load(bytes: &[u8]) -> Result<Self, CatalogError> {
        const CHUNK: usize = 16 * 1024;
        let store = Store::new()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Quad>, CatalogError>>(8);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut chunk = Vec::with_capacity(CHUNK);
                for q in RdfParser::from_format(RdfFormat::NQuads).for_slice(bytes) {
                    match q {
                        Ok(q) => chunk.push(q),
                        Err(e) => {
                            let _ = tx.send(Err(loader_error(LoaderError::Parsing(e.into()))));
                            return;
                        }
                    }
                    if chunk.len() == CHUNK && tx.send(Ok(std::mem::take(&mut chunk))).is_err() {
                        return; // the inserter gave up
                    }
                }
                let _ = tx.send(Ok(chunk));
            });
            for chunk in rx {
                store.extend(chunk?)?;
            }
            Ok::<(), CatalogError>(())
        })?;
        let cat = Self::from_store(store);
        cat.rebuild_index()?;
        Ok(cat)
    }

    /// Recomputes the id index from the graph names.
    pub(crate) fn rebuild_index(&self) -> Result<(), CatalogError> {
        let mut ids = self.ids.write().map_err(lock_err)?;
        ids.clear();
        let policies = self.graphs_with(ODRL_HAS_POLICY)?;
        let distributions = self.graphs_with(DCAT_DISTRIBUTION_P)?;
        // Quads, not `named_graphs()`: the bulk loader does not register graph names.
        let typed =
            self.store
                .quads_for_pattern(None, Some(rdf::TYPE), Some(DCAT_DATASET.into()), None);
        for q in typed {
            let q = q?;
            if let (GraphName::NamedNode(g), NamedOrBlankNode::NamedNode(s)) =
                (&q.graph_name, &q.subject)
                && g == s
                && is_dataset_graph(g.as_str())
            {
                let offerable = policies.contains(g.as_str()) && distributions.contains(g.as_str());
                ids.insert(g.as_str().to_string(), Entry::new(offerable));
            }
        }
        Ok(())
    }

    /// Graphs whose own node has property `p`: one scan of the predicate's index instead of
    /// a lookup per dataset (which costs seconds at 100,000 datasets on the disk store).
    fn graphs_with(&self, p: NamedNodeRef<'_>) -> Result<HashSet<String>, CatalogError> {
        let mut out = HashSet::new();
        for q in self.store.quads_for_pattern(None, Some(p), None, None) {
            let q = q?;
            if let (GraphName::NamedNode(g), NamedOrBlankNode::NamedNode(s)) =
                (&q.graph_name, &q.subject)
                && g == s
            {
                out.insert(g.as_str().to_string());
            }
        }
        Ok(out)
    }
}

/// Quads of the transaction's view that point at `offer` through `odrl:hasPolicy`.
fn tx_quads(
    tx: &oxigraph::store::Transaction<'_>,
    offer: &NamedNode,
) -> Result<Vec<Quad>, CatalogError> {
    let object: Term = offer.clone().into();
    tx.quads_for_pattern(None, Some(ODRL_HAS_POLICY), Some(object.as_ref()), None)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CatalogError::from)
}

/// The local dataset other than `graph` that already carries the offer, if any.
fn offer_owner(quads: &[Quad], graph: &GraphName) -> Option<String> {
    quads
        .iter()
        .find_map(|q| match (&q.graph_name, &q.subject) {
            (GraphName::NamedNode(g), NamedOrBlankNode::NamedNode(s))
                if g == s && is_dataset_graph(g.as_str()) && &q.graph_name != graph =>
            {
                Some(s.as_str().to_string())
            }
            _ => None,
        })
}

/// The offers of `ds` that the caller may see: those without catalogue-scope constraints
/// (per the marker) and those the caller's predicate accepts.
pub(crate) fn visible_offers(
    ds: &Dataset,
    visible: &dyn crate::OfferVisibility,
    marker: Option<&ScopeMarker>,
) -> Vec<Value> {
    ds.offers
        .iter()
        .filter(|o| {
            visible.sees_everything() || marker.is_some_and(|m| !m(o)) || visible.is_visible(o)
        })
        .cloned()
        .collect()
}
