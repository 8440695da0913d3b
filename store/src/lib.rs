//! The picture of the cluster that every Weir component reads.
//!
//! Sources feed it: kube-runtime reflectors in a cluster, a directory of YAML in local mode.
//! Both write through a [`StateWriter`], which publishes [`ClusterState`] snapshots (one typed
//! [`Store`] per [`Kind`]) on a `tokio::sync::watch` channel. Components never talk to a
//! client directly, so the same code runs in a cluster and in `weir up`.
//!
//! Local mode's path: [`manifest::parse_manifests`] turns a file's text into typed objects
//! and [`Problem`]s (file, document, object, field); [`DirectoryIndex`] keeps each file's
//! last good objects so a broken edit loses nothing; [`references::check_references`] finds
//! references to objects that do not exist.

mod directory;
pub mod manifest;
mod object;
mod problem;
pub mod references;
mod selector;
mod store;

pub use directory::{DirectoryIndex, FileOutcome};
pub use object::{ClusterState, DecodeError, Kind, Object, ObjectKey};
pub use problem::{ObjectId, Origin, Problem, Severity};
pub use selector::selector_matches;
pub use store::{StateWriter, Store};
