//! The Gateway provisioner's plan (pure): from the stores' Gateways, their parameters
//! and what was applied before, the server-side applies and deletes that make the
//! cluster run each Gateway ([`crate::gateway_infrastructure`]), and per Gateway why it
//! cannot be run when it cannot. The adapter (`gateway_provisioner`) carries the plan out
//! and records what succeeded in [`Applied`].
//!
//! Only changes are applied: an object equal to what was last applied is not sent again
//! (the API server would accept it as a no-op, at the cost of a request per object per
//! round), unless it is a Deployment or Service missing from the stores (deleted by
//! hand). The adapter forgets what it applied now and then ([`Applied::forget_objects`]),
//! so edits by hand are undone too. A Gateway whose parameters are bad keeps what runs it (the last good
//! configuration stays in force) and reports the problem. Objects a Gateway no longer
//! needs (its PDB when it drops to one replica, its ScalingPolicy when autoscaling is
//! removed) are deleted; the first time a Gateway is seen after a start they are deleted
//! if unwanted whether or not this process made them (a 404 is fine). Deleting a Gateway
//! deletes its objects through their owner references.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use weir_store::{ClusterState, ObjectKey};

use crate::{
    gateway_infrastructure::{gateway_objects, infrastructure_name, parameters_for},
    inject::InjectConfig,
    translate::gateway::is_weirs,
};

/// Identifies an object the provisioner manages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// The reference of a rendered object.
    pub fn of(object: &Value) -> ObjectRef {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ObjectRef {
            api_version: text(&object["apiVersion"]),
            kind: text(&object["kind"]),
            namespace: text(&object["metadata"]["namespace"]),
            name: text(&object["metadata"]["name"]),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The kinds a Gateway has only under some parameters.
const OPTIONAL: [(&str, &str); 2] = [
    ("policy/v1", "PodDisruptionBudget"),
    ("weir.io/v1alpha1", "ScalingPolicy"),
];

/// What the provisioner applied successfully, and the Gateways it has seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    objects: BTreeMap<ObjectRef, Value>,
    seen: BTreeSet<ObjectKey>,
}

impl Applied {
    /// `object` was applied.
    pub fn applied(&mut self, object: &Value) {
        self.objects.insert(ObjectRef::of(object), object.clone());
    }

    /// `target` was deleted (or was not there).
    pub fn deleted(&mut self, target: &ObjectRef) {
        self.objects.remove(target);
    }

    /// Forgets what was applied (not the Gateways seen), so the next plan applies every
    /// object again: how objects edited by hand are put back.
    pub fn forget_objects(&mut self) {
        self.objects.clear();
    }

    /// Forgets what `plan` said is gone and records the Gateways it looked at.
    fn settle(&mut self, gateways: BTreeSet<ObjectKey>, owned: &BTreeSet<ObjectRef>) {
        self.objects.retain(|r, _| owned.contains(r));
        self.seen = gateways;
    }

    /// Objects applied so far.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether nothing was applied.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// Server-side apply this object.
    Apply(Value),
    /// Delete this object (absent is fine).
    Delete(ObjectRef),
}

/// What to do this round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Applies and deletes, in order.
    pub operations: Vec<Operation>,
    /// Per Gateway (`namespace/name`) that cannot be run as asked: why.
    pub problems: BTreeMap<String, String>,
}

/// The plan for `state`, given what was `applied` before. Updates `applied`'s record of
/// which Gateways were seen and forgets objects of Gateways that are gone.
pub fn plan(state: &ClusterState, config: &InjectConfig, applied: &mut Applied) -> Plan {
    let mut plan = Plan::default();
    let mut gateways = BTreeSet::new();
    let mut owned = BTreeSet::new();
    for (key, gateway) in state.gateways.iter() {
        if !is_weirs(state, gateway) {
            continue;
        }
        let id = key.to_string();
        let namespace = key.namespace.clone().unwrap_or_else(|| "default".into());
        let name = infrastructure_name(&key.name, &gateway.spec.gateway_class_name);
        let refer = |(api_version, kind): (&str, &str)| ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        gateways.insert(key.clone());
        let rendered = parameters_for(state, gateway)
            .and_then(|parameters| gateway_objects(gateway, parameters.map(|p| &p.spec), config));
        let objects = match rendered {
            Ok(objects) => objects,
            Err(problem) => {
                // The last good objects stay in force.
                owned.extend(
                    applied
                        .objects
                        .keys()
                        .filter(|r| r.namespace == namespace && r.name == name)
                        .cloned(),
                );
                plan.problems.insert(id, problem);
                continue;
            }
        };
        let wanted: Vec<&Value> = objects.all();
        for object in &wanted {
            let target = ObjectRef::of(object);
            // The Deployment and Service are watched: one deleted by hand is put back.
            let gone = match target.kind.as_str() {
                "Deployment" => state
                    .deployments
                    .get(&ObjectKey::namespaced(&namespace, &name))
                    .is_none(),
                "Service" => state
                    .services
                    .get(&ObjectKey::namespaced(&namespace, &name))
                    .is_none(),
                _ => false,
            };
            if gone || applied.objects.get(&target) != Some(*object) {
                plan.operations.push(Operation::Apply((*object).clone()));
            }
            owned.insert(target);
        }
        for optional in OPTIONAL {
            let target = refer(optional);
            if owned.contains(&target) {
                continue;
            }
            if applied.objects.contains_key(&target) || !applied.seen.contains(key) {
                plan.operations.push(Operation::Delete(target));
            }
        }
    }
    applied.settle(gateways, &owned);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::ProxyResources;

    fn config() -> InjectConfig {
        InjectConfig {
            proxy_image: "envoy".into(),
            init_image: "weir".into(),
            image_pull_policy: "IfNotPresent".into(),
            xds_addr: "xds:18000".into(),
            rate_limit_addr: "rl:18081".into(),
            ca_root_pem: "-----BEGIN CERTIFICATE-----\nMESHROOT\n-----END CERTIFICATE-----\n"
                .into(),
            resources: ProxyResources {
                cpu: Some("100m".into()),
                memory: Some("128Mi".into()),
                cpu_limit: None,
                memory_limit: None,
            },
        }
    }

    fn state(parameters: &str) -> ClusterState {
        crate::test_support::state(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: weir}}\n\
             spec: {{controllerName: weir.io/gateway-controller}}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop, uid: u-1}}\n\
             spec: {{gatewayClassName: weir, infrastructure: {{parametersRef: {{group: weir.io, kind: GatewayParameters, name: p}}}}, \
             listeners: [{{name: http, port: 80, protocol: HTTP}}]}}\n---\n{parameters}"
        ))
    }

    fn params(spec: &str) -> String {
        format!(
            "apiVersion: weir.io/v1alpha1\nkind: GatewayParameters\nmetadata: {{name: p, namespace: shop}}\nspec: {spec}\n"
        )
    }

    fn kinds(plan: &Plan) -> Vec<String> {
        plan.operations
            .iter()
            .map(|op| match op {
                Operation::Apply(o) => format!("apply {}", o["kind"].as_str().unwrap()),
                Operation::Delete(r) => format!("delete {}", r.kind),
            })
            .collect()
    }

    fn carry_out(plan: &Plan, applied: &mut Applied) {
        for op in &plan.operations {
            match op {
                Operation::Apply(o) => applied.applied(o),
                Operation::Delete(r) => applied.deleted(r),
            }
        }
    }

    /// `state` as the watches would show it once the Deployment and Service exist.
    fn running(mut state: ClusterState) -> ClusterState {
        let key = |kind: &str| {
            serde_json::json!({"apiVersion": if kind == "Deployment" { "apps/v1" } else { "v1" }, "kind": kind,
                "metadata": {"name": "edge-weir", "namespace": "shop"}})
        };
        for (kind, k) in [
            ("Deployment", weir_store::Kind::Deployment),
            ("Service", weir_store::Kind::Service),
        ] {
            state.apply(weir_store::Object::decode(k, key(kind)).unwrap());
        }
        state
    }

    #[test]
    fn applies_what_changed_and_deletes_what_is_no_longer_wanted() {
        let mut applied = Applied::default();
        let first = plan(&state(&params("{replicas: 2}")), &config(), &mut applied);
        // New to this process: unwanted optional objects are deleted in case they exist.
        assert_eq!(
            kinds(&first),
            [
                "apply ServiceAccount",
                "apply Deployment",
                "apply Service",
                "apply PodDisruptionBudget",
                "delete ScalingPolicy"
            ]
        );
        let Operation::Apply(deployment) = &first.operations[1] else {
            panic!("{first:?}")
        };
        assert_eq!(deployment["metadata"]["name"], "edge-weir");
        carry_out(&first, &mut applied);
        // Nothing changed: nothing to do.
        let unchanged = running(state(&params("{replicas: 2}")));
        assert_eq!(
            kinds(&plan(&unchanged, &config(), &mut applied)),
            Vec::<String>::new()
        );
        // The Deployment and Service deleted by hand: put back.
        assert_eq!(
            kinds(&plan(
                &state(&params("{replicas: 2}")),
                &config(),
                &mut applied
            )),
            ["apply Deployment", "apply Service"]
        );
        // Everything forgotten (the adapter's periodic resync): everything applied again.
        applied.forget_objects();
        assert_eq!(
            plan(&unchanged, &config(), &mut applied).operations.len(),
            4
        );
        carry_out(&first, &mut applied);
        // One replica: the Deployment changes and the PDB goes.
        let one = plan(
            &running(state(&params("{replicas: 1}"))),
            &config(),
            &mut applied,
        );
        assert_eq!(
            kinds(&one),
            ["apply Deployment", "delete PodDisruptionBudget"]
        );
        carry_out(&one, &mut applied);
        // Autoscaling: a ScalingPolicy, the PDB back (minReplicas 2).
        let scaled = plan(
            &running(state(&params(
                "{autoscaling: {minReplicas: 2, maxReplicas: 5, targetRequestsPerSecond: \"100\"}}",
            ))),
            &config(),
            &mut applied,
        );
        assert_eq!(
            kinds(&scaled),
            [
                "apply Deployment",
                "apply PodDisruptionBudget",
                "apply ScalingPolicy"
            ]
        );
    }

    #[test]
    fn bad_parameters_keep_what_runs_and_say_why() {
        let mut applied = Applied::default();
        let good = plan(&state(&params("{replicas: 2}")), &config(), &mut applied);
        carry_out(&good, &mut applied);
        let count = applied.len();
        let bad = plan(&state(""), &config(), &mut applied);
        assert_eq!(bad.operations, []);
        assert_eq!(
            bad.problems["shop/edge"],
            "spec.infrastructure.parametersRef: GatewayParameters shop/p not found"
        );
        assert_eq!(applied.len(), count, "the last good objects are remembered");
        // Fixed: nothing to re-apply, it is what runs.
        assert_eq!(
            plan(
                &running(state(&params("{replicas: 2}"))),
                &config(),
                &mut applied
            )
            .operations,
            []
        );
    }

    #[test]
    fn a_deleted_gateway_is_forgotten_and_other_classes_are_left_alone() {
        let mut applied = Applied::default();
        let first = plan(&state(&params("{replicas: 2}")), &config(), &mut applied);
        carry_out(&first, &mut applied);
        let empty = crate::test_support::state(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: theirs, namespace: shop, uid: u-2}\n\
             spec: {gatewayClassName: other, listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
        );
        assert_eq!(plan(&empty, &config(), &mut applied), Plan::default());
        assert!(
            applied.is_empty(),
            "its objects go with it (owner references)"
        );
    }
}
