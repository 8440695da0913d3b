//! The HTTP clients the tests use, in one place: admin endpoints (Weir's and Envoy's)
//! through the same client `weir proxy-status` uses ([`http_get`]); hand-written HTTP/1.1
//! where a test needs exact control of what goes on the wire ([`request`]: any Host and
//! headers, a new connection each time; [`KeepAlive`]: one connection reused, to see
//! whether a proxy keeps it or closes it).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// A plain HTTP GET against an admin endpoint (Weir's or Envoy's); returns status and
/// body. The same client `weir proxy-status` uses.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    weir_runtime::admin_client::get_blocking(addr, path).map_err(std::io::Error::other)
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: String,
}

impl HttpResponse {
    /// The backend that answered (echo backends put their name in the body).
    pub fn backend(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        value["backend"].as_str().map(String::from)
    }

    /// What the backend saw (path or a request header), from the echo body.
    pub fn echoed(&self, field: &str) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        let found = if field == "path" {
            &value["path"]
        } else {
            &value["headers"][field]
        };
        found.as_str().map(String::from)
    }
}

/// One HTTP/1.1 request on a new connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {raw:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// One keep-alive connection through the caller's sidecar.
#[derive(Debug)]
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(KeepAlive {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// One request; the status, or an error if the connection broke.
    pub fn get(&mut self, host: &str) -> std::io::Result<u16> {
        write!(self.writer, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}
