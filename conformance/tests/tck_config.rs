//! `conformance/tck/sluis.toml`, the configuration for pointing the Eclipse DSP TCK at Sluis,
//! starts and publishes every dataset and offer that `sluis.tck.properties` names.

use std::path::Path;
use std::time::Duration;

use sluis_connector::scenario::{ParticipantFiles, Running};
use sluis_connector::tls;

const TCK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tck");

/// `KEY=value` lines of the properties file whose key ends with `suffix`.
fn properties(suffix: &str) -> Vec<String> {
    std::fs::read_to_string(Path::new(TCK_DIR).join("sluis.tck.properties"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.ends_with(suffix) && !k.starts_with("CN_C_"))
        .map(|(_, v)| v.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tck_config_seeds_every_dataset_and_offer() {
    let dir = tempfile::tempdir().unwrap();
    for entry in ["data.csv", "offers"] {
        copy(&Path::new(TCK_DIR).join(entry), &dir.path().join(entry));
    }
    let config = std::fs::read_to_string(Path::new(TCK_DIR).join("sluis.toml")).unwrap();
    let config = ["8282", "8283", "8687"].iter().fold(config, |c, port| {
        c.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0")
    });
    std::fs::write(dir.path().join("sluis.toml"), config).unwrap();
    let id = "did:web:sluis.tck.example";
    let ca = tls::create_ca("TCK CA").unwrap();
    let cert = tls::issue_participant_cert(&ca, id, &["localhost".into()]).unwrap();
    tls::write_participant_files(&dir.path().join("certs"), &ca, &cert).unwrap();
    let files = ParticipantFiles {
        id: id.into(),
        dir: dir.path().to_path_buf(),
        config: dir.path().join("sluis.toml"),
        api_key: "tck-change-me-before-use".into(),
    };
    let exe = std::env::current_exe().unwrap();
    let exe = exe.parent().unwrap().parent().unwrap().join("sluis");
    let cut =
        tokio::task::spawn_blocking(move || Running::start(&exe, &files, Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("sluis starts with the TCK config");
    let catalog = cut.mgmt().get("catalog").await.unwrap().to_string();
    let datasets = properties("_DATASETID");
    let offers = properties("_OFFERID");
    assert!(datasets.len() >= 17 && offers.len() >= 15);
    for id in datasets.iter().chain(&offers) {
        let absent = id.ends_with("CAT0103"); // CAT:01-03 asks for a dataset that is not there
        assert_eq!(
            !catalog.contains(&format!("\"{id}\"")),
            absent,
            "{id} in {catalog}"
        );
    }
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}
