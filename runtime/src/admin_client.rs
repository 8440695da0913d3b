//! A client for admin endpoints on loopback: Weir's own (`weir proxy-status`) and the
//! sidecars' Envoy admin (the mesh-TLS controller in local mode). reqwest, the HTTP
//! client the metrics adapter already uses for Prometheus, does the HTTP (chunked bodies,
//! keep-alive, timeouts); this module only fixes the timeouts and the answer's shape.

use std::{net::SocketAddr, time::Duration};

/// How long connecting may take: these endpoints are on this host or in this pod.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin endpoint could not be read.
#[derive(Debug, thiserror::Error)]
#[error("GET http://{addr}{path}: {source}")]
pub struct AdminError {
    addr: SocketAddr,
    path: String,
    #[source]
    source: reqwest::Error,
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

fn install_crypto() {
    // reqwest is built without a default TLS provider (the workspace picks ring once);
    // plain HTTP still builds a TLS config, so the provider must be there.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An async client for admin endpoints (one per caller, reused across requests).
#[derive(Clone, Debug)]
pub struct AdminClient(reqwest::Client);

impl AdminClient {
    /// A client with this module's timeouts.
    pub fn new() -> Result<Self, String> {
        install_crypto();
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map(AdminClient)
            .map_err(|e| format!("building the admin HTTP client: {e}"))
    }

    /// GET `path` from `addr`: the status code and the body.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<(u16, String), AdminError> {
        let error = |source| AdminError {
            addr,
            path: path.to_string(),
            source,
        };
        let response = self.0.get(url(addr, path)).send().await.map_err(error)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(error)?;
        Ok((status, body))
    }
}

/// GET `path` from `addr`, blocking: for commands that ask a running Weir once, and for
/// tests. reqwest's blocking client runs its own runtime, which must not start or stop on
/// an async runtime's thread, so the request runs on a thread of its own: this is safe to
/// call from anywhere.
pub fn get_blocking(addr: SocketAddr, path: &str) -> Result<(u16, String), AdminError> {
    let owned = path.to_string();
    std::thread::spawn(move || get_on_this_thread(addr, &owned))
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn get_on_this_thread(addr: SocketAddr, path: &str) -> Result<(u16, String), AdminError> {
    install_crypto();
    let error = |source| AdminError {
        addr,
        path: path.to_string(),
        source,
    };
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(error)?;
    let response = client.get(url(addr, path)).send().map_err(error)?;
    let status = response.status().as_u16();
    let body = response.text().map_err(error)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's admin answers `/stats` with a chunked body; the client must join it.
    #[test]
    fn reads_chunked_bodies_and_reports_the_url_on_failure() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
                .unwrap();
        });
        assert_eq!(
            get_blocking(addr, "/stats").unwrap(),
            (200, "hello, world".to_string())
        );
        server.join().unwrap();
        // Nothing listens there any more.
        let error = get_blocking(addr, "/ready").unwrap_err().to_string();
        assert!(error.contains(&format!("http://{addr}/ready")), "{error}");
    }

    /// Tests and tools call it from inside async code too.
    #[tokio::test]
    async fn works_from_an_async_context() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(get_blocking(addr, "/healthz").is_err());
    }
}
