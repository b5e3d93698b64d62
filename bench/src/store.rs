//! `trundle-bench store`: commit latency of the sled store and the etcd store side by side, at fixed commit
//! rates, written the way the dispatcher writes: one writer thread takes everything queued as one group and
//! commits it (group commit), and each commit's latency counts from when it was queued (open loop: a slow store
//! cannot hide behind a slow generator). Each commit is one record of about the size of an order.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use dispatcher::store::Store;
use fleet_core::dispatcher::{Record, Shop};
use fleet_core::host::RecordKey;

/// Latencies in ms of `rate` commits a second for `seconds`, and the groups' sizes.
pub fn run(store: &dyn Store, rate: f64, seconds: f64) -> Result<(Vec<f64>, Vec<usize>), String> {
    let total = (rate * seconds).round() as usize;
    let (tx, rx) = mpsc::channel::<(usize, Instant)>();
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send((i, due)).is_err() {
                return;
            }
        }
    });
    let pos = fleet_core::LatLon::new(43.7393, 7.4274).map_err(|e| e.to_string())?;
    let record = |i: usize| -> Result<(RecordKey, Record), String> {
        let id = fleet_core::ShopId::parse(&format!("bench-{i:07}")).map_err(|e| e.to_string())?;
        // About an order's size as JSON (some 900 bytes).
        let shop =
            Shop { id, name: "x".repeat(800), place: fleet_core::order::Place { pos, node: fleet_core::NodeId(0) } };
        let r = Record::Shop(shop);
        Ok((RecordKey::of(&r), r))
    };
    let (mut lat, mut groups) = (Vec::with_capacity(total), Vec::new());
    while lat.len() < total {
        let Ok(first) = rx.recv() else { break };
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let records: Vec<(RecordKey, Record)> = group.iter().map(|(i, _)| record(*i)).collect::<Result<_, _>>()?;
        store.write(&records).map_err(|e| e.to_string())?;
        let done = Instant::now();
        groups.push(group.len());
        lat.extend(group.iter().map(|(_, queued)| done.duration_since(*queued).as_secs_f64() * 1e3));
    }
    let _ = producer.join();
    Ok((lat, groups))
}
