//! JSON-LD intake of DSP 2025-1 messages: any JSON-LD form of a message (prefixed terms such
//! as `dspace:consumerPid` and `odrl:permission`, expanded form with full IRIs, `@value`
//! objects and arrays everywhere, flattened node lists, inline contexts) is brought to the
//! compact 2025-1 form that the schemas, the message types and the engine read.
//!
//! # The two paths
//!
//! - **Fast path** ([`is_compact`]): a body whose `@context` is exactly the DSP 2025-1 context,
//!   whose `@type` is the bare message name and whose keys are all bare terms is what almost
//!   every peer sends. It goes to the schema and the message type untouched, as before this
//!   module existed; the only added cost is one walk over its keys.
//! - **Normalisation** ([`normalise`]): everything else is expanded to RDF by `oxjsonld`
//!   (JSON-LD 1.1 expansion: contexts, `@protected`, type-scoped and propagated contexts,
//!   `@import`, `@vocab`, `@base`, lists) and compacted back against the DSP 2025-1 context
//!   by the small compactor below, which knows the shape of DSP messages.
//!
//! # Contexts
//!
//! Only the embedded contexts are loaded: the DSP 2025-1 context
//! (`https://w3id.org/dspace/2025/1/context.jsonld`) and the ODRL profile it imports
//! (`https://w3id.org/dspace/2025/1/odrl-profile.jsonld`), copied unchanged from the spec
//! into `connector/schemas/dsp-2025-1/context/`. Nothing is ever fetched: any other remote
//! context is refused naming the field `@context`, without echoing its URL. Inline context
//! objects are processed as JSON-LD says (a redefinition of a protected DSP term is refused),
//! except that they may not carry scoped contexts of their own (see Bounds).
//!
//! # What "means the same" is taken to be
//!
//! The compact 2025-1 form is not strict JSON-LD: `"leftOperand": "dateTime"` or
//! `"format": "HttpData-PULL"` are terms the DSP context does not define, and a strict
//! processor drops them. This module reads them the way the compact form does: before
//! expansion, a `@vocab` in a reserved namespace is put in front of the sender's contexts (and
//! a reserved `@base` is set), so an undefined term is kept and comes back as the same bare
//! word; the schema, the message type and the ODRL parser then judge it exactly as they judge
//! the compact form. Nothing is dropped silently. Identifiers (`@id`, `providerPid`,
//! `agreementId`, `target`, …) keep their full IRIs. Values of DSP message fields are plain
//! strings whether they were sent as IRIs or literals (other connectors send pids as
//! literals); typed ODRL right operands keep `{"@value", "@type"}`. The ODRL logical operands
//! and every `@set` term of the context are arrays, as the schemas want them. Two keys that
//! mean the same property in one node (`consumerPid` and `dspace:consumerPid`) are refused.
//!
//! # Bounds
//!
//! The body is at most [`super::messages::MAX_BODY_BYTES`] and [`MAX_JSON_DEPTH`] deep; the
//! normaliser also refuses more than [`MAX_VALUES`] JSON values, more than [`MAX_QUADS`]
//! statements, and compacted nodes nested deeper than [`MAX_JSON_DEPTH`] or more than
//! [`MAX_VALUES`] of them (references between nodes can otherwise form long chains or
//! repeat a node many times). Processing a context again for each node that uses it would
//! let a small body cost seconds, so a non-compact message may hold at most [`MAX_CONTEXTS`]
//! contexts and [`MAX_SCOPED_NODES`] nodes of DSP types with a type-scoped context, and no
//! scoped contexts in the sender's own term definitions. `oxjsonld` bounds nested remote
//! contexts (8) and loads each embedded document once per message.
//!
//! # Why `oxjsonld` (and not `json-ld` or hand-written expansion)
//!
//! Candidates, compared on features and build cost (measured on the 2-core machine, debug
//! profile with dependencies at `opt-level = 1` as in this workspace, `cargo build -j1
//! --timings` in a scratch project with its own target dir; see BENCHMARKS.md, "DSP message
//! intake"):
//!
//! | crate | JSON-LD 1.1 | API | crates new to this workspace | build alone (-j1) |
//! |---|---|---|---|---|
//! | `json-ld` 0.21 (`sophia_jsonld` wraps it) | expansion, compaction, framing | async loader, own JSON and IRI types | 53 | 167 units, 260 s |
//! | `oxjsonld` 0.2 (oxigraph) | expansion to RDF, streaming | sync iterator of quads, loader callback | **0** (built for oxigraph already) | 44 units, 56 s, **0 s added** |
//! | hand-written expansion | the subset we would write | — | 0 | 0 |
//!
//! `json-ld` would give compaction too, but its compaction is strict JSON-LD, which drops the
//! undefined terms the compact DSP form relies on (see above), so a DSP-specific step would
//! still be needed; and it would add about 260 s of compile work (over 2 minutes of wall time
//! on 2 cores) to a clean build that the next issue wants 3 minutes shorter. `oxjsonld` is
//! maintained in the oxigraph repository (which the catalogue uses) and is already compiled
//! in every build of the connector, so it adds nothing to a newcomer's clean build. What it lacks is compaction; compacting
//! against one fixed context into the shapes of DSP messages is the small part kept here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use oxjsonld::{JsonLdErrorCode, JsonLdParser, JsonLdRemoteDocument};
use oxrdf::{GraphName, Literal, NamedOrBlankNode, Term};
use serde_json::{Map, Value, json};

use super::DSP_CONTEXT;
use super::messages::MAX_JSON_DEPTH;

/// The ODRL profile context that the DSP 2025-1 context imports in its type-scoped contexts.
pub const ODRL_PROFILE_CONTEXT: &str = "https://w3id.org/dspace/2025/1/odrl-profile.jsonld";

/// Most JSON values (objects, arrays, scalars) in a message that is normalised, and most
/// nodes the compacted message may have.
pub const MAX_VALUES: usize = 8_192;
/// Most RDF statements a message may expand to.
pub const MAX_QUADS: usize = 8_192;
/// Most contexts (remote references and inline objects, counted over the whole body) in a
/// message that is normalised: each is processed on its own, and processing the DSP context
/// costs milliseconds.
pub const MAX_CONTEXTS: usize = 4;
/// Most nodes whose `@type` is a DSP term with a type-scoped context (the message, a
/// `DataAddress`, its `EndpointProperty`s): each such node processes that context again.
pub const MAX_SCOPED_NODES: usize = 32;

/// The embedded contexts, by URL (copied unchanged from the DSP 2025-1 artifacts).
const CONTEXTS: &[(&str, &str)] = &[
    (
        DSP_CONTEXT,
        include_str!("../../schemas/dsp-2025-1/context/dspace.jsonld"),
    ),
    (
        ODRL_PROFILE_CONTEXT,
        include_str!("../../schemas/dsp-2025-1/context/odrl.jsonld"),
    ),
];

/// Namespace given to terms the sender's contexts leave undefined (a reserved `.invalid`
/// host: never resolvable, never a real vocabulary). Such terms come back as bare words.
const TERM_VOCAB: &str = "https://sluis.invalid/term#";
/// Base IRI for relative IRIs, stripped again on compaction.
const BASE: &str = "https://sluis.invalid/relative/";

const DSPACE: &str = "https://w3id.org/dspace/2025/1/";
const ODRL: &str = "http://www.w3.org/ns/odrl/2/";
const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";
const RDF_FIRST: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#first";
const RDF_REST: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#rest";
const RDF_NIL: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#nil";
const XSD: &str = "http://www.w3.org/2001/XMLSchema#";

/// Why a body is not a DSP 2025-1 message in any JSON-LD form. The text names the field and
/// never repeats a value from the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a DSP 2025-1 message in JSON-LD at {field}: {detail}")]
pub struct JsonLdError {
    /// The offending key (`@context`, `@id`, a property name) or `/` for the whole body.
    pub field: String,
    /// What is wrong and what to do.
    pub detail: String,
}

impl JsonLdError {
    fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }

    fn unknown_context() -> Self {
        Self::new(
            "@context",
            "a remote context other than the DSP 2025-1 context is not accepted (remote \
             contexts are never fetched); use the DSP context and inline definitions",
        )
    }
}

/// What one walk over a body finds: its nesting depth and whether all its keys are bare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Nesting depth (a scalar is 1).
    pub depth: usize,
    /// Every key is a bare term or a keyword (no `prefix:` or IRI keys, which are JSON-LD's
    /// other forms even under the DSP context), and no nested object has a `@context`.
    pub bare_keys: bool,
}

/// Walks a body once, iteratively (a hostile body must not exhaust the stack). This is the
/// walk the depth check always made; the key check rides along, so the fast path costs one
/// byte search per key more than before.
pub fn shape(value: &Value) -> Shape {
    let mut shape = Shape {
        depth: 0,
        bare_keys: true,
    };
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        shape.depth = shape.depth.max(depth);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => {
                for (k, item) in map {
                    if k.as_bytes().contains(&b':') || (depth > 1 && k == "@context") {
                        shape.bare_keys = false;
                    }
                    stack.push((item, depth + 1));
                }
            }
            _ => {}
        }
    }
    shape
}

/// Whether `value`, of the given [`shape`], is in the compact 2025-1 form of `expected`: an
/// object whose `@context` is exactly the DSP 2025-1 context, whose `@type` is the bare
/// message name, and whose keys are all bare. Such a body takes the fast path (no
/// normalisation).
pub fn is_compact(value: &Value, shape: Shape, expected: &str) -> bool {
    let Some(obj) = value.as_object() else {
        return false;
    };
    // `"@context": "…/context.jsonld"` (a string) means the same, but the schema wants an
    // array: it is normalised
    let context_ok = match obj.get("@context") {
        Some(Value::Array(cs)) => cs.len() == 1 && cs[0] == DSP_CONTEXT,
        _ => false,
    };
    shape.bare_keys && context_ok && obj.get("@type").and_then(Value::as_str) == Some(expected)
}

/// Brings a message in any JSON-LD form to the compact DSP 2025-1 form: `@context` is the DSP
/// context, keys and vocabulary values are the context's terms. The result still has to pass
/// the message's schema.
pub fn normalise(value: &Value) -> Result<Value, JsonLdError> {
    let _span = tracing::debug_span!("dsp_jsonld_normalise").entered();
    check_input(value)?;
    let input = serde_json::to_vec(&with_term_vocab(value))
        .map_err(|_| JsonLdError::new("/", "the body cannot be read as JSON"))?;
    let unknown_context = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&unknown_context);
    let parser = JsonLdParser::new()
        .with_base_iri(BASE)
        .map_err(|_| JsonLdError::new("/", "internal: invalid base IRI"))?
        .for_slice(&input)
        .with_load_document_callback(move |url, _| match embedded_context(url) {
            Some(text) => Ok(JsonLdRemoteDocument {
                document: text.as_bytes().to_vec(),
                document_url: url.to_string(),
            }),
            None => {
                flag.store(true, Ordering::Relaxed);
                Err("not an embedded context".into())
            }
        });
    let mut graph = Graph::default();
    for quad in parser {
        let quad = quad.map_err(|e| {
            if unknown_context.load(Ordering::Relaxed) {
                JsonLdError::unknown_context()
            } else {
                syntax_error(e.code())
            }
        })?;
        if quad.graph_name != GraphName::DefaultGraph {
            return Err(JsonLdError::new(
                "@graph",
                "named graphs are not part of a DSP message; send the message node alone",
            ));
        }
        graph.add(quad.subject, quad.predicate.into_string(), quad.object)?;
    }
    if unknown_context.load(Ordering::Relaxed) {
        return Err(JsonLdError::unknown_context());
    }
    let root = graph.root()?;
    let mut compactor = Compactor {
        graph: &graph,
        vocab: vocabulary(),
        emitted: 0,
    };
    let mut path = Vec::new();
    let node = compactor.node(&root, &[], &mut path)?;
    let mut out = Map::new();
    out.insert("@context".into(), json!([DSP_CONTEXT]));
    out.extend(node);
    tracing::debug!(
        statements = graph.quads,
        "normalised a JSON-LD message to the compact form"
    );
    Ok(Value::Object(out))
}

/// The text of an embedded context.
fn embedded_context(url: &str) -> Option<&'static str> {
    CONTEXTS.iter().find(|(u, _)| *u == url).map(|(_, t)| *t)
}

/// Maps an `oxjsonld` error to the field it concerns; its message is not used, as it may
/// quote the body.
fn syntax_error(code: Option<JsonLdErrorCode>) -> JsonLdError {
    use JsonLdErrorCode as C;
    let Some(code) = code else {
        return JsonLdError::new("/", "the body is not valid JSON-LD");
    };
    let field = match code {
        C::LoadingDocumentFailed | C::LoadingRemoteContextFailed | C::InvalidRemoteContext => {
            return JsonLdError::unknown_context();
        }
        C::InvalidIdValue => "@id",
        C::InvalidTypeValue | C::InvalidTypedValue => "@type",
        C::InvalidValueObject | C::InvalidValueObjectValue => "@value",
        C::InvalidSetOrListObject => "@list",
        C::InvalidLanguageTaggedString | C::InvalidLanguageTaggedValue => "@language",
        C::ProtectedTermRedefinition
        | C::InvalidContextEntry
        | C::InvalidContextNullification
        | C::InvalidLocalContext
        | C::InvalidScopedContext
        | C::InvalidTermDefinition
        | C::InvalidIriMapping
        | C::InvalidTypeMapping
        | C::InvalidVocabMapping
        | C::InvalidContainerMapping
        | C::InvalidImportValue
        | C::InvalidVersionValue
        | C::KeywordRedefinition
        | C::CyclicIriMapping
        | C::ContextOverflow
        | C::ProcessingModeConflict => "@context",
        _ => "/",
    };
    JsonLdError::new(field, format!("{code}"))
}

/// Refuses bodies too large or deep to normalise, work that grows with the body faster than
/// its size (contexts processed again and again, see [`MAX_CONTEXTS`] and
/// [`MAX_SCOPED_NODES`]; scoped contexts in the sender's own definitions), and `null`
/// contexts (which would also clear the vocabulary that keeps undefined terms, so that they
/// would be dropped silently).
fn check_input(value: &Value) -> Result<(), JsonLdError> {
    let scoped_types = &vocabulary().scoped_terms;
    let (mut count, mut contexts, mut scoped) = (0usize, 0usize, 0usize);
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        count += 1;
        if count > MAX_VALUES {
            return Err(JsonLdError::new(
                "/",
                format!("more than {MAX_VALUES} JSON values; send a smaller message"),
            ));
        }
        if depth > MAX_JSON_DEPTH {
            return Err(JsonLdError::new(
                "/",
                format!("nested deeper than {MAX_JSON_DEPTH} levels"),
            ));
        }
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Object(map) => {
                if let Some(ctx) = map.get("@context") {
                    contexts += check_context(ctx)?;
                    if contexts > MAX_CONTEXTS {
                        return Err(JsonLdError::new(
                            "@context",
                            format!("more than {MAX_CONTEXTS} contexts in one message"),
                        ));
                    }
                }
                if let Some(types) = map.get("@type") {
                    let mut names = match types {
                        Value::Array(items) => items.iter().collect(),
                        one => vec![one],
                    };
                    names.retain(|t| t.as_str().is_some_and(|t| scoped_types.contains(t)));
                    scoped += names.len();
                    if scoped > MAX_SCOPED_NODES {
                        return Err(JsonLdError::new(
                            "@type",
                            format!("more than {MAX_SCOPED_NODES} nodes of DSP message types"),
                        ));
                    }
                }
                // the context was checked above; its definitions are not message values
                stack.extend(
                    map.iter()
                        .filter(|(k, _)| *k != "@context")
                        .map(|(_, i)| (i, depth + 1)),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks one `@context` value of the body and returns how many contexts it holds (an
/// `@import` counts as one more).
fn check_context(ctx: &Value) -> Result<usize, JsonLdError> {
    let items = match ctx {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut count = items.len();
    for item in items {
        match item {
            Value::Null => {
                return Err(JsonLdError::new(
                    "@context",
                    "a null context is not accepted in a DSP message",
                ));
            }
            Value::Object(defs) => {
                if defs.values().any(|d| d.get("@context").is_some()) {
                    return Err(JsonLdError::new(
                        "@context",
                        "scoped contexts in a sender's term definitions are not accepted; \
                         define plain terms and prefixes",
                    ));
                }
                count += usize::from(defs.contains_key("@import"));
            }
            _ => {}
        }
    }
    Ok(count)
}

/// The body with the reserved `@vocab` in front of its own contexts, so that terms the sender
/// did not define are kept (see the module docs).
fn with_term_vocab(value: &Value) -> Value {
    let vocab = json!({ "@vocab": TERM_VOCAB });
    match value {
        Value::Object(map) => {
            let mut map = map.clone();
            let contexts = match map.remove("@context") {
                None => vec![vocab],
                Some(Value::Array(items)) => std::iter::once(vocab).chain(items).collect(),
                Some(other) => vec![vocab, other],
            };
            map.insert("@context".into(), Value::Array(contexts));
            Value::Object(map)
        }
        // A top-level array (expanded or flattened form) is the default graph.
        Value::Array(_) => json!({ "@context": vocab, "@graph": value }),
        other => other.clone(),
    }
}

// ---- the RDF graph of one message ---------------------------------------------------------------

/// A node key: the IRI of a named node, `_:id` for a blank node.
fn key(node: &NamedOrBlankNode) -> String {
    match node {
        NamedOrBlankNode::NamedNode(n) => n.as_str().to_string(),
        NamedOrBlankNode::BlankNode(b) => format!("_:{}", b.as_str()),
    }
}

/// The node key of an object, if it is a node.
fn object_key(term: &Term) -> Option<String> {
    if let Term::NamedNode(n) = term {
        Some(n.as_str().to_string())
    } else if let Term::BlankNode(b) = term {
        Some(format!("_:{}", b.as_str()))
    } else {
        None
    }
}

/// The statements of a message, by subject, in the order they were read.
#[derive(Default)]
struct Graph {
    subjects: Vec<String>,
    props: HashMap<String, Vec<(String, Term)>>,
    objects: HashSet<String>,
    quads: usize,
}

impl Graph {
    fn add(
        &mut self,
        subject: NamedOrBlankNode,
        predicate: String,
        object: Term,
    ) -> Result<(), JsonLdError> {
        self.quads += 1;
        if self.quads > MAX_QUADS {
            return Err(JsonLdError::new(
                "/",
                format!("the message expands to more than {MAX_QUADS} statements"),
            ));
        }
        let s = key(&subject);
        if let Some(o) = object_key(&object)
            && predicate != RDF_TYPE
        {
            self.objects.insert(o);
        }
        let props = self.props.entry(s.clone()).or_insert_with(|| {
            self.subjects.push(s);
            Vec::new()
        });
        props.push((predicate, object));
        Ok(())
    }

    /// The one node nothing refers to: the message.
    fn root(&self) -> Result<String, JsonLdError> {
        let mut roots = self.subjects.iter().filter(|s| !self.objects.contains(*s));
        match (roots.next(), roots.next()) {
            (Some(root), None) => Ok(root.clone()),
            (None, _) => Err(JsonLdError::new(
                "/",
                "no message node: the body must describe one DSP message with its @type",
            )),
            (Some(_), Some(_)) => Err(JsonLdError::new(
                "/",
                "more than one top-level node: the body must describe one DSP message",
            )),
        }
    }
}

// ---- the compaction context (the embedded DSP context) --------------------------------------------

/// How a term's values are written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Coercion {
    None,
    /// `"@type": "@id"`: an identifier.
    Id,
    /// `"@type": "@vocab"`: a vocabulary term.
    Vocab,
    /// A datatype IRI.
    Datatype(String),
}

/// One term of the DSP context.
#[derive(Debug, Clone)]
struct TermDef {
    term: String,
    iri: String,
    coercion: Coercion,
    /// `"@container": "@set"`: always an array.
    set: bool,
}

/// The terms in force for a node of one type.
#[derive(Debug, Default)]
struct Scope {
    terms: Vec<TermDef>,
    /// `@propagate`: the terms stay in force for nested nodes.
    propagate: bool,
}

/// The DSP 2025-1 context, read once from the embedded copy.
#[derive(Debug, Default)]
struct Vocabulary {
    prefixes: Vec<(String, String)>,
    /// The terms of the root context that carry a type-scoped context.
    scoped_terms: HashSet<String>,
    global: Scope,
    /// Type-scoped contexts, by type IRI.
    scoped: HashMap<String, Scope>,
}

fn vocabulary() -> &'static Vocabulary {
    static VOCAB: OnceLock<Vocabulary> = OnceLock::new();
    VOCAB.get_or_init(|| {
        read_vocabulary().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the embedded DSP context cannot be read");
            Vocabulary::default()
        })
    })
}

fn context_object(url: &str) -> Result<Map<String, Value>, String> {
    let text = embedded_context(url).ok_or_else(|| format!("{url} is not embedded"))?;
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("{url}: {e}"))?;
    match doc.get("@context") {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(format!("{url} has no @context object")),
    }
}

fn read_vocabulary() -> Result<Vocabulary, String> {
    let root = context_object(DSP_CONTEXT)?;
    let odrl = context_object(ODRL_PROFILE_CONTEXT)?;
    let mut prefixes = Vec::new();
    for ctx in [&root, &odrl] {
        for (k, v) in ctx {
            if let Value::String(iri) = v
                && iri.ends_with(['/', '#'])
            {
                prefixes.push((k.clone(), iri.clone()));
            }
        }
    }
    let odrl_terms = terms(&odrl, &prefixes);
    let mut scoped = HashMap::new();
    let mut scoped_terms = HashSet::new();
    for (term, def) in &root {
        if let Value::Object(d) = def
            && let Some(Value::Object(local)) = d.get("@context")
        {
            let mut scope = Scope {
                terms: terms(local, &prefixes),
                propagate: local.get("@propagate") == Some(&Value::Bool(true)),
            };
            if local.get("@import").and_then(Value::as_str) == Some(ODRL_PROFILE_CONTEXT) {
                // the local definitions win over the imported ones: they come first
                scope.terms.extend(odrl_terms.iter().cloned());
            }
            let iri = d.get("@id").and_then(Value::as_str).unwrap_or(term);
            scoped.insert(expand(iri, &prefixes), scope);
            scoped_terms.insert(term.clone());
        }
    }
    Ok(Vocabulary {
        global: Scope {
            terms: terms(&root, &prefixes),
            propagate: true,
        },
        prefixes,
        scoped_terms,
        scoped,
    })
}

/// Expands a prefixed name with the context's prefixes.
fn expand(s: &str, prefixes: &[(String, String)]) -> String {
    if let Some((p, local)) = s.split_once(':')
        && let Some((_, ns)) = prefixes.iter().find(|(q, _)| q == p)
    {
        return format!("{ns}{local}");
    }
    s.to_string()
}

/// The term definitions of one context object (prefixes and keywords left out).
fn terms(ctx: &Map<String, Value>, prefixes: &[(String, String)]) -> Vec<TermDef> {
    let mut out = Vec::new();
    for (term, def) in ctx {
        if term.starts_with('@') {
            continue;
        }
        let (iri, coercion, set) = match def {
            Value::String(s) if s.ends_with(['/', '#']) => continue,
            Value::String(s) => (expand(s, prefixes), Coercion::None, false),
            Value::Object(d) => {
                let Some(id) = d.get("@id").and_then(Value::as_str) else {
                    continue;
                };
                let coercion = match d.get("@type").and_then(Value::as_str) {
                    None => Coercion::None,
                    Some("@id") => Coercion::Id,
                    Some("@vocab") => Coercion::Vocab,
                    Some(dt) => Coercion::Datatype(expand(dt, prefixes)),
                };
                let set = d.get("@container").and_then(Value::as_str) == Some("@set");
                (expand(id, prefixes), coercion, set)
            }
            _ => continue,
        };
        out.push(TermDef {
            term: term.clone(),
            iri,
            coercion,
            set,
        });
    }
    out
}

// ---- compaction ---------------------------------------------------------------------------------

/// ODRL properties whose values the schemas want as arrays although the context does not say
/// `@set`.
const ALWAYS_ARRAYS: &[&str] = &["and", "or", "xone", "andSequence"];

struct Compactor<'a> {
    graph: &'a Graph,
    vocab: &'static Vocabulary,
    emitted: usize,
}

impl<'a> Compactor<'a> {
    /// The compact object of node `key`. `inherited`: the propagated type-scoped contexts of
    /// the enclosing nodes; `path`: the nodes being compacted (a node inside itself is refused).
    fn node(
        &mut self,
        key: &str,
        inherited: &[&'static Scope],
        path: &mut Vec<String>,
    ) -> Result<Map<String, Value>, JsonLdError> {
        self.spend()?;
        enter(path, key)?;
        let props = self.graph.props.get(key).map(Vec::as_slice).unwrap_or(&[]);
        // The node's own type-scoped contexts first, then the propagated ones, then the root.
        let mut scopes: Vec<&'static Scope> = props
            .iter()
            .filter(|(p, _)| p == RDF_TYPE)
            .filter_map(|(_, t)| object_key(t))
            .filter_map(|t| self.vocab.scoped.get(&t))
            .collect();
        let own = scopes.len();
        scopes.extend(inherited.iter().copied());
        scopes.push(&self.vocab.global);
        let passed_on: Vec<&'static Scope> = scopes[..scopes.len() - 1]
            .iter()
            .enumerate()
            .filter(|(i, s)| *i >= own || s.propagate)
            .map(|(_, s)| *s)
            .collect();

        let mut out = Map::new();
        if !key.starts_with("_:") {
            out.insert("@id".into(), Value::String(compact_id(key)));
        }
        let types: Vec<Value> = props
            .iter()
            .filter(|(p, _)| p == RDF_TYPE)
            .filter_map(|(_, t)| object_key(t))
            .map(|t| Value::String(self.vocab_iri(&t, &scopes)))
            .collect();
        match types.len() {
            0 => {}
            1 => {
                out.insert("@type".into(), types.into_iter().next().unwrap_or_default());
            }
            _ => {
                out.insert("@type".into(), Value::Array(types));
            }
        }

        // Group the values by predicate, in the order the predicates were first read.
        let mut order: Vec<&str> = Vec::new();
        let mut values: HashMap<&str, Vec<&Term>> = HashMap::new();
        for (p, o) in props.iter().filter(|(p, _)| p != RDF_TYPE) {
            values
                .entry(p.as_str())
                .or_insert_with(|| {
                    order.push(p.as_str());
                    Vec::new()
                })
                .push(o);
        }
        let mut keys_of: HashMap<String, &str> = HashMap::new();
        for predicate in order {
            let (name, def) = self.property(predicate, &scopes);
            // two predicates that compact to one key (`consumerPid` undefined by the
            // sender's context beside `dspace:consumerPid`): the sender mixed two forms
            if keys_of.insert(name.clone(), predicate).is_some() {
                return Err(JsonLdError::new(
                    truncate(&name),
                    "given twice, in two forms that mean different properties; send one",
                ));
            }
            let mut items = Vec::new();
            for object in &values[predicate] {
                items.push(self.value(object, predicate, def, &passed_on, path)?);
            }
            let always_array = def.is_some_and(|d| d.set)
                || predicate
                    .strip_prefix(ODRL)
                    .is_some_and(|l| ALWAYS_ARRAYS.contains(&l));
            let value = if items.len() == 1 && !always_array {
                items.pop().unwrap_or_default()
            } else {
                Value::Array(items)
            };
            out.insert(name, value);
        }
        path.pop();
        Ok(out)
    }

    /// The key of a property, and its term definition if the DSP context has one.
    fn property(&self, iri: &str, scopes: &[&'static Scope]) -> (String, Option<&'static TermDef>) {
        if let Some(term) = iri.strip_prefix(TERM_VOCAB) {
            return (term.to_string(), None);
        }
        for scope in scopes {
            if let Some(def) = scope.terms.iter().find(|d| d.iri == iri) {
                return (def.term.clone(), Some(def));
            }
        }
        (self.prefixed(iri), None)
    }

    /// A vocabulary IRI (a type, an action, an operator) as a term where the context has one.
    fn vocab_iri(&self, iri: &str, scopes: &[&'static Scope]) -> String {
        if let Some(term) = iri.strip_prefix(TERM_VOCAB) {
            return term.to_string();
        }
        if let Some(relative) = iri.strip_prefix(BASE) {
            return relative.to_string();
        }
        for scope in scopes {
            if let Some(def) = scope.terms.iter().find(|d| d.iri == iri) {
                return def.term.clone();
            }
        }
        self.prefixed(iri)
    }

    /// `prefix:local` with the longest namespace of the DSP context, or the IRI itself.
    fn prefixed(&self, iri: &str) -> String {
        self.vocab
            .prefixes
            .iter()
            .filter(|(_, ns)| iri.len() > ns.len() && iri.starts_with(ns.as_str()))
            .max_by_key(|(_, ns)| ns.len())
            .map(|(p, ns)| format!("{p}:{}", &iri[ns.len()..]))
            .unwrap_or_else(|| iri.to_string())
    }

    /// The compact form of one value of `predicate`.
    fn value(
        &mut self,
        object: &Term,
        predicate: &str,
        def: Option<&'static TermDef>,
        scopes: &[&'static Scope],
        path: &mut Vec<String>,
    ) -> Result<Value, JsonLdError> {
        self.spend()?;
        let coercion = def.map(|d| &d.coercion).unwrap_or(&Coercion::None);
        // DSP message fields are plain strings, however they were sent.
        let plain = predicate.starts_with(DSPACE) || *coercion != Coercion::None;
        if let Term::Literal(l) = object {
            return Ok(literal(l, plain, coercion, |dt| self.prefixed(dt)));
        }
        let Some(key) = object_key(object) else {
            return Err(JsonLdError::new(
                truncate(predicate),
                "unsupported value (RDF-star)",
            ));
        };
        if key == RDF_NIL {
            return Ok(Value::Array(Vec::new()));
        }
        if let Some(items) = self.list(&key)? {
            enter(path, &key)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(self.value(item, predicate, def, scopes, path)?);
            }
            path.pop();
            return Ok(Value::Array(out));
        }
        if self.graph.props.contains_key(&key) {
            let node = self.node(&key, scopes, path)?;
            return Ok(Value::Object(node));
        }
        if key.starts_with("_:") {
            return Ok(Value::Object(Map::new()));
        }
        let all_scopes: Vec<&'static Scope> = scopes
            .iter()
            .copied()
            .chain(std::iter::once(&self.vocab.global))
            .collect();
        Ok(match coercion {
            Coercion::Vocab => Value::String(self.vocab_iri(&key, &all_scopes)),
            _ if plain => Value::String(compact_id(&key)),
            _ => json!({ "@id": compact_id(&key) }),
        })
    }

    /// The items of the RDF list starting at `key`, if `key` is the blank node of one.
    fn list(&self, key: &str) -> Result<Option<Vec<&'a Term>>, JsonLdError> {
        let graph: &'a Graph = self.graph;
        let is_list = |k: &str| {
            k.starts_with("_:")
                && graph
                    .props
                    .get(k)
                    .is_some_and(|p| p.iter().any(|(p, _)| p == RDF_FIRST))
        };
        if !is_list(key) {
            return Ok(None);
        }
        let malformed =
            || JsonLdError::new("@list", "a list node must have one first and one rest");
        let mut items = Vec::new();
        let mut current = key.to_string();
        loop {
            let props = graph.props.get(&current).ok_or_else(malformed)?;
            let one = |name: &str| {
                let mut found = props.iter().filter(|(p, _)| p == name).map(|(_, o)| o);
                match (found.next(), found.next()) {
                    (Some(o), None) => Some(o),
                    _ => None,
                }
            };
            let (Some(first), Some(rest), 2) = (one(RDF_FIRST), one(RDF_REST), props.len()) else {
                return Err(malformed());
            };
            items.push(first);
            // a list that comes back to itself would never end
            if items.len() > graph.quads {
                return Err(JsonLdError::new("@list", "a list refers back to itself"));
            }
            match object_key(rest) {
                Some(next) if next == RDF_NIL => return Ok(Some(items)),
                Some(next) if is_list(&next) => current = next,
                _ => return Err(malformed()),
            }
        }
    }

    /// Counts one more value of the output against [`MAX_VALUES`] (nodes and lists can be
    /// referred to many times, so the output can be far larger than the input).
    fn spend(&mut self) -> Result<(), JsonLdError> {
        self.emitted += 1;
        if self.emitted > MAX_VALUES {
            return Err(JsonLdError::new(
                "/",
                format!("the message repeats its nodes into more than {MAX_VALUES} values"),
            ));
        }
        Ok(())
    }
}

/// Enters node or list `key` on the current path: refuses cycles and deep nesting.
fn enter(path: &mut Vec<String>, key: &str) -> Result<(), JsonLdError> {
    if path.len() >= MAX_JSON_DEPTH {
        return Err(JsonLdError::new(
            "/",
            format!("nodes nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    if path.iter().any(|p| p == key) {
        return Err(JsonLdError::new("@id", "a node refers back to itself"));
    }
    path.push(key.to_string());
    Ok(())
}

/// An identifier: relative IRIs (resolved against the reserved base) come back relative;
/// everything else keeps its full IRI, as identifiers are compared as strings.
fn compact_id(iri: &str) -> String {
    iri.strip_prefix(BASE).unwrap_or(iri).to_string()
}

/// A literal as JSON: strings, booleans and numbers natively; other datatypes as
/// `{"@value", "@type"}` unless the field is a plain string (`plain`).
fn literal(
    l: &Literal,
    plain: bool,
    coercion: &Coercion,
    prefixed: impl Fn(&str) -> String,
) -> Value {
    let lexical = l.value();
    if let Some(language) = l.language() {
        if plain {
            return Value::String(lexical.to_string());
        }
        return json!({ "@value": lexical, "@language": language });
    }
    let datatype = l.datatype().as_str();
    match datatype.strip_prefix(XSD) {
        Some("string") => return Value::String(lexical.to_string()),
        Some("boolean") => match lexical {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        },
        Some("integer") => {
            if let Ok(i) = lexical.parse::<i64>() {
                return Value::from(i);
            }
        }
        Some("double") => {
            if let Some(n) = lexical
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                return Value::Number(n);
            }
        }
        _ => {}
    }
    if plain || *coercion == Coercion::Datatype(datatype.to_string()) {
        return Value::String(lexical.to_string());
    }
    json!({ "@value": lexical, "@type": prefixed(datatype) })
}

/// A key or IRI shortened for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::messages::{
        self, ContractRequestMessage, MessageError, TransferRequestMessage,
    };
    use sluis_policy::Policy;

    const D: &str = "https://w3id.org/dspace/2025/1/";
    const O: &str = "http://www.w3.org/ns/odrl/2/";

    fn compact_request() -> Value {
        json!({
            "@context": [DSP_CONTEXT],
            "@type": "ContractRequestMessage",
            "consumerPid": "urn:uuid:c",
            "callbackAddress": "https://c.example/dsp",
            "offer": {
                "@id": "urn:o", "@type": "Offer", "target": "urn:d",
                "permission": [{"action": "use", "constraint": [
                    {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"},
                    {"leftOperand": "dateTime", "operator": "lteq",
                     "rightOperand": {"@value": "2030-01-01T00:00:00Z", "@type": "xsd:dateTime"}}
                ]}]
            }
        })
    }

    /// The same request with prefixed terms (DSP 2024-1 style) under inline prefixes.
    fn prefixed_request() -> Value {
        json!({
            "@context": {"dspace": D, "odrl": O, "xsd": "http://www.w3.org/2001/XMLSchema#"},
            "@type": "dspace:ContractRequestMessage",
            "dspace:consumerPid": "urn:uuid:c",
            "dspace:callbackAddress": "https://c.example/dsp",
            "dspace:offer": {
                "@id": "urn:o", "@type": "odrl:Offer", "odrl:target": {"@id": "urn:d"},
                "odrl:permission": [{"odrl:action": {"@id": "odrl:use"}, "odrl:constraint": [
                    {"odrl:leftOperand": {"@id": "odrl:purpose"}, "odrl:operator": {"@id": "odrl:eq"},
                     "odrl:rightOperand": "research"},
                    {"odrl:leftOperand": {"@id": "odrl:dateTime"}, "odrl:operator": {"@id": "odrl:lteq"},
                     "odrl:rightOperand": {"@value": "2030-01-01T00:00:00Z", "@type": "xsd:dateTime"}}
                ]}]
            }
        })
    }

    /// The same request in expanded form: full IRIs, `@value` objects, arrays everywhere.
    fn expanded_request() -> Value {
        let o = |l: &str| format!("{O}{l}");
        json!([{
            "@type": [format!("{D}ContractRequestMessage")],
            format!("{D}consumerPid"): [{"@value": "urn:uuid:c"}],
            format!("{D}callbackAddress"): [{"@value": "https://c.example/dsp"}],
            format!("{D}offer"): [{
                "@id": "urn:o", "@type": [o("Offer")], o("target"): [{"@id": "urn:d"}],
                o("permission"): [{
                    o("action"): [{"@id": o("use")}],
                    o("constraint"): [
                        {o("leftOperand"): [{"@id": o("purpose")}], o("operator"): [{"@id": o("eq")}],
                         o("rightOperand"): [{"@value": "research"}]},
                        {o("leftOperand"): [{"@id": o("dateTime")}], o("operator"): [{"@id": o("lteq")}],
                         o("rightOperand"): [{"@value": "2030-01-01T00:00:00Z",
                                               "@type": "http://www.w3.org/2001/XMLSchema#dateTime"}]}
                    ]
                }]
            }]
        }])
    }

    fn parse_request(v: &Value) -> Result<ContractRequestMessage, MessageError> {
        messages::parse(v.to_string().as_bytes(), "ContractRequestMessage")
    }

    /// Two requests mean the same: same fields, offers equal as ODRL policies.
    fn assert_same_request(a: &ContractRequestMessage, b: &ContractRequestMessage) {
        assert_eq!(a.consumer_pid, b.consumer_pid);
        assert_eq!(a.provider_pid, b.provider_pid);
        assert_eq!(a.callback_address, b.callback_address);
        assert_eq!(a.offer["@id"], b.offer["@id"]);
        let pa = Policy::from_json(&a.offer).unwrap();
        let pb = Policy::from_json(&b.offer).unwrap();
        assert!(pa.equivalent(&pb), "{} vs {}", a.offer, b.offer);
        assert_eq!(pa.target(), pb.target());
    }

    #[test]
    fn the_compact_form_takes_the_fast_path_and_is_a_fixed_point() {
        let compact_form = |v: &Value| is_compact(v, shape(v), "ContractRequestMessage");
        let compact = compact_request();
        assert!(compact_form(&compact));
        assert_eq!(shape(&compact).depth, messages::depth(&compact));
        assert_eq!(normalise(&compact).unwrap(), compact);
        assert!(!compact_form(&prefixed_request()));
        assert!(!compact_form(&expanded_request()));
        // a prefixed key deep inside, or a nested context, leaves the fast path
        let mut deep = compact_request();
        deep["offer"]["permission"][0]["odrl:duty"] = json!([]);
        assert!(!compact_form(&deep));
        let mut scoped = compact_request();
        scoped["offer"]["@context"] = json!({});
        assert!(!compact_form(&scoped));
    }

    #[test]
    fn the_spec_examples_are_fixed_points() {
        let examples = crate::dsp::schema::tests::spec_examples();
        if examples.is_empty() {
            return; // the shared spec folder sits beside the repository in CI and here
        }
        let mut checked = 0;
        for (path, _, v) in examples.iter().filter(|(_, t, _)| t.ends_with("Message")) {
            let mut expected = v.clone();
            // JSON-LD has no empty arrays: `"filter": []` says nothing
            if let Some(m) = expected.as_object_mut() {
                m.retain(|_, x| x.as_array().is_none_or(|a| !a.is_empty()));
            }
            let normal = normalise(v).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(normal, expected, "{}", path.display());
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} examples checked");
    }

    #[test]
    fn a_prefixed_request_means_the_same_as_the_compact_one() {
        let normal = normalise(&prefixed_request()).unwrap();
        assert_eq!(normal["@context"], json!([DSP_CONTEXT]));
        assert_eq!(normal["@type"], "ContractRequestMessage");
        assert_eq!(normal["offer"]["permission"][0]["action"], "use");
        assert_eq!(
            normal["offer"]["permission"][0]["constraint"][0]["operator"],
            "eq"
        );
        let compact = parse_request(&compact_request()).unwrap();
        assert_same_request(&parse_request(&prefixed_request()).unwrap(), &compact);
        // the DSP context as a string rather than an array
        let mut string_context = compact_request();
        string_context["@context"] = json!(DSP_CONTEXT);
        assert_same_request(&parse_request(&string_context).unwrap(), &compact);
        // prefixed keys under the DSP context itself, as DSP 2024-1 peers write them
        let mut under_dsp = prefixed_request();
        under_dsp["@context"] = json!([DSP_CONTEXT]);
        assert_same_request(&parse_request(&under_dsp).unwrap(), &compact);
    }

    #[test]
    fn an_expanded_request_means_the_same_as_the_compact_one() {
        let compact = parse_request(&compact_request()).unwrap();
        let expanded = parse_request(&expanded_request()).unwrap();
        assert_same_request(&expanded, &compact);
        assert_eq!(
            expanded.offer["permission"][0]["constraint"][1]["rightOperand"],
            json!({"@value": "2030-01-01T00:00:00Z", "@type": "xsd:dateTime"})
        );
    }

    #[test]
    fn an_expanded_transfer_request_and_catalog_request_are_read() {
        let expanded = json!([{
            "@type": [format!("{D}TransferRequestMessage")],
            format!("{D}consumerPid"): [{"@id": "urn:uuid:c"}],
            format!("{D}agreementId"): [{"@value": "urn:uuid:a"}],
            "http://purl.org/dc/terms/format": [{"@value": "HttpData-PULL"}],
            format!("{D}callbackAddress"): [{"@value": "https://c.example/dsp"}],
            format!("{D}dataAddress"): [{
                "@type": [format!("{D}DataAddress")],
                format!("{D}endpointType"): [{"@id": "https://w3id.org/idsa/v4.1/HTTP"}],
                format!("{D}endpointProperties"): [{
                    "@type": [format!("{D}EndpointProperty")],
                    format!("{D}name"): [{"@value": "authorization"}],
                    format!("{D}value"): [{"@value": "token"}]
                }]
            }]
        }]);
        let m: TransferRequestMessage =
            messages::parse(expanded.to_string().as_bytes(), "TransferRequestMessage").unwrap();
        assert_eq!(m.consumer_pid, "urn:uuid:c");
        assert_eq!(m.agreement_id, "urn:uuid:a");
        assert_eq!(m.format, "HttpData-PULL");
        assert_eq!(m.callback_address, "https://c.example/dsp");
        let address = m.data_address.unwrap();
        assert_eq!(address["@type"], "DataAddress");
        assert_eq!(address["endpointType"], "https://w3id.org/idsa/v4.1/HTTP");
        assert_eq!(address["endpointProperties"][0]["name"], "authorization");

        let catalog = json!([{"@type": [format!("{D}CatalogRequestMessage")]}]);
        let v: Value =
            messages::parse(catalog.to_string().as_bytes(), "CatalogRequestMessage").unwrap();
        assert_eq!(
            v,
            json!({"@context": [DSP_CONTEXT], "@type": "CatalogRequestMessage"})
        );
    }

    #[test]
    fn a_list_comes_back_as_an_array() {
        let mut v = prefixed_request();
        v["dspace:offer"]["odrl:permission"][0]["odrl:constraint"] = json!([{
            "odrl:leftOperand": {"@id": "odrl:purpose"}, "odrl:operator": {"@id": "odrl:isAnyOf"},
            "odrl:rightOperand": {"@list": ["a", "b"]}
        }]);
        let normal = normalise(&v).unwrap();
        let c = &normal["offer"]["permission"][0]["constraint"][0];
        assert_eq!(c["rightOperand"], json!(["a", "b"]), "{normal}");
    }

    fn refusal(v: &Value) -> JsonLdError {
        match parse_request(v) {
            Err(MessageError::JsonLd(e)) => e,
            other => panic!("expected a JSON-LD refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_remote_context_is_refused_without_echoing_it() {
        let mut v = compact_request();
        v["@context"] = json!([DSP_CONTEXT, "https://evil.example/SECRET-CONTEXT"]);
        let e = refusal(&v);
        assert_eq!(e.field, "@context");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        v["@context"] = json!("relative-SECRET");
        assert_eq!(refusal(&v).field, "@context");
    }

    #[test]
    fn mixed_and_invalid_forms_are_refused_naming_the_field() {
        // one property in two forms
        let mut mixed = compact_request();
        mixed["dspace:consumerPid"] = json!("urn:uuid:other");
        mixed["@type"] = json!("dspace:ContractRequestMessage");
        let e = refusal(&mixed);
        assert_eq!(e.field, "consumerPid", "{e}");
        // a protected DSP term redefined
        let mut redefined = compact_request();
        redefined["@context"] = json!([DSP_CONTEXT, {"odrl": "https://evil.example/"}]);
        assert_eq!(refusal(&redefined).field, "@context");
        // null contexts would drop what follows
        let mut null = compact_request();
        null["offer"]["@context"] = Value::Null;
        assert_eq!(refusal(&null).field, "@context");
        // two messages in one body
        let two = json!([expanded_request()[0].clone(), {"@type": [format!("{D}CatalogRequestMessage")]}]);
        assert!(refusal(&two).detail.contains("more than one"));
        // nothing at all
        assert!(refusal(&json!([])).detail.contains("no message"));
        // a prefixed request that lacks a required field fails its schema, naming it
        let mut missing = prefixed_request();
        missing
            .as_object_mut()
            .unwrap()
            .remove("dspace:consumerPid");
        let err = parse_request(&missing).unwrap_err().to_string();
        assert!(err.contains("consumerPid"), "{err}");
        // a wrong type in expanded form
        let mut wrong = expanded_request();
        wrong[0]["@type"] = json!([format!("{D}ContractOfferMessage")]);
        assert!(matches!(
            parse_request(&wrong),
            Err(MessageError::WrongType { .. })
        ));
    }

    #[test]
    fn references_cannot_loop_or_chain_deeper_than_the_bound() {
        // the offer's target is the offer itself
        let mut cycle = prefixed_request();
        cycle["dspace:offer"]["odrl:target"] = json!({"@id": "urn:o"});
        assert_eq!(refusal(&cycle).field, "@id");
        // a flattened chain of 100 nodes, each one level deep in the JSON
        let mut nodes = vec![json!({
            "@type": [format!("{D}ContractRequestMessage")],
            format!("{D}consumerPid"): [{"@value": "urn:uuid:c"}],
            format!("{D}offer"): [{"@id": "urn:n:0"}]
        })];
        for i in 0..100 {
            nodes.push(json!({"@id": format!("urn:n:{i}"), "urn:p": [{"@id": format!("urn:n:{}", i + 1)}]}));
        }
        let e = refusal(&Value::Array(nodes));
        assert!(e.detail.contains("deeper"), "{e}");
        // one node referred to 2 x 2 x ... times: the output is bounded
        let mut fan = vec![json!({
            "@type": [format!("{D}ContractRequestMessage")],
            "urn:p": [{"@id": "urn:f:0"}]
        })];
        for i in 0..30 {
            fan.push(json!({"@id": format!("urn:f:{i}"),
                "urn:a": [{"@id": format!("urn:f:{}", i + 1)}],
                "urn:b": [{"@id": format!("urn:f:{}", i + 1)}]}));
        }
        fan.push(json!({"@id": "urn:f:30", "urn:x": [{"@value": "leaf"}]}));
        let e = refusal(&Value::Array(fan));
        assert!(e.detail.contains("repeats"), "{e}");
    }

    #[test]
    fn work_that_grows_faster_than_the_body_is_bounded() {
        // the DSP context again and again
        let mut many = compact_request();
        many["offer"]["permission"][0]["constraint"] = Value::Array(
            (0..MAX_CONTEXTS)
                .map(|_| {
                    json!({"@context": DSP_CONTEXT, "leftOperand": "purpose",
                                "operator": "eq", "rightOperand": "x"})
                })
                .collect(),
        );
        assert_eq!(refusal(&many).field, "@context");
        // nodes that each bring the type-scoped context of a message type
        let mut typed = prefixed_request();
        typed["urn:nodes"] = Value::Array(
            (0..=MAX_SCOPED_NODES)
                .map(|_| json!({"@type": "ContractRequestMessage"}))
                .collect(),
        );
        assert_eq!(refusal(&typed).field, "@type");
        // a sender's own scoped context
        let mut scoped = prefixed_request();
        scoped["@context"]["T"] = json!({"@id": "urn:t", "@context": {"x": "urn:x"}});
        assert_eq!(refusal(&scoped).field, "@context");
    }

    #[test]
    fn large_bodies_are_refused_before_expansion() {
        let mut v = prefixed_request();
        v["urn:big"] = Value::Array((0..MAX_VALUES).map(|i| json!(i)).collect());
        let e = refusal(&v);
        assert!(e.detail.contains("JSON values"), "{e}");
    }

    #[test]
    fn the_embedded_context_is_read() {
        let v = vocabulary();
        assert!(v.prefixes.iter().any(|(p, _)| p == "dspace"));
        let crm = &v.scoped[&format!("{D}ContractRequestMessage")];
        assert!(crm.propagate);
        assert!(crm.terms.iter().any(|t| t.term == "permission" && t.set));
        assert!(
            crm.terms
                .iter()
                .any(|t| t.term == "offer" && t.coercion == Coercion::Id)
        );
        let da = &v.scoped[&format!("{D}DataAddress")];
        assert!(!da.propagate);
    }
}
