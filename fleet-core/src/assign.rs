//! The first assignment policy: cheapest feasible insertion. A new order's pickup and drop-off are tried at
//! every pair of positions (pickup first) in every available robot's plan, after the stops already released to
//! the robot; a position is feasible when capacity (compartments and weight) holds all along and every drop-off
//! arrives by its deadline. The cheapest added travel time wins; ties go to the earlier drop-off, then the
//! robot that sorts first.
//!
//! Travel times come from a [`TravelTable`], a cache in front of the map's router.

use std::collections::HashMap;

use crate::map::{MapGraph, Profile};
use crate::robot::{RobotModel, StopKind};
use crate::{NodeId, OrderId, RobotId, Timestamp};

/// Cached travel times between node pairs, per profile. Cleared when the map changes (a closure).
#[derive(Debug, Default)]
pub struct TravelTable {
    pairs: HashMap<(NodeId, NodeId, u64, u64), Option<f64>>,
}

/// Pairs kept at most before the cache starts over.
const MAX_PAIRS: usize = 1 << 20;

impl TravelTable {
    /// Seconds from `a` to `b`, `None` when unreachable. Answered by the map's contraction hierarchy when it has
    /// one for this profile, so a miss costs microseconds.
    pub fn secs(&mut self, map: &MapGraph, a: NodeId, b: NodeId, p: Profile) -> Option<f64> {
        if a == b {
            return Some(0.0);
        }
        let key = (a, b, p.speed_mps.to_bits(), p.crossing_penalty_s.to_bits());
        if let Some(v) = self.pairs.get(&key) {
            return *v;
        }
        if self.pairs.len() >= MAX_PAIRS {
            self.pairs.clear();
        }
        let v = map.travel_secs(a, b, p);
        self.pairs.insert(key, v);
        v
    }

    pub fn clear(&mut self) {
        self.pairs.clear();
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
        // Crossing penalties count as driving here, which only errs on the safe side.
        if travel_s * plan.profile.speed_mps > plan.range_m {
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
    Some(Schedule { arrivals, travel_s })
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

/// The cheapest feasible insertion of `(pickup, dropoff)` over `robots`, or `None`.
pub fn cheapest_insertion(
    map: &MapGraph,
    table: &mut TravelTable,
    robots: &[RobotPlan],
    pickup: &Task,
    dropoff: &Task,
) -> Option<Insertion> {
    let mut best: Option<Insertion> = None;
    for plan in robots {
        if pickup.compartments > plan.model.compartments || pickup.grams > plan.model.max_payload.0 {
            continue;
        }
        let Some(base) = schedule(map, table, plan, &plan.tasks) else {
            // The current plan is already infeasible (it ran late); do not pile more on it.
            continue;
        };
        let n = plan.tasks.len();
        for i in plan.locked.min(n)..=n {
            for j in i + 1..=n + 1 {
                let mut tasks = plan.tasks.clone();
                tasks.insert(i, pickup.clone());
                tasks.insert(j, dropoff.clone());
                let Some(s) = schedule(map, table, plan, &tasks) else {
                    continue;
                };
                let added = s.travel_s - base.travel_s;
                let eta_dropoff = s.arrivals[j];
                let better = match &best {
                    None => true,
                    Some(b) => {
                        added < b.added_travel_s - 1e-9
                            || ((added - b.added_travel_s).abs() <= 1e-9 && eta_dropoff < b.eta_dropoff)
                    }
                };
                if better {
                    best = Some(Insertion {
                        robot: plan.robot.clone(),
                        pickup_at: i,
                        dropoff_at: j,
                        added_travel_s: added,
                        eta_pickup: s.arrivals[i].max(pickup.not_before),
                        eta_dropoff,
                        tasks,
                        schedule: s,
                    });
                }
            }
        }
    }
    best
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
            tasks: vec![],
        }
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
