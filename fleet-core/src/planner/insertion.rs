//! The first assignment policy: cheapest feasible insertion. A new order's pickup and drop-off are tried at
//! every pair of positions (pickup first) in every available robot's plan, after the stops already released to
//! the robot; a position is feasible when capacity (compartments and weight) holds all along and every drop-off
//! arrives by its deadline. The cheapest added travel time wins; ties go to the earlier drop-off, then the
//! robot that sorts first.
//!
//! Travel times come from a [`TravelTable`], a cache in front of the map's router.

use rustc_hash::FxHashMap;

use crate::map::{MapGraph, Profile};
use crate::robot::{RobotModel, StopKind};
use crate::{NodeId, OrderId, RobotId, Timestamp};

/// Cached travel times between node pairs, per profile. Cleared when the map changes (a closure).
///
/// Compact on purpose: one 8-byte key and a 4-byte time per pair, so that the pairs the planner uses over and
/// over (the legs of the plans, the shops) stay in cache. Pairs with a node that is only asked about for a
/// while (a new order's drop-off, tried against every robot) go to a small side table instead
/// ([`TravelTable::focus`]), so they do not push the lasting pairs out.
///
/// A node asked about against many others (a new order's pickup and drop-off, against every stop of every
/// plan) can instead get whole rows ([`TravelTable::rows_for`]): its times to and from every node from one
/// sweep of the map's hierarchy ([`MapGraph::times_all`]). The last [`ROWS_KEPT`] rows are kept, so a shop's
/// pickup node is swept once, not once per order.
///
/// Every time it answers is the router's free-flow time multiplied by the table's factor
/// ([`TravelTable::set_factor`]: what the fleet learned about how long drives really take, [`crate::learn`]).
/// The cache holds free-flow times, so a new factor costs nothing.
#[derive(Debug, Clone, Default)]
pub struct TravelTable {
    factor: Factor,
    // Fx, not SipHash: the keys are our own node ids, not attacker-chosen, and hashing was a quarter of the
    // dispatcher's time under load (`trundle-bench load`, see docs/benchmarks.md).
    by_profile: Vec<(Profile, FxHashMap<u64, u32>)>,
    focus: Option<NodeId>,
    /// Keyed by profile (its index in `by_profile`) and pair.
    focused: FxHashMap<(usize, u64), u32>,
    /// Whole rows, in no order.
    rows: Vec<Row>,
    /// The rows `secs` answers from (indices into `rows`), set by `rows_for`.
    active: Vec<usize>,
    /// Rows asked for so far (a clock for least recently used).
    row_asks: u64,
    /// Overrides [`ROW_NODES_PER_STOP`] (tests and benchmarks: `Some(usize::MAX)` always sweeps rows, `Some(0)`
    /// never does).
    pub row_nodes_per_stop: Option<usize>,
}

/// Times from and to one node, by node id in ms (`NO_ROUTE` where none).
#[derive(Debug, Clone)]
struct Row {
    node: NodeId,
    profile: Profile,
    from: Box<[u32]>,
    to: Box<[u32]>,
    used: u64,
}

/// A multiplier that is 1 unless set.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Factor(f64);

impl Default for Factor {
    fn default() -> Self {
        Self(1.0)
    }
}

/// Rows kept at most (each holds 8 bytes per map node: 180 kB on Monaco).
pub const ROWS_KEPT: usize = 64;

/// Pairs kept at most before the cache starts over.
const MAX_PAIRS: usize = 1 << 20;
/// Stored for a pair with no route.
const NO_ROUTE: u32 = u32::MAX;

impl TravelTable {
    /// Sets the factor every answer is multiplied by (bounded to 0.5..=5; 1 is free flow).
    pub fn set_factor(&mut self, factor: f64) {
        self.factor = Factor(if factor.is_finite() { factor.clamp(0.5, 5.0) } else { 1.0 });
    }

    pub fn factor(&self) -> f64 {
        self.factor.0
    }

    /// Seconds from `a` to `b`, `None` when unreachable. Answered by the map's contraction hierarchy when it has
    /// one for this profile, so a miss costs microseconds.
    pub fn secs(&mut self, map: &MapGraph, a: NodeId, b: NodeId, p: Profile) -> Option<f64> {
        if a == b {
            return Some(0.0);
        }
        if let Some(known) = self.from_rows(a, b, p) {
            return known;
        }
        let key = (u64::from(a.0) << 32) | u64::from(b.0);
        let k = match self.by_profile.iter().position(|(q, _)| *q == p) {
            Some(k) => k,
            None => {
                self.by_profile.push((p, FxHashMap::default()));
                self.by_profile.len() - 1
            }
        };
        let focused = self.focus.is_some_and(|f| f == a || f == b);
        let known = if focused { self.focused.get(&(k, key)) } else { self.by_profile[k].1.get(&key) };
        if let Some(&ms) = known {
            return (ms != NO_ROUTE).then(|| f64::from(ms) / 1000.0 * self.factor.0);
        }
        let v = map.travel_secs(a, b, p);
        // Routers answer in whole milliseconds, so this keeps the time exactly.
        let ms = v.map_or(NO_ROUTE, |s| (s * 1000.0).round().clamp(0.0, f64::from(NO_ROUTE - 1)) as u32);
        if focused {
            self.focused.insert((k, key), ms);
        } else {
            let pairs = &mut self.by_profile[k].1;
            if pairs.len() >= MAX_PAIRS {
                pairs.clear();
            }
            pairs.insert(key, ms);
        }
        v.map(|s| s * self.factor.0)
    }

    /// Keeps pairs with `node` apart from now on, forgetting those of the node before: for a
    /// node asked about against every plan for a moment and then rarely again. `None` ends it.
    pub fn focus(&mut self, node: Option<NodeId>) {
        if self.focus != node {
            self.focus = node;
            self.focused.clear();
        }
    }

    pub fn clear(&mut self) {
        self.by_profile.clear();
        self.focused.clear();
        self.rows.clear();
        self.active.clear();
    }

    /// The time from `a` to `b` when an active row holds it (`Some(None)`: no route), without asking the
    /// router.
    pub fn from_rows(&self, a: NodeId, b: NodeId, p: Profile) -> Option<Option<f64>> {
        for &k in &self.active {
            let row = &self.rows[k];
            if row.profile != p {
                continue;
            }
            let ms = if row.node == a {
                row.from.get(b.0 as usize)
            } else if row.node == b {
                row.to.get(a.0 as usize)
            } else {
                continue;
            };
            if let Some(&ms) = ms {
                return Some((ms != NO_ROUTE).then(|| f64::from(ms) / 1000.0 * self.factor.0));
            }
        }
        None
    }

    /// Answers pairs with any of `nodes` from whole rows from now on (until [`TravelTable::end_rows`]), sweeping
    /// the map for the nodes whose rows are not kept. Returns false, and answers from no row, when the map
    /// cannot give rows (a closure is in force, or no hierarchy for `p`).
    pub fn rows_for(&mut self, map: &MapGraph, nodes: &[NodeId], p: Profile) -> bool {
        self.active.clear();
        for &node in nodes {
            self.row_asks += 1;
            let k = match self.rows.iter().position(|r| r.node == node && r.profile == p) {
                Some(k) => k,
                None => {
                    let (Some(from), Some(to)) = (map.times_all(node, p, false), map.times_all(node, p, true)) else {
                        return self.end_rows();
                    };
                    if self.rows.len() >= ROWS_KEPT {
                        // The least recently used row that is not active goes.
                        let old = (0..self.rows.len())
                            .filter(|k| !self.active.contains(k))
                            .min_by_key(|&k| self.rows[k].used)
                            .expect("more rows are kept than are active");
                        self.rows.swap_remove(old);
                        // The row that moved into `old` may be an active one.
                        let moved = self.rows.len();
                        for a in &mut self.active {
                            if *a == moved {
                                *a = old;
                            }
                        }
                    }
                    self.rows.push(Row { node, profile: p, from: from.into(), to: to.into(), used: 0 });
                    self.rows.len() - 1
                }
            };
            self.rows[k].used = self.row_asks;
            self.active.push(k);
        }
        true
    }

    /// Stops answering from rows (they stay kept). Returns false.
    pub fn end_rows(&mut self) -> bool {
        self.active.clear();
        false
    }
}

/// One stop as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub kind: StopKind,
    pub order: OrderId,
    pub node: NodeId,
    /// Service may not start before this (the parcel's ready time at a pickup).
    pub not_before: Timestamp,
    /// Arrival must not be later than this (the deliver-by time at a drop-off).
    pub deadline: Option<Timestamp>,
    pub compartments: u8,
    pub grams: u32,
    pub service_s: f64,
}

/// A robot as the planner sees it: where and when its remaining plan starts, and what is on board.
#[derive(Debug, Clone)]
pub struct RobotPlan {
    pub robot: RobotId,
    pub model: RobotModel,
    pub profile: Profile,
    pub start_node: NodeId,
    pub start_time: Timestamp,
    pub load_compartments: u8,
    pub load_grams: u32,
    /// Stops that can no longer move (already released to the robot); they stay first.
    pub locked: usize,
    /// Metres the battery allows before the reserve ([`range_m`]); a plan may not drive farther.
    pub range_m: f64,
    /// Every stop must be finished (service done) by then.
    pub shift_end: Option<Timestamp>,
    pub tasks: Vec<Task>,
}

/// Energy a robot uses per metre driven, Wh (15 Wh/km: a 1 kWh pack lasts about 65 km).
pub const DRIVE_WH_PER_M: f64 = 0.015;
/// Battery kept back for reaching a charger, percent.
pub const RESERVE_PCT: f64 = 20.0;

/// How far a robot of `model` can drive on `battery_pct` before it reaches the reserve.
pub fn range_m(model: &RobotModel, battery_pct: f64) -> f64 {
    let usable = ((battery_pct - RESERVE_PCT) / 100.0).max(0.0);
    usable * model.battery_wh / DRIVE_WH_PER_M
}

/// The timing of one plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Arrival at each task.
    pub arrivals: Vec<Timestamp>,
    pub travel_s: f64,
}

/// Times `tasks` from the robot's start; `None` when infeasible.
pub fn schedule(map: &MapGraph, table: &mut TravelTable, plan: &RobotPlan, tasks: &[Task]) -> Option<Schedule> {
    let mut t = plan.start_time;
    let mut at = plan.start_node;
    let (mut comp, mut grams) = (plan.load_compartments, plan.load_grams);
    let mut travel_s = 0.0;
    let mut arrivals = Vec::with_capacity(tasks.len());
    for task in tasks {
        let leg = table.secs(map, at, task.node, plan.profile)?;
        travel_s += leg;
        // Crossing penalties count as driving here, which only errs on the safe side; the learned slowdown
        // does not (a slow drive is no longer).
        if travel_s / table.factor() * plan.profile.speed_mps > plan.range_m {
            return None;
        }
        let arrive = t.plus_secs(leg);
        if let Some(d) = task.deadline
            && arrive > d
        {
            return None;
        }
        arrivals.push(arrive);
        match task.kind {
            StopKind::Pickup => {
                comp = comp.checked_add(task.compartments)?;
                grams = grams.checked_add(task.grams)?;
                if comp > plan.model.compartments || grams > plan.model.max_payload.0 {
                    return None;
                }
            }
            StopKind::Dropoff | StopKind::Return => {
                comp = comp.saturating_sub(task.compartments);
                grams = grams.saturating_sub(task.grams);
            }
        }
        t = arrive.max(task.not_before).plus_secs(task.service_s);
        at = task.node;
    }
    if !tasks.is_empty() && plan.shift_end.is_some_and(|end| t > end) {
        return None;
    }
    Some(Schedule { arrivals, travel_s })
}

/// Milliseconds a positive duration in seconds adds to a [`Timestamp`] (as [`Timestamp::plus_secs`] rounds).
fn ms(secs: f64) -> i64 {
    if secs.is_finite() && secs > 0.0 { (secs * 1000.0).round() as i64 } else { 0 }
}

/// The timing of a feasible tour that makes one insertion check O(1), a [`Step`] per task.
#[derive(Debug, Clone)]
pub struct Timing {
    /// One allocation for all of it: a quote times every robot it tries.
    steps: Vec<Step>,
    /// Seconds of driving over the whole tour.
    pub travel_s: f64,
}

/// One task of a [`Timing`]: the leg into it, the departure and the load after it, and the latest arrival
/// that keeps the rest of the tour feasible.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Seconds from the plan's start or the task before.
    leg: f64,
    depart: i64,
    comp: u16,
    grams: u64,
    latest: i64,
}

/// The [`Timing`] of `tasks` on `plan`; `None` when a leg has no route or a deadline or the shift end is
/// missed (capacity and range are [`schedule`]'s to judge).
pub fn timing(map: &MapGraph, table: &mut TravelTable, plan: &RobotPlan, tasks: &[Task]) -> Option<Timing> {
    let n = tasks.len();
    let mut t = Timing { steps: Vec::with_capacity(n), travel_s: 0.0 };
    let (mut now, mut at) = (plan.start_time.0 as i64, plan.start_node);
    let (mut comp, mut grams) = (u16::from(plan.load_compartments), u64::from(plan.load_grams));
    for task in tasks {
        let leg = table.secs(map, at, task.node, plan.profile)?;
        t.travel_s += leg;
        let arrive = now + ms(leg);
        if task.deadline.is_some_and(|d| arrive > d.0 as i64) {
            return None;
        }
        match task.kind {
            StopKind::Pickup => {
                comp += u16::from(task.compartments);
                grams += u64::from(task.grams);
            }
            StopKind::Dropoff | StopKind::Return => {
                comp = comp.saturating_sub(u16::from(task.compartments));
                grams = grams.saturating_sub(u64::from(task.grams));
            }
        }
        now = arrive.max(task.not_before.0 as i64) + ms(task.service_s);
        t.steps.push(Step { leg, depart: now, comp, grams, latest: i64::MAX });
        at = task.node;
    }
    let shift_end = plan.shift_end.map_or(i64::MAX, |e| e.0 as i64);
    if n > 0 && now > shift_end {
        return None;
    }
    // Backwards: the latest arrival at k such that k and everything after it stay on time.
    let mut next_latest = i64::MAX;
    for k in (0..n).rev() {
        let task = &tasks[k];
        let latest_start = if k + 1 < n {
            next_latest.saturating_sub(ms(t.steps[k + 1].leg) + ms(task.service_s))
        } else {
            shift_end.saturating_sub(ms(task.service_s))
        };
        let deadline = task.deadline.map_or(i64::MAX, |d| d.0 as i64);
        t.steps[k].latest =
            if (task.not_before.0 as i64) > latest_start { i64::MIN } else { deadline.min(latest_start) };
        next_latest = t.steps[k].latest;
    }
    Some(t)
}

impl Timing {
    /// Travel saved by taking the tasks at `a < b` out of the tour (`tasks` is the tour this times), as
    /// [`schedule`] of the rest would count it; `None` when a leg that replaces others has no route.
    /// Feasibility of the rest is not judged here.
    pub fn saving_without(
        &self,
        map: &MapGraph,
        table: &mut TravelTable,
        plan: &RobotPlan,
        tasks: &[Task],
        a: usize,
        b: usize,
    ) -> Option<f64> {
        let n = tasks.len();
        let node_before = |k: usize| if k == 0 { plan.start_node } else { tasks[k - 1].node };
        let leg = |k: usize| if k < n { self.steps[k].leg } else { 0.0 };
        // Taking out tasks `from..to` saves the legs into them and into task `to` (none past the end), less the
        // leg from the task before `from` straight to task `to`.
        let mut gap = |from: usize, to: usize| -> Option<f64> {
            let old: f64 = (from..=to).map(leg).sum();
            let new = if to < n { table.secs(map, node_before(from), tasks[to].node, plan.profile)? } else { 0.0 };
            Some(old - new)
        };
        if b == a + 1 { gap(a, b + 1) } else { Some(gap(a, a + 1)? + gap(b, b + 1)?) }
    }
}

/// A drop-off position `k` as [`best_pair_insertion_timed`] sees it: the legs from task `k - 1` to the
/// drop-off and from it to task `k` (0 at the end), the travel it adds there, and the least of that at `k` or
/// later where it fits on the tour's own timing. The legs are looked up only where the parcel can be carried
/// past task `k - 1` (`carried`), since a look-up of a new drop-off is a router query.
#[derive(Debug, Clone, Copy)]
struct Slot {
    carried: bool,
    to: Option<f64>,
    from: Option<f64>,
    added: f64,
    bound: f64,
}

/// The cheapest feasible positions for a pickup and its drop-off in one robot's `tasks` (after the locked
/// stops): `(added travel seconds, pickup index, drop-off index)` in the new list, or `None`. Same answers as
/// trying every position with [`schedule`], in at most O(n^2) steps and O(n) travel-time look-ups.
pub fn best_pair_insertion(
    map: &MapGraph,
    table: &mut TravelTable,
    plan: &RobotPlan,
    tasks: &[Task],
    pickup: &Task,
    dropoff: &Task,
) -> Option<(f64, usize, usize)> {
    let t = timing(map, table, plan, tasks)?;
    best_pair_insertion_timed(map, table, plan, tasks, &t, pickup, dropoff)
}

/// [`best_pair_insertion`] on a tour whose [`Timing`] is known: `t` is `timing(map, table, plan, tasks)`.
///
/// Where the drop-off goes apart from its pickup, the added travel splits into the pickup's detour and the
/// drop-off's, and the drop-off's does not depend on where the pickup went. So the drop-off's detours are
/// looked up once per call, each with whether the drop-off fits there even on the tour's own timing (the
/// pickup only delays what follows it, so a drop-off that does not fit then never fits), and the least of
/// those that fit from each position on bounds every remaining candidate: a pickup position, or the rest of
/// a forward walk, that cannot beat the best found is not walked. The tour's own legs come from `t`.
pub fn best_pair_insertion_timed(
    map: &MapGraph,
    table: &mut TravelTable,
    plan: &RobotPlan,
    tasks: &[Task],
    t: &Timing,
    pickup: &Task,
    dropoff: &Task,
) -> Option<(f64, usize, usize)> {
    let cap_comp = u16::from(plan.model.compartments);
    let cap_grams = u64::from(plan.model.max_payload.0);
    let (pc, pg) = (u16::from(pickup.compartments), u64::from(pickup.grams));
    if pc > cap_comp || pg > cap_grams {
        return None;
    }
    let max_travel = plan.range_m / plan.profile.speed_mps * table.factor();
    let shift_end = plan.shift_end.map_or(i64::MAX, |e| e.0 as i64);
    let n = tasks.len();
    let p = plan.profile;
    let first = plan.locked.min(n);
    let drop_deadline = dropoff.deadline.map_or(i64::MAX, |d| d.0 as i64);
    let (drop_ready, drop_service) = (dropoff.not_before.0 as i64, ms(dropoff.service_s));
    // Whether the drop-off, reached `to` seconds after leaving at `leave`, is on time and lets task `k`,
    // `from` seconds after it, (or the end of the shift) be kept.
    let fits = |k: usize, leave: i64, to: f64, from: f64| -> bool {
        let a_d = leave + ms(to);
        if a_d > drop_deadline {
            return false;
        }
        let d_d = a_d.max(drop_ready) + drop_service;
        if k == n { d_d <= shift_end } else { d_d + ms(from) <= t.steps[k].latest }
    };
    // Departures only get later along a tour: after a task left past the deadline the drop-off is late.
    let k_hi = t.steps.partition_point(|s| s.depart <= drop_deadline);
    let none = Slot { carried: false, to: None, from: None, added: f64::INFINITY, bound: f64::INFINITY };
    let mut slots = vec![none; n + 2];
    // Which positions a walk reaches: the parcel, picked up before some task with room for it, is carried
    // past task k - 1 with room all along.
    let room = |k: usize| {
        let (c, g) = if k == 0 {
            (u16::from(plan.load_compartments), u64::from(plan.load_grams))
        } else {
            (t.steps[k - 1].comp, t.steps[k - 1].grams)
        };
        c + pc <= cap_comp && g + pg <= cap_grams
    };
    let mut aboard = false;
    for j in first..k_hi {
        aboard = (aboard || room(j)) && room(j + 1);
        slots[j + 1].carried = aboard;
    }
    for k in (first + 1..=k_hi).rev() {
        let next_bound = slots[k + 1].bound;
        if !slots[k].carried {
            slots[k].bound = next_bound;
            continue;
        }
        let to = table.secs(map, tasks[k - 1].node, dropoff.node, p);
        // Late even on the tour's own timing, the drop-off is late after any pickup (and right after the
        // pickup too, by the triangle inequality): the leg on is not asked for.
        let on_time = to.is_some_and(|to| t.steps[k - 1].depart + ms(to) <= drop_deadline);
        let from = match on_time {
            false => None,
            true if k < n => table.secs(map, dropoff.node, tasks[k].node, p),
            true => Some(0.0),
        };
        let (added, bound) = match (to, from) {
            (Some(to), Some(from)) => {
                let added = to + from - if k < n { t.steps[k].leg } else { 0.0 };
                let fit = added < next_bound && fits(k, t.steps[k - 1].depart, to, from);
                (added, if fit { added } else { next_bound })
            }
            _ => (f64::INFINITY, next_bound),
        };
        slots[k] = Slot { carried: true, to, from, added, bound };
    }
    let direct = table.secs(map, pickup.node, dropoff.node, p);
    let beaten = |best: Option<(f64, usize, usize)>, c: f64| best.is_some_and(|(b, _, _)| c >= b - 1e-9);
    let mut best: Option<(f64, usize, usize)> = None;
    for i in first..=n {
        let (prev_dep, prev_node) = if i == 0 {
            (plan.start_time.0 as i64, plan.start_node)
        } else {
            (t.steps[i - 1].depart, tasks[i - 1].node)
        };
        let (load_c, load_g) = if i == 0 {
            (u16::from(plan.load_compartments), u64::from(plan.load_grams))
        } else {
            (t.steps[i - 1].comp, t.steps[i - 1].grams)
        };
        if load_c + pc > cap_comp || load_g + pg > cap_grams {
            continue;
        }
        let Some(to_p) = table.secs(map, prev_node, pickup.node, p) else { continue };
        let a_p = prev_dep + ms(to_p);
        if pickup.deadline.is_some_and(|d| a_p > d.0 as i64) {
            continue;
        }
        let d_p = a_p.max(pickup.not_before.0 as i64) + ms(pickup.service_s);
        let old = if i < n { t.steps[i].leg } else { 0.0 };
        let after = if i == n {
            Some(0.0)
        } else if slots[i].carried {
            slots[i].from
        } else {
            table.secs(map, dropoff.node, tasks[i].node, p)
        };
        let together = match (direct, after) {
            (Some(to_d), Some(after)) => Some((to_p + to_d + after - old, to_d, after)),
            _ => None,
        };
        // The pickup's own detour, for a drop-off further on.
        let carry = if i < k_hi { table.secs(map, pickup.node, tasks[i].node, p) } else { None };
        let detour = carry.map(|leg| to_p + leg - old);
        let least =
            together.map_or(f64::INFINITY, |x| x.0).min(detour.map_or(f64::INFINITY, |d| d + slots[i + 1].bound));
        if beaten(best, least) {
            continue;
        }
        // The drop-off right after the pickup.
        if let Some((added, to_d, after)) = together
            && !beaten(best, added)
            && t.travel_s + added <= max_travel
            && fits(i, d_p, to_d, after)
        {
            best = Some((added, i, i + 1));
        }
        let (Some(carry), Some(detour)) = (carry, detour) else { continue };
        // Walk forward, carrying the parcel past tasks[j], and try the drop-off right after it.
        let mut dep = d_p;
        for j in i..k_hi {
            if beaten(best, detour + slots[j + 1].bound) {
                break;
            }
            let a = dep + ms(if j == i { carry } else { t.steps[j].leg });
            let task = &tasks[j];
            // Past `latest[j]` the rest of the tour fails whatever follows: a later drop-off only delays it.
            if task.deadline.is_some_and(|d| a > d.0 as i64) || a > t.steps[j].latest {
                break;
            }
            if t.steps[j].comp + pc > cap_comp || t.steps[j].grams + pg > cap_grams {
                break;
            }
            dep = a.max(task.not_before.0 as i64) + ms(task.service_s);
            let k = j + 1;
            let s = slots[k];
            let added = detour + s.added;
            if beaten(best, added) || t.travel_s + added > max_travel {
                continue;
            }
            let (Some(to), Some(from)) = (s.to, s.from) else { continue };
            if fits(k, dep, to, from) {
                best = Some((added, i, k + 1));
            } else if dep + ms(to) > drop_deadline {
                // Travel times obey the triangle inequality: from a later task the drop-off is no sooner.
                break;
            }
        }
    }
    best
}

/// Where to put a new order, and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Insertion {
    pub robot: RobotId,
    /// Index of the pickup in the new task list, and of the drop-off.
    pub pickup_at: usize,
    pub dropoff_at: usize,
    pub added_travel_s: f64,
    pub eta_pickup: Timestamp,
    pub eta_dropoff: Timestamp,
    /// The robot's new task list.
    pub tasks: Vec<Task>,
    pub schedule: Schedule,
}

/// Whether insertion `a` beats insertion `b`: less added travel, then the earlier drop-off, then the robot that
/// sorts first. The same answer whatever order the robots are tried in.
fn beats(a: &Insertion, b: &Insertion) -> bool {
    if (a.added_travel_s - b.added_travel_s).abs() > 1e-9 {
        a.added_travel_s < b.added_travel_s
    } else if a.eta_dropoff != b.eta_dropoff {
        a.eta_dropoff < b.eta_dropoff
    } else {
        a.robot < b.robot
    }
}

/// Tries `(pickup, dropoff)` on one robot and keeps the result in `best` when it beats what is there.
fn consider(
    map: &MapGraph,
    table: &mut TravelTable,
    plan: &RobotPlan,
    pickup: &Task,
    dropoff: &Task,
    best: &mut Option<Insertion>,
) {
    // A plan that is already infeasible (it ran late) gets nothing more piled on it: no answer here.
    let Some((added, i, j)) = best_pair_insertion(map, table, plan, &plan.tasks, pickup, dropoff) else {
        return;
    };
    if best.as_ref().is_some_and(|b| added > b.added_travel_s + 1e-9) {
        return;
    }
    let mut tasks = plan.tasks.clone();
    tasks.insert(i, pickup.clone());
    tasks.insert(j, dropoff.clone());
    let Some(s) = schedule(map, table, plan, &tasks) else {
        return;
    };
    let ins = Insertion {
        robot: plan.robot.clone(),
        pickup_at: i,
        dropoff_at: j,
        added_travel_s: added,
        eta_pickup: s.arrivals[i].max(pickup.not_before),
        eta_dropoff: s.arrivals[j],
        tasks,
        schedule: s,
    };
    if best.as_ref().is_none_or(|b| beats(&ins, b)) {
        *best = Some(ins);
    }
}

/// The cheapest feasible insertion of `(pickup, dropoff)` over every robot in `robots`, or `None`, trying
/// every robot. [`cheapest_insertion_bounded`] gives the same answer faster.
pub fn cheapest_insertion(
    map: &MapGraph,
    table: &mut TravelTable,
    robots: &[RobotPlan],
    pickup: &Task,
    dropoff: &Task,
) -> Option<Insertion> {
    let mut best = None;
    table.focus(Some(dropoff.node));
    for plan in robots {
        consider(map, table, plan, pickup, dropoff, &mut best);
    }
    table.focus(None);
    best
}

/// What [`insertion_lower_bound`] needs to know of a robot: where its plan starts, the nodes of its planned
/// stops in order, how many of them are locked, and how fast it drives.
#[derive(Debug, Clone, Copy)]
pub struct Outline<'a> {
    pub start: NodeId,
    pub nodes: &'a [NodeId],
    pub locked: usize,
    pub profile: Profile,
    /// The plan's legs when the caller keeps them ([`plan_legs`]): `legs[k]` is the travel time to `nodes[k]`
    /// from the stop before it (from `start` for the first), infinite where no route serves it. `None`: they
    /// are looked up in the travel-time table.
    pub legs: Option<&'a [f64]>,
    /// Free compartments on each leg ([`plan_room`]): `room[k]` on the way to `nodes[k]`, `room[n]` after the
    /// last stop. `None`: capacity is not considered (a weaker bound).
    pub room: Option<&'a [u8]>,
}

impl<'a> Outline<'a> {
    pub fn of(plan: &RobotPlan, nodes: &'a [NodeId]) -> Self {
        Self { start: plan.start_node, nodes, locked: plan.locked, profile: plan.profile, legs: None, room: None }
    }
}

/// Free compartments on each leg of a plan, as [`Outline::room`] takes them: `n + 1` values for `n` tasks.
pub fn plan_room(plan: &RobotPlan) -> Vec<u8> {
    let mut load = plan.load_compartments;
    let mut room = Vec::with_capacity(plan.tasks.len() + 1);
    for t in &plan.tasks {
        room.push(plan.model.compartments.saturating_sub(load));
        load = match t.kind {
            StopKind::Pickup => load.saturating_add(t.compartments),
            StopKind::Dropoff | StopKind::Return => load.saturating_sub(t.compartments),
        };
    }
    room.push(plan.model.compartments.saturating_sub(load));
    room
}

/// The legs of a plan from `start` through `nodes`, as [`Outline::legs`] takes them.
pub fn plan_legs(map: &MapGraph, table: &mut TravelTable, start: NodeId, nodes: &[NodeId], p: Profile) -> Vec<f64> {
    let mut from = start;
    nodes
        .iter()
        .map(|&to| {
            let leg = table.secs(map, from, to, p).unwrap_or(f64::INFINITY);
            from = to;
            leg
        })
        .collect()
}

/// Seconds no route from `a` to `b` can beat: the straight line at full speed (every edge is at least as long
/// as the straight line between its ends), less a margin for the router's rounding to milliseconds.
fn straight_secs(map: &MapGraph, a: NodeId, b: NodeId, speed_mps: f64) -> f64 {
    (map.floor_m(a, b) / speed_mps * 0.995 - 1.0).max(0.0)
}

/// A lower bound on the travel any feasible insertion of a pickup at `p` and a drop-off at `d` adds to the plan
/// outlined by `o`, given the travel time `p_to_d` from `p` to `d`; infinite when the plan has a leg no route
/// serves (then nothing can be inserted).
///
/// Why it holds: travel times are shortest paths, so they obey the triangle inequality. Put between different
/// stops, the pickup and the drop-off add exactly their two detours; a detour of `x` between stops `a` and `b`
/// is at least `max(0, straight(a, x) + straight(x, b) - leg(a, b))`, and one after the last stop at least
/// `straight(a, x)`. Put together between `a` and `b`, they add `t(a, p) + t(p, d) + t(d, b) - leg(a, b)`,
/// which is at least `straight(a, p) + p_to_d + straight(d, b) - leg(a, b)`. The bound is the least of these
/// over every allowed position. With [`Outline::room`], a position is allowed only when the parcel's
/// `compartments` fit on every leg it would ride (a relaxation of the capacity check; weight is not bounded).
pub fn insertion_lower_bound(
    map: &MapGraph,
    table: &mut TravelTable,
    o: &Outline<'_>,
    p: NodeId,
    d: NodeId,
    p_to_d: f64,
    compartments: u8,
) -> f64 {
    let n = o.nodes.len();
    let speed = o.profile.speed_mps;
    // The exact time where a row holds it (then this bound is the exact detour), else the straight line.
    let line = |table: &TravelTable, a: NodeId, b: NodeId| match table.from_rows(a, b, o.profile) {
        Some(known) => known.unwrap_or(f64::INFINITY),
        None => straight_secs(map, a, b, speed),
    };
    let mut bound = f64::INFINITY;
    // The least pickup detour at a position before the current one.
    let mut pickup_before = f64::INFINITY;
    for k in o.locked.min(n)..=n {
        if o.room.is_some_and(|room| room.get(k).is_some_and(|&free| free < compartments)) {
            // The parcel cannot ride this leg: neither stop goes here, and a pickup before it cannot reach
            // a drop-off after it.
            pickup_before = f64::INFINITY;
            continue;
        }
        let a = if k == 0 { o.start } else { o.nodes[k - 1] };
        let (to_p, to_d) = (line(table, a, p), line(table, a, d));
        if k == n {
            bound = bound.min(pickup_before + to_d).min(to_p + p_to_d);
            break;
        }
        let b = o.nodes[k];
        let leg = match o.legs {
            Some(legs) => legs[k],
            None => table.secs(map, a, b, o.profile).unwrap_or(f64::INFINITY),
        };
        if leg.is_infinite() {
            return f64::INFINITY;
        }
        let (p_to_b, d_to_b) = (line(table, p, b), line(table, d, b));
        let detour_p = (to_p + p_to_b - leg).max(0.0);
        let detour_d = (to_d + d_to_b - leg).max(0.0);
        let together = (to_p + p_to_d + d_to_b - leg).max(detour_p).max(detour_d);
        bound = bound.min(pickup_before + detour_d).min(together);
        pickup_before = pickup_before.min(detour_p);
    }
    bound.max(0.0)
}

/// A new order's drop-off gets rows when the map has at most this many nodes per planned stop (plus one per
/// robot). On Monaco (22,732 nodes) a sweep takes 74 us, as long as 155 hub-label queries
/// (`trundle-bench routing`, docs/benchmarks.md), and a drop-off needs two; the rows pay for themselves once
/// the exact bounds spare the full planning of a few robots, which is so from a few thousand stops on
/// (`trundle-bench load`, `trundle-bench insertion`).
pub const ROW_NODES_PER_STOP: usize = 8;

/// The answer of [`cheapest_insertion_bounded`] and how many robots it had to try in full.
#[derive(Debug, Clone)]
pub struct BoundedSearch {
    pub best: Option<Insertion>,
    pub tried: usize,
}

/// The same answer as [`cheapest_insertion`] without trying every robot: robots are tried in order of their
/// [`insertion_lower_bound`], and the search stops at the first whose bound exceeds the best insertion found.
/// `outlines[k]` outlines robot `k`; `plan_of(k)` builds its full plan, only for the robots tried.
pub fn cheapest_insertion_bounded(
    map: &MapGraph,
    table: &mut TravelTable,
    outlines: &[Outline<'_>],
    mut plan_of: impl FnMut(usize) -> RobotPlan,
    pickup: &Task,
    dropoff: &Task,
) -> BoundedSearch {
    table.focus(Some(dropoff.node));
    // Whole rows: every time to or from their nodes is then exact and read from an array, and the bounds below
    // use it. The pickup's row always (a shop's node: swept once, then kept for its next orders); the
    // drop-off's (new with each order) only when the plans have enough stops to pay for its sweeps.
    let stops: usize = outlines.iter().map(|o| o.nodes.len() + 1).sum();
    if let Some(o) = outlines.first() {
        let threshold = table.row_nodes_per_stop.unwrap_or(ROW_NODES_PER_STOP);
        if threshold > 0 {
            let both = map.node_count() <= threshold.saturating_mul(stops);
            let nodes = [pickup.node, dropoff.node];
            table.rows_for(map, if both { &nodes[..] } else { &nodes[..1] }, o.profile);
        }
    }
    // The pickup-to-drop-off time for each speed profile in the fleet (usually one).
    let mut direct: Vec<(Profile, Option<f64>)> = Vec::new();
    let mut bounds: Vec<(f64, usize)> = Vec::with_capacity(outlines.len());
    for (k, o) in outlines.iter().enumerate() {
        let p_to_d = match direct.iter().find(|(p, _)| *p == o.profile) {
            Some((_, t)) => *t,
            None => {
                let t = table.secs(map, pickup.node, dropoff.node, o.profile);
                direct.push((o.profile, t));
                t
            }
        };
        // No route from the pickup to the drop-off: no insertion on this robot can exist.
        let Some(p_to_d) = p_to_d else { continue };
        let lb = insertion_lower_bound(map, table, o, pickup.node, dropoff.node, p_to_d, pickup.compartments);
        if lb.is_finite() {
            bounds.push((lb, k));
        }
    }
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut best: Option<Insertion> = None;
    let mut tried = 0;
    for (lb, k) in bounds {
        if best.as_ref().is_some_and(|b| lb > b.added_travel_s + 1e-6) {
            break;
        }
        tried += 1;
        consider(map, table, &plan_of(k), pickup, dropoff, &mut best);
    }
    table.focus(None);
    table.end_rows();
    BoundedSearch { best, tried }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grams;
    use crate::map::tests::grid;

    fn task(kind: StopKind, order: &str, node: u32, deadline: Option<u64>) -> Task {
        Task {
            kind,
            order: OrderId::parse(order).expect("valid"),
            node: NodeId(node),
            not_before: Timestamp(0),
            deadline: deadline.map(Timestamp),
            compartments: 1,
            grams: 1000,
            service_s: 30.0,
        }
    }

    fn robot(id: &str, node: u32, compartments: u8) -> RobotPlan {
        RobotPlan {
            robot: RobotId::parse(id).expect("valid"),
            model: RobotModel { compartments, max_payload: Grams(20_000), ..RobotModel::default() },
            profile: Profile::default(),
            start_node: NodeId(node),
            start_time: Timestamp(0),
            load_compartments: 0,
            load_grams: 0,
            locked: 0,
            range_m: f64::INFINITY,
            shift_end: None,
            tasks: vec![],
        }
    }

    /// Every position pair tried with `schedule`: the reference for `best_pair_insertion`.
    fn brute_force(map: &MapGraph, table: &mut TravelTable, plan: &RobotPlan, p: &Task, d: &Task) -> Option<f64> {
        let base = schedule(map, table, plan, &plan.tasks)?.travel_s;
        let n = plan.tasks.len();
        let mut best: Option<f64> = None;
        for i in plan.locked.min(n)..=n {
            for j in i + 1..=n + 1 {
                let mut tasks = plan.tasks.clone();
                tasks.insert(i, p.clone());
                tasks.insert(j, d.clone());
                if let Some(s) = schedule(map, table, plan, &tasks) {
                    let added = s.travel_s - base;
                    if best.is_none_or(|b| added < b) {
                        best = Some(added);
                    }
                }
            }
        }
        best
    }

    #[test]
    fn fast_pair_insertion_matches_trying_every_position() {
        let map = grid();
        let mut table = TravelTable::default();
        let mut rng = crate::planner::pdptw::solve::Rng::new(42);
        let (mut compared, mut feasible) = (0, 0);
        for case in 0..400 {
            let mut plan = robot("r", rng.below(16) as u32, 1 + rng.below(3) as u8);
            plan.model.max_payload = Grams(3_000);
            plan.range_m = if case % 5 == 0 { 800.0 + rng.unit() * 2_000.0 } else { f64::INFINITY };
            plan.shift_end = (case % 3 == 0).then(|| Timestamp(600_000 + (rng.unit() * 1_800_000.0) as u64));
            plan.load_compartments = rng.below(2) as u8;
            let mk = |rng: &mut crate::planner::pdptw::solve::Rng, kind, order: &str| {
                let mut t = task(kind, order, rng.below(16) as u32, None);
                t.grams = 500 + rng.below(1_500) as u32;
                t.not_before = Timestamp(rng.below(600_000) as u64);
                if kind == StopKind::Dropoff {
                    t.deadline = Some(Timestamp(300_000 + rng.below(1_800_000) as u64));
                }
                t
            };
            // Build a feasible tour by cheapest insertions.
            for k in 0..rng.below(5) {
                let p = mk(&mut rng, StopKind::Pickup, &format!("o{k}"));
                let d = Task { grams: p.grams, ..mk(&mut rng, StopKind::Dropoff, &format!("o{k}")) };
                if let Some(ins) = cheapest_insertion(&map, &mut table, std::slice::from_ref(&plan), &p, &d) {
                    plan.tasks = ins.tasks;
                }
            }
            plan.locked = rng.below(plan.tasks.len() + 1);
            let p = mk(&mut rng, StopKind::Pickup, "new");
            let d = Task { grams: p.grams, ..mk(&mut rng, StopKind::Dropoff, "new") };
            let slow = brute_force(&map, &mut table, &plan, &p, &d);
            let fast = best_pair_insertion(&map, &mut table, &plan, &plan.tasks, &p, &d);
            compared += 1;
            match (slow, fast) {
                (None, None) => {}
                (Some(a), Some((b, i, j))) => {
                    feasible += 1;
                    assert!((a - b).abs() < 1e-6, "case {case}: brute force {a}, fast {b} at {i},{j}");
                    let mut tasks = plan.tasks.clone();
                    tasks.insert(i, p.clone());
                    tasks.insert(j, d.clone());
                    assert!(schedule(&map, &mut table, &plan, &tasks).is_some(), "case {case}: fast answer infeasible");
                }
                other => panic!("case {case}: brute force and fast disagree: {other:?}"),
            }
        }
        assert_eq!(compared, 400);
        assert!(feasible > 100 && feasible < 400, "a mix of feasible and infeasible cases: {feasible}");
    }

    #[test]
    fn saving_without_a_pair_is_what_the_schedule_of_the_rest_says() {
        let map = grid();
        let mut table = TravelTable::default();
        let mut rng = crate::planner::alns::Rng::new(9);
        let mut compared = 0;
        for case in 0..100 {
            let mut plan = robot("r", rng.below(16) as u32, 4);
            for k in 0..1 + rng.below(5) {
                let p = task(StopKind::Pickup, &format!("o{k}"), rng.below(16) as u32, None);
                let d = task(StopKind::Dropoff, &format!("o{k}"), rng.below(16) as u32, None);
                if let Some(ins) = cheapest_insertion(&map, &mut table, std::slice::from_ref(&plan), &p, &d) {
                    plan.tasks = ins.tasks;
                }
            }
            let t = timing(&map, &mut table, &plan, &plan.tasks).expect("no deadlines: feasible");
            let whole = schedule(&map, &mut table, &plan, &plan.tasks).expect("feasible").travel_s;
            for a in 0..plan.tasks.len() {
                let Some(b) = (a + 1..plan.tasks.len()).find(|&b| plan.tasks[b].order == plan.tasks[a].order) else {
                    continue;
                };
                let rest: Vec<Task> =
                    plan.tasks.iter().enumerate().filter(|&(k, _)| k != a && k != b).map(|(_, x)| x.clone()).collect();
                let expected = whole - schedule(&map, &mut table, &plan, &rest).expect("feasible").travel_s;
                let got = t.saving_without(&map, &mut table, &plan, &plan.tasks, a, b).expect("connected grid");
                assert!((got - expected).abs() < 1e-6, "case {case}, tasks {a} and {b}: {got} vs {expected}");
                compared += 1;
            }
        }
        assert!(compared > 100, "{compared}");
    }

    #[test]
    fn picks_the_nearest_robot() {
        let map = grid();
        let mut table = TravelTable::default();
        let robots = [robot("far", 15, 2), robot("near", 1, 2)];
        let ins = cheapest_insertion(
            &map,
            &mut table,
            &robots,
            &task(StopKind::Pickup, "o1", 0, None),
            &task(StopKind::Dropoff, "o1", 3, Some(3_600_000)),
        )
        .expect("feasible");
        assert_eq!(ins.robot.as_str(), "near");
        assert_eq!((ins.pickup_at, ins.dropoff_at), (0, 1));
        assert!(ins.eta_dropoff > ins.eta_pickup);
    }

    #[test]
    fn respects_deadlines_and_capacity() {
        let map = grid();
        let mut table = TravelTable::default();
        // Node 0 to node 15 is about 660 m: more than 60 s at 1.6 m/s.
        let tight = cheapest_insertion(
            &map,
            &mut table,
            &[robot("r", 0, 2)],
            &task(StopKind::Pickup, "o1", 0, None),
            &task(StopKind::Dropoff, "o1", 15, Some(60_000)),
        );
        assert!(tight.is_none());
        let mut full = robot("r", 0, 1);
        full.tasks = vec![task(StopKind::Pickup, "o0", 5, None), task(StopKind::Dropoff, "o0", 10, Some(3_600_000))];
        let ins = cheapest_insertion(
            &map,
            &mut table,
            &[full],
            &task(StopKind::Pickup, "o1", 6, None),
            &task(StopKind::Dropoff, "o1", 9, Some(3_600_000)),
        )
        .expect("feasible after the first delivery");
        // One compartment: o1 cannot ride together with o0.
        let kinds: Vec<_> = ins.tasks.iter().map(|t| (t.kind, t.order.as_str().to_owned())).collect();
        let o0_drop = kinds.iter().position(|k| k.1 == "o0" && k.0 == StopKind::Dropoff);
        let o1_pick = kinds.iter().position(|k| k.1 == "o1" && k.0 == StopKind::Pickup);
        assert!(o0_drop < o1_pick, "{kinds:?}");
    }

    #[test]
    fn locked_stops_stay_first() {
        let map = grid();
        let mut table = TravelTable::default();
        let mut r = robot("r", 0, 2);
        r.tasks = vec![task(StopKind::Pickup, "o0", 15, None), task(StopKind::Dropoff, "o0", 12, None)];
        r.locked = 1;
        let ins = cheapest_insertion(
            &map,
            &mut table,
            &[r],
            &task(StopKind::Pickup, "o1", 1, None),
            &task(StopKind::Dropoff, "o1", 2, None),
        )
        .expect("feasible");
        assert_eq!(ins.tasks[0].order.as_str(), "o0");
        assert!(ins.pickup_at >= 1);
    }
}
