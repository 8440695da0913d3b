//! The kinds of object Weir reads, as one closed set.
//!
//! [`Object`] is a typed object of any of those kinds, [`Kind`] names a kind, and
//! [`ClusterState`] holds one [`Store`] per kind. Adding a kind is one line in the
//! `kinds!` invocation below.

use std::{fmt, sync::Arc};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::{Namespace, Node, Pod, Secret, Service},
    discovery::v1::EndpointSlice,
    policy::v1::PodDisruptionBudget,
};
use kube::Resource;
use serde_json::Value;
use weir_crds::{
    GatewayParameters, MeshPolicy, NodePool, ScalingPolicy, TrafficPolicy,
    gateway_api::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant},
};

use crate::store::Store;

/// Identifies an object within its kind: namespace (for namespaced kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ObjectKey {
    /// The namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key in a namespace.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// A key of a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: None,
            name: name.into(),
        }
    }

    /// The key of a Kubernetes object, from its metadata.
    pub fn of<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        ObjectKey {
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Why a JSON value is not an object of the kind it claims.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DecodeError {
    /// The field that failed, e.g. `spec.ports[0].port`.
    pub field: String,
    /// What was wrong with it.
    pub message: String,
}

fn decode<K: serde::de::DeserializeOwned>(value: Value) -> Result<K, DecodeError> {
    serde_path_to_error::deserialize::<_, K>(value).map_err(|e| {
        let field = e.path().to_string();
        DecodeError {
            field: if field == "." { String::new() } else { field },
            message: e.into_inner().to_string(),
        }
    })
}

macro_rules! kinds {
    ($( $variant:ident($ty:ty), $field:ident, namespaced: $namespaced:expr, also: [$($alt:literal),*] );* $(;)?) => {
        /// A kind of object Weir reads.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $( #[doc = concat!("`", stringify!($variant), "`")] $variant, )*
        }

        impl Kind {
            /// Every kind, in a stable order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The kind's name, as in `kind:`.
            pub fn name(self) -> &'static str {
                match self { $( Kind::$variant => stringify!($variant), )* }
            }

            /// The apiVersion Weir reads the kind at.
            pub fn api_version(self) -> String {
                match self { $( Kind::$variant => <$ty as Resource>::api_version(&()).into_owned(), )* }
            }

            /// Other apiVersions that carry the same shape and are read as this one.
            pub fn other_api_versions(self) -> &'static [&'static str] {
                match self { $( Kind::$variant => &[$($alt),*], )* }
            }

            /// Whether objects of the kind live in a namespace.
            pub fn is_namespaced(self) -> bool {
                match self { $( Kind::$variant => $namespaced, )* }
            }

            /// The kind named `name` (as in `kind:`), if Weir reads it.
            pub fn from_name(name: &str) -> Option<Kind> {
                match name { $( stringify!($variant) => Some(Kind::$variant), )* _ => None }
            }
        }

        impl fmt::Display for Kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        /// A typed object of one of the kinds Weir reads.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Object {
            $( #[doc = concat!("A `", stringify!($variant), "`.")] $variant(Arc<$ty>), )*
        }

        impl Object {
            /// The object's kind.
            pub fn kind(&self) -> Kind {
                match self { $( Object::$variant(_) => Kind::$variant, )* }
            }

            /// The object's namespace and name.
            pub fn key(&self) -> ObjectKey {
                match self { $( Object::$variant(o) => ObjectKey::of(o.as_ref()), )* }
            }

            /// Decodes a JSON object of `kind` into its typed form.
            pub fn decode(kind: Kind, value: Value) -> Result<Object, DecodeError> {
                Ok(match kind { $( Kind::$variant => Object::$variant(Arc::new(decode(value)?)), )* })
            }
        }

        $(
            impl From<$ty> for Object {
                fn from(o: $ty) -> Object { Object::$variant(Arc::new(o)) }
            }
        )*

        /// Everything Weir knows about the cluster: one store per kind.
        ///
        /// Cloning is cheap (one reference count per kind), so readers take a snapshot
        /// and work on it while writers publish the next one.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct ClusterState {
            $( #[doc = concat!("`", stringify!($variant), "` objects.")] pub $field: Store<$ty>, )*
        }

        impl ClusterState {
            /// Adds or replaces an object.
            pub fn apply(&mut self, object: Object) {
                match object { $( Object::$variant(o) => self.$field.insert(o), )* }
            }

            /// Removes an object; returns whether it was there.
            pub fn delete(&mut self, kind: Kind, key: &ObjectKey) -> bool {
                match kind { $( Kind::$variant => self.$field.remove(key), )* }
            }

            /// Replaces every object of `kind` (a relist).
            pub fn reset(&mut self, kind: Kind, objects: Vec<Object>) {
                match kind { $( Kind::$variant => self.$field = Store::default(), )* }
                for object in objects {
                    debug_assert_eq!(object.kind(), kind);
                    self.apply(object);
                }
            }

            /// Replaces the objects of `kind` in `namespace` (a relist of one namespace).
            pub fn reset_namespace(&mut self, kind: Kind, namespace: &str, objects: Vec<Object>) {
                match kind { $( Kind::$variant => { self.$field.remove_namespace(namespace); } )* }
                for object in objects {
                    debug_assert_eq!(object.kind(), kind);
                    debug_assert_eq!(object.key().namespace.as_deref(), Some(namespace));
                    self.apply(object);
                }
            }

            /// How many objects of `kind` there are.
            pub fn count(&self, kind: Kind) -> usize {
                match kind { $( Kind::$variant => self.$field.len(), )* }
            }

            /// Whether an object of `kind` exists under `key`.
            pub fn contains(&self, kind: Kind, key: &ObjectKey) -> bool {
                match kind { $( Kind::$variant => self.$field.get(key).is_some(), )* }
            }
        }
    };
}

kinds! {
    ScalingPolicy(ScalingPolicy), scaling_policies, namespaced: true, also: [];
    NodePool(NodePool), node_pools, namespaced: false, also: [];
    TrafficPolicy(TrafficPolicy), traffic_policies, namespaced: true, also: [];
    MeshPolicy(MeshPolicy), mesh_policies, namespaced: true, also: [];
    GatewayParameters(GatewayParameters), gateway_parameters, namespaced: true, also: [];
    Namespace(Namespace), namespaces, namespaced: false, also: [];
    Service(Service), services, namespaced: true, also: [];
    EndpointSlice(EndpointSlice), endpoint_slices, namespaced: true, also: [];
    Pod(Pod), pods, namespaced: true, also: [];
    Node(Node), nodes, namespaced: false, also: [];
    Deployment(Deployment), deployments, namespaced: true, also: [];
    DaemonSet(DaemonSet), daemon_sets, namespaced: true, also: [];
    PodDisruptionBudget(PodDisruptionBudget), pod_disruption_budgets, namespaced: true, also: [];
    Secret(Secret), secrets, namespaced: true, also: [];
    Gateway(Gateway), gateways, namespaced: true, also: ["gateway.networking.k8s.io/v1beta1"];
    HTTPRoute(HTTPRoute), http_routes, namespaced: true, also: ["gateway.networking.k8s.io/v1beta1"];
    GatewayClass(GatewayClass), gateway_classes, namespaced: false, also: ["gateway.networking.k8s.io/v1beta1"];
    ReferenceGrant(ReferenceGrant), reference_grants, namespaced: true, also: ["gateway.networking.k8s.io/v1"];
}
