//! Phase 2: DCAT-AP 3.0.1 mandatory properties, checked by the API and by pySHACL.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;
use sluis_catalog::{CatalogAbout, CatalogStore, MissingProperty, RdfSyntax};

fn about() -> CatalogAbout {
    CatalogAbout {
        service: svc(),
        title: "Provider catalogue".into(),
        description: "Datasets of Provider BV".into(),
        publisher_name: "Provider BV".into(),
    }
}

#[test]
fn the_api_names_missing_mandatory_properties() {
    let cat = CatalogStore::new().unwrap();
    cat.put_dataset(&dataset("urn:sluis:dataset:full", vec![demo_offer()]))
        .unwrap();
    assert_eq!(
        cat.missing_mandatory("urn:sluis:dataset:full").unwrap(),
        Some(vec![])
    );
    let mut thin = dataset("urn:sluis:dataset:thin", vec![]);
    thin.description = None;
    thin.publisher_name = None;
    cat.put_dataset(&thin).unwrap();
    assert_eq!(
        cat.missing_mandatory("urn:sluis:dataset:thin")
            .unwrap()
            .unwrap(),
        vec![
            MissingProperty {
                node: "did:web:provider.example".into(),
                class: "foaf:Agent",
                property: "foaf:name"
            },
            MissingProperty {
                node: "urn:sluis:dataset:thin".into(),
                class: "dcat:Dataset",
                property: "dct:description"
            },
        ]
    );
    assert_eq!(
        cat.missing_mandatory("urn:sluis:dataset:none").unwrap(),
        None
    );
    let report = cat.mandatory_report().unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].0, "urn:sluis:dataset:thin");
}

/// `SLUIS_PYTHON`, else the workspace's `.venv` (made by `./test.sh`), else `python3`.
fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("SLUIS_PYTHON") {
        return p.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Runs pySHACL with the DCAT-AP 3.0.1 shapes (SHACL + ranges); `None` when pySHACL is not
/// installed outside CI. In CI (`CI` set) a missing pySHACL fails the test.
fn pyshacl(data_ttl: &[u8], ranges: bool) -> Option<(bool, String)> {
    let probe = Command::new(python())
        .args(["-c", "import pyshacl"])
        .output()
        .ok();
    if !probe.is_some_and(|p| p.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "pySHACL is not installed: ./test.sh installs it into .venv"
        );
        eprintln!("SKIPPED: pySHACL is not installed (run ./test.sh, or pip install pyshacl)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("catalog.ttl");
    std::fs::write(&data, data_ttl).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dcat_ap_validate.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(spec_dir().join("dcat-ap-3.0.1"))
        .arg(&data)
        .args(ranges.then_some("--ranges"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some((
        out.status.success() && text.contains("Conforms: True"),
        text,
    ))
}

#[test]
fn a_catalogue_with_recommended_metadata_conforms_to_the_dcat_ap_shapes() {
    let cat = CatalogStore::new().unwrap();
    cat.put_dataset(&dataset("urn:sluis:dataset:meter", vec![demo_offer()]))
        .unwrap();
    let mut second = dataset("https://provider.example/ds/weather", vec![]);
    second.offers = vec![
        json!({"@id": "urn:sluis:offer:weather", "@type": "Offer", "permission": [{"action": "use"}]}),
    ];
    cat.put_dataset(&second).unwrap();
    // Every theme must be a labelled skos:Concept: that comes from the EU data-theme
    // vocabulary, which the operator imports (it lands in the catalogue graph).
    let ttl = cat.export(RdfSyntax::Turtle, Some(&about())).unwrap();
    let Some((conforms, report)) = pyshacl(&ttl, false) else {
        return;
    };
    assert!(!conforms && report.contains("skos:Concept"), "{report}");
    let theme = r#"<http://publications.europa.eu/resource/authority/data-theme/ENER>
        a <http://www.w3.org/2004/02/skos/core#Concept> ;
        <http://www.w3.org/2004/02/skos/core#prefLabel> "Energy"@en ."#;
    let report = cat.import(theme.as_bytes(), RdfSyntax::Turtle).unwrap();
    assert_eq!(report.catalog_triples, 2);
    let ttl = cat.export(RdfSyntax::Turtle, Some(&about())).unwrap();
    for ranges in [false, true] {
        let (conforms, report) = pyshacl(&ttl, ranges).unwrap();
        assert!(
            conforms,
            "ranges={ranges}: {report}\n{}",
            String::from_utf8_lossy(&ttl)
        );
    }

    // and a dataset without its description does not conform: the API and the shapes agree
    let mut thin = dataset("urn:sluis:dataset:thin", vec![]);
    thin.description = None;
    cat.put_dataset(&thin).unwrap();
    let ttl = cat.export(RdfSyntax::Turtle, Some(&about())).unwrap();
    let (conforms, report) = pyshacl(&ttl, false).unwrap();
    assert!(!conforms, "{report}");
    assert!(report.contains("description"), "{report}");
    assert_eq!(
        cat.missing_mandatory("urn:sluis:dataset:thin")
            .unwrap()
            .unwrap()[0]
            .property,
        "dct:description"
    );
}
