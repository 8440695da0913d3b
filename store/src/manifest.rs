//! Parsing manifests: the text of one YAML file into typed objects and problems.
//!
//! Each document goes through the steps an API server would take: identify it (apiVersion,
//! kind, metadata.name), validate it against the CRD schema for Weir's own kinds, then
//! decode it into its Rust type. Kinds Weir does not read (ConfigMaps, say) are skipped, as
//! a controller ignores objects it does not watch. `List` documents (`kubectl get -o yaml`)
//! are unpacked.

use serde::Deserialize;
use serde_json::Value;
use weir_crds::SchemaValidator;

use crate::{Kind, Object, ObjectId, ObjectKey, Origin, Problem, Severity};

/// An object and the document it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// The document in the file, counting from 1.
    pub document: usize,
    /// The object.
    pub object: Object,
}

/// What a file held.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// The valid objects.
    pub objects: Vec<Located>,
    /// Objects that were identified but are invalid; their last good version should stay.
    pub rejected: Vec<(Kind, ObjectKey)>,
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// Objects of kinds Weir does not read, as `(document, "Kind name")`.
    pub ignored: Vec<(usize, String)>,
    /// False when some document could not be read or identified, so the file's object set
    /// is unknown (a YAML syntax error, a document without kind or name).
    pub complete: bool,
}

/// Parses one file's text. `file` names it in problems.
pub fn parse_manifests(file: &str, text: &str, validator: &SchemaValidator) -> ParsedFile {
    let mut parsed = ParsedFile {
        complete: true,
        ..ParsedFile::default()
    };
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document_number = index + 1;
        let origin = Origin {
            file: file.to_string(),
            document: Some(document_number),
        };
        match Value::deserialize(document) {
            // Empty documents (a leading `---`, comments only) hold nothing.
            Ok(Value::Null) => {}
            Ok(value) => parse_document(&origin, value, "", validator, &mut parsed),
            Err(e) => {
                parsed.complete = false;
                parsed.problems.push(Problem {
                    origin: Some(Origin {
                        file: file.to_string(),
                        document: None,
                    }),
                    object: None,
                    field: String::new(),
                    message: format!("YAML syntax error: {e}; nothing in this file was applied"),
                    severity: Severity::Error,
                });
                // After a syntax error the reader cannot find the next document reliably.
                break;
            }
        }
    }
    parsed
}

fn parse_document(
    origin: &Origin,
    value: Value,
    prefix: &str,
    validator: &SchemaValidator,
    parsed: &mut ParsedFile,
) {
    let problem = |object: Option<ObjectId>, field: &str, message: String| Problem {
        origin: Some(origin.clone()),
        object,
        field: format!("{prefix}{field}"),
        message,
        severity: Severity::Error,
    };
    let Value::Object(map) = &value else {
        parsed.complete = false;
        parsed.problems.push(problem(
            None,
            "",
            "not a Kubernetes object: expected a mapping with apiVersion, kind and metadata".into(),
        ));
        return;
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind_name.is_empty() {
        parsed.complete = false;
        let field = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        parsed.problems.push(problem(
            None,
            field,
            "required; every object needs apiVersion and kind".into(),
        ));
        return;
    }
    if kind_name == "List" || (kind_name.ends_with("List") && map.contains_key("items")) {
        let items = match map.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        for (i, item) in items.into_iter().enumerate() {
            parse_document(
                origin,
                item,
                &format!("{prefix}items[{i}]."),
                validator,
                parsed,
            );
        }
        return;
    }
    let metadata = map.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(kind) = Kind::from_name(kind_name) else {
        parsed
            .ignored
            .push((origin.document.unwrap_or(0), format!("{kind_name} {name}")));
        return;
    };
    if name.is_empty() {
        parsed.complete = false;
        parsed.problems.push(problem(
            None,
            "metadata.name",
            format!("required; every {kind_name} needs a name"),
        ));
        return;
    }
    let namespace = kind.is_namespaced().then(|| {
        metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    });
    let key = ObjectKey {
        namespace: namespace.clone(),
        name: name.to_string(),
    };
    let id = ObjectId {
        kind: kind_name.to_string(),
        key: key.clone(),
    };
    let mut errors = Vec::new();
    if let Some(why) = invalid_dns_subdomain(name) {
        errors.push(problem(Some(id.clone()), "metadata.name", why));
    }
    if let Some(why) = namespace.as_deref().and_then(invalid_dns_label) {
        errors.push(problem(Some(id.clone()), "metadata.namespace", why));
    }
    let expected = kind.api_version();
    if api_version != expected && !kind.other_api_versions().contains(&api_version) {
        errors.push(problem(
            Some(id.clone()),
            "apiVersion",
            format!("{kind_name} is read at {expected}, not {api_version}"),
        ));
    }
    if errors.is_empty() {
        let mut value = value;
        // Defaulting as the API server does: a namespaced object without a namespace goes
        // to `default`; the apiVersion is normalised so schema and decoding agree.
        if let Some(Value::Object(meta)) = value.get_mut("metadata")
            && let Some(ns) = &namespace
        {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        if let Value::Object(map) = &mut value {
            map.insert("apiVersion".into(), Value::String(expected));
        }
        errors.extend(
            validator
                .validate(&value)
                .into_iter()
                .map(|e| problem(Some(id.clone()), &e.field, e.message)),
        );
        if errors.is_empty() {
            match Object::decode(kind, value) {
                Ok(object) => {
                    parsed.objects.push(Located {
                        document: origin.document.unwrap_or(0),
                        object,
                    });
                    return;
                }
                Err(e) => errors.push(problem(Some(id.clone()), &e.field, e.message)),
            }
        }
    }
    parsed.rejected.push((kind, key));
    parsed.problems.extend(errors);
}

/// Why `name` is not an RFC 1123 subdomain (object names), if it is not.
pub fn invalid_dns_subdomain(name: &str) -> Option<String> {
    let ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    (!ok).then(|| {
        format!("{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters")
    })
}

/// Why `name` is not an RFC 1123 label (namespace names), if it is not.
pub fn invalid_dns_label(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!ok).then(|| {
        format!("{name:?} is not a valid namespace: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters")
    })
}
