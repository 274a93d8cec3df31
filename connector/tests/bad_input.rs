//! Operators' mistakes and hostile peers get clear answers, never a crash.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluis_connector::scenario::{self, Running};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluis"))
}

#[test]
fn a_port_in_use_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = std::fs::read_to_string(&scn.consumer.config).unwrap();
    let cfg = cfg.replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        1,
    );
    std::fs::write(&scn.consumer.config, cfg).unwrap();
    let err = Running::start(exe(), &scn.consumer, Duration::from_secs(30))
        .err()
        .expect("a taken port must stop the connector");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("in use"), "{msg}");
    assert!(msg.contains("DSP protocol listener"), "{msg}");
}

#[test]
fn an_invalid_config_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluis.toml");
    std::fs::write(&path, "participant_id = \"did:web:x\"\ndata_dir = 42\n").unwrap();
    let out = std::process::Command::new(exe())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("data_dir"), "{err}");

    let missing = dir.path().join("nope.toml");
    let out = std::process::Command::new(exe())
        .args(["serve", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.toml") && err.contains("sluis init"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_peer_call_names_the_peer_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    let consumer = Running::start(exe(), &scn.consumer, Duration::from_secs(30)).unwrap();
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!(
        "https://127.0.0.1:{}/dsp",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let err = consumer
        .mgmt()
        .post("catalog/request", &json!({ "connectorAddress": addr }))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("502"), "{msg}");
    assert!(msg.contains(&addr), "{msg}");
    assert!(
        msg.to_lowercase().contains("refused") || msg.contains("unreachable"),
        "{msg}"
    );
}
