//! Persistence. The [`Store`] trait is what the dispatcher needs; [`SledStore`] is the embedded default.
//! Every write is one atomic batch followed by a flush to disk: when `write` returns Ok, the records survive a
//! crash. Values are JSON of the domain records, so they stay readable and evolve with serde defaults.

use std::path::Path;

use fleet_core::dispatcher::Record;
use fleet_core::host::RecordKey;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    Shop(fleet_core::ShopId),
    Robot(fleet_core::RobotId),
    Operator,
}

/// A stored token: only its SHA-256 hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub hash_hex: String,
    pub principal: Principal,
}

pub trait Store: Send + Sync + 'static {
    /// Every record, for recovery.
    fn load(&self) -> Result<Vec<Record>, Error>;
    /// Writes the records atomically and durably, each under its key (a later record of a key replaces it).
    fn write(&self, records: &[(RecordKey, Record)]) -> Result<(), Error>;
    fn load_tokens(&self) -> Result<Vec<TokenEntry>, Error>;
    /// Stores a token durably.
    fn put_token(&self, t: &TokenEntry) -> Result<(), Error>;
    /// Deletes tokens by hash, durably.
    fn delete_tokens(&self, hashes: &[String]) -> Result<(), Error>;
}

/// The sled store: tree `records` (keys `o/<order>`, `r/<robot>`, `s/<shop>`, `meta`) and tree `tokens`.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    records: sled::Tree,
    tokens: sled::Tree,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// How long [`SledStore::open`] waits for a store that is being closed to let go of its lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// sled 0.34 releases its file lock from its flusher thread some moments after the last handle is dropped, so
/// reopening at once can fail (sled issue 1234). sled reports it as an `Other` I/O error; only the message says.
fn is_lock_contention(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

impl SledStore {
    /// Opens (or creates) the store under `dir`. A store still held by a closing handle is waited for up to
    /// two seconds; one held longer (another running dispatcher) is refused with a message that says so.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let config = sled::Config::new().path(dir.join("db"));
        let started = std::time::Instant::now();
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_lock_contention(&e) && started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) if is_lock_contention(&e) => {
                    return Err(Error::Store(format!(
                        "the store in {} is in use by another process (is a dispatcher already running on it?): {e}",
                        dir.display()
                    )));
                }
                Err(e) => return Err(store_err(e)),
            }
        };
        let records = db.open_tree("records").map_err(store_err)?;
        let tokens = db.open_tree("tokens").map_err(store_err)?;
        Ok(Self { db, records, tokens })
    }
}

impl Store for SledStore {
    fn load(&self) -> Result<Vec<Record>, Error> {
        let mut out = Vec::new();
        for kv in self.records.iter() {
            let (k, v) = kv.map_err(store_err)?;
            let r: Record = serde_json::from_slice(&v)
                .map_err(|e| Error::Store(format!("record {} is unreadable: {e}", String::from_utf8_lossy(&k))))?;
            out.push(r);
        }
        Ok(out)
    }

    fn write(&self, records: &[(RecordKey, Record)]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (k, r) in records {
            batch.insert(k.storage_key().as_bytes(), serde_json::to_vec(r).map_err(store_err)?);
        }
        self.records.apply_batch(batch).map_err(store_err)?;
        self.db.flush().map_err(store_err)?;
        Ok(())
    }

    fn load_tokens(&self) -> Result<Vec<TokenEntry>, Error> {
        let mut out = Vec::new();
        for kv in self.tokens.iter() {
            let (_, v) = kv.map_err(store_err)?;
            out.push(serde_json::from_slice(&v).map_err(store_err)?);
        }
        Ok(out)
    }

    fn put_token(&self, t: &TokenEntry) -> Result<(), Error> {
        self.tokens.insert(t.hash_hex.as_bytes(), serde_json::to_vec(t).map_err(store_err)?).map_err(store_err)?;
        self.db.flush().map_err(store_err)?;
        Ok(())
    }

    fn delete_tokens(&self, hashes: &[String]) -> Result<(), Error> {
        let mut batch = sled::Batch::default();
        for h in hashes {
            batch.remove(h.as_bytes());
        }
        self.tokens.apply_batch(batch).map_err(store_err)?;
        self.db.flush().map_err(store_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::dispatcher::Meta;

    /// Regression: serde_json's default float parser is not exact; without `float_roundtrip` a stored
    /// coordinate of 43.740899999999996 came back as 43.7409 after a restart (found by the crash test).
    #[test]
    fn coordinates_round_trip_exactly() {
        // The coordinates the crash test computes (43.7405 + k * 0.0004, 7.429 + k * 0.0004) and a few others.
        let computed = (0..7).flat_map(|k| [43.7405 + f64::from(k) * 0.0004, 7.429 + f64::from(k) * 0.0004]);
        for v in computed.chain([0.1 + 0.2, 1e-300, 179.999_999_999_999_97]) {
            let text = serde_json::to_string(&v).expect("serialises");
            let back: f64 = serde_json::from_str(&text).expect("parses");
            assert_eq!(back.to_bits(), v.to_bits(), "{v} -> {text} -> {back}");
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let s = SledStore::open(dir.path()).expect("opens");
            s.write(&[(RecordKey::Meta, Record::Meta(Meta { next_order_seq: 41, ..Meta::default() }))])
                .expect("writes");
            s.write(&[(RecordKey::Meta, Record::Meta(Meta { next_order_seq: 42, ..Meta::default() }))])
                .expect("writes");
            s.put_token(&TokenEntry { hash_hex: "ab".into(), principal: Principal::Operator }).expect("writes");
        }
        let s = SledStore::open(dir.path()).expect("reopens");
        assert_eq!(s.load().expect("loads"), vec![Record::Meta(Meta { next_order_seq: 42, ..Meta::default() })]);
        assert_eq!(s.load_tokens().expect("loads").len(), 1);
    }

    /// A store closed on another thread a moment ago opens (sled lets go of its lock late); one held open is
    /// refused with a message naming the cause rather than sled's raw lock error.
    #[test]
    fn a_closing_store_is_waited_for_and_a_held_one_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = SledStore::open(dir.path()).expect("opens");
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        let second = SledStore::open(dir.path()).expect("opens once the first lets go");
        closer.join().expect("closer");
        let refused = SledStore::open(dir.path()).err().expect("refused while the second is open");
        let text = refused.to_string();
        assert!(text.contains("in use by another process"), "{text}");
        drop(second);
    }
}
