//! `sluis negotiate` and `sluis transfer` against two running connectors.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluis_connector::scenario::{self, DATASET_ID, OFFER_ID, PROVIDER_ID, Running};

fn sluis(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluis"))
        .args(args)
        .output()
        .expect("sluis runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn negotiate_then_transfer_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1000).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_sluis"));
    let provider = Running::start(exe, &scn.provider, Duration::from_secs(60)).unwrap();
    let _consumer = Running::start(exe, &scn.consumer, Duration::from_secs(60)).unwrap();
    let config = scn.consumer.config.to_str().unwrap();
    let address = provider.ports.dsp_url.as_str();

    let (ok, out, err) = sluis(&[
        "negotiate",
        "--config",
        config,
        "--dataset",
        DATASET_ID,
        "--offer",
        OFFER_ID,
        "--provider",
        PROVIDER_ID,
        "--address",
        address,
    ]);
    assert!(ok, "{err}");
    let agreement: Value = serde_json::from_str(&out).expect("the agreement as JSON");
    assert_eq!(agreement["assigner"], PROVIDER_ID);
    assert_eq!(agreement["datasetId"], DATASET_ID);
    let agreement_id = agreement["id"].as_str().unwrap();

    let (ok, out, err) = sluis(&[
        "transfer",
        "--config",
        config,
        "--agreement",
        agreement_id,
        "--provider",
        PROVIDER_ID,
        "--address",
        address,
    ]);
    assert!(ok, "{err}");
    let transfer: Value = serde_json::from_str(&out).expect("the transfer as JSON");
    assert_eq!(transfer["state"], "STARTED");
    let endpoint = transfer["dataAddress"]["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("grpc+tls://"), "{endpoint}");

    // An offer the provider does not have: a clear failure, not a hang.
    let (ok, _, err) = sluis(&[
        "negotiate",
        "--config",
        config,
        "--dataset",
        DATASET_ID,
        "--offer",
        "urn:no-such-offer",
        "--provider",
        PROVIDER_ID,
        "--address",
        address,
        "--timeout-secs",
        "10",
    ]);
    assert!(!ok);
    assert!(err.contains("no offer urn:no-such-offer"), "{err}");
}
