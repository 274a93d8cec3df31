//! Phase 1: the graph store, round trips, DSP JSON against the schemas, dump/load.

mod common;

use common::*;
use serde_json::{Value, json};
use sluis_catalog::{CatalogError, CatalogStore, Page};

fn nested_offer() -> Value {
    json!({
        "@id": "urn:sluis:offer:nested",
        "@type": "Offer",
        "profile": ["https://w3id.org/sluis/odrl"],
        "assigner": "did:web:provider.example",
        "permission": [{
            "action": "use",
            "constraint": [{
                "or": [
                    {"leftOperand": "purpose", "operator": "isA", "rightOperand": {"@id": "https://w3id.org/dpv#ResearchAndDevelopment"}},
                    {"and": [
                        {"leftOperand": "dateTime", "operator": "lt", "rightOperand": {"@value": "2027-01-01T00:00:00Z", "@type": "xsd:dateTime"}},
                        {"leftOperand": "sluis:maxRows", "operator": "lteq", "rightOperand": {"@value": "1000", "@type": "xsd:integer"}}
                    ]}
                ]
            }, {
                "andSequence": [
                    {"leftOperand": "sluis:column", "operator": "isAnyOf", "rightOperand": ["b", "a", "c"]},
                    {"leftOperand": "spatial", "operator": "eq", "rightOperand": {"@value": "Noord", "@language": "nl"}}
                ]
            }],
            "duty": [{"action": "attribute"}]
        }],
        "prohibition": [{"action": "distribute"}]
    })
}

#[test]
fn demo_offer_round_trips_through_the_graph() {
    let cat = CatalogStore::new().unwrap();
    let ds = dataset(
        "urn:sluis:dataset:meter",
        vec![demo_offer(), nested_offer()],
    );
    cat.put_dataset(&ds).unwrap();
    let back = cat.dataset(&ds.id).unwrap().expect("stored");
    assert_eq!(back.offers.len(), 2);
    let demo = back
        .offers
        .iter()
        .find(|o| o["@id"] == demo_offer()["@id"])
        .unwrap();
    assert_eq!(normalise(demo), normalise(&demo_offer()));
    let nested = back
        .offers
        .iter()
        .find(|o| o["@id"] == "urn:sluis:offer:nested")
        .unwrap();
    assert_eq!(normalise(nested), normalise(&nested_offer()));
    // andSequence keeps its order; right-operand lists keep theirs.
    let seq = &nested["permission"][0]["constraint"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.get("andSequence").is_some())
        .unwrap()["andSequence"];
    assert_eq!(seq[0]["rightOperand"], json!(["b", "a", "c"]));
    assert_eq!(seq[1]["leftOperand"], "spatial");
    // The rest of the dataset round-trips too (arrays come back sorted).
    let mut expected = ds.clone();
    expected.offers = back.offers.clone();
    assert_eq!(back, expected);
}

#[test]
fn offers_are_real_odrl_triples() {
    let cat = CatalogStore::new().unwrap();
    cat.put_dataset(&dataset("urn:sluis:dataset:meter", vec![demo_offer()]))
        .unwrap();
    let ask = |q: &str| {
        let r = oxigraph::sparql::SparqlEvaluator::new()
            .parse_query(q)
            .unwrap()
            .on_store(cat.oxigraph())
            .execute()
            .unwrap();
        match r {
            oxigraph::sparql::QueryResults::Boolean(b) => b,
            _ => panic!("not ASK"),
        }
    };
    assert!(ask(r#"PREFIX odrl: <http://www.w3.org/ns/odrl/2/>
        ASK { GRAPH <urn:sluis:dataset:meter> {
          <urn:sluis:dataset:meter> odrl:hasPolicy ?o . ?o a odrl:Offer ; odrl:permission ?p .
          ?p odrl:action odrl:use ; odrl:constraint ?c .
          ?c odrl:leftOperand <https://w3id.org/sluis/odrl#row.region> ; odrl:operator odrl:eq ; odrl:rightOperand "north" } }"#));
}

#[test]
fn dsp_catalog_and_dataset_validate_against_the_schemas() {
    let cat = CatalogStore::new().unwrap();
    // An empty catalogue is valid too (no `dataset` key: the schema wants minItems 1).
    let empty = cat.dsp_catalog(&svc(), Page::default()).unwrap();
    assert_valid("catalog/catalog-schema.json", &empty.catalog);
    assert_eq!(empty.total, 0);

    cat.put_dataset(&dataset(
        "urn:sluis:dataset:meter",
        vec![demo_offer(), nested_offer()],
    ))
    .unwrap();
    let page = cat.dsp_catalog(&svc(), Page::default()).unwrap();
    assert_valid("catalog/catalog-schema.json", &page.catalog);
    assert_eq!(page.total, 1);
    assert_eq!(page.catalog["participantId"], "did:web:provider.example");
    assert_eq!(
        page.catalog["dataset"][0]["distribution"][0]["accessService"],
        "urn:sluis:service:provider"
    );
    assert_eq!(
        page.catalog["dataset"][0]["distribution"][0]["format"],
        "ArrowFlight-PULL"
    );

    let ds = cat
        .dsp_dataset("urn:sluis:dataset:meter", &svc())
        .unwrap()
        .unwrap();
    assert_valid("catalog/dataset-schema.json", &ds);
    assert_eq!(normalise(&ds["hasPolicy"][0]), normalise(&demo_offer()));

    // The validator is real: it refuses what the schema refuses.
    let mut broken = ds.clone();
    broken.as_object_mut().unwrap().remove("distribution");
    assert!(!is_valid("catalog/dataset-schema.json", &broken));
}

#[test]
fn data_source_locations_never_leave() {
    let cat = CatalogStore::new().unwrap();
    cat.put_dataset(&dataset("urn:sluis:dataset:meter", vec![demo_offer()]))
        .unwrap();
    let page = cat
        .dsp_catalog(&svc(), Page::default())
        .unwrap()
        .catalog
        .to_string();
    let ds = cat
        .dsp_dataset("urn:sluis:dataset:meter", &svc())
        .unwrap()
        .unwrap()
        .to_string();
    let ttl = cat.export_turtle().unwrap();
    for out in [&page, &ds, &ttl] {
        assert!(!out.contains("/srv/secret"), "leaked: {out}");
        assert!(!out.contains("sourceLocation"), "leaked: {out}");
    }
    assert!(ttl.contains("dcat:Dataset"), "{ttl}");
    // but the operator's own read-back has it
    let back = cat.dataset("urn:sluis:dataset:meter").unwrap().unwrap();
    assert_eq!(
        back.distributions[0].source.as_ref().unwrap().location,
        "/srv/secret/meter.parquet"
    );
}

#[test]
fn put_replaces_and_remove_deletes_everything() {
    let cat = CatalogStore::new().unwrap();
    let id = "https://provider.example/datasets/meter";
    cat.put_dataset(&dataset(id, vec![demo_offer(), nested_offer()]))
        .unwrap();
    let mut second = dataset(id, vec![demo_offer()]);
    second.title = "Renamed".into();
    second.keywords = vec!["other".into()];
    cat.put_dataset(&second).unwrap();
    let back = cat.dataset(id).unwrap().unwrap();
    assert_eq!(back.title, "Renamed");
    assert_eq!(back.keywords, vec!["other".to_string()]);
    assert_eq!(back.offers.len(), 1);
    assert!(cat.find_offer("urn:sluis:offer:nested").unwrap().is_none());
    assert_eq!(cat.datasets().unwrap().len(), 1);

    assert!(cat.remove_dataset(id).unwrap());
    assert!(!cat.remove_dataset(id).unwrap());
    assert!(cat.dataset(id).unwrap().is_none());
    assert_eq!(cat.oxigraph().len().unwrap(), 0, "no orphan triples");
}

#[test]
fn find_offer_returns_dataset_and_offer() {
    let cat = CatalogStore::new().unwrap();
    cat.put_dataset(&dataset("urn:sluis:dataset:meter", vec![demo_offer()]))
        .unwrap();
    let (ds, offer) = cat
        .find_offer("urn:sluis:offer:meter-readings-north")
        .unwrap()
        .unwrap();
    assert_eq!(ds.id, "urn:sluis:dataset:meter");
    assert_eq!(normalise(&offer), normalise(&demo_offer()));
    assert!(cat.find_offer("urn:sluis:offer:unknown").unwrap().is_none());
    // a repeated lookup is served from the cache, until the dataset changes
    let (again, _) = cat
        .find_offer("urn:sluis:offer:meter-readings-north")
        .unwrap()
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&ds, &again), "read the graph again");
    cat.put_dataset(&dataset("urn:sluis:dataset:meter", vec![demo_offer()]))
        .unwrap();
    let (fresh, _) = cat
        .find_offer("urn:sluis:offer:meter-readings-north")
        .unwrap()
        .unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&ds, &fresh),
        "served a replaced dataset"
    );
    assert!(matches!(
        cat.find_offer("not an iri"),
        Err(CatalogError::InvalidId { .. })
    ));
}

#[test]
fn an_offer_id_belongs_to_one_dataset() {
    let cat = CatalogStore::new().unwrap();
    cat.put_dataset(&dataset("urn:sluis:dataset:a", vec![demo_offer()]))
        .unwrap();
    let err = cat
        .put_dataset(&dataset("urn:sluis:dataset:b", vec![demo_offer()]))
        .unwrap_err();
    assert!(matches!(err, CatalogError::OfferIdInUse { .. }), "{err}");
    assert!(err.to_string().contains("urn:sluis:dataset:a"));
    assert!(
        cat.dataset("urn:sluis:dataset:b").unwrap().is_none(),
        "nothing written"
    );
    // re-putting the owner is fine
    cat.put_dataset(&dataset("urn:sluis:dataset:a", vec![demo_offer()]))
        .unwrap();
}

#[test]
fn bad_ids_are_refused() {
    let cat = CatalogStore::new().unwrap();
    for id in [
        "",
        "meter",
        "relative/path",
        "urn:has space",
        "http://x/<y>",
        "urn:sluis:graph:peers",
    ] {
        let err = cat
            .put_dataset(&dataset(id, vec![demo_offer()]))
            .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::InvalidId {
                    what: "dataset",
                    ..
                }
            ),
            "{id}: {err}"
        );
    }
    assert_eq!(cat.oxigraph().len().unwrap(), 0);
}

#[test]
fn bad_offers_are_refused_with_a_reason() {
    let cat = CatalogStore::new().unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"@type": "Offer", "permission": [{"action": "use"}]}),
            "no @id",
        ),
        (
            json!({"@id": "urn:o:1", "target": "urn:x", "permission": [{"action": "use"}]}),
            "target",
        ),
        (
            json!({"@id": "urn:o:1", "@type": "Agreement", "permission": [{"action": "use"}]}),
            "@type",
        ),
        (json!({"@id": "urn:o:1"}), "permission or a prohibition"),
        (
            json!({"@id": "urn:o:1", "permission": [{"action": "use", "constraint": [{"leftOperand": "x", "operator": "like", "rightOperand": "y"}]}]}),
            "operator",
        ),
        (
            json!({"@id": "urn:o:1", "permission": [{"constraint": []}]}),
            "no action",
        ),
        (
            json!({"@id": "urn:o:1", "permission": [{"action": "use", "constraint": [{"and": [], "or": []}]}]}),
            "exactly one",
        ),
        (
            json!({"@id": "urn:o:1", "permission": [{"action": "has space"}]}),
            "action",
        ),
        (json!("urn:o:1"), "JSON object"),
    ];
    for (offer, needle) in cases {
        let err = cat
            .put_dataset(&dataset("urn:sluis:dataset:x", vec![offer.clone()]))
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{offer}: {err}");
    }
    // a nesting bomb is refused, not a stack overflow
    let mut c = json!({"leftOperand": "x", "operator": "eq", "rightOperand": "y"});
    for _ in 0..200 {
        c = json!({"and": [c]});
    }
    let bomb = json!({"@id": "urn:o:bomb", "permission": [{"action": "use", "constraint": [c]}]});
    let err = cat
        .put_dataset(&dataset("urn:sluis:dataset:x", vec![bomb]))
        .unwrap_err();
    assert!(err.to_string().contains("deeper"), "{err}");
    assert_eq!(cat.oxigraph().len().unwrap(), 0);
}

#[test]
fn bad_metadata_is_refused() {
    let cat = CatalogStore::new().unwrap();
    let mut ds = dataset("urn:sluis:dataset:x", vec![demo_offer()]);
    ds.issued = Some("yesterday".into());
    assert!(
        cat.put_dataset(&ds)
            .unwrap_err()
            .to_string()
            .contains("issued")
    );
    let mut ds = dataset("urn:sluis:dataset:x", vec![demo_offer()]);
    ds.distributions[0].source.as_mut().unwrap().kind = "postgres-dump".into();
    assert!(
        cat.put_dataset(&ds)
            .unwrap_err()
            .to_string()
            .contains("data source kind")
    );
    let mut ds = dataset("urn:sluis:dataset:x", vec![demo_offer()]);
    ds.title = "  ".into();
    assert!(
        cat.put_dataset(&ds)
            .unwrap_err()
            .to_string()
            .contains("title")
    );
    let mut ds = dataset("urn:sluis:dataset:x", vec![demo_offer()]);
    ds.themes = vec!["energy".into()];
    assert!(matches!(
        cat.put_dataset(&ds).unwrap_err(),
        CatalogError::InvalidId { what: "theme", .. }
    ));
}

#[test]
fn dump_and_load_restore_the_catalogue() {
    let cat = CatalogStore::new().unwrap();
    for i in 0..5 {
        let mut offer = demo_offer();
        offer["@id"] = json!(format!("urn:sluis:offer:{i}"));
        cat.put_dataset(&dataset(
            &format!("urn:sluis:dataset:{i}"),
            vec![
                offer,
                if i == 0 {
                    nested_offer()
                } else {
                    json!({"@id": format!("urn:o:{i}"), "permission": [{"action": "use"}]})
                },
            ],
        ))
        .unwrap();
    }
    let bytes = cat.dump().unwrap();
    let back = CatalogStore::load(&bytes).unwrap();
    assert_eq!(back.datasets().unwrap(), cat.datasets().unwrap());
    assert_eq!(
        back.dsp_catalog(&svc(), Page::default()).unwrap(),
        cat.dsp_catalog(&svc(), Page::default()).unwrap()
    );
    // the loaded catalogue is fully writable: remove and re-put work on loaded graphs
    assert!(back.remove_dataset("urn:sluis:dataset:0").unwrap());
    assert!(back.find_offer("urn:sluis:offer:nested").unwrap().is_none());
    back.put_dataset(&dataset("urn:sluis:dataset:9", vec![nested_offer()]))
        .unwrap();
    assert_eq!(back.datasets().unwrap().len(), 5);
    // a broken dump loads nothing and says where
    let err = CatalogStore::load(b"<urn:a> <urn:b> \"x\" <urn:g> .\n<urn:a> <urn:b> oops .\n")
        .unwrap_err();
    match err {
        CatalogError::Syntax {
            location: Some((2, _)),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn pages_carry_next_and_previous() {
    let cat = CatalogStore::new().unwrap();
    for i in 0..7 {
        let mut offer = demo_offer();
        offer["@id"] = json!(format!("urn:sluis:offer:{i}"));
        cat.put_dataset(&dataset(&format!("urn:sluis:dataset:{i}"), vec![offer]))
            .unwrap();
    }
    // a dataset without offers is not offerable and not listed
    cat.put_dataset(&dataset("urn:sluis:dataset:draft", vec![]))
        .unwrap();
    let p1 = cat
        .dsp_catalog(
            &svc(),
            Page {
                offset: 0,
                limit: 3,
            },
        )
        .unwrap();
    assert_eq!(p1.total, 7);
    assert_eq!(p1.catalog["dataset"].as_array().unwrap().len(), 3);
    assert_eq!(
        p1.next,
        Some(Page {
            offset: 3,
            limit: 3
        })
    );
    assert_eq!(p1.previous, None);
    let p3 = cat
        .dsp_catalog(
            &svc(),
            Page {
                offset: 6,
                limit: 3,
            },
        )
        .unwrap();
    assert_eq!(p3.catalog["dataset"].as_array().unwrap().len(), 1);
    assert_eq!(p3.next, None);
    assert_eq!(
        p3.previous,
        Some(Page {
            offset: 3,
            limit: 3
        })
    );
    assert_valid("catalog/catalog-schema.json", &p3.catalog);
    let ids: Vec<String> = [0, 3, 6]
        .iter()
        .flat_map(|o| {
            cat.dsp_catalog(
                &svc(),
                Page {
                    offset: *o,
                    limit: 3,
                },
            )
            .unwrap()
            .catalog["dataset"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["@id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        ids,
        (0..7)
            .map(|i| format!("urn:sluis:dataset:{i}"))
            .collect::<Vec<_>>()
    );
    assert!(
        cat.dsp_dataset("urn:sluis:dataset:draft", &svc())
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_change_log_replays_to_the_same_catalogue() {
    use sluis_catalog::{CatalogChange, RdfSyntax};
    let changes = vec![
        CatalogChange::PutDataset { dataset: Box::new(dataset("urn:sluis:dataset:a", vec![demo_offer()])) },
        CatalogChange::PutDataset { dataset: Box::new(dataset("urn:sluis:dataset:b", vec![nested_offer()])) },
        CatalogChange::Import {
            syntax: RdfSyntax::Turtle,
            document: "<urn:d:imported> a <http://www.w3.org/ns/dcat#Dataset> ; <http://purl.org/dc/terms/title> \"Imported\" .".into(),
        },
        CatalogChange::RemoveDataset { id: "urn:sluis:dataset:a".into() },
        CatalogChange::StorePeerCatalog {
            peer_id: "did:web:peer.example".into(),
            fetched_at: "2026-11-24T10:00:00Z".parse().unwrap(),
            catalog: std::fs::read_to_string(spec_dir().join("dsp-2025-1/catalog/example/catalog.json"))
                .map(|t| serde_json::from_str(&t).unwrap())
                .unwrap(),
        },
    ];
    let live = CatalogStore::new().unwrap();
    let mut log = String::new();
    for c in &changes {
        live.apply(c).unwrap();
        log.push_str(&serde_json::to_string(c).unwrap());
        log.push('\n');
    }
    // snapshot half-way is equivalent: replay all from an empty store here
    let replayed = CatalogStore::new().unwrap();
    for line in log.lines() {
        replayed
            .apply(&serde_json::from_str(line).unwrap())
            .unwrap();
    }
    assert_eq!(replayed.datasets().unwrap(), live.datasets().unwrap());
    assert_eq!(
        replayed.peer_catalogs().unwrap(),
        live.peer_catalogs().unwrap()
    );
    assert_eq!(live.datasets().unwrap().len(), 2);
    assert!(log.contains("\"op\":\"putDataset\""), "{log}");
}

/// Served pages and lookups come from a cache of recently served datasets; every write must
/// reach them at once, or a withdrawn offer would still be offered.
#[test]
fn every_write_reaches_served_pages_and_lookups_at_once() {
    let cat = CatalogStore::new().unwrap();
    let id = "https://provider.example/datasets/meter";
    let page = |cat: &CatalogStore| {
        let p = cat.dsp_catalog(&svc(), Page::default()).unwrap();
        (dataset_ids(&p.catalog), p.catalog.to_string())
    };
    let lookup = |cat: &CatalogStore| cat.dsp_dataset(id, &svc()).unwrap().map(|v| v.to_string());
    cat.put_dataset(&dataset(id, vec![demo_offer(), nested_offer()]))
        .unwrap();
    // served twice: the second answer is the cached one
    assert_eq!(page(&cat), page(&cat));
    assert!(lookup(&cat).unwrap().contains("urn:sluis:offer:nested"));

    // a replacement withdraws an offer and renames the dataset
    let mut second = dataset(id, vec![demo_offer()]);
    second.title = "Renamed".into();
    cat.put_dataset(&second).unwrap();
    let (ids, text) = page(&cat);
    assert_eq!(ids, vec![id.to_string()]);
    assert!(text.contains("Renamed") && !text.contains("urn:sluis:offer:nested"));
    let looked_up = lookup(&cat).unwrap();
    assert!(looked_up.contains("Renamed") && !looked_up.contains("urn:sluis:offer:nested"));

    // an import replaces it again
    let mut third = dataset(id, vec![demo_offer()]);
    third.title = "Imported".into();
    let other = CatalogStore::new().unwrap();
    other.put_dataset(&third).unwrap();
    let turtle = other
        .export(sluis_catalog::RdfSyntax::Turtle, None)
        .unwrap();
    cat.import(&turtle, sluis_catalog::RdfSyntax::Turtle)
        .unwrap();
    assert!(page(&cat).1.contains("Imported"));
    assert!(lookup(&cat).unwrap().contains("Imported"));

    // a removal empties both
    assert!(cat.remove_dataset(id).unwrap());
    assert!(page(&cat).0.is_empty());
    assert!(lookup(&cat).is_none());
}
