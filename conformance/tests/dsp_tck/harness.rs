//! The TCK's side of every scenario: a running `sluis serve` (the connector under test, CUT)
//! and a small DSP endpoint over HTTPS with mutual TLS that plays the counterpart, with its own
//! participant certificate from the same test CA. Every message the CUT sends or answers is
//! checked against the DSP 2025-1 schemas.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluis_connector::client::{PeerClient, PeerError};
use sluis_connector::dsp::schema;
use sluis_connector::mgmt_client::{MgmtClient, segment};
use sluis_connector::scenario::{ParticipantFiles, Running};
use sluis_connector::tls::{self, PeerIdentity, TlsMaterial};
use tokio::sync::mpsc;

/// The CUT's participant id.
pub const CUT_ID: &str = "did:web:cut.tck.example";
/// The TCK's participant id.
pub const TCK_ID: &str = "did:web:tck.tck.example";
/// A third participant of the same data space, party to nothing.
pub const STRANGER_ID: &str = "did:web:stranger.tck.example";
/// The CUT's dataset.
pub const DATASET_ID: &str = "urn:sluis:tck:dataset";
/// The CUT's offer for it.
pub const OFFER_ID: &str = "urn:sluis:tck:offer";
/// The dataset the TCK publishes when it plays the provider.
pub const TCK_DATASET_ID: &str = "urn:sluis:tck:provider-dataset";
/// Its offer.
pub const TCK_OFFER_ID: &str = "urn:sluis:tck:provider-offer";
/// The transfer format of the TCK's configuration.
pub const FORMAT: &str = "HttpData-PULL";

const WAIT: Duration = Duration::from_secs(15);

/// The CUT's offer as published (and the request that means the same).
pub fn cut_offer() -> Value {
    json!({
        "@id": OFFER_ID,
        "@type": "Offer",
        "permission": [{
            "action": "use",
            "constraint": [{ "leftOperand": "purpose", "operator": "eq", "rightOperand": "research" }]
        }]
    })
}

/// A request naming the CUT's offer but asking for more (no purpose constraint).
pub fn broader_offer() -> Value {
    json!({ "@id": OFFER_ID, "@type": "Offer", "target": DATASET_ID, "permission": [{ "action": "use" }] })
}

/// A request naming the CUT's offer and asking for the same.
pub fn matching_offer() -> Value {
    let mut o = cut_offer();
    o["target"] = json!(DATASET_ID);
    o
}

/// The offer the TCK publishes as provider.
pub fn tck_offer() -> Value {
    json!({ "@id": TCK_OFFER_ID, "@type": "Offer", "permission": [{ "action": "use" }] })
}

/// How the CUT is configured for a scenario (`[negotiation]` and `[transfer]` keys).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `provider_mode`.
    pub provider: &'static str,
    /// `otherwise`.
    pub otherwise: &'static str,
    /// `consumer_mode`.
    pub consumer: &'static str,
    /// `[transfer] provider_mode`.
    pub transfer: &'static str,
    /// `[transfer] consumer_resume`: whether a consumer may resume the provider's suspension.
    pub consumer_resume: &'static str,
}

impl Rules {
    /// Everything automatic; requests that differ are counter-offered.
    pub const AUTO: Rules = Rules {
        provider: "auto",
        otherwise: "counter-offer",
        consumer: "auto",
        transfer: "auto",
        consumer_resume: "manual",
    };
    /// Automatic, but requests that differ are terminated.
    pub const TERMINATE: Rules = Rules {
        otherwise: "terminate",
        ..Rules::AUTO
    };
    /// The provider waits for the operator.
    pub const MANUAL: Rules = Rules {
        provider: "manual",
        otherwise: "manual",
        ..Rules::AUTO
    };
    /// Transfers wait for the operator to start them.
    pub const MANUAL_TRANSFER: Rules = Rules {
        transfer: "manual",
        ..Rules::AUTO
    };
}

/// One request the counterpart received from the CUT.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Path under the counterpart's DSP base.
    pub path: String,
    /// The JSON body (`Null` for GET).
    pub body: Value,
    /// What the counterpart answered.
    pub reply: Value,
}

/// What the counterpart answers beyond its defaults, set by a scenario.
#[derive(Default)]
pub struct Script {
    /// Status codes to answer the next POSTs whose path ends with the key, in order.
    pub statuses: Vec<(String, StatusCode)>,
    /// The negotiation state the counterpart reports on `GET /negotiations/{pid}`.
    pub negotiation_state: Option<String>,
    /// How many times the CUT asked for that state.
    pub state_reads: usize,
}

struct Counterpart {
    inbox: mpsc::UnboundedSender<Result<Inbound, String>>,
    script: Arc<Mutex<Script>>,
    dsp_url: String,
}

/// A negotiation as both sides know it.
#[derive(Debug, Clone)]
pub struct Pids {
    /// The provider's process id.
    pub provider: String,
    /// The consumer's process id.
    pub consumer: String,
}

/// One scenario's world: the CUT process and the counterpart.
pub struct Tck {
    _dir: tempfile::TempDir,
    /// The connector under test.
    pub cut: Running,
    /// Its management API.
    pub mgmt: MgmtClient,
    /// The CUT's DSP base URL.
    pub cut_dsp: String,
    /// The counterpart's DSP base URL.
    pub tck_dsp: String,
    /// What the counterpart answers.
    pub script: Arc<Mutex<Script>>,
    client: PeerClient,
    stranger: PeerClient,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Result<Inbound, String>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// The `sluis` binary: `SLUIS_BIN`, or beside this test binary's folder.
fn sluis_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUIS_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let sluis = dir.join("sluis");
    assert!(
        sluis.exists(),
        "{} not found: build it with `cargo build --workspace` or set SLUIS_BIN",
        sluis.display()
    );
    sluis
}

impl Tck {
    /// Starts the CUT with `rules` and the counterpart.
    pub async fn start(rules: Rules) -> Tck {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let ca = tls::create_ca("TCK data-space CA").unwrap();
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        let material = |name: &str, id: &str| {
            let cert = tls::issue_participant_cert(&ca, id, &hosts).unwrap();
            let files = tls::write_participant_files(&root.join(name), &ca, &cert).unwrap();
            TlsMaterial::load(&files).unwrap()
        };
        material("cut/certs", CUT_ID);
        let tck_tls = material("tck", TCK_ID);
        let stranger_tls = material("stranger", STRANGER_ID);

        let (tck_dsp, inbox, script, shutdown) = serve_counterpart(&tck_tls).await;
        let files = write_cut_config(root, rules);
        let cut = tokio::task::spawn_blocking(move || {
            Running::start(&sluis_exe(), &files, Duration::from_secs(60))
        })
        .await
        .unwrap()
        .expect("the CUT starts");
        Tck {
            mgmt: cut.mgmt(),
            cut_dsp: cut.ports.dsp_url.clone(),
            cut,
            tck_dsp,
            script,
            client: PeerClient::new(&tck_tls, WAIT).unwrap(),
            stranger: PeerClient::new(&stranger_tls, WAIT).unwrap(),
            inbox: tokio::sync::Mutex::new(inbox),
            _dir: dir,
            _shutdown: shutdown,
        }
    }

    /// POSTs a message to the CUT as the TCK; returns status and body, with the body checked
    /// against its schema.
    pub async fn post(&self, path: &str, msg: &Value) -> (StatusCode, Value) {
        assert_schema_valid(msg, "the TCK's own message");
        answer(self.client.post_json(&self.url(path), msg).await)
    }

    /// POSTs a body without checking it first (for hostile-input tests).
    pub async fn post_unchecked(&self, path: &str, msg: &Value) -> (StatusCode, Value) {
        answer(self.client.post_json(&self.url(path), msg).await)
    }

    /// GETs a document from the CUT as the TCK.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.client.get_json(&self.url(path)).await)
    }

    /// POSTs as a participant who is party to nothing.
    pub async fn post_as_stranger(&self, path: &str, msg: &Value) -> (StatusCode, Value) {
        answer(self.stranger.post_json(&self.url(path), msg).await)
    }

    /// GETs a document from the CUT as a participant who is party to nothing.
    pub async fn get_as_stranger(&self, path: &str) -> (StatusCode, Value) {
        answer(self.stranger.get_json(&self.url(path)).await)
    }

    /// GETs a document at the root of the CUT's protocol listener.
    pub async fn get_root(&self, path: &str) -> (StatusCode, Value) {
        let root = self.cut_dsp.trim_end_matches('/').trim_end_matches("/dsp");
        answer(self.client.get_json(&format!("{root}{path}")).await)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.cut_dsp.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    /// The next message the CUT sent to the counterpart; it must be a POST of `type_name`.
    pub async fn expect(&self, type_name: &str) -> Inbound {
        let got = tokio::time::timeout(WAIT, self.inbox.lock().await.recv())
            .await
            .unwrap_or_else(|_| panic!("no {type_name} from the CUT within {WAIT:?}"))
            .expect("counterpart running")
            .unwrap_or_else(|e| panic!("the CUT sent an invalid message: {e}"));
        assert_eq!(
            got.body["@type"], type_name,
            "expected {type_name}, got {got:?}"
        );
        got
    }

    /// Asserts that the CUT sends nothing more for `ms` milliseconds.
    pub async fn expect_silence(&self, ms: u64) {
        let got =
            tokio::time::timeout(Duration::from_millis(ms), self.inbox.lock().await.recv()).await;
        assert!(got.is_err(), "unexpected message from the CUT: {got:?}");
    }

    // ---- negotiation, the CUT as provider ---------------------------------------------------

    /// Sends an initial `ContractRequestMessage`; the CUT must answer 201 REQUESTED.
    pub async fn request(&self, offer: Value) -> Pids {
        let consumer = new_pid();
        let msg = message(
            "ContractRequestMessage",
            json!({ "consumerPid": consumer, "offer": offer, "callbackAddress": self.tck_dsp }),
        );
        let (status, body) = self.post("negotiations/request", &msg).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["@type"], "ContractNegotiation");
        assert_eq!(body["consumerPid"], consumer.as_str());
        assert_eq!(body["state"], "REQUESTED");
        Pids {
            provider: body["providerPid"].as_str().unwrap().to_string(),
            consumer,
        }
    }

    /// Sends a counter-request on an existing negotiation and returns the answer.
    pub async fn counter_request(&self, p: &Pids, offer: Value) -> (StatusCode, Value) {
        let msg = message(
            "ContractRequestMessage",
            json!({ "providerPid": p.provider, "consumerPid": p.consumer, "offer": offer }),
        );
        self.post(&format!("negotiations/{}/request", seg(&p.provider)), &msg)
            .await
    }

    /// Sends a `ContractNegotiationEventMessage` to the CUT playing `cut`.
    pub async fn event(&self, p: &Pids, cut: Side, event: &str) -> (StatusCode, Value) {
        let msg = ids_message(
            "ContractNegotiationEventMessage",
            p,
            json!({ "eventType": event }),
        );
        self.post(&format!("negotiations/{}/events", seg(cut.pid(p))), &msg)
            .await
    }

    /// The ACCEPTED event to the CUT as provider.
    pub async fn accepted(&self, p: &Pids) -> (StatusCode, Value) {
        self.event(p, Side::Provider, "ACCEPTED").await
    }

    /// Sends `ContractAgreementVerificationMessage` to the CUT as provider.
    pub async fn verification(&self, p: &Pids) -> (StatusCode, Value) {
        let msg = ids_message("ContractAgreementVerificationMessage", p, json!({}));
        let path = format!("negotiations/{}/agreement/verification", seg(&p.provider));
        self.post(&path, &msg).await
    }

    /// Terminates a negotiation; `cut` is the CUT's role.
    pub async fn terminate_negotiation(&self, p: &Pids, cut: Side) -> (StatusCode, Value) {
        let msg = ids_message(
            "ContractNegotiationTerminationMessage",
            p,
            json!({"code": "tck", "reason": ["terminated by the TCK"]}),
        );
        let path = format!("negotiations/{}/termination", seg(cut.pid(p)));
        self.post(&path, &msg).await
    }

    /// The CUT's state of a negotiation, read over DSP as the TCK (schema-checked).
    pub async fn negotiation_state(&self, p: &Pids, cut: Side) -> String {
        let (status, body) = self.get(&format!("negotiations/{}", seg(cut.pid(p)))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["@type"], "ContractNegotiation");
        body["state"].as_str().unwrap().to_string()
    }

    /// Asserts the CUT's final negotiation state.
    pub async fn assert_negotiation(&self, p: &Pids, cut: Side, state: &str) {
        assert_eq!(self.negotiation_state(p, cut).await, state);
    }

    /// A management action on a CUT process (`negotiations` or `transfers`).
    pub async fn operator(&self, kind: &str, id: &str, action: &str) -> Value {
        self.operator_with(kind, id, action, json!({})).await
    }

    /// A management action with a body.
    pub async fn operator_with(&self, kind: &str, id: &str, action: &str, body: Value) -> Value {
        self.mgmt
            .post(&format!("{kind}/{}/{action}", segment(id)), &body)
            .await
            .unwrap_or_else(|e| panic!("operator {action} on {id}: {e:#}"))
    }

    /// A full negotiation with the CUT as provider, to FINALIZED; returns the agreement id.
    pub async fn agreement_from_cut(&self) -> String {
        let p = self.request(matching_offer()).await;
        let agreement = self.expect("ContractAgreementMessage").await;
        assert_ok(self.verification(&p).await);
        let fin = self.expect("ContractNegotiationEventMessage").await;
        assert_eq!(fin.body["eventType"], "FINALIZED");
        agreement.body["agreement"]["@id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    // ---- negotiation, the CUT as consumer ---------------------------------------------------

    /// Signals the CUT to negotiate for the TCK's dataset; returns the pids once the
    /// `ContractRequestMessage` arrived (the counterpart answered with a new providerPid).
    pub async fn start_negotiation(&self) -> Pids {
        let start = json!({
            "datasetId": TCK_DATASET_ID,
            "offerId": TCK_OFFER_ID,
            "providerId": TCK_ID,
            "connectorAddress": self.tck_dsp,
        });
        let (req, p) = self
            .signal(
                "negotiations",
                "negotiation",
                &start,
                "ContractRequestMessage",
            )
            .await;
        assert_eq!(req.path, "/negotiations/request");
        p
    }

    /// Signals the CUT (as the operator) to start a process; waits for the request it sends
    /// and until it recorded the providerPid the counterpart answered with.
    async fn signal(
        &self,
        kind: &str,
        key: &str,
        start: &Value,
        type_name: &str,
    ) -> (Inbound, Pids) {
        let started = self
            .mgmt
            .post(kind, start)
            .await
            .unwrap_or_else(|e| panic!("the CUT does not start a {key}: {e:#}"));
        let req = self.expect(type_name).await;
        assert_eq!(req.body["consumerPid"], started["id"]);
        let p = Pids {
            provider: req.reply["providerPid"].as_str().unwrap().to_string(),
            consumer: req.body["consumerPid"].as_str().unwrap().to_string(),
        };
        self.await_provider_pid(kind, key, &p).await;
        (req, p)
    }

    /// Sends a `ContractOfferMessage` to the CUT as consumer.
    pub async fn offer(&self, p: &Pids, offer: Value) -> (StatusCode, Value) {
        let msg = ids_message("ContractOfferMessage", p, json!({ "offer": offer }));
        self.post(&format!("negotiations/{}/offers", seg(&p.consumer)), &msg)
            .await
    }

    /// Sends a `ContractAgreementMessage` for the TCK's offer to the CUT as consumer.
    pub async fn agreement(&self, p: &Pids) -> (StatusCode, Value) {
        let mut agreement = tck_offer();
        agreement["@id"] = json!(new_pid());
        agreement["@type"] = json!("Agreement");
        agreement["target"] = json!(TCK_DATASET_ID);
        agreement["assigner"] = json!(TCK_ID);
        agreement["assignee"] = json!(CUT_ID);
        agreement["timestamp"] = json!("2026-11-25T00:00:00Z");
        let msg = ids_message(
            "ContractAgreementMessage",
            p,
            json!({ "agreement": agreement }),
        );
        self.post(
            &format!("negotiations/{}/agreement", seg(&p.consumer)),
            &msg,
        )
        .await
    }

    /// The FINALIZED event to the CUT as consumer.
    pub async fn finalized(&self, p: &Pids) -> (StatusCode, Value) {
        self.event(p, Side::Consumer, "FINALIZED").await
    }

    /// A full negotiation with the CUT as consumer, to FINALIZED; returns the agreement id.
    pub async fn agreement_for_cut(&self) -> String {
        let p = self.start_negotiation().await;
        let (status, _) = self.agreement(&p).await;
        assert_eq!(status, StatusCode::OK);
        self.expect("ContractAgreementVerificationMessage").await;
        assert_ok(self.finalized(&p).await);
        self.assert_negotiation(&p, Side::Consumer, "FINALIZED")
            .await;
        let n = self
            .mgmt
            .get(&format!("negotiations/{}", segment(&p.consumer)))
            .await
            .unwrap();
        n["negotiation"]["agreementId"]
            .as_str()
            .expect("the CUT records the agreement")
            .to_string()
    }

    // ---- transfer ---------------------------------------------------------------------------

    /// Sends a `TransferRequestMessage` under an agreement; the CUT must answer 201 REQUESTED.
    pub async fn transfer_request(&self, agreement_id: &str) -> Pids {
        let consumer = new_pid();
        let msg = message(
            "TransferRequestMessage",
            json!({
                "consumerPid": consumer,
                "agreementId": agreement_id,
                "format": FORMAT,
                "callbackAddress": self.tck_dsp,
            }),
        );
        let (status, body) = self.post("transfers/request", &msg).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["@type"], "TransferProcess");
        assert_eq!(body["state"], "REQUESTED");
        Pids {
            provider: body["providerPid"].as_str().unwrap().to_string(),
            consumer,
        }
    }

    /// Signals the CUT to request a transfer from the TCK; returns the pids once the
    /// `TransferRequestMessage` arrived.
    pub async fn start_transfer(&self, agreement_id: &str) -> Pids {
        let start = json!({
            "agreementId": agreement_id,
            "format": FORMAT,
            "providerId": TCK_ID,
            "connectorAddress": self.tck_dsp,
        });
        let (req, p) = self
            .signal("transfers", "transfer", &start, "TransferRequestMessage")
            .await;
        assert_eq!(req.body["agreementId"], agreement_id);
        p
    }

    /// Waits until the CUT (consumer) recorded the providerPid of the counterpart's answer,
    /// which it reads after the counterpart answered.
    async fn await_provider_pid(&self, kind: &str, key: &str, p: &Pids) {
        let path = format!("{kind}/{}", segment(&p.consumer));
        for _ in 0..500 {
            let got = self.mgmt.get(&path).await.unwrap();
            if got[key]["providerPid"] == p.provider.as_str() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the CUT never recorded providerPid {}", p.provider);
    }

    /// Sends a transfer message (`start`, `suspension`, `completion`, `termination`) to the CUT.
    pub async fn transfer_message(&self, p: &Pids, cut: Side, what: &str) -> (StatusCode, Value) {
        let (type_name, extra) = match what {
            "start" => ("TransferStartMessage", json!({})),
            "suspension" => (
                "TransferSuspensionMessage",
                json!({"code": "tck", "reason": ["suspended by the TCK"]}),
            ),
            "completion" => ("TransferCompletionMessage", json!({})),
            "termination" => (
                "TransferTerminationMessage",
                json!({"code": "tck", "reason": ["terminated by the TCK"]}),
            ),
            other => panic!("no transfer message {other}"),
        };
        let mut msg = ids_message(type_name, p, extra);
        if what == "start" && cut == Side::Consumer {
            msg["dataAddress"] = json!({
                "@type": "DataAddress",
                "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
                "endpoint": "https://tck.example/data",
                "endpointProperties": [
                    {"@type": "EndpointProperty", "name": "authorization", "value": "token"}
                ]
            });
        }
        let path = format!("transfers/{}/{what}", seg(cut.pid(p)));
        self.post(&path, &msg).await
    }

    /// Asserts the CUT's transfer state, read over DSP as the TCK (schema-checked).
    pub async fn assert_transfer(&self, p: &Pids, cut: Side, state: &str) {
        let (status, body) = self.get(&format!("transfers/{}", seg(cut.pid(p)))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["@type"], "TransferProcess");
        assert_eq!(body["state"], state, "{body}");
    }
}

impl Drop for Tck {
    /// A failed scenario shows the CUT's log.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.cut.log).unwrap_or_default();
            eprintln!("---- log of the connector under test ----\n{log}");
        }
    }
}

/// Which role the CUT plays in a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The CUT is the provider.
    Provider,
    /// The CUT is the consumer.
    Consumer,
}

impl Side {
    /// The CUT's pid.
    pub fn pid(self, p: &Pids) -> &str {
        match self {
            Side::Provider => &p.provider,
            Side::Consumer => &p.consumer,
        }
    }
}

/// A new process id.
pub fn new_pid() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

fn seg(id: &str) -> String {
    segment(id)
}

/// A DSP message with `@context` and `@type`.
pub fn message(type_name: &str, fields: Value) -> Value {
    sluis_connector::dsp::messages::message(type_name, fields)
}

/// A message carrying both pids.
pub fn ids_message(type_name: &str, p: &Pids, mut extra: Value) -> Value {
    extra["providerPid"] = json!(p.provider);
    extra["consumerPid"] = json!(p.consumer);
    message(type_name, extra)
}

/// A body with a DSP `@type` must match its schema.
pub fn assert_schema_valid(body: &Value, what: &str) {
    if let Some(t) = body.get("@type").and_then(Value::as_str) {
        assert!(schema::knows(t), "{what}: no schema for @type {t}");
        if let Err(e) = schema::validate(t, body) {
            panic!("{what} is not schema-valid: {e}\n{body:#}");
        }
    }
}

fn answer(result: Result<(StatusCode, Value), PeerError>) -> (StatusCode, Value) {
    let (status, body) = match result {
        Ok(ok) => ok,
        Err(PeerError::Refused { status, body, .. }) => (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ),
        Err(e) => panic!("calling the CUT failed: {e}"),
    };
    assert_schema_valid(&body, "the CUT's answer");
    (status, body)
}

/// Asserts a 200 answer.
pub fn assert_ok((status, body): (StatusCode, Value)) {
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Asserts a 4xx answer with the DSP error type of the protocol.
pub fn assert_refused((status, body): (StatusCode, Value), error_type: &str) {
    assert!(
        status.is_client_error(),
        "expected 4xx, got {status}: {body}"
    );
    assert_eq!(body["@type"], error_type, "{body}");
}

/// Asserts a 400 answer for an illegal transition.
pub fn assert_illegal(answer: (StatusCode, Value), error_type: &str) {
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    assert_refused(answer, error_type);
}

fn write_cut_config(root: &std::path::Path, rules: Rules) -> ParticipantFiles {
    let dir = root.join("cut");
    sluis_connector::sample::generate_meter_readings(&dir.join("data.parquet"), 10, 1).unwrap();
    std::fs::write(dir.join("offer.json"), cut_offer().to_string()).unwrap();
    let api_key = format!("tck-{}", uuid::Uuid::new_v4().simple());
    let Rules {
        provider,
        otherwise,
        consumer,
        transfer,
        consumer_resume,
    } = rules;
    let text = format!(
        r#"{}
[negotiation]
provider_mode = "{provider}"
otherwise = "{otherwise}"
consumer_mode = "{consumer}"

[transfer]
provider_mode = "{transfer}"
consumer_resume = "{consumer_resume}"

[[dataset]]
id = "{DATASET_ID}"
title = "TCK dataset"
source = {{ kind = "parquet", location = "data.parquet" }}
offer_files = ["offer.json"]
"#,
        sluis_connector::scenario::loopback_config(CUT_ID, &api_key)
    );
    let config = dir.join("sluis.toml");
    std::fs::write(&config, text).unwrap();
    ParticipantFiles {
        id: CUT_ID.into(),
        dir,
        config,
        api_key,
    }
}

type Started = (
    String,
    mpsc::UnboundedReceiver<Result<Inbound, String>>,
    Arc<Mutex<Script>>,
    tokio::sync::oneshot::Sender<()>,
);

/// Serves the counterpart on a free loopback port over mutual TLS.
async fn serve_counterpart(tls: &TlsMaterial) -> Started {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dsp_url = format!(
        "https://127.0.0.1:{}/dsp",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(Script::default()));
    let state = Arc::new(Counterpart {
        inbox: tx,
        script: script.clone(),
        dsp_url: dsp_url.clone(),
    });
    let app = Router::new().fallback(handle).with_state(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_tls = tls.protocol_server_config().unwrap();
    tokio::spawn(sluis_connector::server::serve_tls(
        listener,
        server_tls,
        app,
        sluis_connector::server::Limits::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    (dsp_url, rx, script, stop)
}

/// The counterpart's one handler: check the caller and the message, record it, answer as the
/// sequence diagrams show.
async fn handle(State(cp): State<Arc<Counterpart>>, req: Request) -> Response {
    let caller = req
        .extensions()
        .get::<Option<PeerIdentity>>()
        .cloned()
        .flatten()
        .map(|p| p.0);
    let method = req.method().clone();
    let path = req
        .uri()
        .path()
        .strip_prefix("/dsp")
        .unwrap_or(req.uri().path())
        .to_string();
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    if caller.as_deref() != Some(CUT_ID) {
        let _ = cp
            .inbox
            .send(Err(format!("{method} {path} from {caller:?}, not the CUT")));
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if method == Method::GET {
        return get_answer(&cp, &path);
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let _ = cp.inbox.send(Err(format!("{path}: not JSON: {e}")));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let type_name = body["@type"].as_str().unwrap_or_default();
    if let Err(e) = schema::validate(type_name, &body) {
        let _ = cp.inbox.send(Err(format!("{path}: {e}")));
        return StatusCode::BAD_REQUEST.into_response();
    }
    let scripted = {
        let mut script = cp.script.lock().unwrap();
        let at = script
            .statuses
            .iter()
            .position(|(s, _)| path.ends_with(s.as_str()));
        at.map(|i| script.statuses.remove(i).1)
    };
    let (status, reply) = match (scripted, path.as_str()) {
        (Some(status), _) => (status, Value::Null),
        (None, "/negotiations/request") => (
            StatusCode::CREATED,
            process(
                "ContractNegotiation",
                &new_pid(),
                &body["consumerPid"],
                "REQUESTED",
            ),
        ),
        (None, p) if p.starts_with("/negotiations/") && p.ends_with("/request") => (
            StatusCode::OK,
            process(
                "ContractNegotiation",
                body["providerPid"].as_str().unwrap_or_default(),
                &body["consumerPid"],
                "REQUESTED",
            ),
        ),
        (None, "/transfers/request") => (
            StatusCode::CREATED,
            process(
                "TransferProcess",
                &new_pid(),
                &body["consumerPid"],
                "REQUESTED",
            ),
        ),
        _ => (StatusCode::OK, Value::Null),
    };
    if status.is_success() {
        let _ = cp.inbox.send(Ok(Inbound {
            path,
            body,
            reply: reply.clone(),
        }));
    }
    if reply.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(reply)).into_response()
    }
}

fn process(type_name: &str, provider: &str, consumer: &Value, state: &str) -> Value {
    message(
        type_name,
        json!({ "providerPid": provider, "consumerPid": consumer, "state": state }),
    )
}

/// GET answers: the TCK's dataset, and the state it reports for a negotiation.
fn get_answer(cp: &Counterpart, path: &str) -> Response {
    if path.starts_with("/catalog/datasets/") {
        let dataset = message(
            "Dataset",
            json!({
                "@id": TCK_DATASET_ID,
                "hasPolicy": [tck_offer()],
                "distribution": [{
                    "@type": "Distribution",
                    "format": FORMAT,
                    "accessService": { "@id": format!("{TCK_ID}#dsp"), "@type": "DataService", "endpointURL": cp.dsp_url }
                }]
            }),
        );
        return axum::Json(dataset).into_response();
    }
    let mut script = cp.script.lock().unwrap();
    if let Some(pid) = path.strip_prefix("/negotiations/")
        && let Some(state) = script.negotiation_state.clone()
    {
        script.state_reads += 1;
        let pid = pid.to_string();
        return axum::Json(process(
            "ContractNegotiation",
            &pid,
            &json!("unknown"),
            &state,
        ))
        .into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}
