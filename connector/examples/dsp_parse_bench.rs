//! DSP message intake benchmark (recorded in BENCHMARKS.md, "DSP message intake"):
//!
//!     cargo run --locked -p sluis-connector --example dsp_parse_bench
//!
//! 1. The compact 2025-1 form through `messages::parse` (the fast path: one walk over the
//!    keys added) against the baseline, the parse as it was before JSON-LD intake (JSON,
//!    depth, `@type`, `@context`, schema, message type), measured in the same run, in turns.
//! 2. For information: prefixed and expanded forms, which are normalised first.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluis_connector::dsp::messages::{self, ContractRequestMessage, TransferRequestMessage};
use sluis_connector::dsp::{jsonld, schema};

const D: &str = "https://w3id.org/dspace/2025/1/";
const O: &str = "http://www.w3.org/ns/odrl/2/";
const CONTEXT: &str = "https://w3id.org/dspace/2025/1/context.jsonld";

/// The parse before JSON-LD intake (commit 3c760d3), step for step.
fn baseline<T: DeserializeOwned>(body: &[u8], expected: &'static str) -> T {
    let value: Value = serde_json::from_slice(body).expect("JSON");
    assert!(messages::depth(&value) <= messages::MAX_JSON_DEPTH);
    let obj = value.as_object().expect("object");
    let t = obj.get("@type").and_then(Value::as_str).expect("@type");
    assert!(t == expected || t == format!("dspace:{expected}"));
    assert!(obj.contains_key("@context"));
    schema::validate(expected, &value).expect("schema");
    serde_json::from_value(value).expect("message")
}

fn compact_request() -> Value {
    json!({
        "@context": [CONTEXT],
        "@type": "ContractRequestMessage",
        "consumerPid": "urn:uuid:32541fe6-c580-409e-85a8-8a9a32fbe833",
        "callbackAddress": "https://consumer.example/dsp",
        "offer": {
            "@id": "urn:sluis:offer:meters", "@type": "Offer", "target": "urn:sluis:dataset:meters",
            "permission": [{"action": "use", "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"},
                {"leftOperand": "sluis:row.region", "operator": "eq", "rightOperand": "north"},
                {"leftOperand": "sluis:column", "operator": "isNoneOf", "rightOperand": ["customer_name"]},
                {"leftOperand": "dateTime", "operator": "lteq",
                 "rightOperand": {"@value": "2030-01-01T00:00:00Z", "@type": "xsd:dateTime"}}
            ]}]
        }
    })
}

fn prefixed_request() -> Value {
    json!({
        "@context": [CONTEXT, {"sluis": "https://w3id.org/sluis/odrl#"}],
        "@type": "dspace:ContractRequestMessage",
        "dspace:consumerPid": "urn:uuid:32541fe6-c580-409e-85a8-8a9a32fbe833",
        "dspace:callbackAddress": "https://consumer.example/dsp",
        "dspace:offer": {
            "@id": "urn:sluis:offer:meters", "@type": "odrl:Offer",
            "odrl:target": {"@id": "urn:sluis:dataset:meters"},
            "odrl:permission": [{"odrl:action": {"@id": "odrl:use"}, "odrl:constraint": [
                {"odrl:leftOperand": {"@id": "odrl:purpose"}, "odrl:operator": {"@id": "odrl:eq"}, "odrl:rightOperand": "research"},
                {"odrl:leftOperand": {"@id": "sluis:row.region"}, "odrl:operator": {"@id": "odrl:eq"}, "odrl:rightOperand": "north"},
                {"odrl:leftOperand": {"@id": "sluis:column"}, "odrl:operator": {"@id": "odrl:isNoneOf"}, "odrl:rightOperand": ["customer_name"]},
                {"odrl:leftOperand": {"@id": "odrl:dateTime"}, "odrl:operator": {"@id": "odrl:lteq"},
                 "odrl:rightOperand": {"@value": "2030-01-01T00:00:00Z", "@type": "xsd:dateTime"}}
            ]}]
        }
    })
}

fn expanded_request() -> Value {
    let o = |l: &str| format!("{O}{l}");
    let constraint = |left: &str, op: &str, right: Value| json!({o("leftOperand"): [{"@id": left}], o("operator"): [{"@id": o(op)}], o("rightOperand"): [right]});
    json!([{
        "@type": [format!("{D}ContractRequestMessage")],
        format!("{D}consumerPid"): [{"@value": "urn:uuid:32541fe6-c580-409e-85a8-8a9a32fbe833"}],
        format!("{D}callbackAddress"): [{"@value": "https://consumer.example/dsp"}],
        format!("{D}offer"): [{
            "@id": "urn:sluis:offer:meters", "@type": [o("Offer")],
            o("target"): [{"@id": "urn:sluis:dataset:meters"}],
            o("permission"): [{
                o("action"): [{"@id": o("use")}],
                o("constraint"): [
                    constraint(&o("purpose"), "eq", json!({"@value": "research"})),
                    constraint("https://w3id.org/sluis/odrl#row.region", "eq", json!({"@value": "north"})),
                    constraint("https://w3id.org/sluis/odrl#column", "isNoneOf", json!({"@value": "customer_name"})),
                    constraint(&o("dateTime"), "lteq", json!({"@value": "2030-01-01T00:00:00Z",
                        "@type": "http://www.w3.org/2001/XMLSchema#dateTime"}))
                ]
            }]
        }]
    }])
}

fn compact_transfer() -> Value {
    json!({
        "@context": [CONTEXT],
        "@type": "TransferRequestMessage",
        "consumerPid": "urn:uuid:32541fe6-c580-409e-85a8-8a9a32fbe833",
        "agreementId": "urn:uuid:e8dc8655-44c2-46ef-b701-4cffdc2faa44",
        "format": "ArrowFlight-PULL",
        "callbackAddress": "https://consumer.example/dsp"
    })
}

fn expanded_transfer() -> Value {
    json!([{
        "@type": [format!("{D}TransferRequestMessage")],
        format!("{D}consumerPid"): [{"@value": "urn:uuid:32541fe6-c580-409e-85a8-8a9a32fbe833"}],
        format!("{D}agreementId"): [{"@id": "urn:uuid:e8dc8655-44c2-46ef-b701-4cffdc2faa44"}],
        "http://purl.org/dc/terms/format": [{"@value": "ArrowFlight-PULL"}],
        format!("{D}callbackAddress"): [{"@value": "https://consumer.example/dsp"}]
    }])
}

/// Time per call of `f`, over `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Best and median of `rounds` measurements.
fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn compare<T: DeserializeOwned>(what: &str, body: &[u8], expected: &'static str, n: u32) {
    // both give the same message
    let _: T = baseline(body, expected);
    let _: T = messages::parse(body, expected).expect("the fast path accepts the compact form");
    let (mut base, mut new) = (Vec::new(), Vec::new());
    // short rounds, many of them: the machine's load changes from second to second
    for _ in 0..COMPACT_ROUNDS {
        base.push(per_call(n, || {
            black_box(baseline::<T>(black_box(body), expected));
        }));
        new.push(per_call(n, || {
            black_box(messages::parse::<T>(black_box(body), expected).ok());
        }));
    }
    let ((bb, bm), (nb, nm)) = (summary(base), summary(new));
    println!(
        "| {what} | {} | {} | {} | {} | {:+.1} % |",
        us(bb),
        us(nb),
        us(bm),
        us(nm),
        (nm.as_secs_f64() / bm.as_secs_f64() - 1.0) * 100.0
    );
}

fn normalised<T: DeserializeOwned>(what: &str, body: &[u8], expected: &'static str, n: u32) {
    let _: T = messages::parse(body, expected).expect("the form is accepted");
    let times = (0..ROUNDS)
        .map(|_| {
            per_call(n, || {
                black_box(messages::parse::<T>(black_box(body), expected).ok());
            })
        })
        .collect();
    let (best, median) = summary(times);
    println!("| {what} | {} | {} |", us(best), us(median));
}

const ROUNDS: usize = 15;
const COMPACT_ROUNDS: usize = 61;

/// The costliest body the normaliser accepts: the DSP context referenced as often as allowed,
/// as many nodes as allowed that each bring a type-scoped context with an `@import`, and
/// plain typed nodes up to the size bound.
fn hostile_catalog_request() -> Value {
    let mut nodes: Vec<Value> = (0..jsonld::MAX_CONTEXTS - 1)
        .map(|_| json!({"@context": CONTEXT, "urn:p": "x"}))
        .collect();
    nodes.extend(
        (0..jsonld::MAX_SCOPED_NODES - 1).map(|_| json!({"@type": "ContractRequestMessage"})),
    );
    let room = jsonld::MAX_VALUES - 4 * nodes.len() - 16;
    nodes.extend((0..room / 2).map(|_| json!({"@type": "odrl:Permission"})));
    json!({"@context": [CONTEXT], "@type": "dspace:CatalogRequestMessage", "filter": nodes})
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000u32);
    let body = |v: Value| v.to_string().into_bytes();
    println!(
        "Compact form, {COMPACT_ROUNDS} rounds of {n} parses each, baseline and fast path in turns (us per parse):\n"
    );
    println!(
        "| message | baseline best | fast path best | baseline median | fast path median | median change |"
    );
    println!("|---|---|---|---|---|---|");
    compare::<ContractRequestMessage>(
        "ContractRequestMessage (4 constraints)",
        &body(compact_request()),
        "ContractRequestMessage",
        n,
    );
    compare::<TransferRequestMessage>(
        "TransferRequestMessage",
        &body(compact_transfer()),
        "TransferRequestMessage",
        n,
    );
    println!("\nOther forms, normalised then parsed (us per parse):\n");
    println!("| message | best | median |");
    println!("|---|---|---|");
    normalised::<ContractRequestMessage>(
        "ContractRequestMessage, prefixed",
        &body(prefixed_request()),
        "ContractRequestMessage",
        n / 8,
    );
    normalised::<ContractRequestMessage>(
        "ContractRequestMessage, expanded",
        &body(expanded_request()),
        "ContractRequestMessage",
        n / 4,
    );
    normalised::<TransferRequestMessage>(
        "TransferRequestMessage, expanded",
        &body(expanded_transfer()),
        "TransferRequestMessage",
        n / 4,
    );
    // where the time of the other forms goes
    let expansion_only = |v: &Value| {
        let text = v.to_string();
        let times = (0..ROUNDS)
            .map(|_| {
                per_call(n / 16, || {
                    let parser = oxjsonld::JsonLdParser::new()
                        .for_slice(text.as_bytes())
                        .with_load_document_callback(|url, _| {
                            let text = include_str!("../schemas/dsp-2025-1/context/dspace.jsonld");
                            let odrl = include_str!("../schemas/dsp-2025-1/context/odrl.jsonld");
                            let doc = if url == CONTEXT { text } else { odrl };
                            Ok(oxjsonld::JsonLdRemoteDocument {
                                document: doc.as_bytes().to_vec(),
                                document_url: url.to_string(),
                            })
                        });
                    black_box(parser.count());
                })
            })
            .collect();
        summary(times)
    };
    let (best, median) = expansion_only(&prefixed_request());
    println!(
        "| of which oxjsonld expansion, prefixed | {} | {} |",
        us(best),
        us(median)
    );
    let (best, median) = expansion_only(&expanded_request());
    println!(
        "| of which oxjsonld expansion, expanded | {} | {} |",
        us(best),
        us(median)
    );
    let hostile = body(hostile_catalog_request());
    let start = Instant::now();
    let outcome = messages::parse::<Value>(&hostile, "CatalogRequestMessage").map(|_| ());
    println!(
        "\nWorst case: a {} KiB CatalogRequestMessage with {} DSP context references, {} nodes with a type-scoped context and plain nodes up to {} JSON values: {:.1} ms ({})",
        hostile.len() / 1024,
        jsonld::MAX_CONTEXTS,
        jsonld::MAX_SCOPED_NODES,
        jsonld::MAX_VALUES,
        start.elapsed().as_secs_f64() * 1e3,
        if outcome.is_ok() {
            "accepted".to_string()
        } else {
            format!("{outcome:?}")
        }
    );
}
