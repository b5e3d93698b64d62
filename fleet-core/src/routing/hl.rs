//! Hub labels on top of a contraction hierarchy: every node keeps its upward search spaces (forward and backward)
//! as sorted labels, so a distance is one merge of two short sorted lists, and a path follows predecessor links
//! inside the two labels and copies pre-expanded arcs. Built only when labels and expansions fit a memory
//! budget; larger maps answer from the hierarchy itself.

use crate::routing::ch::{ChQuery, ContractionHierarchy, DOWN_BIT, NO_MID, owner};

/// One direction's labels, flattened: the entries of caller node `v` are `first[v]..first[v + 1]`, sorted by
/// hub rank.
#[derive(Debug, Clone, Default)]
struct Labels {
    first: Vec<u32>,
    hub: Vec<u32>,
    dist: Vec<u32>,
    /// Index (within the same label) of the entry the hub was reached from; `NO_MID` for the node itself.
    pred: Vec<u32>,
    /// The arc ref that reached the hub.
    arc: Vec<u32>,
}

/// Every arc of the hierarchy expanded to its original nodes (caller ids, the arc's start excluded).
#[derive(Debug, Clone, Default)]
struct Expansions {
    first: Vec<u32>,
    nodes: Vec<u32>,
}

impl Expansions {
    fn of(&self, i: usize) -> &[u32] {
        &self.nodes[self.first[i] as usize..self.first[i + 1] as usize]
    }
}

#[derive(Debug, Clone)]
pub struct HubLabels {
    fwd: Labels,
    bwd: Labels,
    up: Expansions,
    down: Expansions,
}

impl HubLabels {
    /// Builds the labels, or `None` when they (with the arc expansions) would take more than `budget_bytes`.
    pub fn build(ch: &ContractionHierarchy, budget_bytes: usize) -> Option<Self> {
        let mut stack = Vec::new();
        let mut expand = |side: &crate::routing::ch::Side, bit: u32, budget: &mut usize| -> Option<Expansions> {
            let mut e = Expansions { first: Vec::with_capacity(side.to.len() + 1), nodes: Vec::new() };
            e.first.push(0);
            for i in 0..side.to.len() {
                ch.unpack(i as u32 | bit, &mut stack, &mut e.nodes);
                e.first.push(e.nodes.len() as u32);
                if e.nodes.len() * 4 > *budget {
                    return None;
                }
            }
            *budget -= e.nodes.len() * 4 + e.first.len() * 4;
            Some(e)
        };
        let mut budget = budget_bytes;
        let up = expand(&ch.up, 0, &mut budget)?;
        let down = expand(&ch.down, DOWN_BIT, &mut budget)?;
        let mut q = ChQuery::new(ch);
        let mut space = Vec::new();
        let mut labels = [Labels::default(), Labels::default()];
        for (d, l) in labels.iter_mut().enumerate() {
            l.first.push(0);
            for v in 0..ch.n {
                q.search_space(ch, d, ch.rank[v], &mut space);
                // Sort by hub rank, remembering where each settled entry went to remap predecessors.
                let mut order: Vec<usize> = (0..space.len()).collect();
                order.sort_unstable_by_key(|&i| space[i].0);
                let mut pos = vec![0u32; space.len()];
                for (k, &i) in order.iter().enumerate() {
                    pos[i] = k as u32;
                }
                let index_of: std::collections::HashMap<u32, usize> =
                    space.iter().enumerate().map(|(i, e)| (e.0, i)).collect();
                for &i in &order {
                    let (hub, dist, arc) = space[i];
                    let pred = if arc == NO_MID { NO_MID } else { pos[index_of[&owner(ch, arc)]] };
                    l.hub.push(hub);
                    l.dist.push(dist);
                    l.pred.push(pred);
                    l.arc.push(arc);
                }
                l.first.push(l.hub.len() as u32);
                if l.hub.len() * 16 > budget {
                    return None;
                }
            }
            budget -= l.hub.len() * 16;
        }
        let [fwd, bwd] = labels;
        Some(Self { fwd, bwd, up, down })
    }

    pub fn memory_bytes(&self) -> usize {
        let l = |l: &Labels| (l.first.len() + 4 * l.hub.len()) * 4;
        let e = |e: &Expansions| (e.first.len() + e.nodes.len()) * 4;
        l(&self.fwd) + l(&self.bwd) + e(&self.up) + e(&self.down)
    }

    /// Mean label size (entries per node and direction).
    pub fn mean_label(&self) -> f64 {
        (self.fwd.hub.len() + self.bwd.hub.len()) as f64 / (2.0 * (self.fwd.first.len() - 1).max(1) as f64)
    }

    /// (distance, forward entry index, backward entry index) of the best common hub.
    fn meet(&self, s: u32, t: u32) -> Option<(u32, usize, usize)> {
        let (f, b) = (&self.fwd, &self.bwd);
        if s as usize + 1 >= f.first.len() || t as usize + 1 >= b.first.len() {
            return None;
        }
        let (mut i, ie) = (f.first[s as usize] as usize, f.first[s as usize + 1] as usize);
        let (mut j, je) = (b.first[t as usize] as usize, b.first[t as usize + 1] as usize);
        let mut best: Option<(u32, usize, usize)> = None;
        while i < ie && j < je {
            let (hi, hj) = (f.hub[i], b.hub[j]);
            if hi < hj {
                i += 1;
            } else if hj < hi {
                j += 1;
            } else {
                let d = f.dist[i].saturating_add(b.dist[j]);
                if best.is_none_or(|(bd, _, _)| d < bd) {
                    best = Some((d, i, j));
                }
                i += 1;
                j += 1;
            }
        }
        best
    }

    /// Shortest travel time from `s` to `t` in ms (caller ids).
    pub fn distance(&self, s: u32, t: u32) -> Option<u32> {
        self.meet(s, t).map(|(d, _, _)| d)
    }

    fn expansion(&self, arc: u32) -> &[u32] {
        if arc & DOWN_BIT != 0 { self.down.of((arc & !DOWN_BIT) as usize) } else { self.up.of(arc as usize) }
    }

    /// Shortest travel time and node path (caller ids, `s` first, `t` last).
    pub fn path(&self, s: u32, t: u32) -> Option<(u32, Vec<u32>)> {
        let (d, i, j) = self.meet(s, t)?;
        // Forward arcs from the hub back down to s, then replayed in travel order.
        let mut up_arcs = Vec::with_capacity(32);
        let base = self.fwd.first[s as usize] as usize;
        let mut k = i;
        while self.fwd.arc[k] != NO_MID {
            up_arcs.push(self.fwd.arc[k]);
            k = base + self.fwd.pred[k] as usize;
        }
        let mut nodes = Vec::with_capacity(128);
        nodes.push(s);
        for &a in up_arcs.iter().rev() {
            nodes.extend_from_slice(self.expansion(a));
        }
        // Backward arcs from the hub to t are already in travel order.
        let base = self.bwd.first[t as usize] as usize;
        let mut k = j;
        while self.bwd.arc[k] != NO_MID {
            nodes.extend_from_slice(self.expansion(self.bwd.arc[k]));
            k = base + self.bwd.pred[k] as usize;
        }
        Some((d, nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::ch::dijkstra;

    #[test]
    fn labels_agree_with_the_hierarchy_and_dijkstra() {
        // A small directed city with one-way streets.
        let side = 12u32;
        let id = |r: u32, c: u32| r * side + c;
        let mut edges = Vec::new();
        for r in 0..side {
            for c in 0..side {
                if c + 1 < side {
                    edges.push((id(r, c), id(r, c + 1), 1000 + (r * 37 + c * 11) % 700));
                    if r % 3 != 0 {
                        edges.push((id(r, c + 1), id(r, c), 1100 + (r * 13 + c * 7) % 500));
                    }
                }
                if r + 1 < side {
                    edges.push((id(r, c), id(r + 1, c), 900 + (r * 5 + c * 29) % 800));
                    edges.push((id(r + 1, c), id(r, c), 950 + (r * 19 + c * 3) % 600));
                }
            }
        }
        let n = (side * side) as usize;
        let ch = ContractionHierarchy::build(n, &edges);
        let hl = HubLabels::build(&ch, 1 << 30).expect("fits");
        let w: std::collections::HashMap<(u32, u32), u32> = edges.iter().map(|&(u, v, w)| ((u, v), w)).collect();
        for s in 0..n as u32 {
            for t in (0..n as u32).step_by(5) {
                let want = dijkstra(n, &edges, s, t);
                assert_eq!(hl.distance(s, t), want, "{s}->{t}");
                let (d, p) = hl.path(s, t).expect("connected");
                assert_eq!(Some(d), want);
                assert_eq!((p[0], *p.last().expect("path")), (s, t));
                assert_eq!(p.windows(2).map(|x| w[&(x[0], x[1])]).sum::<u32>(), d, "{s}->{t} path {p:?}");
            }
        }
        assert!(HubLabels::build(&ch, 1000).is_none(), "a tiny budget refuses");
    }
}
