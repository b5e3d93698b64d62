//! Operators' dashboards during `trundle-bench load --dashboards N`: N browsers' worth of live streams, each
//! signed in with the operator token over HTTP and reading `/api/ops/events` (the fleet, about once a second)
//! until told to stop. Each reports how many fleet events it got over how long, and their size.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one dashboard saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub events: u64,
    pub bytes: u64,
    /// From the first event to the last.
    pub span_s: f64,
    /// The longest wait between two events.
    pub max_gap_s: f64,
}

impl Seen {
    pub fn rate_hz(&self) -> f64 {
        if self.events < 2 { 0.0 } else { (self.events - 1) as f64 / self.span_s.max(1e-9) }
    }
}

async fn sign_in(addr: SocketAddr, token: &str) -> Result<String, String> {
    let body = serde_json::json!({ "token": token }).to_string();
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!(
        "POST /api/session HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| format!("sign-in refused: {}", text.lines().next().unwrap_or_default()))
}

/// One dashboard: signs in, reads fleet events until `stop` turns true.
pub async fn watch(
    addr: SocketAddr,
    token: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Seen, String> {
    let cookie = sign_in(addr, &token).await?;
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!(
        "GET /api/ops/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut seen = Seen::default();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut buf = vec![0u8; 256 * 1024];
    let mut tail = String::new();
    loop {
        let n = tokio::select! {
            r = s.read(&mut buf) => r.map_err(|e| e.to_string())?,
            _ = stop.changed() => break,
        };
        if n == 0 {
            return Err("the stream ended".into());
        }
        seen.bytes += n as u64;
        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(i) = tail.find("event: fleet\n") {
            let now = Instant::now();
            seen.events += 1;
            if let Some(l) = last {
                seen.max_gap_s = seen.max_gap_s.max(now.duration_since(l).as_secs_f64());
            }
            first.get_or_insert(now);
            last = Some(now);
            tail.drain(..i + 13);
        }
        // Keep only what may hold the start of the next event name.
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    seen.span_s = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
    Ok(seen)
}
