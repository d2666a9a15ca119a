//! The one hand-written HTTP/1.1 client of the tests (and the file bench):
//! [`request`] for a well-formed request and a parsed, de-chunked [`Answer`];
//! [`raw`] for bytes a real client would never send, and whatever comes back.
//! Each request is alone on its connection (`Connection: close`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// One HTTP answer: status, head (status line and headers), body (de-chunked).
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// Parse the answer to a `method` request, as read to the end of the
    /// connection. The answer to a HEAD has no body, whatever its framing
    /// headers say.
    pub fn parse_for(method: &str, raw: &[u8]) -> Answer {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let rest = &raw[split + 4..];
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head}"));
        let bodiless = method == "HEAD" || status == 204 || status == 304;
        let chunked = !bodiless
            && head.lines().any(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with("transfer-encoding:") && l.contains("chunked")
            });
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        Answer { status, head, body }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.text()))
    }

    /// The `{"message": …}` of an error answer.
    #[track_caller]
    pub fn message(&self) -> String {
        let v = self.json();
        v.get("message")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("error answer {} has no message: {v}", self.status))
            .to_string()
    }
}

/// A chunked body's payload (chunk extensions ignored); panics on a
/// malformed or cut-off body rather than return part of it.
pub fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|e| panic!("chunk size {size_text:?}: {e}"));
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        assert!(rest.len() >= size, "a chunk of {size} bytes is cut off");
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// A request to build: `request("GET", "/_ping").send(socket)`.
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

pub fn request(method: &str, target: &str) -> Request {
    Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
        body: None,
        timeout: Duration::from_secs(60),
    }
}

impl Request {
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A body, sent with its Content-Length.
    pub fn body(mut self, body: &[u8]) -> Request {
        self.body = Some(body.to_vec());
        self
    }

    /// How long to wait for the answer (default 60 s).
    pub fn timeout(mut self, limit: Duration) -> Request {
        self.timeout = limit;
        self
    }

    /// The request's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: portcullis\r\nConnection: close\r\n",
            self.method, self.target
        );
        if let Some(body) = &self.body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_deref().unwrap_or_default());
        bytes
    }

    /// Over a unix socket.
    #[track_caller]
    pub fn send(&self, socket: &Path) -> Answer {
        let s = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        s.set_read_timeout(Some(self.timeout))
            .expect("read timeout");
        Answer::parse_for(&self.method, &exchange(s, &self.bytes()))
    }

    /// Over TCP to `addr` (host:port).
    #[track_caller]
    pub fn send_tcp(&self, addr: &str) -> Answer {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(self.timeout))
            .expect("read timeout");
        Answer::parse_for(&self.method, &exchange(s, &self.bytes()))
    }
}

/// Send `request` as it is; whatever comes back before the server closes
/// (or `limit` passes), as text. Write and read errors are part of the
/// answer here (a server may close on bad input), so they are not raised.
pub fn raw(socket: &Path, request: &[u8], limit: Duration) -> String {
    let s =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(limit)).expect("read timeout");
    String::from_utf8_lossy(&exchange(s, request)).into_owned()
}

fn exchange(mut s: impl Read + Write, request: &[u8]) -> Vec<u8> {
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}
