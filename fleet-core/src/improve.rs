//! Background improvement of the live plans: adaptive large neighbourhood search over the part of every
//! robot's plan that has not started, on road travel times.
//!
//! The dispatcher takes a [`PlanSnapshot`] (its planner view of every available robot), somebody else runs
//! [`improve`] on it (a thread in the server, the driver's own thread in the simulator), and the result comes
//! back as a [`Proposal`] that the dispatcher validates against its state at that moment before it applies
//! anything. So the search never blocks the core, and a proposal made stale by what happened meanwhile is
//! refused, never half-applied.
//!
//! Commitments hold by construction: stops whose drive or action was released (`RobotPlan::locked`) stay first
//! in their robot's plan; a drop-off whose parcel is on board has no pickup in the plan and is never moved to
//! another robot; only orders whose pickup and drop-off are both unreleased on one robot move. The moves are
//! the ones that work on the Li & Lim benchmark ([`crate::pdptw::solve`]): random, related and worst removal
//! of orders, regret-2 reinsertion, simulated-annealing acceptance cooled over the budget, operator weights
//! adapted to what found improvements. Deterministic for a seed and a number of iterations.

use std::sync::Arc;

use crate::assign::{RobotPlan, Task, TravelTable, best_pair_insertion, schedule};
use crate::map::MapGraph;
use crate::pdptw::solve::Rng;
use crate::robot::StopKind;
use crate::{OrderId, RobotId, Timestamp};

/// The planner's view of the fleet at one moment, detached from the dispatcher.
#[derive(Debug, Clone)]
pub struct PlanSnapshot {
    pub map: Arc<MapGraph>,
    pub taken_at: Timestamp,
    pub plans: Vec<RobotPlan>,
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
    tasks: Vec<Task>,
    travel_s: f64,
}

/// A movable order: its two tasks.
#[derive(Debug, Clone)]
struct Pair {
    pickup: Task,
    dropoff: Task,
}

/// Where a pair goes in one tour: the added travel and the tour's new tasks.
type Placement = (f64, Vec<Task>);

struct Search<'a> {
    map: &'a MapGraph,
    table: TravelTable,
    plans: &'a [RobotPlan],
}

impl Search<'_> {
    fn travel(&mut self, r: usize, tasks: &[Task]) -> Option<f64> {
        schedule(self.map, &mut self.table, &self.plans[r], tasks).map(|s| s.travel_s)
    }

    /// Cheapest feasible positions of `p` in robot `r`'s tour: (added travel, new tasks).
    fn best_in(&mut self, r: usize, tour: &Tour, p: &Pair) -> Option<Placement> {
        let plan = &self.plans[r];
        let (added, i, j) = best_pair_insertion(self.map, &mut self.table, plan, &tour.tasks, &p.pickup, &p.dropoff)?;
        let mut tasks = Vec::with_capacity(tour.tasks.len() + 2);
        tasks.extend_from_slice(&tour.tasks);
        tasks.insert(i, p.pickup.clone());
        tasks.insert(j, p.dropoff.clone());
        Some((added, tasks))
    }

    /// The robots worth trying for a pickup: the [`NEAR_ROBOTS`] whose start or stops come closest to it in a
    /// straight line. Trying every robot of a big fleet costs far more than it finds: a robot across town
    /// rarely offers the cheapest insertion.
    fn near_robots(&self, tours: &[Tour], frozen: &[bool], pickup: &Task) -> Vec<bool> {
        let mut near = vec![false; tours.len()];
        let Some(at) = self.map.pos(pickup.node) else {
            return near;
        };
        let mut by_dist: Vec<(f64, usize)> = tours
            .iter()
            .enumerate()
            .filter(|(r, _)| !frozen[*r])
            .map(|(r, t)| {
                let nodes = std::iter::once(self.plans[r].start_node).chain(t.tasks.iter().map(|x| x.node));
                let d = nodes.filter_map(|n| self.map.pos(n)).map(|p| p.distance_m(at)).fold(f64::MAX, f64::min);
                (d, r)
            })
            .collect();
        by_dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, r) in by_dist.into_iter().take(NEAR_ROBOTS) {
            near[r] = true;
        }
        near
    }

    /// Regret-2 reinsertion of `pairs`; false when some pair fits nowhere.
    fn repair(&mut self, tours: &mut [Tour], frozen: &[bool], mut pairs: Vec<Pair>, rng: &mut Rng) -> bool {
        // Per pair, per nearby robot: the best insertion. Only the robot that changed is recomputed after an
        // insertion.
        let mut near: Vec<Vec<bool>> = pairs.iter().map(|p| self.near_robots(tours, frozen, &p.pickup)).collect();
        let mut table: Vec<Vec<Option<Placement>>> = pairs
            .iter()
            .zip(&near)
            .map(|(p, near)| {
                (0..tours.len()).map(|r| if near[r] { self.best_in(r, &tours[r], p) } else { None }).collect::<Vec<_>>()
            })
            .collect();
        while !pairs.is_empty() {
            let mut pick: Option<(usize, usize, f64, f64)> = None; // (pair, robot, regret, cost)
            for (k, row) in table.iter().enumerate() {
                let mut costs: Vec<(f64, usize)> =
                    row.iter().enumerate().filter_map(|(r, c)| c.as_ref().map(|(c, _)| (*c, r))).collect();
                if costs.is_empty() {
                    return false;
                }
                costs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let (cost, r) = costs[0];
                // Small noise so equal regrets do not always resolve the same way.
                let regret = costs.get(1).map_or(f64::MAX / 4.0, |c| c.0 - cost) + rng.unit() * 1e-3;
                if pick.is_none_or(|(_, _, g, c)| regret > g || (regret == g && cost < c)) {
                    pick = Some((k, r, regret, cost));
                }
            }
            let Some((k, r, _, _)) = pick else {
                return false;
            };
            let (_, tasks) = table[k][r].take().expect("picked from the entries that exist");
            pairs.swap_remove(k);
            table.swap_remove(k);
            near.swap_remove(k);
            tours[r].tasks = tasks;
            tours[r].travel_s = match self.travel(r, &tours[r].tasks) {
                Some(t) => t,
                None => return false,
            };
            for ((p, row), near) in pairs.iter().zip(table.iter_mut()).zip(&near) {
                if near[r] {
                    row[r] = self.best_in(r, &tours[r], p);
                }
            }
        }
        true
    }
}

/// The orders of `tour` that may move: pickup and drop-off both after the locked prefix.
fn movable(plan: &RobotPlan, tour: &Tour) -> Vec<OrderId> {
    let start = plan.locked.min(tour.tasks.len());
    tour.tasks[start..]
        .iter()
        .filter(|t| t.kind == StopKind::Pickup)
        .filter(|t| tour.tasks[start..].iter().any(|d| d.kind == StopKind::Dropoff && d.order == t.order))
        .map(|t| t.order.clone())
        .collect()
}

fn take_pair(tour: &mut Tour, order: &OrderId) -> Option<Pair> {
    let pi = tour.tasks.iter().position(|t| t.kind == StopKind::Pickup && &t.order == order)?;
    let pickup = tour.tasks.remove(pi);
    let di = tour.tasks.iter().position(|t| t.kind == StopKind::Dropoff && &t.order == order)?;
    let dropoff = tour.tasks.remove(di);
    Some(Pair { pickup, dropoff })
}

const OPERATORS: usize = 3;

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
        return search(&snap.map, snap.taken_at, &snap.plans, params, used);
    }
    let mut rng = Rng::new(params.seed ^ 0x9e37_79b9_7f4a_7c15);
    let busy: Vec<usize> = snap
        .plans
        .iter()
        .enumerate()
        .filter(|(_, p)| !movable(p, &Tour { tasks: p.tasks.clone(), travel_s: 0.0 }).is_empty())
        .map(|(r, _)| r)
        .collect();
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
    search(&snap.map, snap.taken_at, &region, params, used)
}

/// Robots one search works on at most (see [`improve`]).
pub const REGION_ROBOTS: usize = 48;

fn search(
    map: &MapGraph,
    taken_at: Timestamp,
    plans: &[RobotPlan],
    params: &ImproveParams,
    used: &mut dyn FnMut(u64) -> f64,
) -> Option<Proposal> {
    let mut s = Search { map, table: TravelTable::default(), plans };
    let mut rng = Rng::new(params.seed);
    let mut frozen = Vec::with_capacity(plans.len());
    let mut current = Vec::with_capacity(plans.len());
    for (r, plan) in plans.iter().enumerate() {
        // A plan that is already infeasible (running late) is left alone: moving work onto or off it would be
        // judged against deadlines it cannot meet anyway.
        let travel = s.travel(r, &plan.tasks);
        frozen.push(travel.is_none());
        current.push(Tour { tasks: plan.tasks.clone(), travel_s: travel.unwrap_or(0.0) });
    }
    let total = |tours: &[Tour]| tours.iter().map(|t| t.travel_s).sum::<f64>();
    let start_cost = total(&current);
    let mut best = current.clone();
    let mut best_cost = start_cost;
    let mut cur_cost = start_cost;
    let mut weights = [1.0f64; OPERATORS];
    let mut iter = 0u64;
    // At the start a move 2% worse than the current plans is accepted half the time; near the end almost none.
    let t_start = (0.02 * start_cost / std::f64::consts::LN_2).max(1.0);
    let t_end = t_start / 1_000.0;
    loop {
        let spent = used(iter);
        if spent >= 1.0 {
            break;
        }
        iter += 1;
        let candidates: Vec<(usize, OrderId)> = current
            .iter()
            .enumerate()
            .filter(|(r, _)| !frozen[*r])
            .flat_map(|(r, t)| movable(&plans[r], t).into_iter().map(move |o| (r, o)))
            .collect();
        if candidates.is_empty() {
            break;
        }
        let k = 1 + rng.below(params.max_remove.max(1).min(candidates.len()));
        let op = roulette(&weights, &mut rng);
        let chosen = match op {
            0 => random_removal(&candidates, k, &mut rng),
            1 => related_removal(&s, &current, &candidates, k, &mut rng),
            _ => worst_removal(&mut s, &current, &candidates, k, &mut rng),
        };
        let mut cand = current.clone();
        let mut pairs = Vec::with_capacity(chosen.len());
        let mut touched = Vec::new();
        for (r, order) in chosen {
            if let Some(p) = take_pair(&mut cand[r], &order) {
                pairs.push(p);
                touched.push(r);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let mut ok = true;
        for &r in &touched {
            match s.travel(r, &cand[r].tasks) {
                Some(t) => cand[r].travel_s = t,
                // Removing work cannot make a feasible plan infeasible, except through waiting (a later
                // arrival at a ready time can only be earlier now); guard anyway.
                None => ok = false,
            }
        }
        if !ok || !s.repair(&mut cand, &frozen, pairs, &mut rng) {
            weights[op] = weights[op] * 0.95 + 0.05 * 0.1;
            continue;
        }
        let c = total(&cand);
        let temp = t_start * (t_end / t_start).powf(spent.clamp(0.0, 1.0));
        let score = if c < best_cost - 1e-6 {
            3.0
        } else if c < cur_cost - 1e-6 {
            2.0
        } else {
            0.5
        };
        if c < cur_cost || rng.unit() < (-(c - cur_cost) / temp).exp() {
            current = cand;
            cur_cost = c;
            if c < best_cost - 1e-6 {
                best = current.clone();
                best_cost = c;
            }
        }
        weights[op] = weights[op] * 0.95 + 0.05 * score;
    }
    if best_cost > start_cost - params.min_gain_s {
        return None;
    }
    let mut proposed = Vec::new();
    let (mut before, mut after) = (0.0, 0.0);
    for (r, (tour, plan)) in best.iter().zip(plans).enumerate() {
        let same = tour.tasks.len() == plan.tasks.len()
            && tour.tasks.iter().zip(&plan.tasks).all(|(a, b)| a.order == b.order && a.kind == b.kind);
        if same {
            continue;
        }
        before += current_travel(&mut s, r);
        after += tour.travel_s;
        proposed.push(ProposedPlan {
            robot: plan.robot.clone(),
            stops: tour.tasks.iter().map(|t| (t.order.clone(), t.kind)).collect(),
        });
    }
    Some(Proposal { taken_at, plans: proposed, travel_before_s: before, travel_after_s: after, iterations: iter })
}

fn current_travel(s: &mut Search<'_>, r: usize) -> f64 {
    let plans = s.plans;
    s.travel(r, &plans[r].tasks).unwrap_or(0.0)
}

fn roulette(weights: &[f64; OPERATORS], rng: &mut Rng) -> usize {
    let sum: f64 = weights.iter().sum();
    let mut x = rng.unit() * sum;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    OPERATORS - 1
}

fn random_removal(candidates: &[(usize, OrderId)], k: usize, rng: &mut Rng) -> Vec<(usize, OrderId)> {
    let mut pool = candidates.to_vec();
    let mut out = Vec::with_capacity(k);
    while out.len() < k && !pool.is_empty() {
        out.push(pool.swap_remove(rng.below(pool.len())));
    }
    out
}

/// A random order and the `k - 1` orders whose shop and customer are nearest to its own.
fn related_removal(
    s: &Search<'_>,
    tours: &[Tour],
    candidates: &[(usize, OrderId)],
    k: usize,
    rng: &mut Rng,
) -> Vec<(usize, OrderId)> {
    let ends = |r: usize, o: &OrderId| {
        let find = |kind| tours[r].tasks.iter().find(|t| t.kind == kind && &t.order == o).map(|t| t.node);
        (find(StopKind::Pickup), find(StopKind::Dropoff))
    };
    let dist = |a: Option<crate::NodeId>, b: Option<crate::NodeId>| match (
        a.and_then(|a| s.map.pos(a)),
        b.and_then(|b| s.map.pos(b)),
    ) {
        (Some(a), Some(b)) => a.distance_m(b),
        _ => f64::MAX / 4.0,
    };
    let seed = &candidates[rng.below(candidates.len())];
    let (sp, sd) = ends(seed.0, &seed.1);
    let mut scored: Vec<(f64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, (r, o))| {
            let (p, d) = ends(*r, o);
            (dist(sp, p) + dist(sd, d), i)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.iter().take(k).map(|&(_, i)| candidates[i].clone()).collect()
}

/// Orders whose removal saves the most travel, picked with a bias towards the top.
fn worst_removal(
    s: &mut Search<'_>,
    tours: &[Tour],
    candidates: &[(usize, OrderId)],
    k: usize,
    rng: &mut Rng,
) -> Vec<(usize, OrderId)> {
    let mut scored: Vec<(f64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, (r, o))| {
            let mut t = tours[*r].clone();
            let saving = match take_pair(&mut t, o) {
                Some(_) => tours[*r].travel_s - s.travel(*r, &t.tasks).unwrap_or(tours[*r].travel_s),
                None => 0.0,
            };
            (saving, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out = Vec::with_capacity(k);
    while out.len() < k && !scored.is_empty() {
        let idx = ((rng.unit().powi(3)) * scored.len() as f64) as usize;
        let (_, i) = scored.remove(idx.min(scored.len() - 1));
        out.push(candidates[i].clone());
    }
    out
}
