//! The catalogue in real `sluis` processes over loopback: persistence across kill -9, the
//! management API (CRUD, import/export, SPARQL, DCAT-AP check, bad input), the DSP listener
//! (pagination, filters, visibility) and the federated catalogue crawling real peers.

use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use sluis_connector::client::PeerError;
use sluis_connector::dsp::messages::message;
use sluis_connector::mgmt_client::{MgmtClient, segment};
use sluis_connector::scenario::{self, ParticipantFiles, Running, Scenario};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluis"))
}

fn start(files: &ParticipantFiles) -> Running {
    Running::start(exe(), files, Duration::from_secs(60)).unwrap()
}

fn prepare() -> (tempfile::TempDir, Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    (dir, scn)
}

/// A dataset for the management API with one distribution of each format and `offers`.
fn dataset(id: &str, title: &str, offers: Vec<Value>) -> Value {
    json!({
        "id": id,
        "title": title,
        "description": format!("{title}: quarter-hour readings"),
        "keywords": ["energy"],
        "distributions": [
            {"format": "ArrowFlight-PULL", "source": {"kind": "parquet", "location": "/srv/data/x.parquet"}},
            {"format": "HttpData-PULL", "source": {"kind": "parquet", "location": "/srv/data/x.parquet"}}
        ],
        "offers": offers,
    })
}

fn offer(id: &str) -> Value {
    json!({"@id": id, "@type": "Offer", "permission": [{"action": "use"}]})
}

/// Any call; returns the status and the raw body (no error for non-2xx).
async fn raw(
    c: &MgmtClient,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, String) {
    c.raw(method, path, headers, body).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn datasets_created_through_the_api_survive_kill_9() {
    let (_dir, scn) = prepare();
    let mut provider = start(&scn.provider);
    let api = provider.mgmt();
    let id = "https://provider.example/ds/created-live";
    api.post(
        "catalog/datasets",
        &dataset(id, "Created live", vec![offer("urn:sluis:offer:live")]),
    )
    .await
    .unwrap();
    provider.kill();

    let provider = start(&scn.provider);
    let api = provider.mgmt();
    let back = api
        .get(&format!("catalog/datasets/{}", segment(id)))
        .await
        .unwrap();
    assert_eq!(back["title"], "Created live");
    assert_eq!(
        back["distributions"][0]["source"]["location"],
        "/srv/data/x.parquet"
    );
    // the config's datasets are upserted at start, not duplicated
    let list = api.get("catalog/datasets").await.unwrap();
    assert_eq!(list["total"], scenario::CONFIG_DATASETS + 1, "{list:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn management_api_crud_import_export_sparql_and_bad_input() {
    let (_dir, scn) = prepare();
    let provider = start(&scn.provider);
    let api = provider.mgmt();
    let id = "urn:sluis:dataset:weather";
    let path = format!("catalog/datasets/{}", segment(id));

    // create, conflict, replace, read, DCAT-AP check, delete
    let body = dataset(id, "Weather", vec![offer("urn:sluis:offer:weather")]);
    api.post("catalog/datasets", &body).await.unwrap();
    let (status, _) = raw(
        &api,
        Method::POST,
        "catalog/datasets",
        &[],
        body.to_string().into(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut changed = body.clone();
    changed["title"] = json!("Weather, hourly");
    let (status, text) = raw(&api, Method::PUT, &path, &[], changed.to_string().into()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(api.get(&path).await.unwrap()["title"], "Weather, hourly");
    let missing = api.get(&format!("{path}/missing")).await.unwrap();
    assert!(
        !missing.to_string().contains("dct:description"),
        "{missing}"
    );
    let mut thin = dataset("urn:sluis:dataset:thin", "Thin", vec![]);
    thin.as_object_mut().unwrap().remove("description");
    api.post("catalog/datasets", &thin).await.unwrap();
    let missing = api
        .get("catalog/datasets/urn:sluis:dataset:thin/missing")
        .await
        .unwrap();
    let properties: Vec<&Value> = missing["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["property"])
        .collect();
    assert!(properties.contains(&&json!("dct:description")), "{missing}");
    let (status, _) = raw(&api, Method::DELETE, &path, &[], vec![]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = raw(&api, Method::GET, &path, &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // bad input: an id that is not an IRI, unknown fields, deep nesting, oversized bodies
    for bad in [
        dataset("not an iri", "X", vec![]),
        json!({"id": "urn:x:y", "title": "X", "colour": "red"}),
    ] {
        let (status, text) = raw(
            &api,
            Method::POST,
            "catalog/datasets",
            &[],
            bad.to_string().into(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (status, _) = raw(&api, Method::POST, "catalog/datasets", &[], deep.into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = raw(
        &api,
        Method::POST,
        "catalog/datasets",
        &[],
        vec![b' '; 2 << 20],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // the server closes a connection whose body it did not read: continue on a new one
    let api = provider.mgmt();

    // import: all or nothing, errors name line and column
    let ttl = r#"@prefix dcat: <http://www.w3.org/ns/dcat#> .
@prefix dct: <http://purl.org/dc/terms/> .
<urn:sluis:dataset:imported> a dcat:Dataset ; dct:title "Imported" ; dct:description "From Turtle" .
"#;
    let turtle = [("content-type", "text/turtle")];
    let broken =
        format!("{ttl}<urn:sluis:dataset:broken> a dcat:Dataset ; dct:title \"x\" ; !!! .\n");
    let (status, text) = raw(&api, Method::POST, "catalog/import", &turtle, broken.into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("line 4"), "{text}");
    let (status, _) = raw(
        &api,
        Method::GET,
        "catalog/datasets/urn:sluis:dataset:imported",
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a broken file imports nothing"
    );
    let (status, text) = raw(&api, Method::POST, "catalog/import", &turtle, ttl.into()).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    // export round-trips through import (Turtle and JSON-LD)
    for media in ["text/turtle", "application/ld+json"] {
        let (status, exported) = raw(
            &api,
            Method::GET,
            "catalog/export",
            &[("accept", media)],
            vec![],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            exported.contains("urn:sluis:dataset:imported"),
            "{exported}"
        );
        assert!(!exported.contains("/srv/data"), "data sources never leave");
        let (status, text) = raw(
            &api,
            Method::POST,
            "catalog/import",
            &[("content-type", media)],
            exported.into(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{media}: {text}");
    }
    assert_eq!(
        api.get("catalog/datasets/urn:sluis:dataset:imported")
            .await
            .unwrap()["title"],
        "Imported"
    );

    // SPARQL: JSON and CSV by Accept; updates refused
    let q = "SELECT ?d WHERE { GRAPH ?d { ?d a <http://www.w3.org/ns/dcat#Dataset> } } ORDER BY ?d";
    let form = format!("query={}", segment(q));
    let (status, text) = raw(
        &api,
        Method::GET,
        &format!("catalog/sparql?{form}"),
        &[("accept", "application/sparql-results+json")],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(
        answer["results"]["bindings"].as_array().unwrap().len() >= 3,
        "{answer}"
    );
    let (status, csv) = raw(
        &api,
        Method::POST,
        "catalog/sparql",
        &[
            ("content-type", "application/sparql-query"),
            ("accept", "text/csv"),
        ],
        q.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        csv.starts_with("d\r\n") && csv.contains("urn:sluis:dataset:imported"),
        "{csv}"
    );
    for (ct, body) in [
        ("application/sparql-update", "DROP ALL".to_string()),
        (
            "application/sparql-query",
            "DELETE WHERE { ?s ?p ?o }".to_string(),
        ),
        (
            "application/x-www-form-urlencoded",
            "update=DROP+ALL".to_string(),
        ),
    ] {
        let (status, text) = raw(
            &api,
            Method::POST,
            "catalog/sparql",
            &[("content-type", ct)],
            body.into(),
        )
        .await;
        assert!(status.is_client_error(), "{ct}: {status} {text}");
    }
    assert!(
        api.get("catalog/datasets/urn:sluis:dataset:imported")
            .await
            .is_ok()
    );
}

/// A DSP `CatalogRequestMessage` with a filter.
fn catalog_request(filter: Value) -> Value {
    message("CatalogRequestMessage", json!({ "filter": filter }))
}

fn refused(e: PeerError) -> (StatusCode, Value) {
    match e {
        PeerError::Refused { status, body, .. } => {
            (status, serde_json::from_str(&body).unwrap_or(Value::Null))
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dsp_catalogue_pages_filters_and_visibility() {
    let (dir, scn) = prepare();
    let other = scenario::add_participant(
        dir.path(),
        "other",
        "did:web:other.example",
        &["urn:sluis:group:auditors"],
    )
    .unwrap();
    let provider = start(&scn.provider);
    let api = provider.mgmt();
    for i in 0..60 {
        let id = format!("urn:sluis:dataset:bulk-{i:03}");
        let ds = dataset(
            &id,
            &format!("Bulk {i}"),
            vec![offer(&format!("urn:sluis:offer:bulk-{i:03}"))],
        );
        api.post("catalog/datasets", &ds).await.unwrap();
    }
    let mut secret_offer = offer("urn:sluis:offer:secret");
    secret_offer["assignee"] = json!("urn:sluis:group:auditors");
    api.post(
        "catalog/datasets",
        &dataset(
            "urn:sluis:dataset:secret",
            "Secret",
            vec![secret_offer.clone()],
        ),
    )
    .await
    .unwrap();

    let consumer = scenario::dsp_client(&scn.consumer).unwrap();
    let auditor = scenario::dsp_client(&other).unwrap();
    let base = &provider.ports.dsp_url;
    let url = format!("{base}/catalog/request");

    // pages follow Link headers: 60 + the config's visible to the consumer, one more to the auditor
    let visible = 60 + scenario::CONFIG_DATASETS;
    for (client, expected) in [(&consumer, visible), (&auditor, visible + 1)] {
        let mut next = Some(format!("{url}?limit=25"));
        let (mut seen, mut pages) = (Vec::new(), 0);
        while let Some(u) = next.take() {
            let (headers, page) = client
                .post_json_with_headers(&u, &catalog_request(json!([])))
                .await
                .unwrap();
            pages += 1;
            seen.extend(
                page["dataset"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["@id"].clone()),
            );
            for link in headers.get_all(http::header::LINK) {
                let link = link.to_str().unwrap();
                if pages > 1 {
                    assert!(
                        headers
                            .get_all(http::header::LINK)
                            .iter()
                            .any(|l| l.to_str().unwrap().contains("rel=\"previous\""))
                    );
                }
                if link.ends_with("rel=\"next\"") {
                    next = Some(link[1..link.find('>').unwrap()].to_string());
                }
            }
        }
        assert_eq!(seen.len(), expected);
        assert_eq!(pages, expected.div_ceil(25));
        assert_eq!(
            seen.contains(&json!("urn:sluis:dataset:secret")),
            expected == visible + 1
        );
    }

    // filters
    let (_, page) = consumer
        .post_json(&url, &catalog_request(json!([{"text": "bulk 1"}])))
        .await
        .unwrap();
    assert_eq!(
        page["dataset"].as_array().unwrap().len(),
        11,
        "bulk 1 and bulk 10..19"
    );
    let err = consumer
        .post_json(&url, &catalog_request(json!([{"colour": "red"}])))
        .await
        .unwrap_err();
    let (status, body) = refused(err);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["@type"], "CatalogError");

    // dataset lookup: the invisible one is 404 for the consumer, 200 for the auditor
    let secret = format!(
        "{base}/catalog/datasets/{}",
        segment("urn:sluis:dataset:secret")
    );
    let (status, body) = refused(consumer.get_json(&secret).await.unwrap_err());
    assert_eq!(
        (status, &body["@type"]),
        (StatusCode::NOT_FOUND, &json!("CatalogError"))
    );
    let (_, ds) = auditor.get_json(&secret).await.unwrap();
    assert_eq!(ds["hasPolicy"][0]["@id"], "urn:sluis:offer:secret");

    // and the consumer cannot negotiate the offer it cannot see
    let request = message(
        "ContractRequestMessage",
        json!({
            "consumerPid": "urn:uuid:0f1e2d3c-0000-4000-8000-000000000001",
            "offer": {"@id": "urn:sluis:offer:secret", "@type": "Offer", "target": "urn:sluis:dataset:secret", "permission": [{"action": "use"}], "assignee": "urn:sluis:group:auditors"},
            "callbackAddress": "https://127.0.0.1:9/callback",
        }),
    );
    let err = consumer
        .post_json(&format!("{base}/negotiations/request"), &request)
        .await
        .unwrap_err();
    let (status, body) = refused(err);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // refused exactly like an offer that does not exist
    let mut unknown = request.clone();
    unknown["offer"]["@id"] = json!("urn:sluis:offer:no-such-offer");
    let err = consumer
        .post_json(&format!("{base}/negotiations/request"), &unknown)
        .await
        .unwrap_err();
    let (_, unknown_body) = refused(err);
    assert_eq!(body["reason"], unknown_body["reason"], "{body}");
    assert!(
        body["reason"][0]
            .as_str()
            .unwrap()
            .starts_with("unknown offer"),
        "{body}"
    );
}

/// A TLS server of the data space that answers every request with JSON that is no DSP catalogue.
async fn misbehaving_peer(files: &ParticipantFiles) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = files.dir.join("certs");
    let material = sluis_connector::tls::TlsMaterial::load(&sluis_connector::tls::TlsFiles {
        ca: certs.join("ca.pem"),
        cert: certs.join("cert.pem"),
        key: certs.join("key.pem"),
    })
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(material.protocol_server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tls.read(&mut buf).await;
                let body = r#"{"@type": "Nonsense", "dataset": 42}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://{addr}/dsp")
}

#[tokio::test(flavor = "multi_thread")]
async fn federated_catalogue_crawls_two_providers_and_reports_failing_peers() {
    let (dir, scn) = prepare();
    let second =
        scenario::add_participant(dir.path(), "second", "did:web:second.example", &[]).unwrap();
    let liar = scenario::add_participant(dir.path(), "liar", "did:web:liar.example", &[]).unwrap();
    // the dead peer comes from the config; the others are added through the API
    scenario::append_config(
        &scn.consumer,
        "\n[federation]\ncrawl_interval_secs = 3600\n\n[[peer]]\nid = \"did:web:dead.example\"\nurl = \"https://127.0.0.1:9/dsp\"\n",
    )
    .unwrap();
    let provider = start(&scn.provider);
    let provider2 = start(&second);
    for i in 0..70 {
        let id = format!("urn:sluis:dataset:second-{i:03}");
        let ds = dataset(
            &id,
            &format!("Second {i}"),
            vec![offer(&format!("urn:sluis:offer:second-{i:03}"))],
        );
        provider2
            .mgmt()
            .post("catalog/datasets", &ds)
            .await
            .unwrap();
    }
    let liar_url = misbehaving_peer(&liar).await;
    let consumer = start(&scn.consumer);
    let api = consumer.mgmt();
    for (id, url) in [
        (scenario::PROVIDER_ID, provider.ports.dsp_url.as_str()),
        ("did:web:second.example", provider2.ports.dsp_url.as_str()),
        ("did:web:liar.example", liar_url.as_str()),
        // a real member of the data space, but not the participant this peer names
        ("did:web:impostor.example", provider2.ports.dsp_url.as_str()),
    ] {
        api.post("catalog/peers", &json!({"id": id, "url": url}))
            .await
            .unwrap();
    }
    let mut statuses = std::collections::BTreeMap::new();
    for id in [
        scenario::PROVIDER_ID,
        "did:web:second.example",
        "did:web:liar.example",
        "did:web:dead.example",
        "did:web:impostor.example",
    ] {
        let status = api
            .post(
                &format!("catalog/peers/{}/crawl", segment(id)),
                &Value::Null,
            )
            .await
            .unwrap();
        statuses.insert(id, status);
    }
    let ok = &statuses[scenario::PROVIDER_ID];
    assert_eq!(
        (ok["datasets"].as_u64(), &ok["lastError"]),
        (Some(scenario::CONFIG_DATASETS as u64), &Value::Null),
        "{ok:#}"
    );
    assert!(ok["lastSuccess"].is_string());
    // 70 datasets over pages of 50: the crawler followed the Link header
    assert_eq!(statuses["did:web:second.example"]["datasets"], 70);
    let liar = &statuses["did:web:liar.example"];
    assert!(
        liar["lastError"]
            .as_str()
            .unwrap()
            .contains("invalid DSP catalogue"),
        "{liar:#}"
    );
    assert_eq!(liar["lastSuccess"], Value::Null);
    let impostor = &statuses["did:web:impostor.example"];
    // refused at the TLS handshake, before its (valid, but other-party) catalogue is read
    let why = impostor["lastError"].as_str().unwrap_or_default();
    assert!(
        !why.is_empty() && !why.contains("invalid DSP catalogue"),
        "{impostor:#}"
    );
    assert_eq!(impostor["lastSuccess"], Value::Null);
    let dead = &statuses["did:web:dead.example"];
    assert!(
        dead["lastError"].as_str().unwrap().contains("unreachable"),
        "{dead:#}"
    );
    assert_eq!(dead["source"], "config");
    assert!(dead["consecutiveFailures"].as_u64().unwrap() >= 1);

    // the operator queries all peers at once with SPARQL, and with the search endpoint
    let q = "SELECT ?g (COUNT(?d) AS ?n) WHERE { GRAPH ?g { ?d a <http://www.w3.org/ns/dcat#Dataset> } FILTER(STRSTARTS(STR(?g), \"urn:sluis:graph:peer:\")) } GROUP BY ?g ORDER BY ?g";
    let (status, csv) = api
        .raw(
            Method::GET,
            &format!("catalog/sparql?query={}", segment(q)),
            &[("accept", "text/csv")],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{csv}");
    let own = format!(",{}\r\n", scenario::CONFIG_DATASETS);
    assert!(csv.contains(&own) && csv.contains(",70\r\n"), "{csv}");
    let hits = api.get("catalog/search?q=second+6").await.unwrap();
    assert_eq!(hits["hits"].as_array().unwrap().len(), 11, "{hits:#}");
    assert_eq!(hits["hits"][0]["peerId"], "did:web:second.example");

    // the CLI lists a peer's catalogue through the management API
    let out = std::process::Command::new(exe())
        .args(["catalog", "--config"])
        .arg(&scn.consumer.config)
        .args(["--peer", scenario::PROVIDER_ID])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(scenario::DATASET_ID)
            && text.contains(&format!("{} datasets", scenario::CONFIG_DATASETS)),
        "{text}"
    );
}
