//! DSP catalogue requests: the filter form, catalogue-scope visibility and pagination.

use std::sync::Arc;

use oxigraph::model::NamedNode;
use serde_json::Value;

use crate::dsp::{self, DSP_CONTEXT};
use crate::error::{CatalogError, truncate};
use crate::model::{CatalogPage, Dataset, Page, ServiceInfo};
use crate::store::{CatalogStore, Summary, visible_offers};

/// Decides whether the caller may see an offer (catalogue-scope constraints).
///
/// Implemented for every `Fn(&Value) -> bool`; the connector builds one per request from the
/// caller's participant id and certificate claims (sluis-policy will supply the evaluator).
pub trait OfferVisibility {
    /// Whether the caller may see `offer` (DSP compact ODRL JSON).
    fn is_visible(&self, offer: &Value) -> bool;
    /// `true` when every offer is visible; lets the catalogue skip reading every dataset.
    fn sees_everything(&self) -> bool {
        false
    }
}

impl<F: Fn(&Value) -> bool> OfferVisibility for F {
    fn is_visible(&self, offer: &Value) -> bool {
        self(offer)
    }
}

/// The visibility of a caller that sees every offer (the operator, or tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct VisibleToAll;

impl OfferVisibility for VisibleToAll {
    fn is_visible(&self, _offer: &Value) -> bool {
        true
    }
    fn sees_everything(&self) -> bool {
        true
    }
}

/// [`VisibleToAll`] as a value.
#[allow(non_upper_case_globals)]
pub const visible_to_all: VisibleToAll = VisibleToAll;

/// Most filter terms in one request.
const MAX_TERMS: usize = 32;

/// One term of the Sluis filter form; every term must match (logical AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterTerm {
    /// `{"id": "<dataset IRI>"}`: exactly that dataset.
    Id(String),
    /// `{"keyword": "energy"}`: a `dcat:keyword` equal to it, ignoring case.
    Keyword(String),
    /// `{"theme": "<IRI>"}`: a `dcat:theme` equal to it.
    Theme(String),
    /// `{"format": "ArrowFlight-PULL"}`: a distribution in that format.
    Format(String),
    /// `{"text": "meter"}`: a substring of title, description or a keyword, ignoring case.
    Text(String),
}

/// The filter of a `CatalogRequestMessage`: a list of [`FilterTerm`]s, all of which must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogFilter {
    /// The terms (empty: every dataset).
    pub terms: Vec<FilterTerm>,
}

impl CatalogFilter {
    /// Parses the `filter` array of a `CatalogRequestMessage`.
    ///
    /// Each item is an object with exactly one key among `id`, `keyword`, `theme`, `format`,
    /// `text`, whose value is a non-empty string. Anything else is
    /// [`CatalogError::UnsupportedFilter`] (the connector answers 400 with a `CatalogError`).
    pub fn parse(filter: &Value) -> Result<Self, CatalogError> {
        let bad = |m: String| CatalogError::UnsupportedFilter(m);
        let items = match filter {
            Value::Null => return Ok(Self::default()),
            Value::Array(items) => items,
            _ => return Err(bad("filter must be an array of filter objects".into())),
        };
        if items.len() > MAX_TERMS {
            return Err(bad(format!(
                "at most {MAX_TERMS} filter terms are accepted"
            )));
        }
        let mut terms = Vec::with_capacity(items.len());
        for item in items {
            let obj = item.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                bad("each filter item is an object with one key: id, keyword, theme, format or text".into())
            })?;
            let (key, value) = obj.iter().next().expect("one key");
            let value = value
                .as_str()
                .filter(|v| !v.is_empty() && v.len() <= 1024)
                .ok_or_else(|| {
                    bad(format!(
                        "filter {:?} needs a non-empty string of at most 1024 bytes",
                        truncate(key, 40)
                    ))
                })?
                .to_string();
            terms.push(match key.as_str() {
                "id" => FilterTerm::Id(value),
                "keyword" => FilterTerm::Keyword(value.to_lowercase()),
                "theme" => FilterTerm::Theme(value),
                "format" => FilterTerm::Format(value),
                "text" => FilterTerm::Text(value.to_lowercase()),
                other => {
                    return Err(bad(format!(
                        "filter key {:?} is not supported (use id, keyword, theme, format or text)",
                        truncate(other, 40)
                    )));
                }
            });
        }
        Ok(CatalogFilter { terms })
    }

    /// Parses a whole `CatalogRequestMessage` body and returns its filter.
    pub fn from_request(body: &Value) -> Result<Self, CatalogError> {
        let bad = |m: &str| CatalogError::UnsupportedFilter(m.to_string());
        if body.get("@type").and_then(Value::as_str) != Some("CatalogRequestMessage") {
            return Err(bad("the body must be a CatalogRequestMessage (@type)"));
        }
        let has_context = body
            .get("@context")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|i| i == DSP_CONTEXT));
        if !has_context {
            return Err(bad(
                "@context must be an array containing the DSP 2025-1 context",
            ));
        }
        Self::parse(body.get("filter").unwrap_or(&Value::Null))
    }

    /// Whether `ds` matches every term.
    pub fn matches(&self, ds: &Dataset) -> bool {
        self.matches_summary(&Summary::of(ds, None))
    }

    pub(crate) fn matches_summary(&self, s: &Summary) -> bool {
        self.terms.iter().all(|t| match t {
            FilterTerm::Id(id) => &s.id == id,
            FilterTerm::Keyword(k) => s.keywords.contains(k),
            FilterTerm::Theme(th) => s.themes.contains(th),
            FilterTerm::Format(f) => s.formats.contains(f),
            FilterTerm::Text(q) => {
                s.title.contains(q.as_str())
                    || s.description.contains(q.as_str())
                    || s.keywords.iter().any(|w| w.contains(q.as_str()))
            }
        })
    }
}

impl CatalogStore {
    /// One page of the DSP 2025-1 `Catalog` as seen by a caller: datasets matching `filter`,
    /// each with only the offers `visible` accepts; datasets left without an offer are hidden.
    ///
    /// Pages follow dataset id order. `total` counts the datasets this caller sees. Cost: with
    /// a caller that [`OfferVisibility::sees_everything`] and no filter, only the page's
    /// datasets are read; otherwise every dataset is read to count `total`.
    pub fn dsp_catalog_for(
        &self,
        svc: &ServiceInfo,
        page: Page,
        filter: &CatalogFilter,
        visible: &dyn OfferVisibility,
    ) -> Result<CatalogPage, CatalogError> {
        let limit = page.limit.clamp(1, Page::MAX_LIMIT);
        let page = Page {
            offset: page.offset,
            limit,
        };
        let scope_property = self.scope_property()?;
        let (total, items) = match (filter.terms.is_empty(), scope_property) {
            (true, _) if visible.sees_everything() => self.fast_page(svc, page, &[], visible)?,
            (true, Some(property)) => {
                let hidden = self.hidden_datasets(&property, visible)?;
                self.fast_page(svc, page, &hidden, visible)?
            }
            _ => self.scanned_page(svc, page, filter, visible)?,
        };
        let next = (page.offset + limit < total).then_some(Page {
            offset: page.offset + limit,
            limit,
        });
        let previous = (page.offset > 0).then(|| Page {
            offset: page.offset.saturating_sub(limit),
            limit,
        });
        Ok(CatalogPage {
            catalog: dsp::catalog_json(svc, items),
            total,
            next,
            previous,
        })
    }

    /// Offerable datasets from the id index but the `hidden` ones (sorted); reads only the
    /// page's graphs.
    fn fast_page(
        &self,
        svc: &ServiceInfo,
        page: Page,
        hidden: &[String],
        visible: &dyn OfferVisibility,
    ) -> Result<(usize, Vec<Value>), CatalogError> {
        let (total, ids) = {
            let index = self
                .ids
                .read()
                .map_err(|_| CatalogError::Store("index lock poisoned".into()))?;
            let shown = |(id, e): &(&String, &crate::store::Entry)| {
                e.offerable && hidden.binary_search(id).is_err()
            };
            // every hidden dataset is offerable: no need to look each id up to count
            let total = index.values().filter(|e| e.offerable).count() - hidden.len();
            let ids: Vec<String> = index
                .iter()
                .filter(shown)
                .skip(page.offset)
                .take(page.limit)
                .map(|(id, _)| id.clone())
                .collect();
            (total, ids)
        };
        Ok((total, self.render(svc, ids, visible)?))
    }

    /// The offerable datasets whose graph has the scope property and of which the caller
    /// sees no offer, sorted and without duplicates.
    fn hidden_datasets(
        &self,
        property: &NamedNode,
        visible: &dyn OfferVisibility,
    ) -> Result<Vec<String>, CatalogError> {
        let mut scoped = std::collections::BTreeSet::new();
        for q in self
            .store
            .quads_for_pattern(None, Some(property.as_ref()), None, None)
        {
            if let oxigraph::model::GraphName::NamedNode(g) = q?.graph_name
                && crate::store::is_dataset_graph(g.as_str())
            {
                scoped.insert(g.into_string());
            }
        }
        let index = self
            .ids
            .read()
            .map_err(|_| CatalogError::Store("index lock poisoned".into()))?;
        let mut hidden = Vec::new();
        for id in scoped {
            let Some(entry) = index.get(&id).filter(|e| e.offerable) else {
                continue;
            };
            let Some(summary) = self.summary(&id, entry)? else {
                continue;
            };
            if !any_visible(&summary, visible) {
                hidden.push(id);
            }
        }
        Ok(hidden)
    }

    fn render(
        &self,
        svc: &ServiceInfo,
        ids: Vec<String>,
        visible: &dyn OfferVisibility,
    ) -> Result<Vec<Value>, CatalogError> {
        let marker = self.scope_marker()?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(ds) = self.served_dataset(&NamedNode::new_unchecked(id))? else {
                continue;
            };
            let offers = visible_offers(&ds, visible, marker.as_ref());
            if let Some(json) = dsp::dataset_json(&ds, offers, svc, false) {
                items.push(json);
            }
        }
        Ok(items)
    }

    /// Checks every offerable dataset's [`Summary`] (read from the graph once, then cached)
    /// against the filter and visibility; renders the page's datasets fresh from the graph.
    fn scanned_page(
        &self,
        svc: &ServiceInfo,
        page: Page,
        filter: &CatalogFilter,
        visible: &dyn OfferVisibility,
    ) -> Result<(usize, Vec<Value>), CatalogError> {
        let wanted_id = filter.terms.iter().find_map(|t| match t {
            FilterTerm::Id(id) => Some(id.as_str()),
            _ => None,
        });
        let mut total = 0;
        let mut page_ids = Vec::new();
        {
            let index = self
                .ids
                .read()
                .map_err(|_| CatalogError::Store("index lock poisoned".into()))?;
            let entries: Box<dyn Iterator<Item = (&String, &crate::store::Entry)>> = match wanted_id
            {
                Some(id) => Box::new(index.get_key_value(id).into_iter()),
                None => Box::new(index.iter()),
            };
            for (id, entry) in entries.filter(|(_, e)| e.offerable) {
                let Some(summary) = self.summary(id, entry)? else {
                    continue;
                };
                if !summary.has_distribution
                    || !filter.matches_summary(&summary)
                    || !any_visible(&summary, visible)
                {
                    continue;
                }
                if total >= page.offset && page_ids.len() < page.limit {
                    page_ids.push(id.clone());
                }
                total += 1;
            }
        }
        Ok((total, self.render(svc, page_ids, visible)?))
    }

    /// The cached summary of `id`, reading the graph on first use; `None` if it vanished.
    fn summary(
        &self,
        id: &str,
        entry: &crate::store::Entry,
    ) -> Result<Option<Arc<Summary>>, CatalogError> {
        if let Some(s) = entry.summary.get() {
            return Ok(Some(s.clone()));
        }
        let Some(ds) = self.read_dataset(&NamedNode::new_unchecked(id))? else {
            return Ok(None);
        };
        let marker = self.scope_marker()?;
        Ok(Some(
            entry
                .summary
                .get_or_init(|| Arc::new(Summary::of(&ds, marker.as_ref())))
                .clone(),
        ))
    }
}

/// Whether the caller sees at least one offer of the summarised (offerable) dataset.
fn any_visible(summary: &Summary, visible: &dyn OfferVisibility) -> bool {
    if visible.sees_everything() || summary.open {
        return true;
    }
    summary.restricted.iter().any(|o| {
        serde_json::from_str::<Value>(o)
            .map(|offer| visible.is_visible(&offer))
            .unwrap_or(false)
    })
}
