//! The HTTP clients the tests use, in one place: admin endpoints (Weir's and Envoy's)
//! through the same client `weir proxy-status` uses ([`http_get`]); hand-written HTTP/1.1
//! where a test needs exact control of what goes on the wire ([`request`]: any Host and
//! headers, a new connection each time; [`KeepAlive`]: one connection reused, to see
//! whether a proxy keeps it or closes it).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
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
///
/// The response is read as its head frames it (`Content-Length`, chunked, or up to the
/// close when it has neither), not up to the close: after a local reply Envoy waits for
/// the client to close first, up to its `delayed_close_timeout` (1 s), so reading to the
/// end cost a second per request that a proxy answered itself (404 before a route
/// arrives).
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
    read_response(&mut BufReader::new(stream), method)
}

/// One response from `reader`, read as its head frames it.
fn read_response(reader: &mut impl BufRead, method: &str) -> std::io::Result<HttpResponse> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {status_line:?}")))?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let body = if method == "HEAD" || status == 204 || status == 304 || status / 100 == 1 {
        Vec::new()
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader)?
    } else if let Some(length) = headers.get("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| std::io::Error::other(format!("bad content-length {length:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A chunked body (RFC 9112 section 7.1), trailers skipped.
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size = size_line.trim_end().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line that ends the message.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
    }
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
        read_response(&mut self.reader, "GET").map(|response| response.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: &str) -> HttpResponse {
        read_response(&mut std::io::Cursor::new(raw.as_bytes()), method)
            .unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn a_body_is_read_as_the_head_frames_it() {
        // Content-Length: what follows the body is left unread (the next response).
        let r = parse(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-A: b\r\n\r\nnoHTTP/1.1 200 OK\r\n",
            "GET",
        );
        assert_eq!((r.status, r.body.as_str()), (404, "no"));
        assert_eq!(r.headers["x-a"], "b");
        // Chunked, with an extension and a trailer.
        let r = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\na\r\n0123456789\r\n0\r\nT: v\r\n\r\nnext",
            "GET",
        );
        assert_eq!(r.body, "abc0123456789");
        // Neither: up to the close.
        assert_eq!(
            parse("HTTP/1.0 200 OK\r\n\r\nall of it", "GET").body,
            "all of it"
        );
        // No body after HEAD or 204, whatever the length says.
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD").body,
            ""
        );
        assert_eq!(parse("HTTP/1.1 204 No Content\r\n\r\n", "GET").body, "");
    }

    #[test]
    fn a_broken_response_is_an_error() {
        let mut cut =
            std::io::Cursor::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..]);
        assert!(read_response(&mut cut, "GET").is_err());
        let mut garbage = std::io::Cursor::new(&b"hello\r\n\r\n"[..]);
        assert!(read_response(&mut garbage, "GET").is_err());
        let mut closed = std::io::Cursor::new(&b"HTTP/1.1 200 OK\r\nX: y\r\n"[..]);
        assert!(read_response(&mut closed, "GET").is_err());
    }
}
