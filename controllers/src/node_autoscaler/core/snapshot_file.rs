//! A SNAPSHOT file, as `weir recommend nodes -f` reads it: a Kubernetes `List` (what
//! `kubectl get -o yaml` prints) or multi-document YAML of Nodes, Pods,
//! PodDisruptionBudgets, DaemonSets and NodePools, owned, before the planner's
//! [`super::Snapshot`] is built from it.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use weir_crds::NodePool;

use super::snapshot::Objects;

/// The objects of a SNAPSHOT file, owned.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFile {
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Pods.
    pub pods: Vec<Pod>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<PodDisruptionBudget>,
    /// DaemonSets.
    pub daemonsets: Vec<DaemonSet>,
    /// NodePools.
    pub pools: Vec<NodePool>,
    /// Kinds the planner does not read, by count.
    pub ignored: BTreeMap<String, usize>,
}

impl SnapshotFile {
    /// Reads a Kubernetes `List` (what `kubectl get -o yaml` prints) or multi-document
    /// YAML. Errors name the item and the field: `items[3] (Pod shop/web-1): spec.containers[0].name: missing field`.
    pub fn parse(text: &str) -> Result<SnapshotFile, String> {
        let mut file = SnapshotFile::default();
        let mut documents = Vec::new();
        for (d, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value: serde_json::Value = serde::Deserialize::deserialize(document)
                .map_err(|e| format!("document {}: {e}", d + 1))?;
            documents.push(value);
        }
        let many = documents.len() > 1;
        for (d, value) in documents.into_iter().enumerate() {
            if value.is_null() {
                continue;
            }
            let at = if many {
                format!("document {}", d + 1)
            } else {
                String::new()
            };
            if value.get("kind").and_then(|k| k.as_str()) == Some("List")
                || value
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .is_some_and(|k| k.ends_with("List"))
            {
                let items = value
                    .get("items")
                    .and_then(|i| i.as_array())
                    .cloned()
                    .unwrap_or_default();
                for (i, item) in items.into_iter().enumerate() {
                    let prefix = if at.is_empty() {
                        format!("items[{i}]")
                    } else {
                        format!("{at} items[{i}]")
                    };
                    file.add(item, &prefix)?;
                }
            } else {
                file.add(value, if at.is_empty() { "document 1" } else { &at })?;
            }
        }
        Ok(file)
    }

    fn add(&mut self, value: serde_json::Value, at: &str) -> Result<(), String> {
        fn decode<K: serde::de::DeserializeOwned>(
            value: serde_json::Value,
            at: &str,
            kind: &str,
            name: &str,
        ) -> Result<K, String> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                format!("{at} ({kind} {name}): {path}: {}", e.into_inner())
            })
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| format!("{at}: kind: missing"))?
            .to_string();
        let meta = value.get("metadata");
        let text = |k: &str| meta.and_then(|m| m.get(k)).and_then(|v| v.as_str());
        let name = match (text("namespace"), text("name")) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.to_string(),
            _ => return Err(format!("{at} ({kind}): metadata.name: missing")),
        };
        match kind.as_str() {
            "Node" => self.nodes.push(decode(value, at, &kind, &name)?),
            "Pod" => self.pods.push(decode(value, at, &kind, &name)?),
            "PodDisruptionBudget" => self.pdbs.push(decode(value, at, &kind, &name)?),
            "DaemonSet" => self.daemonsets.push(decode(value, at, &kind, &name)?),
            "NodePool" => self.pools.push(decode(value, at, &kind, &name)?),
            other => *self.ignored.entry(other.to_string()).or_default() += 1,
        }
        Ok(())
    }

    /// Borrows the objects for [`Snapshot::build`].
    pub fn objects(&self) -> Objects<'_> {
        Objects {
            nodes: self.nodes.iter().collect(),
            pods: self.pods.iter().collect(),
            pdbs: self.pdbs.iter().collect(),
            daemonsets: self.daemonsets.iter().collect(),
            pools: self.pools.iter().collect(),
        }
    }
}
