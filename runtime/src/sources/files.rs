//! The directory source of local mode: reads every manifest under a directory, applies
//! what changed, and keeps watching.
//!
//! Change detection is inotify (through `notify`) with a polling pass as a safety net, so an
//! edit shows within a second even where file events are lost. Each pass reads only files
//! whose size or modification time changed and reloads only those whose content did. The
//! [`DirectoryIndex`] decides what a bad edit keeps.

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::{DefaultHasher, Hash, Hasher},
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weir_store::{DirectoryIndex, Problem, Severity, StateWriter};

use crate::metrics::{ReloadLabels, ReloadResult, SourceMetrics};

/// The file endings read as manifests.
const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// Every manifest file under `root` (or `root` itself, if it is a file), as the name
/// problems use (`root/sub/file.yaml`) and its path, in path order. Hidden files and
/// directories and editor backups (`~`) are skipped.
pub fn walk_manifests(root: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    if root.is_file() {
        found.push((root.display().to_string(), root.to_path_buf()));
        return Ok(found);
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
            {
                found.push((path.display().to_string(), path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// What a file looked like when last read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    modified: Option<SystemTime>,
    len: u64,
    content: u64,
}

/// What one pass over the directory did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files loaded because their content changed (or they are new).
    pub loaded: Vec<String>,
    /// Files that disappeared.
    pub removed: Vec<String>,
}

impl SyncReport {
    /// Whether the pass changed anything.
    pub fn changed(&self) -> bool {
        !self.loaded.is_empty() || !self.removed.is_empty()
    }
}

/// Loads a directory of manifests into the stores and keeps it in sync.
#[derive(Debug)]
pub struct DirectorySource {
    root: PathBuf,
    index: DirectoryIndex,
    seen: BTreeMap<String, Seen>,
    writer: Arc<StateWriter>,
    metrics: SourceMetrics,
    problems: watch::Sender<Vec<Problem>>,
}

impl DirectorySource {
    /// A source for `root`, which must exist.
    pub fn new(root: &Path, writer: Arc<StateWriter>, metrics: SourceMetrics) -> io::Result<Self> {
        std::fs::metadata(root).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("config directory {}: {e}", root.display()),
            )
        })?;
        Ok(DirectorySource {
            root: root.to_path_buf(),
            index: DirectoryIndex::default(),
            seen: BTreeMap::new(),
            writer,
            metrics,
            problems: watch::Sender::new(Vec::new()),
        })
    }

    /// The current problems, updated after every pass that changes something.
    pub fn problems(&self) -> watch::Receiver<Vec<Problem>> {
        self.problems.subscribe()
    }

    /// One pass: loads what changed, publishes the new state, reports problems.
    pub fn sync(&mut self) -> io::Result<SyncReport> {
        let files = match walk_manifests(&self.root) {
            Ok(files) => files,
            Err(e) => {
                // A vanished or unreadable directory is not an instruction to delete
                // everything: keep the last state and say so.
                warn!(dir = %self.root.display(), error = %e, "cannot read the config directory; keeping the last configuration");
                return Err(e);
            }
        };
        let mut report = SyncReport::default();
        let present: BTreeSet<&String> = files.iter().map(|(name, _)| name).collect();
        let gone: Vec<String> = self
            .seen
            .keys()
            .filter(|name| !present.contains(name))
            .cloned()
            .collect();
        for name in gone {
            self.seen.remove(&name);
            self.index.remove_file(&name);
            info!(file = %name, "file removed; its objects are deleted");
            report.removed.push(name);
        }
        for (name, path) in &files {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let modified = meta.modified().ok();
            if self
                .seen
                .get(name)
                .is_some_and(|seen| seen.modified == modified && seen.len == meta.len())
            {
                continue;
            }
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    warn!(file = %name, error = %e, "cannot read file; keeping its last good objects");
                    continue;
                }
            };
            let content = content_hash(&text);
            let changed = self
                .seen
                .get(name)
                .is_none_or(|seen| seen.content != content);
            self.seen.insert(
                name.clone(),
                Seen {
                    modified,
                    len: meta.len(),
                    content,
                },
            );
            if !changed {
                continue;
            }
            let outcome = self.index.load_file(name, &text);
            info!(
                file = %name,
                objects = outcome.objects,
                problems = outcome.problems,
                kept_last_good = outcome.kept_last_good,
                "file loaded"
            );
            report.loaded.push(name.clone());
        }
        if report.changed() {
            self.publish();
        }
        Ok(report)
    }

    fn publish(&mut self) {
        let (mut state, problems) = self.index.state();
        keep_written_status(&self.writer.current(), &mut state);
        let objects: usize = weir_store::Kind::ALL.iter().map(|k| state.count(*k)).sum();
        let changed_state = self.writer.replace(state);
        let previous = self.problems.borrow().clone();
        for problem in problems.iter().filter(|p| !previous.contains(p)) {
            match problem.severity {
                Severity::Error => warn!(problem = %problem, "configuration rejected"),
                Severity::Warning => warn!(problem = %problem, "dangling reference"),
            }
        }
        for problem in previous.iter().filter(|p| !problems.contains(p)) {
            info!(problem = %problem, "problem resolved");
        }
        let result = if problems.is_empty() {
            ReloadResult::clean
        } else {
            ReloadResult::with_problems
        };
        self.metrics
            .reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
        self.metrics.last_reload.set(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        self.metrics.observe_problems(&problems);
        info!(
            objects,
            problems = problems.len(),
            state_changed = changed_state,
            "configuration applied"
        );
        self.problems.send_replace(problems);
    }

    /// Watches the directory until `shutdown`, applying changes as they come.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (tx, mut events) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                // A full channel already holds a wake-up; dropping this one loses nothing.
                let _ = tx.try_send(());
            }
        })
        .and_then(|mut watcher| {
            watcher
                .watch(&self.root, RecursiveMode::Recursive)
                .map(|()| watcher)
        });
        let poll_every = match &watcher {
            Ok(_) => Duration::from_secs(2),
            Err(e) => {
                warn!(error = %e, "cannot watch the config directory for events; polling every 500ms");
                Duration::from_millis(500)
            }
        };
        let mut poll = tokio::time::interval(poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(()) = events.recv() => {
                    // Editors write in several steps; let a burst settle before reading.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while events.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            match self.sync() {
                Ok(report) if report.changed() => debug!(?report, "config directory changed"),
                Ok(_) | Err(_) => {}
            }
        }
        drop(watcher);
        debug!("directory source stopped");
    }
}

fn content_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Files carry no status and no generation, but Weir writes status into the stores in
/// local mode (MeshPolicy status, from the mesh-TLS controller). As an API server would,
/// status survives a reload, and `metadata.generation` counts spec changes (1 when first
/// loaded, +1 per changed spec), so "the controller has not seen this edit yet"
/// (`status.observedGeneration` behind) means the same in local mode as in a cluster.
fn keep_written_status(current: &weir_store::ClusterState, next: &mut weir_store::ClusterState) {
    let carried: Vec<_> = next
        .mesh_policies
        .iter()
        .filter(|(_, p)| p.status.is_none() && p.metadata.generation.is_none())
        .map(|(key, p)| {
            let before = current.mesh_policies.get(key);
            let mut policy = (**p).clone();
            policy.status = before.and_then(|b| b.status.clone());
            let generation = before.and_then(|b| b.metadata.generation).unwrap_or(0);
            let same_spec = before.is_some_and(|b| b.spec == p.spec);
            policy.metadata.generation = Some(if same_spec {
                generation
            } else {
                generation + 1
            });
            std::sync::Arc::new(policy)
        })
        .collect();
    for policy in carried {
        next.mesh_policies.insert(policy);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use weir_store::Kind;

    use super::*;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n";

    fn source(dir: &Path) -> (DirectorySource, Arc<StateWriter>) {
        let writer = Arc::new(StateWriter::default());
        let source = DirectorySource::new(dir, writer.clone(), SourceMetrics::default()).unwrap();
        (source, writer)
    }

    #[test]
    fn reads_manifests_recursively_and_skips_hidden_backup_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        for name in [
            "a.yaml",
            "sub/b.yml",
            "c.json",
            ".hidden.yaml",
            "d.yaml~",
            "notes.md",
            ".git/x.yaml",
        ] {
            fs::write(root.join(name), SERVICE).unwrap();
        }
        let names: Vec<PathBuf> = walk_manifests(root)
            .unwrap()
            .into_iter()
            .map(|(_, path)| path.strip_prefix(root).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            [
                PathBuf::from("a.yaml"),
                PathBuf::from("c.json"),
                PathBuf::from("sub/b.yml")
            ]
        );
    }

    #[test]
    fn reloads_a_file_only_when_its_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.yaml");
        fs::write(&file, SERVICE).unwrap();
        let (mut source, writer) = source(dir.path());
        assert_eq!(source.sync().unwrap().loaded.len(), 1);
        assert!(!source.sync().unwrap().changed(), "nothing changed");

        // Same content, new modification time: read, but not reloaded.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&file, SERVICE).unwrap();
        assert!(!source.sync().unwrap().changed());

        fs::write(&file, SERVICE.replace("web", "api")).unwrap();
        assert_eq!(
            source.sync().unwrap().loaded,
            vec![file.display().to_string()]
        );
        let state = writer.current();
        assert!(state.services.get_namespaced("shop", "api").is_some());
        assert!(state.services.get_namespaced("shop", "web").is_none());
    }

    #[test]
    fn mesh_policies_keep_written_status_and_count_spec_changes_like_an_api_server() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mesh.yaml");
        let policy = |mode: &str| {
            format!(
                "apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: shop}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
            )
        };
        let generation_and_status = |writer: &StateWriter| {
            let state = writer.current();
            let p = state
                .mesh_policies
                .get_namespaced("shop", "default")
                .unwrap()
                .clone();
            (p.metadata.generation, p.status.clone())
        };
        fs::write(&file, policy("Permissive")).unwrap();
        let (mut source, writer) = source(dir.path());
        source.sync().unwrap();
        assert_eq!(generation_and_status(&writer), (Some(1), None));
        // The controller writes status.
        let mut written = (**writer
            .current()
            .mesh_policies
            .get_namespaced("shop", "default")
            .unwrap())
        .clone();
        let status = weir_crds::mesh_policy::MeshPolicyStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        written.status = Some(status.clone());
        writer.apply(weir_store::Object::MeshPolicy(Arc::new(written)));
        // A reload with another spec: status kept, generation bumped.
        fs::write(&file, format!("{}# edited\n", policy("Strict"))).unwrap();
        source.sync().unwrap();
        assert_eq!(
            generation_and_status(&writer),
            (Some(2), Some(status.clone()))
        );
        // A reload that changes nothing in the spec keeps the generation.
        fs::write(&file, format!("{}# comment only\n", policy("Strict"))).unwrap();
        source.sync().unwrap();
        assert_eq!(generation_and_status(&writer), (Some(2), Some(status)));
    }

    #[test]
    fn a_deleted_file_deletes_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("svc.yaml"), SERVICE).unwrap();
        let (mut source, writer) = source(dir.path());
        source.sync().unwrap();
        fs::remove_file(dir.path().join("svc.yaml")).unwrap();
        assert_eq!(source.sync().unwrap().removed.len(), 1);
        assert_eq!(writer.current().count(Kind::Service), 0);
    }

    #[test]
    fn a_vanished_directory_keeps_the_last_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("config");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("svc.yaml"), SERVICE).unwrap();
        let (mut source, writer) = source(&root);
        source.sync().unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert!(source.sync().is_err());
        assert_eq!(
            writer.current().count(Kind::Service),
            1,
            "nothing is deleted"
        );
    }

    #[test]
    fn problems_are_published() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("bad.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {}\n",
        )
        .unwrap();
        let (mut source, _) = source(dir.path());
        let problems = source.problems();
        source.sync().unwrap();
        let problems = problems.borrow().clone();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().ends_with(
            "bad.yaml: document 1: metadata.name: required; every Service needs a name"
        ));
    }
}
