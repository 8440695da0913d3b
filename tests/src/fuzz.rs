//! A seeded generator of valid configurations (Services, EndpointSlices, Gateway API
//! HTTPRoutes on a Gateway and on Services, TrafficPolicies, a MeshPolicy), for checking
//! that Envoy accepts whatever Weir makes of valid input. "Valid" means what the API
//! server and `weir validate` accept: the generator draws only schema-valid values, but
//! among them the awkward ones real clusters hold (one port number for UDP and TCP, FQDN
//! EndpointSlices, large and RE2-refused regular expressions, `%` and `Host` in header
//! modifiers, backends that do not resolve, zero weights).
//!
//! Deterministic: the same seed gives the same configuration, so a failure is reproduced
//! by its seed alone.

use std::fmt::Write as _;

/// A small deterministic PRNG (xorshift64*): enough to spread choices, and ours so a seed
/// means the same configuration on every machine and every version of every crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Path regular expressions: valid ones (some far above Envoy's default RE2 size) and ones
/// RE2 refuses (Weir must leave those out, not push them).
const PATH_REGEXES: &[&str] = &[
    r"^/api/v[0-9]+/.*",
    r"^/files/[a-zA-Z0-9_-]{1,64}\.(png|jpe?g|gif|webp)$",
    r"(?i)^/Case/[a-z]+$",
    r"^/items/\d{1,10}(/reviews)?$",
    r"^/(old|legacy",
    r"^/x/(\w+)/\1$",
    r"^/(?!admin).*",
    r"(?x) ^/verbose / path",
    r"(?iU)^/lazy/.+?$",
];
const HEADER_NAMES: &[&str] = &["x-user", "x-env", "Accept", "x-request-id"];
const HEADER_VALUES: &[&str] = &[
    "v1",
    "50% off",
    "%DOWNSTREAM_REMOTE_ADDRESS%",
    "a b c",
    "text/html",
    "100%",
];
const MODIFIED_HEADERS: &[&str] = &["x-a", "x-b", "Host", "x-forwarded-for", "X-Mixed-Case"];
const HOSTNAMES: &[&str] = &["a.test", "*.b.test", "c.test", "*.test"];
const PORTS: &[u16] = &[80, 8080, 53, 9090, 443];

/// The Services a configuration declares: `(namespace, name, TCP port numbers)`.
#[derive(Debug, Default)]
struct Declared {
    services: Vec<(String, String, Vec<u16>)>,
}

/// A configuration for `seed`: YAML documents, to add to a base that declares the Gateway
/// `shop/edge` (listener `http` on `gateway_port`) and Weir's GatewayClass.
pub fn configuration(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::new();
    let mut declared = Declared::default();
    for i in 0..1 + rng.below(4) {
        service(&mut rng, i, &mut out, &mut declared);
    }
    for i in 0..1 + rng.below(4) {
        http_route(&mut rng, i, &mut out, &declared);
    }
    for i in 0..rng.below(3) {
        traffic_policy(&mut rng, i, &mut out, &declared);
    }
    if rng.one_in(3) {
        let mode = rng.pick(&["Permissive", "Strict", "Disable"]);
        write!(
            out,
            "apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: mesh, namespace: shop}}\nspec: {{mtls: {{mode: {mode}}}}}\n---\n"
        )
        .ok();
    }
    out
}

fn service(rng: &mut Rng, i: usize, out: &mut String, declared: &mut Declared) {
    let ns = rng.pick(&["shop", "other"]);
    let name = format!("svc-{i}");
    let mut ports: Vec<(String, u16, &str)> = Vec::new();
    for p in 0..1 + rng.below(3) {
        let number = rng.pick(PORTS);
        if ports
            .iter()
            .any(|(_, n, proto)| *n == number && *proto == "TCP")
        {
            // The same number once more, over UDP (kube-dns's 53/UDP beside 53/TCP).
            ports.push((format!("p{p}-udp"), number, "UDP"));
        } else {
            let protocol = if rng.one_in(5) { "UDP" } else { "TCP" };
            ports.push((format!("p{p}"), number, protocol));
        }
    }
    write!(
        out,
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports:\n"
    )
    .ok();
    for (port_name, number, protocol) in &ports {
        writeln!(
            out,
            "  - {{name: {port_name}, port: {number}, protocol: {protocol}}}"
        )
        .ok();
    }
    out.push_str("---\n");
    for s in 0..rng.below(3) {
        let address_type = rng.pick(&["IPv4", "IPv4", "IPv6", "FQDN"]);
        let address = match address_type {
            "IPv4" => format!("127.0.0.{}", 2 + rng.below(200)),
            "IPv6" => "::1".to_string(),
            _ => format!("backend-{s}.example.invalid"),
        };
        let ready = if rng.one_in(4) { "false" } else { "true" };
        write!(
            out,
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{s}, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: {address_type}\nports:\n"
        )
        .ok();
        for (port_name, _, protocol) in &ports {
            let target = 1024 + rng.below(60000);
            writeln!(
                out,
                "- {{name: {port_name}, port: {target}, protocol: {protocol}}}"
            )
            .ok();
        }
        write!(
            out,
            "endpoints: [{{addresses: ['{address}'], conditions: {{ready: {ready}}}}}]\n---\n"
        )
        .ok();
    }
    let tcp = ports
        .iter()
        .filter(|(_, _, p)| *p == "TCP")
        .map(|(_, n, _)| *n)
        .collect();
    declared.services.push((ns.to_string(), name, tcp));
}

fn http_route(rng: &mut Rng, i: usize, out: &mut String, declared: &Declared) {
    let mesh_parent = !declared.services.is_empty() && rng.one_in(3);
    let (ns, parent) = if mesh_parent {
        let (ns, name, ports) = &declared.services[rng.below(declared.services.len())];
        let port = ports
            .first()
            .filter(|_| rng.one_in(2))
            .map(|p| format!(", port: {p}"))
            .unwrap_or_default();
        (
            ns.clone(),
            format!("{{group: \"\", kind: Service, name: {name}{port}}}"),
        )
    } else {
        let section = if rng.one_in(2) {
            ", sectionName: http"
        } else {
            ""
        };
        (
            "shop".to_string(),
            format!("{{name: edge, namespace: shop{section}}}"),
        )
    };
    write!(
        out,
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: route-{i}, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n"
    )
    .ok();
    if !mesh_parent && rng.one_in(2) {
        let mut names: Vec<&str> = (0..1 + rng.below(2)).map(|_| rng.pick(HOSTNAMES)).collect();
        names.sort_unstable();
        names.dedup();
        writeln!(out, "  hostnames: [{}]", quoted(&names)).ok();
    }
    out.push_str("  rules:\n");
    for _ in 0..1 + rng.below(3) {
        rule(rng, out, declared, &ns);
    }
    out.push_str("---\n");
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rule(rng: &mut Rng, out: &mut String, declared: &Declared, ns: &str) {
    out.push_str("  - matches:\n");
    let matches = rng.below(3);
    if matches == 0 {
        out.truncate(out.len() - "  - matches:\n".len());
        out.push_str("  - matches: []\n");
    }
    for _ in 0..matches {
        let (kind, value) = match rng.below(4) {
            0 => ("Exact", format!("/exact/{}", rng.below(10))),
            1 => ("PathPrefix", format!("/prefix/{}/", rng.below(10))),
            2 => ("PathPrefix", "/".to_string()),
            _ => ("RegularExpression", rng.pick(PATH_REGEXES).to_string()),
        };
        writeln!(out, "    - path: {{type: {kind}, value: '{value}'}}").ok();
        if rng.one_in(3) {
            let name = rng.pick(HEADER_NAMES);
            let (kind, value) = if rng.one_in(3) {
                (
                    "RegularExpression",
                    rng.pick(&["^v[0-9]+$", "(a|b", ".*"]).to_string(),
                )
            } else {
                ("Exact", rng.pick(&["v1", "prod", "text/html"]).to_string())
            };
            writeln!(
                out,
                "      headers: [{{name: {name}, type: {kind}, value: '{value}'}}]"
            )
            .ok();
        }
        if rng.one_in(4) {
            writeln!(out, "      queryParams: [{{name: debug, value: 'on'}}]").ok();
        }
        if rng.one_in(4) {
            writeln!(
                out,
                "      method: {}",
                rng.pick(&["GET", "POST", "DELETE"])
            )
            .ok();
        }
    }
    let mut filters = Vec::new();
    for _ in 0..rng.below(3) {
        match rng.below(4) {
            0 | 1 => {
                let which = if rng.one_in(2) {
                    ("RequestHeaderModifier", "requestHeaderModifier")
                } else {
                    ("ResponseHeaderModifier", "responseHeaderModifier")
                };
                if filters.iter().any(|f: &String| f.contains(which.0)) {
                    continue;
                }
                let name = rng.pick(MODIFIED_HEADERS);
                let value = rng.pick(HEADER_VALUES);
                let op = rng.pick(&["set", "add", "remove"]);
                let body = if op == "remove" {
                    format!("remove: ['{name}']")
                } else {
                    format!("{op}: [{{name: '{name}', value: '{value}'}}]")
                };
                filters.push(format!("{{type: {}, {}: {{{body}}}}}", which.0, which.1));
            }
            2 if !filters
                .iter()
                .any(|f| f.contains("Redirect") || f.contains("URLRewrite")) =>
            {
                filters.push(
                    "{type: URLRewrite, urlRewrite: {hostname: rewritten.test, path: {type: ReplaceFullPath, replaceFullPath: /full}}}"
                        .to_string(),
                );
            }
            3 if !filters
                .iter()
                .any(|f| f.contains("Redirect") || f.contains("URLRewrite")) =>
            {
                filters.push(format!(
                    "{{type: RequestRedirect, requestRedirect: {{scheme: https, hostname: secure.test, port: 8443, statusCode: {}}}}}",
                    rng.pick(&["301", "302"])
                ));
            }
            _ => {}
        }
    }
    if !filters.is_empty() {
        writeln!(out, "    filters: [{}]", filters.join(", ")).ok();
    }
    let redirect = filters.iter().any(|f| f.contains("Redirect"));
    if !redirect && !declared.services.is_empty() {
        let mut backends = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let (svc_ns, name, ports) = &declared.services[rng.below(declared.services.len())];
            // A port that may not exist: the route must still be served (500 for it).
            let port = ports
                .first()
                .copied()
                .filter(|_| !rng.one_in(5))
                .unwrap_or(7);
            let namespace = if svc_ns == ns {
                String::new()
            } else {
                format!(", namespace: {svc_ns}")
            };
            backends.push(format!(
                "{{name: {name}{namespace}, port: {port}, weight: {}}}",
                rng.below(4)
            ));
        }
        writeln!(out, "    backendRefs: [{}]", backends.join(", ")).ok();
    }
    if rng.one_in(4) {
        writeln!(
            out,
            "    timeouts: {{request: {}}}",
            rng.pick(&["1s", "500ms", "10s"])
        )
        .ok();
    }
}

fn traffic_policy(rng: &mut Rng, i: usize, out: &mut String, declared: &Declared) {
    let target = if !declared.services.is_empty() && rng.one_in(2) {
        let (ns, name, _) = &declared.services[rng.below(declared.services.len())];
        (
            ns.clone(),
            format!("{{group: \"\", kind: Service, name: {name}}}"),
        )
    } else if rng.one_in(2) {
        (
            "shop".to_string(),
            "{group: gateway.networking.k8s.io, kind: Gateway, name: edge}".to_string(),
        )
    } else {
        (
            "shop".to_string(),
            format!(
                "{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: route-{}}}",
                rng.below(3)
            ),
        )
    };
    let (ns, target) = target;
    write!(
        out,
        "apiVersion: weir.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: policy-{i}, namespace: {ns}}}\nspec:\n  targetRef: {target}\n"
    )
    .ok();
    let mut any = false;
    if rng.one_in(2) {
        writeln!(
            out,
            "  rateLimit: {{local: {{requests: {}, unit: {}}}}}",
            1 + rng.below(1000),
            rng.pick(&["Second", "Minute", "Hour"])
        )
        .ok();
        any = true;
    }
    if rng.one_in(2) {
        writeln!(
            out,
            "  retries: {{attempts: {}, perTryTimeout: {}}}",
            1 + rng.below(4),
            rng.pick(&["500ms", "1s"])
        )
        .ok();
        any = true;
    }
    if !any || rng.one_in(2) {
        writeln!(out, "  timeout: {}", rng.pick(&["2s", "30s", "1m"])).ok();
    }
    out.push_str("---\n");
}
