//! The state of a directory of manifests, file by file, keeping the last good version of
//! everything an edit breaks.
//!
//! The rules, so that a bad edit never takes working configuration away:
//! - a file that cannot be read completely (YAML syntax error, a document without kind or
//!   name) keeps all the objects it had before;
//! - an object that fails validation keeps its previous version from the same file;
//! - objects that are valid are applied, and objects removed from a complete file are
//!   deleted;
//! - an object defined in two files is taken from the first (in path order) and the other
//!   definition is reported.

use std::collections::BTreeMap;

use weir_crds::SchemaValidator;

use crate::{
    ClusterState, Kind, ObjectId, ObjectKey, Origin, Problem, Severity,
    manifest::{Located, parse_manifests},
    references::check_references,
};

/// What loading one file did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOutcome {
    /// Objects the file now contributes.
    pub objects: usize,
    /// Problems found in it.
    pub problems: usize,
    /// Whether some of its objects are last good versions kept in place of what the file
    /// now says.
    pub kept_last_good: bool,
}

#[derive(Debug, Default)]
struct FileState {
    objects: BTreeMap<(Kind, ObjectKey), Located>,
    problems: Vec<Problem>,
}

/// The objects of a directory of manifests, by file.
#[derive(Debug)]
pub struct DirectoryIndex {
    validator: SchemaValidator,
    files: BTreeMap<String, FileState>,
}

impl Default for DirectoryIndex {
    fn default() -> Self {
        DirectoryIndex {
            validator: SchemaValidator::for_weir_crds(),
            files: BTreeMap::new(),
        }
    }
}

impl DirectoryIndex {
    /// Loads (or reloads) one file from its text.
    pub fn load_file(&mut self, file: &str, text: &str) -> FileOutcome {
        let parsed = parse_manifests(file, text, &self.validator);
        let previous = self.files.remove(file).unwrap_or_default();
        let mut kept_last_good = false;
        let objects = if parsed.complete {
            let mut objects: BTreeMap<_, _> = parsed
                .objects
                .into_iter()
                .map(|located| ((located.object.kind(), located.object.key()), located))
                .collect();
            for id in parsed.rejected {
                if let Some(last_good) = previous.objects.get(&id) {
                    objects.entry(id).or_insert_with(|| last_good.clone());
                    kept_last_good = true;
                }
            }
            objects
        } else {
            kept_last_good = !previous.objects.is_empty();
            previous.objects
        };
        let outcome = FileOutcome {
            objects: objects.len(),
            problems: parsed.problems.len(),
            kept_last_good,
        };
        self.files.insert(
            file.to_string(),
            FileState {
                objects,
                problems: parsed.problems,
            },
        );
        outcome
    }

    /// Forgets a file that was deleted; its objects are deleted too.
    pub fn remove_file(&mut self, file: &str) -> bool {
        self.files.remove(file).is_some()
    }

    /// The files loaded, in path order.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The merged state of every file, and every problem: per-file problems, duplicate
    /// definitions, and references to objects that do not exist.
    pub fn state(&self) -> (ClusterState, Vec<Problem>) {
        let mut state = ClusterState::default();
        let mut origins: BTreeMap<(Kind, ObjectKey), Origin> = BTreeMap::new();
        let mut problems = Vec::new();
        for (file, file_state) in &self.files {
            problems.extend(file_state.problems.iter().cloned());
            for (id, located) in &file_state.objects {
                let origin = Origin {
                    file: file.clone(),
                    document: Some(located.document),
                };
                if let Some(first) = origins.get(id) {
                    problems.push(Problem {
                        origin: Some(origin),
                        object: Some(ObjectId {
                            kind: id.0.name().to_string(),
                            key: id.1.clone(),
                        }),
                        field: String::new(),
                        message: format!(
                            "also defined in {} (document {}); that definition is used and this one ignored",
                            first.file,
                            first.document.unwrap_or(0)
                        ),
                        severity: Severity::Error,
                    });
                    continue;
                }
                origins.insert(id.clone(), origin);
                state.apply(located.object.clone());
            }
        }
        for reference in check_references(&state) {
            problems.push(Problem {
                origin: origins
                    .get(&(reference.kind, reference.key.clone()))
                    .cloned(),
                object: Some(ObjectId {
                    kind: reference.kind.name().to_string(),
                    key: reference.key,
                }),
                field: reference.field,
                message: reference.message,
                severity: Severity::Warning,
            });
        }
        // In file and document order, so output reads top to bottom like the manifests.
        problems.sort_by(|a, b| a.origin.cmp(&b.origin));
        (state, problems)
    }
}

#[cfg(test)]
mod tests;
