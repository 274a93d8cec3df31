//! Evaluation benchmarks (recorded in BENCHMARKS.md):
//!
//!     cargo run --release -p sluis-policy --example policy_bench
//!
//! 1. decisions per second on one core for a typical 3-constraint policy;
//! 2. latency of the 262-branch policy of the shared ODRL suite (policy-20), with and
//!    without building the compliance report.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sluis_policy::Policy;
use sluis_policy::eval::{Evaluator, Extensions, Request, World};
use sluis_policy::report::Decision;
use sluis_policy::value::parse_datetime;
use sluis_policy::vocab::odrl;

fn main() {
    typical();
    big_policy();
}

fn typical() {
    let policy = Policy::from_json(&serde_json::json!({
        "@type": "Agreement", "uid": "urn:a", "target": "urn:dataset:meters",
        "assignee": "did:web:consumer.example",
        "permission": [{"action": "use", "constraint": [
            {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": {"@value": "2026-01-01T00:00:00Z", "@type": "xsd:dateTime"}},
            {"leftOperand": "dateTime", "operator": "lt", "rightOperand": {"@value": "2027-01-01T00:00:00Z", "@type": "xsd:dateTime"}},
            {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["https://w3id.org/dpv#ResearchAndDevelopment", "https://w3id.org/dpv#ServiceOptimisation"]}
        ]}]
    }))
    .expect("policy");
    let ext = Extensions::new();
    let eval = Evaluator::new(&policy, &ext).expect("evaluator");
    let req = Request {
        assignee: Some("did:web:consumer.example".into()),
        action: Some(odrl("read")),
        target: Some("urn:dataset:meters".into()),
        context: vec![(
            odrl("purpose"),
            sluis_policy::Value::Iri("https://w3id.org/dpv#ServiceOptimisation".into()),
        )],
        ..Request::default()
    };
    let world = World::at(parse_datetime("2026-06-01T12:00:00Z").expect("time"));
    assert_eq!(eval.decide(&req, &world), Decision::Permit);
    let n = 5_000_000u32;
    let best = best_of(5, || {
        let start = Instant::now();
        for _ in 0..n {
            black_box(eval.decide(black_box(&req), black_box(&world)));
        }
        start.elapsed()
    });
    let per_sec = f64::from(n) / best.as_secs_f64();
    println!(
        "typical 3-constraint policy: {per_sec:.0} decisions/s ({:.0} ns/decision, best of 5 x {n})",
        1e9 / per_sec
    );
}

fn big_policy() {
    let suite = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/spec/odrl-test-suite"
    );
    let ttl =
        std::fs::read_to_string(format!("{suite}/policies/policy-20.ttl")).expect("policy-20");
    let policy = Policy::from_turtle(&ttl).expect("parse");
    let ext = Extensions::new();
    let eval = Evaluator::new(&policy, &ext).expect("evaluator");
    let req = Request {
        assignee: Some("http://example.org/alice".into()),
        action: Some(odrl("read")),
        target: Some("http://example.org/x".into()),
        ..Request::default()
    };
    // a Friday afternoon late in 2024: the satisfied branch is near the end of the `or`
    let world = World::at(parse_datetime("2024-12-27T15:00:00Z").expect("time"));
    assert_eq!(eval.decide(&req, &world), Decision::Permit);
    let n = 20_000u32;
    for (name, f) in [
        (
            "decide",
            Box::new(|| {
                black_box(eval.decide(&req, &world));
            }) as Box<dyn Fn()>,
        ),
        (
            "report",
            Box::new(|| {
                black_box(eval.report(&req, &world));
            }),
        ),
    ] {
        let best = best_of(5, || {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed()
        });
        println!(
            "policy-20 (262-branch or): {name} {:.2} us/evaluation (best of 5 x {n})",
            best.as_secs_f64() * 1e6 / f64::from(n)
        );
    }
    let start = Instant::now();
    let parsed = Policy::from_turtle(&ttl).expect("parse");
    black_box(parsed);
    println!(
        "policy-20: Turtle parse {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
}

fn best_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap_or_default()
}
