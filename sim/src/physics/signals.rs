//! Traffic signals at street crossings. Every crossing the map marks as signalised (`crossing=traffic_signals`,
//! `crossing:signals=yes`, or a `highway=traffic_signals` node at one end) runs a fixed cycle: `green_s` of
//! green for people (and robots) then red until the cycle's end, each crossing with its own phase (a fixed
//! function of its number, so runs repeat); the first part of the red clears the crossing (the time a person
//! walking at 1.2 m/s needs to cross, the usual design speed). A robot may start across only on green, and only
//! when it will be across before that clearance ends; otherwise it stops at the kerb and waits. Once on the
//! crossing it never stops for the light. A crossing is a run of crossing edges ([`fleet_core::traffic::Layout`]), so a road-centre node
//! between two halves is not a second kerb.

use std::collections::HashMap;

use fleet_core::map::MapGraph;
use fleet_core::traffic::{Layout, Resource, TrafficConfig};
use fleet_core::{LatLon, NodeId};

/// A signalised crossing on a drive's path: its number, the first and last path segment on it (segment k runs
/// from point k to point k + 1) and its length, metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnPath {
    pub id: u32,
    pub first: usize,
    pub last: usize,
    pub length_m: f32,
}

/// What the robots did at signals over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SignalStats {
    /// Signalised crossings a robot started across, and of those, on red (never, if the robots obey).
    pub crossed: u64,
    pub entered_on_red: u64,
    /// Times a robot stopped at a kerb for a red, and the robot-seconds it stood there.
    pub waits: u64,
    pub wait_s: f64,
}

/// The map's signals. See the module docs.
#[derive(Debug, Clone)]
pub struct Signals {
    cycle_s: f64,
    green_s: f64,
    /// Signalised crossing runs by their edges (lower node first).
    by_edge: HashMap<(NodeId, NodeId), u32>,
    /// Nodes by their exact position, to read a drive's path back as nodes.
    node_at: HashMap<(u64, u64), NodeId>,
    count: usize,
}

fn key(p: LatLon) -> (u64, u64) {
    (p.lat().to_bits(), p.lon().to_bits())
}

impl Signals {
    pub fn new(map: &MapGraph, cycle_s: f64, green_s: f64) -> Self {
        let layout = Layout::build(map, &TrafficConfig::default());
        let mut by_edge = HashMap::new();
        let mut runs = std::collections::BTreeSet::new();
        for (a, b, e) in map.edges() {
            if e.crossing
                && e.signals
                && let Some(Resource::Crossing(id)) = layout.resource(a, b)
            {
                runs.insert(id);
            }
        }
        for &id in &runs {
            for e in layout.edges_of(Resource::Crossing(id)) {
                by_edge.insert(e, id);
            }
        }
        let node_at =
            (0..map.node_count() as u32).filter_map(|i| Some((key(map.pos(NodeId(i))?), NodeId(i)))).collect();
        Self {
            cycle_s: cycle_s.max(1.0),
            green_s: green_s.clamp(0.0, cycle_s.max(1.0)),
            by_edge,
            node_at,
            count: runs.len(),
        }
    }

    /// Signalised crossings on the map.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The signalised crossings a drive's path crosses, in order.
    pub fn on_path(&self, path: &[LatLon]) -> Vec<OnPath> {
        let mut out: Vec<OnPath> = Vec::new();
        for (k, w) in path.windows(2).enumerate() {
            let (Some(&a), Some(&b)) = (self.node_at.get(&key(w[0])), self.node_at.get(&key(w[1]))) else {
                continue;
            };
            let Some(&id) = self.by_edge.get(&(a.min(b), a.max(b))) else { continue };
            let len = w[0].distance_m(w[1]) as f32;
            match out.last_mut() {
                Some(c) if c.id == id && c.last + 1 == k => {
                    c.last = k;
                    c.length_m += len;
                }
                _ => out.push(OnPath { id, first: k, last: k, length_m: len }),
            }
        }
        out
    }

    /// Seconds of green left at crossing `id` at `t_s` seconds into the run, or `None` while it is red.
    pub fn green_left(&self, id: u32, t_s: f64) -> Option<f64> {
        // A fixed spread of phases over the cycle: the golden-ratio sequence.
        let offset = (f64::from(id) * 0.618_033_988_75).fract() * self.cycle_s;
        let into = (t_s + offset).rem_euclid(self.cycle_s);
        (into < self.green_s).then_some(self.green_s - into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::map::{ImportSummary, RawNodes, RawWay, Travel};

    /// A sidewalk 1-2, a signalised crossing 2-3-4 (3 on the road's centre line), a sidewalk 4-5, and an
    /// unsignalised crossing 5-6.
    fn map() -> MapGraph {
        let mut nodes = RawNodes::default();
        for i in 1..=6 {
            nodes.coords.insert(i, LatLon::new(43.73, 7.42 + 0.0001 * i as f64).expect("valid"));
        }
        nodes.signals.insert(3);
        let way =
            |id, refs, crossing| RawWay { id, refs, crossing, travel: Travel::Both, width_m: 2.0, signals: false };
        let ways = vec![
            way(1, vec![1, 2], false),
            way(2, vec![2, 3, 4], true),
            way(3, vec![4, 5], false),
            way(4, vec![5, 6], true),
        ];
        MapGraph::from_parts(&nodes, &ways, ImportSummary::default()).expect("builds").0
    }

    #[test]
    fn a_signalised_crossing_is_one_run_on_a_path_and_cycles_green_then_red() {
        let m = map();
        let s = Signals::new(&m, 90.0, 20.0);
        assert_eq!(s.count(), 1, "the crossing at 5-6 has no signals");
        let path: Vec<LatLon> = (0..m.node_count() as u32).map(|i| m.pos(NodeId(i)).expect("node")).collect();
        let on = s.on_path(&path);
        assert_eq!(on.len(), 1);
        assert_eq!((on[0].first, on[0].last), (1, 2), "2-3 and 3-4 are one crossing");
        assert!((on[0].length_m - 16.1).abs() < 0.5, "{on:?}");
        // Over one cycle it is green for 20 s in all, in one stretch.
        let green: Vec<f64> =
            (0..90).filter(|&t| s.green_left(on[0].id, f64::from(t)).is_some()).map(f64::from).collect();
        assert_eq!(green.len(), 20);
        assert!(green.windows(2).filter(|w| w[1] - w[0] > 1.0).count() <= 1, "{green:?}");
    }
}
