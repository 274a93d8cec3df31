//! Shared test helpers: DSP schema validation against the local spec files, sample datasets.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Value, json};
use sluis_catalog::{DataSource, Dataset, Distribution, ServiceInfo};

/// `shared/spec` beside the workspace.
pub fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec")
}

/// Validates `instance` against `dsp-2025-1/<schema>` and panics with every error.
pub fn assert_valid(schema: &str, instance: &Value) {
    let errors = sluis_conformance::dsp_schema::errors(schema, instance);
    assert!(errors.is_empty(), "{errors:#?}\n{instance:#}");
}

/// Whether `instance` validates against `dsp-2025-1/<schema>`.
pub fn is_valid(schema: &str, instance: &Value) -> bool {
    std::panic::catch_unwind(|| assert_valid(schema, instance)).is_ok()
}

/// The demo offer of the brief.
pub fn demo_offer() -> Value {
    json!({"@id":"urn:sluis:offer:meter-readings-north","@type":"Offer","profile":"https://w3id.org/sluis/odrl","permission":[{"action":"use","constraint":[{"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},{"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]}]}]})
}

pub fn svc() -> ServiceInfo {
    ServiceInfo {
        catalog_id: "urn:sluis:catalog:provider".into(),
        participant_id: "did:web:provider.example".into(),
        service_id: "urn:sluis:service:provider".into(),
        endpoint_url: "https://provider.example/dsp".into(),
    }
}

/// A dataset with DCAT-AP recommended metadata, a secret data source and `offers`.
pub fn dataset(id: &str, offers: Vec<Value>) -> Dataset {
    Dataset {
        id: id.into(),
        title: "Meter readings".into(),
        description: Some("Quarter-hour smart meter readings".into()),
        keywords: vec!["energy".into(), "meter".into()],
        themes: vec!["http://publications.europa.eu/resource/authority/data-theme/ENER".into()],
        publisher: Some("did:web:provider.example".into()),
        publisher_name: Some("Provider BV".into()),
        contact_email: Some("data@provider.example".into()),
        issued: Some("2026-01-15".into()),
        modified: Some("2026-11-01T12:00:00Z".into()),
        languages: vec!["http://publications.europa.eu/resource/authority/language/ENG".into()],
        landing_page: Some("https://provider.example/datasets/meter".into()),
        distributions: vec![Distribution {
            id: None,
            format: "ArrowFlight-PULL".into(),
            access_service: None,
            source: Some(DataSource {
                kind: "parquet".into(),
                location: "/srv/secret/meter.parquet".into(),
            }),
        }],
        offers,
    }
}

/// Sorts every array recursively, except those whose order means something
/// (`andSequence` and right-operand lists), so set-equal policies compare equal.
pub fn normalise(v: &Value) -> Value {
    normalise_in(v, "")
}

fn normalise_in(v: &Value, key: &str) -> Value {
    match v {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(|i| normalise_in(i, "")).collect();
            if key != "andSequence" && key != "rightOperand" {
                items.sort_by_key(|i| i.to_string());
            }
            Value::Array(items)
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| match v.as_array() {
                    // JSON-LD: a one-element set is the same as the element.
                    Some(a) if k == "profile" && a.len() == 1 => (k.clone(), a[0].clone()),
                    _ => (k.clone(), normalise_in(v, k)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `@id`s of a DSP catalogue's datasets, in order.
pub fn dataset_ids(catalog: &Value) -> Vec<String> {
    catalog["dataset"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["@id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}
