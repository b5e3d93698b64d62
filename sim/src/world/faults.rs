//! Fault injection: the scenario's faults in the order they strike, what each does when it strikes (a robot
//! breaks down, a wall closes a sidewalk, a robot's link drops, the dispatcher restarts from its records), the
//! ones that end later (the link comes back, the wall goes), and the list of applied faults for the report.

use std::collections::VecDeque;

use fleet_core::dispatcher::{self, Dispatcher, Input, Record};
use fleet_core::map::MapGraph;
use fleet_core::{LatLon, Timestamp};
use robot_agent::agent;

use super::lockstep::{Fleet, Msg};
use crate::physics::ObstacleId;
use crate::report::AppliedFault;
use crate::scenario::Fault;
use crate::{Error, Scenario};

/// Something a fault started that ends later.
#[derive(Debug)]
enum Ending {
    LinkUp(usize),
    Unblock(ObstacleId),
}

/// The injection schedule and what it has done so far.
pub(super) struct Faults<'s> {
    /// Faults still to strike, earliest first.
    due: VecDeque<&'s Fault>,
    /// What ends later, and when.
    endings: Vec<(Timestamp, Ending)>,
    applied: Vec<AppliedFault>,
    /// The map a restarted dispatcher loads (see `setup::World::pristine`); `None` when no restart is scheduled.
    pristine: Option<MapGraph>,
    /// The configuration a restarted dispatcher runs with.
    config: dispatcher::Config,
}

impl<'s> Faults<'s> {
    pub(super) fn new(scenario: &'s Scenario, pristine: Option<MapGraph>, config: dispatcher::Config) -> Self {
        let mut due: Vec<&Fault> = scenario.faults.iter().collect();
        due.sort_by(|a, b| a.at_s().total_cmp(&b.at_s()));
        Self { due: due.into(), endings: Vec::new(), applied: Vec::new(), pristine, config }
    }

    /// Ends what is due to end by `now`: a dropped link comes back, a blocking wall goes.
    pub(super) fn end_due(&mut self, now: Timestamp, fleet: &mut Fleet) {
        self.endings.sort_by_key(|(at, _)| *at);
        while self.endings.first().is_some_and(|(at, _)| *at <= now) {
            match self.endings.remove(0).1 {
                Ending::LinkUp(i) => {
                    fleet.net.link_up[i] = true;
                    // Like a real reconnect: the agent says hello; the dispatcher answers with the mission.
                    fleet.net.queue.push_back(Msg::ToAgent(i, agent::Input::Connected));
                }
                Ending::Unblock(o) => fleet.phys.remove_obstacle(o),
            }
        }
    }

    /// Applies the faults due `elapsed_ms` into the run (at `now`) and notes each with what it did.
    pub(super) fn strike_due(&mut self, now: Timestamp, elapsed_ms: u64, fleet: &mut Fleet) -> Result<(), Error> {
        while self.due.front().is_some_and(|f| (f.at_s() * 1_000.0) as u64 <= elapsed_ms) {
            let Some(f) = self.due.pop_front() else { break };
            let detail = self.strike(f, now, fleet)?;
            self.applied.push(AppliedFault { at_s: elapsed_ms as f64 / 1_000.0, kind: f.kind().into(), detail });
        }
        Ok(())
    }

    /// What `f` does; returns the report's line about it.
    fn strike(&mut self, f: &Fault, now: Timestamp, fleet: &mut Fleet) -> Result<String, Error> {
        let Fleet { host, net, robots, phys } = fleet;
        Ok(match *f {
            Fault::Breakdown { robot, .. } => {
                phys.break_down(robot);
                format!("robot {} broke down", robots[robot].id)
            }
            Fault::BlockSidewalk { lat, lon, duration_s, .. } => {
                let p = LatLon::new(lat, lon).map_err(|e| Error::Scenario(e.to_string()))?;
                let m = host.dispatcher().map();
                match m.snap(p, 500.0) {
                    Ok(s) => {
                        let (a, b) = (m.to_xy(m.pos(s.edge.0).unwrap_or(p)), m.to_xy(m.pos(s.edge.1).unwrap_or(p)));
                        let along = (b[1] - a[1]).atan2(b[0] - a[0]) as f32;
                        let wall = phys.add_wall_across(s.point, along, 4.0);
                        self.endings.push((now.plus_secs(duration_s), Ending::Unblock(wall)));
                        format!(
                            "sidewalk {}-{} blocked {:.0} m from ({lat}, {lon}) for {duration_s:.0} s",
                            s.edge.0, s.edge.1, s.edge_distance_m
                        )
                    }
                    Err(e) => format!("nothing blocked: {e}"),
                }
            }
            Fault::LinkDrop { robot, duration_s, .. } => {
                if net.link_up[robot] {
                    net.link_up[robot] = false;
                    let out = host.handle(now, Input::RobotDisconnected { robot: robots[robot].id.clone() });
                    net.absorb(out);
                }
                self.endings.push((now.plus_secs(duration_s), Ending::LinkUp(robot)));
                format!("robot {}'s link down for {duration_s:.0} s", robots[robot].id)
            }
            Fault::DispatcherRestart { .. } => {
                let before = host.dispatcher().orders().count();
                let records: Vec<Record> = net.store.values().cloned().collect();
                let map = self.pristine.clone().unwrap_or_else(|| host.dispatcher().map().clone());
                host.replace(Dispatcher::restore(map, self.config.clone(), records));
                let d = host.dispatcher();
                for i in 0..robots.len() {
                    if net.link_up[i] {
                        net.queue.push_back(Msg::ToAgent(i, agent::Input::Connected));
                    }
                }
                format!(
                    "dispatcher restarted from {} records: {} orders restored of {before}, {} robots, {} shops",
                    net.store.len(),
                    d.orders().count(),
                    d.robots().count(),
                    d.shops().count()
                )
            }
        })
    }

    /// The faults applied, in the order they struck.
    pub(super) fn applied(self) -> Vec<AppliedFault> {
        self.applied
    }
}
