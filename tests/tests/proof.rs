//! Identities that must be proven, end to end with real Envoys: a proxy gets configuration
//! and a certificate only for the pod its token (or certificate) proves; impostors, callers
//! without proof and forged tokens are refused, shown by `weir proxy-status` and counted,
//! while the legitimate proxy keeps working; and no private key ever crosses an ADS stream.

#![allow(clippy::unwrap_used)]

use std::{fs, net::SocketAddr, path::Path, time::Duration};

use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use k8s_openapi::jiff::Timestamp;
use weir_tests::{
    WeirUp,
    envoy::{Backend, Envoy, Proof, agent_command},
    eventually, free_port,
    http::KeepAlive,
};
use weir_xds::{
    ca::{self, SpiffeId},
    certify::{CERTIFY_PATH, CertifyRequest, CertifyResponse},
    envoy::{CLUSTER_TYPE, LISTENER_TYPE, SECRET_TYPE},
    proof::AUDIENCE,
    tokens::{LocalTokens, TokenSubject},
};

/// Two meshed pods with their own ServiceAccounts: `web-0` (shop, `web`) calls `pay-0`
/// (payments, `pay`), which is Strict.
fn manifests(pay_inbound: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: shop, labels: {{app: web, weir.io/sidecar: 'true'}}}}\nspec: {{serviceAccountName: web, containers: [{{name: web, image: web}}]}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: pay-0, namespace: payments, labels: {{app: pay, weir.io/sidecar: 'true'}}}}\nspec: {{serviceAccountName: pay, containers: [{{name: pay, image: pay}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: pay, namespace: payments}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: pay, namespace: payments, labels: {{kubernetes.io/service-name: pay}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {pay_inbound}}}]\nendpoints: [{{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: pay-0, namespace: payments}}}}]\n---\n\
         apiVersion: weir.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: default, namespace: payments}}\nspec: {{mtls: {{mode: Strict}}}}\n"
    )
}

fn sidecar_args<'a>(name: &'a str, namespace: &'a str, ports: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![
        "--role",
        "sidecar",
        "--name",
        name,
        "--namespace",
        namespace,
    ];
    args.extend(ports.iter().map(String::as_str));
    args
}

/// The SPIFFE ids of the certificates an Envoy holds (its admin's `/certs`).
fn held_identities(envoy: &Envoy) -> Vec<String> {
    let certs: serde_json::Value = serde_json::from_str(&envoy.admin_get("/certs")).unwrap();
    let mut ids: Vec<String> = certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten())
        .flat_map(|c| c["subject_alt_names"].as_array().into_iter().flatten())
        .filter_map(|san| san["uri"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn proxy_status(weir: &WeirUp) -> String {
    let out = weir_tests::weir()
        .args(["proxy-status", "--admin-addr", &weir.admin.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first line of `proxy-status` listing a refusal of `claimed` for `reason`.
fn refusal_line(status: &str, claimed: &str, reason: &str) -> Option<String> {
    status
        .lines()
        .skip_while(|l| !l.starts_with("REFUSED"))
        .find(|l| l.contains(claimed) && l.contains(reason))
        .map(String::from)
}

#[test]
fn a_proxy_gets_nothing_for_a_pod_it_cannot_prove_and_the_real_one_keeps_working() {
    let app = Backend::start("pay");
    let pay_inbound = free_port();
    let outbound = free_port();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("mesh.yaml"), manifests(pay_inbound)).unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let pay_ports = [
        format!("--inbound-port={pay_inbound}"),
        format!("--outbound-port={}", free_port()),
        format!("--app-port={}", app.port),
    ];
    let web_ports = [
        format!("--outbound-port={outbound}"),
        format!("--inbound-port={}", free_port()),
    ];
    let pay = Envoy::start(&weir, &sidecar_args("pay-0", "payments", &pay_ports));
    let web = Envoy::start(&weir, &sidecar_args("web-0", "shop", &web_ports));
    let outbound: SocketAddr = ([127, 0, 0, 1], outbound).into();
    let mut caller = None;
    let routed = eventually(Duration::from_secs(30), || {
        let mut connection = KeepAlive::connect(outbound).ok()?;
        (connection.get("pay.payments").ok()? == 200).then(|| caller = Some(connection))
    });
    assert!(
        routed.is_some(),
        "web-0 never reached pay-0 over mTLS; pay:\n{}\nweb:\n{}",
        pay.log(),
        web.log()
    );
    let mut caller = caller.unwrap();
    assert_eq!(
        held_identities(&pay),
        ["spiffe://cluster.local/ns/payments/sa/pay"]
    );

    // 1. An Envoy that claims pay-0 with web-0's token: its agent is certified as web (the
    //    token's identity, not the claim), and its ADS stream is refused.
    let impostor_ports = [
        format!("--inbound-port={}", free_port()),
        format!("--outbound-port={}", free_port()),
    ];
    let impostor = Envoy::start_with(
        &weir,
        &sidecar_args("pay-0", "payments", &impostor_ports),
        Proof::Token(weir.token_file("sidecar~web-0.shop")),
        |b| b,
    );
    let refused = eventually(Duration::from_secs(20), || {
        refusal_line(
            &proxy_status(&weir),
            "sidecar~pay-0.payments",
            "other_namespace",
        )
    });
    assert!(
        refused.is_some(),
        "the impostor's stream was not refused: {}\n{}",
        proxy_status(&weir),
        impostor.log()
    );
    assert!(
        !held_identities(&impostor)
            .iter()
            .any(|id| id.ends_with("/sa/pay")),
        "the impostor holds pay's certificate: {:?}",
        held_identities(&impostor)
    );
    let dump = impostor.admin_get("/config_dump");
    assert!(
        !dump.contains("\"inbound\"") && !dump.contains("pay.payments"),
        "the impostor was sent configuration"
    );

    // 2. The same agent naming the pod it claims is refused its certificate outright.
    let agent_refused = agent_once(
        &weir,
        &weir.token_file("sidecar~web-0.shop"),
        Some("sidecar~pay-0.payments"),
    );
    assert!(
        agent_refused.contains(
            "PermissionDenied: claims sidecar~pay-0.payments but proved ServiceAccount shop/web (pod web-0)"
        ),
        "{agent_refused}"
    );

    // 3. A forged token (signed by no one this control plane knows) is refused.
    let stranger = LocalTokens::generate().unwrap();
    let forged = dir.path().join("forged.token");
    let token = stranger
        .mint(
            &TokenSubject {
                namespace: "payments".into(),
                service_account: "pay".into(),
                pod: Some(("pay-0".into(), String::new())),
            },
            AUDIENCE,
            Duration::from_secs(600),
            Timestamp::now(),
        )
        .unwrap();
    fs::write(&forged, token).unwrap();
    let forged_out = agent_once(&weir, &forged, None);
    assert!(
        forged_out.contains("not signed by this control plane"),
        "{forged_out}"
    );
    let status = proxy_status(&weir);
    assert!(
        refusal_line(&status, "-", "invalid_proof").is_some(),
        "{status}"
    );

    // The impostor serves nothing: a request through its outbound port fails, while the
    // real caller's kept-alive connection and a fresh one still reach pay-0.
    let impostor_outbound: SocketAddr = (
        [127, 0, 0, 1],
        impostor_ports[1]
            .trim_start_matches("--outbound-port=")
            .parse::<u16>()
            .unwrap(),
    )
        .into();
    assert!(
        KeepAlive::connect(impostor_outbound)
            .and_then(|mut c| c.get("pay.payments"))
            .is_err(),
        "the impostor routed a request"
    );
    assert_eq!(caller.get("pay.payments").unwrap(), 200);
    assert_eq!(
        KeepAlive::connect(outbound)
            .unwrap()
            .get("pay.payments")
            .unwrap(),
        200
    );
    let metrics = weir.metrics();
    assert!(
        weir_tests::metric_value(
            &metrics,
            "weir_identity_refusals_total{request=\"ads\",reason=\"other_namespace\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        weir.log()
            .matches("refused: claims sidecar~pay-0.payments")
            .count()
            <= 2,
        "a refusal repeated by a retrying proxy is logged once"
    );
}

/// Runs `weir agent` until its first certificate request is answered; its log.
fn agent_once(weir: &WeirUp, token: &Path, proxy: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = agent_command(weir, token, &dir.path().join("a.sock"));
    if let Some(proxy) = proxy {
        command.args(["--proxy", proxy]);
    }
    let log = dir.path().join("agent.log");
    let mut child = command
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let answered = eventually(Duration::from_secs(10), || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        (text.contains("cannot obtain") || text.contains("obtained")).then_some(text)
    });
    let _ = child.kill();
    let _ = child.wait();
    answered.unwrap_or_else(|| fs::read_to_string(&log).unwrap_or_default())
}

/// A TLS channel to the xds-server trusting the mesh's root, presenting `identity`.
async fn channel(weir: &WeirUp, identity: Option<(String, String)>) -> tonic::transport::Channel {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            fs::read_to_string(weir.ca_root()).unwrap(),
        ))
        .domain_name("127.0.0.1");
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    tonic::transport::Endpoint::from_shared(format!("https://{}", weir.xds))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Opens an ADS stream as `node` asking for every type, and collects the raw bytes of
/// what comes back within `wait` (or the status it ends with).
async fn ads_bytes(
    channel: tonic::transport::Channel,
    node: &str,
    wait: Duration,
) -> Result<Vec<Vec<u8>>, tonic::Status> {
    use prost::Message;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let node = Node {
        id: node.into(),
        ..Default::default()
    };
    for (i, type_url) in [CLUSTER_TYPE, LISTENER_TYPE, SECRET_TYPE]
        .iter()
        .enumerate()
    {
        tx.send(DiscoveryRequest {
            node: (i == 0).then(|| node.clone()),
            type_url: (*type_url).into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => break,
            Ok(Ok(Some(response))) => seen.push(response.encode_to_vec()),
            Ok(Ok(None)) => break,
            Ok(Err(status)) => return Err(status),
        }
    }
    drop(tx);
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_private_key_crosses_ads_and_callers_without_proof_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("mesh.yaml"), manifests(free_port())).unwrap();
    let weir = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || WeirUp::start(&path, &[])
    })
    .await
    .unwrap();

    // A stream with web's certificate, as web-0: configuration, and not one key.
    let authority = ca::load_or_create(&weir.ca_dir, "cluster.local", Timestamp::now()).unwrap();
    let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/web".parse().unwrap();
    let cert = authority
        .issue(&id, Duration::from_secs(600), Timestamp::now())
        .unwrap();
    let web = channel(&weir, Some((cert.chain_pem.clone(), cert.key_pem.clone()))).await;
    let responses = ads_bytes(web, "sidecar~web-0.shop", Duration::from_secs(2))
        .await
        .expect("web-0's stream is served");
    assert!(responses.len() >= 2, "clusters and listeners were sent");
    for bytes in &responses {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("PRIVATE KEY"),
            "a private key was sent over ADS"
        );
        assert!(
            !text.contains(SECRET_TYPE) || !text.contains("BEGIN"),
            "a secret was sent over ADS"
        );
    }
    // The listeners take the workload certificate from the pod's agent.
    assert!(
        responses
            .iter()
            .any(|b| String::from_utf8_lossy(b).contains("weir-agent"))
    );

    // Without a client certificate: PermissionDenied, and nothing sent.
    let anonymous = channel(&weir, None).await;
    let status = ads_bytes(
        anonymous.clone(),
        "sidecar~web-0.shop",
        Duration::from_secs(5),
    )
    .await
    .expect_err("served without proof");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A certificate request without a token: PermissionDenied.
    let mut grpc = tonic::client::Grpc::new(anonymous);
    grpc.ready().await.unwrap();
    let (_, csr) = ca::key_and_request().unwrap();
    let refused = grpc
        .unary::<_, CertifyResponse, _>(
            tonic::Request::new(CertifyRequest {
                csr,
                proxy: String::new(),
            }),
            http::uri::PathAndQuery::from_static(CERTIFY_PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("certified without a token");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let weir = std::sync::Arc::new(weir);
    let status = tokio::task::spawn_blocking({
        let weir = weir.clone();
        move || proxy_status(&weir)
    })
    .await
    .unwrap();
    assert!(
        refusal_line(&status, "sidecar~web-0.shop", "no_proof").is_some(),
        "{status}"
    );
    assert!(refusal_line(&status, "-", "no_proof").is_some(), "{status}");
    let _ = weir;
}

#[test]
fn the_agent_socket_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("mesh.yaml"), manifests(free_port())).unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let run = tempfile::tempdir().unwrap();
    let socket = run.path().join("agent.sock");
    let mut agent = agent_command(&weir, &weir.token_file("sidecar~web-0.shop"), &socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mode = eventually(Duration::from_secs(10), || {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(&socket)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(mode, Some(0o600));
    // The key is held in memory only: nothing else was written next to the socket.
    let files: Vec<_> = fs::read_dir(run.path()).unwrap().flatten().collect();
    assert!(files.len() <= 1, "{files:?}");
}

#[test]
fn the_agent_stops_on_sigterm_even_when_its_log_pipe_is_closed() {
    // `weir agent ... 2>&1 | head`: once the reader is gone every log line fails to write;
    // SIGTERM must still stop it (a failed write used to panic the task that logged,
    // the signal handler included).
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("mesh.yaml"), manifests(free_port())).unwrap();
    let weir = WeirUp::start(dir.path(), &[]);
    let run = tempfile::tempdir().unwrap();
    // Refused over and over: it keeps logging.
    let mut agent = agent_command(
        &weir,
        &weir.token_file("sidecar~web-0.shop"),
        &run.path().join("agent.sock"),
    )
    .args(["--proxy", "sidecar~pay-0.payments"])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = std::io::BufReader::new(agent.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    drop(stderr);
    // Its next retries log into the closed pipe.
    std::thread::sleep(Duration::from_secs(4));
    let pid = rustix::process::Pid::from_child(&agent);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let exited = eventually(Duration::from_secs(10), || agent.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    assert!(
        exited.is_some(),
        "the agent ignored SIGTERM after its log pipe closed"
    );
}
