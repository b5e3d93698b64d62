//! The etcd store: the same records and tokens as the sled store, kept in an etcd cluster under one service
//! area's prefix, and the area's leadership that fences every write.
//!
//! Keys, under `/trundle/<area>/`:
//! - `leader`: the holder's name, attached to its lease. Its create revision is the leader's **fencing token**:
//!   unique and rising across the cluster's history, so a later leader always holds a larger one.
//! - `r/<record key>`: a record as JSON (the keys of [`RecordKey::storage_key`]), deflated when it is longer than
//!   [`DEFLATE_OVER`] bytes (then marked by a leading [`DEFLATED`]; JSON never starts with a NUL byte). Robot
//!   records carry their plans and released drives with every node: under load they were two thirds of some
//!   100 KB per transaction, which every member of the cluster writes to its log.
//! - `t/<token hash>`: a token entry as JSON.
//!
//! and `/trundle-areas/<area>`: the leader's holder string (`grpc=HOST:PORT pid=... id=...`), on its lease, for
//! routers to find every area's leader in one read ([`crate::router`]); `/trundle-area-names/<area>`, every
//! area that ever had a leader; `/trundle-handoff/<to area>/<robot>`, a robot handed over and not yet taken up
//! ([`HandOff`]: written in the giving leader's fenced transaction with the robot's last record there and the
//! removal of its tokens, removed in the taking leader's fenced transaction that puts them in its area).
//!
//! Every write is one transaction whose condition is that `leader` still has the holder's create revision: a
//! dispatcher that lost the lease (paused, partitioned, slow) can write nothing, however late its write arrives.
//! A group of records is one transaction, so it lands whole or not at all (etcd's `--max-txn-ops` and
//! `--max-request-bytes` must allow the largest group; see `docs/operations.md`). A write whose outcome is not
//! known (a timeout, a lost connection) is reported as such, never as a failure: it may have landed, and the
//! client's retry with its idempotency key is what makes it safe.
//!
//! The holder keeps its lease alive every third of its TTL. When no keep-alive has been answered for the TTL
//! less one second (on the monotonic clock), it stops writing (self-fencing) before etcd can hand the area to
//! another dispatcher; the transaction condition is the guarantee, this only avoids futile writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fleet_core::dispatcher::Record;
use fleet_core::host::RecordKey;
use tonic::transport::{Channel, Endpoint};
use trundle_proto::etcd as pb;
use trundle_proto::etcd::kv_client::KvClient;
use trundle_proto::etcd::lease_client::LeaseClient;

use crate::Error;
use crate::store::{Store, TokenEntry};

/// How long one etcd call may take before its outcome counts as unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys read per page when loading.
const PAGE: i64 = 1000;

/// Records longer than this are deflated before they are written.
pub const DEFLATE_OVER: usize = 512;
/// The mark of a deflated record.
pub const DEFLATED: &[u8] = b"\0z";

/// A record's stored value.
fn encode(r: &Record) -> Result<Vec<u8>, Error> {
    use std::io::Write;
    let json = serde_json::to_vec(r).map_err(|e| Error::Store(e.to_string()))?;
    if json.len() <= DEFLATE_OVER {
        return Ok(json);
    }
    let mut z = flate2::write::DeflateEncoder::new(DEFLATED.to_vec(), flate2::Compression::fast());
    z.write_all(&json).map_err(|e| Error::Store(e.to_string()))?;
    z.finish().map_err(|e| Error::Store(e.to_string()))
}

/// A record from its stored value (deflated or not).
fn decode(v: &[u8]) -> Result<Record, String> {
    use std::io::Read;
    match v.strip_prefix(DEFLATED) {
        Some(z) => {
            let mut json = Vec::new();
            flate2::read::DeflateDecoder::new(z).read_to_end(&mut json).map_err(|e| e.to_string())?;
            serde_json::from_slice(&json).map_err(|e| e.to_string())
        }
        None => serde_json::from_slice(v).map_err(|e| e.to_string()),
    }
}

/// Keys and values, in key order.
type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Where the area lives and how long its leadership lasts.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` of each member; calls go to any of them.
    pub endpoints: Vec<String>,
    /// The service area's name: the keys' prefix.
    pub area: String,
    /// The leader's lease. A dead leader's area is taken over this long after its last keep-alive.
    pub lease_ttl_s: i64,
    /// How often a standby looks whether the area is free.
    pub poll_every: Duration,
}

impl EtcdConfig {
    /// The members of `etcd://HOST:PORT,HOST:PORT,...`.
    pub fn endpoints(url: &str) -> Result<Vec<String>, Error> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| Error::Setup(format!("{url:?}: an etcd store is etcd://HOST:PORT[,HOST:PORT...]")))?;
        let endpoints: Vec<String> = rest.split(',').map(|s| s.trim().trim_end_matches('/').to_owned()).collect();
        if endpoints.iter().any(|e| e.is_empty() || !e.contains(':')) {
            return Err(Error::Setup(format!("{url:?}: every endpoint is HOST:PORT")));
        }
        Ok(endpoints)
    }

    /// Parses `etcd://HOST:PORT,HOST:PORT,...` for area `area`.
    pub fn parse(url: &str, area: &str) -> Result<Self, Error> {
        let endpoints = Self::endpoints(url)?;
        if area.is_empty() || !area.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(Error::Setup(format!("area {area:?}: 1 or more letters, digits, '-', '_' or '.'")));
        }
        Ok(Self { endpoints, area: area.to_owned(), lease_ttl_s: 3, poll_every: Duration::from_millis(200) })
    }
}

/// A connection to the cluster with its own small runtime: the store is called from the core's writer thread
/// and from request handlers alike, and waits for its calls without needing the caller's runtime.
struct Conn {
    rt: RuntimeBox,
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
}

/// The store's runtime, shut down without waiting when dropped (a runtime dropped on an async thread would
/// otherwise panic).
struct RuntimeBox(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for RuntimeBox {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for RuntimeBox {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Conn {
    fn open(cfg: &EtcdConfig) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Setup(format!("etcd runtime: {e}")))?;
        let channel = {
            let _guard = rt.enter();
            balanced(&cfg.endpoints)?
        };
        let kv = KvClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
        let lease = LeaseClient::new(channel);
        Ok(Self { rt: RuntimeBox(Some(rt)), kv, lease })
    }

    /// Runs `f` on the store's runtime and waits for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
    ) -> Result<T, tonic::Status> {
        self.run_for(f, CALL_TIMEOUT)
    }

    /// A read, sent again while it fails in a way another try may not (a member still starting or just gone:
    /// the balanced channel then tries another), for up to [`CALL_TIMEOUT`]. Reads change nothing, so trying
    /// again is always safe.
    fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, tonic::Status> {
        let started = Instant::now();
        loop {
            let mut kv = self.kv.clone();
            let attempt = req.clone();
            match self.run_for(async move { kv.range(attempt).await.map(|r| r.into_inner()) }, ATTEMPT_TIMEOUT) {
                Err(st) if retryable(&st) && started.elapsed() < CALL_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }

    /// As [`Conn::run`], giving up after `limit`.
    fn run_for<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
        limit: Duration,
    ) -> Result<T, tonic::Status> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.spawn(async move {
            let _ = tx.send(tokio::time::timeout(limit, f).await);
        });
        match rx.recv_timeout(limit + Duration::from_secs(1)) {
            Ok(Ok(r)) => r,
            _ => Err(tonic::Status::deadline_exceeded("no answer from etcd in time")),
        }
    }
}

/// Where an area's current leader is listed for routers: `/trundle-areas/<area>`, its value the leader's
/// holder string (`grpc=HOST:PORT ...`), attached to the leader's lease.
pub fn directory_key(area: &str) -> Vec<u8> {
    format!("{DIRECTORY}{area}").into_bytes()
}

/// The prefix of [`directory_key`].
pub const DIRECTORY: &str = "/trundle-areas/";

/// `/trundle-area-names/<area>`: every area that has ever had a leader (no lease).
pub const AREA_NAMES: &str = "/trundle-area-names/";

/// One channel over every member of the cluster (calls go to any that answers). Needs a runtime entered.
pub fn balanced(endpoints: &[String]) -> Result<Channel, Error> {
    let endpoints: Vec<Endpoint> = endpoints
        .iter()
        .map(|e| {
            Endpoint::from_shared(format!("http://{e}"))
                .map(|ep| ep.connect_timeout(Duration::from_secs(2)).timeout(CALL_TIMEOUT))
                .map_err(|err| Error::Setup(format!("etcd endpoint {e}: {err}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

/// The key one past every key starting with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One attempt at a write gives up after this long (and is tried again while [`CALL_TIMEOUT`] lasts).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Whether a failed call may succeed if sent again (etcd or the way to it was briefly unavailable).
fn retryable(st: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(st.code(), Code::DeadlineExceeded | Code::Unavailable | Code::Unknown | Code::Cancelled)
}

/// An etcd call failed: was the write's outcome unknown, or was it surely not done?
fn call_err(what: &str, st: &tonic::Status) -> Error {
    use tonic::Code;
    match st.code() {
        // The request may have reached etcd and committed.
        Code::DeadlineExceeded | Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal => {
            Error::Store(format!("{what}: the outcome is unknown ({}): it may have been stored", st.message()))
        }
        _ => Error::Store(format!("{what}: etcd refused it: {}", st.message())),
    }
}

/// This dispatcher's hold on its area.
pub struct Leadership {
    /// The leader key's create revision.
    pub token: i64,
    pub lease: i64,
    /// Cleared when the lease may have lapsed: no write is attempted after that.
    live: Arc<AtomicBool>,
}

impl Leadership {
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn live_flag(&self) -> Arc<AtomicBool> {
        self.live.clone()
    }
}

pub struct EtcdStore {
    cfg: EtcdConfig,
    conn: Conn,
    holder: String,
    leadership: Leadership,
}

impl EtcdStore {
    fn key(&self, rest: &str) -> Vec<u8> {
        format!("/trundle/{}/{rest}", self.cfg.area).into_bytes()
    }

    /// Connects and waits until this dispatcher leads the area (a standby waits here while another leads),
    /// then keeps the lease alive in the background. `holder` names this dispatcher in the leader key.
    pub fn lead(cfg: EtcdConfig, holder: &str) -> Result<Self, Error> {
        let conn = Conn::open(&cfg)?;
        let leader_key = format!("/trundle/{}/leader", cfg.area).into_bytes();
        let mut waiting_since: Option<Instant> = None;
        loop {
            // A fresh lease per attempt: one granted while another led may be close to its end.
            let mut lease_client = conn.lease.clone();
            let ttl = cfg.lease_ttl_s;
            let granted = conn.run(async move {
                lease_client.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await.map(|r| r.into_inner().id)
            });
            let lease = match granted {
                Ok(id) => id,
                Err(st) => {
                    tracing::warn!("etcd unreachable while campaigning for area {}: {}", cfg.area, st.message());
                    std::thread::sleep(cfg.poll_every.max(Duration::from_millis(500)));
                    continue;
                }
            };
            let mut kv = conn.kv.clone();
            let (key, value) = (leader_key.clone(), holder.as_bytes().to_vec());
            let txn = pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: pb::compare::CompareResult::Equal as i32,
                    target: pb::compare::CompareTarget::Create as i32,
                    key: key.clone(),
                    target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                }],
                success: vec![
                    pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key,
                            value: value.clone(),
                            lease,
                        })),
                    },
                    // The directory of areas' leaders the router reads; gone with the lease.
                    pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: directory_key(&cfg.area),
                            value,
                            lease,
                        })),
                    },
                    // Every area that ever had a leader, for routers to look for tokens in while it has none.
                    pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: format!("{AREA_NAMES}{}", cfg.area).into_bytes(),
                            value: Vec::new(),
                            lease: 0,
                        })),
                    },
                ],
                failure: vec![],
            };
            match conn.run(async move { kv.txn(txn).await.map(|r| r.into_inner()) }) {
                Ok(r) if r.succeeded => {
                    let token = r.header.map_or(0, |h| h.revision);
                    tracing::info!(area = %cfg.area, token, "leading the area");
                    let live = Arc::new(AtomicBool::new(true));
                    keep_alive(&conn, lease, cfg.lease_ttl_s, live.clone());
                    return Ok(Self {
                        holder: holder.to_owned(),
                        leadership: Leadership { token, lease, live },
                        cfg,
                        conn,
                    });
                }
                Ok(_) => {
                    if waiting_since.is_none() {
                        tracing::info!(area = %cfg.area, "another dispatcher leads the area; standing by");
                        waiting_since = Some(Instant::now());
                    }
                }
                Err(st) => tracing::warn!("campaign for area {} failed: {}", cfg.area, st.message()),
            }
            let mut lease_client = conn.lease.clone();
            let _ = conn.run(async move { lease_client.lease_revoke(pb::LeaseRevokeRequest { id: lease }).await });
            std::thread::sleep(cfg.poll_every);
        }
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// The service area this store holds.
    pub fn area(&self) -> &str {
        &self.cfg.area
    }

    /// Whether `area` has ever had a leader on this cluster (a hand-off to a misspelt area would wait forever).
    pub fn knows_area(&self, area: &str) -> Result<bool, Error> {
        let req = pb::RangeRequest {
            key: format!("{AREA_NAMES}{area}").into_bytes(),
            range_end: Vec::new(),
            limit: 1,
            revision: 0,
        };
        let r = self
            .conn
            .range(req)
            .map_err(|st| Error::Store(format!("reading the areas from etcd: {}", st.message())))?;
        Ok(!r.kvs.is_empty())
    }

    /// This area's tokens of `robot`, with their keys.
    fn robot_tokens(&self, robot: &fleet_core::RobotId) -> Result<Vec<(Vec<u8>, TokenEntry)>, Error> {
        let mut v = Vec::new();
        for (k, value) in self.range_prefix(&self.key("t/"))? {
            let t: TokenEntry = serde_json::from_slice(&value).map_err(|e| Error::Store(e.to_string()))?;
            if t.principal == crate::store::Principal::Robot(robot.clone()) {
                v.push((k, t));
            }
        }
        Ok(v)
    }

    /// What hands a robot over to another area, in the same transaction as its last record here: the hand-off
    /// record (the robot and its tokens) under [`HANDOFFS`], and the tokens' removal from this area.
    fn hand_off_ops(&self, robot: &fleet_core::robot::Robot, to: &str) -> Result<Vec<pb::RequestOp>, Error> {
        let tokens = self.robot_tokens(&robot.id)?;
        let mut ops = Vec::with_capacity(tokens.len() + 1);
        for (key, _) in &tokens {
            ops.push(pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: key.clone(),
                    range_end: Vec::new(),
                })),
            });
        }
        let record = HandOff {
            from: self.cfg.area.clone(),
            robot: robot.clone(),
            tokens: tokens.into_iter().map(|(_, t)| t).collect(),
        };
        let value = serde_json::to_vec(&record).map_err(|e| Error::Store(e.to_string()))?;
        ops.push(pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: handoff_key(to, robot.id.as_str()),
                value,
                lease: 0,
            })),
        });
        Ok(ops)
    }

    /// Robots handed over to this area and not yet taken up.
    pub fn arrivals(&self) -> Result<Vec<Arrival>, Error> {
        let prefix = format!("{HANDOFFS}{}/", self.cfg.area).into_bytes();
        let end = prefix_end(&prefix);
        let req = pb::RangeRequest { key: prefix, range_end: end, limit: 0, revision: 0 };
        let r = self
            .conn
            .range(req)
            .map_err(|st| Error::Store(format!("reading hand-offs to area {}: {}", self.cfg.area, st.message())))?;
        r.kvs
            .into_iter()
            .map(|kv| {
                let handoff: HandOff = serde_json::from_slice(&kv.value).map_err(|e| {
                    Error::Store(format!("hand-off {} is unreadable: {e}", String::from_utf8_lossy(&kv.key)))
                })?;
                Ok(Arrival { handoff, key: kv.key, mod_revision: kv.mod_revision })
            })
            .collect()
    }

    /// Takes a robot handed over to this area into its store, in one transaction fenced by this area's
    /// leadership and conditional on the hand-off being the one read: the robot's record and its tokens are put
    /// here and the hand-off removed. `Ok(false)`: the hand-off changed or was taken up meanwhile.
    pub fn adopt(&self, a: &Arrival) -> Result<bool, Error> {
        let mut robot = a.handoff.robot.clone();
        robot.handed_to = None;
        robot.online = false;
        let record = Record::Robot(Box::new(robot));
        let mut ops = vec![
            pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: self.key(&format!("r/{}", RecordKey::of(&record).storage_key())),
                    value: encode(&record)?,
                    lease: 0,
                })),
            },
            pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: a.key.clone(),
                    range_end: Vec::new(),
                })),
            },
        ];
        for t in &a.handoff.tokens {
            ops.push(pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: self.key(&format!("t/{}", t.hash_hex)),
                    value: serde_json::to_vec(t).map_err(|e| Error::Store(e.to_string()))?,
                    lease: 0,
                })),
            });
        }
        let unchanged = pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: a.key.clone(),
            target_union: Some(pb::compare::TargetUnion::ModRevision(a.mod_revision)),
        };
        self.fenced_if(&format!("taking up robot {}", a.handoff.robot.id), vec![unchanged], ops)
    }

    /// Removes a hand-off this area cannot take up (its robot is already here), fenced.
    pub fn drop_arrival(&self, a: &Arrival) -> Result<bool, Error> {
        let op = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: a.key.clone(),
                range_end: Vec::new(),
            })),
        };
        self.fenced_if("dropping a stale hand-off", Vec::new(), vec![op])
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Gives the area up (an orderly stop): the standby takes over at once instead of after the lease.
    pub fn resign(&self) {
        self.leadership.live.store(false, Ordering::Release);
        let mut lease_client = self.conn.lease.clone();
        let id = self.leadership.lease;
        let _ = self.conn.run(async move { lease_client.lease_revoke(pb::LeaseRevokeRequest { id }).await });
    }

    /// Every value under `prefix`, in key order, a page at a time.
    fn range_prefix(&self, prefix: &[u8]) -> Result<KeyValues, Error> {
        let end = prefix_end(prefix);
        let mut from = prefix.to_vec();
        let mut out = Vec::new();
        loop {
            let req = pb::RangeRequest { key: from.clone(), range_end: end.clone(), limit: PAGE, revision: 0 };
            let r = self.conn.range(req).map_err(|st| {
                Error::Store(format!("reading the area {} from etcd: {}", self.cfg.area, st.message()))
            })?;
            let more = r.more;
            for kv in r.kvs {
                from = kv.key.clone();
                out.push((kv.key, kv.value));
            }
            if !more {
                return Ok(out);
            }
            from.push(0);
        }
    }

    /// Writes `ops` in one transaction on condition that this dispatcher still leads the area.
    fn fenced(&self, what: &str, ops: Vec<pb::RequestOp>) -> Result<(), Error> {
        match self.fenced_if(what, Vec::new(), ops)? {
            true => Ok(()),
            false => Err(Error::Store(format!("{what}: refused by etcd"))),
        }
    }

    /// As [`EtcdStore::fenced`], on the further conditions `extra`. `Ok(false)`: one of those failed (this
    /// dispatcher still leads the area).
    fn fenced_if(&self, what: &str, extra: Vec<pb::Compare>, ops: Vec<pb::RequestOp>) -> Result<bool, Error> {
        if !self.leadership.is_live() {
            return Err(Error::Store(format!(
                "{what}: this dispatcher's lease on area {} may have lapsed; it no longer writes",
                self.cfg.area
            )));
        }
        let leader_key = self.key("leader");
        let has_extra = !extra.is_empty();
        let mut compare = vec![pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Create as i32,
            key: leader_key.clone(),
            target_union: Some(pb::compare::TargetUnion::CreateRevision(self.leadership.token)),
        }];
        compare.extend(extra);
        // On failure etcd answers the leader key, so a failed extra condition is told from a lost area.
        let failure = if has_extra {
            vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key: leader_key,
                    range_end: Vec::new(),
                    limit: 1,
                    revision: 0,
                })),
            }]
        } else {
            Vec::new()
        };
        let txn = pb::TxnRequest { compare, success: ops, failure };
        // The same transaction may be sent again: its puts are the same values under the same fence, so a second
        // landing changes nothing. Each attempt is short, so one stuck on a member that died, or on an election
        // in etcd, gives way to another within the call's time.
        let started = Instant::now();
        loop {
            let mut kv = self.conn.kv.clone();
            let attempt = txn.clone();
            match self.conn.run_for(async move { kv.txn(attempt).await.map(|r| r.into_inner()) }, ATTEMPT_TIMEOUT) {
                Ok(r) if r.succeeded => return Ok(true),
                Ok(r) if has_extra && still_leads(&r, self.leadership.token) => return Ok(false),
                Ok(_) => {
                    self.leadership.live.store(false, Ordering::Release);
                    return Err(Error::Store(format!(
                        "{what}: refused, another dispatcher now leads area {} (fencing token {} is stale)",
                        self.cfg.area, self.leadership.token
                    )));
                }
                Err(st) if retryable(&st) && started.elapsed() < CALL_TIMEOUT && self.leadership.is_live() => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(st) => return Err(call_err(what, &st)),
            }
        }
    }
}

/// Whether a failed transaction's answer (the leader key's range) shows the leader key still held at `token`.
fn still_leads(r: &pb::TxnResponse, token: i64) -> bool {
    r.responses.iter().any(|op| match &op.response {
        Some(pb::response_op::Response::ResponseRange(range)) => range.kvs.iter().any(|kv| kv.create_revision == token),
        _ => false,
    })
}

/// Where hand-offs wait for the area they go to: `/trundle-handoff/<to area>/<robot>`.
pub const HANDOFFS: &str = "/trundle-handoff/";

fn handoff_key(to_area: &str, robot: &str) -> Vec<u8> {
    format!("{HANDOFFS}{to_area}/{robot}").into_bytes()
}

/// A robot on its way from one area to another: its last record in the giving area and its tokens.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HandOff {
    pub from: String,
    pub robot: fleet_core::robot::Robot,
    pub tokens: Vec<TokenEntry>,
}

/// A hand-off to this area as read, with what identifies that version of it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub handoff: HandOff,
    key: Vec<u8>,
    mod_revision: i64,
}

/// Keeps `lease` alive every third of its TTL; clears `live` when no keep-alive was answered for TTL - 1 s.
fn keep_alive(conn: &Conn, lease: i64, ttl_s: i64, live: Arc<AtomicBool>) {
    let mut client = conn.lease.clone();
    conn.rt.spawn(async move {
        let every = Duration::from_millis((ttl_s.max(1) as u64 * 1000) / 3);
        let limit = Duration::from_millis((ttl_s.max(2) as u64 - 1) * 1000);
        let mut last_ok = Instant::now();
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if !live.load(Ordering::Acquire) {
                return;
            }
            let sent = Instant::now();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.send(pb::LeaseKeepAliveRequest { id: lease }).await;
            drop(tx);
            let answered = tokio::time::timeout(every, async {
                let mut stream =
                    client.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
                stream.message().await
            })
            .await;
            match answered {
                Ok(Ok(Some(r))) if r.ttl > 0 => last_ok = sent,
                Ok(Ok(_)) => {
                    tracing::error!(lease, "the area's lease has expired; this dispatcher stops writing");
                    live.store(false, Ordering::Release);
                    return;
                }
                _ => {}
            }
            if last_ok.elapsed() > limit {
                tracing::error!(lease, "no lease keep-alive answered in time; this dispatcher stops writing");
                live.store(false, Ordering::Release);
                return;
            }
        }
    });
}

impl Store for EtcdStore {
    fn load(&self) -> Result<Vec<Record>, Error> {
        self.range_prefix(&self.key("r/"))?
            .into_iter()
            .map(|(k, v)| {
                decode(&v)
                    .map_err(|e| Error::Store(format!("record {} is unreadable: {e}", String::from_utf8_lossy(&k))))
            })
            .collect()
    }

    fn write(&self, records: &[(RecordKey, Record)]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        // etcd refuses a transaction that puts one key twice; a group may hold several records of one key, and the
        // last of them is the one that stands.
        let mut last: std::collections::BTreeMap<String, &Record> = std::collections::BTreeMap::new();
        for (k, r) in records {
            last.insert(k.storage_key(), r);
        }
        let mut ops = Vec::with_capacity(last.len());
        for (k, r) in last {
            // A robot's last record here, handed over to another area: the hand-off goes in the same transaction.
            if let Record::Robot(robot) = r
                && let Some(to) = &robot.handed_to
            {
                ops.extend(self.hand_off_ops(robot, to)?);
            }
            let value = encode(r)?;
            let key = self.key(&format!("r/{k}"));
            ops.push(pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest { key, value, lease: 0 })),
            });
        }
        let written = self.fenced(&format!("committing {} records", records.len()), ops);
        if written.is_err() {
            // The core stops at a failed write; this dispatcher steps down so that a standby, which reads what
            // landed from etcd, takes the area over.
            self.leadership.live.store(false, Ordering::Release);
        }
        written
    }

    fn load_tokens(&self) -> Result<Vec<TokenEntry>, Error> {
        self.range_prefix(&self.key("t/"))?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| Error::Store(e.to_string())))
            .collect()
    }

    fn put_token(&self, t: &TokenEntry) -> Result<(), Error> {
        let value = serde_json::to_vec(t).map_err(|e| Error::Store(e.to_string()))?;
        let key = self.key(&format!("t/{}", t.hash_hex));
        self.fenced(
            "storing a token",
            vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest { key, value, lease: 0 })),
            }],
        )
    }

    fn delete_tokens(&self, hashes: &[String]) -> Result<(), Error> {
        let ops = hashes
            .iter()
            .map(|h| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: self.key(&format!("t/{h}")),
                    range_end: Vec::new(),
                })),
            })
            .collect();
        self.fenced("revoking tokens", ops)
    }
}

/// A local etcd cluster of Debian's `etcd` processes on loopback, for tests and benchmarks: started in a
/// directory of the caller's, its members killed (by their own handles) when it is dropped.
pub struct LocalCluster {
    members: Vec<std::process::Child>,
    /// Each member's command line, to start it again.
    commands: Vec<Vec<std::ffi::OsString>>,
    /// `host:port` of each member's client URL.
    pub clients: Vec<String>,
}

impl LocalCluster {
    /// The etcd binary these clusters run.
    pub const ETCD: &'static str = "/usr/bin/etcd";

    /// Starts `n` members with data under `dir`, each allowed transactions as large as a group commit needs.
    pub fn start(n: usize, dir: &std::path::Path) -> Result<LocalCluster, Error> {
        use std::process::{Command, Stdio};
        if !std::path::Path::new(Self::ETCD).exists() {
            return Err(Error::Setup(format!("{} is not installed (Debian package etcd-server)", Self::ETCD)));
        }
        let free = || -> Result<u16, Error> {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Setup(e.to_string()))?;
            Ok(l.local_addr().map_err(|e| Error::Setup(e.to_string()))?.port())
        };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| Ok((free()?, free()?))).collect::<Result<_, Error>>()?;
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let mut c = LocalCluster { members: Vec::new(), commands: Vec::new(), clients: Vec::new() };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let args: Vec<std::ffi::OsString> = [
                "--name".into(),
                format!("m{i}"),
                "--data-dir".into(),
                dir.join(format!("m{i}")).to_string_lossy().into_owned(),
                "--listen-client-urls".into(),
                format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls".into(),
                format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls".into(),
                format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls".into(),
                format!("http://127.0.0.1:{peer}"),
                "--initial-cluster".into(),
                cluster.join(","),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                "trundle-local".into(),
                "--max-txn-ops".into(),
                "100000".into(),
                "--max-request-bytes".into(),
                "33554432".into(),
            ]
            .into_iter()
            .map(Into::into)
            .collect();
            let child = Command::new(Self::ETCD)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| Error::Setup(format!("cannot start etcd: {e}")))?;
            c.members.push(child);
            c.commands.push(args);
            c.clients.push(format!("127.0.0.1:{client}"));
        }
        // Every member listening before anyone uses the cluster (a call sent to one still starting fails).
        let until = std::time::Instant::now() + Duration::from_secs(20);
        for addr in &c.clients {
            while std::net::TcpStream::connect(addr).is_err() {
                if std::time::Instant::now() > until {
                    return Err(Error::Setup(format!("etcd member {addr} did not start listening within 20 s")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(c)
    }

    /// Starts member `i` again (after [`LocalCluster::kill`]) on its data, rejoining the cluster.
    pub fn restart(&mut self, i: usize) -> Result<(), Error> {
        use std::process::{Command, Stdio};
        let args = self.commands.get(i).ok_or_else(|| Error::Setup(format!("no member {i}")))?;
        let child = Command::new(Self::ETCD)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Setup(format!("cannot start etcd: {e}")))?;
        self.members[i] = child;
        Ok(())
    }

    /// The `--store` URL of the cluster.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.clients.join(","))
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i) {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_bad_ones_say_why() {
        let c = EtcdConfig::parse("etcd://127.0.0.1:2379,10.0.0.2:2379", "north").expect("valid");
        assert_eq!(c.endpoints, vec!["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert!(EtcdConfig::parse("http://x:1", "a").is_err());
        assert!(EtcdConfig::parse("etcd://x", "a").is_err());
        assert!(EtcdConfig::parse("etcd://x:1,", "a").is_err());
        assert!(EtcdConfig::parse("etcd://x:1", "a/b").is_err());
        assert!(EtcdConfig::parse("etcd://x:1", "").is_err());
    }

    #[test]
    fn large_records_are_deflated_and_read_back_and_plain_json_still_reads() {
        use fleet_core::dispatcher::Meta;
        let small = Record::Meta(Meta::default());
        let v = encode(&small).expect("encodes");
        assert!(v.starts_with(b"{"), "a small record stays plain JSON");
        assert_eq!(decode(&v).expect("decodes"), small);
        let alerts = (0..40)
            .map(|id| fleet_core::dispatcher::OpenAlert {
                id,
                robot: None,
                message: format!("robot r{id} reports a blocked sidewalk between nodes 1 and 2"),
                raised_at: fleet_core::Timestamp(1_000 * id),
            })
            .collect();
        let large = Record::Alerts(alerts);
        let json = serde_json::to_vec(&large).expect("json");
        let v = encode(&large).expect("encodes");
        assert!(v.starts_with(DEFLATED) && v.len() * 4 < json.len(), "{} bytes from {}", v.len(), json.len());
        assert_eq!(decode(&v).expect("decodes"), large);
        assert_eq!(decode(&json).expect("plain JSON of a large record reads too"), large);
        assert!(decode(b"\0zgarbage").is_err());
    }

    #[test]
    fn a_prefix_range_ends_after_every_key_with_it() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }
}
