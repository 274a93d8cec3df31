//! JSON Schema validation of DSP 2025-1 messages against the spec's own schemas.
//!
//! The schemas (draft 2019-09) are embedded from `connector/schemas/dsp-2025-1` (copied
//! unchanged from the DSP repository, Apache-2.0), so the binary needs no files at run time.
//! Their `$ref`s to `https://w3id.org/dspace/2025/1/…` resolve to the embedded copies; nothing
//! is fetched. The validators are compiled once, on first use.
//!
//! A known quirk of the spec: `contract-schema.json#/definitions/Policy` is a `oneOf` of
//! `MessageOffer`, `Offer` and `Agreement`, and an offer without `target` matches both
//! `MessageOffer` and `Offer`, so `oneOf` fails for it. The message schemas refer to
//! `MessageOffer` (or `Agreement`) directly and never to `Policy`, so messages are not
//! affected; [`validate`] only uses the message schemas, and a catalogue `Offer` (which must
//! not carry `target`) is checked through `dataset-schema.json`, which refers to `Offer`.
//!
//! A second quirk: three transfer schemas refer to
//! `transfer-schema.json#definitions/AbstractTransferCodeMessage`, a fragment without the
//! leading `/` that JSON Schema reads as an (invalid) anchor. The files are embedded
//! unchanged and `schema_json` reads such fragments as the JSON pointers they mean.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The `$id` prefix of every DSP 2025-1 schema.
pub const SCHEMA_BASE: &str = "https://w3id.org/dspace/2025/1/";

/// Embedded schema files, by their path under [`SCHEMA_BASE`].
const FILES: &[(&str, &str)] = &[
    (
        "catalog/catalog-error-schema.json",
        include_str!("../../schemas/dsp-2025-1/catalog/catalog-error-schema.json"),
    ),
    (
        "catalog/catalog-request-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/catalog/catalog-request-message-schema.json"),
    ),
    (
        "catalog/catalog-schema.json",
        include_str!("../../schemas/dsp-2025-1/catalog/catalog-schema.json"),
    ),
    (
        "catalog/dataset-request-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/catalog/dataset-request-message-schema.json"),
    ),
    (
        "catalog/dataset-schema.json",
        include_str!("../../schemas/dsp-2025-1/catalog/dataset-schema.json"),
    ),
    (
        "common/context-schema.json",
        include_str!("../../schemas/dsp-2025-1/common/context-schema.json"),
    ),
    (
        "common/did-service-schema.json",
        include_str!("../../schemas/dsp-2025-1/common/did-service-schema.json"),
    ),
    (
        "common/protocol-version-schema.json",
        include_str!("../../schemas/dsp-2025-1/common/protocol-version-schema.json"),
    ),
    (
        "negotiation/contract-agreement-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/negotiation/contract-agreement-message-schema.json"),
    ),
    (
        "negotiation/contract-agreement-verification-message-schema.json",
        include_str!(
            "../../schemas/dsp-2025-1/negotiation/contract-agreement-verification-message-schema.json"
        ),
    ),
    (
        "negotiation/contract-negotiation-error-schema.json",
        include_str!("../../schemas/dsp-2025-1/negotiation/contract-negotiation-error-schema.json"),
    ),
    (
        "negotiation/contract-negotiation-event-message-schema.json",
        include_str!(
            "../../schemas/dsp-2025-1/negotiation/contract-negotiation-event-message-schema.json"
        ),
    ),
    (
        "negotiation/contract-negotiation-schema.json",
        include_str!("../../schemas/dsp-2025-1/negotiation/contract-negotiation-schema.json"),
    ),
    (
        "negotiation/contract-negotiation-termination-message-schema.json",
        include_str!(
            "../../schemas/dsp-2025-1/negotiation/contract-negotiation-termination-message-schema.json"
        ),
    ),
    (
        "negotiation/contract-offer-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/negotiation/contract-offer-message-schema.json"),
    ),
    (
        "negotiation/contract-request-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/negotiation/contract-request-message-schema.json"),
    ),
    (
        "negotiation/contract-schema.json",
        include_str!("../../schemas/dsp-2025-1/negotiation/contract-schema.json"),
    ),
    (
        "transfer/data-address-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/data-address-schema.json"),
    ),
    (
        "transfer/transfer-completion-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-completion-message-schema.json"),
    ),
    (
        "transfer/transfer-error-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-error-schema.json"),
    ),
    (
        "transfer/transfer-process-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-process-schema.json"),
    ),
    (
        "transfer/transfer-request-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-request-message-schema.json"),
    ),
    (
        "transfer/transfer-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-schema.json"),
    ),
    (
        "transfer/transfer-start-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-start-message-schema.json"),
    ),
    (
        "transfer/transfer-suspension-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-suspension-message-schema.json"),
    ),
    (
        "transfer/transfer-termination-message-schema.json",
        include_str!("../../schemas/dsp-2025-1/transfer/transfer-termination-message-schema.json"),
    ),
];

/// The schema file of each DSP message or response type.
const TYPES: &[(&str, &str)] = &[
    ("VersionResponse", "common/protocol-version-schema.json"),
    (
        "CatalogRequestMessage",
        "catalog/catalog-request-message-schema.json",
    ),
    (
        "DatasetRequestMessage",
        "catalog/dataset-request-message-schema.json",
    ),
    ("Catalog", "catalog/catalog-schema.json"),
    ("Dataset", "catalog/dataset-schema.json"),
    ("CatalogError", "catalog/catalog-error-schema.json"),
    (
        "ContractRequestMessage",
        "negotiation/contract-request-message-schema.json",
    ),
    (
        "ContractOfferMessage",
        "negotiation/contract-offer-message-schema.json",
    ),
    (
        "ContractAgreementMessage",
        "negotiation/contract-agreement-message-schema.json",
    ),
    (
        "ContractAgreementVerificationMessage",
        "negotiation/contract-agreement-verification-message-schema.json",
    ),
    (
        "ContractNegotiationEventMessage",
        "negotiation/contract-negotiation-event-message-schema.json",
    ),
    (
        "ContractNegotiationTerminationMessage",
        "negotiation/contract-negotiation-termination-message-schema.json",
    ),
    (
        "ContractNegotiation",
        "negotiation/contract-negotiation-schema.json",
    ),
    (
        "ContractNegotiationError",
        "negotiation/contract-negotiation-error-schema.json",
    ),
    (
        "TransferRequestMessage",
        "transfer/transfer-request-message-schema.json",
    ),
    (
        "TransferStartMessage",
        "transfer/transfer-start-message-schema.json",
    ),
    (
        "TransferSuspensionMessage",
        "transfer/transfer-suspension-message-schema.json",
    ),
    (
        "TransferCompletionMessage",
        "transfer/transfer-completion-message-schema.json",
    ),
    (
        "TransferTerminationMessage",
        "transfer/transfer-termination-message-schema.json",
    ),
    ("TransferProcess", "transfer/transfer-process-schema.json"),
    ("TransferError", "transfer/transfer-error-schema.json"),
];

/// Longest reason text built from a schema error.
const MAX_REASON: usize = 240;

/// Why a message does not match its schema; the text names the field and is safe to send to
/// the peer (values from the message are masked, never echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{type_name} does not match the DSP 2025-1 schema at {field}: {detail}")]
pub struct SchemaError {
    /// The message type.
    pub type_name: String,
    /// JSON pointer of the offending field (`/offer/permission/0`), `/` for the whole body.
    pub field: String,
    /// What is wrong.
    pub detail: String,
}

/// Resolves `https://w3id.org/dspace/2025/1/…` to the embedded copies.
struct Embedded;

impl jsonschema::Retrieve for Embedded {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let rel = uri
            .as_str()
            .strip_prefix(SCHEMA_BASE)
            .ok_or_else(|| format!("no embedded schema for {uri}"))?;
        Ok(schema_json(rel).map_err(|e| e.to_string())?)
    }
}

/// An embedded schema as JSON, with `#definitions/…` fragments read as `#/definitions/…`.
fn schema_json(rel: &str) -> Result<Value, String> {
    let text = embedded(rel).ok_or_else(|| format!("{rel} is not embedded"))?;
    serde_json::from_str(&text.replace("#definitions/", "#/definitions/"))
        .map_err(|e| format!("{rel}: {e}"))
}

fn embedded(rel: &str) -> Option<&'static str> {
    FILES.iter().find(|(f, _)| *f == rel).map(|(_, text)| *text)
}

/// Compiles the validator of one schema file.
fn compile(rel: &str) -> Result<jsonschema::Validator, String> {
    let schema = schema_json(rel)?;
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft201909)
        .with_retriever(Embedded)
        .build(&schema)
        .map_err(|e| format!("{rel}: {e}"))
}

/// Every validator, by message type, compiled on first use. A schema that does not compile
/// is a build defect that the unit tests catch; it is logged and its type left unchecked.
fn validators() -> &'static HashMap<&'static str, jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        TYPES
            .iter()
            .filter_map(|(type_name, rel)| match compile(rel) {
                Ok(v) => Some((*type_name, v)),
                Err(e) => {
                    tracing::error!(error = %e, "embedded DSP schema does not compile");
                    None
                }
            })
            .collect()
    })
}

/// Whether a schema exists for this message type.
pub fn knows(type_name: &str) -> bool {
    TYPES.iter().any(|(t, _)| *t == type_name)
}

/// Validates `value` against the schema of `type_name`; types without a schema pass.
/// Reports the first error, naming the field.
pub fn validate(type_name: &str, value: &Value) -> Result<(), SchemaError> {
    let Some(validator) = validators().get(type_name) else {
        return Ok(());
    };
    let Some(error) = validator.iter_errors(value).next() else {
        return Ok(());
    };
    let field = error.instance_path().to_string();
    Err(SchemaError {
        type_name: type_name.to_string(),
        field: if field.is_empty() { "/".into() } else { field },
        detail: error
            .masked()
            .to_string()
            .chars()
            .take(MAX_REASON)
            .collect(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_schema_compiles() {
        for (_, rel) in TYPES {
            compile(rel).unwrap();
        }
        assert_eq!(validators().len(), TYPES.len());
    }

    /// Every example message of the shared DSP 2025-1 spec with its `@type`, as
    /// `(path, type, message)`; none where the shared folder is absent.
    pub(crate) fn spec_examples() -> Vec<(std::path::PathBuf, String, Value)> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/dsp-2025-1");
        if !dir.exists() {
            return Vec::new(); // the shared spec folder sits beside the repository in CI and here
        }
        let mut examples = Vec::new();
        for area in ["negotiation", "transfer", "catalog"] {
            for entry in std::fs::read_dir(dir.join(area).join("example")).unwrap() {
                let path = entry.unwrap().path();
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                if let Some(t) = v.get("@type").and_then(Value::as_str) {
                    examples.push((path, t.to_string(), v));
                }
            }
        }
        examples
    }

    #[test]
    fn the_spec_examples_validate() {
        let examples = spec_examples();
        if examples.is_empty() {
            return;
        }
        let mut checked = 0;
        for (path, t, v) in examples.iter().filter(|(_, t, _)| knows(t)) {
            validate(t, v).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} examples checked");
    }

    #[test]
    fn names_the_field_and_masks_values() {
        let bad = json!({
            "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
            "@type": "ContractNegotiationEventMessage",
            "providerPid": "urn:p",
            "consumerPid": "urn:c",
            "eventType": "SECRET-VALUE"
        });
        let e = validate("ContractNegotiationEventMessage", &bad).unwrap_err();
        assert_eq!(e.field, "/eventType");
        assert!(!e.to_string().contains("SECRET-VALUE"), "{e}");
        let missing = json!({"@context": [], "@type": "TransferCompletionMessage"});
        assert!(validate("TransferCompletionMessage", &missing).is_err());
    }

    #[test]
    fn an_offer_without_target_is_a_valid_message_offer() {
        let msg = json!({
            "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
            "@type": "ContractRequestMessage",
            "consumerPid": "urn:c",
            "callbackAddress": "https://c.example/dsp",
            "offer": {"@id": "urn:o", "@type": "Offer", "permission": [{"action": "use"}]}
        });
        validate("ContractRequestMessage", &msg).unwrap();
    }
}
