//! Property: for random meshes and egress lists, a scoped sidecar can reach every Service
//! its list selects (a virtual host for each port, and every cluster its routes send to),
//! and is sent nothing else (no other virtual host, no other Service's cluster).

#![allow(clippy::unwrap_used)] // test helpers panic on broken fixtures by design

use std::collections::BTreeSet;

use proptest::prelude::*;
use weir_store::{DirectoryIndex, Severity};
use weir_xds::translate::{ProxyOptions, translate};

const NAMESPACES: [&str; 3] = ["shop", "pay", "ops"];

#[derive(Clone, Debug)]
struct Mesh {
    /// (namespace index, two ports?) per Service `s<i>`.
    services: Vec<(usize, bool)>,
    /// (parent Service, backend Service): a producer route splitting the parent's port 80.
    routes: Vec<(usize, usize)>,
    /// Egress patterns: (namespace: index, `.` or `*`; service: index or `*`).
    egress: Vec<(NsPattern, Option<usize>)>,
    /// The sidecar's namespace.
    own: usize,
    capture: bool,
}

#[derive(Clone, Copy, Debug)]
enum NsPattern {
    Named(usize),
    Own,
    Any,
}

fn mesh() -> impl Strategy<Value = Mesh> {
    (1usize..12)
        .prop_flat_map(|n| {
            (
                prop::collection::vec((0..NAMESPACES.len(), any::<bool>()), n),
                prop::collection::vec((0..n, 0..n), 0..4),
                prop::collection::vec(
                    (
                        prop_oneof![
                            (0..NAMESPACES.len()).prop_map(NsPattern::Named),
                            Just(NsPattern::Own),
                            Just(NsPattern::Any),
                        ],
                        prop::option::of(0..n + 2),
                    ),
                    0..4,
                ),
                0..NAMESPACES.len(),
                any::<bool>(),
            )
        })
        .prop_map(|(services, routes, egress, own, capture)| Mesh {
            services,
            routes,
            egress,
            own,
            capture,
        })
}

impl Mesh {
    fn ns(&self, service: usize) -> &'static str {
        NAMESPACES[self.services[service].0]
    }

    fn yaml(&self) -> String {
        let own = NAMESPACES[self.own];
        let hosts: Vec<String> = self
            .egress
            .iter()
            .map(|(ns, service)| {
                let ns = match ns {
                    NsPattern::Named(i) => NAMESPACES[*i],
                    NsPattern::Own => ".",
                    NsPattern::Any => "*",
                };
                match service {
                    Some(s) => format!("\"{ns}/s{s}\""),
                    None => format!("\"{ns}/*\""),
                }
            })
            .collect();
        let mut docs = vec![
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: client-0, namespace: {own}, labels: {{app: client}}}}\nspec: {{containers: [{{name: c, image: c, ports: [{{containerPort: 8080}}]}}]}}\n"
            ),
            format!(
                "apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: client, namespace: {own}}}\nspec: {{selector: {{matchLabels: {{app: client}}}}, mtls: {{mode: Permissive}}, egress: {{hosts: [{}]}}}}\n",
                hosts.join(", ")
            ),
        ];
        for (i, (ns, two_ports)) in self.services.iter().enumerate() {
            let ns = NAMESPACES[*ns];
            let ports = if *two_ports {
                "[{name: http, port: 80}, {name: admin, port: 9090}]"
            } else {
                "[{name: http, port: 80}]"
            };
            docs.push(format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: {ns}}}\nspec: {{clusterIP: 10.96.0.{}, ports: {ports}}}\n",
                i + 10
            ));
            docs.push(format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}, namespace: {ns}, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nports: [{{name: http, port: 80}}]\nendpoints: [{{addresses: [10.1.0.{}]}}]\n",
                i + 10
            ));
        }
        for (r, (parent, backend)) in self.routes.iter().enumerate() {
            let ns = self.ns(*parent);
            // A backend in another namespace needs a ReferenceGrant; grant it.
            docs.push(format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{r}, namespace: {ns}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: s{parent}, port: 80}}]\n  rules:\n  - backendRefs: [{{name: s{parent}, port: 80, weight: 1}}, {{name: s{backend}, namespace: {}, port: 80, weight: 1}}]\n",
                self.ns(*backend)
            ));
            if self.ns(*backend) != ns {
                docs.push(format!(
                    "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: from-r{r}, namespace: {}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {ns}}}]\n  to: [{{group: \"\", kind: Service}}]\n",
                    self.ns(*backend)
                ));
            }
        }
        docs.join("---\n")
    }

    /// The Services the egress list selects, by the list's meaning.
    fn selected(&self) -> BTreeSet<usize> {
        (0..self.services.len())
            .filter(|&i| {
                self.egress.iter().any(|(ns, service)| {
                    let ns_ok = match ns {
                        NsPattern::Named(n) => self.services[i].0 == *n,
                        NsPattern::Own => self.services[i].0 == self.own,
                        NsPattern::Any => true,
                    };
                    ns_ok && service.is_none_or(|s| s == i)
                })
            })
            .collect()
    }

    fn ports(&self, i: usize) -> Vec<u16> {
        if self.services[i].1 {
            vec![80, 9090]
        } else {
            vec![80]
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn what_a_workload_calls_is_reachable_and_nothing_else_is_sent(mesh in mesh()) {
        let mut index = DirectoryIndex::default();
        index.load_file("mesh.yaml", &mesh.yaml());
        let (state, problems) = index.state();
        let errors: Vec<_> = problems.iter().filter(|p| p.severity == Severity::Error).collect();
        prop_assert!(errors.is_empty(), "{errors:?}");
        let own = NAMESPACES[mesh.own];
        let proxy = format!("sidecar~client-0.{own}").parse().unwrap();
        let config = translate(&state, &proxy, &ProxyOptions { capture: mesh.capture, ..ProxyOptions::default() });

        let selected = mesh.selected();
        let cluster = |i: usize, port: u16| format!("{}/s{i}/{port}", mesh.ns(i));
        let sent: BTreeSet<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        let with_endpoints: BTreeSet<&str> =
            config.load_assignments.iter().map(|a| a.cluster.as_str()).collect();
        let outbound = config.route_tables.iter().find(|t| t.name == "outbound").unwrap();

        // Reachable: a virtual host answering `s<i>.<ns>:<port>`, whose routes send only to
        // clusters the sidecar holds (with their endpoints).
        let mut allowed: BTreeSet<String> = BTreeSet::new();
        for &i in &selected {
            for port in mesh.ports(i) {
                let authority = format!("s{i}.{}:{port}", mesh.ns(i));
                let host = outbound
                    .virtual_hosts
                    .iter()
                    .find(|h| h.domains.contains(&authority));
                prop_assert!(host.is_some(), "no virtual host for {authority}");
                for route in &host.unwrap().routes {
                    if let weir_xds::model::RouteAction::Forward { backends, .. } = &route.action {
                        for backend in backends {
                            prop_assert!(sent.contains(backend.cluster.as_str()), "{authority} routes to {} which was not sent", backend.cluster);
                            prop_assert!(with_endpoints.contains(backend.cluster.as_str()), "no endpoints for {}", backend.cluster);
                            allowed.insert(backend.cluster.clone());
                        }
                    }
                }
                allowed.insert(cluster(i, port));
            }
            for (parent, backend) in &mesh.routes {
                if *parent == i {
                    allowed.insert(cluster(*backend, 80));
                }
            }
        }
        // Nothing else: only the selected Services' virtual hosts, and of the Service
        // clusters only theirs and their routes' backends.
        prop_assert_eq!(outbound.virtual_hosts.len(),
            selected.iter().map(|&i| mesh.ports(i).len()).sum::<usize>());
        for name in sent.iter().filter(|n| n.matches('/').count() == 2) {
            prop_assert!(allowed.contains(*name), "{name} was sent but nothing selected calls it");
        }
        if let Some(weir_xds::model::Capture::Outbound { service_addresses, .. }) =
            config.listeners.iter().find(|l| l.name == "outbound").and_then(|l| l.capture.as_ref())
        {
            let expected: BTreeSet<String> =
                selected.iter().map(|i| format!("10.96.0.{}", i + 10)).collect();
            prop_assert_eq!(service_addresses.iter().cloned().collect::<BTreeSet<_>>(), expected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// On demand (no egress list): nothing of the mesh up front; each Service the workload
    /// calls, asked for by any spelling of its name, answers with virtual hosts holding
    /// that authority whose routes send only to clusters that exist; nothing else answers.
    #[test]
    fn on_demand_sends_nothing_up_front_and_every_call_resolves(
        mesh in mesh(),
        calls in prop::collection::vec((0usize..14, 0usize..4, any::<bool>()), 0..6),
    ) {
        let mesh = Mesh { egress: Vec::new(), ..mesh };
        let mut yaml = mesh.yaml();
        // No MeshPolicy egress at all: drop the client's policy.
        yaml = yaml.replace(", egress: {hosts: []}", "");
        let mut index = DirectoryIndex::default();
        index.load_file("mesh.yaml", &yaml);
        let (state, _) = index.state();
        let own = NAMESPACES[mesh.own];
        let proxy = format!("sidecar~client-0.{own}").parse().unwrap();
        let options = ProxyOptions { capture: mesh.capture, on_demand: true, ..ProxyOptions::default() };
        let config = translate(&state, &proxy, &options);
        let outbound = config.route_tables.iter().find(|t| t.name == "outbound").unwrap();
        prop_assert!(outbound.on_demand && outbound.virtual_hosts.is_empty());
        prop_assert!(config.clusters.iter().all(|c| c.name.matches('/').count() != 2),
            "a Service cluster was sent up front: {:?}", config.clusters);

        let key = weir_xds::translate::view_key(&state, &proxy, &options);
        let (all_clusters, _) = weir_xds::translate::translate_shared(&state);
        let exists: BTreeSet<&str> = all_clusters.iter().map(|c| c.name.as_str()).collect();
        for (service, spelling, with_port) in calls {
            let ns = if service < mesh.services.len() { mesh.ns(service) } else { "shop" };
            let host = match spelling {
                0 if ns == own => format!("s{service}"),
                0 | 1 => format!("s{service}.{ns}"),
                2 => format!("s{service}.{ns}.svc"),
                _ => format!("s{service}.{ns}.svc.cluster.local"),
            };
            let authority = if with_port { format!("{host}:80") } else { host };
            let hosts = weir_xds::translate::on_demand_hosts(&state, &key, &authority);
            if service >= mesh.services.len() {
                prop_assert!(hosts.is_none(), "{authority} names no Service but resolved");
                continue;
            }
            let hosts = hosts.unwrap_or_default();
            prop_assert_eq!(hosts.len(), mesh.ports(service).len());
            prop_assert!(hosts.iter().any(|h| h.domains.contains(&authority)),
                "no virtual host answers {}", authority);
            for host in &hosts {
                for route in &host.routes {
                    if let weir_xds::model::RouteAction::Forward { backends, .. } = &route.action {
                        for backend in backends {
                            prop_assert!(exists.contains(backend.cluster.as_str()),
                                "{} routes to {} which does not exist", authority, backend.cluster);
                        }
                    }
                }
            }
        }
    }
}
