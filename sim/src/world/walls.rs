//! Building walls: which stretches of the buildings' outlines become walls in the physics world. A wall must
//! do no harm (stand clear of every walkable way, which OSM sometimes maps through arcades and passages) and
//! matter (stand within a robot's reach of some way); [`building_walls`] keeps the runs of an outline that
//! do both, with a grid of the way segments ([`WayGrid`]) to ask about every metre of every outline cheaply.

use std::collections::BTreeMap;

use fleet_core::NodeId;
use fleet_core::map::{MapGraph, Profile};

use crate::osm::Features;

/// Building walls are left out where they come closer than this to a walkable way: a robot keeps 0.4 m right
/// of the way and steps up to 1.2 m aside (plus half its width), and OSM maps some ways through arcades and
/// passages; a wall there would trap robots on a way the dispatcher believes open.
pub const WALL_CLEARANCE_M: f64 = 2.0;
/// Walls farther than this from every walkable way are left out too: robots keep within about 3 m of a way
/// (their lane, a step aside, a parking slot), so such a wall could never be touched, only cost step time.
pub const WALL_REACH_M: f64 = 8.0;

/// The walls of every footprint that matter and do no harm: each outline edge is sampled every metre, and the
/// runs of samples between [`WALL_CLEARANCE_M`] and [`WALL_REACH_M`] from the nearest walkable way become walls.
pub fn building_walls(map: &MapGraph, features: &Features) -> Vec<([f64; 2], [f64; 2])> {
    let ways = WayGrid::new(map);
    let mut walls = Vec::new();
    for b in &features.buildings {
        let pts: Vec<[f64; 2]> = b.outline.iter().map(|&p| map.to_xy(p)).collect();
        for w in pts.windows(2) {
            let (a, c) = (w[0], w[1]);
            let len = (c[0] - a[0]).hypot(c[1] - a[1]);
            let steps = (len.ceil() as usize).max(1);
            let at = |k: usize| {
                let f = k as f64 / steps as f64;
                [a[0] + (c[0] - a[0]) * f, a[1] + (c[1] - a[1]) * f]
            };
            let mut run: Option<usize> = None;
            for k in 0..=steps {
                let ok = ways.wall_may_stand(at(k));
                match (ok, run) {
                    (true, None) => run = Some(k),
                    (false, Some(s)) => {
                        if k - 1 > s {
                            walls.push((at(s), at(k - 1)));
                        }
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = run
                && steps > s
            {
                walls.push((at(s), at(steps)));
            }
        }
    }
    walls
}

/// A straight piece between two points, local metres.
type Segment = ([f64; 2], [f64; 2]);

/// The walkable graph's segments in a uniform grid of `WALL_REACH_M` cells: every segment within the reach of
/// a point is in the point's cell or one of its eight neighbours. Built for [`building_walls`], which asks
/// about every metre of every outline (hundreds of thousands of points on Monaco), where a general nearest-
/// neighbour query was the whole cost.
struct WayGrid {
    cells: BTreeMap<(i64, i64), Vec<Segment>>,
}

impl WayGrid {
    fn cell(p: [f64; 2]) -> (i64, i64) {
        ((p[0] / WALL_REACH_M).floor() as i64, (p[1] / WALL_REACH_M).floor() as i64)
    }

    fn new(map: &MapGraph) -> Self {
        let mut cells: BTreeMap<(i64, i64), Vec<Segment>> = BTreeMap::new();
        for (u, v, _) in map.weighted_edges(Profile::default()) {
            let (Some(a), Some(b)) = (map.node(NodeId(u)), map.node(NodeId(v))) else { continue };
            if u > v {
                continue;
            }
            let (ca, cb) = (Self::cell(a.xy), Self::cell(b.xy));
            for x in ca.0.min(cb.0)..=ca.0.max(cb.0) {
                for y in ca.1.min(cb.1)..=ca.1.max(cb.1) {
                    cells.entry((x, y)).or_default().push((a.xy, b.xy));
                }
            }
        }
        Self { cells }
    }

    /// Whether the nearest segment is at least `WALL_CLEARANCE_M` and at most `WALL_REACH_M` away.
    fn wall_may_stand(&self, p: [f64; 2]) -> bool {
        let (cx, cy) = Self::cell(p);
        let mut nearest = f64::INFINITY;
        for x in cx - 1..=cx + 1 {
            for y in cy - 1..=cy + 1 {
                for &(a, b) in self.cells.get(&(x, y)).map_or(&[][..], Vec::as_slice) {
                    nearest = nearest.min(segment_distance(p, a, b));
                    if nearest < WALL_CLEARANCE_M {
                        return false;
                    }
                }
            }
        }
        nearest <= WALL_REACH_M
    }
}

/// Distance from `p` to the segment `a`-`b`.
fn segment_distance(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    (p[0] - a[0] - t * dx).hypot(p[1] - a[1] - t * dy)
}
