//! Validation of JSON against the DSP 2025-1 JSON Schemas in `shared/spec/dsp-2025-1`, with
//! their `https://w3id.org/dspace/2025/1/…` references resolved to the local copies (no
//! network). The test suites of every crate use it.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The DSP 2025-1 base IRI of the schemas' ids.
const DSP_BASE: &str = "https://w3id.org/dspace/2025/1/";

/// `shared/spec/dsp-2025-1` beside the workspace.
pub fn dsp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/dsp-2025-1")
}

/// A schema file of `dsp-2025-1`, e.g. `catalog/catalog-schema.json`.
pub fn schema(rel: &str) -> Value {
    let path = dsp_dir().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the DSP schema {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Resolves the schemas' references to the local copies.
struct LocalDsp;

impl jsonschema::Retrieve for LocalDsp {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let rel = uri
            .as_str()
            .strip_prefix(DSP_BASE)
            .ok_or_else(|| format!("no local copy of {uri}"))?;
        let text = std::fs::read_to_string(dsp_dir().join(rel))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// A draft 2019-09 validator for `schema` (JSON, e.g. from [`schema`] or a `$ref`).
pub fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft201909)
        .with_retriever(LocalDsp)
        .build(schema)
        .expect("the DSP schema compiles")
}

/// Every error of `instance` against the schema file `rel`, with where it is.
pub fn errors(rel: &str, instance: &Value) -> Vec<String> {
    validator(&schema(rel))
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}
