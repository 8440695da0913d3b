//! The Kubernetes resources metrics can describe, and how series labels name them.
//!
//! prometheus-adapter asks the API server's REST mapper; Weir carries the table of
//! built-in resources, and accepts other (custom) resources named in `overrides`.

use std::fmt;

/// A kind of Kubernetes object a metric can describe.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version of the group, for `describedObject.apiVersion`.
    pub version: String,
    /// Plural resource name (`pods`).
    pub plural: String,
    /// Singular resource name (`pod`).
    pub singular: String,
    /// Kind (`Pod`).
    pub kind: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

impl Resource {
    /// `describedObject.apiVersion`: `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether this is the Namespace resource.
    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    /// The name the metrics API uses in paths and discovery: `pods`, `deployments.apps`.
    pub fn path_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path_name())
    }
}

const BUILT_IN: &[(&str, &str, &str, &str, &str, bool)] = &[
    ("", "v1", "pods", "pod", "Pod", true),
    ("", "v1", "namespaces", "namespace", "Namespace", false),
    ("", "v1", "nodes", "node", "Node", false),
    ("", "v1", "services", "service", "Service", true),
    ("", "v1", "endpoints", "endpoints", "Endpoints", true),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
    ),
    (
        "",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
    ),
    (
        "",
        "v1",
        "replicationcontrollers",
        "replicationcontroller",
        "ReplicationController",
        true,
    ),
    (
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
    ),
    (
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
    ),
    ("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true),
    (
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
    ),
    ("batch", "v1", "jobs", "job", "Job", true),
    ("batch", "v1", "cronjobs", "cronjob", "CronJob", true),
    (
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        true,
    ),
    (
        "gateway.networking.k8s.io",
        "v1",
        "gateways",
        "gateway",
        "Gateway",
        true,
    ),
    (
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
        "httproute",
        "HTTPRoute",
        true,
    ),
];

/// Every built-in resource.
pub fn built_in() -> impl Iterator<Item = Resource> {
    BUILT_IN.iter().map(
        |(group, version, plural, singular, kind, namespaced)| Resource {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            singular: singular.to_string(),
            kind: kind.to_string(),
            namespaced: *namespaced,
        },
    )
}

/// The built-in resource `group`/`name`, where `name` may be plural, singular or the kind
/// in any case (as kubectl and prometheus-adapter accept). Group `""` also finds resources
/// of other groups when the name is unambiguous (`deployment`).
pub fn lookup(group: &str, name: &str) -> Option<Resource> {
    let name = name.to_ascii_lowercase();
    let mut candidates = built_in().filter(|r| {
        (r.plural == name || r.singular == name || r.kind.to_ascii_lowercase() == name)
            && (r.group == group || group.is_empty())
    });
    let first = candidates.next()?;
    // An exact group match wins over a guess from another group.
    if first.group == group {
        return Some(first);
    }
    let rest: Vec<Resource> = candidates.collect();
    rest.into_iter().find(|r| r.group == group).or(Some(first))
}

/// A resource that is not built in (a custom resource named in an override): its plural is
/// the name with an `s` unless it ends in one, and it is taken to be namespaced.
pub fn custom(group: &str, name: &str) -> Resource {
    let name = name.to_ascii_lowercase();
    let (plural, singular) = match name.strip_suffix('s') {
        Some(singular) => (name.clone(), singular.to_string()),
        None => (format!("{name}s"), name.clone()),
    };
    Resource {
        group: group.to_string(),
        version: "v1".into(),
        kind: singular.clone(),
        plural,
        singular,
        namespaced: true,
    }
}

/// Finds the resource a metrics API path names: `pods`, `deployments.apps`,
/// `deployments`, among `known`.
pub fn from_path<'a>(
    known: impl IntoIterator<Item = &'a Resource>,
    name: &str,
) -> Option<&'a Resource> {
    let (plural, group) = match name.split_once('.') {
        Some((plural, group)) => (plural, Some(group)),
        None => (name, None),
    };
    let mut fallback = None;
    for r in known {
        if r.plural != plural && r.singular != plural {
            continue;
        }
        match group {
            Some(g) if r.group == g => return Some(r),
            Some(_) => {}
            None if r.group.is_empty() => return Some(r),
            None => fallback = fallback.or(Some(r)),
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(lookup("", "pod").unwrap().plural, "pods");
        assert_eq!(lookup("", "Pods").unwrap().kind, "Pod");
        assert_eq!(
            lookup("apps", "deployment").unwrap().api_version(),
            "apps/v1"
        );
        assert_eq!(lookup("", "deployment").unwrap().group, "apps");
        assert!(lookup("", "widget").is_none());
        let c = custom("example.com", "widget");
        assert_eq!(
            (c.plural.as_str(), c.path_name()),
            ("widgets", "widgets.example.com".to_string())
        );
        let all: Vec<Resource> = built_in().collect();
        assert_eq!(
            from_path(&all, "deployments.apps").unwrap().kind,
            "Deployment"
        );
        assert_eq!(from_path(&all, "deployments").unwrap().kind, "Deployment");
        assert_eq!(from_path(&all, "pods").unwrap().kind, "Pod");
        assert!(from_path(&all, "pods.apps").is_none());
    }
}
