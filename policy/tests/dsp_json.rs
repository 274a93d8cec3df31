//! Parsing and serialising DSP 2025-1 JSON, and equivalence of policies.

use serde_json::{Value, json};
use sluis_policy::{Policy, PolicyKind};

fn spec(path: &str) -> Value {
    let p = format!(
        "{}/../../shared/spec/dsp-2025-1/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .expect("example is JSON")
}

/// Every ODRL policy object in the shared DSP examples.
fn example_policies() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let files = [
        "catalog/example/catalog.json",
        "catalog/example/dataset.json",
        "catalog/example/nested-catalog.json",
        "negotiation/example/contract-agreement-message.json",
        "negotiation/example/contract-agreement-message-full.json",
        "negotiation/example/contract-offer-message.json",
        "negotiation/example/contract-offer-message_initial.json",
        "negotiation/example/contract-request-message.json",
        "negotiation/example/contract-request-message_initial.json",
    ];
    for f in files {
        collect(&spec(f), f, &mut out);
    }
    out
}

fn collect(v: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let here = format!("{at}/{k}");
                match (k.as_str(), x) {
                    ("offer" | "agreement", p) => out.push((here.clone(), p.clone())),
                    ("hasPolicy", Value::Array(ps)) => {
                        for (i, p) in ps.iter().enumerate() {
                            out.push((format!("{here}[{i}]"), p.clone()));
                        }
                    }
                    _ => {}
                }
                collect(x, &here, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, at, out)),
        _ => {}
    }
}

#[test]
fn every_shared_dsp_example_policy_parses_and_round_trips() {
    let policies = example_policies();
    assert!(
        policies.len() >= 8,
        "found only {} policies",
        policies.len()
    );
    for (at, json) in policies {
        let p = Policy::from_json(&json).unwrap_or_else(|e| panic!("{at}: {e}"));
        let out = p.to_dsp_json();
        // the compact form of the shared examples is already canonical: same JSON back
        assert_eq!(out, without_context(&json), "{at}");
        let again = Policy::from_json(&out).unwrap_or_else(|e| panic!("{at} re-parse: {e}"));
        assert_eq!(again, p, "{at}");
    }
}

fn without_context(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("@context");
    }
    v
}

#[test]
fn agreement_example_accessors() {
    let msg = spec("negotiation/example/contract-agreement-message.json");
    let p = Policy::from_json(&msg["agreement"]).unwrap();
    assert_eq!(p.kind(), PolicyKind::Agreement);
    assert_eq!(
        p.id(),
        Some("urn:uuid:e8dc8655-44c2-46ef-b701-4cffdc2faa44")
    );
    assert_eq!(
        p.target(),
        Some("urn:uuid:3dd1add4-4d2d-569e-d634-8394a8836d23")
    );
    assert_eq!(p.assigner(), Some("http://example.com/Provider"));
    assert_eq!(p.assignee(), Some("http://example.com/Consumer"));
}

pub fn demo_offer() -> Value {
    json!({"@id":"urn:sluis:offer:meter-readings-north","@type":"Offer","profile":"https://w3id.org/sluis/odrl","permission":[{"action":"use","constraint":[{"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},{"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]}]}]})
}

#[test]
fn demo_offer_round_trips() {
    let p = Policy::from_json(&demo_offer()).unwrap();
    assert_eq!(p.to_dsp_json(), demo_offer());
    assert_eq!(p.kind(), PolicyKind::Offer);
}

#[test]
fn typed_literals_and_iris_serialise_as_objects_never_bare_numbers() {
    let p = Policy::from_json(
        &json!({"@id":"urn:p","@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"count","operator":"lteq","rightOperand":10},
        {"leftOperand":"spatial","operator":"eq","rightOperand":{"@id":"http://example.org/EU"}},
        {"leftOperand":"sluis:row.ok","operator":"eq","rightOperand":true}]}]}),
    )
    .unwrap();
    let out = p.to_dsp_json();
    let cs = &out["permission"][0]["constraint"];
    assert_eq!(
        cs[0]["rightOperand"],
        json!({"@value":"10","@type":"xsd:integer"})
    );
    assert_eq!(
        cs[1]["rightOperand"],
        json!({"@id":"http://example.org/EU"})
    );
    assert_eq!(
        cs[2]["rightOperand"],
        json!({"@value":"true","@type":"xsd:boolean"})
    );
    assert_eq!(Policy::from_json(&out).unwrap(), p);
}

#[test]
fn to_agreement_sets_identity_and_keeps_rules() {
    let offer = Policy::from_json(&demo_offer()).unwrap();
    let ts = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .to_utc();
    let a = offer.to_agreement(
        "urn:agreement:1",
        "urn:dataset:meters",
        "urn:provider",
        "urn:consumer",
        ts,
    );
    assert_eq!(a.kind(), PolicyKind::Agreement);
    assert_eq!(a.id(), Some("urn:agreement:1"));
    assert_eq!(a.target(), Some("urn:dataset:meters"));
    assert!(a.equivalent(&offer));
    let json = a.to_dsp_json();
    assert_eq!(json["timestamp"], "2026-01-02T03:04:05Z");
    assert_eq!(json["assignee"], "urn:consumer");
    assert_eq!(Policy::from_json(&json).unwrap(), a);
}

// ----- equivalence -------------------------------------------------------------------

fn p(v: Value) -> Policy {
    Policy::from_json(&v).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn reordered_constraints_and_members_are_equivalent() {
    let a = p(demo_offer());
    let b = p(
        json!({"@id":"urn:other","@type":"Set","permission":[{"action":"use","constraint":[
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]},
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"}]}]}),
    );
    assert!(a.equivalent(&b));
    let c = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["a","b"]}]}]}),
    );
    let d = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["b","a"]}]}]}),
    );
    assert!(c.equivalent(&d));
}

#[test]
fn compact_prefixed_and_expanded_forms_are_equivalent() {
    let compact = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2023-12-31T06:00:00Z","@type":"xsd:dateTime"}}]}]}),
    );
    let prefixed = p(
        json!({"@context":{"odrl":"http://www.w3.org/ns/odrl/2/"},"@type":"odrl:Offer","odrl:permission":[{"odrl:action":{"@id":"odrl:use"},"odrl:constraint":[
        {"odrl:leftOperand":{"@id":"odrl:dateTime"},"odrl:operator":{"@id":"odrl:lteq"},"odrl:rightOperand":{"@value":"2023-12-31T07:00:00+01:00","@type":"xsd:dateTime"}}]}]}),
    );
    let expanded = p(
        json!([{"@type":["http://www.w3.org/ns/odrl/2/Offer"],"http://www.w3.org/ns/odrl/2/permission":[{"http://www.w3.org/ns/odrl/2/action":[{"@id":"http://www.w3.org/ns/odrl/2/use"}],"http://www.w3.org/ns/odrl/2/constraint":[
        {"http://www.w3.org/ns/odrl/2/leftOperand":[{"@id":"http://www.w3.org/ns/odrl/2/dateTime"}],"http://www.w3.org/ns/odrl/2/operator":[{"@id":"http://www.w3.org/ns/odrl/2/lteq"}],"http://www.w3.org/ns/odrl/2/rightOperand":[{"@value":"2023-12-31T06:00:00Z","@type":"http://www.w3.org/2001/XMLSchema#dateTime"}]}]}]}]),
    );
    assert!(compact.equivalent(&prefixed));
    assert!(compact.equivalent(&expanded));
    let odrl_eq = p(
        json!({"@type":"Offer","permission":[{"action":"odrl:use","constraint":[
        {"leftOperand":"odrl:spatial","operator":"odrl:eq","rightOperand":"EU"}]}]}),
    );
    let bare_eq = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"spatial","operator":"eq","rightOperand":"EU"}]}]}),
    );
    let iri_eq = p(
        json!({"@type":"Offer","permission":[{"action":"http://www.w3.org/ns/odrl/2/use","constraint":[
        {"leftOperand":"http://www.w3.org/ns/odrl/2/spatial","operator":"http://www.w3.org/ns/odrl/2/eq","rightOperand":"EU"}]}]}),
    );
    assert!(odrl_eq.equivalent(&bare_eq));
    assert!(iri_eq.equivalent(&bare_eq));
}

#[test]
fn nested_and_is_the_same_as_a_flat_conjunction() {
    let flat = p(demo_offer());
    let nested = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"and":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":"customer_name"}]}]}]}),
    );
    assert!(flat.equivalent(&nested));
}

#[test]
fn different_meaning_is_not_equivalent() {
    let base = p(demo_offer());
    let other_value = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"south"},
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]}]}]}),
    );
    let other_op = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"sluis:row.region","operator":"neq","rightOperand":"north"},
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]}]}]}),
    );
    let dropped = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"}]}]}),
    );
    let other_action = p(
        json!({"@type":"Offer","permission":[{"action":"read","constraint":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]}]}]}),
    );
    let as_prohibition = p(
        json!({"@type":"Offer","prohibition":[{"action":"use","constraint":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]}]}]}),
    );
    for (name, q) in [
        ("value", other_value),
        ("operator", other_op),
        ("dropped", dropped),
        ("action", other_action),
        ("prohibition", as_prohibition),
    ] {
        assert!(!base.equivalent(&q), "{name}");
    }
    let or = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"or":[
        {"leftOperand":"purpose","operator":"eq","rightOperand":"a"},
        {"leftOperand":"purpose","operator":"eq","rightOperand":"b"}]}]}]}),
    );
    let and = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"and":[
        {"leftOperand":"purpose","operator":"eq","rightOperand":"a"},
        {"leftOperand":"purpose","operator":"eq","rightOperand":"b"}]}]}]}),
    );
    assert!(!or.equivalent(&and));
    let int10 = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"leftOperand":"count","operator":"lteq","rightOperand":{"@value":"10","@type":"xsd:integer"}}]}]}),
    );
    let int010 = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"leftOperand":"count","operator":"lteq","rightOperand":{"@value":"010","@type":"xsd:integer"}}]}]}),
    );
    let int11 = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"leftOperand":"count","operator":"lteq","rightOperand":11}]}]}),
    );
    assert!(int10.equivalent(&int010));
    assert!(!int10.equivalent(&int11));
}

// ----- bad input ---------------------------------------------------------------------

fn parse_err(v: Value) -> String {
    Policy::from_json(&v)
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn errors_name_the_term_and_its_path() {
    let e = parse_err(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"spatial","operator":"eq","rightOperand":"EU"},
        {"leftOperand":"spatial","operator":"eqq","rightOperand":"EU"}]}]}),
    );
    assert_eq!(
        e,
        "permission[0].constraint[1].operator: unknown operator 'eqq'"
    );
    let e = parse_err(json!({"@type":"Offer","permission":[{"action":"fly"}]}));
    assert_eq!(e, "permission[0].action: unknown action 'fly'");
    let e = parse_err(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"leftOperand":"odrl:spatail","operator":"eq","rightOperand":"EU"}]}]}),
    );
    assert!(
        e.starts_with("permission[0].constraint[0].leftOperand: unknown ODRL leftOperand"),
        "{e}"
    );
    let e = parse_err(json!({"@type":"Offer","permission":[{"action":"use","constrant":[]}]}));
    assert_eq!(
        e,
        "permission[0].constrant: unknown property 'constrant' in a permission"
    );
    let e = parse_err(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"leftOperand":"sluis:rows.x","operator":"eq","rightOperand":"1"}]}]}),
    );
    assert!(
        e.contains("unknown Sluis leftOperand 'sluis:rows.x'"),
        "{e}"
    );
    let e = parse_err(json!({"@type":"Offer","permission":[{"constraint":[]}]}));
    assert_eq!(e, "permission[0]: a permission needs an action");
    let e = parse_err(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"leftOperand":"count","operator":"eq","rightOperand":null}]}]}),
    );
    assert!(
        e.contains("rightOperand: a rightOperand cannot be null"),
        "{e}"
    );
    let e = parse_err(json!({"@type":"Ticket"}));
    assert!(e.contains("not a policy type"), "{e}");
}

#[test]
fn deep_nesting_is_bounded() {
    let mut c = json!({"leftOperand":"count","operator":"lteq","rightOperand":"1"});
    for _ in 0..40 {
        c = json!({"and":[c]});
    }
    let e = parse_err(json!({"@type":"Offer","permission":[{"action":"use","constraint":[c]}]}));
    assert!(e.contains("nested too deeply"), "{e}");
}

#[test]
fn size_is_bounded() {
    let cs: Vec<Value> = (0..25_000)
        .map(|i| json!({"leftOperand":"purpose","operator":"eq","rightOperand":format!("p{i}")}))
        .collect();
    let e = parse_err(json!({"@type":"Offer","permission":[{"action":"use","constraint":cs}]}));
    assert!(e.contains("policy too large"), "{e}");
}

// ----- the DSP 2025-1 contract schema accepts what we write -------------------------------

fn contract_schema() -> jsonschema::Validator {
    jsonschema::validator_for(&spec("negotiation/contract-schema.json")).expect("schema compiles")
}

fn assert_schema_valid(v: &jsonschema::Validator, json: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\n{json:#}");
}

#[test]
fn serialised_agreements_and_offers_satisfy_the_contract_schema() {
    let v = contract_schema();
    let ts = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .to_utc();
    let offer = p(demo_offer());
    let agreement = offer.to_agreement(
        "urn:agreement:1",
        "urn:dataset:meters",
        "urn:provider",
        "urn:consumer",
        ts,
    );
    assert_schema_valid(&v, &agreement.to_dsp_json(), "demo agreement");
    for (at, json) in example_policies() {
        let policy = Policy::from_json(&json).unwrap();
        if policy.kind() == PolicyKind::Agreement {
            assert_schema_valid(&v, &policy.to_dsp_json(), &at);
        }
    }
    // typed literals, IRIs and lists: never a bare number
    let typed = p(
        json!({"@id":"urn:p","@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"count","operator":"lteq","rightOperand":10},
        {"leftOperand":"sluis:row.ok","operator":"isAnyOf","rightOperand":["a","b"]}],
        "duty":[{"action":"sluis:hash","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["email"]}]}]}],
        "prohibition":[{"action":"distribute"}]}),
    );
    let a = typed.to_agreement("urn:a", "urn:d", "urn:p", "urn:c", ts);
    assert_schema_valid(&v, &a.to_dsp_json(), "typed agreement");
}

#[test]
fn keys_with_unknown_prefixes_are_not_ignored() {
    let e = parse_err(
        json!({"@type":"Offer","permission":[{"action":"use","odlr:constraint":[
        {"leftOperand":"purpose","operator":"eq","rightOperand":"x"}]}]}),
    );
    assert_eq!(
        e,
        "permission[0].odlr:constraint: unknown property 'odlr:constraint' in a permission"
    );
    // annotations in known namespaces are fine
    p(
        json!({"@type":"Offer","dct:description":"meters","http://example.org/note":"x","permission":[{"action":"use"}]}),
    );
}

#[test]
fn an_iri_and_a_string_of_it_mean_the_same_right_operand() {
    let as_string = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"spatial","operator":"eq","rightOperand":"http://example.org/EU"}]}]}),
    );
    let as_iri = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"spatial","operator":"eq","rightOperand":{"@id":"http://example.org/EU"}}]}]}),
    );
    assert!(as_string.equivalent(&as_iri));
}

/// A deterministic random walk over ODRL-shaped JSON: parsing never panics, and whatever
/// parses serialises and parses again to the same policy.
#[test]
fn arbitrary_json_never_panics_and_round_trips() {
    let keys = [
        "@id",
        "@type",
        "permission",
        "prohibition",
        "obligation",
        "action",
        "constraint",
        "duty",
        "leftOperand",
        "operator",
        "rightOperand",
        "and",
        "or",
        "xone",
        "andSequence",
        "target",
        "assignee",
        "refinement",
        "remedy",
        "consequence",
        "profile",
        "conflict",
        "@value",
        "@list",
        "odrl:permission",
        "unit",
        "timestamp",
    ];
    let atoms = [
        json!("use"),
        json!("read"),
        json!("eq"),
        json!("isAnyOf"),
        json!("purpose"),
        json!("dateTime"),
        json!("sluis:row.a"),
        json!("sluis:column"),
        json!("Offer"),
        json!("Agreement"),
        json!(1),
        json!(null),
        json!(true),
        json!("2024-01-01T00:00:00Z"),
        json!({"@id":"urn:x"}),
        json!([]),
        json!({"@value":"3","@type":"xsd:integer"}),
        json!("perm"),
    ];
    let mut seed: u64 = 0x5EED;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    fn build(
        depth: usize,
        next: &mut dyn FnMut(usize) -> usize,
        keys: &[&str],
        atoms: &[Value],
    ) -> Value {
        match (depth, next(4)) {
            (0, _) | (_, 0) => atoms[next(atoms.len())].clone(),
            (_, 1) => Value::Array(
                (0..next(3))
                    .map(|_| build(depth - 1, next, keys, atoms))
                    .collect(),
            ),
            _ => {
                let mut o = serde_json::Map::new();
                for _ in 0..next(5) {
                    o.insert(
                        keys[next(keys.len())].to_string(),
                        build(depth - 1, next, keys, atoms),
                    );
                }
                Value::Object(o)
            }
        }
    }
    let mut parsed = 0;
    for _ in 0..5000 {
        let mut v = build(5, &mut next, &keys, &atoms);
        if let Some(o) = v.as_object_mut() {
            o.insert("@type".into(), json!("Offer"));
        }
        if let Ok(policy) = Policy::from_json(&v) {
            parsed += 1;
            let again =
                Policy::from_json(&policy.to_dsp_json()).unwrap_or_else(|e| panic!("{e}: {v}"));
            assert!(again.equivalent(&policy), "{v}");
        }
    }
    assert!(
        parsed > 10,
        "the walk should produce some valid policies ({parsed})"
    );
}

#[test]
fn dsp_2024_1_prefixed_offer_with_single_objects_and_lists() {
    let prefixed = p(json!({
        "@context": "https://w3id.org/dspace/2024/1/context.json",
        "@id": "urn:offer:1", "@type": "odrl:Offer",
        "odrl:permission": {
            "odrl:action": {"@id": "odrl:use"},
            "odrl:constraint": {"odrl:and": {"@list": [
                {"odrl:leftOperand": "odrl:purpose", "odrl:operator": {"@id": "odrl:isAnyOf"},
                 "odrl:rightOperand": [{"@id": "https://w3id.org/dpv#ResearchAndDevelopment"}, {"@id": "https://w3id.org/dpv#Marketing"}]},
                {"odrl:leftOperand": {"@id": "odrl:dateTime"}, "odrl:operator": {"@id": "odrl:lt"},
                 "odrl:rightOperand": {"@value": "2027-01-01T00:00:00Z", "@type": "xsd:dateTime"}}
            ]}}
        }
    }));
    let compact = p(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"dateTime","operator":"lt","rightOperand":{"@value":"2027-01-01T00:00:00Z","@type":"xsd:dateTime"}},
        {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["https://w3id.org/dpv#Marketing","https://w3id.org/dpv#ResearchAndDevelopment"]}]}]}),
    );
    assert!(prefixed.equivalent(&compact));
    assert_eq!(prefixed.id(), Some("urn:offer:1"));
}

use sluis_conformance::dsp_schema::validator;

#[test]
fn serialised_offers_satisfy_the_catalog_and_message_schemas() {
    // a catalogue offer (no target): the `Offer` definition that dataset-schema.json uses
    let catalog_offer = validator(
        &json!({"$ref": "https://w3id.org/dspace/2025/1/negotiation/contract-schema.json#/definitions/Offer"}),
    );
    let demo = p(demo_offer());
    assert_schema_valid(&catalog_offer, &demo.to_dsp_json(), "catalogue offer");
    // an offer in a contract request message, with its target
    let request_message = validator(&spec("negotiation/contract-request-message-schema.json"));
    let mut offer = demo.clone();
    offer.target = Some(sluis_policy::Reference::new("urn:dataset:meters"));
    let message = json!({
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@type": "ContractRequestMessage",
        "consumerPid": "urn:uuid:32541fe6-c580-409e-85a8-8a9a32fbe833",
        "offer": offer.to_dsp_json(),
        "callbackAddress": "https://consumer.example/callback"
    });
    assert_schema_valid(&request_message, &message, "contract request message");
}
