//! Operators' mistakes and hostile peers get clear answers, never a crash.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluis_connector::mgmt_client::segment;
use sluis_connector::scenario::{self, DATASET_ID, Running};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// `exe` behind a shell that lowers the file-descriptor limit to `fds` and sets `env`, so
/// that `Running::start` starts the real binary under it.
fn limited_exe(dir: &Path, fds: u32, env: &[(&str, &str)]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exports: String = env
        .iter()
        .map(|(k, v)| format!("export {k}={v}\n"))
        .collect();
    let script = format!(
        "#!/bin/sh\nulimit -n {fds} || exit 1\n{exports}exec '{}' \"$@\"\n",
        exe().display()
    );
    let path = dir.join(format!("sluis-nofile-{fds}.sh"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x: one "client").
async fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// Waits until the server closes `stream` (EOF or reset); false if it is still open after
/// `within`.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Issue 17, item 10: connections that send part of a request must neither hold the listener
/// nor starve well-behaved clients, even at a low descriptor limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_requests_neither_starve_others_nor_stay_open() {
    const TIMEOUT_SECS: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    let secs = TIMEOUT_SECS.to_string();
    let wrapper = limited_exe(
        dir.path(),
        256,
        &[
            ("SLUIS_HTTP__HEADER_TIMEOUT_SECS", &secs),
            ("SLUIS_HTTP__BODY_TIMEOUT_SECS", &secs),
        ],
    );
    let provider = Running::start(&wrapper, &scn.provider, Duration::from_secs(60)).unwrap();
    let dsp = provider.ports.dsp_listen.unwrap();
    let mgmt = provider.ports.management_listen.unwrap();

    // Three "clients" open 300 connections each to the DSP listener and send nothing: far
    // more than the 256 descriptors the provider may open.
    let mut idle = Vec::new();
    for from in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        for _ in 0..300 {
            if let Ok(s) = connect_from(from, dsp).await {
                idle.push(s);
            }
        }
    }
    assert!(idle.len() > 256, "only {} connections opened", idle.len());
    // Half-sent bodies, without a client certificate, on POST /data (TLS), and on the
    // management API (plain HTTP).
    let material = sluis_connector::tls::TlsMaterial::load(&sluis_connector::tls::TlsFiles {
        ca: scn.consumer.dir.join("certs/ca.pem"),
        cert: scn.consumer.dir.join("certs/cert.pem"),
        key: scn.consumer.dir.join("certs/key.pem"),
    })
    .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(material.roots.clone())
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let mut half_sent_data = Vec::new();
    for _ in 0..5 {
        let tcp = connect_from([127, 0, 0, 5], dsp).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut s = connector.connect(name, tcp).await.unwrap();
        s.write_all(b"POST /data HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nSELECT")
            .await
            .unwrap();
        s.flush().await.unwrap();
        half_sent_data.push(s);
    }
    let mut half_sent_mgmt = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from([127, 0, 0, 6], mgmt).await.unwrap();
        s.write_all(
            b"POST /api/v1/negotiations HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
        half_sent_mgmt.push(s);
    }
    let mut half_sent_head = connect_from([127, 0, 0, 6], mgmt).await.unwrap();
    half_sent_head.write_all(b"GET /health/li").await.unwrap();

    // A well-behaved partner is served at once, over mutual TLS, and so is the operator.
    let started = std::time::Instant::now();
    let partner = scenario::dsp_client(&scn.consumer).unwrap();
    let url = format!(
        "{}/catalog/datasets/{}",
        provider.ports.dsp_url,
        segment(DATASET_ID)
    );
    // (the allowance is generous for a loaded machine: without the per-address limit, the
    // slow connections take every descriptor and the partner waits for their timeouts)
    let quickly = Duration::from_secs(5);
    let served = tokio::time::timeout(quickly, partner.get_json(&url))
        .await
        .expect("a well-behaved partner must be served while others hold connections")
        .unwrap();
    assert_eq!(served.1["@id"], DATASET_ID);
    let health = tokio::time::timeout(quickly, provider.mgmt().get("negotiations"))
        .await
        .expect("the operator must be served while others hold connections");
    assert!(health.is_ok(), "{health:?}");
    eprintln!("well-behaved clients served in {:?}", started.elapsed());

    // Every slow connection is closed once its time is up.
    let within = Duration::from_secs(TIMEOUT_SECS + 3);
    for s in &mut half_sent_data {
        assert!(
            closed_within(s, within).await,
            "a half-sent /data body stayed open"
        );
    }
    for s in &mut half_sent_mgmt {
        assert!(
            closed_within(s, within).await,
            "a half-sent management body stayed open"
        );
    }
    assert!(
        closed_within(&mut half_sent_head, within).await,
        "a half-sent request head stayed open"
    );
    for s in idle.iter_mut().take(50) {
        assert!(
            closed_within(s, within).await,
            "a silent connection stayed open"
        );
    }
    // and the listener still serves
    let again = tokio::time::timeout(quickly, partner.get_json(&url))
        .await
        .expect("served after the slow connections are gone");
    assert!(again.is_ok(), "{again:?}");
}

/// Issue 17, item 14: the template's API key and a plain-HTTP management listener off
/// loopback do not start silently.
#[test]
fn unsafe_management_settings_are_refused_or_announced() {
    let dir = tempfile::tempdir().unwrap();
    // `sluis init` writes a key of its own
    let init = dir.path().join("init.toml");
    let out = std::process::Command::new(exe())
        .args(["init", "--out"])
        .arg(&init)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&init).unwrap();
    assert!(
        !written.contains("api_key = \"change-me-to-a-long-random-secret\""),
        "init wrote the placeholder key"
    );

    let scn = scenario::prepare(dir.path(), 1_000).unwrap();
    let original = std::fs::read_to_string(&scn.consumer.config).unwrap();
    let serve = |config: &str| {
        std::fs::write(&scn.consumer.config, config).unwrap();
        Running::start(exe(), &scn.consumer, Duration::from_secs(30))
    };
    let placeholder = original.replace(
        &format!("api_key = \"{}\"", scn.consumer.api_key),
        "api_key = \"change-me-to-a-long-random-secret\"",
    );
    let err = format!(
        "{:#}",
        serve(&placeholder)
            .err()
            .expect("the placeholder key is refused")
    );
    assert!(
        err.contains("management.api_key") && err.contains("sluis init"),
        "{err}"
    );

    let open = original.replacen(
        "[management]\nlisten = \"127.0.0.1:0\"",
        "[management]\nlisten = \"0.0.0.0:0\"",
        1,
    );
    assert_ne!(open, original);
    let err = format!(
        "{:#}",
        serve(&open)
            .err()
            .expect("plain HTTP off loopback is refused")
    );
    assert!(err.contains("management.listen"), "{err}");
    assert!(err.contains("allow_plain_http_off_loopback"), "{err}");

    let allowed = open.replacen(
        "[management]\n",
        "[management]\nallow_plain_http_off_loopback = true\n",
        1,
    );
    let running = serve(&allowed).expect("allowed explicitly, it starts");
    let log = std::fs::read_to_string(&running.log).unwrap();
    assert!(
        log.contains("PLAIN HTTP OFF LOOPBACK"),
        "no warning in the log:\n{log}"
    );
}
