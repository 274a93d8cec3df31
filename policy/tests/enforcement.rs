//! Compiling agreements into enforcement plans (the Sluis profile).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sluis_policy::Policy;
use sluis_policy::enforcement::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn agreement(permission: Value) -> Policy {
    let offer =
        Policy::from_json(&json!({"@id":"urn:o","@type":"Offer","permission":[permission]}))
            .unwrap_or_else(|e| panic!("{e}"));
    offer.to_agreement(
        "urn:a",
        "urn:d",
        "urn:provider",
        "urn:consumer",
        at("2026-01-01T00:00:00Z"),
    )
}

fn compile_err(permission: Value) -> String {
    compile(&agreement(permission))
        .expect_err("must not compile")
        .to_string()
}

#[test]
fn demo_offer_compiles_to_row_filter_and_column_deny() {
    let offer = Policy::from_json(&json!({"@id":"urn:sluis:offer:meter-readings-north","@type":"Offer","profile":"https://w3id.org/sluis/odrl","permission":[{"action":"use","constraint":[{"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},{"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]}]}]})).unwrap();
    let a = offer.to_agreement(
        "urn:a",
        "urn:d",
        "urn:p",
        "urn:c",
        at("2026-01-01T00:00:00Z"),
    );
    let plan = compile(&a).unwrap();
    assert_eq!(
        plan,
        EnforcementPlan {
            row_filters: vec![RowFilter {
                column: "region".into(),
                operator: FilterOperator::Eq,
                values: vec![Scalar::String("north".into())],
            }],
            columns: ColumnAccess::Deny(vec!["customer_name".into()]),
            ..EnforcementPlan::default()
        }
    );
}

#[test]
fn unconstrained_use_enforces_nothing() {
    assert_eq!(
        compile(&agreement(json!({"action":"use"}))).unwrap(),
        EnforcementPlan::default()
    );
}

#[test]
fn every_profile_constraint_compiles() {
    let plan = compile(&agreement(json!({"action":"use",
        "constraint":[
            {"leftOperand":"sluis:row.year","operator":"gteq","rightOperand":{"@value":"2020","@type":"xsd:integer"}},
            {"leftOperand":"sluis:row.kind","operator":"isAnyOf","rightOperand":["a","b"]},
            {"leftOperand":"sluis:row.ratio","operator":"lt","rightOperand":{"@value":"0.5","@type":"xsd:decimal"}},
            {"leftOperand":"sluis:row.active","operator":"eq","rightOperand":{"@value":"true","@type":"xsd:boolean"}},
            {"leftOperand":"sluis:column","operator":"isPartOf","rightOperand":["year","kind","ratio","active","email"]},
            {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["ratio"]},
            {"leftOperand":"sluis:aggregateOnly","operator":"gteq","rightOperand":{"@value":"5","@type":"xsd:integer"}},
            {"leftOperand":"sluis:rowCount","operator":"lteq","rightOperand":{"@value":"1000","@type":"xsd:integer"}},
            {"leftOperand":"count","operator":"lt","rightOperand":{"@value":"100","@type":"xsd:integer"}},
            {"leftOperand":"dateTime","operator":"gteq","rightOperand":{"@value":"2026-01-10T00:00:00Z","@type":"xsd:dateTime"}},
            {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2026-12-31T00:00:00Z","@type":"xsd:dateTime"}},
            {"leftOperand":"elapsedTime","operator":"lteq","rightOperand":{"@value":"P30D","@type":"xsd:duration"}},
            {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["sluis:research","https://example.org/billing"]}
        ],
        "duty":[
            {"action":"sluis:hash","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["email"]}]},
            {"action":"sluis:redact","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["kind"]}]}
        ]})))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.row_filters.len(), 4);
    assert_eq!(plan.row_filters[0].values, vec![Scalar::Int(2020)]);
    assert_eq!(plan.row_filters[1].operator, FilterOperator::IsAnyOf);
    assert_eq!(plan.row_filters[2].values, vec![Scalar::Float(0.5)]);
    assert_eq!(plan.row_filters[3].values, vec![Scalar::Bool(true)]);
    assert_eq!(
        plan.columns,
        ColumnAccess::Allow(vec![
            "year".into(),
            "kind".into(),
            "active".into(),
            "email".into()
        ])
    );
    assert_eq!(
        plan.masks,
        vec![
            ColumnMask {
                column: "email".into(),
                kind: MaskKind::Hash
            },
            ColumnMask {
                column: "kind".into(),
                kind: MaskKind::Redact
            }
        ]
    );
    assert_eq!(plan.aggregate_min_group_size, Some(5));
    assert_eq!(plan.max_rows_per_query, Some(1000));
    assert_eq!(plan.max_queries, Some(99));
    assert_eq!(plan.not_before, Some(at("2026-01-10T00:00:00Z")));
    // elapsedTime P30D from the agreement's timestamp is earlier than the dateTime bound
    assert_eq!(plan.not_after, Some(at("2026-01-31T00:00:00Z")));
    assert_eq!(
        plan.purposes,
        Some(vec![
            "sluis:research".into(),
            "https://example.org/billing".into()
        ])
    );
}

#[test]
fn constraints_the_data_plane_cannot_enforce_are_errors() {
    let e = compile_err(
        json!({"action":"use","constraint":[{"leftOperand":"spatial","operator":"eq","rightOperand":"EU"}]}),
    );
    assert_eq!(
        e,
        "permission[0].constraint[0]: leftOperand 'spatial' is not enforceable by the data plane"
    );
    let e = compile_err(json!({"action":"use","constraint":[{"or":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"south"}]}]}));
    assert!(
        e.starts_with("permission[0].constraint[0]: 'or' over several constraints"),
        "{e}"
    );
    let e = compile_err(json!({"action":"use","constraint":[{"xone":[
        {"leftOperand":"sluis:row.a","operator":"eq","rightOperand":"1"},
        {"leftOperand":"sluis:row.b","operator":"eq","rightOperand":"1"}]}]}));
    assert!(e.contains("'xone'"), "{e}");
    let e = compile_err(
        json!({"action":"use","constraint":[{"leftOperand":"sluis:row.a","operator":"isA","rightOperand":"x"}]}),
    );
    assert!(
        e.contains("operator 'isA' is not supported on a row operand"),
        "{e}"
    );
    let e = compile_err(
        json!({"action":"use","constraint":[{"leftOperand":"sluis:row.a","operator":"eq","rightOperand":["x","y"]}]}),
    );
    assert!(e.contains("needs exactly one value"), "{e}");
    let e = compile_err(
        json!({"action":"use","constraint":[{"leftOperand":"sluis:column","operator":"hasPart","rightOperand":["x"]}]}),
    );
    assert!(e.contains("not supported on sluis:column"), "{e}");
    let e = compile_err(
        json!({"action":"use","constraint":[{"leftOperand":"count","operator":"gteq","rightOperand":"3"}]}),
    );
    assert!(e.contains("operator 'gteq' is not supported"), "{e}");
    let e = compile_err(json!({"action":"use","duty":[{"action":"compensate"}]}));
    assert!(e.contains("duty 'compensate' is not enforceable"), "{e}");
    let e = compile_err(json!({"action":"use","duty":[{"action":"sluis:hash"}]}));
    assert!(
        e.contains("a mask duty needs exactly one constraint"),
        "{e}"
    );
    let e = compile_err(
        json!({"action":"use","constraint":[{"leftOperand":"partner","operator":"eq","rightOperand":"gold"}]}),
    );
    assert!(e.contains("'partner' is not enforceable"), "{e}");
    let e = compile_err(json!({"action":"distribute"}));
    assert!(e.contains("no permission to use or read"), "{e}");
    let e = compile_err(
        json!({"action":"use","constraint":[{"leftOperand":"sluis:row.a","operator":"eq","rightOperand":{"@value":"x1","@type":"xsd:integer"}}]}),
    );
    assert!(e.contains("'x1' is not an integer"), "{e}");
}

#[test]
fn several_permissions_and_prohibitions_of_reading_are_errors() {
    let two = Policy::from_json(&json!({"@type":"Agreement","permission":[{"action":"use"},{"action":"read","constraint":[{"leftOperand":"purpose","operator":"eq","rightOperand":"x"}]}]})).unwrap();
    assert!(
        compile(&two)
            .unwrap_err()
            .to_string()
            .contains("more than one use/read permission")
    );
    for (prohibition, message) in [
        (
            json!({"action":"use"}),
            "prohibition[0]: the agreement prohibits 'use' outright",
        ),
        (
            json!({"action":"read","constraint":[{"leftOperand":"purpose","operator":"eq","rightOperand":"ads"}]}),
            "prohibition[0]: a prohibition of use/read is enforceable only as one constraint 'sluis:column isAnyOf [columns]'",
        ),
    ] {
        let p = Policy::from_json(&json!({"@type":"Agreement","permission":[{"action":"use"}],"prohibition":[prohibition]})).unwrap();
        assert_eq!(compile(&p).unwrap_err().to_string(), message);
    }
}

#[test]
fn prohibited_columns_are_denied() {
    let p = Policy::from_json(&json!({"@type":"Agreement",
        "permission":[{"action":"use","constraint":[{"leftOperand":"sluis:column","operator":"isPartOf","rightOperand":["a","b","c"]}]}],
        "prohibition":[{"action":"read","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["b"]}]}]})).unwrap();
    assert_eq!(
        compile(&p).unwrap().columns,
        ColumnAccess::Allow(vec!["a".into(), "c".into()])
    );
}

#[test]
fn other_prohibitions_and_obligations_are_listed_out_of_band() {
    let p = Policy::from_json(&json!({"@type":"Agreement","permission":[{"action":"use"}],
        "prohibition":[{"action":"distribute"}],"obligation":[{"action":"compensate"}]}))
    .unwrap();
    let plan = compile(&p).unwrap();
    assert_eq!(
        plan.out_of_band,
        vec![
            "prohibition distribute".to_string(),
            "obligation compensate".to_string()
        ]
    );
    assert_eq!(
        EnforcementPlan {
            out_of_band: vec![],
            ..plan
        },
        EnforcementPlan::default()
    );
}

#[test]
fn elapsed_time_needs_the_agreement_timestamp() {
    let offer = Policy::from_json(&json!({"@type":"Offer","permission":[{"action":"use","constraint":[{"leftOperand":"elapsedTime","operator":"lteq","rightOperand":{"@value":"PT1H","@type":"xsd:duration"}}]}]})).unwrap();
    assert!(
        compile(&offer)
            .unwrap_err()
            .to_string()
            .contains("needs the agreement's timestamp")
    );
    let plan =
        compile(&offer.to_agreement("a", "d", "p", "c", at("2026-01-01T00:00:00Z"))).unwrap();
    assert_eq!(plan.not_after, Some(at("2026-01-01T01:00:00Z")));
}

#[test]
fn and_and_and_sequence_flatten_into_the_plan() {
    let plan = compile(&agreement(
        json!({"action":"read","constraint":[{"andSequence":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"},
        {"and":[{"leftOperand":"sluis:rowCount","operator":"lteq","rightOperand":"10"}]}]}]}),
    ))
    .unwrap();
    assert_eq!(plan.row_filters.len(), 1);
    assert_eq!(plan.max_rows_per_query, Some(10));
}

#[test]
fn date_bounds_cover_whole_days_like_the_evaluator() {
    let plan = compile(&agreement(json!({"action":"use","constraint":[
        {"leftOperand":"dateTime","operator":"gt","rightOperand":{"@value":"2026-01-10","@type":"xsd:date"}},
        {"leftOperand":"dateTime","operator":"lteq","rightOperand":{"@value":"2026-01-20","@type":"xsd:date"}}]}))).unwrap();
    assert_eq!(plan.not_before, Some(at("2026-01-11T00:00:00Z")));
    assert_eq!(
        plan.not_after,
        Some(at("2026-01-21T00:00:00Z") - chrono::TimeDelta::nanoseconds(1))
    );
}
