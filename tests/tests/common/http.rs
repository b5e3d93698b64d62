//! A small HTTP/1.1 client for the web tests: every header and byte of the request is the test's to choose
//! (a missing CSRF header, a broken body), and Server-Sent Events are read as they arrive.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let s = TcpStream::connect(addr).await.expect("connects");
    request_on(s, &addr.to_string(), method, path, headers, body).await
}

/// As [`request`], on a connection the caller opened (a TLS one, say).
pub async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("writes");
    s.write_all(body).await.expect("writes");
    s.flush().await.expect("flushes");
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await.expect("answer in time");
    // A TLS peer that closes without close_notify ends the stream this way; the answer is whole by then.
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "reads: {e}");
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Reply { status, headers, body: String::from_utf8_lossy(&body).to_string() }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// A signed-in browser: its session cookie and CSRF token.
#[derive(Debug, Clone)]
pub struct Browser {
    pub addr: SocketAddr,
    pub cookie: String,
    pub csrf: String,
    pub role: String,
}

impl Browser {
    /// Signs in with `token`; panics unless it succeeds.
    pub async fn sign_in(addr: SocketAddr, token: &str) -> Browser {
        let r = sign_in(addr, token).await;
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.header("set-cookie").expect("a session cookie");
        let cookie = set.split(';').next().expect("name=value").to_owned();
        let j = r.json();
        Browser {
            addr,
            cookie,
            csrf: j["csrf"].as_str().expect("csrf").to_owned(),
            role: j["role"].as_str().expect("role").to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[("Cookie", &self.cookie)], b"").await
    }

    /// A state-changing call with the session's CSRF token and a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Reply {
        let text = body.to_string();
        let h = [
            ("Cookie", self.cookie.as_str()),
            ("X-CSRF-Token", self.csrf.as_str()),
            ("Content-Type", "application/json"),
        ];
        request(self.addr, "POST", path, &h, text.as_bytes()).await
    }

    /// A POST without a body (ready, cancel, ...).
    pub async fn post_empty(&self, path: &str) -> Reply {
        request(self.addr, "POST", path, &[("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)], b"").await
    }

    pub async fn events(&self, path: &str) -> Events {
        Events::open(self.addr, path, &[("Cookie", &self.cookie)]).await
    }
}

pub async fn sign_in(addr: SocketAddr, token: &str) -> Reply {
    let body = serde_json::json!({ "token": token }).to_string();
    request(addr, "POST", "/api/session", &[("Content-Type", "application/json")], body.as_bytes()).await
}

/// A Server-Sent-Events stream, read event by event.
pub struct Events {
    stream: TcpStream,
    buf: String,
    pub status: u16,
}

impl Events {
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Events {
        let mut s = TcpStream::connect(addr).await.expect("connects");
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.expect("writes");
        let mut e = Events { stream: s, buf: String::new(), status: 0 };
        while !e.buf.contains("\r\n\r\n") {
            e.fill().await;
        }
        let split = e.buf.find("\r\n\r\n").expect("header block");
        e.status = e.buf.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
        e.buf = e.buf[split + 4..].to_owned();
        e
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(60), self.stream.read(&mut chunk))
            .await
            .expect("an event within a minute")
            .expect("reads");
        self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        n > 0
    }

    /// The next event as (name, JSON data); `None` when the stream ended. Chunk-size lines and keep-alive
    /// comments are skipped.
    pub async fn next(&mut self) -> Option<(String, serde_json::Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf[..end].to_owned();
                self.buf = self.buf[end + 2..].to_owned();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    let line = line.trim_end_matches('\r');
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some((
                    name,
                    serde_json::from_str(&data).unwrap_or_else(|e| panic!("event data ({e}): {data}")),
                ));
            }
            if !self.fill().await {
                return None;
            }
        }
    }
}
