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
pub(crate) const NO_MID: u32 = u32::MAX;
pub const INF: u32 = u32::MAX;

/// One side of the search graph (upward arcs, or reversed downward arcs), every arc stored at its lower-ranked
/// end, in CSR form by rank id. Search data (`to`, `weight`) and unpacking data (`unpack`) live in
/// separate arrays so the search touches only what it reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Side {
    pub(crate) first: Vec<u32>,
    /// The higher-ranked end of each arc.
    pub(crate) to: Vec<u32>,
    pub(crate) weight: Vec<u32>,
    /// Per arc: for a shortcut its two halves as arc refs (first, second in travel order), for an original
    /// edge `[NO_MID, head]` where `head` is the caller's id of the node the edge arrives at. One array, so
    /// unpacking reads one place per step.
    unpack: Vec<[u32; 2]>,
}

impl Side {
    pub(crate) fn range(&self, r: u32) -> std::ops::Range<usize> {
        self.first[r as usize] as usize..self.first[r as usize + 1] as usize
    }
}

/// An arc reference: the index into `up`, or into `down` with this bit set.
pub(crate) const DOWN_BIT: u32 = 1 << 31;

/// A built hierarchy. Node ids outside are the caller's; inside, nodes are numbered by rank.
#[derive(Debug, Clone)]
pub struct ContractionHierarchy {
    pub(crate) n: usize,
    /// rank id of each caller node, and back.
    pub(crate) rank: Vec<u32>,
    pub(crate) node_of: Vec<u32>,
    /// Arcs `v -> higher` (forward search).
    pub(crate) up: Side,
    /// Arcs `higher -> v`, stored at `v` (backward search).
    pub(crate) down: Side,
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
                // Drop the links to `v` from its neighbours: later witness searches never look at them again.
                // (Its own lists stay: they become the search graph below.)
                b.out[x as usize].retain(|l| l.other != v);
                b.inc[x as usize].retain(|l| l.other != v);
                b.deleted_neighbours[x as usize] += 1;
                b.level[x as usize] = b.level[x as usize].max(b.level[v as usize] + 1);
                let p = b.priority(x, &mut scratch);
                queue.push(Reverse((p, x)));
            }
        }
        // Search graph by rank id: every edge sits at its lower-ranked end. Entries: (to, weight, mid, head).
        let mut up_lists: Vec<Vec<(u32, u32, u32, u32)>> = vec![Vec::new(); n];
        let mut down_lists: Vec<Vec<(u32, u32, u32, u32)>> = vec![Vec::new(); n];
        // Each node's lists now hold only links to nodes contracted after it (the others were dropped when those
        // were contracted): `out` gives its upward arcs, `inc` the downward arcs that arrive at it.
        for u in 0..n {
            let ru = rank[u];
            for l in &b.out[u] {
                let mid = if l.mid == NO_MID { NO_MID } else { rank[l.mid as usize] };
                up_lists[ru as usize].push((rank[l.other as usize], l.weight, mid, l.other));
            }
            for l in &b.inc[u] {
                let mid = if l.mid == NO_MID { NO_MID } else { rank[l.mid as usize] };
                down_lists[ru as usize].push((rank[l.other as usize], l.weight, mid, u as u32));
            }
        }
        let mids_up: Vec<Vec<u32>> = up_lists.iter().map(|l| l.iter().map(|a| a.2).collect()).collect();
        let mids_down: Vec<Vec<u32>> = down_lists.iter().map(|l| l.iter().map(|a| a.2).collect()).collect();
        let mut up = side(up_lists);
        let mut down = side(down_lists);
        // A shortcut a -> c via m splits into a -> m (stored at m in `down`, to = a) and m -> c (stored at m in
        // `up`, to = c): m was contracted before both ends, and the weights of its arcs were final by then.
        let find = |sd: &Side, at: u32, to: u32| -> u32 {
            sd.range(at).filter(|&i| sd.to[i] == to).min_by_key(|&i| sd.weight[i]).map_or(NO_MID, |i| i as u32)
        };
        for (owner, mids) in mids_up.iter().enumerate() {
            for (k, &m) in mids.iter().enumerate() {
                if m != NO_MID {
                    let i = up.first[owner] as usize + k;
                    let (a, c) = (owner as u32, up.to[i]);
                    up.unpack[i] = [find(&down, m, a) | DOWN_BIT, find(&up, m, c)];
                }
            }
        }
        for (owner, mids) in mids_down.iter().enumerate() {
            for (k, &m) in mids.iter().enumerate() {
                if m != NO_MID {
                    let i = down.first[owner] as usize + k;
                    let (a, c) = (down.to[i], owner as u32);
                    down.unpack[i] = [find(&down, m, a) | DOWN_BIT, find(&up, m, c)];
                }
            }
        }
        let mut node_of = vec![0u32; n];
        for (v, &r) in rank.iter().enumerate() {
            node_of[r as usize] = v as u32;
        }
        Self { n, rank, node_of, up, down, shortcuts }
    }

    pub fn node_count(&self) -> usize {
        self.n
    }

    /// Bytes held by the query structures.
    pub fn memory_bytes(&self) -> usize {
        let side = |s: &Side| (s.first.len() + s.to.len() + s.weight.len() + 2 * s.unpack.len()) * 4;
        (self.rank.len() + self.node_of.len()) * 4 + side(&self.up) + side(&self.down)
    }

    /// Shortest times in ms from `s` to every node, by caller id (`INF` where there is no path).
    pub fn from_one(&self, s: u32) -> Vec<u32> {
        self.sweep(s, &self.up, &self.down)
    }

    /// Shortest times in ms from every node to `t`, by caller id (`INF` where there is no path).
    pub fn to_one(&self, t: u32) -> Vec<u32> {
        self.sweep(t, &self.down, &self.up)
    }

    /// PHAST (Delling et al.): an upward search from `s` over `upward`, then one pass over every node from the
    /// highest rank down that relaxes the `downward` arcs into each node. Every arc into a node comes from a
    /// higher rank, already final when the pass reaches it, so the pass is exact. It reads the arc arrays in
    /// order, a few nanoseconds per arc: cheaper than a point query per node once many are wanted.
    fn sweep(&self, s: u32, upward: &Side, downward: &Side) -> Vec<u32> {
        let n = self.n;
        if s as usize >= n {
            return vec![INF; n];
        }
        let mut dist = vec![INF; n];
        let mut heap = BinaryHeap::new();
        let r = self.rank[s as usize];
        dist[r as usize] = 0;
        heap.push(Reverse((0u32, r)));
        while let Some(Reverse((du, u))) = heap.pop() {
            if du > dist[u as usize] {
                continue;
            }
            for i in upward.range(u) {
                let (to, nd) = (upward.to[i] as usize, du.saturating_add(upward.weight[i]));
                if nd < dist[to] {
                    dist[to] = nd;
                    heap.push(Reverse((nd, to as u32)));
                }
            }
        }
        for v in (0..n).rev() {
            let mut best = dist[v];
            for i in downward.range(v as u32) {
                let du = dist[downward.to[i] as usize];
                if du != INF {
                    best = best.min(du.saturating_add(downward.weight[i]));
                }
            }
            dist[v] = best;
        }
        let mut out = vec![INF; n];
        for (r, d) in dist.into_iter().enumerate() {
            out[self.node_of[r] as usize] = d;
        }
        out
    }

    /// Appends the original nodes (caller ids) an arc passes through after its start, in travel order.
    pub(crate) fn unpack(&self, arc: u32, stack: &mut Vec<u32>, out: &mut Vec<u32>) {
        stack.clear();
        stack.push(arc);
        while let Some(r) = stack.pop() {
            let (sd, i) =
                if r & DOWN_BIT != 0 { (&self.down, (r & !DOWN_BIT) as usize) } else { (&self.up, r as usize) };
            let [first, second] = sd.unpack[i];
            if first == NO_MID {
                out.push(second);
            } else {
                stack.push(second);
                stack.push(first);
            }
        }
    }
}

/// CSR from per-node lists of (to, weight, mid, head); `head` is a caller id.
fn side(lists: Vec<Vec<(u32, u32, u32, u32)>>) -> Side {
    let total = lists.iter().map(Vec::len).sum();
    let mut s = Side {
        first: Vec::with_capacity(lists.len() + 1),
        to: Vec::with_capacity(total),
        weight: Vec::with_capacity(total),
        unpack: Vec::with_capacity(total),
    };
    s.first.push(0);
    for l in lists {
        for (to, w, _mid, head) in l {
            s.to.push(to);
            s.weight.push(w);
            s.unpack.push([NO_MID, head]);
        }
        s.first.push(s.to.len() as u32);
    }
    s
}

/// Per-caller scratch for queries on one hierarchy.
#[derive(Debug, Clone)]
pub struct ChQuery {
    dist: [Vec<u32>; 2],
    /// The arc (ref) each node was reached by, per direction.
    parent: [Vec<u32>; 2],
    touched: [Vec<u32>; 2],
    heap: [BinaryHeap<Reverse<(u32, u32)>>; 2],
    stack: Vec<u32>,
    /// Bucket entries for many-to-many: per rank id, (target index, distance).
    buckets: Vec<Vec<(u32, u32)>>,
    bucket_touched: Vec<u32>,
}

impl ChQuery {
    pub fn new(ch: &ContractionHierarchy) -> Self {
        Self {
            dist: [vec![INF; ch.n], vec![INF; ch.n]],
            parent: [vec![NO_MID; ch.n], vec![NO_MID; ch.n]],
            touched: [Vec::new(), Vec::new()],
            heap: [BinaryHeap::new(), BinaryHeap::new()],
            stack: Vec::new(),
            buckets: vec![Vec::new(); ch.n],
            bucket_touched: Vec::new(),
        }
    }

    fn reset(&mut self) {
        for d in 0..2 {
            for &v in &self.touched[d] {
                self.dist[d][v as usize] = INF;
                self.parent[d][v as usize] = NO_MID;
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

    /// Is `u` (settled in direction `d` at `du`) reached more cheaply from a higher node? Then its arcs are
    /// not relaxed (stall-on-demand).
    fn stalled(&self, ch: &ContractionHierarchy, d: usize, u: u32, du: u32) -> bool {
        let sd = if d == 0 { &ch.down } else { &ch.up };
        let dist = &self.dist[d];
        sd.range(u).any(|i| {
            let dx = dist[sd.to[i] as usize];
            dx != INF && dx.saturating_add(sd.weight[i]) < du
        })
    }

    /// Relaxes the arcs of `u` in direction `d`.
    fn relax(&mut self, ch: &ContractionHierarchy, d: usize, u: u32, du: u32) {
        let (sd, bit) = if d == 0 { (&ch.up, 0) } else { (&ch.down, DOWN_BIT) };
        for i in sd.range(u) {
            let (to, nd) = (sd.to[i], du.saturating_add(sd.weight[i]));
            if nd < self.dist[d][to as usize] {
                if self.dist[d][to as usize] == INF {
                    self.touched[d].push(to);
                }
                self.dist[d][to as usize] = nd;
                self.parent[d][to as usize] = i as u32 | bit;
                self.heap[d].push(Reverse((nd, to)));
            }
        }
    }

    /// One step in direction `d`; returns false when that direction can no longer improve `best`.
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
        if !self.stalled(ch, d, u, du) {
            self.relax(ch, d, u, du);
        }
        true
    }

    /// Shortest distance in ms, and the meeting node (rank id), or `None`.
    fn search(&mut self, ch: &ContractionHierarchy, s: u32, t: u32) -> Option<(u32, u32)> {
        if s as usize >= ch.n || t as usize >= ch.n {
            return None;
        }
        self.reset();
        self.init(0, ch.rank[s as usize]);
        self.init(1, ch.rank[t as usize]);
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
        let mut nodes = Vec::with_capacity(64);
        nodes.push(s);
        // The forward arcs from s up to the meeting node, collected backwards, unpacked in travel order.
        let mut chain = Vec::new();
        let mut x = meet;
        while self.parent[0][x as usize] != NO_MID {
            let arc = self.parent[0][x as usize];
            chain.push(arc);
            // The arc is stored at its lower end, where it came from.
            x = owner(ch, arc);
        }
        for &arc in chain.iter().rev() {
            ch.unpack(arc, &mut self.stack, &mut nodes);
        }
        // The backward arcs from the meeting node down to t, already in travel order.
        let mut x = meet;
        while self.parent[1][x as usize] != NO_MID {
            let arc = self.parent[1][x as usize];
            ch.unpack(arc, &mut self.stack, &mut nodes);
            x = owner(ch, arc);
        }
        Some((d, nodes))
    }

    /// Travel times in ms for every (source, target) pair, row-major; `INF` where unreachable.
    pub fn table(&mut self, ch: &ContractionHierarchy, sources: &[u32], targets: &[u32]) -> Vec<u32> {
        let mut out = vec![INF; sources.len() * targets.len()];
        for &v in &self.bucket_touched {
            self.buckets[v as usize].clear();
        }
        self.bucket_touched.clear();
        // A backward upward search from each target leaves (target, distance) in the buckets it settles.
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
                self.relax(ch, 1, u, du);
            }
        }
        // A forward upward search from each source scans the buckets.
        let m = targets.len();
        for (i, &s) in sources.iter().enumerate() {
            if s as usize >= ch.n {
                continue;
            }
            self.reset();
            self.init(0, ch.rank[s as usize]);
            while let Some(Reverse((du, u))) = self.heap[0].pop() {
                if du > self.dist[0][u as usize] || self.stalled(ch, 0, u, du) {
                    continue;
                }
                let row = &mut out[i * m..(i + 1) * m];
                for &(j, dt) in &self.buckets[u as usize] {
                    let total = du.saturating_add(dt);
                    if total < row[j as usize] {
                        row[j as usize] = total;
                    }
                }
                self.relax(ch, 0, u, du);
            }
        }
        out
    }
}

impl ChQuery {
    /// The complete upward search space of rank id `r` in direction `d` (0 forward, 1 backward): every settled,
    /// unstalled node with its distance and the arc it was reached by (`NO_MID` for `r` itself), in settle
    /// order. This is `r`'s hub label before sorting.
    pub(crate) fn search_space(&mut self, ch: &ContractionHierarchy, d: usize, r: u32, out: &mut Vec<(u32, u32, u32)>) {
        out.clear();
        self.reset();
        self.init(d, r);
        while let Some(Reverse((du, u))) = self.heap[d].pop() {
            if du > self.dist[d][u as usize] || self.stalled(ch, d, u, du) {
                continue;
            }
            out.push((u, du, self.parent[d][u as usize]));
            self.relax(ch, d, u, du);
        }
    }
}

/// The node (rank id) an arc is stored at.
pub(crate) fn owner(ch: &ContractionHierarchy, arc: u32) -> u32 {
    let (sd, i) = if arc & DOWN_BIT != 0 { (&ch.down, arc & !DOWN_BIT) } else { (&ch.up, arc) };
    // CSR: the owner is the last r with first[r] <= i.
    (sd.first.partition_point(|&f| f <= i) - 1) as u32
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

impl ChQuery {
    /// Nodes settled (forward, backward) by the last point query; for tuning.
    pub fn last_search_space(&self) -> (usize, usize) {
        (self.touched[0].len(), self.touched[1].len())
    }
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
    fn one_to_all_and_all_to_one_equal_dijkstra() {
        for seed in [3, 11] {
            let (n, edges) = city(14, seed);
            let ch = ContractionHierarchy::build(n, &edges);
            for s in (0..n as u32).step_by(19) {
                let (from, to) = (ch.from_one(s), ch.to_one(s));
                assert_eq!((from.len(), to.len()), (n, n));
                for v in 0..n as u32 {
                    assert_eq!(from[v as usize], dijkstra(n, &edges, s, v).unwrap_or(INF), "{s}->{v}");
                    assert_eq!(to[v as usize], dijkstra(n, &edges, v, s).unwrap_or(INF), "{v}->{s}");
                }
            }
        }
        // A node with no way in or out, and an id outside the graph.
        let ch = ContractionHierarchy::build(3, &[(0, 1, 5)]);
        assert_eq!(ch.from_one(0), vec![0, 5, INF]);
        assert_eq!(ch.to_one(1), vec![5, 0, INF]);
        assert_eq!(ch.from_one(7), vec![INF; 3]);
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
