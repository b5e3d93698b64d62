//! Contraction hierarchies: exact shortest paths in microseconds.
//!
//! Preprocessing contracts nodes one by one in order of importance (edge difference, contracted neighbours,
//! level; lazy updates), adding a shortcut `u -> w` through `v` only when a bounded witness search finds no path
//! at most as short that avoids `v`. Queries run a bidirectional upward Dijkstra with stall-on-demand over a
//! cache-friendly layout (nodes renumbered by rank, edges in CSR arrays), then unpack shortcuts into the original
//! node path. Many-to-many tables use the bucket method (one backward search per target, one forward search per
//! source). Weights are integer milliseconds, so results equal Dijkstra's exactly.
//!
//! Pure and single-threaded; a [`ChQuery`] holds the per-query scratch so one hierarchy serves many callers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Marks an original (non-shortcut) edge.
const NO_MID: u32 = u32::MAX;
pub const INF: u32 = u32::MAX;

/// One edge of the search graph, stored at its lower-ranked end.
#[derive(Debug, Clone, Copy)]
struct Arc {
    /// The higher-ranked end (by rank id).
    to: u32,
    weight: u32,
    /// The contracted node a shortcut bypasses (by rank id), or `NO_MID`.
    mid: u32,
}

/// A built hierarchy. Node ids outside are the caller's; inside, nodes are numbered by rank.
#[derive(Debug, Clone)]
pub struct ContractionHierarchy {
    n: usize,
    /// rank id of each caller node, and back.
    rank: Vec<u32>,
    node_of: Vec<u32>,
    /// Upward edges `v -> higher` (forward search), CSR by rank id.
    up_first: Vec<u32>,
    up: Vec<Arc>,
    /// Upward edges `higher -> v` reversed (backward search), CSR by rank id.
    down_first: Vec<u32>,
    down: Vec<Arc>,
    pub shortcuts: usize,
}

/// Adjacency during contraction.
#[derive(Debug, Clone, Copy)]
struct Link {
    other: u32,
    weight: u32,
    mid: u32,
}

struct Builder {
    out: Vec<Vec<Link>>,
    inc: Vec<Vec<Link>>,
    contracted: Vec<bool>,
    level: Vec<u32>,
    deleted_neighbours: Vec<u32>,
    // Witness search scratch.
    dist: Vec<u32>,
    touched: Vec<u32>,
    heap: BinaryHeap<Reverse<(u32, u32)>>,
}

/// Settled nodes a witness search may explore before it gives up (and the shortcut is added).
const WITNESS_SETTLE_LIMIT: usize = 500;
const SIMULATE_SETTLE_LIMIT: usize = 60;

impl Builder {
    fn add_or_improve(list: &mut Vec<Link>, other: u32, weight: u32, mid: u32) -> bool {
        if let Some(l) = list.iter_mut().find(|l| l.other == other) {
            if weight < l.weight {
                l.weight = weight;
                l.mid = mid;
                return true;
            }
            return false;
        }
        list.push(Link { other, weight, mid });
        true
    }

    /// Shortest distances from `s` avoiding `skip` and contracted nodes, up to `limit` and `max_settle` nodes.
    fn witness(&mut self, s: u32, skip: u32, limit: u32, max_settle: usize) {
        for &t in &self.touched {
            self.dist[t as usize] = INF;
        }
        self.touched.clear();
        self.heap.clear();
        self.dist[s as usize] = 0;
        self.touched.push(s);
        self.heap.push(Reverse((0, s)));
        let mut settled = 0;
        while let Some(Reverse((d, u))) = self.heap.pop() {
            if d > self.dist[u as usize] {
                continue;
            }
            if d > limit || settled >= max_settle {
                break;
            }
            settled += 1;
            for i in 0..self.out[u as usize].len() {
                let l = self.out[u as usize][i];
                if l.other == skip || self.contracted[l.other as usize] {
                    continue;
                }
                let nd = d.saturating_add(l.weight);
                if nd < self.dist[l.other as usize] {
                    if self.dist[l.other as usize] == INF {
                        self.touched.push(l.other);
                    }
                    self.dist[l.other as usize] = nd;
                    self.heap.push(Reverse((nd, l.other)));
                }
            }
        }
    }

    /// The shortcuts contracting `v` needs now: (from, to, weight).
    fn shortcuts_for(&mut self, v: u32, max_settle: usize, out: &mut Vec<(u32, u32, u32)>) {
        out.clear();
        let ins: Vec<Link> =
            self.inc[v as usize].iter().copied().filter(|l| !self.contracted[l.other as usize]).collect();
        let outs: Vec<Link> =
            self.out[v as usize].iter().copied().filter(|l| !self.contracted[l.other as usize]).collect();
        if ins.is_empty() || outs.is_empty() {
            return;
        }
        let max_out = outs.iter().map(|l| l.weight).max().unwrap_or(0);
        for i in &ins {
            let limit = i.weight.saturating_add(max_out);
            self.witness(i.other, v, limit, max_settle);
            for o in &outs {
                if o.other == i.other {
                    continue;
                }
                let via = i.weight.saturating_add(o.weight);
                if self.dist[o.other as usize] > via {
                    out.push((i.other, o.other, via));
                }
            }
        }
    }

    fn priority(&mut self, v: u32, scratch: &mut Vec<(u32, u32, u32)>) -> i64 {
        self.shortcuts_for(v, SIMULATE_SETTLE_LIMIT, scratch);
        let removed = self.inc[v as usize].iter().filter(|l| !self.contracted[l.other as usize]).count()
            + self.out[v as usize].iter().filter(|l| !self.contracted[l.other as usize]).count();
        let ed = scratch.len() as i64 - removed as i64;
        4 * ed + 2 * self.deleted_neighbours[v as usize] as i64 + self.level[v as usize] as i64
    }
}

impl ContractionHierarchy {
    /// Builds the hierarchy of a directed graph with `n` nodes and `(from, to, weight_ms)` edges.
    pub fn build(n: usize, edges: &[(u32, u32, u32)]) -> Self {
        let mut b = Builder {
            out: vec![Vec::new(); n],
            inc: vec![Vec::new(); n],
            contracted: vec![false; n],
            level: vec![0; n],
            deleted_neighbours: vec![0; n],
            dist: vec![INF; n],
            touched: Vec::new(),
            heap: BinaryHeap::new(),
        };
        for &(u, v, w) in edges {
            if u == v || u as usize >= n || v as usize >= n {
                continue;
            }
            Builder::add_or_improve(&mut b.out[u as usize], v, w, NO_MID);
            Builder::add_or_improve(&mut b.inc[v as usize], u, w, NO_MID);
        }
        let mut scratch = Vec::new();
        let mut queue: BinaryHeap<Reverse<(i64, u32)>> =
            (0..n as u32).map(|v| Reverse((b.priority(v, &mut scratch), v))).collect();
        let mut rank = vec![0u32; n];
        let mut next_rank = 0u32;
        let mut shortcuts = 0usize;
        while let Some(Reverse((p, v))) = queue.pop() {
            if b.contracted[v as usize] {
                continue;
            }
            // Lazy update: if the priority grew past the next candidate, try again later.
            let now = b.priority(v, &mut scratch);
            if now > p
                && let Some(Reverse((next, _))) = queue.peek()
                && now > *next
            {
                queue.push(Reverse((now, v)));
                continue;
            }
            b.shortcuts_for(v, WITNESS_SETTLE_LIMIT, &mut scratch);
            for &(u, w, wt) in scratch.iter() {
                if Builder::add_or_improve(&mut b.out[u as usize], w, wt, v) {
                    shortcuts += 1;
                }
                Builder::add_or_improve(&mut b.inc[w as usize], u, wt, v);
            }
            b.contracted[v as usize] = true;
            rank[v as usize] = next_rank;
            next_rank += 1;
            let mut neighbours: Vec<u32> = b.out[v as usize]
                .iter()
                .chain(b.inc[v as usize].iter())
                .map(|l| l.other)
                .filter(|&x| !b.contracted[x as usize])
                .collect();
            neighbours.sort_unstable();
            neighbours.dedup();
            for x in neighbours {
                b.deleted_neighbours[x as usize] += 1;
                b.level[x as usize] = b.level[x as usize].max(b.level[v as usize] + 1);
                let p = b.priority(x, &mut scratch);
                queue.push(Reverse((p, x)));
            }
        }
        // Search graph by rank id: every edge sits at its lower-ranked end.
        let mut up_lists: Vec<Vec<Arc>> = vec![Vec::new(); n];
        let mut down_lists: Vec<Vec<Arc>> = vec![Vec::new(); n];
        for u in 0..n {
            let ru = rank[u];
            for l in &b.out[u] {
                let rw = rank[l.other as usize];
                let mid = if l.mid == NO_MID { NO_MID } else { rank[l.mid as usize] };
                if ru < rw {
                    up_lists[ru as usize].push(Arc { to: rw, weight: l.weight, mid });
                } else {
                    down_lists[rw as usize].push(Arc { to: ru, weight: l.weight, mid });
                }
            }
        }
        let (up_first, up) = csr(up_lists);
        let (down_first, down) = csr(down_lists);
        let mut node_of = vec![0u32; n];
        for (v, &r) in rank.iter().enumerate() {
            node_of[r as usize] = v as u32;
        }
        Self { n, rank, node_of, up_first, up, down_first, down, shortcuts }
    }

    pub fn node_count(&self) -> usize {
        self.n
    }

    /// Bytes held by the query structures.
    pub fn memory_bytes(&self) -> usize {
        (self.rank.len() + self.node_of.len() + self.up_first.len() + self.down_first.len()) * 4
            + (self.up.len() + self.down.len()) * std::mem::size_of::<Arc>()
    }

    fn up(&self, r: u32) -> &[Arc] {
        &self.up[self.up_first[r as usize] as usize..self.up_first[r as usize + 1] as usize]
    }
    fn down(&self, r: u32) -> &[Arc] {
        &self.down[self.down_first[r as usize] as usize..self.down_first[r as usize + 1] as usize]
    }

    /// Appends the original nodes (rank ids) of edge `a -> b` after `a`, unpacking shortcuts.
    fn unpack(&self, a: u32, b: u32, out: &mut Vec<u32>) {
        let mut stack = vec![(a, b)];
        while let Some((x, y)) = stack.pop() {
            let mid = self.arc(x, y).map_or(NO_MID, |arc| arc.mid);
            if mid == NO_MID {
                out.push(y);
            } else {
                // Process x -> mid first, then mid -> y.
                stack.push((mid, y));
                stack.push((x, mid));
            }
        }
    }

    /// The cheapest arc between two rank ids, whichever end stores it.
    fn arc(&self, x: u32, y: u32) -> Option<Arc> {
        if x < y {
            self.up(x).iter().filter(|a| a.to == y).min_by_key(|a| a.weight).copied()
        } else {
            self.down(y).iter().filter(|a| a.to == x).min_by_key(|a| a.weight).copied()
        }
    }
}

fn csr(lists: Vec<Vec<Arc>>) -> (Vec<u32>, Vec<Arc>) {
    let mut first = Vec::with_capacity(lists.len() + 1);
    let mut all = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    first.push(0);
    for l in lists {
        all.extend(l);
        first.push(all.len() as u32);
    }
    (first, all)
}

/// Per-caller scratch for queries on one hierarchy.
#[derive(Debug, Clone)]
pub struct ChQuery {
    dist: [Vec<u32>; 2],
    parent: [Vec<u32>; 2],
    touched: [Vec<u32>; 2],
    heap: [BinaryHeap<Reverse<(u32, u32)>>; 2],
    /// Bucket entries for many-to-many: per rank id, (target index, distance).
    buckets: Vec<Vec<(u32, u32)>>,
    bucket_touched: Vec<u32>,
}

impl ChQuery {
    pub fn new(ch: &ContractionHierarchy) -> Self {
        Self {
            dist: [vec![INF; ch.n], vec![INF; ch.n]],
            parent: [vec![u32::MAX; ch.n], vec![u32::MAX; ch.n]],
            touched: [Vec::new(), Vec::new()],
            heap: [BinaryHeap::new(), BinaryHeap::new()],
            buckets: vec![Vec::new(); ch.n],
            bucket_touched: Vec::new(),
        }
    }

    fn reset(&mut self) {
        for d in 0..2 {
            for &v in &self.touched[d] {
                self.dist[d][v as usize] = INF;
                self.parent[d][v as usize] = u32::MAX;
            }
            self.touched[d].clear();
            self.heap[d].clear();
        }
    }

    fn init(&mut self, d: usize, r: u32) {
        self.dist[d][r as usize] = 0;
        self.touched[d].push(r);
        self.heap[d].push(Reverse((0, r)));
    }

    /// Is `u` (settled in direction `d` at `du`) reached more cheaply from a higher node? Then its edges are
    /// not relaxed (stall-on-demand).
    fn stalled(&self, ch: &ContractionHierarchy, d: usize, u: u32, du: u32) -> bool {
        let incoming = if d == 0 { ch.down(u) } else { ch.up(u) };
        incoming.iter().any(|a| {
            let dx = self.dist[d][a.to as usize];
            dx != INF && dx.saturating_add(a.weight) < du
        })
    }

    /// One step in direction `d`; returns false when that direction is exhausted or can no longer improve.
    fn step(&mut self, ch: &ContractionHierarchy, d: usize, best: &mut (u32, u32)) -> bool {
        let Some(Reverse((du, u))) = self.heap[d].pop() else { return false };
        if du > self.dist[d][u as usize] {
            return true;
        }
        if du >= best.0 {
            self.heap[d].clear();
            return false;
        }
        let other = self.dist[1 - d][u as usize];
        if other != INF && du.saturating_add(other) < best.0 {
            *best = (du + other, u);
        }
        if self.stalled(ch, d, u, du) {
            return true;
        }
        let arcs = if d == 0 { ch.up(u) } else { ch.down(u) };
        for a in arcs {
            let nd = du.saturating_add(a.weight);
            if nd < self.dist[d][a.to as usize] {
                if self.dist[d][a.to as usize] == INF {
                    self.touched[d].push(a.to);
                }
                self.dist[d][a.to as usize] = nd;
                self.parent[d][a.to as usize] = u;
                self.heap[d].push(Reverse((nd, a.to)));
            }
        }
        true
    }

    /// Shortest distance in ms, and the meeting node, or `None`.
    fn search(&mut self, ch: &ContractionHierarchy, s: u32, t: u32) -> Option<(u32, u32)> {
        if s as usize >= ch.n || t as usize >= ch.n {
            return None;
        }
        self.reset();
        let (rs, rt) = (ch.rank[s as usize], ch.rank[t as usize]);
        self.init(0, rs);
        self.init(1, rt);
        let mut best = (INF, u32::MAX);
        let (mut f, mut b) = (true, true);
        while f || b {
            if f {
                f = self.step(ch, 0, &mut best);
            }
            if b {
                b = self.step(ch, 1, &mut best);
            }
        }
        (best.0 != INF).then_some(best)
    }

    /// Shortest travel time from `s` to `t` in ms.
    pub fn distance(&mut self, ch: &ContractionHierarchy, s: u32, t: u32) -> Option<u32> {
        self.search(ch, s, t).map(|(d, _)| d)
    }

    /// Shortest travel time and the node path (caller ids, `s` first, `t` last).
    pub fn path(&mut self, ch: &ContractionHierarchy, s: u32, t: u32) -> Option<(u32, Vec<u32>)> {
        let (d, meet) = self.search(ch, s, t)?;
        // Up-path s -> meet, in rank ids.
        let mut up_chain = vec![meet];
        let mut x = meet;
        while self.parent[0][x as usize] != u32::MAX {
            x = self.parent[0][x as usize];
            up_chain.push(x);
        }
        up_chain.reverse();
        let mut ranks = vec![up_chain[0]];
        for w in up_chain.windows(2) {
            ch.unpack(w[0], w[1], &mut ranks);
        }
        let mut x = meet;
        while self.parent[1][x as usize] != u32::MAX {
            let y = self.parent[1][x as usize];
            ch.unpack(x, y, &mut ranks);
            x = y;
        }
        Some((d, ranks.into_iter().map(|r| ch.node_of[r as usize]).collect()))
    }

    /// Travel times in ms for every (source, target) pair, row-major; `INF` where unreachable.
    pub fn table(&mut self, ch: &ContractionHierarchy, sources: &[u32], targets: &[u32]) -> Vec<u32> {
        let mut out = vec![INF; sources.len() * targets.len()];
        for &v in &self.bucket_touched {
            self.buckets[v as usize].clear();
        }
        self.bucket_touched.clear();
        // Backward upward search from each target leaves (target, distance) in the buckets it settles.
        for (j, &t) in targets.iter().enumerate() {
            if t as usize >= ch.n {
                continue;
            }
            self.reset();
            self.init(1, ch.rank[t as usize]);
            while let Some(Reverse((du, u))) = self.heap[1].pop() {
                if du > self.dist[1][u as usize] || self.stalled(ch, 1, u, du) {
                    continue;
                }
                if self.buckets[u as usize].is_empty() {
                    self.bucket_touched.push(u);
                }
                self.buckets[u as usize].push((j as u32, du));
                for a in ch.down(u) {
                    let nd = du.saturating_add(a.weight);
                    if nd < self.dist[1][a.to as usize] {
                        if self.dist[1][a.to as usize] == INF {
                            self.touched[1].push(a.to);
                        }
                        self.dist[1][a.to as usize] = nd;
                        self.heap[1].push(Reverse((nd, a.to)));
                    }
                }
            }
        }
        // Forward upward search from each source scans the buckets.
        let m = targets.len();
        for (i, &s) in sources.iter().enumerate() {
            if s as usize >= ch.n {
                continue;
            }
            self.reset();
            self.init(0, ch.rank[s as usize]);
            let row = &mut out[i * m..(i + 1) * m];
            while let Some(Reverse((du, u))) = self.heap[0].pop() {
                if du > self.dist[0][u as usize] || self.stalled(ch, 0, u, du) {
                    continue;
                }
                for &(j, dt) in &self.buckets[u as usize] {
                    let total = du.saturating_add(dt);
                    if total < row[j as usize] {
                        row[j as usize] = total;
                    }
                }
                for a in ch.up(u) {
                    let nd = du.saturating_add(a.weight);
                    if nd < self.dist[0][a.to as usize] {
                        if self.dist[0][a.to as usize] == INF {
                            self.touched[0].push(a.to);
                        }
                        self.dist[0][a.to as usize] = nd;
                        self.heap[0].push(Reverse((nd, a.to)));
                    }
                }
            }
        }
        out
    }
}

/// Plain Dijkstra over the same integer weights: the oracle the hierarchy is tested against.
pub fn dijkstra(n: usize, edges: &[(u32, u32, u32)], s: u32, t: u32) -> Option<u32> {
    let mut adj: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
    for &(u, v, w) in edges {
        adj[u as usize].push((v, w));
    }
    let mut dist = vec![INF; n];
    let mut heap = BinaryHeap::new();
    dist[s as usize] = 0;
    heap.push(Reverse((0u32, s)));
    while let Some(Reverse((d, u))) = heap.pop() {
        if u == t {
            return Some(d);
        }
        if d > dist[u as usize] {
            continue;
        }
        for &(v, w) in &adj[u as usize] {
            let nd = d.saturating_add(w);
            if nd < dist[v as usize] {
                dist[v as usize] = nd;
                heap.push(Reverse((nd, v)));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random directed graph: a grid with one-way streets and varied weights.
    fn city(side: u32, seed: u64) -> (usize, Vec<(u32, u32, u32)>) {
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let id = |r: u32, c: u32| r * side + c;
        let mut edges = Vec::new();
        for r in 0..side {
            for c in 0..side {
                for (dr, dc) in [(0, 1), (1, 0)] {
                    let (r2, c2) = (r + dr, c + dc);
                    if r2 >= side || c2 >= side {
                        continue;
                    }
                    let w = 1_000 + (next() % 9_000) as u32;
                    match next() % 5 {
                        0 => edges.push((id(r, c), id(r2, c2), w)),
                        1 => edges.push((id(r2, c2), id(r, c), w)),
                        _ => {
                            edges.push((id(r, c), id(r2, c2), w));
                            edges.push((id(r2, c2), id(r, c), w + (next() % 50) as u32));
                        }
                    }
                }
            }
        }
        ((side * side) as usize, edges)
    }

    #[test]
    fn distances_and_paths_equal_dijkstra() {
        let (n, edges) = city(20, 7);
        let ch = ContractionHierarchy::build(n, &edges);
        let mut q = ChQuery::new(&ch);
        let weight: std::collections::HashMap<(u32, u32), u32> = {
            let mut m = std::collections::HashMap::new();
            for &(u, v, w) in &edges {
                let e = m.entry((u, v)).or_insert(w);
                *e = (*e).min(w);
            }
            m
        };
        for s in (0..n as u32).step_by(7) {
            for t in (0..n as u32).step_by(11) {
                let want = dijkstra(n, &edges, s, t);
                assert_eq!(q.distance(&ch, s, t), want, "{s}->{t}");
                match q.path(&ch, s, t) {
                    None => assert_eq!(want, None),
                    Some((d, path)) => {
                        assert_eq!(Some(d), want);
                        assert_eq!((path[0], *path.last().expect("non-empty")), (s, t));
                        let sum: u32 = path.windows(2).map(|w| weight[&(w[0], w[1])]).sum();
                        assert_eq!(sum, d, "the unpacked path has the reported length");
                    }
                }
            }
        }
    }

    #[test]
    fn tables_equal_point_queries() {
        let (n, edges) = city(15, 3);
        let ch = ContractionHierarchy::build(n, &edges);
        let mut q = ChQuery::new(&ch);
        let sources: Vec<u32> = (0..n as u32).step_by(13).collect();
        let targets: Vec<u32> = (5..n as u32).step_by(17).collect();
        let table = q.table(&ch, &sources, &targets);
        for (i, &s) in sources.iter().enumerate() {
            for (j, &t) in targets.iter().enumerate() {
                let want = dijkstra(n, &edges, s, t).unwrap_or(INF);
                assert_eq!(table[i * targets.len() + j], want, "{s}->{t}");
            }
        }
    }
}
