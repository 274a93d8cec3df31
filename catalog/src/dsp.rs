//! DSP 2025-1 catalogue JSON (compact form with the DSP context).

use serde_json::{Map, Value, json};

use crate::model::{Dataset, ServiceInfo};

/// The DSP 2025-1 JSON-LD context IRI.
pub const DSP_CONTEXT: &str = "https://w3id.org/dspace/2025/1/context.jsonld";

fn context() -> Value {
    json!([DSP_CONTEXT])
}

/// The connector's own `DataService`.
pub(crate) fn data_service(svc: &ServiceInfo) -> Value {
    json!({
        "@id": svc.service_id,
        "@type": "DataService",
        "endpointURL": svc.endpoint_url,
    })
}

/// The DSP `Dataset` object for `ds` with the given (already visibility-filtered) offers.
///
/// `None` when the dataset cannot be offered: DSP requires at least one offer and one
/// distribution. Internal data sources are never written.
pub(crate) fn dataset_json(
    ds: &Dataset,
    offers: Vec<Value>,
    svc: &ServiceInfo,
    root: bool,
) -> Option<Value> {
    if offers.is_empty() || ds.distributions.is_empty() {
        return None;
    }
    let mut obj = Map::new();
    if root {
        obj.insert("@context".into(), context());
    }
    obj.insert("@id".into(), ds.id.clone().into());
    obj.insert("@type".into(), "Dataset".into());
    obj.insert("dct:title".into(), ds.title.clone().into());
    if let Some(d) = &ds.description {
        obj.insert("dct:description".into(), d.clone().into());
    }
    if !ds.keywords.is_empty() {
        obj.insert("dcat:keyword".into(), ds.keywords.clone().into());
    }
    if !ds.themes.is_empty() {
        let themes: Vec<Value> = ds.themes.iter().map(|t| json!({ "@id": t })).collect();
        obj.insert("dcat:theme".into(), themes.into());
    }
    if let Some(p) = &ds.publisher {
        obj.insert("dct:publisher".into(), json!({ "@id": p }));
    }
    obj.insert("hasPolicy".into(), Value::Array(offers));
    let distributions: Vec<Value> = ds
        .distributions
        .iter()
        .map(|d| {
            let mut o = Map::new();
            if let Some(id) = &d.id {
                o.insert("@id".into(), id.clone().into());
            }
            o.insert("@type".into(), "Distribution".into());
            o.insert("format".into(), d.format.clone().into());
            let svc_id = d
                .access_service
                .clone()
                .unwrap_or_else(|| svc.service_id.clone());
            o.insert("accessService".into(), svc_id.into());
            Value::Object(o)
        })
        .collect();
    obj.insert("distribution".into(), distributions.into());
    Some(Value::Object(obj))
}

/// The root DSP `Catalog` around already-rendered datasets.
pub(crate) fn catalog_json(svc: &ServiceInfo, datasets: Vec<Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("@context".into(), context());
    obj.insert("@id".into(), svc.catalog_id.clone().into());
    obj.insert("@type".into(), "Catalog".into());
    obj.insert("participantId".into(), svc.participant_id.clone().into());
    obj.insert("service".into(), json!([data_service(svc)]));
    // The schema wants at least one item when `dataset` is present: leave it out when empty.
    if !datasets.is_empty() {
        obj.insert("dataset".into(), datasets.into());
    }
    Value::Object(obj)
}

/// A DSP `CatalogError` body.
pub fn catalog_error_json(code: &str, reason: &str) -> Value {
    json!({
        "@context": context(),
        "@type": "CatalogError",
        "code": code,
        "reason": [reason],
    })
}
