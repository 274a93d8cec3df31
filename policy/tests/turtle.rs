//! Turtle in and out: every shared suite policy and every DSP example survives a round trip.

use serde_json::json;
use sluis_policy::Policy;

fn suite_policies() -> Vec<(String, String)> {
    let dir = format!(
        "{}/../../shared/spec/odrl-test-suite/policies",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("suite policies")
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("readable"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn shared_suite_policies_round_trip_through_turtle() {
    let policies = suite_policies();
    assert_eq!(policies.len(), 21);
    for (name, ttl) in policies {
        let p = Policy::from_turtle(&ttl).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = p.to_turtle().unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = Policy::from_turtle(&out).unwrap_or_else(|e| panic!("{name}: {e}\n{out}"));
        assert_eq!(back, p, "{name}\n{out}");
    }
}

#[test]
fn json_policies_round_trip_through_turtle() {
    let demo = json!({"@id":"urn:sluis:offer:meter-readings-north","@type":"Offer","profile":"https://w3id.org/sluis/odrl",
        "permission":[{"action":"use","constraint":[
            {"leftOperand":"sluis:row.region","operator":"eq","rightOperand":"north \"quoted\"\n"},
            {"leftOperand":"sluis:column","operator":"isNoneOf","rightOperand":["customer_name"]},
            {"andSequence":[{"leftOperand":"count","operator":"lteq","rightOperand":5},
                            {"leftOperand":"dateTime","operator":"lt","rightOperand":{"@value":"2027-01-01T00:00:00Z","@type":"xsd:dateTime"}}]}],
          "duty":[{"action":"sluis:hash","constraint":[{"leftOperand":"sluis:column","operator":"isAnyOf","rightOperand":["email"]}]}]}],
        "prohibition":[{"action":"distribute","target":{"@id":"urn:collection","@type":"AssetCollection"}}]});
    let p = Policy::from_json(&demo).unwrap();
    let back = Policy::from_turtle(&p.to_turtle().unwrap()).unwrap();
    assert_eq!(back, p);
}

#[test]
fn bare_extension_terms_cannot_be_written_as_turtle() {
    let p = Policy::from_json(
        &json!({"@type":"Set","permission":[{"action":"use","constraint":[
        {"leftOperand":"partner","operator":"eq","rightOperand":"gold"}]}]}),
    )
    .unwrap();
    let e = p.to_turtle().unwrap_err().to_string();
    assert!(e.contains("'partner' is not an absolute IRI"), "{e}");
}

#[test]
fn cycles_and_huge_inputs_are_bounded() {
    let cyclic = r#"@prefix odrl: <http://www.w3.org/ns/odrl/2/> .
        <urn:p> a odrl:Set ; odrl:permission [ odrl:action odrl:use ; odrl:constraint <urn:c> ] .
        <urn:c> odrl:and <urn:c> ."#;
    let e = Policy::from_turtle(cyclic)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("nested too deeply"), "{e}");
    let cyclic_list = r#"@prefix odrl: <http://www.w3.org/ns/odrl/2/> .
        @prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
        <urn:p> a odrl:Set ; odrl:permission [ odrl:action odrl:use ; odrl:constraint [
            odrl:leftOperand odrl:purpose ; odrl:operator odrl:isAnyOf ; odrl:rightOperand <urn:l> ] ] .
        <urn:l> rdf:first "a" ; rdf:rest <urn:l> ."#;
    // a cyclic RDF list ends at the size bound instead of looping forever
    let e = Policy::from_turtle(cyclic_list)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("policy too large"),
        "expected a size error, got '{e}'"
    );
    let mut many = String::from(
        "@prefix odrl: <http://www.w3.org/ns/odrl/2/> .\n<urn:p> a odrl:Set ; odrl:permission [ odrl:action odrl:use ; odrl:constraint [ odrl:leftOperand odrl:purpose ; odrl:operator odrl:isAnyOf ; odrl:rightOperand ",
    );
    many.push_str(
        &(0..30_000)
            .map(|i| format!("\"p{i}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    many.push_str(" ] ] .");
    let e = Policy::from_turtle(&many).unwrap_err().to_string();
    assert!(
        e.contains("policy too large") || e.contains("triples"),
        "{e}"
    );
}
