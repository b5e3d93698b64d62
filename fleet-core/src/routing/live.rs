//! The live graph: the map in flat arrays (outgoing and incoming arcs per node) with a per-arc closed flag, and an
//! exact bidirectional Dijkstra that skips closed arcs. It answers the routes a precomputed hierarchy cannot
//! (a path over a blocked sidewalk) and is the oracle of the fast routers.

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
        let mut dist = [vec![u64::MAX; n], vec![u64::MAX; n]];
        let mut parent = [vec![u32::MAX; n], vec![u32::MAX; n]];
        let mut heap: [std::collections::BinaryHeap<std::cmp::Reverse<(u64, u32)>>; 2] = Default::default();
        dist[0][s as usize] = 0;
        dist[1][t as usize] = 0;
        heap[0].push(std::cmp::Reverse((0, s)));
        heap[1].push(std::cmp::Reverse((0, t)));
        let mut best = (u64::MAX, u32::MAX);
        loop {
            let top =
                |h: &std::collections::BinaryHeap<std::cmp::Reverse<(u64, u32)>>| h.peek().map_or(u64::MAX, |r| r.0.0);
            let (tf, tb) = (top(&heap[0]), top(&heap[1]));
            if tf == u64::MAX && tb == u64::MAX || tf.saturating_add(tb) >= best.0 {
                break;
            }
            let d = usize::from(tb < tf);
            let Some(std::cmp::Reverse((du, u))) = heap[d].pop() else { break };
            if du > dist[d][u as usize] {
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
                let nd = du + self.ms(i, p);
                if nd < dist[d][v as usize] {
                    dist[d][v as usize] = nd;
                    parent[d][v as usize] = i as u32;
                    heap[d].push(std::cmp::Reverse((nd, v)));
                    let other = dist[1 - d][v as usize];
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
        while parent[0][v as usize] != u32::MAX {
            v = self.from[parent[0][v as usize] as usize];
            path.push(v);
        }
        path.reverse();
        let mut v = best.1;
        while parent[1][v as usize] != u32::MAX {
            v = self.to[parent[1][v as usize] as usize];
            path.push(v);
        }
        Some((best.0, path))
    }
}
