//! The live graph: the map in flat arrays (outgoing and incoming arcs per node) with a per-arc closed flag, and an
//! exact bidirectional Dijkstra that skips closed arcs. It answers the routes a precomputed hierarchy cannot
//! (a path over a blocked sidewalk) and is the oracle of the fast routers.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};

use petgraph::graph::DiGraph;
use petgraph::visit::EdgeRef;

use crate::map::{MapEdge, MapGraph, MapNode, Profile};

/// The graph in arrays: outgoing arcs per node (`first`/`to`), incoming arcs per node as indices into them
/// (`rfirst`/`rarc`), and each arc's length and crossing flag.
#[derive(Debug)]
pub(crate) struct LiveGraph {
    pub(crate) first: Vec<u32>,
    pub(crate) to: Vec<u32>,
    pub(crate) from: Vec<u32>,
    pub(crate) length_m: Vec<f64>,
    pub(crate) crossing: Vec<bool>,
    pub(crate) signals: Vec<bool>,
    pub(crate) max_mps: Vec<f32>,
    pub(crate) rfirst: Vec<u32>,
    pub(crate) rarc: Vec<u32>,
    /// Each arc's travel time in ms for the profiles searched so far (a handful: the graph never changes, and
    /// computing an arc's time on every relaxation was a fifth of a search).
    weights: Mutex<Vec<(Profile, Arc<[u64]>)>>,
}

/// A search's working arrays, kept per thread between searches: an entry is valid only where its stamp is
/// the current round's, so a search costs what it visits, not the size of the map.
#[derive(Default)]
struct Scratch {
    round: u32,
    stamp: [Vec<u32>; 2],
    dist: [Vec<u64>; 2],
    parent: [Vec<u32>; 2],
    heap: [BinaryHeap<Reverse<(u64, u32)>>; 2],
}

impl Scratch {
    fn start(&mut self, n: usize) {
        if self.stamp[0].len() != n || self.round == u32::MAX {
            *self = Self::default();
            for d in 0..2 {
                self.stamp[d] = vec![0; n];
                self.dist[d] = vec![u64::MAX; n];
                self.parent[d] = vec![u32::MAX; n];
            }
        }
        self.round += 1;
        for h in &mut self.heap {
            h.clear();
        }
    }

    fn dist(&self, d: usize, v: u32) -> u64 {
        if self.stamp[d][v as usize] == self.round { self.dist[d][v as usize] } else { u64::MAX }
    }

    fn parent(&self, d: usize, v: u32) -> u32 {
        if self.stamp[d][v as usize] == self.round { self.parent[d][v as usize] } else { u32::MAX }
    }

    fn set(&mut self, d: usize, v: u32, dist: u64, parent: u32) {
        self.stamp[d][v as usize] = self.round;
        self.dist[d][v as usize] = dist;
        self.parent[d][v as usize] = parent;
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

impl LiveGraph {
    pub(crate) fn new(g: &DiGraph<MapNode, MapEdge>) -> Self {
        let n = g.node_count();
        let mut out: Vec<Vec<(u32, MapEdge)>> = vec![Vec::new(); n];
        for e in g.edge_references() {
            out[e.source().index()].push((e.target().index() as u32, *e.weight()));
        }
        let mut s = Self {
            first: vec![0],
            to: Vec::new(),
            from: Vec::new(),
            length_m: Vec::new(),
            crossing: Vec::new(),
            signals: Vec::new(),
            max_mps: Vec::new(),
            rfirst: vec![0; n + 1],
            rarc: Vec::new(),
            weights: Mutex::default(),
        };
        for (u, list) in out.into_iter().enumerate() {
            for (v, w) in list {
                s.to.push(v);
                s.from.push(u as u32);
                s.length_m.push(w.length_m);
                s.crossing.push(w.crossing);
                s.signals.push(w.signals);
                s.max_mps.push(w.max_mps);
            }
            s.first.push(s.to.len() as u32);
        }
        // Incoming arcs, grouped by head.
        let mut inc: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, &v) in s.to.iter().enumerate() {
            inc[v as usize].push(i as u32);
        }
        for (v, list) in inc.into_iter().enumerate() {
            s.rarc.extend(list);
            s.rfirst[v + 1] = s.rarc.len() as u32;
        }
        s
    }

    pub(crate) fn arcs(&self, v: u32) -> std::ops::Range<usize> {
        self.first[v as usize] as usize..self.first[v as usize + 1] as usize
    }

    fn ms(&self, i: usize, p: Profile) -> u64 {
        MapGraph::edge_ms(
            &MapEdge {
                length_m: self.length_m[i],
                crossing: self.crossing[i],
                way_id: 0,
                width_m: 0.0,
                signals: self.signals[i],
                max_mps: self.max_mps[i],
            },
            p,
        )
    }

    /// Bidirectional Dijkstra skipping closed arcs: (ms, node path).
    pub(crate) fn search(&self, closed: &[bool], s: u32, t: u32, p: Profile) -> Option<(u64, Vec<u32>)> {
        let n = self.first.len() - 1;
        if s as usize >= n || t as usize >= n {
            return None;
        }
        if s == t {
            return Some((0, vec![s]));
        }
        let w = self.weights(p);
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut sc) => self.search_in(&mut sc, &w, closed, s, t),
            // Only a search within a search could find it borrowed; it gets arrays of its own.
            Err(_) => self.search_in(&mut Scratch::default(), &w, closed, s, t),
        })
    }

    /// Every arc's time in ms for `p`, computed on the first search for it.
    fn weights(&self, p: Profile) -> Arc<[u64]> {
        let mut known = self.weights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, w)) = known.iter().find(|(q, _)| *q == p) {
            return w.clone();
        }
        let w: Arc<[u64]> = (0..self.to.len()).map(|i| self.ms(i, p)).collect();
        // Profiles are few (one per robot model and tuning); keep the latest handful.
        if known.len() >= 8 {
            known.remove(0);
        }
        known.push((p, w.clone()));
        w
    }

    fn search_in(&self, sc: &mut Scratch, w: &[u64], closed: &[bool], s: u32, t: u32) -> Option<(u64, Vec<u32>)> {
        sc.start(self.first.len() - 1);
        sc.set(0, s, 0, u32::MAX);
        sc.set(1, t, 0, u32::MAX);
        sc.heap[0].push(Reverse((0, s)));
        sc.heap[1].push(Reverse((0, t)));
        let mut best = (u64::MAX, u32::MAX);
        loop {
            let top = |h: &BinaryHeap<Reverse<(u64, u32)>>| h.peek().map_or(u64::MAX, |r| r.0.0);
            let (tf, tb) = (top(&sc.heap[0]), top(&sc.heap[1]));
            if tf == u64::MAX && tb == u64::MAX || tf.saturating_add(tb) >= best.0 {
                break;
            }
            let d = usize::from(tb < tf);
            let Some(Reverse((du, u))) = sc.heap[d].pop() else { break };
            if du > sc.dist(d, u) {
                continue;
            }
            let (lo, hi) = if d == 0 {
                (self.first[u as usize] as usize, self.first[u as usize + 1] as usize)
            } else {
                (self.rfirst[u as usize] as usize, self.rfirst[u as usize + 1] as usize)
            };
            for k in lo..hi {
                let i = if d == 0 { k } else { self.rarc[k] as usize };
                if closed[i] {
                    continue;
                }
                let v = if d == 0 { self.to[i] } else { self.from[i] };
                let nd = du + w[i];
                if nd < sc.dist(d, v) {
                    sc.set(d, v, nd, i as u32);
                    sc.heap[d].push(Reverse((nd, v)));
                    let other = sc.dist(1 - d, v);
                    if other != u64::MAX && nd + other < best.0 {
                        best = (nd + other, v);
                    }
                }
            }
        }
        if best.0 == u64::MAX {
            return None;
        }
        let mut path = vec![best.1];
        let mut v = best.1;
        while sc.parent(0, v) != u32::MAX {
            v = self.from[sc.parent(0, v) as usize];
            path.push(v);
        }
        path.reverse();
        let mut v = best.1;
        while sc.parent(1, v) != u32::MAX {
            v = self.to[sc.parent(1, v) as usize];
            path.push(v);
        }
        Some((best.0, path))
    }
}
