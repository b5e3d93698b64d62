//! Browser sessions. A shop or an operator signs in once with their bearer token and gets a session cookie
//! (HttpOnly, SameSite=Strict, Secure under TLS); every state-changing call must also carry the session's CSRF
//! token in `X-CSRF-Token`. The table lives in memory: a restart signs everyone out, which is the safe side.
//!
//! A session keeps the bearer token it was opened with, and each web call presents that token to the same gRPC
//! service code a direct client reaches: scoping, validation and rate limits stay in one place, and revoking
//! the token ends the session at its next call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use rand::RngCore;

use crate::auth::hash_hex;
use crate::store::Principal;

/// The cookie's name.
pub const COOKIE: &str = "trundle_session";
/// A session ends after this long without a call.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once; beyond, sign-in is refused until some expire.
pub const MAX_SESSIONS: usize = 10_000;

#[derive(Clone)]
pub struct Session {
    /// The bearer token the session was opened with (memory only).
    pub token: String,
    pub principal: Principal,
    pub csrf: String,
    last_used: Instant,
}

/// Sessions by the SHA-256 of their cookie value (a lookup never compares the secret itself).
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Sessions {
    /// Opens a session; returns its cookie value and CSRF token, or `None` when the table is full.
    pub fn open(&self, token: String, principal: Principal) -> Option<(String, String)> {
        let id = random_hex(32);
        let csrf = random_hex(32);
        let mut t = self.table.lock().ok()?;
        if t.len() >= MAX_SESSIONS {
            t.retain(|_, s| s.last_used.elapsed() < IDLE);
            if t.len() >= MAX_SESSIONS {
                return None;
            }
        }
        t.insert(hash_hex(&id), Session { token, principal, csrf: csrf.clone(), last_used: Instant::now() });
        Some((id, csrf))
    }

    /// The live session the request's cookie names, refreshed.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        if id.len() != 64 {
            return None;
        }
        let key = hash_hex(id);
        let mut t = self.table.lock().ok()?;
        match t.get_mut(&key) {
            Some(s) if s.last_used.elapsed() < IDLE => {
                s.last_used = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                t.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session the request's cookie names.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE)
            && let Ok(mut t) = self.table.lock()
        {
            t.remove(&hash_hex(id));
        }
    }

    /// Ends every session opened with a token of this hash (its token was revoked).
    pub fn close_token(&self, token_hash: &str) {
        if let Ok(mut t) = self.table.lock() {
            t.retain(|_, s| hash_hex(&s.token) != token_hash);
        }
    }

    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `given` is the session's CSRF token; compares hashes, so the time taken tells nothing of the token.
pub fn csrf_matches(session: &Session, given: Option<&str>) -> bool {
    given.is_some_and(|g| hash_hex(g) == hash_hex(&session.csrf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, format!("other=1; {COOKIE}={v}; x=y").parse().expect("header"));
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_on_close() {
        let s = Sessions::default();
        let (id, csrf) = s.open("trd_x".into(), Principal::Operator).expect("room");
        let got = s.get(&with_cookie(&id)).expect("found");
        assert_eq!(got.principal, Principal::Operator);
        assert!(csrf_matches(&got, Some(&csrf)));
        assert!(!csrf_matches(&got, Some("nope")));
        assert!(!csrf_matches(&got, None));
        assert!(s.get(&with_cookie(&random_hex(32))).is_none(), "an unknown id finds nothing");
        assert!(s.get(&with_cookie("short")).is_none());
        s.close(&with_cookie(&id));
        assert!(s.get(&with_cookie(&id)).is_none());
    }

    #[test]
    fn revoking_a_token_ends_its_sessions_only() {
        let s = Sessions::default();
        let (a, _) = s.open("trd_a".into(), Principal::Operator).expect("room");
        let (b, _) = s.open("trd_b".into(), Principal::Operator).expect("room");
        s.close_token(&hash_hex("trd_a"));
        assert!(s.get(&with_cookie(&a)).is_none());
        assert!(s.get(&with_cookie(&b)).is_some());
    }
}
