//! DSP 2025-1 message bodies: strict parsing of what peers send, and builders for what we send.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{DSP_CONTEXT, jsonld};

/// Largest DSP message body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Deepest JSON nesting accepted in a DSP message.
pub const MAX_JSON_DEPTH: usize = 32;

/// Why a message body is refused; the text is safe to return to the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, too deep, or not the expected shape.
    #[error("malformed {expected}: {detail}")]
    Malformed {
        /// The expected message type.
        expected: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `@type` names another message (which one is not repeated: answers never echo the
    /// sender's values).
    #[error("@type must be {expected} on this endpoint")]
    WrongType {
        /// The expected message type.
        expected: &'static str,
    },
    /// The body does not match the message's DSP 2025-1 JSON Schema.
    #[error("{0}")]
    Schema(#[from] super::schema::SchemaError),
    /// The body is not a DSP message in any JSON-LD form (unknown remote context, protected
    /// term redefined, more than one message node, too large to normalise).
    #[error("{0}")]
    JsonLd(#[from] jsonld::JsonLdError),
}

/// Parses a DSP message body, checking nesting depth, `@context`, `@type` and the message's
/// schema. The compact 2025-1 form is read as it is (the fast path); any other JSON-LD form
/// (prefixed, expanded, inline contexts) is first brought to it by [`jsonld::normalise`].
pub fn parse<T: DeserializeOwned>(body: &[u8], expected: &'static str) -> Result<T, MessageError> {
    let malformed = |detail: String| MessageError::Malformed { expected, detail };
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(json_error(&e)))?;
    let shape = jsonld::shape(&value);
    if shape.depth > MAX_JSON_DEPTH {
        return Err(malformed(format!(
            "nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let value = if jsonld::is_compact(&value, shape, expected) {
        super::schema::validate(expected, &value)?;
        value
    } else {
        checked(jsonld::normalise(&value)?, expected)?
    };
    serde_json::from_value(value).map_err(|e| malformed(json_error(&e)))
}

/// Checks `@type` and the schema of a normalised message.
fn checked(value: Value, expected: &'static str) -> Result<Value, MessageError> {
    match value.get("@type").and_then(Value::as_str) {
        Some(t) if t == expected => {}
        Some(_) => return Err(MessageError::WrongType { expected }),
        None => {
            return Err(MessageError::Malformed {
                expected,
                detail: "missing @type".into(),
            });
        }
    }
    super::schema::validate(expected, &value)?;
    Ok(value)
}

/// What a JSON error says, without the values it quotes (serde's texts repeat the offending
/// string or number: `invalid type: string "…"`); a missing field keeps its name, ours.
fn json_error(e: &serde_json::Error) -> String {
    let at = match e.line() {
        0 => String::new(),
        line => format!(" at line {line}, column {}", e.column()),
    };
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not valid JSON{at}")
        }
        serde_json::error::Category::Io => "the body could not be read".into(),
        serde_json::error::Category::Data => {
            let text = e.to_string();
            let missing = text
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'));
            match missing {
                Some((field, _)) => format!("the field {field} is missing"),
                None => format!("a field has the wrong type or value{at}"),
            }
        }
    }
}

/// Nesting depth of a JSON value, iteratively (a hostile body must not exhaust the stack).
pub fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    max
}

/// Wraps fields into a DSP message with `@context` and `@type`.
pub fn message(type_: &str, fields: Value) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("@context".into(), json!([DSP_CONTEXT]));
    obj.insert("@type".into(), Value::String(type_.into()));
    if let Value::Object(f) = fields {
        obj.extend(f);
    }
    Value::Object(obj)
}

/// `ContractRequestMessage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractRequestMessage {
    /// The consumer's process id.
    pub consumer_pid: String,
    /// The provider's process id, on a counter-request.
    pub provider_pid: Option<String>,
    /// The requested offer (ODRL, DSP compact form).
    pub offer: Value,
    /// Where the provider sends its messages; required on the initial request.
    pub callback_address: Option<String>,
}

/// `ContractOfferMessage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractOfferMessage {
    /// The provider's process id.
    pub provider_pid: String,
    /// The consumer's process id, absent on a provider-initiated offer.
    pub consumer_pid: Option<String>,
    /// The offer.
    pub offer: Value,
    /// Where the consumer sends its messages, on a provider-initiated offer.
    pub callback_address: Option<String>,
}

/// `ContractAgreementMessage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractAgreementMessage {
    /// The provider's process id.
    pub provider_pid: String,
    /// The consumer's process id.
    pub consumer_pid: String,
    /// The agreement (ODRL `Agreement`).
    pub agreement: Value,
}

/// Any message identified only by the two process ids (verification, completion).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessIds {
    /// The provider's process id.
    pub provider_pid: String,
    /// The consumer's process id.
    pub consumer_pid: String,
}

/// `ContractNegotiationEventMessage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractNegotiationEventMessage {
    /// The provider's process id.
    pub provider_pid: String,
    /// The consumer's process id.
    pub consumer_pid: String,
    /// `ACCEPTED` or `FINALIZED`.
    pub event_type: String,
}

/// `ContractNegotiationTerminationMessage`, `TransferTerminationMessage` and
/// `TransferSuspensionMessage`: ids plus an optional code and reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonedMessage {
    /// The provider's process id.
    pub provider_pid: String,
    /// The consumer's process id.
    pub consumer_pid: String,
    /// Machine-readable code.
    pub code: Option<String>,
    /// Human-readable reasons.
    pub reason: Option<Vec<Value>>,
}

/// `TransferRequestMessage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequestMessage {
    /// The consumer's process id.
    pub consumer_pid: String,
    /// The agreement the transfer is under.
    pub agreement_id: String,
    /// The requested format, e.g. `ArrowFlight-PULL`.
    pub format: String,
    /// Where the consumer sends its messages.
    pub callback_address: String,
    /// For push transfers: where to push.
    pub data_address: Option<Value>,
}

/// `TransferStartMessage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferStartMessage {
    /// The provider's process id.
    pub provider_pid: String,
    /// The consumer's process id.
    pub consumer_pid: String,
    /// For pull transfers: where and how to pull.
    pub data_address: Option<DataAddress>,
}

/// A DSP `DataAddress`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataAddress {
    /// Always `DataAddress`.
    #[serde(rename = "@type")]
    pub type_: String,
    /// What kind of endpoint.
    pub endpoint_type: String,
    /// The endpoint URL.
    pub endpoint: Option<String>,
    /// Named properties (authorization token, auth type, table name).
    #[serde(default)]
    pub endpoint_properties: Vec<EndpointProperty>,
}

/// One `EndpointProperty` of a data address.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EndpointProperty {
    /// Always `EndpointProperty`.
    #[serde(rename = "@type")]
    pub type_: String,
    /// Property name.
    pub name: String,
    /// Property value.
    pub value: String,
}

impl DataAddress {
    /// A data address with the given properties.
    pub fn new(endpoint_type: &str, endpoint: &str, props: &[(&str, &str)]) -> Self {
        Self {
            type_: "DataAddress".into(),
            endpoint_type: endpoint_type.into(),
            endpoint: Some(endpoint.into()),
            endpoint_properties: props
                .iter()
                .map(|(n, v)| EndpointProperty {
                    type_: "EndpointProperty".into(),
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    /// The value of a named property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.endpoint_properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

/// Which DSP error type a refusal is reported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `CatalogError`.
    Catalog,
    /// `ContractNegotiationError`.
    Negotiation,
    /// `TransferError`.
    Transfer,
}

impl ErrorKind {
    /// The `@type` of the error body.
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::Catalog => "CatalogError",
            ErrorKind::Negotiation => "ContractNegotiationError",
            ErrorKind::Transfer => "TransferError",
        }
    }
}

/// The body of a DSP error response. Negotiation and transfer errors always carry both
/// pids (empty when the request named none), as their schemas require.
pub fn error_body(kind: ErrorKind, code: &str, reason: &str, pids: Option<(&str, &str)>) -> Value {
    let mut fields = json!({ "code": code, "reason": [reason] });
    if let ErrorKind::Negotiation | ErrorKind::Transfer = kind {
        let (provider, consumer) = pids.unwrap_or_default();
        fields["providerPid"] = json!(provider);
        fields["consumerPid"] = json!(consumer);
    }
    message(kind.type_name(), fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example_request() {
        let body = br#"{"@context":["https://w3id.org/dspace/2025/1/context.jsonld"],"@type":"ContractRequestMessage","consumerPid":"urn:uuid:1","offer":{"@type":"Offer","@id":"urn:o","target":"urn:d","permission":[{"action":"use"}]},"callbackAddress":"https://example.com/callback"}"#;
        let m: ContractRequestMessage = parse(body, "ContractRequestMessage").unwrap();
        assert_eq!(m.consumer_pid, "urn:uuid:1");
        assert_eq!(
            m.callback_address.as_deref(),
            Some("https://example.com/callback")
        );
    }

    #[test]
    fn refuses_wrong_type_missing_fields_and_deep_nesting() {
        let wrong = br#"{"@context":[],"@type":"ContractOfferMessage","consumerPid":"x"}"#;
        assert!(matches!(
            parse::<ContractRequestMessage>(wrong, "ContractRequestMessage"),
            Err(MessageError::WrongType { .. })
        ));
        let missing = br#"{"@context":[],"@type":"ContractRequestMessage"}"#;
        assert!(parse::<ContractRequestMessage>(missing, "ContractRequestMessage").is_err());
        let secret = br#"{"@context":[],"@type":"SECRET-TYPE","consumerPid":"x"}"#;
        let err = parse::<ContractRequestMessage>(secret, "ContractRequestMessage").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let bad_json = br#"{"@type": "SECRET-VALUE" oops"#;
        let err = parse::<Value>(bad_json, "X").unwrap_err().to_string();
        assert!(
            err.contains("not valid JSON") && !err.contains("SECRET"),
            "{err}"
        );
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let err = parse::<Value>(deep.as_bytes(), "X").unwrap_err();
        assert!(matches!(err, MessageError::Malformed { .. }), "{err}");
        assert!(parse::<Value>(b"not json", "X").is_err());
    }

    #[test]
    fn error_bodies_carry_type_and_pids() {
        let b = error_body(ErrorKind::Transfer, "400", "nope", Some(("p", "c")));
        assert_eq!(b["@type"], "TransferError");
        assert_eq!(b["providerPid"], "p");
        let c = error_body(ErrorKind::Catalog, "404", "unknown", Some(("p", "c")));
        assert!(c.get("providerPid").is_none());
    }
}
