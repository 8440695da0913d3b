//! Versioned, already-encoded resources, shared by every stream that sees the same thing.
//!
//! A [`Generation`] is one published cluster state. Clusters and endpoints are the same for
//! every proxy, so they are translated and encoded once per generation; listeners and
//! routes are computed once per [`ViewKey`] (a class of identical proxies) on first use.
//! Versions are content hashes of the resources a stream subscribes to, so an unchanged
//! set never yields a new response, and identical proxies agree on versions.
//!
//! [`SnapshotCache`] holds the current generation behind an `ArcSwap`: streams read it
//! without locks and are woken through a `watch` channel when a new one is published.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, OnceLock},
};

use arc_swap::ArcSwap;
use envoy_types::{pb::google::protobuf::Any, util::pack_any};
use tokio::sync::watch;
use weir_store::ClusterState;

use crate::{
    envoy::{
        self, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE,
        VIRTUAL_HOST_TYPE,
    },
    model::ProxyConfig,
    translate::{ProxyId, ProxyOptions, ViewKey, translate_shared, translate_view, view_clusters},
};

/// The resource types Weir serves, in the order a push sends them: clusters before the
/// endpoints and listeners that use them, secrets before the listeners whose TLS names
/// them, listeners before the routes they name, routes before the virtual hosts fetched
/// into them.
pub const TYPE_ORDER: [&str; 6] = [
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    SECRET_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
];

/// Whether a type is subscribed to as a whole (CDS, LDS) rather than by name (EDS, RDS).
pub fn is_wildcard_type(type_url: &str) -> bool {
    type_url == CLUSTER_TYPE || type_url == LISTENER_TYPE
}

/// `name` as [`TypeSnapshot::intern`] gives it, or a new one without a snapshot.
pub fn intern(snapshot: Option<&Arc<TypeSnapshot>>, name: &str) -> Arc<str> {
    snapshot.map_or_else(|| Arc::from(name), |s| s.intern(name))
}

/// One encoded resource.
#[derive(Debug)]
pub struct Resource {
    /// The resource's name (shared with every stream that tracks it).
    pub name: Arc<str>,
    /// The encoded resource.
    pub any: Any,
    /// Hash of the encoding, for versions.
    pub hash: u64,
}

impl Resource {
    fn new(name: &str, any: Any) -> Arc<Self> {
        let mut hasher = DefaultHasher::new();
        any.type_url.hash(&mut hasher);
        any.value.hash(&mut hasher);
        Arc::new(Resource {
            name: name.into(),
            any,
            hash: hasher.finish(),
        })
    }
}

fn hash_resources<'a>(resources: impl Iterator<Item = &'a Arc<Resource>>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for resource in resources {
        resource.name.hash(&mut hasher);
        resource.hash.hash(&mut hasher);
    }
    hasher.finish()
}

/// The resources of one type that a view sees, by name.
#[derive(Debug)]
pub struct TypeSnapshot {
    resources: BTreeMap<Arc<str>, Arc<Resource>>,
    /// Hash over every name and content: equal digests, equal snapshots.
    digest: u64,
}

impl TypeSnapshot {
    fn from_resources(resources: impl IntoIterator<Item = Arc<Resource>>) -> Self {
        let resources: BTreeMap<Arc<str>, Arc<Resource>> =
            resources.into_iter().map(|r| (r.name.clone(), r)).collect();
        TypeSnapshot {
            digest: hash_resources(resources.values()),
            resources,
        }
    }

    /// Identifies the content: a stream that has dealt with a snapshot of this digest has
    /// nothing to do for another one with the same digest (as long as its subscription
    /// stays the same).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The resources a subscription selects: all (`None`, a wildcard subscription) or
    /// those of the given names that exist, by name. A named subscription costs lookups of
    /// its names, not a scan of the snapshot (EDS in a mesh of thousands of clusters).
    pub fn select<'a>(
        &'a self,
        names: Option<&'a BTreeSet<Arc<str>>>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Resource>> + 'a> {
        match names {
            None => Box::new(self.resources.values()),
            Some(names) => Box::new(names.iter().filter_map(|n| self.resources.get(n))),
        }
    }

    /// The resource called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(name)
    }

    /// `name`, shared with this snapshot's resource of that name when there is one: a
    /// stream's subscription then holds references, not copies, of the names it tracks.
    pub fn intern(&self, name: &str) -> Arc<str> {
        self.resources
            .get_key_value(name)
            .map_or_else(|| Arc::from(name), |(k, _)| k.clone())
    }

    /// The version of what a subscription selects: a hash over names and contents.
    pub fn version(&self, names: Option<&BTreeSet<Arc<str>>>) -> String {
        let hash = match names {
            None => self.digest,
            Some(_) => hash_resources(self.select(names)),
        };
        format!("{hash:016x}")
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

/// Everything one view sees, per type (indexed like [`TYPE_ORDER`]).
#[derive(Debug)]
pub struct ViewSnapshot {
    types: [Arc<TypeSnapshot>; 6],
    /// The model the resources were encoded from, for debugging and status.
    pub config: ProxyConfig,
    /// What decided it.
    pub key: ViewKey,
}

impl ViewSnapshot {
    /// The resources of one type.
    pub fn of_type(&self, type_url: &str) -> Option<&Arc<TypeSnapshot>> {
        TYPE_ORDER
            .iter()
            .position(|t| *t == type_url)
            .map(|i| &self.types[i])
    }
}

/// One published cluster state and what was computed from it.
#[derive(Debug)]
pub struct Generation {
    /// Counts up from 1 with each publish.
    pub number: u64,
    /// When it was published.
    pub published: std::time::Instant,
    state: ClusterState,
    shared: OnceLock<Arc<SharedResources>>,
    inbound_limits: OnceLock<crate::translate::InboundLimitIndex>,
    views: Mutex<HashMap<ViewKey, Arc<OnceLock<Arc<ViewSnapshot>>>>>,
    /// Virtual hosts fetched on demand, by what decides them: the caller's namespace,
    /// whether it is captured, and the authority asked for.
    on_demand_hosts: Mutex<HashMap<(String, bool, String), Arc<OnDemandHosts>>>,
    /// The view of each proxy asked for, so replicas of one workload (same pod name in
    /// their node id, same options) key it once per generation, not once per stream.
    proxies: Mutex<HashMap<(ProxyId, ProxyOptions), Arc<ViewSnapshot>>>,
}

#[derive(Debug)]
struct SharedResources {
    /// Every Service port's cluster, encoded, by name: what an unscoped view holds, what
    /// a scoped one picks from, what an on-demand sidecar may fetch.
    clusters: TypeSnapshot,
    endpoints: Arc<TypeSnapshot>,
    config: ProxyConfig,
    /// Cluster name → index in `config.clusters`, and of its load assignment in
    /// `config.load_assignments`: a scoped view picks its few by lookup, not by a scan of
    /// the mesh.
    by_name: HashMap<Arc<str>, (usize, Option<usize>)>,
}

/// The answer to an on-demand sidecar's request for an authority: the virtual hosts of the
/// Service it names (one per port), and which of them has the authority among its domains.
#[derive(Debug, Default)]
pub struct OnDemandHosts {
    /// Encoded virtual hosts, named `outbound/<namespace>.<service>.<port>`.
    pub resources: Vec<Arc<Resource>>,
    /// The resource that answers the authority; `None`: nothing does (Envoy answers 404).
    pub matched: Option<Arc<str>>,
}

impl Generation {
    fn new(number: u64, state: ClusterState) -> Self {
        Generation {
            number,
            published: std::time::Instant::now(),
            state,
            shared: OnceLock::new(),
            inbound_limits: OnceLock::new(),
            views: Mutex::new(HashMap::new()),
            on_demand_hosts: Mutex::new(HashMap::new()),
            proxies: Mutex::new(HashMap::new()),
        }
    }

    /// The cluster state of this generation.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The view key of `proxy` in this generation (its per-state index built once, on the
    /// first proxy keyed).
    pub fn view_key(&self, proxy: &ProxyId, options: &ProxyOptions) -> ViewKey {
        let index = self
            .inbound_limits
            .get_or_init(|| crate::translate::inbound_limit_index(&self.state));
        crate::translate::view_key_indexed(&self.state, index, proxy, options)
    }

    fn shared(&self) -> &SharedResources {
        self.shared.get_or_init(|| {
            let (clusters, assignments) = translate_shared(&self.state);
            let assignment_at: HashMap<&str, usize> = assignments
                .iter()
                .enumerate()
                .map(|(i, a)| (a.cluster.as_str(), i))
                .collect();
            let by_name = clusters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let assignment = assignment_at.get(c.name.as_str()).copied();
                    (Arc::from(c.name.as_str()), (i, assignment))
                })
                .collect();
            Arc::new(SharedResources {
                by_name,
                clusters: TypeSnapshot::from_resources(
                    clusters
                        .iter()
                        .map(|c| Resource::new(&c.name, pack_any(envoy::to_cluster(c)))),
                ),
                endpoints: Arc::new(TypeSnapshot::from_resources(
                    assignments
                        .iter()
                        .map(|a| Resource::new(&a.cluster, pack_any(envoy::to_load_assignment(a)))),
                )),
                config: ProxyConfig {
                    clusters,
                    load_assignments: assignments,
                    ..ProxyConfig::default()
                },
            })
        })
    }

    /// What `proxy` sees in this generation (its view, keyed once per generation).
    pub fn proxy_view(&self, proxy: &ProxyId, options: &ProxyOptions) -> Arc<ViewSnapshot> {
        memoized(&self.proxies, (proxy.clone(), options.clone()), || {
            self.view(&self.view_key(proxy, options))
        })
    }

    /// What proxies with this view key see; computed once per generation and key, however
    /// many streams ask at once.
    pub fn view(&self, key: &ViewKey) -> Arc<ViewSnapshot> {
        let cell = {
            let mut views = self
                .views
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match views.get(key) {
                Some(cell) => cell.clone(),
                None => views.entry(key.clone()).or_default().clone(),
            }
        };
        cell.get_or_init(|| Arc::new(self.compute_view(key)))
            .clone()
    }

    /// A Service port's cluster, for an on-demand sidecar that names it.
    pub fn on_demand_cluster(&self, name: &str) -> Option<Arc<Resource>> {
        self.shared().clusters.get(name).cloned()
    }

    /// The virtual hosts an on-demand sidecar with view `key` asked for by `authority`
    /// (computed once per generation, caller namespace and authority).
    pub fn on_demand_hosts(&self, key: &ViewKey, authority: &str) -> Arc<OnDemandHosts> {
        let memo = (
            key.namespace.clone(),
            key.options.capture,
            authority.to_string(),
        );
        memoized(&self.on_demand_hosts, memo, || {
            Arc::new(self.encode_on_demand_hosts(key, authority))
        })
    }

    fn encode_on_demand_hosts(&self, key: &ViewKey, authority: &str) -> OnDemandHosts {
        let mut answer = OnDemandHosts::default();
        let hosts = crate::translate::on_demand_hosts(&self.state, key, authority);
        for host in hosts.iter().flatten() {
            let name = crate::translate::vhds_name(host);
            // Envoy keys the virtual hosts VHDS gave it by their own name, and removes by
            // resource name: the two must be one.
            let mut proto = envoy::to_virtual_host(host);
            proto.name = name.clone();
            let resource = Resource::new(&name, pack_any(proto));
            if host.domains.iter().any(|d| d == authority) {
                answer.matched = Some(resource.name.clone());
            }
            answer.resources.push(resource);
        }
        answer
    }

    fn compute_view(&self, key: &ViewKey) -> ViewSnapshot {
        // Workload certificates come from each proxy's agent, never from here: ADS
        // serves no secrets.
        let secrets = Arc::new(TypeSnapshot::from_resources(Vec::new()));
        let shared = self.shared();
        let view = translate_view(&self.state, key);
        // A scoped view holds the shared clusters its routes send to; others hold them all.
        let (shared_clusters, mut shared_config) = match view_clusters(key, &view) {
            None => (
                shared.clusters.select(None).cloned().collect(),
                ProxyConfig {
                    clusters: shared.config.clusters.clone(),
                    load_assignments: shared.config.load_assignments.clone(),
                    ..ProxyConfig::default()
                },
            ),
            Some(needed) => {
                let mut resources = Vec::new();
                let mut config = ProxyConfig::default();
                for name in needed {
                    let (Some(resource), Some((i, assignment))) =
                        (shared.clusters.get(name), shared.by_name.get(name))
                    else {
                        continue;
                    };
                    resources.push(resource.clone());
                    config.clusters.push(shared.config.clusters[*i].clone());
                    if let Some(a) = assignment {
                        config
                            .load_assignments
                            .push(shared.config.load_assignments[*a].clone());
                    }
                }
                (resources, config)
            }
        };
        let clusters: Vec<_> = shared_clusters
            .into_iter()
            .chain(
                view.clusters
                    .iter()
                    .map(|c| Resource::new(&c.name, pack_any(envoy::to_cluster(c)))),
            )
            .collect();
        let listeners: Vec<_> = view
            .listeners
            .iter()
            .map(|l| Resource::new(&l.name, pack_any(envoy::to_listener(l))))
            .collect();
        let routes: Vec<_> = view
            .route_tables
            .iter()
            .map(|t| Resource::new(&t.name, pack_any(envoy::to_route_configuration(t))))
            .collect();
        shared_config.clusters.extend(view.clusters);
        let config = ProxyConfig {
            listeners: view.listeners,
            route_tables: view.route_tables,
            ..shared_config
        };
        ViewSnapshot {
            types: [
                Arc::new(TypeSnapshot::from_resources(clusters)),
                shared.endpoints.clone(),
                secrets,
                Arc::new(TypeSnapshot::from_resources(listeners)),
                Arc::new(TypeSnapshot::from_resources(routes)),
                // Virtual hosts are fetched by name only (`Generation::on_demand_hosts`).
                Arc::new(TypeSnapshot::from_resources(Vec::new())),
            ],
            config,
            key: key.clone(),
        }
    }
}

/// The value under `key` in `memo`, computed (outside the lock) and kept if absent.
fn memoized<K: std::hash::Hash + Eq, V: Clone>(
    memo: &Mutex<HashMap<K, V>>,
    key: K,
    compute: impl FnOnce() -> V,
) -> V {
    let lock = || memo.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(value) = lock().get(&key) {
        return value.clone();
    }
    let value = compute();
    lock().insert(key, value.clone());
    value
}

/// The current generation, and a signal when it changes.
#[derive(Debug)]
pub struct SnapshotCache {
    current: ArcSwap<Generation>,
    changed: watch::Sender<u64>,
}

impl SnapshotCache {
    /// A cache starting from `state` (generation 1).
    pub fn new(state: ClusterState) -> Self {
        SnapshotCache {
            current: ArcSwap::from_pointee(Generation::new(1, state)),
            changed: watch::Sender::new(1),
        }
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Publishes a new state as the next generation and wakes every stream.
    pub fn publish(&self, state: ClusterState) -> u64 {
        let number = self.current.load().number + 1;
        self.install(Generation::new(number, state))
    }

    fn install(&self, generation: Generation) -> u64 {
        let number = generation.number;
        self.current.store(Arc::new(generation));
        self.changed.send_replace(number);
        number
    }

    /// A receiver woken on every publish.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        test_support::state,
        translate::{ProxyId, ProxyOptions, view_key},
    };

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n";

    #[test]
    fn identical_proxies_share_one_view_and_versions_follow_content() {
        let cache = SnapshotCache::new(state(SERVICE));
        let generation = cache.current();
        let a: ProxyId = "sidecar~a.shop".parse().unwrap();
        let b: ProxyId = "sidecar~b.shop".parse().unwrap();
        let options = ProxyOptions::default();
        let view_a = generation.view(&view_key(generation.state(), &a, &options));
        let view_b = generation.view(&view_key(generation.state(), &b, &options));
        assert!(
            Arc::ptr_eq(&view_a, &view_b),
            "one translation for both sidecars"
        );
        let clusters = view_a.of_type(CLUSTER_TYPE).unwrap();
        let v1 = clusters.version(None);

        // Republishing the same content keeps versions; a change moves them.
        cache.publish(state(SERVICE));
        let again = cache.current();
        let v2 = again
            .view(&view_key(again.state(), &a, &options))
            .of_type(CLUSTER_TYPE)
            .unwrap()
            .version(None);
        assert_eq!(v1, v2);
        cache.publish(state(&SERVICE.replace("port: 80", "port: 81")));
        let changed = cache.current();
        let v3 = changed
            .view(&view_key(changed.state(), &a, &options))
            .of_type(CLUSTER_TYPE)
            .unwrap()
            .version(None);
        assert_ne!(v1, v3);
    }

    #[test]
    fn named_subscriptions_select_and_version_only_their_names() {
        let cache = SnapshotCache::new(state(&format!(
            "{SERVICE}---\n{}",
            SERVICE.replace("web", "api")
        )));
        let generation = cache.current();
        let proxy: ProxyId = "sidecar~a.shop".parse().unwrap();
        let view = generation.view(&view_key(
            generation.state(),
            &proxy,
            &ProxyOptions::default(),
        ));
        let endpoints = view.of_type(ENDPOINT_TYPE).unwrap();
        assert_eq!(endpoints.len(), 2);
        let web: BTreeSet<Arc<str>> = ["shop/web/80".into(), "shop/missing/80".into()].into();
        let selected: Vec<&str> = endpoints.select(Some(&web)).map(|r| &*r.name).collect();
        assert_eq!(selected, ["shop/web/80"]);
        assert_ne!(endpoints.version(Some(&web)), endpoints.version(None));
    }
}
