//! Phase 2: the federated catalogue (peer graphs) and search.

mod common;

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::{Value, json};
use sluis_catalog::{CatalogError, CatalogStore, Page, SparqlLimits, SparqlResultsSyntax};

fn peer_catalog(title: &str) -> Value {
    let cat = CatalogStore::new().unwrap();
    let mut ds = dataset("urn:peer:dataset:wind", vec![demo_offer()]);
    ds.title = title.into();
    cat.put_dataset(&ds).unwrap();
    cat.dsp_catalog(&svc(), Page::default()).unwrap().catalog
}

#[test]
fn peer_catalogues_live_in_their_own_graphs() {
    let cat = CatalogStore::new().unwrap();
    cat.put_dataset(&dataset("urn:sluis:dataset:local", vec![demo_offer()]))
        .unwrap();
    let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    let report = cat
        .store_peer_catalog("did:web:provider.example", t1, &peer_catalog("Wind speeds"))
        .unwrap();
    assert_eq!((report.datasets, report.skipped), (1, 0));
    // the spec's own example catalogue, from a second peer
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(spec_dir().join("dsp-2025-1/catalog/example/catalog.json"))
            .unwrap(),
    )
    .unwrap();
    cat.store_peer_catalog("urn:example:DataProviderA", t1, &example)
        .unwrap();

    let peers = cat.peer_catalogs().unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].peer_id, "did:web:provider.example");
    assert_eq!(peers[0].fetched_at, "2026-11-24T10:00:00Z");
    assert_eq!(peers[0].datasets, 1);
    let ds = cat.peer_datasets("did:web:provider.example").unwrap();
    assert_eq!(ds[0].title, "Wind speeds");
    assert_eq!(normalise(&ds[0].offers[0]), normalise(&demo_offer()));
    let ex = cat.peer_datasets("urn:example:DataProviderA").unwrap();
    assert_eq!(
        ex[0].offers[0]["permission"][0]["constraint"][0]["rightOperand"],
        "http://example.org/EU"
    );

    // peer content is not local: not in our DSP catalogue, not an offer of ours, not exported
    assert_eq!(cat.dsp_catalog(&svc(), Page::default()).unwrap().total, 1);
    assert!(cat.dataset("urn:peer:dataset:wind").unwrap().is_none());
    assert!(
        cat.find_offer("urn:uuid:3dd1add8-4d2d-569e-d634-8394a8836a88")
            .unwrap()
            .is_none()
    );
    assert!(!cat.export_turtle().unwrap().contains("Wind speeds"));
    // and our own offer id may also appear in a peer's catalogue without conflict
    cat.put_dataset(&dataset("urn:sluis:dataset:local", vec![demo_offer()]))
        .unwrap();

    // re-fetching replaces the peer's graph and time
    let t2 = Utc.with_ymd_and_hms(2026, 11, 24, 11, 0, 0).unwrap();
    cat.store_peer_catalog("did:web:provider.example", t2, &peer_catalog("Wind gusts"))
        .unwrap();
    let ds = cat.peer_datasets("did:web:provider.example").unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].title, "Wind gusts");
    assert_eq!(
        cat.peer_catalogs().unwrap()[0].fetched_at,
        "2026-11-24T11:00:00Z"
    );

    // the operator can query them all with SPARQL, with the fetch time
    let q = "PREFIX s: <https://w3id.org/sluis/catalog#> PREFIX dct: <http://purl.org/dc/terms/>
             SELECT ?peer ?at ?title WHERE { ?g s:peer ?peer ; s:fetchedAt ?at . GRAPH ?g { ?d dct:title ?title } }";
    let ans = cat
        .sparql_query(q, SparqlResultsSyntax::Json, SparqlLimits::default())
        .unwrap();
    let v: Value = serde_json::from_slice(&ans.body).unwrap();
    let rows = v["results"]["bindings"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["title"]["value"], "Wind gusts");

    // dump/load keeps peer graphs
    let back = CatalogStore::load(&cat.dump().unwrap()).unwrap();
    assert_eq!(back.peer_catalogs().unwrap(), cat.peer_catalogs().unwrap());

    assert!(cat.remove_peer_catalog("did:web:provider.example").unwrap());
    assert!(!cat.remove_peer_catalog("did:web:provider.example").unwrap());
    assert!(
        cat.peer_datasets("did:web:provider.example")
            .unwrap()
            .is_empty()
    );
    assert_eq!(cat.peer_catalogs().unwrap().len(), 1);
}

#[test]
fn search_finds_local_and_peer_datasets() {
    let cat = CatalogStore::new().unwrap();
    let mut local = dataset("urn:sluis:dataset:local", vec![demo_offer()]);
    local.title = "Solar yield".into();
    local.keywords = vec!["wind-adjacent".into()];
    cat.put_dataset(&local).unwrap();
    let t = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    cat.store_peer_catalog("did:web:provider.example", t, &peer_catalog("Wind speeds"))
        .unwrap();
    let hits = cat.search("WIND", 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].dataset_id, "urn:sluis:dataset:local");
    assert_eq!(hits[0].peer_id, None);
    assert_eq!(hits[1].dataset_id, "urn:peer:dataset:wind");
    assert_eq!(hits[1].peer_id.as_deref(), Some("did:web:provider.example"));
    assert_eq!(hits[1].title.as_deref(), Some("Wind speeds"));
    assert_eq!(hits[1].fetched_at.as_deref(), Some("2026-11-24T10:00:00Z"));
    assert_eq!(cat.search("wind", 1).unwrap().len(), 1);
    assert!(cat.search("nothing like this", 10).unwrap().is_empty());
    assert!(cat.search("  ", 10).is_err());
}

#[test]
fn hostile_peer_catalogues_are_bounded() {
    let cat = CatalogStore::new().unwrap();
    let t = Utc::now();
    for bad in [json!("Catalog"), json!({"@type": "Dataset"}), json!([])] {
        assert!(
            matches!(
                cat.store_peer_catalog("did:web:p", t, &bad),
                Err(CatalogError::InvalidPeerCatalog(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        cat.store_peer_catalog("not an iri", t, &json!({"@type": "Catalog"})),
        Err(CatalogError::InvalidId { .. })
    ));
    let mut nested = json!({"@type": "Catalog"});
    for _ in 0..10 {
        nested = json!({"@type": "Catalog", "catalog": [nested]});
    }
    assert!(cat.store_peer_catalog("did:web:p", t, &nested).is_err());
    assert!(cat.peer_catalogs().unwrap().is_empty(), "nothing stored");
    // malformed items are skipped and counted, the rest is kept
    let mixed = json!({"@type": "Catalog", "@id": "urn:c", "dataset": [
        {"@id": "urn:ok", "@type": "Dataset", "hasPolicy": [{"@id": "urn:o", "permission": [{"action": "use"}]}, {"permission": []}],
         "distribution": [{"format": "HttpData-PULL", "accessService": {"@id": "urn:s"}}, {"format": "bad format!"}]},
        {"@type": "Dataset"},
        {"@id": "not an iri"}
    ]});
    let report = cat.store_peer_catalog("did:web:p", t, &mixed).unwrap();
    assert_eq!(report.datasets, 1);
    assert_eq!(report.skipped, 4, "{report:?}");
    let ds = cat.peer_datasets("did:web:p").unwrap();
    assert_eq!(ds[0].offers.len(), 1);
    assert_eq!(
        ds[0].distributions[0].access_service.as_deref(),
        Some("urn:s")
    );
}
