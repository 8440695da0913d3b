//! Validating objects against Weir's CRD schemas without an API server.
//!
//! An API server checks a custom object in three steps: the structural OpenAPI schema
//! (types, enums, ranges, required fields), unknown fields (rejected by kubectl's default
//! strict field validation), and the CEL rules in `x-kubernetes-validations`. The
//! [`SchemaValidator`] does the same with the schemas generated from this crate's types:
//! `jsonschema` for the first two, `kube`'s CEL evaluator for the third. Every error names
//! the field it is about, in the API server's `spec.metrics[0].type` style.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::{Map, Value};

/// A problem with one field of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `spec.minReplicas`; empty for the object as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

struct KindSchema {
    structural: jsonschema::Validator,
    cel: CompiledSchema,
}

/// Validates objects of Weir's kinds against their CRD schemas.
pub struct SchemaValidator {
    /// By `(apiVersion, kind)`.
    kinds: BTreeMap<(String, String), KindSchema>,
    cel: Validator,
}

impl std::fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SchemaValidator {
    /// A validator for every version of every CRD given.
    ///
    /// Fails only if a schema is not valid JSON Schema, which is a bug in Weir's types.
    pub fn new(crds: &[CustomResourceDefinition]) -> Result<Self, String> {
        let mut kinds = BTreeMap::new();
        for crd in crds {
            let group = &crd.spec.group;
            let kind = &crd.spec.names.kind;
            for version in &crd.spec.versions {
                let Some(schema) = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                else {
                    continue;
                };
                let openapi = serde_json::to_value(schema).map_err(|e| e.to_string())?;
                let structural = jsonschema::validator_for(&root_json_schema(&openapi))
                    .map_err(|e| format!("schema of {kind} {}: {e}", version.name))?;
                let cel = compile_schema(&openapi);
                kinds.insert(
                    (format!("{group}/{}", version.name), kind.clone()),
                    KindSchema { structural, cel },
                );
            }
        }
        Ok(SchemaValidator {
            kinds,
            cel: Validator::new(),
        })
    }

    /// A validator for Weir's own CRDs.
    pub fn for_weir_crds() -> Self {
        // The schemas come from this crate's own types; a failure here is a programming
        // error caught by this crate's tests, not something an operator can cause.
        #[allow(clippy::expect_used)]
        Self::new(&crate::crds()).expect("Weir's CRD schemas are valid JSON Schema")
    }

    /// Whether objects of this apiVersion and kind are checked.
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        self.kinds
            .contains_key(&(api_version.to_string(), kind.to_string()))
    }

    /// Every problem with `object`, or none. Objects of kinds the validator does not know
    /// pass unchecked.
    pub fn validate(&self, object: &Value) -> Vec<FieldError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(schema) = self.kinds.get(&(api_version.to_string(), kind.to_string())) else {
            return Vec::new();
        };
        let mut errors: Vec<FieldError> = schema
            .structural
            .iter_errors(object)
            .map(|e| FieldError {
                field: pointer_to_field(e.instance_path().as_str()),
                message: e.to_string(),
            })
            .collect();
        // CEL rules assume a structurally valid object (the API server evaluates them only
        // then), so they run only when the schema holds.
        if errors.is_empty()
            && let Err(cel_errors) = self.cel.validate_compiled(&schema.cel, object, None)
        {
            errors.extend(cel_errors.into_vec().into_iter().map(|e| FieldError {
                field: e.field_path.trim_start_matches('.').to_string(),
                message: e.message,
            }));
        }
        errors.sort_by(|a, b| a.field.cmp(&b.field));
        errors.dedup();
        errors
    }
}

/// `/spec/metrics/0/type` → `spec.metrics[0].type`.
fn pointer_to_field(pointer: &str) -> String {
    let mut field = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            field.push_str(&format!("[{segment}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&segment);
        }
    }
    field
}

/// The JSON Schema of a whole object: the CRD's schema plus the fields the API server
/// supplies to every kind (`apiVersion`, `kind`, `metadata`), which CRDs leave out.
fn root_json_schema(openapi: &Value) -> Value {
    let mut root = to_json_schema(openapi);
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
        props.insert("kind".into(), serde_json::json!({"type": "string"}));
        props.insert("metadata".into(), serde_json::json!({"type": "object"}));
    }
    root
}

/// Turns a CRD's OpenAPI v3 schema into the JSON Schema an API server effectively applies:
/// `nullable` becomes a `null` type, and objects with declared properties reject fields
/// they do not declare (strict field validation), unless they preserve unknown fields.
fn to_json_schema(openapi: &Value) -> Value {
    match openapi {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let value = match key.as_str() {
                    "properties" | "patternProperties" => match value {
                        Value::Object(props) => Value::Object(
                            props
                                .iter()
                                .map(|(k, v)| (k.clone(), to_json_schema(v)))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    "items" | "additionalProperties" | "not" => to_json_schema(value),
                    "allOf" | "anyOf" | "oneOf" => match value {
                        Value::Array(items) => {
                            Value::Array(items.iter().map(to_json_schema).collect())
                        }
                        other => other.clone(),
                    },
                    _ => value.clone(),
                };
                out.insert(key.clone(), value);
            }
            if out.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = out.get("type").cloned()
            {
                out.insert(
                    "type".into(),
                    Value::Array(vec![Value::String(t), "null".into()]),
                );
            }
            // kube's structural rewrite drops `type` from the int-or-string branches; the API
            // server still accepts only integers and strings there.
            if out.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                let mut types = vec![Value::from("integer"), Value::from("string")];
                if out.get("nullable") == Some(&Value::Bool(true)) {
                    types.push("null".into());
                }
                out.insert("type".into(), Value::Array(types));
            }
            let preserves =
                out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if out.contains_key("properties")
                && !out.contains_key("additionalProperties")
                && !preserves
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers_become_api_server_field_paths() {
        assert_eq!(
            pointer_to_field("/spec/metrics/0/type"),
            "spec.metrics[0].type"
        );
        assert_eq!(
            pointer_to_field("/spec/template/capacity/nvidia.com~1gpu"),
            "spec.template.capacity.nvidia.com/gpu"
        );
        assert_eq!(pointer_to_field(""), "");
    }
}
