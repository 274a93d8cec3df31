//! The Eclipse DSP TCK's 67 scenarios (`../shared/spec/dsp-tck-plan.md`), replayed over real
//! HTTPS with mutual TLS against a running `sluis serve`. Each test is named by its scenario
//! id (`CN:01-03` is `cn_01_03`). The test plays the TCK: it sends the counterpart's
//! messages, answers the connector's, drives the connector through its management API (the
//! "signals" of the sequence diagrams and the operator's actions), validates every message
//! against the DSP 2025-1 schemas, and asserts status codes and final states.

#[path = "dsp_tck/harness.rs"]
mod harness;

use harness::{
    DATASET_ID, Pids, Rules, STRANGER_ID, Side, TCK_DATASET_ID, Tck, assert_illegal, assert_ok,
    assert_refused, broader_offer, ids_message, matching_offer, message, tck_offer,
};
use serde_json::{Value, json};
use sluis_connector::dsp::schema;
use sluis_connector::mgmt_client::segment;

const NEG_ERROR: &str = "ContractNegotiationError";
const TR_ERROR: &str = "TransferError";
const P: Side = Side::Provider;
const C: Side = Side::Consumer;

macro_rules! tck_test {
    ($name:ident, $body:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $body.await
        }
    };
}

// ---- catalogue and metadata -----------------------------------------------------------------

tck_test!(cat_01_01, async {
    let t = Tck::start(Rules::AUTO).await;
    let msg = message("CatalogRequestMessage", json!({ "filter": [] }));
    let (status, body) = t.post("catalog/request", &msg).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["@type"], "Catalog");
    assert!(body.to_string().contains(DATASET_ID), "{body}");
});

tck_test!(cat_01_02, async {
    let t = Tck::start(Rules::AUTO).await;
    let (status, body) = t.get(&format!("catalog/datasets/{DATASET_ID}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["@type"], "Dataset");
    assert_eq!(body["@id"], DATASET_ID);
});

tck_test!(cat_01_03, async {
    let t = Tck::start(Rules::AUTO).await;
    let answer = t
        .get("catalog/datasets/urn:sluis:tck:no-such-dataset")
        .await;
    assert_eq!(answer.0, 404);
    assert_refused(answer, "CatalogError");
});

tck_test!(met_01_01, async {
    let t = Tck::start(Rules::AUTO).await;
    let (status, body) = t.get_root("/.well-known/dspace-version").await;
    assert_eq!(status, 200, "{body}");
    schema::validate("VersionResponse", &body).unwrap();
    assert_eq!(body["protocolVersions"][0]["version"], "2025-1");
});

// ---- contract negotiation, the connector as provider ------------------------------------------

/// The TCK requests more than the offer; the connector counter-offers.
async fn counter_offered(rules: Rules) -> (Tck, Pids) {
    let t = Tck::start(rules).await;
    let p = t.request(broader_offer()).await;
    if rules.provider == "manual" {
        t.operator("negotiations", &p.provider, "offer").await;
    }
    let offer = t.expect("ContractOfferMessage").await;
    assert_eq!(offer.body["offer"]["@id"], harness::OFFER_ID);
    assert_eq!(offer.body["offer"]["target"], DATASET_ID);
    (t, p)
}

/// The TCK requests exactly the offer; the connector agrees.
async fn agreed(rules: Rules) -> (Tck, Pids) {
    let t = Tck::start(rules).await;
    let p = t.request(matching_offer()).await;
    if rules.provider == "manual" {
        t.operator("negotiations", &p.provider, "agree").await;
    }
    let msg = t.expect("ContractAgreementMessage").await;
    let a = &msg.body["agreement"];
    assert_eq!(a["@type"], "Agreement");
    assert_eq!(a["target"], DATASET_ID);
    assert_eq!(a["assigner"], harness::CUT_ID);
    assert_eq!(a["assignee"], harness::TCK_ID);
    assert!(a["@id"].is_string() && a["timestamp"].is_string(), "{a}");
    (t, p)
}

async fn expect_finalized(t: &Tck) {
    let fin = t.expect("ContractNegotiationEventMessage").await;
    assert_eq!(fin.body["eventType"], "FINALIZED");
}

tck_test!(cn_01_01, async {
    let (t, p) = counter_offered(Rules::AUTO).await;
    assert_ok(t.terminate_negotiation(&p, P).await);
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_01_02, async {
    let (t, p) = counter_offered(Rules::AUTO).await;
    let (status, body) = t.counter_request(&p, broader_offer()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["@type"], "ContractNegotiation");
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_01_03, async {
    let (t, p) = counter_offered(Rules::AUTO).await;
    assert_ok(t.accepted(&p).await);
    t.expect("ContractAgreementMessage").await;
    assert_ok(t.verification(&p).await);
    expect_finalized(&t).await;
    t.assert_negotiation(&p, P, "FINALIZED").await;
});

tck_test!(cn_01_04, async {
    let (t, p) = agreed(Rules::AUTO).await;
    assert_ok(t.verification(&p).await);
    expect_finalized(&t).await;
    t.assert_negotiation(&p, P, "FINALIZED").await;
});

tck_test!(cn_02_01, async {
    let t = Tck::start(Rules::TERMINATE).await;
    let p = t.request(broader_offer()).await;
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_02_02, async {
    let t = Tck::start(Rules::MANUAL).await;
    let p = t.request(matching_offer()).await;
    t.expect_silence(200).await;
    assert_ok(t.terminate_negotiation(&p, P).await);
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_02_03, async {
    let (t, p) = agreed(Rules::AUTO).await;
    assert_ok(t.terminate_negotiation(&p, P).await);
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_02_04, async {
    let (t, p) = counter_offered(Rules::AUTO).await;
    assert_ok(t.terminate_negotiation(&p, P).await);
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_02_05, async {
    let (t, p) = counter_offered(Rules::MANUAL).await;
    t.operator("negotiations", &p.provider, "terminate").await;
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_02_06, async {
    let (t, p) = counter_offered(Rules::MANUAL).await;
    assert_ok(t.accepted(&p).await);
    t.assert_negotiation(&p, P, "ACCEPTED").await;
    t.operator("negotiations", &p.provider, "terminate").await;
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_02_07, async {
    let (t, p) = agreed(Rules::MANUAL).await;
    assert_ok(t.verification(&p).await);
    t.assert_negotiation(&p, P, "VERIFIED").await;
    t.operator("negotiations", &p.provider, "terminate").await;
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, P, "TERMINATED").await;
});

tck_test!(cn_03_01, async {
    let (t, p) = agreed(Rules::AUTO).await;
    assert_ok(t.verification(&p).await);
    expect_finalized(&t).await;
    assert_illegal(t.terminate_negotiation(&p, P).await, NEG_ERROR);
    t.assert_negotiation(&p, P, "FINALIZED").await;
});

tck_test!(cn_03_02, async {
    let (t, p) = counter_offered(Rules::AUTO).await;
    assert_illegal(t.verification(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, P, "OFFERED").await;
});

tck_test!(cn_03_03, async {
    let (t, p) = counter_offered(Rules::MANUAL).await;
    assert_ok(t.accepted(&p).await);
    assert_illegal(t.verification(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, P, "ACCEPTED").await;
});

tck_test!(cn_03_04, async {
    // The TCK sends the identical ContractRequestMessage twice: in REQUESTED a request has
    // no transition, so the repeat is refused, whatever offer it carries.
    let (t, p) = counter_offered(Rules::MANUAL).await;
    let (status, _) = t.counter_request(&p, broader_offer()).await;
    assert_eq!(status, 200);
    assert_illegal(t.counter_request(&p, broader_offer()).await, NEG_ERROR);
    let mut other = broader_offer();
    other["permission"][0]["action"] = json!("read");
    assert_illegal(t.counter_request(&p, other).await, NEG_ERROR);
    t.assert_negotiation(&p, P, "REQUESTED").await;
    t.expect_silence(200).await;
});

// ---- contract negotiation, the connector as consumer ------------------------------------------

/// The TCK's offer as the consumer requested it (so the consumer accepts it on its own).
fn same_offer() -> Value {
    let mut o = tck_offer();
    o["target"] = json!(TCK_DATASET_ID);
    o
}

/// An offer that differs from the request (the consumer waits for its operator).
fn other_offer() -> Value {
    let mut o = same_offer();
    o["permission"][0]["constraint"] =
        json!([{ "leftOperand": "purpose", "operator": "eq", "rightOperand": "research" }]);
    o
}

/// The connector requested; the TCK offered `offer`.
async fn offered(rules: Rules, offer: Value) -> (Tck, Pids) {
    let t = Tck::start(rules).await;
    let p = t.start_negotiation().await;
    assert_ok(t.offer(&p, offer).await);
    (t, p)
}

/// The connector accepted the TCK's offer.
async fn accepted_offer() -> (Tck, Pids) {
    let (t, p) = offered(Rules::AUTO, same_offer()).await;
    let ev = t.expect("ContractNegotiationEventMessage").await;
    assert_eq!(ev.body["eventType"], "ACCEPTED");
    (t, p)
}

const MANUAL_CONSUMER: Rules = Rules {
    consumer: "manual",
    ..Rules::AUTO
};

tck_test!(cn_c_01_01, async {
    let (t, p) = accepted_offer().await;
    assert_ok(t.agreement(&p).await);
    t.expect("ContractAgreementVerificationMessage").await;
    assert_ok(t.finalized(&p).await);
    t.assert_negotiation(&p, C, "FINALIZED").await;
});

tck_test!(cn_c_01_02, async {
    let (t, p) = offered(Rules::AUTO, other_offer()).await;
    t.assert_negotiation(&p, C, "OFFERED").await;
    t.operator_with(
        "negotiations",
        &p.consumer,
        "request",
        json!({ "offer": same_offer() }),
    )
    .await;
    let req = t.expect("ContractRequestMessage").await;
    assert_eq!(req.path, format!("/negotiations/{}/request", p.provider));
    assert_ok(t.terminate_negotiation(&p, C).await);
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_01_03, async {
    let (t, p) = offered(Rules::AUTO, other_offer()).await;
    t.operator("negotiations", &p.consumer, "terminate").await;
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_01_04, async {
    let t = Tck::start(Rules::AUTO).await;
    let p = t.start_negotiation().await;
    assert_ok(t.agreement(&p).await);
    t.expect("ContractAgreementVerificationMessage").await;
    assert_ok(t.finalized(&p).await);
    t.assert_negotiation(&p, C, "FINALIZED").await;
});

tck_test!(cn_c_02_01, async {
    let t = Tck::start(Rules::AUTO).await;
    let p = t.start_negotiation().await;
    assert_ok(t.terminate_negotiation(&p, C).await);
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_02_02, async {
    let t = Tck::start(Rules::AUTO).await;
    let p = t.start_negotiation().await;
    t.operator("negotiations", &p.consumer, "terminate").await;
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_02_03, async {
    let t = Tck::start(MANUAL_CONSUMER).await;
    let p = t.start_negotiation().await;
    assert_ok(t.agreement(&p).await);
    t.operator("negotiations", &p.consumer, "terminate").await;
    t.expect("ContractNegotiationTerminationMessage").await;
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_02_04, async {
    let (t, p) = offered(Rules::AUTO, other_offer()).await;
    assert_ok(t.terminate_negotiation(&p, C).await);
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_02_05, async {
    let (t, p) = accepted_offer().await;
    assert_ok(t.terminate_negotiation(&p, C).await);
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_02_06, async {
    let t = Tck::start(Rules::AUTO).await;
    let p = t.start_negotiation().await;
    assert_ok(t.agreement(&p).await);
    t.expect("ContractAgreementVerificationMessage").await;
    assert_ok(t.terminate_negotiation(&p, C).await);
    t.assert_negotiation(&p, C, "TERMINATED").await;
});

tck_test!(cn_c_03_01, async {
    let t = Tck::start(Rules::AUTO).await;
    let p = t.start_negotiation().await;
    assert_illegal(t.finalized(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, C, "REQUESTED").await;
});

tck_test!(cn_c_03_02, async {
    let (t, p) = offered(Rules::AUTO, other_offer()).await;
    assert_illegal(t.agreement(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, C, "OFFERED").await;
});

tck_test!(cn_c_03_03, async {
    let (t, p) = offered(Rules::AUTO, other_offer()).await;
    assert_illegal(t.finalized(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, C, "OFFERED").await;
});

tck_test!(cn_c_03_04, async {
    let (t, p) = accepted_offer().await;
    assert_illegal(t.finalized(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, C, "ACCEPTED").await;
});

tck_test!(cn_c_03_05, async {
    let (t, p) = accepted_offer().await;
    assert_illegal(t.offer(&p, same_offer()).await, NEG_ERROR);
    t.assert_negotiation(&p, C, "ACCEPTED").await;
});

tck_test!(cn_c_03_06, async {
    let (t, p) = offered(MANUAL_CONSUMER, same_offer()).await;
    t.operator("negotiations", &p.consumer, "accept").await;
    t.expect("ContractNegotiationEventMessage").await;
    assert_ok(t.agreement(&p).await);
    assert_illegal(t.finalized(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, C, "AGREED").await;
});

// ---- transfer process, the connector as provider ----------------------------------------------

/// The TCK negotiated an agreement with the connector and requested a transfer under it.
async fn transfer_requested(rules: Rules) -> (Tck, Pids) {
    let t = Tck::start(rules).await;
    let agreement = t.agreement_from_cut().await;
    let p = t.transfer_request(&agreement).await;
    (t, p)
}

/// ... and the connector started it.
async fn transfer_started() -> (Tck, Pids) {
    let (t, p) = transfer_requested(Rules::AUTO).await;
    let start = t.expect("TransferStartMessage").await;
    let address = &start.body["dataAddress"];
    assert_eq!(address["@type"], "DataAddress", "{}", start.body);
    (t, p)
}

/// The operator acts on the connector's transfer and the TCK receives `type_name`.
async fn operator_transfer(t: &Tck, id: &str, action: &str, type_name: &str) {
    t.operator("transfers", id, action).await;
    t.expect(type_name).await;
}

tck_test!(tp_01_01, async {
    let (t, p) = transfer_started().await;
    operator_transfer(&t, &p.provider, "terminate", "TransferTerminationMessage").await;
    t.assert_transfer(&p, P, "TERMINATED").await;
});

tck_test!(tp_01_02, async {
    let (t, p) = transfer_started().await;
    operator_transfer(&t, &p.provider, "complete", "TransferCompletionMessage").await;
    t.assert_transfer(&p, P, "COMPLETED").await;
});

tck_test!(tp_01_03, async {
    let (t, p) = transfer_started().await;
    operator_transfer(&t, &p.provider, "suspend", "TransferSuspensionMessage").await;
    t.assert_transfer(&p, P, "SUSPENDED").await;
    operator_transfer(&t, &p.provider, "terminate", "TransferTerminationMessage").await;
    t.assert_transfer(&p, P, "TERMINATED").await;
});

tck_test!(tp_01_04, async {
    let (t, p) = transfer_started().await;
    operator_transfer(&t, &p.provider, "suspend", "TransferSuspensionMessage").await;
    operator_transfer(&t, &p.provider, "resume", "TransferStartMessage").await;
    t.assert_transfer(&p, P, "STARTED").await;
    operator_transfer(&t, &p.provider, "complete", "TransferCompletionMessage").await;
    t.assert_transfer(&p, P, "COMPLETED").await;
});

tck_test!(tp_01_05, async {
    let (t, p) = transfer_requested(Rules::MANUAL_TRANSFER).await;
    operator_transfer(&t, &p.provider, "terminate", "TransferTerminationMessage").await;
    t.assert_transfer(&p, P, "TERMINATED").await;
});

tck_test!(tp_02_01, async {
    let (t, p) = transfer_started().await;
    assert_ok(t.transfer_message(&p, P, "termination").await);
    t.assert_transfer(&p, P, "TERMINATED").await;
});

tck_test!(tp_02_02, async {
    let (t, p) = transfer_started().await;
    assert_ok(t.transfer_message(&p, P, "completion").await);
    t.assert_transfer(&p, P, "COMPLETED").await;
});

tck_test!(tp_02_03, async {
    let (t, p) = transfer_started().await;
    assert_ok(t.transfer_message(&p, P, "suspension").await);
    t.assert_transfer(&p, P, "SUSPENDED").await;
    assert_ok(t.transfer_message(&p, P, "termination").await);
    t.assert_transfer(&p, P, "TERMINATED").await;
});

tck_test!(tp_02_04, async {
    let (t, p) = transfer_started().await;
    assert_ok(t.transfer_message(&p, P, "suspension").await);
    assert_ok(t.transfer_message(&p, P, "start").await);
    t.assert_transfer(&p, P, "STARTED").await;
    assert_ok(t.transfer_message(&p, P, "completion").await);
    t.assert_transfer(&p, P, "COMPLETED").await;
});

tck_test!(tp_02_05, async {
    let (t, p) = transfer_requested(Rules::MANUAL_TRANSFER).await;
    assert_ok(t.transfer_message(&p, P, "termination").await);
    t.assert_transfer(&p, P, "TERMINATED").await;
});

tck_test!(tp_03_01, async {
    let (t, p) = transfer_requested(Rules::MANUAL_TRANSFER).await;
    assert_illegal(t.transfer_message(&p, P, "completion").await, TR_ERROR);
    t.assert_transfer(&p, P, "REQUESTED").await;
});

tck_test!(tp_03_02, async {
    let (t, p) = transfer_requested(Rules::MANUAL_TRANSFER).await;
    assert_illegal(t.transfer_message(&p, P, "suspension").await, TR_ERROR);
    t.assert_transfer(&p, P, "REQUESTED").await;
});

tck_test!(tp_03_03, async {
    let (t, p) = transfer_started().await;
    assert_ok(t.transfer_message(&p, P, "suspension").await);
    assert_illegal(t.transfer_message(&p, P, "completion").await, TR_ERROR);
    t.assert_transfer(&p, P, "SUSPENDED").await;
});

/// Started, then terminated by the TCK: `then` is refused.
async fn after_termination(cut: Side, then: &str) {
    let (t, p) = match cut {
        Side::Provider => transfer_started().await,
        Side::Consumer => consumer_transfer_started().await,
    };
    assert_ok(t.transfer_message(&p, cut, "termination").await);
    assert_illegal(t.transfer_message(&p, cut, then).await, TR_ERROR);
    t.assert_transfer(&p, cut, "TERMINATED").await;
}

tck_test!(tp_03_04, after_termination(P, "start"));
tck_test!(tp_03_05, after_termination(P, "suspension"));
tck_test!(tp_03_06, after_termination(P, "completion"));

// ---- who resumes a suspension (beyond the TCK: DSP lets either party send a start for a
// suspended transfer; the provider refuses to be resumed against its own suspension) -----------

tck_test!(provider_suspension_is_not_undone_by_the_consumer, async {
    let (t, p) = transfer_started().await;
    operator_transfer(&t, &p.provider, "suspend", "TransferSuspensionMessage").await;
    assert_illegal(t.transfer_message(&p, P, "start").await, TR_ERROR);
    t.assert_transfer(&p, P, "SUSPENDED").await;
    // the provider's operator decides
    operator_transfer(&t, &p.provider, "resume", "TransferStartMessage").await;
    t.assert_transfer(&p, P, "STARTED").await;
});

tck_test!(provider_config_may_let_the_consumer_resume, async {
    let rules = Rules {
        consumer_resume: "auto",
        ..Rules::AUTO
    };
    let (t, p) = transfer_requested(rules).await;
    t.expect("TransferStartMessage").await;
    operator_transfer(&t, &p.provider, "suspend", "TransferSuspensionMessage").await;
    assert_ok(t.transfer_message(&p, P, "start").await);
    t.assert_transfer(&p, P, "STARTED").await;
});

tck_test!(
    consumer_does_not_resume_what_the_provider_suspended,
    async {
        let (t, p) = consumer_transfer_started().await;
        assert_ok(t.transfer_message(&p, C, "suspension").await);
        let refused = t
            .mgmt
            .post(
                &format!("transfers/{}/resume", segment(&p.consumer)),
                &json!({}),
            )
            .await
            .expect_err("the consumer's operator cannot resume the provider's suspension");
        assert!(
            format!("{refused:#}").contains("only the provider resumes it"),
            "{refused:#}"
        );
        t.assert_transfer(&p, C, "SUSPENDED").await;
        // the provider resumes
        assert_ok(t.transfer_message(&p, C, "start").await);
        t.assert_transfer(&p, C, "STARTED").await;
    }
);

// ---- transfer process, the connector as consumer ----------------------------------------------

/// The connector negotiated an agreement with the TCK and requested a transfer under it.
async fn consumer_transfer_requested() -> (Tck, Pids) {
    let t = Tck::start(Rules::AUTO).await;
    let agreement = t.agreement_for_cut().await;
    let p = t.start_transfer(&agreement).await;
    (t, p)
}

/// ... and the TCK started it.
async fn consumer_transfer_started() -> (Tck, Pids) {
    let (t, p) = consumer_transfer_requested().await;
    assert_ok(t.transfer_message(&p, C, "start").await);
    t.assert_transfer(&p, C, "STARTED").await;
    (t, p)
}

tck_test!(tp_c_01_01, async {
    let (t, p) = consumer_transfer_started().await;
    assert_ok(t.transfer_message(&p, C, "termination").await);
    t.assert_transfer(&p, C, "TERMINATED").await;
});

tck_test!(tp_c_01_02, async {
    let (t, p) = consumer_transfer_started().await;
    assert_ok(t.transfer_message(&p, C, "completion").await);
    t.assert_transfer(&p, C, "COMPLETED").await;
});

tck_test!(tp_c_01_03, async {
    let (t, p) = consumer_transfer_started().await;
    assert_ok(t.transfer_message(&p, C, "suspension").await);
    t.assert_transfer(&p, C, "SUSPENDED").await;
    assert_ok(t.transfer_message(&p, C, "termination").await);
    t.assert_transfer(&p, C, "TERMINATED").await;
});

tck_test!(tp_c_01_04, async {
    let (t, p) = consumer_transfer_started().await;
    assert_ok(t.transfer_message(&p, C, "suspension").await);
    assert_ok(t.transfer_message(&p, C, "start").await);
    t.assert_transfer(&p, C, "STARTED").await;
    assert_ok(t.transfer_message(&p, C, "completion").await);
    t.assert_transfer(&p, C, "COMPLETED").await;
});

tck_test!(tp_c_01_05, async {
    let (t, p) = consumer_transfer_requested().await;
    assert_ok(t.transfer_message(&p, C, "termination").await);
    t.assert_transfer(&p, C, "TERMINATED").await;
});

tck_test!(tp_c_02_01, async {
    let (t, p) = consumer_transfer_started().await;
    operator_transfer(&t, &p.consumer, "terminate", "TransferTerminationMessage").await;
    t.assert_transfer(&p, C, "TERMINATED").await;
});

tck_test!(tp_c_02_02, async {
    let (t, p) = consumer_transfer_started().await;
    operator_transfer(&t, &p.consumer, "complete", "TransferCompletionMessage").await;
    t.assert_transfer(&p, C, "COMPLETED").await;
});

tck_test!(tp_c_02_03, async {
    let (t, p) = consumer_transfer_started().await;
    operator_transfer(&t, &p.consumer, "suspend", "TransferSuspensionMessage").await;
    operator_transfer(&t, &p.consumer, "terminate", "TransferTerminationMessage").await;
    t.assert_transfer(&p, C, "TERMINATED").await;
});

tck_test!(tp_c_02_04, async {
    let (t, p) = consumer_transfer_started().await;
    operator_transfer(&t, &p.consumer, "suspend", "TransferSuspensionMessage").await;
    t.operator("transfers", &p.consumer, "resume").await;
    let resumed = t.expect("TransferStartMessage").await;
    assert!(
        resumed.body.get("dataAddress").is_none(),
        "{}",
        resumed.body
    );
    t.assert_transfer(&p, C, "STARTED").await;
    operator_transfer(&t, &p.consumer, "complete", "TransferCompletionMessage").await;
    t.assert_transfer(&p, C, "COMPLETED").await;
});

tck_test!(tp_c_02_05, async {
    let (t, p) = consumer_transfer_requested().await;
    operator_transfer(&t, &p.consumer, "terminate", "TransferTerminationMessage").await;
    t.assert_transfer(&p, C, "TERMINATED").await;
});

tck_test!(tp_c_03_01, async {
    let (t, p) = consumer_transfer_requested().await;
    assert_illegal(t.transfer_message(&p, C, "completion").await, TR_ERROR);
    t.assert_transfer(&p, C, "REQUESTED").await;
});

tck_test!(tp_c_03_02, async {
    let (t, p) = consumer_transfer_requested().await;
    assert_illegal(t.transfer_message(&p, C, "suspension").await, TR_ERROR);
    t.assert_transfer(&p, C, "REQUESTED").await;
});

tck_test!(tp_c_03_03, async {
    let (t, p) = consumer_transfer_started().await;
    assert_ok(t.transfer_message(&p, C, "suspension").await);
    assert_illegal(t.transfer_message(&p, C, "completion").await, TR_ERROR);
    t.assert_transfer(&p, C, "SUSPENDED").await;
});

tck_test!(tp_c_03_04, after_termination(C, "start"));
tck_test!(tp_c_03_05, after_termination(C, "suspension"));
tck_test!(tp_c_03_06, after_termination(C, "completion"));

// ---- beyond the TCK: identity, idempotency and hostile input -----------------------------------

tck_test!(a_repeated_message_is_refused_and_changes_nothing, async {
    // A message that repeats the one that led to the current state has no transition from
    // it (DSP 2025-1): 400, and nothing moves or is sent; a sender retrying it learns from
    // the process's state that the first one landed (a_lost_answer_does_not_end_the_process).
    let (t, p) = agreed(Rules::MANUAL).await;
    assert_ok(t.verification(&p).await);
    assert_illegal(t.verification(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, P, "VERIFIED").await;
    t.expect_silence(200).await;

    let (t, p) = accepted_offer().await;
    assert_ok(t.agreement(&p).await);
    t.expect("ContractAgreementVerificationMessage").await;
    assert_illegal(t.agreement(&p).await, NEG_ERROR);
    t.assert_negotiation(&p, C, "VERIFIED").await;
    t.expect_silence(200).await;
});

tck_test!(an_offer_id_that_is_not_an_iri_is_refused_with_400, async {
    // provider side: the initial request and a counter-request
    let t = Tck::start(Rules::MANUAL).await;
    let mut offer = matching_offer();
    offer["@id"] = json!("not an IRI");
    let msg = message(
        "ContractRequestMessage",
        json!({ "consumerPid": harness::new_pid(), "offer": offer, "callbackAddress": t.tck_dsp }),
    );
    let answer = t.post("negotiations/request", &msg).await;
    let reason = answer.1["reason"].to_string();
    assert_illegal(answer, NEG_ERROR);
    assert!(reason.contains("absolute IRI"), "{reason}");
    let (t, p) = counter_offered(Rules::MANUAL).await;
    assert_illegal(t.counter_request(&p, offer.clone()).await, NEG_ERROR);
    t.assert_negotiation(&p, P, "OFFERED").await;

    // consumer side: an offer from the provider with such an @id
    let t = Tck::start(Rules::AUTO).await;
    let p = t.start_negotiation().await;
    let mut offer = same_offer();
    offer["@id"] = json!("not an IRI");
    let (status, body) = t.offer(&p, offer).await;
    assert!(!status.is_server_error(), "{status}: {body}");
});

tck_test!(refusals_name_the_field_never_the_value, async {
    let t = Tck::start(Rules::MANUAL).await;
    let reason_of = |(status, body): (http::StatusCode, Value)| {
        assert!(status.is_client_error(), "{status}: {body}");
        body["reason"].to_string()
    };
    let request = |offer: Value| {
        message(
            "ContractRequestMessage",
            json!({ "consumerPid": harness::new_pid(), "offer": offer, "callbackAddress": t.tck_dsp }),
        )
    };
    let mut wrong_type = request(matching_offer());
    wrong_type["@type"] = json!("SECRET-TYPE");
    let mut unknown = matching_offer();
    unknown["@id"] = json!("urn:secret:offer");
    let mut bad_operator = matching_offer();
    bad_operator["permission"][0]["constraint"][0]["operator"] = json!("SECRET-OPERATOR");
    let mut other_target = matching_offer();
    other_target["target"] = json!("urn:secret:target");
    let bodies = [
        ("wrong @type", wrong_type),
        ("unknown offer", request(unknown)),
        ("bad operator", request(bad_operator)),
        ("other target", request(other_target)),
    ];
    for (what, body) in bodies {
        let reason = reason_of(t.post_unchecked("negotiations/request", &body).await);
        assert!(
            !reason.to_lowercase().contains("secret"),
            "{what}: {reason}"
        );
    }

    // pids that name another process
    let p = t.request(matching_offer()).await;
    let stranger = harness::Pids {
        provider: p.provider.clone(),
        consumer: "urn:secret:pid".into(),
    };
    let msg = ids_message(
        "ContractNegotiationTerminationMessage",
        &stranger,
        json!({}),
    );
    let path = format!("negotiations/{}/termination", p.provider);
    let reason = reason_of(t.post_unchecked(&path, &msg).await);
    assert!(
        reason.contains("consumerPid") && !reason.contains("secret"),
        "{reason}"
    );
    t.assert_negotiation(&p, P, "REQUESTED").await;

    // a transfer under an agreement that does not exist
    let msg = message(
        "TransferRequestMessage",
        json!({
            "consumerPid": harness::new_pid(),
            "agreementId": "urn:secret:agreement",
            "format": harness::FORMAT,
            "callbackAddress": t.tck_dsp,
        }),
    );
    let reason = reason_of(t.post_unchecked("transfers/request", &msg).await);
    assert!(!reason.contains("secret"), "{reason}");
});

tck_test!(a_stranger_gets_404, async {
    let (t, p) = agreed(Rules::MANUAL).await;
    let msg = ids_message("ContractAgreementVerificationMessage", &p, json!({}));
    let path = format!("negotiations/{}/agreement/verification", p.provider);
    let answer = t.post_as_stranger(&path, &msg).await;
    assert_eq!(answer.0, 404, "{} must not see the process", STRANGER_ID);
    assert_refused(answer, NEG_ERROR);
    let unknown = t
        .post(
            "negotiations/urn:uuid:unknown/termination",
            &ids_message(
                "ContractNegotiationTerminationMessage",
                &Pids {
                    provider: "urn:uuid:unknown".into(),
                    consumer: p.consumer.clone(),
                },
                json!({}),
            ),
        )
        .await;
    assert_eq!(unknown.0, 404);
    t.assert_negotiation(&p, P, "AGREED").await;
});

/// A process is readable by its parties only; a stranger gets the 404 of an unknown pid.
async fn readable_by_its_parties_only(t: &Tck, path: &str, error_type: &str) {
    let (status, body) = t.get(path).await;
    assert_eq!(status, 200, "the party must read {path}: {body}");
    let answer = t.get_as_stranger(path).await;
    assert_eq!(
        answer.0, 404,
        "{STRANGER_ID} must not read {path}: {}",
        answer.1
    );
    assert_refused(answer, error_type);
}

tck_test!(a_stranger_cannot_read_a_negotiation, async {
    let (t, p) = agreed(Rules::MANUAL).await;
    let path = format!("negotiations/{}", p.provider);
    readable_by_its_parties_only(&t, &path, NEG_ERROR).await;
});

tck_test!(a_stranger_cannot_read_a_transfer, async {
    let (t, p) = transfer_started().await;
    let path = format!("transfers/{}", p.provider);
    readable_by_its_parties_only(&t, &path, TR_ERROR).await;
});

tck_test!(
    a_schema_invalid_message_is_refused_naming_the_field,
    async {
        let (t, p) = agreed(Rules::MANUAL).await;
        let mut msg = ids_message("ContractNegotiationEventMessage", &p, json!({}));
        msg["eventType"] = json!("SECRET-VALUE");
        let (status, body) = t
            .post_unchecked(&format!("negotiations/{}/events", p.provider), &msg)
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["@type"], NEG_ERROR);
        let reason = body["reason"].to_string();
        assert!(reason.contains("/eventType"), "{reason}");
        assert!(!reason.contains("SECRET-VALUE"), "{reason}");
    }
);

tck_test!(a_lost_answer_does_not_end_the_process, async {
    // The counterpart applies the verification but the answer is lost (502); the retry is
    // refused (400) because it moved on, and its GET shows VERIFIED: the connector must treat
    // the message as delivered instead of terminating.
    let t = Tck::start(Rules::AUTO).await;
    {
        let mut script = t.script.lock().unwrap();
        script.statuses = vec![
            (
                "/agreement/verification".into(),
                http::StatusCode::BAD_GATEWAY,
            ),
            (
                "/agreement/verification".into(),
                http::StatusCode::BAD_REQUEST,
            ),
        ];
        script.negotiation_state = Some("VERIFIED".into());
    }
    let p = t.start_negotiation().await;
    assert_ok(t.agreement(&p).await);
    for _ in 0..500 {
        if t.script.lock().unwrap().state_reads > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        t.script.lock().unwrap().state_reads > 0,
        "the connector never asked for the state"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    t.assert_negotiation(&p, C, "VERIFIED").await;
    assert_ok(t.finalized(&p).await);
    t.assert_negotiation(&p, C, "FINALIZED").await;
});

tck_test!(a_provider_with_another_identity_is_refused, async {
    // The operator names one provider, the address answers with another's certificate.
    let t = Tck::start(Rules::AUTO).await;
    let started = t
        .mgmt
        .post(
            "negotiations",
            &json!({
                "datasetId": TCK_DATASET_ID,
                "offerId": harness::TCK_OFFER_ID,
                "providerId": "did:web:impostor.example",
                "connectorAddress": t.tck_dsp,
            }),
        )
        .await;
    let err = format!(
        "{:#}",
        started.expect_err("the connector must refuse the peer")
    );
    assert!(err.contains("502"), "{err}");
    t.expect_silence(300).await;
});

tck_test!(a_repeated_initial_request_names_the_same_process, async {
    let t = Tck::start(Rules::MANUAL).await;
    let msg = message(
        "ContractRequestMessage",
        json!({ "consumerPid": harness::new_pid(), "offer": matching_offer(), "callbackAddress": t.tck_dsp }),
    );
    let (first, created) = t.post("negotiations/request", &msg).await;
    assert_eq!(first, 201, "{created}");
    let (again, repeated) = t.post("negotiations/request", &msg).await;
    assert_eq!(again, 200, "{repeated}");
    assert_eq!(repeated["providerPid"], created["providerPid"]);
    let mut other = msg.clone();
    other["offer"] = broader_offer();
    assert_illegal(t.post("negotiations/request", &other).await, NEG_ERROR);
    let all = t.mgmt.get("negotiations").await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
});

tck_test!(a_repeated_transfer_request_names_the_same_process, async {
    let t = Tck::start(Rules::MANUAL_TRANSFER).await;
    let agreement = t.agreement_from_cut().await;
    let msg = message(
        "TransferRequestMessage",
        json!({
            "consumerPid": harness::new_pid(),
            "agreementId": agreement,
            "format": harness::FORMAT,
            "callbackAddress": t.tck_dsp,
        }),
    );
    let (first, created) = t.post("transfers/request", &msg).await;
    assert_eq!(first, 201, "{created}");
    let (again, repeated) = t.post("transfers/request", &msg).await;
    assert_eq!(again, 200, "{repeated}");
    assert_eq!(repeated["providerPid"], created["providerPid"]);
    let mut other = msg.clone();
    other["format"] = json!("ArrowFlight-PULL");
    assert_illegal(t.post("transfers/request", &other).await, TR_ERROR);
    let all = t.mgmt.get("transfers").await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
});

tck_test!(the_operator_cannot_send_a_message_twice, async {
    let (t, p) = agreed(Rules::MANUAL).await;
    let again = t
        .mgmt
        .post(&format!("negotiations/{}/agree", p.provider), &json!({}))
        .await;
    let err = format!("{:#}", again.expect_err("a second agreement is refused"));
    assert!(err.contains("409") && err.contains("AGREED"), "{err}");
    t.expect_silence(200).await;
});

// ---- JSON-LD forms other than the compact one (issue 17, item 15) ------------------------------

const DSPACE: &str = "https://w3id.org/dspace/2025/1/";
const ODRL: &str = "http://www.w3.org/ns/odrl/2/";

tck_test!(
    prefixed_and_expanded_json_ld_messages_are_understood,
    async {
        let t = Tck::start(Rules::AUTO).await;
        let d = |l: &str| format!("{DSPACE}{l}");

        // A catalogue request in expanded form.
        let expanded_catalog = json!([{ "@type": [d("CatalogRequestMessage")] }]);
        let (status, body) = t.post_unchecked("catalog/request", &expanded_catalog).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.to_string().contains(DATASET_ID), "{body}");

        // Negotiate with a prefixed request (DSP 2024-1 style terms, inline prefixes) for exactly
        // the offer: the provider agrees on its own, as for the compact form.
        let consumer = harness::new_pid();
        let prefixed = json!({
            "@context": { "dspace": DSPACE, "odrl": ODRL },
            "@type": "dspace:ContractRequestMessage",
            "dspace:consumerPid": consumer,
            "dspace:callbackAddress": t.tck_dsp,
            "dspace:offer": {
                "@id": harness::OFFER_ID,
                "@type": "odrl:Offer",
                "odrl:target": { "@id": DATASET_ID },
                "odrl:permission": [{
                    "odrl:action": { "@id": "odrl:use" },
                    "odrl:constraint": [{
                        "odrl:leftOperand": { "@id": "odrl:purpose" },
                        "odrl:operator": { "@id": "odrl:eq" },
                        "odrl:rightOperand": "research"
                    }]
                }]
            }
        });
        let (status, body) = t.post_unchecked("negotiations/request", &prefixed).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["consumerPid"], consumer.as_str());
        assert_eq!(body["state"], "REQUESTED");
        let p = Pids {
            provider: body["providerPid"].as_str().unwrap().to_string(),
            consumer,
        };
        let agreement = t.expect("ContractAgreementMessage").await;
        assert_eq!(agreement.body["agreement"]["target"], DATASET_ID);
        assert_ok(t.verification(&p).await);
        expect_finalized(&t).await;
        let agreement_id = agreement.body["agreement"]["@id"].as_str().unwrap();

        // Transfer with an expanded request: full IRIs, @value objects, arrays everywhere.
        let consumer = harness::new_pid();
        let expanded = json!([{
            "@type": [d("TransferRequestMessage")],
            d("consumerPid"): [{ "@value": consumer }],
            d("agreementId"): [{ "@id": agreement_id }],
            "http://purl.org/dc/terms/format": [{ "@value": harness::FORMAT }],
            d("callbackAddress"): [{ "@value": t.tck_dsp }]
        }]);
        let (status, body) = t.post_unchecked("transfers/request", &expanded).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["consumerPid"], consumer.as_str());
        let start = t.expect("TransferStartMessage").await;
        assert_eq!(start.body["consumerPid"], consumer.as_str());

        // Mixed forms: one property in two forms is refused naming it.
        let mut mixed = prefixed.clone();
        mixed["dspace:consumerPid"] = json!(harness::new_pid());
        mixed["consumerPid"] = json!(harness::new_pid());
        let (status, body) = t.post_unchecked("negotiations/request", &mixed).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["@type"], NEG_ERROR);
        assert!(body["reason"].to_string().contains("consumerPid"), "{body}");

        // An unknown remote context is refused naming @context, never echoing it, and nothing
        // is fetched.
        let mut remote = expanded.clone();
        remote[0]["@context"] = json!("https://evil.example/SECRET-CONTEXT.jsonld");
        let (status, body) = t.post_unchecked("transfers/request", &remote).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["@type"], TR_ERROR);
        let reason = body["reason"].to_string();
        assert!(reason.contains("@context"), "{reason}");
        assert!(!reason.contains("SECRET"), "{reason}");

        // An expanded message that lacks a required field fails its schema, naming the field.
        let mut incomplete = expanded.clone();
        incomplete[0]
            .as_object_mut()
            .unwrap()
            .remove(&d("agreementId"));
        let (status, body) = t.post_unchecked("transfers/request", &incomplete).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["@type"], TR_ERROR);
        assert!(body["reason"].to_string().contains("agreementId"), "{body}");
        assert_eq!(
            body["consumerPid"],
            consumer.as_str(),
            "the pids are read from any form"
        );

        let all = t.mgmt.get("transfers").await.unwrap();
        assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    }
);
