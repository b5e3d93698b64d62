//! Background improvement of the live plans: the planner's one search engine ([`crate::planner::alns`], the one the
//! Li & Lim benchmark measures) over the part of every robot's plan that has not started, on road travel
//! times. This module is the live problem for it: one route per robot, kept even when empty; the requests
//! are the orders that may move; insertion costs come from [`best_pair_insertion_timed`] on the robot's plan,
//! whose timing each tour keeps.
//!
//! The dispatcher takes a [`PlanSnapshot`] (its planner view of every available robot), somebody else runs
//! [`improve`] on it (a thread in the server, the driver's own thread in the simulator), and the result comes
//! back as a [`Proposal`] that the dispatcher validates against its state at that moment before it applies
//! anything. So the search never blocks the core, and a proposal made stale by what happened meanwhile is
//! refused, never half-applied.
//!
//! Commitments hold by construction: stops whose drive or action was released (`RobotPlan::locked`) stay first
//! in their robot's plan; a drop-off whose parcel is on board has no pickup in the plan and is never moved to
//! another robot; only orders whose pickup and drop-off are both unreleased on one robot move, and insertion
//! never goes before the locked prefix. A removed order is tried on the [`NEAR_ROBOTS`] nearest robots only.
//! Deterministic for a seed and a number of iterations.

use std::rc::Rc;
use std::sync::Arc;

use crate::map::MapGraph;
use crate::planner::alns::{self, Config, Fleet, Problem, Rng};
use crate::planner::insertion::{RobotPlan, Task, Timing, TravelTable, best_pair_insertion_timed, schedule, timing};
use crate::robot::StopKind;
use crate::{LatLon, OrderId, RobotId, Timestamp};

/// The planner's view of the fleet at one moment, detached from the dispatcher.
#[derive(Debug, Clone)]
pub struct PlanSnapshot {
    pub map: Arc<MapGraph>,
    pub taken_at: Timestamp,
    pub plans: Vec<RobotPlan>,
    /// What travel times are multiplied by ([`TravelTable::set_factor`]): the dispatcher's learned slowdown.
    pub travel_factor: f64,
}

/// A robot's proposed stop sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedPlan {
    pub robot: RobotId,
    pub stops: Vec<(OrderId, StopKind)>,
}

/// Better plans for some robots, found from a snapshot. Robots not named keep their plans.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub taken_at: Timestamp,
    pub plans: Vec<ProposedPlan>,
    /// Total planned travel of the named robots in the snapshot, and with the proposal.
    pub travel_before_s: f64,
    pub travel_after_s: f64,
    pub iterations: u64,
}

/// Search settings.
#[derive(Debug, Clone, Copy)]
pub struct ImproveParams {
    pub seed: u64,
    /// Orders removed per iteration at most.
    pub max_remove: usize,
    /// A proposal must save at least this much travel to be worth applying.
    pub min_gain_s: f64,
}

impl Default for ImproveParams {
    fn default() -> Self {
        Self { seed: 1, max_remove: 8, min_gain_s: 1.0 }
    }
}

/// One robot's tasks in the search.
#[derive(Debug, Clone)]
struct Tour {
    /// Index of the robot's plan in the snapshot.
    robot: usize,
    tasks: Vec<Task>,
    /// Per task, the request it belongs to, or [`FIXED`] for a task that never moves (locked, or a drop-off
    /// whose parcel is on board).
    req: Vec<usize>,
    /// Per task, where it is ([`planar`]).
    xy: Vec<Option<[f64; 2]>>,
    travel_s: f64,
    /// The timing of `tasks` (`None` for a frozen plan), kept because every insertion evaluation needs it
    /// and the engine evaluates each tour many times between changes. Shared, so that copying the tours for
    /// a candidate solution copies no timing arrays.
    timing: Option<Rc<Timing>>,
}

/// The `req` of a task that never moves.
const FIXED: usize = usize::MAX;

/// A movable order: its two tasks, and where they are ([`planar`]) for relatedness and nearness.
#[derive(Debug, Clone)]
struct Pair {
    pickup: Task,
    dropoff: Task,
    pickup_xy: Option<[f64; 2]>,
    dropoff_xy: Option<[f64; 2]>,
}

/// Metres east and north of `origin` on a plane: within a city as good as the great-circle distance for
/// telling near from far, and no trigonometry per comparison (which was a tenth of the search's time).
fn planar(origin: LatLon, p: LatLon) -> [f64; 2] {
    const M_PER_DEG: f64 = 6_371_000.0 * std::f64::consts::PI / 180.0;
    [(p.lon() - origin.lon()) * M_PER_DEG * origin.lat().to_radians().cos(), (p.lat() - origin.lat()) * M_PER_DEG]
}

fn squared(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// The live plans as a problem for the engine.
struct Live<'a> {
    map: &'a MapGraph,
    table: TravelTable,
    plans: &'a [RobotPlan],
    /// Plans that are already infeasible (running late): left alone, since moving work onto or off them would
    /// be judged against deadlines they cannot meet anyway.
    frozen: Vec<bool>,
    pairs: Vec<Pair>,
    /// Where each robot's plan starts ([`planar`]).
    start_xy: Vec<Option<[f64; 2]>>,
}

impl Live<'_> {
    fn travel(&mut self, r: usize, tasks: &[Task]) -> Option<f64> {
        schedule(self.map, &mut self.table, &self.plans[r], tasks).map(|s| s.travel_s)
    }

    /// Judges `t`'s tasks by the schedule and, when feasible, brings its travel and timing up to date.
    fn refresh(&mut self, t: &mut Tour) -> bool {
        let Some(travel) = self.travel(t.robot, &t.tasks) else { return false };
        t.travel_s = travel;
        t.timing = timing(self.map, &mut self.table, &self.plans[t.robot], &t.tasks).map(Rc::new);
        true
    }
}

impl Problem for Live<'_> {
    type Route = Tour;
    /// Index of the pickup in the new task list, and of the drop-off.
    type Place = (usize, usize);

    fn requests_on(&self, t: &Tour) -> Vec<usize> {
        let mut v: Vec<usize> = t
            .tasks
            .iter()
            .zip(&t.req)
            .filter(|(x, q)| **q != FIXED && x.kind == StopKind::Pickup)
            .map(|(_, &q)| q)
            .collect();
        v.sort_unstable();
        v
    }

    fn is_empty(&self, t: &Tour) -> bool {
        t.tasks.is_empty()
    }

    fn cost(&self, t: &Tour) -> f64 {
        t.travel_s
    }

    fn best_insertion(&mut self, t: &Tour, q: usize) -> Option<(f64, (usize, usize))> {
        if self.frozen[t.robot] {
            return None;
        }
        let p = &self.pairs[q];
        let plan = &self.plans[t.robot];
        let timing = t.timing.as_deref()?;
        let (added, i, j) =
            best_pair_insertion_timed(self.map, &mut self.table, plan, &t.tasks, timing, &p.pickup, &p.dropoff)?;
        Some((added, (i, j)))
    }

    fn insert(&mut self, t: &mut Tour, q: usize, (i, j): (usize, usize)) -> bool {
        let p = &self.pairs[q];
        t.tasks.insert(i, p.pickup.clone());
        t.req.insert(i, q);
        t.xy.insert(i, p.pickup_xy);
        t.tasks.insert(j, p.dropoff.clone());
        t.req.insert(j, q);
        t.xy.insert(j, p.dropoff_xy);
        if self.refresh(t) {
            return true;
        }
        for k in [j, i] {
            t.tasks.remove(k);
            t.req.remove(k);
            t.xy.remove(k);
        }
        false
    }

    fn remove(&mut self, t: &mut Tour, qs: &[usize]) -> bool {
        let keep: Vec<bool> = t.req.iter().map(|q| !qs.contains(q)).collect();
        let mut k = keep.iter();
        t.tasks.retain(|_| k.next().copied().unwrap_or(true));
        let mut k = keep.iter();
        t.xy.retain(|_| k.next().copied().unwrap_or(true));
        t.req.retain(|q| !qs.contains(q));
        // Removing work cannot make a feasible plan infeasible (every later stop is reached no later), but
        // the schedule is the judge.
        self.refresh(t)
    }

    /// From the tour's legs: two travel-time look-ups per order instead of a schedule of the rest.
    fn removal_savings(&mut self, t: &Tour) -> Vec<(usize, f64)> {
        let Some(timing) = t.timing.as_deref() else { return Vec::new() };
        let plan = &self.plans[t.robot];
        let mut out = Vec::new();
        for (a, &q) in t.req.iter().enumerate() {
            if q == FIXED || t.tasks[a].kind != StopKind::Pickup {
                continue;
            }
            let Some(b) = (a + 1..t.req.len()).find(|&b| t.req[b] == q) else { continue };
            let saving = timing.saving_without(self.map, &mut self.table, plan, &t.tasks, a, b).unwrap_or(0.0);
            out.push((q, saving));
        }
        out.sort_by_key(|&(q, _)| q);
        out
    }

    /// Straight-line metres between the two shops plus between the two customers.
    fn relatedness(&self, a: usize, b: usize) -> f64 {
        let d = |x: Option<[f64; 2]>, y: Option<[f64; 2]>| match (x, y) {
            (Some(x), Some(y)) => squared(x, y).sqrt(),
            _ => f64::MAX / 4.0,
        };
        let (a, b) = (&self.pairs[a], &self.pairs[b]);
        d(a.pickup_xy, b.pickup_xy) + d(a.dropoff_xy, b.dropoff_xy)
    }

    /// The [`NEAR_ROBOTS`] robots whose start or stops come closest to the pickup in a straight line. Trying
    /// every robot of a big fleet costs far more than it finds: a robot across town rarely offers the
    /// cheapest insertion.
    fn candidate_routes(&mut self, tours: &[Tour], q: usize) -> Option<Vec<bool>> {
        let mut near = vec![false; tours.len()];
        let Some(at) = self.pairs[q].pickup_xy else {
            return Some(near);
        };
        let mut by_dist: Vec<(f64, usize)> = tours
            .iter()
            .enumerate()
            .filter(|(_, t)| !self.frozen[t.robot])
            .map(|(k, t)| {
                let points = std::iter::once(&self.start_xy[t.robot]).chain(&t.xy);
                (points.flatten().map(|&p| squared(p, at)).fold(f64::MAX, f64::min), k)
            })
            .collect();
        by_dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, k) in by_dist.into_iter().take(NEAR_ROBOTS) {
            near[k] = true;
        }
        Some(near)
    }
}

/// The orders of `tasks` that may move: pickup and drop-off both after the locked prefix.
fn movable(plan: &RobotPlan, tasks: &[Task]) -> Vec<OrderId> {
    let start = plan.locked.min(tasks.len());
    tasks[start..]
        .iter()
        .filter(|t| t.kind == StopKind::Pickup)
        .filter(|t| tasks[start..].iter().any(|d| d.kind == StopKind::Dropoff && d.order == t.order))
        .map(|t| t.order.clone())
        .collect()
}

/// Robots a removed order may be reinserted into: the nearest this many.
pub const NEAR_ROBOTS: usize = 16;

/// Looks for cheaper plans than the snapshot's. `used(iteration)` returns the fraction of the budget spent
/// (by time in the server, by iterations in the simulator); the search stops at 1. `None` when nothing better
/// than `params.min_gain_s` was found.
///
/// A fleet larger than [`REGION_ROBOTS`] is searched one region at a time: a robot with work that may move is
/// picked at random and the search works on it and its nearest neighbours only. Each iteration of a search
/// over the whole of a big fleet would copy and score every plan of it, so that the budget ran out before
/// the first move (measured: no proposal in 300 ms with 1,000 robots and 4,000 open orders).
pub fn improve(snap: &PlanSnapshot, params: &ImproveParams, used: &mut dyn FnMut(u64) -> f64) -> Option<Proposal> {
    if snap.plans.len() <= REGION_ROBOTS {
        return search(snap, &snap.plans, params, used);
    }
    let mut rng = Rng::new(params.seed ^ 0x9e37_79b9_7f4a_7c15);
    let busy: Vec<usize> =
        snap.plans.iter().enumerate().filter(|(_, p)| !movable(p, &p.tasks).is_empty()).map(|(r, _)| r).collect();
    if busy.is_empty() {
        return None;
    }
    let centre = snap.plans[busy[rng.below(busy.len())]].start_node;
    // Near in a straight line from the centre robot to a robot's start or any of its stops.
    let mut by_dist: Vec<(f64, usize)> = snap
        .plans
        .iter()
        .enumerate()
        .map(|(r, p)| {
            let nodes = std::iter::once(p.start_node).chain(p.tasks.iter().map(|t| t.node));
            (nodes.map(|n| snap.map.floor_m(centre, n)).fold(f64::MAX, f64::min), r)
        })
        .collect();
    by_dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let region: Vec<RobotPlan> = by_dist.iter().take(REGION_ROBOTS).map(|&(_, r)| snap.plans[r].clone()).collect();
    search(snap, &region, params, used)
}

/// Robots one search works on at most (see [`improve`]).
pub const REGION_ROBOTS: usize = 48;

fn search(
    snap: &PlanSnapshot,
    plans: &[RobotPlan],
    params: &ImproveParams,
    used: &mut dyn FnMut(u64) -> f64,
) -> Option<Proposal> {
    let (map, taken_at) = (&*snap.map, snap.taken_at);
    let origin = map.origin();
    let xy = |n| map.pos(n).map(|p| planar(origin, p));
    let mut table = TravelTable::default();
    table.set_factor(snap.travel_factor);
    let mut live = Live {
        map,
        table,
        plans,
        frozen: Vec::new(),
        pairs: Vec::new(),
        start_xy: plans.iter().map(|p| xy(p.start_node)).collect(),
    };
    let mut start = Vec::with_capacity(plans.len());
    for (r, plan) in plans.iter().enumerate() {
        let travel = live.travel(r, &plan.tasks);
        live.frozen.push(travel.is_none());
        let mut req = vec![FIXED; plan.tasks.len()];
        if travel.is_some() {
            for order in movable(plan, &plan.tasks) {
                let q = live.pairs.len();
                let from = plan.locked.min(plan.tasks.len());
                let at = |kind| {
                    (from..plan.tasks.len()).find(|&k| plan.tasks[k].kind == kind && plan.tasks[k].order == order)
                };
                let (Some(pi), Some(di)) = (at(StopKind::Pickup), at(StopKind::Dropoff)) else { continue };
                let (pickup, dropoff) = (plan.tasks[pi].clone(), plan.tasks[di].clone());
                let (pickup_xy, dropoff_xy) = (xy(pickup.node), xy(dropoff.node));
                live.pairs.push(Pair { pickup, dropoff, pickup_xy, dropoff_xy });
                req[pi] = q;
                req[di] = q;
            }
        }
        let xy = plan.tasks.iter().map(|t| xy(t.node)).collect();
        let timing = travel.and_then(|_| timing(map, &mut live.table, plan, &plan.tasks)).map(Rc::new);
        start.push(Tour { robot: r, tasks: plan.tasks.clone(), req, xy, travel_s: travel.unwrap_or(0.0), timing });
    }
    if live.pairs.is_empty() {
        return None;
    }
    let start_cost: f64 = start.iter().map(|t| t.travel_s).sum();
    let cfg = Config {
        remove_min: 1,
        remove_max: params.max_remove.max(1),
        regrets: vec![2],
        noise: 0.0,
        fleet: Fleet::Fixed,
        // At the start a move 2% worse than the current plans is accepted half the time; near the end almost
        // none.
        worse_accepted: 0.02,
        cooling: 1_000.0,
    };
    let mut rng = Rng::new(params.seed);
    let out = alns::run(&mut live, start, &cfg, &mut rng, used);
    let best_cost: f64 = out.routes.iter().map(|t| t.travel_s).sum();
    if best_cost > start_cost - params.min_gain_s {
        return None;
    }
    let mut proposed = Vec::new();
    let (mut before, mut after) = (0.0, 0.0);
    for (tour, plan) in out.routes.iter().zip(plans) {
        let same = tour.tasks.len() == plan.tasks.len()
            && tour.tasks.iter().zip(&plan.tasks).all(|(a, b)| a.order == b.order && a.kind == b.kind);
        if same {
            continue;
        }
        before += live.travel(tour.robot, &plan.tasks).unwrap_or(0.0);
        after += tour.travel_s;
        proposed.push(ProposedPlan {
            robot: plan.robot.clone(),
            stops: tour.tasks.iter().map(|t| (t.order.clone(), t.kind)).collect(),
        });
    }
    Some(Proposal {
        taken_at,
        plans: proposed,
        travel_before_s: before,
        travel_after_s: after,
        iterations: out.iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Profile;
    use crate::map::tests::grid;
    use crate::robot::RobotModel;
    use crate::{Grams, NodeId};

    fn task(kind: StopKind, order: &str, node: u32) -> Task {
        Task {
            kind,
            order: OrderId::parse(order).expect("valid"),
            node: NodeId(node),
            not_before: Timestamp(0),
            deadline: None,
            compartments: 1,
            grams: 1_000,
            service_s: 30.0,
        }
    }

    fn robot(id: &str, node: u32, tasks: Vec<Task>) -> RobotPlan {
        RobotPlan {
            robot: RobotId::parse(id).expect("valid"),
            model: RobotModel { compartments: 4, max_payload: Grams(20_000), ..RobotModel::default() },
            profile: Profile::default(),
            start_node: NodeId(node),
            start_time: Timestamp(0),
            load_compartments: 0,
            load_grams: 0,
            locked: 0,
            range_m: f64::INFINITY,
            shift_end: None,
            tasks,
        }
    }

    /// Robot `a` in one corner of the grid has a released first stop, a parcel on board and three orders
    /// in the far corner, where robot `b` waits idle.
    fn snapshot() -> PlanSnapshot {
        use StopKind::{Dropoff, Pickup};
        let mut a = robot(
            "a",
            0,
            vec![
                task(Pickup, "released", 1),
                task(Dropoff, "released", 2),
                task(Dropoff, "aboard", 4),
                task(Pickup, "o1", 15),
                task(Dropoff, "o1", 14),
                task(Pickup, "o2", 14),
                task(Dropoff, "o2", 11),
                task(Pickup, "o3", 11),
                task(Dropoff, "o3", 15),
            ],
        );
        a.locked = 1;
        a.load_compartments = 1;
        a.load_grams = 1_000;
        PlanSnapshot {
            map: Arc::new(grid()),
            taken_at: Timestamp(0),
            plans: vec![a, robot("b", 15, vec![])],
            travel_factor: 1.0,
        }
    }

    fn budget(n: u64) -> impl FnMut(u64) -> f64 {
        move |i| i as f64 / n as f64
    }

    #[test]
    fn moves_only_what_may_move_and_keeps_the_commitments() {
        let snap = snapshot();
        let p = improve(&snap, &ImproveParams::default(), &mut budget(300)).expect("moving o1..o3 to b saves travel");
        assert_eq!(improve(&snap, &ImproveParams::default(), &mut budget(300)).as_ref(), Some(&p), "deterministic");
        assert!(p.travel_after_s < p.travel_before_s - 1.0, "{p:?}");
        let stops = |id: &str| {
            p.plans
                .iter()
                .find(|pp| pp.robot.as_str() == id)
                .map(|pp| pp.stops.iter().map(|(o, k)| (o.as_str().to_owned(), *k)).collect::<Vec<_>>())
        };
        let a = stops("a").expect("a's plan changes");
        assert_eq!(a[0], ("released".to_owned(), StopKind::Pickup), "the locked prefix stays first");
        assert!(a.contains(&("aboard".to_owned(), StopKind::Dropoff)), "an on-board parcel stays on its robot");
        let b = stops("b").unwrap_or_default();
        assert!(b.iter().all(|(o, _)| o.starts_with('o')), "only unreleased orders move: {b:?}");
        assert!(!b.is_empty(), "work moves to the idle robot near it");
        for o in ["o1", "o2", "o3"] {
            let on: Vec<&Vec<(String, StopKind)>> =
                [&a, &b].into_iter().filter(|s| s.iter().any(|(x, _)| x == o)).collect();
            assert_eq!(on.len(), 1, "{o} on exactly one robot");
            let at = |k| on[0].iter().position(|(x, kind)| x == o && *kind == k);
            assert!(at(StopKind::Pickup) < at(StopKind::Dropoff), "{o}: pickup before drop-off");
        }
        // The proposal's claim is what the schedule says.
        let mut table = TravelTable::default();
        let named: Vec<&RobotPlan> =
            snap.plans.iter().filter(|r| p.plans.iter().any(|pp| pp.robot == r.robot)).collect();
        let before: f64 =
            named.iter().filter_map(|r| schedule(&snap.map, &mut table, r, &r.tasks)).map(|s| s.travel_s).sum();
        assert!((before - p.travel_before_s).abs() < 1e-6, "{before} vs {}", p.travel_before_s);
    }
}
