//! Bearer tokens. A token is 32 random bytes, shown once; the store keeps only its SHA-256 hash. Identity comes
//! from the token alone, never from a request field.
//!
//! A presented token is hashed and the hash looked up; no secret is ever compared byte by byte, so a lookup's
//! timing can tell an attacker at most something about the SHA-256 of a guess, never about a stored token.
//! Operators revoke tokens; every revocation bumps an epoch that long-lived streams watch, so a revoked robot's
//! session ends at once instead of at its next reconnect.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;

use crate::Error;
use crate::limits::{CallLimiter, Limits};
use crate::store::{Principal, Store, TokenEntry};

pub fn hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The token table: hashes to principals, loaded from the store and written through to it.
#[derive(Clone)]
pub struct Auth {
    store: Arc<dyn Store>,
    // A std lock: held only for a map lookup or insert, never across an `.await`.
    tokens: Arc<RwLock<HashMap<String, Principal>>>,
    /// Bumped on every revocation; streams re-check their token when it changes.
    revocations: Arc<watch::Sender<u64>>,
    /// Every authenticated call takes a token from its caller's bucket.
    limiter: Arc<CallLimiter>,
    /// Tokens of robots handed over to another service area (hash -> (robot, area)), so that their callers are told
    /// where the robot went rather than that the token is unknown. In memory: after a restart such a token is
    /// simply unknown here, and the router finds the robot's area.
    moved: Arc<RwLock<HashMap<String, (String, String)>>>,
}

impl Auth {
    pub fn load(store: Arc<dyn Store>, limits: &Limits) -> Result<Self, Error> {
        let tokens = store.load_tokens()?.into_iter().map(|t| (t.hash_hex, t.principal)).collect();
        Ok(Self {
            store,
            tokens: Arc::new(RwLock::new(tokens)),
            revocations: Arc::new(watch::channel(0).0),
            limiter: Arc::new(CallLimiter::new(limits)),
            moved: Arc::default(),
        })
    }

    /// A robot was handed over to `area` (its tokens already moved in the store): they are refused here from now
    /// on with where the robot went, and its open session ends.
    pub fn moved_away(&self, robot: &fleet_core::RobotId, area: &str) {
        let principal = Principal::Robot(robot.clone());
        let hashes: Vec<String> = match self.tokens.write() {
            Ok(mut table) => {
                let hashes: Vec<String> =
                    table.iter().filter(|(_, p)| **p == principal).map(|(h, _)| h.clone()).collect();
                for h in &hashes {
                    table.remove(h);
                }
                hashes
            }
            Err(_) => return,
        };
        if let Ok(mut moved) = self.moved.write() {
            for h in hashes {
                moved.insert(h, (robot.to_string(), area.to_owned()));
            }
        }
        self.revocations.send_modify(|e| *e += 1);
    }

    /// Tokens that came with a robot handed over from another area (already in this area's store).
    pub fn arrived(&self, entries: Vec<TokenEntry>) {
        if let Ok(mut moved) = self.moved.write() {
            for e in &entries {
                moved.remove(&e.hash_hex);
            }
        }
        if let Ok(mut table) = self.tokens.write() {
            for e in entries {
                table.insert(e.hash_hex, e.principal);
            }
        }
    }

    /// The area the robot of the token with this hash was handed over to, if it was, as the error to answer.
    pub fn moved_to(&self, hash: &str) -> Option<Error> {
        let (robot, area) = self.moved.read().ok()?.get(hash).cloned()?;
        Some(Error::HandedOver { robot, area })
    }

    /// Revokes the token `token` if given, else every token of `principal`. Refuses to revoke the last
    /// operator token (nobody could administer the dispatcher then). Returns how many were revoked.
    pub fn revoke(&self, principal: &Principal, token: Option<&str>) -> Result<usize, Error> {
        // The check and the removal from the table happen under one write guard, so two revocations cannot
        // both pass the last-operator check; the guard is dropped before the store is written, so no call
        // waits on a disk flush to look up its token. Between the two, the revoked tokens are already refused
        // (the safe side); a failed write puts them back.
        let hashes: Vec<String> = {
            let mut table = self.tokens.write().map_err(|_| Error::Setup("token table lock poisoned".into()))?;
            let hashes: Vec<String> = match token {
                Some(t) => {
                    let h = hash_hex(t.trim());
                    if table.get(&h) != Some(principal) {
                        return Ok(0);
                    }
                    vec![h]
                }
                None => table.iter().filter(|(_, p)| *p == principal).map(|(h, _)| h.clone()).collect(),
            };
            if *principal == Principal::Operator
                && table.values().filter(|p| **p == Principal::Operator).count() <= hashes.len()
            {
                return Err(Error::Core(fleet_core::CoreError::precondition(
                    "that would revoke every operator token; issue another operator token first",
                )));
            }
            for h in &hashes {
                table.remove(h);
            }
            hashes
        };
        if let Err(e) = self.store.delete_tokens(&hashes) {
            let mut table = self.tokens.write().map_err(|_| Error::Setup("token table lock poisoned".into()))?;
            for h in &hashes {
                table.insert(h.clone(), principal.clone());
            }
            return Err(e);
        }
        self.revocations.send_modify(|e| *e += 1);
        Ok(hashes.len())
    }

    /// Changes on every revocation.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Whether the token with this hash is still valid.
    pub fn is_valid(&self, hash: &str) -> bool {
        self.tokens.read().map(|t| t.contains_key(hash)).unwrap_or(false)
    }

    /// The hash of the presented bearer token, for streams that re-check it later.
    pub fn token_hash(md: &MetadataMap) -> Option<String> {
        let s = md.get("authorization")?.to_str().ok()?;
        let token = s.strip_prefix("Bearer ").or_else(|| s.strip_prefix("bearer "))?;
        Some(hash_hex(token.trim()))
    }

    pub fn has_operator(&self) -> bool {
        self.tokens.read().map(|t| t.values().any(|p| *p == Principal::Operator)).unwrap_or(false)
    }

    /// Issues a new token for `principal`; it is durable before it is returned.
    pub fn issue(&self, principal: Principal) -> Result<String, Error> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = format!("trd_{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let entry = TokenEntry { hash_hex: hash_hex(&token), principal };
        self.store.put_token(&entry)?;
        self.tokens
            .write()
            .map_err(|_| Error::Setup("token table lock poisoned".into()))?
            .insert(entry.hash_hex, entry.principal);
        Ok(token)
    }

    /// Who is calling, from the `authorization` header.
    pub fn principal(&self, md: &MetadataMap) -> Result<Principal, Error> {
        let v = md.get("authorization").ok_or(Error::NoToken)?;
        let s = v.to_str().map_err(|_| Error::BadToken)?;
        let token = s.strip_prefix("Bearer ").or_else(|| s.strip_prefix("bearer ")).ok_or(Error::NoToken)?;
        if token.is_empty() || token.len() > 256 {
            return Err(Error::BadToken);
        }
        let h = hash_hex(token.trim());
        let p = self
            .tokens
            .read()
            .map_err(|_| Error::Setup("token table lock poisoned".into()))?
            .get(&h)
            .cloned()
            .ok_or(Error::BadToken)?;
        let caller = match &p {
            Principal::Shop(s) => format!("shop:{s}"),
            Principal::Robot(r) => format!("robot:{r}"),
            Principal::Operator => "operator".to_owned(),
        };
        if !self.limiter.allow(&caller) {
            return Err(Error::RateLimited(format!("{caller} is over its call rate; retry in a moment")));
        }
        Ok(p)
    }

    pub fn shop(&self, md: &MetadataMap) -> Result<fleet_core::ShopId, Error> {
        match self.principal(md)? {
            Principal::Shop(s) => Ok(s),
            _ => Err(Error::WrongRole("this call needs a shop token".into())),
        }
    }

    pub fn robot(&self, md: &MetadataMap) -> Result<fleet_core::RobotId, Error> {
        match self.principal(md) {
            Ok(Principal::Robot(r)) => Ok(r),
            Ok(_) => Err(Error::WrongRole("this call needs a robot token".into())),
            Err(Error::BadToken) => {
                Err(Self::token_hash(md).and_then(|h| self.moved_to(&h)).unwrap_or(Error::BadToken))
            }
            Err(e) => Err(e),
        }
    }

    pub fn operator(&self, md: &MetadataMap) -> Result<(), Error> {
        match self.principal(md)? {
            Principal::Operator => Ok(()),
            _ => Err(Error::WrongRole("this call needs an operator token".into())),
        }
    }
}
