//! "At least as strict as": narrower requests are recognised; anything wider is not.

use serde_json::{Value, json};
use sluis_policy::Policy;

fn offer(constraints: Value) -> Policy {
    Policy::from_json(
        &json!({"@type":"Offer","permission":[{"action":"use","constraint":constraints}]}),
    )
    .unwrap()
}

fn demo() -> Policy {
    offer(json!([
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]},
        {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2026-12-31T00:00:00Z","@type":"xsd:dateTime"}},
        {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["research","statistics"]}
    ]))
}

#[test]
fn equal_policies_are_as_strict_as_each_other() {
    assert!(demo().at_least_as_strict_as(&demo()));
}

#[test]
fn narrower_requests_are_recognised() {
    let narrower = Policy::from_json(&json!({"@type":"Request","permission":[{"action":"read","constraint":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
        {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name","meter_id"]},
        {"leftOperand":"dateTime","operator":"lt","rightOperand":{"@value":"2026-06-30T00:00:00Z","@type":"xsd:dateTime"}},
        {"leftOperand":"purpose","operator":"eq","rightOperand":"research"},
        {"leftOperand":"count","operator":"lteq","rightOperand":{"@value":"10","@type":"xsd:integer"}}
    ]}]})).unwrap();
    assert!(narrower.at_least_as_strict_as(&demo()));
    assert!(
        !demo().at_least_as_strict_as(&narrower),
        "the offer is wider than the request"
    );
}

#[test]
fn anything_wider_is_rejected() {
    let base = demo();
    let wider = [
        // a constraint dropped
        offer(json!([
            {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]},
            {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2026-12-31T00:00:00Z","@type":"xsd:dateTime"}},
            {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["research","statistics"]}])),
        // a later end
        offer(json!([
            {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
            {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]},
            {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2027-01-31T00:00:00Z","@type":"xsd:dateTime"}},
            {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["research","statistics"]}])),
        // one more purpose
        offer(json!([
            {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
            {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]},
            {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2026-12-31T00:00:00Z","@type":"xsd:dateTime"}},
            {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["research","statistics","marketing"]}])),
        // fewer denied columns
        offer(json!([
            {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
            {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":[]},
            {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2026-12-31T00:00:00Z","@type":"xsd:dateTime"}},
            {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["research","statistics"]}])),
        // an alternative through `or`
        offer(json!([{"or":[
            {"and":[
                {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
                {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]},
                {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2026-12-31T00:00:00Z","@type":"xsd:dateTime"}},
                {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["research","statistics"]}]},
            {"leftOperand":"purpose","operator":"eq","rightOperand":"marketing"}]}])),
    ];
    for (i, w) in wider.iter().enumerate() {
        assert!(!w.at_least_as_strict_as(&base), "wider policy {i} accepted");
    }
    // a wider action
    let transfer =
        Policy::from_json(&json!({"@type":"Offer","permission":[{"action":"transfer"}]})).unwrap();
    assert!(!transfer.at_least_as_strict_as(&base));
}

#[test]
fn duties_and_prohibitions_must_be_kept() {
    let with = Policy::from_json(&json!({"@type":"Offer",
        "permission":[{"action":"use","duty":[{"action":"sluis:hash","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["email"]}]}]}],
        "prohibition":[{"action":"distribute"}]})).unwrap();
    let without_duty = Policy::from_json(&json!({"@type":"Offer","permission":[{"action":"use"}],"prohibition":[{"action":"distribute"}]})).unwrap();
    let without_prohibition = Policy::from_json(&json!({"@type":"Offer",
        "permission":[{"action":"use","duty":[{"action":"sluis:hash","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["email"]}]}]}]})).unwrap();
    let broader_prohibition = Policy::from_json(&json!({"@type":"Offer",
        "permission":[{"action":"read","duty":[{"action":"sluis:hash","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["email"]}]}]}],
        "prohibition":[{"action":"use"}]})).unwrap();
    assert!(with.at_least_as_strict_as(&with));
    assert!(!without_duty.at_least_as_strict_as(&with));
    assert!(!without_prohibition.at_least_as_strict_as(&with));
    assert!(broader_prohibition.at_least_as_strict_as(&with));
}
