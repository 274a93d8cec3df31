//! The ODRL test suite runner: loads a folder in the layout of the SolidLab ODRL test suite
//! (`policies/`, `requests/`, `sotw/`, `test_cases/`), evaluates every test case with
//! `sluis_policy::eval`, and compares rule activation and premise satisfaction states with
//! the expected FORCE compliance report.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use sluis_policy::eval::{Evaluator, Extensions, Request, World};
use sluis_policy::parse::turtle::{Graph, Object, policy_from_graph, value};
use sluis_policy::report::*;
use sluis_policy::value::parse_datetime;
use sluis_policy::vocab::{DCT, ODRL, RDF};

/// An instant (the time a request is evaluated at).
type Instant = chrono::DateTime<chrono::Utc>;

const EX: &str = "http://example.org/";
const SOTW: &str = "https://w3id.org/force/sotw#";

/// The outcome of one test case.
#[derive(Debug)]
pub struct CaseResult {
    /// File name of the test case.
    pub name: String,
    /// What differs from the expected report (empty when the case passes).
    pub differences: Vec<String>,
}

/// One file's graph; files are kept apart because the suite reuses subjects across files
/// (every state of the world states its own `temp:currentTime`).
struct Loaded {
    graphs: Vec<Graph>,
    index: HashMap<String, usize>,
}

impl Loaded {
    fn load(dir: &Path) -> Result<Loaded> {
        let mut graphs = Vec::new();
        let mut index = HashMap::new();
        for path in ttl_files(dir)? {
            let text =
                std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
            let g = Graph::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            for s in typed_roots(&g) {
                index.entry(s).or_insert(graphs.len());
            }
            graphs.push(g);
        }
        Ok(Loaded { graphs, index })
    }

    fn get(&self, subject: &str) -> Option<&Graph> {
        self.index.get(subject).map(|&i| &self.graphs[i])
    }
}

/// Subjects declared with an `rdf:type` (policies, requests, states of the world).
fn typed_roots(g: &Graph) -> Vec<String> {
    g.pairs(&format!("{RDF}type"))
        .map(|(s, _)| s.to_string())
        .collect()
}

fn ttl_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ttl"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs every test case of `folder`.
pub fn run_folder(folder: &Path) -> Result<Vec<CaseResult>> {
    let policies = Loaded::load(&folder.join("policies"))?;
    let requests = Loaded::load(&folder.join("requests"))?;
    let worlds = Loaded::load(&folder.join("sotw"))?;
    let cases = ttl_files(&folder.join("test_cases"))?;
    if cases.is_empty() {
        bail!("{}: no test_cases/*.ttl", folder.display());
    }
    let mut out = Vec::new();
    for path in cases {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let differences = match run_case(&path, &policies, &requests, &worlds) {
            Ok(d) => d,
            Err(e) => vec![format!("error: {e:#}")],
        };
        out.push(CaseResult { name, differences });
    }
    Ok(out)
}

fn run_case(
    path: &Path,
    policies: &Loaded,
    requests: &Loaded,
    worlds: &Loaded,
) -> Result<Vec<String>> {
    let g = Graph::parse(&std::fs::read_to_string(path)?).map_err(|e| anyhow!("{e}"))?;
    let case = g
        .subjects_of_type(&format!("{EX}TestCase"))
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no ex:TestCase"))?;
    let link = |p: &str| -> Result<String> {
        g.object(&case, &format!("{EX}{p}"))
            .and_then(Object::key)
            .ok_or_else(|| anyhow!("test case has no ex:{p}"))
    };
    let (policy_id, request_id, sotw_id, expected_id) = (
        link("policy")?,
        link("request")?,
        link("sotw")?,
        link("expectedReport")?,
    );
    let pg = policies
        .get(&policy_id)
        .ok_or_else(|| anyhow!("policy {policy_id} not found"))?;
    let policy = policy_from_graph(pg, &policy_id).map_err(|e| anyhow!("policy: {e}"))?;
    let rg = requests
        .get(&request_id)
        .ok_or_else(|| anyhow!("request {request_id} not found"))?;
    let (request, asked_at) = read_request(rg, &request_id)?;
    let wg = worlds
        .get(&sotw_id)
        .ok_or_else(|| anyhow!("sotw {sotw_id} not found"))?;
    let mut world = read_world(wg, asked_at)?;
    // types stated with the request (e.g. of a declared purpose) count for `isA`
    add_types(rg, &mut world);
    let extensions = Extensions::new();
    let evaluator = Evaluator::new(&policy, &extensions).map_err(|e| anyhow!("policy: {e}"))?;
    let report = evaluator.report(&request, &world);
    let mut actual = states_of_report(&report);
    let mut expected = states_of_expected(&g, &expected_id);
    // an extension of the layout: `ex:expectedDecision ex:Permit|ex:Deny` on the test case
    if let Some(d) = iri_of(&g, &case, &format!("{EX}expectedDecision")) {
        expected.insert(
            "decision".into(),
            d.strip_prefix(EX).unwrap_or(&d).to_string(),
        );
        let got = if evaluator.decide(&request, &world) == report.decision {
            format!("{:?}", report.decision)
        } else {
            "decide() and report() disagree".to_string()
        };
        actual.insert("decision".into(), got);
    }
    let mut diffs = Vec::new();
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for k in keys {
        match (expected.get(k), actual.get(k)) {
            (Some(e), Some(a)) if e == a => {}
            (Some(e), Some(a)) => diffs.push(format!("{k}: expected {e}, got {a}")),
            (Some(e), None) => diffs.push(format!("{k}: expected {e}, not reported")),
            (None, Some(a)) => diffs.push(format!("{k}: reported {a}, not expected")),
            (None, None) => {}
        }
    }
    Ok(diffs)
}

fn odrl(local: &str) -> String {
    format!("{ODRL}{local}")
}

fn iri_of(g: &Graph, s: &str, p: &str) -> Option<String> {
    g.object(s, p).and_then(Object::iri).map(str::to_string)
}

/// An `odrl:Request` (its permission's assignee, action, target) or a FORCE
/// `sotw:EvaluationRequest` (with `sotw:requestParameter`s: `sotw:TemporalData` is the time of
/// the request, any other feature `sotw:X` the value of the left operand `odrl:x`);
/// `sotw:context` nodes (leftOperand + rightOperand) declare values too.
fn read_request(g: &Graph, id: &str) -> Result<(Request, Option<Instant>)> {
    let mut req = Request {
        uid: Some(id.to_string()),
        ..Request::default()
    };
    let node = match g.object(id, &odrl("permission")).and_then(Object::key) {
        Some(p) => {
            req.assignee = iri_of(g, &p, &odrl("assignee"));
            req.action = iri_of(g, &p, &odrl("action"));
            req.target = iri_of(g, &p, &odrl("target"));
            p
        }
        None => {
            req.assignee = iri_of(g, id, &format!("{SOTW}requestingParty"));
            req.action = iri_of(g, id, &format!("{SOTW}requestedAction"));
            req.target = iri_of(g, id, &format!("{SOTW}requestedTarget"));
            id.to_string()
        }
    };
    req.context = context_values(g, &node);
    let mut asked_at = None;
    let params: Vec<String> = g
        .objects(id, &format!("{SOTW}requestParameter"))
        .filter_map(Object::key)
        .collect();
    for p in params {
        let (Some(feature), Some(v)) = (
            iri_of(g, &p, &format!("{SOTW}describesFeature")),
            g.object(&p, &format!("{SOTW}value")),
        ) else {
            continue;
        };
        let Some(local) = feature.strip_prefix(SOTW) else {
            continue;
        };
        if local == "TemporalData" {
            if let Object::Literal { lexical, .. } = v {
                asked_at = parse_datetime(lexical);
            }
            continue;
        }
        let mut chars = local.chars();
        let left = chars
            .next()
            .map(|c| format!("{ODRL}{}{}", c.to_ascii_lowercase(), chars.as_str()))
            .unwrap_or_default();
        req.context.push((left, value(v)));
    }
    Ok((req, asked_at))
}

fn context_values(g: &Graph, node: &str) -> Vec<(String, sluis_policy::Value)> {
    g.objects(node, &format!("{SOTW}context"))
        .filter_map(Object::key)
        .filter_map(|c| {
            let left = iri_of(g, &c, &odrl("leftOperand"))?;
            let values: Vec<_> = g.objects(&c, &odrl("rightOperand")).map(value).collect();
            let v = match values.len() {
                0 => return None,
                1 => values.into_iter().next()?,
                _ => sluis_policy::Value::List(values),
            };
            Some((left, v))
        })
        .collect()
}

fn add_types(g: &Graph, world: &mut World) {
    for (s, o) in g.pairs(&format!("{RDF}type")) {
        if let Some(k) = o.key() {
            world.types.entry(s.to_string()).or_default().push(k);
        }
    }
}

/// The state of the world: current time (the request's, else `dct:issued`), `odrl:partOf`,
/// `rdf:type`, duty reports, and `sotw:context` values of further left operands
/// (`odrl:count` = uses so far).
fn read_world(g: &Graph, asked_at: Option<Instant>) -> Result<World> {
    let now = asked_at
        .or_else(|| {
            g.pairs(&format!("{DCT}issued")).find_map(|(_, o)| match o {
                Object::Literal { lexical, .. } => parse_datetime(lexical),
                _ => None,
            })
        })
        .ok_or_else(|| {
            anyhow!("neither the request nor the state of the world states the current time")
        })?;
    let mut world = World::at(now);
    for (s, o) in g.pairs(&odrl("partOf")) {
        if let Some(k) = o.key() {
            world.part_of.entry(s.to_string()).or_default().push(k);
        }
    }
    add_types(g, &mut world);
    for (s, o) in g.pairs(&format!("{REPORT}rule")) {
        let state = match iri_of(g, s, &format!("{REPORT}deonticState")).as_deref() {
            Some(x) if x == format!("{REPORT}Violated") => DeonticState::Violated,
            Some(x) if x == format!("{REPORT}Fulfilled") => DeonticState::Fulfilled,
            _ => DeonticState::NonSet,
        };
        if let Some(k) = o.key() {
            world.duties.insert(k, state);
        }
    }
    let contexts: Vec<String> = g
        .pairs(&format!("{SOTW}context"))
        .map(|(s, _)| s.to_string())
        .collect();
    for s in contexts {
        for (left, v) in context_values(g, &s) {
            if left == odrl("count") {
                world.use_count = v.text().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
            } else {
                world.operands.insert(left, v);
            }
        }
    }
    Ok(world)
}

fn rule_key(rule: Option<&str>) -> String {
    format!("rule <{}>", rule.unwrap_or("?"))
}

fn states_of_report(r: &PolicyReport) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rule in &r.rules {
        let key = rule_key(rule.rule);
        let activation = match rule.activation {
            ActivationState::Active => "Active",
            ActivationState::Inactive => "Inactive",
        };
        out.insert(key.clone(), activation.to_string());
        for p in &rule.premises {
            let (what, s) = match p {
                PremiseReport::Target(s) => ("target".to_string(), *s),
                PremiseReport::Party(s) => ("party".to_string(), *s),
                PremiseReport::Action(s) => ("action".to_string(), *s),
                PremiseReport::Constraint(c) => {
                    for x in c.flatten() {
                        out.insert(
                            format!("{key} constraint <{}>", x.constraint.unwrap_or("?")),
                            satisfaction(x.satisfaction).to_string(),
                        );
                    }
                    continue;
                }
            };
            out.insert(format!("{key} {what}"), satisfaction(s).to_string());
        }
    }
    out
}

fn satisfaction(s: SatisfactionState) -> &'static str {
    match s {
        SatisfactionState::Satisfied => "Satisfied",
        SatisfactionState::Unsatisfied => "Unsatisfied",
    }
}

fn local(iri: Option<String>) -> String {
    iri.map(|i| i.strip_prefix(REPORT).unwrap_or(&i).to_string())
        .unwrap_or_else(|| "?".into())
}

/// The expected states. Premise reports are attached to the rule report that references
/// them; a report node nobody references (the shared suite has dangling references, e.g.
/// testcase-065) belongs to the only rule report when there is exactly one.
fn states_of_expected(g: &Graph, report: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let p = |l: &str| format!("{REPORT}{l}");
    let rule_reports: Vec<String> = g
        .objects(report, &p("ruleReport"))
        .filter_map(Object::key)
        .collect();
    let mut seen = std::collections::HashSet::new();
    for rr in &rule_reports {
        let key = rule_key(iri_of(g, rr, &p("rule")).as_deref());
        out.insert(key.clone(), local(iri_of(g, rr, &p("activationState"))));
        let mut stack: Vec<String> = g
            .objects(rr, &p("premiseReport"))
            .filter_map(Object::key)
            .collect();
        while let Some(pr) = stack.pop() {
            if seen.insert(pr.clone()) {
                expected_premise(g, &pr, &key, &mut out, &mut stack);
            }
        }
    }
    if let [only] = rule_reports.as_slice() {
        let key = rule_key(iri_of(g, only, &p("rule")).as_deref());
        for t in [
            "TargetReport",
            "PartyReport",
            "ActionReport",
            "ConstraintReport",
        ] {
            for pr in g.subjects_of_type(&p(t)) {
                if !seen.contains(&pr) {
                    let mut ignored = Vec::new();
                    expected_premise(g, &pr, &key, &mut out, &mut ignored);
                }
            }
        }
    }
    out
}

fn expected_premise(
    g: &Graph,
    pr: &str,
    key: &str,
    out: &mut BTreeMap<String, String>,
    stack: &mut Vec<String>,
) {
    let p = |l: &str| format!("{REPORT}{l}");
    let Some(state) = iri_of(g, pr, &p("satisfactionState")) else {
        return; // a dangling reference: nothing to compare
    };
    let state = local(Some(state));
    let kind = [
        ("TargetReport", "target"),
        ("PartyReport", "party"),
        ("ActionReport", "action"),
    ]
    .into_iter()
    .find(|(t, _)| g.has_type(pr, &p(t)));
    match kind {
        Some((_, what)) => {
            out.insert(format!("{key} {what}"), state);
        }
        None => {
            let c = iri_of(g, pr, &p("constraint")).unwrap_or_else(|| "?".into());
            out.insert(format!("{key} constraint <{c}>"), state);
            stack.extend(g.objects(pr, &p("premiseReport")).filter_map(Object::key));
        }
    }
}

/// The shared suite folder (`../shared/spec/odrl-test-suite` next to the workspace).
pub fn shared_suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/odrl-test-suite")
}

/// This crate's own cases.
pub fn own_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("odrl-cases")
}
