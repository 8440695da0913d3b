//! The metrics adapter's serving certificate is reloaded when its files change (as a
//! mounted Secret is rewritten by cert-manager): a new TLS connection sees the new
//! certificate, with no restart, and requests keep succeeding.

#![allow(clippy::unwrap_used)] // helpers panic on broken fixtures by design

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use weir_tests::{WeirUp, eventually, free_port, prometheus::Prometheus};

#[test]
fn the_serving_certificate_is_reloaded_when_its_files_change() {
    let prometheus = Prometheus::start("# EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let certs = dir.path().join("certs");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let weir = WeirUp::start(
        &config,
        &[
            "--prometheus-url",
            &prometheus.url(),
            "--metrics-adapter-addr",
            &addr.to_string(),
            "--cert-dir",
            certs.to_str().unwrap(),
        ],
    );
    let get = |path: &str, ca: &Path| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(ca)
            .arg(format!("https://{addr}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let old = dir.path().join("old.crt");
    let up = eventually(Duration::from_secs(20), || {
        std::fs::copy(certs.join("apiserver.crt"), &old).ok()?;
        (get("/readyz", &old) == "200").then_some(())
    });
    assert!(up.is_some(), "adapter not serving:\n{}", weir.log());

    // A new key pair, each file written whole and renamed into place, key first.
    let next =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let new_ca = dir.path().join("new.crt");
    std::fs::write(&new_ca, next.cert.pem()).unwrap();
    let staged = |name: &str, text: String| {
        let tmp = certs.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, certs.join(name)).unwrap();
    };
    staged("apiserver.key", next.signing_key.serialize_pem());
    staged("apiserver.crt", next.cert.pem());

    let switched = eventually(Duration::from_secs(20), || {
        (get("/readyz", &new_ca) == "200").then_some(())
    });
    assert!(
        switched.is_some(),
        "the new certificate was never served:\n{}",
        weir.log()
    );
    // Only the new one now: the old certificate no longer verifies the server.
    assert_ne!(get("/readyz", &old), "200");
    // And the APIs still answer, on the same process.
    assert_eq!(get("/apis/custom.metrics.k8s.io/v1beta1", &new_ca), "200");
}
