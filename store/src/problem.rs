//! A problem with a manifest, told the way an operator can act on it: which file, which
//! document, which object, which field, and what is wrong.

use std::fmt;

use serde::Serialize;

use crate::ObjectKey;

/// What a problem means for the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object (or file) was not applied; its last good version, if any, stays.
    Error,
    /// The object was applied, but something it refers to does not exist (yet).
    Warning,
}

/// Where in the manifests a problem is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Origin {
    /// The file, as given to the loader (relative to the config directory).
    pub file: String,
    /// The document in a multi-document file, counting from 1.
    pub document: Option<usize>,
}

/// The object a problem is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectId {
    /// The kind as written (`kind:`).
    pub kind: String,
    /// Namespace and name.
    pub key: ObjectKey,
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// Where it is.
    pub origin: Option<Origin>,
    /// The object, when it could be identified.
    pub object: Option<ObjectId>,
    /// The field, e.g. `spec.minReplicas`; empty for the object or file as a whole.
    pub field: String,
    /// What is wrong, and where it matters what happens next, what happens next.
    pub message: String,
    /// Whether the object was applied.
    pub severity: Severity,
}

impl fmt::Display for Problem {
    /// `quickstart/shop.yaml: document 3: ScalingPolicy shop/web: spec.minReplicas: ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{}: ", origin.file)?;
            if let Some(document) = origin.document {
                write!(f, "document {document}: ")?;
            }
        }
        if let Some(object) = &self.object {
            write!(f, "{} {}: ", object.kind, object.key)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}
