//! Lockstep stepping: the tick loop ([`run`]) and the message network between the agents and the host of
//! the core ([`Net`]). Each tick: faults end and strike, shops act, customers type their PIN, the physics world
//! steps up to the tick's time, each robot's platform reports to its agent, messages flow until none is in
//! flight (agent -> host -> agents -> bodies), then the host ticks the dispatcher and runs a search for better
//! plans when they are due. The loop is a thin adapter over [`Host`]: when a tick or a search is due, what an
//! output means and where it goes are the host's answers; the loop only carries messages and keeps time.

use std::collections::{BTreeMap, VecDeque};

use fleet_core::dispatcher::{Input, Record};
use fleet_core::host::{Host, Improvement, RecordKey, Routed};
use fleet_core::mission::{FromRobot, RobotEvent};
use fleet_core::planner::improve::{ImproveParams, improve};
use fleet_core::{OrderId, RobotId, Timestamp};
use robot_agent::agent::{self, Agent, Output as AgentOut};
use robot_agent::platform::Platform;

use super::TRACE_EVERY_S;
use super::demand::Demand;
use super::faults::Faults;
use crate::physics::PhysicsWorld;
use crate::report::Trace;
use crate::{Error, Scenario};

/// A robot's agent; its body is robot `i` of the physics world, `i` being its index in the robot list.
pub(super) struct SimRobot {
    pub(super) id: RobotId,
    pub(super) agent: Agent,
}

/// A message in flight, with the index of the robot it is from or for.
pub(super) enum Msg {
    ToDispatcher(usize, FromRobot),
    ToAgent(usize, agent::Input),
}

/// What the loop drives: the host of the core, the network, the agents and their bodies.
pub(super) struct Fleet {
    pub(super) host: Host,
    pub(super) net: Net,
    pub(super) robots: Vec<SimRobot>,
    pub(super) phys: PhysicsWorld,
}

impl Fleet {
    /// Delivers messages until none is in flight.
    fn pump(&mut self, now: Timestamp) {
        self.net.pump(&mut self.host, &mut self.robots, &mut self.phys, now);
    }
}

/// What the loop measured on the way, for the report.
pub(super) struct Ran {
    pub(super) ticks: u64,
    /// The time of the last tick.
    pub(super) now: Timestamp,
    /// Per robot: time spent driving, serving or waiting for a PIN.
    pub(super) busy_ms: Vec<u64>,
    /// Improvements the host applied, and the minutes of driving they saved in seconds.
    pub(super) improvements: usize,
    pub(super) improvement_saved_s: f64,
    pub(super) trace: Trace,
}

/// Samples every robot's position into `trace`, and its battery when `battery`.
fn sample(phys: &PhysicsWorld, trace: &mut Trace, battery: bool) {
    for i in 0..trace.xy.len() {
        if let Some(p) = phys.robot_xy(i) {
            trace.xy[i].push([p[0], p[1]]);
        }
        if battery {
            trace.battery_pct[i].push(phys.battery_pct(i) as f32);
        }
    }
}

/// Runs the scenario's ticks; `progress(done, total)` is called with simulated ticks now and then.
pub(super) fn run(
    fleet: &mut Fleet,
    demand: &mut Demand,
    faults: &mut Faults<'_>,
    scenario: &Scenario,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Ran, Error> {
    let start = Timestamp(scenario.start_ms);
    let n = fleet.robots.len();
    let dt = scenario.dt_ms;
    let ticks = scenario.duration_s * 1000 / dt;
    let mut now = start;
    let (mut improvements, mut improvement_saved_s) = (0usize, 0.0f64);
    let mut busy_ms = vec![0u64; n];
    let mut trace = Trace {
        sample_s: TRACE_EVERY_S,
        xy: vec![Vec::new(); n],
        battery_pct: vec![Vec::new(); n],
        ..Trace::default()
    };
    sample(&fleet.phys, &mut trace, true);
    fleet.pump(now);
    let report_every = (ticks / 200).max(1);

    // After the day, the run goes on without new orders until every placed order has ended (or the drain
    // limit): an order left open then is stuck, not cut off by the clock.
    let last = ticks + scenario.drain_s * 1000 / dt;
    let mut tick = 0;
    while tick < last {
        if tick >= ticks && fleet.host.dispatcher().orders().all(|o| o.status.is_terminal()) {
            break;
        }
        tick += 1;
        now = Timestamp(start.0 + tick * dt);
        let elapsed_ms = tick * dt;
        // Faults that end now, then faults that strike now.
        faults.end_due(now, fleet);
        faults.strike_due(now, elapsed_ms, fleet)?;
        // Shops place the orders due by now, and mark packed parcels ready.
        demand.place_due(now, &mut fleet.host, &mut fleet.net)?;
        demand.mark_ready(now, &mut fleet.host, &mut fleet.net);
        let Fleet { host, net, robots, phys } = &mut *fleet;
        // Customers at the door type their PIN.
        for (i, r) in robots.iter().enumerate() {
            if let Some(order) = r.agent.awaiting_pin()
                && let Some(pin) = demand.pin(order)
            {
                net.queue.push_back(Msg::ToAgent(i, agent::Input::PinEntered(pin.clone())));
            }
        }
        // Bodies move.
        phys.advance_to(now);
        for (i, r) in robots.iter().enumerate() {
            for ev in phys.robot(i).poll(now) {
                net.queue.push_back(Msg::ToAgent(i, agent::Input::Platform(ev)));
            }
            if phys.is_busy(i) || r.agent.awaiting_pin().is_some() {
                busy_ms[i] += dt;
            }
        }
        // State reports once per simulated second.
        if elapsed_ms % 1_000 < dt {
            for i in 0..robots.len() {
                net.queue.push_back(Msg::ToAgent(i, agent::Input::Tick(phys.robot(i).telemetry())));
            }
        }
        net.pump(host, robots, phys, now);
        if let Some(out) = host.tick_if_due(now) {
            net.absorb(out);
            net.pump(host, robots, phys, now);
        }
        if let Some(snap) = host.improvement_due(now) {
            let params = ImproveParams { seed: scenario.seed ^ tick, ..ImproveParams::default() };
            let iterations = scenario.improve_iterations.max(1);
            let found = improve(&snap, &params, &mut |i| i as f64 / iterations as f64);
            match host.improved(now, found) {
                Improvement::NothingFound => {}
                Improvement::Applied { saved_s, routed, .. } => {
                    improvements += 1;
                    improvement_saved_s += saved_s;
                    net.absorb(routed);
                }
                Improvement::Refused { routed, .. } => net.absorb(routed),
            }
            net.pump(host, robots, phys, now);
        }
        if elapsed_ms % (TRACE_EVERY_S * 1_000) < dt {
            sample(phys, &mut trace, elapsed_ms % (6 * TRACE_EVERY_S * 1_000) < dt);
        }
        if tick % report_every == 0 || tick == ticks {
            progress(tick.min(ticks), ticks);
        }
    }
    Ok(Ran { ticks: tick, now, busy_ms, improvements, improvement_saved_s, trace })
}

/// The dispatcher process around the core, as far as the sim needs it: the message queue, each robot's link,
/// the store of persisted records, and what the report counts on the way.
pub(super) struct Net {
    pub(super) queue: VecDeque<Msg>,
    /// Whether robot `i`'s link is up; while it is down, messages both ways are lost.
    pub(super) link_up: Vec<bool>,
    pub(super) index: BTreeMap<RobotId, usize>,
    /// The records as a store keeps them: the latest per key.
    pub(super) store: BTreeMap<RecordKey, Record>,
    /// Every robot each order was assigned to, in order (a robot listed again only after another).
    pub(super) assigned: BTreeMap<OrderId, Vec<RobotId>>,
    /// BLOCKED events that reached the dispatcher.
    pub(super) reroutes: u64,
    /// Messages lost on a link that was down.
    pub(super) lost_messages: u64,
    pub(super) alerts: u64,
}

impl Net {
    /// Every robot's link up, each agent about to hear it is connected, and `store` the records so far.
    pub(super) fn new(robots: &[SimRobot], store: BTreeMap<RecordKey, Record>) -> Self {
        Self {
            queue: (0..robots.len()).map(|i| Msg::ToAgent(i, agent::Input::Connected)).collect(),
            link_up: vec![true; robots.len()],
            index: robots.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect(),
            store,
            assigned: BTreeMap::new(),
            reroutes: 0,
            lost_messages: 0,
            alerts: 0,
        }
    }

    /// Takes the dispatcher's outputs: records to the store, messages onto robot links, assignments noted.
    pub(super) fn absorb(&mut self, out: Routed) {
        self.store.extend(out.records);
        for (robot, msg) in out.to_robots {
            if let Some(&i) = self.index.get(&robot) {
                if self.link_up[i] {
                    self.queue.push_back(Msg::ToAgent(i, agent::Input::FromDispatcher(msg)));
                } else {
                    self.lost_messages += 1;
                }
            }
        }
        for o in out.orders {
            if let Some(r) = o.robot {
                let v = self.assigned.entry(o.id.clone()).or_default();
                if v.last() != Some(&r) {
                    v.push(r);
                }
            }
        }
        self.alerts += out.alerts.len() as u64;
    }

    /// Delivers messages until none is in flight.
    fn pump(&mut self, host: &mut Host, robots: &mut [SimRobot], phys: &mut PhysicsWorld, now: Timestamp) {
        while let Some(m) = self.queue.pop_front() {
            match m {
                Msg::ToAgent(i, input) => {
                    if matches!(input, agent::Input::FromDispatcher(_) | agent::Input::Connected) && !self.link_up[i] {
                        self.lost_messages += 1;
                        continue;
                    }
                    for o in robots[i].agent.handle(now, input) {
                        match o {
                            AgentOut::Send(msg) => self.queue.push_back(Msg::ToDispatcher(i, msg)),
                            AgentOut::Platform(cmd) => phys.robot(i).execute(now, cmd),
                        }
                    }
                }
                Msg::ToDispatcher(i, msg) => {
                    if !self.link_up[i] {
                        self.lost_messages += 1;
                        continue;
                    }
                    if matches!(msg, FromRobot::Event(RobotEvent::Blocked { .. })) {
                        self.reroutes += 1;
                    }
                    let out = host.handle(now, Input::Robot { robot: robots[i].id.clone(), msg });
                    self.absorb(out);
                }
            }
        }
    }
}
