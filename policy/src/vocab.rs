//! Namespaces and the closed term lists of ODRL 2.2 and the Sluis profile.
//!
//! Everything in the model is a full IRI; this module maps compact terms (`use`),
//! prefixed names (`odrl:use`) and IRIs onto one form and back.

/// The ODRL 2.2 namespace.
pub const ODRL: &str = "http://www.w3.org/ns/odrl/2/";
/// The Sluis ODRL profile namespace (see `PROFILE.md`).
pub const SLUIS: &str = "https://w3id.org/sluis/odrl#";
/// The Sluis profile IRI (the value of a policy's `profile`).
pub const SLUIS_PROFILE: &str = "https://w3id.org/sluis/odrl";
/// XML Schema datatypes.
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
/// RDF namespace.
pub const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
/// Dublin Core terms.
pub const DCT: &str = "http://purl.org/dc/terms/";
/// The DSP 2025-1 namespace.
pub const DSPACE: &str = "https://w3id.org/dspace/2025/1/";

/// Actions of the ODRL 2.2 common vocabulary (and the two Sluis mask duties), each with the
/// action it is `odrl:includedIn` (`None` for the top actions `use` and `transfer`).
pub const ACTIONS: &[(&str, Option<&str>)] = &[
    ("use", None),
    ("transfer", None),
    ("acceptTracking", Some("use")),
    ("aggregate", Some("use")),
    ("annotate", Some("use")),
    ("anonymize", Some("use")),
    ("archive", Some("use")),
    ("attribute", Some("use")),
    ("compensate", Some("use")),
    ("concurrentUse", Some("use")),
    ("delete", Some("use")),
    ("derive", Some("use")),
    ("digitize", Some("use")),
    ("display", Some("play")),
    ("distribute", Some("use")),
    ("ensureExclusivity", Some("use")),
    ("execute", Some("use")),
    ("extract", Some("reproduce")),
    ("give", Some("transfer")),
    ("grantUse", Some("use")),
    ("include", Some("use")),
    ("index", Some("use")),
    ("inform", Some("use")),
    ("install", Some("use")),
    ("modify", Some("use")),
    ("move", Some("use")),
    ("nextPolicy", Some("use")),
    ("obtainConsent", Some("use")),
    ("play", Some("use")),
    ("present", Some("use")),
    ("print", Some("present")),
    ("read", Some("use")),
    ("reproduce", Some("use")),
    ("reviewPolicy", Some("use")),
    ("sell", Some("transfer")),
    ("stream", Some("play")),
    ("synchronize", Some("use")),
    ("textToSpeech", Some("read")),
    ("transform", Some("use")),
    ("translate", Some("use")),
    ("uninstall", Some("use")),
    ("watermark", Some("use")),
    // deprecated in 2.2 in favour of `modify`, still used by the ODRL test suite
    ("write", Some("use")),
];

/// Left operands of the ODRL 2.2 common vocabulary.
pub const LEFT_OPERANDS: &[&str] = &[
    "absolutePosition",
    "absoluteSpatialPosition",
    "absoluteTemporalPosition",
    "absoluteSize",
    "count",
    "dateTime",
    "delayPeriod",
    "deliveryChannel",
    "elapsedTime",
    "event",
    "fileFormat",
    "industry",
    "language",
    "media",
    "meteredTime",
    "payAmount",
    "percentage",
    "product",
    "purpose",
    "recipient",
    "relativePosition",
    "relativeSpatialPosition",
    "relativeTemporalPosition",
    "relativeSize",
    "resolution",
    "spatial",
    "spatialCoordinates",
    "systemDevice",
    "timeInterval",
    "unitOfCount",
    "version",
    "virtualLocation",
];

/// Sluis profile actions (mask duties), `includedIn` ODRL `anonymize`.
pub const SLUIS_ACTIONS: &[&str] = &["hash", "redact"];

/// Sluis profile left operands; `row.<column>` is a family, checked separately.
pub const SLUIS_LEFT_OPERANDS: &[&str] = &["column", "aggregateOnly", "rowCount"];

/// Prefix of the row-filter left operand family `sluis:row.<column>`.
pub const SLUIS_ROW_PREFIX: &str = "https://w3id.org/sluis/odrl#row.";

/// Other ODRL terms that may appear where a vocabulary term is expected.
const OTHER_ODRL_TERMS: &[&str] = &[
    "Policy",
    "Set",
    "Offer",
    "Agreement",
    "Request",
    "Privacy",
    "Ticket",
    "Assertion",
    "Permission",
    "Prohibition",
    "Duty",
    "Constraint",
    "LogicalConstraint",
    "Asset",
    "AssetCollection",
    "Party",
    "PartyCollection",
    "Action",
    "perm",
    "prohibit",
    "invalid",
    "eq",
    "neq",
    "lt",
    "lteq",
    "gt",
    "gteq",
    "isA",
    "hasPart",
    "isPartOf",
    "isAllOf",
    "isAnyOf",
    "isNoneOf",
    "and",
    "or",
    "xone",
    "andSequence",
    "permission",
    "prohibition",
    "obligation",
    "duty",
    "remedy",
    "consequence",
    "constraint",
    "refinement",
    "action",
    "leftOperand",
    "rightOperand",
    "operator",
    "target",
    "assigner",
    "assignee",
    "uid",
    "profile",
    "conflict",
    "source",
    "partOf",
    "unit",
    "dataType",
    "rightOperandReference",
    "failure",
    "inheritFrom",
];

/// Whether `term` is a bare ODRL 2.2 term (so `term` means `odrl:term`).
pub fn is_odrl_term(term: &str) -> bool {
    ACTIONS.iter().any(|(a, _)| *a == term)
        || LEFT_OPERANDS.contains(&term)
        || OTHER_ODRL_TERMS.contains(&term)
}

/// `odrl:<local>` as an IRI.
pub fn odrl(local: &str) -> String {
    format!("{ODRL}{local}")
}

/// `sluis:<local>` as an IRI.
pub fn sluis(local: &str) -> String {
    format!("{SLUIS}{local}")
}

/// The parent (`includedIn`) of an action IRI, if it is a known non-top action.
pub fn action_parent(iri: &str) -> Option<String> {
    if let Some(local) = iri.strip_prefix(ODRL) {
        return ACTIONS
            .iter()
            .find(|(a, _)| *a == local)
            .and_then(|(_, p)| p.map(odrl));
    }
    if let Some(local) = iri.strip_prefix(SLUIS)
        && SLUIS_ACTIONS.contains(&local)
    {
        return Some(odrl("anonymize"));
    }
    None
}

/// Whether `action` is `ancestor` or transitively `includedIn` it (no allocation: this runs
/// on every decision).
pub fn action_included_in(action: &str, ancestor: &str) -> bool {
    if action == ancestor {
        return true;
    }
    let Some(target) = ancestor.strip_prefix(ODRL) else {
        return false;
    };
    let mut local = match (action.strip_prefix(ODRL), action.strip_prefix(SLUIS)) {
        (Some(l), _) => l,
        (_, Some(l)) if SLUIS_ACTIONS.contains(&l) => "anonymize",
        _ => return false,
    };
    for _ in 0..16 {
        if local == target {
            return true;
        }
        match ACTIONS
            .iter()
            .find(|(a, _)| *a == local)
            .and_then(|(_, p)| *p)
        {
            Some(parent) => local = parent,
            None => return false,
        }
    }
    false
}

/// Whether an action IRI is known: an ODRL 2.2 action, a Sluis action, or an IRI outside
/// both namespaces (another profile's action, which only matches itself).
pub fn is_known_action(iri: &str) -> bool {
    if let Some(local) = iri.strip_prefix(ODRL) {
        return ACTIONS.iter().any(|(a, _)| *a == local);
    }
    if let Some(local) = iri.strip_prefix(SLUIS) {
        return SLUIS_ACTIONS.contains(&local);
    }
    is_absolute_iri(iri)
}

/// Whether a left operand IRI is acceptable in a policy: ODRL 2.2 and Sluis terms are checked
/// against their vocabularies, other IRIs and bare terms are extension operands that an
/// evaluator must be given a resolver for (see `eval`).
pub fn check_left_operand(iri: &str) -> Result<(), String> {
    if let Some(local) = iri.strip_prefix(ODRL) {
        if LEFT_OPERANDS.contains(&local) {
            return Ok(());
        }
        return Err(format!("unknown ODRL leftOperand 'odrl:{local}'"));
    }
    if let Some(local) = iri.strip_prefix(SLUIS) {
        if SLUIS_LEFT_OPERANDS.contains(&local) {
            return Ok(());
        }
        if let Some(col) = local.strip_prefix("row.")
            && is_column_name(col)
        {
            return Ok(());
        }
        return Err(format!(
            "unknown Sluis leftOperand 'sluis:{local}' (expected column, aggregateOnly, rowCount or row.<column>)"
        ));
    }
    if iri.is_empty() {
        return Err("empty leftOperand".into());
    }
    Ok(())
}

/// Column names usable in `sluis:row.<column>` and `sluis:column` lists.
pub fn is_column_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether `s` looks like an absolute IRI (`scheme:rest`, scheme per RFC 3987).
pub fn is_absolute_iri(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Shortens an IRI for messages and compact JSON: `odrl:` terms become bare, Sluis terms
/// `sluis:`-prefixed, anything else stays as it is.
pub fn compact(iri: &str) -> String {
    if let Some(local) = iri.strip_prefix(ODRL) {
        return local.to_string();
    }
    if let Some(local) = iri.strip_prefix(SLUIS) {
        return format!("sluis:{local}");
    }
    if let Some(local) = iri.strip_prefix(XSD) {
        return format!("xsd:{local}");
    }
    iri.to_string()
}

/// Shortens an IRI to a prefixed name (`odrl:`, `sluis:`, `xsd:`) where possible, for places
/// where a bare term would read as a relative IRI (`@id` values).
pub fn prefixed(iri: &str) -> String {
    for (prefix, ns) in [("odrl", ODRL), ("sluis", SLUIS), ("xsd", XSD)] {
        if let Some(local) = iri.strip_prefix(ns) {
            return format!("{prefix}:{local}");
        }
    }
    iri.to_string()
}
