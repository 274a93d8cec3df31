//! DCAT-AP 3.0.1 mandatory-property check (the `sh:minCount 1` constraints of the shapes
//! that apply to what a dataset graph holds).

use oxigraph::model::vocab::rdf;
use oxigraph::model::{
    GraphNameRef, NamedNode, NamedNodeRef, NamedOrBlankNode, NamedOrBlankNodeRef, Term,
};
use serde::Serialize;

use crate::error::CatalogError;
use crate::graph::dataset_node;
use crate::store::CatalogStore;
use crate::vocab::*;

/// A mandatory DCAT-AP property a node lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingProperty {
    /// The node (IRI, or `_:…` for a blank node).
    pub node: String,
    /// Its DCAT-AP class, prefixed (`dcat:Dataset`).
    pub class: &'static str,
    /// The missing property, prefixed (`dct:description`).
    pub property: &'static str,
}

const SKOS_CONCEPT: NamedNodeRef<'static> =
    NamedNodeRef::new_unchecked("http://www.w3.org/2004/02/skos/core#Concept");
const SKOS_PREF_LABEL: NamedNodeRef<'static> =
    NamedNodeRef::new_unchecked("http://www.w3.org/2004/02/skos/core#prefLabel");

/// A property and its prefixed name.
type Prop = (NamedNodeRef<'static>, &'static str);

/// (class, prefixed class, [(property, prefixed property)]) checked in each dataset graph.
/// `dcat:Distribution`'s `dcat:accessURL` is not listed: DCAT-AP exports fill it with the
/// connector's DSP endpoint.
const RULES: &[(NamedNodeRef<'static>, &str, &[Prop])] = &[
    (
        DCAT_DATASET,
        "dcat:Dataset",
        &[
            (DCT_TITLE, "dct:title"),
            (DCT_DESCRIPTION, "dct:description"),
        ],
    ),
    (FOAF_AGENT, "foaf:Agent", &[(FOAF_NAME, "foaf:name")]),
    (
        SKOS_CONCEPT,
        "skos:Concept",
        &[(SKOS_PREF_LABEL, "skos:prefLabel")],
    ),
    (
        DCAT_DATA_SERVICE,
        "dcat:DataService",
        &[
            (DCAT_ENDPOINT_URL, "dcat:endpointURL"),
            (DCT_TITLE, "dct:title"),
        ],
    ),
];

impl CatalogStore {
    /// The DCAT-AP 3.0.1 mandatory properties the dataset's graph lacks (empty: none).
    /// `None` when the dataset does not exist.
    pub fn missing_mandatory(
        &self,
        id: &str,
    ) -> Result<Option<Vec<MissingProperty>>, CatalogError> {
        let node = dataset_node(id)?;
        let g = GraphNameRef::NamedNode(node.as_ref());
        if self
            .store
            .quads_for_pattern(None, None, None, Some(g))
            .next()
            .is_none()
        {
            return Ok(None);
        }
        let mut missing = Vec::new();
        for (class, class_name, props) in RULES {
            let class_term: Term = class.into_owned().into();
            for q in self.store.quads_for_pattern(
                None,
                Some(rdf::TYPE),
                Some(class_term.as_ref()),
                Some(g),
            ) {
                let subject = q?.subject;
                for (prop, prop_name) in *props {
                    if !self.has(&subject, *prop, &node)? {
                        missing.push(MissingProperty {
                            node: subject
                                .to_string()
                                .trim_start_matches('<')
                                .trim_end_matches('>')
                                .to_string(),
                            class: class_name,
                            property: prop_name,
                        });
                    }
                }
            }
        }
        missing.sort_by(|a, b| (&a.node, a.property).cmp(&(&b.node, b.property)));
        Ok(Some(missing))
    }

    /// Every local dataset lacking a mandatory property, with what it lacks.
    pub fn mandatory_report(&self) -> Result<Vec<(String, Vec<MissingProperty>)>, CatalogError> {
        let ids: Vec<String> = self
            .ids
            .read()
            .map_err(|_| CatalogError::Store("index lock poisoned".into()))?
            .keys()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(m) = self.missing_mandatory(&id)?
                && !m.is_empty()
            {
                out.push((id, m));
            }
        }
        Ok(out)
    }

    fn has(
        &self,
        s: &NamedOrBlankNode,
        p: NamedNodeRef<'_>,
        graph: &NamedNode,
    ) -> Result<bool, CatalogError> {
        let s: NamedOrBlankNodeRef<'_> = s.as_ref();
        Ok(self
            .store
            .quads_for_pattern(
                Some(s),
                Some(p),
                None,
                Some(GraphNameRef::NamedNode(graph.as_ref())),
            )
            .next()
            .transpose()?
            .is_some())
    }
}
