//! Evaluation: decisions, reports, the extension point, and attempts to get access anyway.

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use sluis_policy::eval::{Evaluator, Extensions, Request, World};
use sluis_policy::report::*;
use sluis_policy::vocab::odrl;
use sluis_policy::{Policy, Value};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn policy(v: Json) -> Policy {
    Policy::from_json(&v).unwrap_or_else(|e| panic!("{e}"))
}

fn alice_reads(context: Vec<(&str, Value)>) -> Request {
    Request {
        assignee: Some("urn:alice".into()),
        action: Some(odrl("read")),
        target: Some("urn:x".into()),
        context: context.into_iter().map(|(k, v)| (odrl(k), v)).collect(),
        ..Request::default()
    }
}

fn decide(p: &Policy, req: &Request, world: &World) -> Decision {
    let ext = Extensions::new();
    let e = Evaluator::new(p, &ext).unwrap_or_else(|e| panic!("{e}"));
    let d = e.decide(req, world);
    assert_eq!(e.report(req, world).decision, d, "decide and report agree");
    d
}

fn demo() -> Policy {
    policy(
        json!({"@type":"Agreement","uid":"urn:a","target":"urn:x","assignee":"urn:alice","timestamp":"2026-01-01T00:00:00Z",
        "permission":[{"action":"use","constraint":[
            {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":[{"@id":"urn:research"},{"@id":"urn:stats"}]},
            {"leftOperand":"elapsedTime","operator":"lteq","rightOperand":{"@value":"P30D","@type":"xsd:duration"}},
            {"leftOperand":"count","operator":"lt","rightOperand":{"@value":"3","@type":"xsd:integer"}}]}]}),
    )
}

#[test]
fn permits_only_when_every_constraint_holds() {
    let p = demo();
    let research = vec![("purpose", Value::Iri("urn:research".into()))];
    let mut world = World::at(at("2026-01-10T00:00:00Z"));
    assert_eq!(
        decide(&p, &alice_reads(research.clone()), &world),
        Decision::Permit
    );
    assert_eq!(
        decide(&p, &alice_reads(vec![]), &world),
        Decision::Deny,
        "no purpose declared"
    );
    assert_eq!(
        decide(
            &p,
            &alice_reads(vec![("purpose", Value::Iri("urn:ads".into()))]),
            &world
        ),
        Decision::Deny
    );
    world.use_count = 3;
    assert_eq!(
        decide(&p, &alice_reads(research.clone()), &world),
        Decision::Deny,
        "count exhausted"
    );
    world.use_count = 0;
    world.now = at("2026-02-01T00:00:00Z");
    assert_eq!(
        decide(&p, &alice_reads(research), &world),
        Decision::Deny,
        "elapsed"
    );
}

#[test]
fn wider_or_other_requests_are_denied() {
    let p = demo();
    let world = World::at(at("2026-01-10T00:00:00Z"));
    let ok = alice_reads(vec![("purpose", Value::Iri("urn:research".into()))]);
    let mut sell = ok.clone();
    sell.action = Some(odrl("sell"));
    assert_eq!(
        decide(&p, &sell, &world),
        Decision::Deny,
        "sell is not under use"
    );
    let mut bob = ok.clone();
    bob.assignee = Some("urn:bob".into());
    assert_eq!(decide(&p, &bob, &world), Decision::Deny);
    let mut anonymous = ok.clone();
    anonymous.assignee = None;
    assert_eq!(decide(&p, &anonymous, &world), Decision::Deny);
    let mut other = ok.clone();
    other.target = Some("urn:y".into());
    assert_eq!(decide(&p, &other, &world), Decision::Deny);
    let mut no_action = ok;
    no_action.action = None;
    assert_eq!(decide(&p, &no_action, &world), Decision::Deny);
}

#[test]
fn a_read_permission_does_not_grant_use() {
    let p = policy(json!({"@type":"Set","permission":[{"action":"read","target":"urn:x"}]}));
    let mut req = alice_reads(vec![]);
    let world = World::at(at("2026-01-10T00:00:00Z"));
    assert_eq!(decide(&p, &req, &world), Decision::Permit);
    req.action = Some(odrl("use"));
    assert_eq!(decide(&p, &req, &world), Decision::Deny);
}

#[test]
fn membership_cycles_terminate() {
    let p = policy(json!({"@type":"Set","permission":[{"action":"read","assignee":"urn:group"}]}));
    let mut world = World::at(at("2026-01-10T00:00:00Z"));
    world
        .part_of
        .insert("urn:alice".into(), vec!["urn:a".into()]);
    world.part_of.insert("urn:a".into(), vec!["urn:b".into()]);
    world.part_of.insert("urn:b".into(), vec!["urn:a".into()]);
    assert_eq!(decide(&p, &alice_reads(vec![]), &world), Decision::Deny);
    world
        .part_of
        .get_mut("urn:b")
        .unwrap()
        .push("urn:group".into());
    assert_eq!(decide(&p, &alice_reads(vec![]), &world), Decision::Permit);
}

#[test]
fn unknown_left_operands_are_errors_when_the_evaluator_is_created() {
    let p = policy(
        json!({"@type":"Set","permission":[{"action":"use","constraint":[
        {"leftOperand":"partner","operator":"eq","rightOperand":"gold"}]}]}),
    );
    let none = Extensions::new();
    let e = Evaluator::new(&p, &none)
        .err()
        .expect("unknown leftOperand is an error");
    assert_eq!(
        e.to_string(),
        "permission[0].constraint[0].leftOperand: unknown leftOperand 'partner': no resolver is registered for it"
    );
    // the extension point: the connector supplies the value (a certificate claim, say)
    let ext = Extensions::new().with(
        "partner",
        Box::new(|req: &Request, _: &World| {
            (req.assignee.as_deref() == Some("urn:alice")).then(|| Value::string("gold"))
        }),
    );
    let eval = Evaluator::new(&p, &ext).unwrap();
    let world = World::at(at("2026-01-10T00:00:00Z"));
    assert_eq!(eval.decide(&alice_reads(vec![]), &world), Decision::Permit);
    let mut bob = alice_reads(vec![]);
    bob.assignee = Some("urn:bob".into());
    assert_eq!(eval.decide(&bob, &world), Decision::Deny);
}

#[test]
fn data_plane_constraints_need_explicit_deferral() {
    let p = policy(
        json!({"@type":"Set","permission":[{"action":"use","constraint":[
        {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north"}]}]}),
    );
    let none = Extensions::new();
    assert!(
        Evaluator::new(&p, &none)
            .err()
            .unwrap()
            .to_string()
            .contains("data-plane constraint")
    );
    let deferred = Extensions::new().defer_data_plane();
    let e = Evaluator::new(&p, &deferred).unwrap();
    assert_eq!(
        e.decide(&alice_reads(vec![]), &World::at(at("2026-01-10T00:00:00Z"))),
        Decision::Permit
    );
}

#[test]
fn right_operands_that_do_not_fit_are_errors() {
    let p = policy(
        json!({"@type":"Set","permission":[{"action":"use","constraint":[
        {"leftOperand":"dateTime","operator":"lt","rightOperand":"soon"}]}]}),
    );
    let ext = Extensions::new();
    let e = Evaluator::new(&p, &ext).err().unwrap().to_string();
    assert_eq!(
        e,
        "permission[0].constraint[0].rightOperand: 'soon' is not an xsd:dateTime"
    );
    let p = policy(
        json!({"@type":"Set","permission":[{"action":"use","constraint":[
        {"leftOperand":"elapsedTime","operator":"lt","rightOperand":"30 days"}]}]}),
    );
    assert!(
        Evaluator::new(&p, &ext)
            .err()
            .unwrap()
            .to_string()
            .contains("not an xsd:duration")
    );
}

#[test]
fn conflict_strategies_decide_between_permission_and_prohibition() {
    let world = World::at(at("2026-01-10T00:00:00Z"));
    for (strategy, expected) in [
        (Some("perm"), Decision::Permit),
        (Some("prohibit"), Decision::Deny),
        (Some("invalid"), Decision::Deny),
        (None, Decision::Deny),
    ] {
        let mut v = json!({"@type":"Set","permission":[{"action":"read"}],"prohibition":[{"action":"use"}]});
        if let Some(s) = strategy {
            v["conflict"] = json!(s);
        }
        let p = policy(v);
        let ext = Extensions::new();
        let r = Evaluator::new(&p, &ext)
            .unwrap()
            .report(&alice_reads(vec![]), &world);
        assert_eq!(r.decision, expected, "{strategy:?}");
        assert!(r.conflict);
        assert!(
            r.rules
                .iter()
                .all(|x| x.activation == ActivationState::Active)
        );
    }
}

#[test]
fn report_lists_premises_and_nested_constraints() {
    let p = policy(
        json!({"@type":"Set","permission":[{"uid":"urn:rule","action":"read","target":"urn:x","constraint":[
        {"@id":"urn:l","xone":[
            {"@id":"urn:c1","leftOperand":"dateTime","operator":"lt","rightOperand":{"@value":"2026-01-01T00:00:00Z","@type":"xsd:dateTime"}},
            {"@id":"urn:c2","leftOperand":"dateTime","operator":"gteq","rightOperand":{"@value":"2026-01-01T00:00:00Z","@type":"xsd:dateTime"}}]}]}]}),
    );
    let ext = Extensions::new();
    let r = Evaluator::new(&p, &ext)
        .unwrap()
        .report(&alice_reads(vec![]), &World::at(at("2026-01-10T00:00:00Z")));
    let rule = &r.rules[0];
    assert_eq!(rule.rule, Some("urn:rule"));
    assert_eq!(rule.activation, ActivationState::Active);
    assert_eq!(
        rule.premises[0],
        PremiseReport::Target(SatisfactionState::Satisfied)
    );
    assert_eq!(
        rule.premises[1],
        PremiseReport::Action(SatisfactionState::Satisfied)
    );
    let PremiseReport::Constraint(c) = &rule.premises[2] else {
        panic!("constraint report")
    };
    let states: Vec<(Option<&str>, SatisfactionState)> = c
        .flatten()
        .iter()
        .map(|x| (x.constraint, x.satisfaction))
        .collect();
    assert_eq!(
        states,
        vec![
            (Some("urn:l"), SatisfactionState::Satisfied),
            (Some("urn:c1"), SatisfactionState::Unsatisfied),
            (Some("urn:c2"), SatisfactionState::Satisfied)
        ]
    );
}

#[test]
fn turtle_and_json_of_one_policy_are_equivalent() {
    let ttl = r#"
        @prefix odrl: <http://www.w3.org/ns/odrl/2/> .
        @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
        <urn:p> a odrl:Offer ; odrl:permission [ odrl:action odrl:use ;
            odrl:constraint [ odrl:leftOperand odrl:purpose ; odrl:operator odrl:isAnyOf ; odrl:rightOperand ( "a" "b" ) ] ,
                            [ odrl:leftOperand odrl:count ; odrl:operator odrl:lteq ; odrl:rightOperand "5"^^xsd:integer ] ] ."#;
    let from_ttl = Policy::from_turtle(ttl).unwrap();
    let from_json = policy(
        json!({"@type":"Offer","permission":[{"action":"use","constraint":[
        {"leftOperand":"count","operator":"lteq","rightOperand":5},
        {"leftOperand":"purpose","operator":"isAnyOf","rightOperand":["b","a"]}]}]}),
    );
    assert!(from_ttl.equivalent(&from_json));
    assert_eq!(from_ttl.id(), Some("urn:p"));
}

#[test]
fn bad_turtle_is_a_typed_error() {
    let e = Policy::from_turtle("@prefix odrl: <http://www.w3.org/ns/odrl/2/> . <urn:p> a odrl:Set ; odrl:permission [ odrl:action odrl:use ; odrl:constraint [ odrl:leftOperand odrl:count ; odrl:operator odrl:eqq ; odrl:rightOperand 1 ] ] .").unwrap_err();
    assert!(e.to_string().contains("unknown operator 'eqq'"), "{e}");
    let e = Policy::from_turtle("<urn:p> a <http://www.w3.org/ns/odrl/2/Set> ; <http://www.w3.org/ns/odrl/2/permission> [ <http://www.w3.org/ns/odrl/2/action> <http://www.w3.org/ns/odrl/2/fly> ] .").unwrap_err();
    assert!(e.to_string().contains("unknown action 'fly'"), "{e}");
    assert!(Policy::from_turtle("this is not turtle").is_err());
    assert!(
        Policy::from_turtle("")
            .unwrap_err()
            .to_string()
            .contains("no odrl:Set")
    );
}

#[test]
fn report_serialises_to_force_turtle_that_parses_back() {
    let p = demo();
    let ext = Extensions::new();
    let world = World::at(at("2026-01-10T00:00:00Z"));
    let r = Evaluator::new(&p, &ext)
        .unwrap()
        .report(&alice_reads(vec![]), &world);
    let ttl = r.to_turtle(Some("urn:request:1"), world.now);
    assert!(
        ttl.contains("report:activationState report:Inactive"),
        "{ttl}"
    );
    assert!(ttl.contains("report:policy <urn:a>"));
    let g = sluis_policy::parse::turtle::Graph::parse(&ttl).expect("valid Turtle");
    assert_eq!(
        g.subjects_of_type("https://w3id.org/force/compliance-report#ConstraintReport")
            .len(),
        3
    );
}

#[test]
fn composite_rules_apply_to_each_action_and_serialise_as_atomic_rules() {
    let p = Policy::from_turtle(
        r#"@prefix odrl: <http://www.w3.org/ns/odrl/2/> .
        <urn:p> a odrl:Set ; odrl:permission [ odrl:action odrl:modify, odrl:read ; odrl:target <urn:x> ] ."#,
    )
    .unwrap();
    let world = World::at(at("2026-01-10T00:00:00Z"));
    assert_eq!(decide(&p, &alice_reads(vec![]), &world), Decision::Permit);
    let mut sell = alice_reads(vec![]);
    sell.action = Some(odrl("sell"));
    assert_eq!(decide(&p, &sell, &world), Decision::Deny);
    let json = p.to_dsp_json();
    assert_eq!(
        json["permission"].as_array().map(Vec::len),
        Some(2),
        "{json}"
    );
    let atomic = Policy::from_json(&json).unwrap();
    assert_eq!(
        decide(&atomic, &alice_reads(vec![]), &world),
        Decision::Permit
    );
    assert!(atomic.at_least_as_strict_as(&p) && p.at_least_as_strict_as(&atomic));
}

#[test]
fn a_date_right_operand_means_the_whole_utc_day() {
    let on = |op: &str| {
        policy(
            json!({"@type":"Set","permission":[{"action":"read","constraint":[
            {"leftOperand":"dateTime","operator":op,"rightOperand":{"@value":"2024-02-12","@type":"xsd:date"}}]}]}),
        )
    };
    let req = alice_reads(vec![]);
    let at_time = |t: &str| World::at(at(t));
    for (op, time, expected) in [
        ("eq", "2024-02-12T00:00:00Z", Decision::Permit),
        ("eq", "2024-02-12T23:59:59Z", Decision::Permit),
        ("eq", "2024-02-13T00:00:00Z", Decision::Deny),
        ("lteq", "2024-02-12T18:00:00Z", Decision::Permit),
        ("lt", "2024-02-12T18:00:00Z", Decision::Deny),
        ("gt", "2024-02-12T18:00:00Z", Decision::Deny),
        ("gt", "2024-02-13T00:00:00Z", Decision::Permit),
        ("gteq", "2024-02-12T00:00:00Z", Decision::Permit),
    ] {
        assert_eq!(
            decide(&on(op), &req, &at_time(time)),
            expected,
            "{op} at {time}"
        );
    }
}

#[test]
fn request_builder_reads_compact_terms() {
    let p = demo();
    let world = World::at(at("2026-01-10T00:00:00Z"));
    let req = Request::new("urn:alice", "read", "urn:x")
        .with("purpose", Value::Iri("urn:research".into()));
    assert_eq!(
        req.action.as_deref(),
        Some("http://www.w3.org/ns/odrl/2/read")
    );
    assert_eq!(decide(&p, &req, &world), Decision::Permit);
    let prefixed = Request::new("urn:alice", "odrl:read", "urn:x")
        .with("odrl:purpose", Value::Iri("urn:research".into()));
    assert_eq!(prefixed, req);
}
