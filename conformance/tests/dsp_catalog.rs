//! DSP 2025-1 catalogue conformance of a real running `sluis`: every message type the
//! catalogue emits (`Catalog`, `Dataset`, `CatalogError`) is fetched over HTTPS with mutual TLS
//! and validated against the `dsp-2025-1` JSON Schemas; the DCAT-AP export is validated
//! against the DCAT-AP 3.0.1 shapes with pySHACL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use sluis_conformance::dsp_schema;
use sluis_connector::client::PeerError;
use sluis_connector::dsp::messages::message;
use sluis_connector::mgmt_client::segment;
use sluis_connector::scenario::{self, Running};

fn spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec")
}

/// The `sluis` binary the workspace build made (beside this test's `deps/` folder).
fn sluis_exe() -> PathBuf {
    let me = std::env::current_exe().expect("test executable path");
    let exe = me
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join("sluis");
    assert!(
        exe.exists(),
        "{} is missing: build with `cargo build --workspace --all-targets`",
        exe.display()
    );
    exe
}

/// Asserts `instance` is valid against `dsp-2025-1/catalog/<schema>`.
fn assert_schema_valid(schema: &str, instance: &Value) {
    let errors = dsp_schema::errors(&format!("catalog/{schema}"), instance);
    assert!(errors.is_empty(), "{schema}: {errors:#?}\n{instance:#}");
}

/// The body of a refused DSP call.
fn refusal(e: PeerError) -> (StatusCode, Value) {
    match e {
        PeerError::Refused { status, body, .. } => (
            status,
            serde_json::from_str(&body).expect("the error body is JSON"),
        ),
        other => panic!("expected a DSP error answer, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_catalogue_message_validates_against_the_dsp_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    let provider = Running::start(&sluis_exe(), &scn.provider, Duration::from_secs(60)).unwrap();
    let client = scenario::dsp_client(&scn.consumer).unwrap();
    let base = &provider.ports.dsp_url;
    let request = message("CatalogRequestMessage", json!({ "filter": [] }));
    assert_schema_valid("catalog-request-message-schema.json", &request);

    // Catalog: a full page and a paginated one (with its Link header)
    let (_, catalog) = client
        .post_json(&format!("{base}/catalog/request"), &request)
        .await
        .unwrap();
    assert_eq!(
        catalog["dataset"].as_array().map(Vec::len),
        Some(scenario::CONFIG_DATASETS)
    );
    assert_schema_valid("catalog-schema.json", &catalog);
    let (headers, page) = client
        .post_json_with_headers(&format!("{base}/catalog/request?limit=1"), &request)
        .await
        .unwrap();
    assert_schema_valid("catalog-schema.json", &page);
    let link = headers.get(http::header::LINK).expect("a Link header");
    assert!(link.to_str().unwrap().ends_with("rel=\"next\""));

    // Dataset
    let url = format!("{base}/catalog/datasets/{}", segment(scenario::DATASET_ID));
    let (_, dataset) = client.get_json(&url).await.unwrap();
    assert_schema_valid("dataset-schema.json", &dataset);

    // CatalogError: unsupported filter (400), unknown dataset (404), malformed body (400)
    let bad_filter = message(
        "CatalogRequestMessage",
        json!({ "filter": [{"sql": "1=1"}] }),
    );
    let unknown = format!(
        "{base}/catalog/datasets/{}",
        segment("urn:sluis:dataset:nope")
    );
    let errors = [
        client
            .post_json(&format!("{base}/catalog/request"), &bad_filter)
            .await,
        client.get_json(&unknown).await,
        client
            .post_json(
                &format!("{base}/catalog/request"),
                &json!({"@type": "Catalog"}),
            )
            .await,
    ];
    let expected = [
        StatusCode::BAD_REQUEST,
        StatusCode::NOT_FOUND,
        StatusCode::BAD_REQUEST,
    ];
    for (answer, want) in errors.into_iter().zip(expected) {
        let (status, body) = refusal(answer.unwrap_err());
        assert_eq!(status, want, "{body}");
        assert_eq!(body["@type"], "CatalogError");
        assert_schema_valid("catalog-error-schema.json", &body);
    }
}

/// The Python with pySHACL: `SLUIS_PYTHON`, else the workspace's `.venv`.
fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("SLUIS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    let has_pyshacl = Command::new(&candidate)
        .args(["-c", "import pyshacl"])
        .output()
        .is_ok_and(|o| o.status.success());
    has_pyshacl.then_some(candidate)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dcat_ap_export_of_a_running_connector_conforms_to_the_shapes() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "pySHACL is missing: ./test.sh installs it into .venv"
        );
        eprintln!("SKIPPED: pySHACL is not installed (run ./test.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    let provider = Running::start(&sluis_exe(), &scn.provider, Duration::from_secs(60)).unwrap();
    let (status, ttl) = provider
        .mgmt()
        .raw(
            Method::GET,
            "catalog/export",
            &[("accept", "text/turtle")],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{ttl}");
    let file = dir.path().join("export.ttl");
    std::fs::write(&file, &ttl).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/tests/dcat_ap_validate.py");
    for ranges in [false, true] {
        let out = Command::new(&python)
            .arg(&script)
            .arg(spec().join("dcat-ap-3.0.1"))
            .arg(&file)
            .args(ranges.then_some("--ranges"))
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && report.contains("Conforms: True"),
            "ranges={ranges}: {report}{}\n{ttl}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
