//! Phase 2: read-only SPARQL with a time limit, catalogue-scope visibility, the filter form.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sluis_catalog::{
    CatalogError, CatalogFilter, CatalogStore, Page, SparqlLimits, SparqlResultsSyntax,
    catalog_error_json,
};

fn store_with(n: usize) -> CatalogStore {
    let cat = CatalogStore::new().unwrap();
    for i in 0..n {
        let mut offer = demo_offer();
        offer["@id"] = json!(format!("urn:sluis:offer:{i}"));
        let mut ds = dataset(&format!("urn:sluis:dataset:{i:03}"), vec![offer]);
        ds.title = format!("Dataset number {i}");
        ds.keywords = vec![if i % 2 == 0 { "even" } else { "odd" }.to_string()];
        cat.put_dataset(&ds).unwrap();
    }
    cat
}

/// A 200 ms limit for runaway queries.
const SHORT: SparqlLimits = SparqlLimits {
    timeout: Duration::from_millis(200),
    max_bytes: 1 << 20,
};

const LIMITS: SparqlLimits = SparqlLimits {
    timeout: Duration::from_secs(5),
    max_bytes: 1 << 20,
};

#[test]
fn sparql_select_answers_json_and_csv() {
    let cat = store_with(3);
    let q = "PREFIX dct: <http://purl.org/dc/terms/> SELECT ?d ?t WHERE { ?d dct:title ?t } ORDER BY ?d";
    let json_answer = cat
        .sparql_query(q, SparqlResultsSyntax::Json, LIMITS)
        .unwrap();
    assert_eq!(json_answer.media_type, "application/sparql-results+json");
    let v: Value = serde_json::from_slice(&json_answer.body).unwrap();
    let rows = v["results"]["bindings"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["t"]["value"], "Dataset number 0");
    let csv = cat
        .sparql_query(q, SparqlResultsSyntax::Csv, LIMITS)
        .unwrap();
    assert_eq!(csv.media_type, "text/csv; charset=utf-8");
    let text = String::from_utf8(csv.body).unwrap();
    assert!(text.starts_with("d,t\r\n"), "{text}");
    assert_eq!(text.lines().count(), 4);
    // named graphs are visible with GRAPH
    let ask = cat
        .sparql_query(
            "ASK { GRAPH <urn:sluis:dataset:001> { <urn:sluis:dataset:001> ?p ?o } }",
            SparqlResultsSyntax::Json,
            LIMITS,
        )
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&ask.body).unwrap()["boolean"],
        true
    );
}

#[test]
fn sparql_updates_and_service_are_refused() {
    let cat = store_with(1);
    let before = cat.oxigraph().len().unwrap();
    for update in [
        "DELETE WHERE { ?s ?p ?o }",
        "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        "CLEAR ALL",
        "LOAD <http://example.org/x>",
    ] {
        let err = cat
            .sparql_query(update, SparqlResultsSyntax::Json, LIMITS)
            .unwrap_err();
        assert!(err.to_string().contains("read-only"), "{update}: {err}");
    }
    assert_eq!(cat.oxigraph().len().unwrap(), before);
    let err = cat
        .sparql_query(
            "SELECT * WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o } }",
            SparqlResultsSyntax::Json,
            LIMITS,
        )
        .unwrap_err();
    assert!(matches!(err, CatalogError::Sparql(_)), "{err}");
    let err = cat
        .sparql_query("SELEKT nonsense", SparqlResultsSyntax::Json, LIMITS)
        .unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
}

#[test]
fn a_runaway_query_is_cancelled_at_its_time_limit() {
    let cat = store_with(30);
    // a five-way cross product of ~1,500 quads: far beyond 200 ms
    let q =
        "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }";
    let start = std::time::Instant::now();
    let err = cat
        .sparql_query(q, SparqlResultsSyntax::Json, SHORT)
        .unwrap_err();
    assert!(matches!(err, CatalogError::Timeout(200)), "{err}");
    assert_eq!(err.http_status(), 503);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "answered at the deadline: {:?}",
        start.elapsed()
    );
    // a query that reads as it goes is really cancelled: its slot frees up
    let scan = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . FILTER NOT EXISTS { ?g ?h ?i . ?j ?k ?l FILTER(?i = ?c && ?l = ?f && STR(?a) = \"x\") } }";
    let err = cat
        .sparql_query(scan, SparqlResultsSyntax::Json, SHORT)
        .unwrap_err();
    assert!(matches!(err, CatalogError::Timeout(200)), "{err}");
    // two evaluations run at most: the first runaway still holds its slot, the second frees
    // its slot once cancelled, so a small query gets through again within a few seconds
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match cat.sparql_query("ASK { ?s ?p ?o }", SparqlResultsSyntax::Json, LIMITS) {
            Ok(_) => break,
            Err(e) => {
                assert!(e.to_string().contains("still running"), "{e}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cancelled query never stopped"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn oversized_answers_fail_instead_of_growing() {
    let cat = store_with(10);
    let err = cat
        .sparql_query(
            "SELECT * WHERE { ?s ?p ?o }",
            SparqlResultsSyntax::Json,
            SparqlLimits {
                timeout: Duration::from_secs(5),
                max_bytes: 500,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("LIMIT"), "{err}");
}

fn only_offer(id: &'static str) -> impl Fn(&Value) -> bool {
    move |o: &Value| o["@id"] != id
}

#[test]
fn hidden_offers_and_their_datasets_are_not_shown() {
    let cat = store_with(3);
    // dataset 001 gets a second, public offer; 002 has only its (hidden) offer
    let mut ds1 = cat.dataset("urn:sluis:dataset:001").unwrap().unwrap();
    ds1.offers.push(json!({"@id": "urn:sluis:offer:public", "@type": "Offer", "permission": [{"action": "use"}]}));
    cat.put_dataset(&ds1).unwrap();
    let hide = |o: &Value| o["@id"] != "urn:sluis:offer:1" && o["@id"] != "urn:sluis:offer:2";
    let page = cat
        .dsp_catalog_for(&svc(), Page::default(), &CatalogFilter::default(), &hide)
        .unwrap();
    assert_valid("catalog/catalog-schema.json", &page.catalog);
    assert_eq!(page.total, 2);
    let datasets = page.catalog["dataset"].as_array().unwrap();
    let ids: Vec<&str> = datasets
        .iter()
        .map(|d| d["@id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["urn:sluis:dataset:000", "urn:sluis:dataset:001"]);
    let offers: Vec<&str> = datasets[1]["hasPolicy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["@id"].as_str().unwrap())
        .collect();
    assert_eq!(offers, vec!["urn:sluis:offer:public"]);
    assert!(!page.catalog.to_string().contains("urn:sluis:offer:2"));
    // the dataset endpoint agrees
    assert!(
        cat.dsp_dataset_for("urn:sluis:dataset:002", &svc(), &hide)
            .unwrap()
            .is_none()
    );
    let one = cat
        .dsp_dataset_for("urn:sluis:dataset:001", &svc(), &hide)
        .unwrap()
        .unwrap();
    assert_valid("catalog/dataset-schema.json", &one);
    assert_eq!(one["hasPolicy"].as_array().unwrap().len(), 1);
    // a caller that sees nothing sees an empty, valid catalogue
    let nothing = cat
        .dsp_catalog_for(
            &svc(),
            Page::default(),
            &CatalogFilter::default(),
            &|_: &Value| false,
        )
        .unwrap();
    assert_eq!(nothing.total, 0);
    assert!(nothing.catalog.get("dataset").is_none());
    assert_valid("catalog/catalog-schema.json", &nothing.catalog);
    // pagination counts only what the caller sees
    let p = cat
        .dsp_catalog_for(
            &svc(),
            Page {
                offset: 0,
                limit: 1,
            },
            &CatalogFilter::default(),
            &only_offer("urn:sluis:offer:0"),
        )
        .unwrap();
    assert_eq!(p.total, 2);
    assert_eq!(p.catalog["dataset"][0]["@id"], "urn:sluis:dataset:001");
    assert_eq!(
        p.next,
        Some(Page {
            offset: 1,
            limit: 1
        })
    );
}

#[test]
fn the_filter_form_selects_datasets() {
    let cat = store_with(6);
    let all = sluis_catalog::visible_to_all;
    let run = |filter: Value| {
        let f = CatalogFilter::parse(&filter).unwrap();
        let page = cat
            .dsp_catalog_for(&svc(), Page::default(), &f, &all)
            .unwrap();
        assert_valid("catalog/catalog-schema.json", &page.catalog);
        dataset_ids(&page.catalog)
    };
    assert_eq!(
        run(json!([{"keyword": "ODD"}])),
        vec![
            "urn:sluis:dataset:001",
            "urn:sluis:dataset:003",
            "urn:sluis:dataset:005"
        ]
    );
    assert_eq!(
        run(json!([{"keyword": "odd"}, {"text": "number 3"}])),
        vec!["urn:sluis:dataset:003"]
    );
    assert_eq!(
        run(json!([{"id": "urn:sluis:dataset:004"}])),
        vec!["urn:sluis:dataset:004"]
    );
    assert_eq!(
        run(json!([{"format": "HttpData-PULL"}])),
        Vec::<String>::new()
    );
    assert_eq!(run(json!([{"format": "ArrowFlight-PULL"}])).len(), 6);
    assert_eq!(
        run(json!([{"theme": "http://publications.europa.eu/resource/authority/data-theme/ENER"}]))
            .len(),
        6
    );
    assert_eq!(run(json!([])).len(), 6);

    for bad in [
        json!({"keyword": "x"}),
        json!([{"sparql": "SELECT"}]),
        json!([{"keyword": 3}]),
        json!([{"keyword": "a", "text": "b"}]),
        json!(["x"]),
    ] {
        let err = CatalogFilter::parse(&bad).unwrap_err();
        assert!(matches!(err, CatalogError::UnsupportedFilter(_)), "{bad}");
        // the connector answers 400 with this body
        assert_eq!(err.http_status(), 400);
        let body = err.to_dsp_error();
        assert_eq!(body, catalog_error_json("400", &err.to_string()));
        assert_valid("catalog/catalog-error-schema.json", &body);
    }
    let msg = std::fs::read_to_string(
        spec_dir().join("dsp-2025-1/catalog/example/catalog-request-message.json"),
    )
    .unwrap();
    assert_eq!(
        CatalogFilter::from_request(&serde_json::from_str(&msg).unwrap()).unwrap(),
        CatalogFilter::default()
    );
    assert!(CatalogFilter::from_request(&json!({"@type": "CatalogRequestMessage"})).is_err());
    assert!(CatalogFilter::from_request(&json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "DatasetRequestMessage"})).is_err());
}

#[test]
fn filters_see_every_write_after_the_summaries_are_cached() {
    let cat = store_with(4);
    let filter = |v: Value| CatalogFilter::parse(&v).unwrap();
    let ids = |f: &CatalogFilter, vis: &dyn sluis_catalog::OfferVisibility| {
        let page = cat
            .dsp_catalog_for(&svc(), Page::default(), f, vis)
            .unwrap();
        dataset_ids(&page.catalog)
    };
    let odd = filter(json!([{"keyword": "odd"}]));
    assert_eq!(
        ids(&odd, &sluis_catalog::visible_to_all),
        vec!["urn:sluis:dataset:001", "urn:sluis:dataset:003"]
    );
    // a replace changes keywords: the cached summary must not be used
    let mut ds0 = cat.dataset("urn:sluis:dataset:000").unwrap().unwrap();
    ds0.keywords = vec!["odd".into()];
    cat.put_dataset(&ds0).unwrap();
    assert_eq!(ids(&odd, &sluis_catalog::visible_to_all).len(), 3);
    // an import replaces one too
    let ttl = r#"<urn:sluis:dataset:003> a <http://www.w3.org/ns/dcat#Dataset> ; <http://purl.org/dc/terms/title> "x" ;
        <http://www.w3.org/ns/dcat#keyword> "even" ."#;
    cat.import(ttl.as_bytes(), sluis_catalog::RdfSyntax::Turtle)
        .unwrap();
    assert_eq!(
        ids(&odd, &sluis_catalog::visible_to_all),
        vec!["urn:sluis:dataset:000", "urn:sluis:dataset:001"]
    );
    // visibility over new offers
    let hide_new = |o: &Value| o["@id"] != "urn:sluis:offer:new";
    assert_eq!(ids(&CatalogFilter::default(), &hide_new).len(), 3);
    let mut ds1 = cat.dataset("urn:sluis:dataset:001").unwrap().unwrap();
    ds1.offers = vec![json!({"@id": "urn:sluis:offer:new", "permission": [{"action": "use"}]})];
    cat.put_dataset(&ds1).unwrap();
    assert_eq!(
        ids(&CatalogFilter::default(), &hide_new),
        vec!["urn:sluis:dataset:000", "urn:sluis:dataset:002"]
    );
    cat.remove_dataset("urn:sluis:dataset:000").unwrap();
    assert_eq!(
        ids(&CatalogFilter::default(), &hide_new),
        vec!["urn:sluis:dataset:002"]
    );
}

#[test]
fn a_scope_marker_limits_the_predicate_to_marked_offers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cat = store_with(3);
    // dataset 002 gets a second offer that carries (pretend) catalogue-scope constraints
    let mut ds2 = cat.dataset("urn:sluis:dataset:002").unwrap().unwrap();
    ds2.offers = vec![json!({"@id": "urn:sluis:offer:secret", "permission": [{"action": "use"}]})];
    cat.put_dataset(&ds2).unwrap();
    let mut ds1 = cat.dataset("urn:sluis:dataset:001").unwrap().unwrap();
    ds1.offers
        .push(json!({"@id": "urn:sluis:offer:secret-1", "permission": [{"action": "use"}]}));
    cat.put_dataset(&ds1).unwrap();
    // a first request before the marker fills summaries that the marker must drop
    let deny = |_: &Value| false;
    assert_eq!(
        cat.dsp_catalog_for(&svc(), Page::default(), &CatalogFilter::default(), &deny)
            .unwrap()
            .total,
        0
    );

    cat.set_scope_marker(Arc::new(|o: &Value| {
        o["@id"].as_str().is_some_and(|id| id.contains("secret"))
    }))
    .unwrap();
    let asked = AtomicUsize::new(0);
    let deny_counting = |o: &Value| {
        asked.fetch_add(1, Ordering::SeqCst);
        assert!(
            o["@id"].as_str().unwrap().contains("secret"),
            "asked about an unmarked offer: {o}"
        );
        false
    };
    let page = cat
        .dsp_catalog_for(
            &svc(),
            Page::default(),
            &CatalogFilter::default(),
            &deny_counting,
        )
        .unwrap();
    assert_valid("catalog/catalog-schema.json", &page.catalog);
    assert_eq!(
        dataset_ids(&page.catalog),
        vec!["urn:sluis:dataset:000", "urn:sluis:dataset:001"]
    );
    assert_eq!(page.total, 2);
    assert!(
        !page.catalog.to_string().contains("secret"),
        "{}",
        page.catalog
    );
    assert!(
        asked.load(Ordering::SeqCst) >= 2,
        "the marked offers were checked"
    );
    assert!(
        cat.dsp_dataset_for("urn:sluis:dataset:002", &svc(), &deny_counting)
            .unwrap()
            .is_none()
    );
    let allow = |_: &Value| true;
    let one = cat
        .dsp_dataset_for("urn:sluis:dataset:001", &svc(), &allow)
        .unwrap()
        .unwrap();
    assert_eq!(one["hasPolicy"].as_array().unwrap().len(), 2);
    assert_eq!(
        cat.dsp_catalog_for(&svc(), Page::default(), &CatalogFilter::default(), &allow)
            .unwrap()
            .total,
        3
    );
}

#[test]
fn internal_errors_do_not_leak_to_partners() {
    let err = CatalogError::Store("/var/lib/sluis/secret path exploded".into());
    assert_eq!(err.http_status(), 500);
    let body = err.to_dsp_error();
    assert_valid("catalog/catalog-error-schema.json", &body);
    assert!(!body.to_string().contains("secret"), "{body}");
}

#[test]
fn a_scope_property_pages_like_the_full_scan() {
    let cat = store_with(30);
    let assign = |i: usize, who: &str| {
        let mut ds = cat
            .dataset(&format!("urn:sluis:dataset:{i:03}"))
            .unwrap()
            .unwrap();
        ds.offers[0]["assignee"] = json!(who);
        cat.put_dataset(&ds).unwrap();
    };
    for i in [3, 7, 11] {
        assign(i, "did:web:other");
    }
    assign(12, "did:web:me");
    cat.set_scope_marker(std::sync::Arc::new(|o: &Value| o.get("assignee").is_some()))
        .unwrap();
    let me = |o: &Value| o.get("assignee").is_none_or(|a| a == "did:web:me");
    let none = CatalogFilter::default();
    let pages = |cat: &CatalogStore| -> Vec<(usize, Value)> {
        (0..4)
            .map(|p| {
                let page = Page {
                    offset: p * 8,
                    limit: 8,
                };
                let got = cat.dsp_catalog_for(&svc(), page, &none, &me).unwrap();
                (got.total, got.catalog)
            })
            .collect()
    };
    let scanned = pages(&cat);
    cat.set_scope_property("http://www.w3.org/ns/odrl/2/assignee")
        .unwrap();
    let indexed = pages(&cat);
    assert_eq!(scanned, indexed);
    assert_eq!(indexed[0].0, 27);
    let ids = indexed[0].1["dataset"].to_string();
    assert!(
        !ids.contains("dataset:003") && ids.contains("dataset:000"),
        "{ids}"
    );
}
