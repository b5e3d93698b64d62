//! Ideal robots: each follows its released steps exactly, at its model's speed along the graph, reporting every
//! node it passes and finishing each step; stop actions take a fixed service time. No physics, no people: the
//! dispatcher core's own behaviour, second by second, for tests and benchmarks of the core (traffic turns,
//! releases) at any fleet size.

use std::collections::{BTreeMap, BTreeSet};

use crate::dispatcher::{Dispatcher, Input, Output};
use crate::mission::{FromRobot, RobotEvent, RobotReport, StepAction, StepOutcome};
use crate::{NodeId, RobotId, Timestamp};

/// Where an ideal robot is along its current drive step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Along {
    pub seq: u32,
    /// Index of the last node passed in the step's nodes.
    pub index: usize,
    /// Metres driven past it.
    pub metres: f64,
}

/// The robots of a dispatcher, driven ideally. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct IdealRobots {
    along: BTreeMap<RobotId, Along>,
    serving: BTreeMap<RobotId, (u32, f64)>,
    /// Robots that do not move (broken down, say).
    pub halted: BTreeSet<RobotId>,
    /// Robots that drive slower than their model allows (a crowded sidewalk, say): the share of the speed
    /// they make, in (0, 1].
    pub pace: BTreeMap<RobotId, f64>,
    /// Seconds each stop action takes.
    pub service_s: f64,
}

impl IdealRobots {
    pub fn new(service_s: f64) -> Self {
        Self { service_s, ..Self::default() }
    }

    /// Where `id` is along its current drive, if it drives.
    pub fn along(&self, id: &RobotId) -> Option<Along> {
        self.along.get(id).copied()
    }

    /// Moves every robot of `d` on by `dt_s` seconds at `now`: along its released drive (reporting each node
    /// passed, finishing the step at its end) or through its stop action.
    pub fn step(&mut self, d: &mut Dispatcher, now: Timestamp, dt_s: f64) {
        self.step_with(d, now, dt_s, &mut |_| {});
    }

    /// [`IdealRobots::step`], handing every output of the dispatcher to `sink`.
    pub fn step_with(&mut self, d: &mut Dispatcher, now: Timestamp, dt_s: f64, sink: &mut dyn FnMut(Vec<Output>)) {
        let ids: Vec<RobotId> = d.robots().map(|r| r.id.clone()).collect();
        for id in ids {
            if self.halted.contains(&id) {
                continue;
            }
            let Some(r) = d.robot(&id) else { continue };
            let Some(head) = r.mission.base.first().filter(|s| s.released).cloned() else {
                self.along.remove(&id);
                continue;
            };
            let speed = r.model.max_speed_mps;
            match &head.action {
                StepAction::Drive { nodes, speed_mps, .. } => {
                    let a = self.along.entry(id.clone()).or_insert(Along { seq: head.seq, index: 0, metres: 0.0 });
                    if a.seq != head.seq {
                        *a = Along { seq: head.seq, index: 0, metres: 0.0 };
                    }
                    let pace = self.pace.get(&id).copied().unwrap_or(1.0).clamp(0.01, 1.0);
                    a.metres += speed.min(*speed_mps) * pace * dt_s;
                    let mut passed: Vec<NodeId> = Vec::new();
                    while a.index + 1 < nodes.len() {
                        let len = d.map().edge(nodes[a.index], nodes[a.index + 1]).map_or(0.0, |e| e.length_m);
                        if a.metres < len {
                            break;
                        }
                        a.metres -= len;
                        a.index += 1;
                        passed.push(nodes[a.index]);
                    }
                    let done = a.index + 1 >= nodes.len();
                    for n in passed {
                        sink(report(d, now, &id, n, speed));
                    }
                    if done {
                        self.along.remove(&id);
                        sink(finish(d, now, &id, head.seq));
                    }
                }
                _ => {
                    let left = self.serving.entry(id.clone()).or_insert((head.seq, self.service_s));
                    if left.0 != head.seq {
                        *left = (head.seq, self.service_s);
                    }
                    left.1 -= dt_s;
                    if left.1 <= 0.0 {
                        self.serving.remove(&id);
                        sink(finish(d, now, &id, head.seq));
                    }
                }
            }
        }
    }
}

fn report(d: &mut Dispatcher, now: Timestamp, id: &RobotId, node: NodeId, speed: f64) -> Vec<Output> {
    let (Some(r), Some(pos)) = (d.robot(id), d.map().pos(node)) else { return Vec::new() };
    let report = RobotReport {
        pos,
        heading_deg: 0.0,
        speed_mps: speed,
        battery_pct: r.battery_pct,
        last_node: Some(node),
        update_id: r.mission.update_id,
        driving: true,
        paused: false,
    };
    d.handle(now, Input::Robot { robot: id.clone(), msg: FromRobot::State(report) })
}

fn finish(d: &mut Dispatcher, now: Timestamp, id: &RobotId, seq: u32) -> Vec<Output> {
    let msg = FromRobot::Event(RobotEvent::StepFinished { seq, outcome: StepOutcome::Done });
    d.handle(now, Input::Robot { robot: id.clone(), msg })
}
