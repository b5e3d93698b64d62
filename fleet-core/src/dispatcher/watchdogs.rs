//! Watchdogs: alerts for operators about robots in trouble that nothing else reports. A robot that has a drive
//! released to it but has not moved [`WATCH_MOVE_M`] in [`Config::stall_alert_s`] (stuck, held by a crowd, lost),
//! and a robot low on battery ([`Config::low_battery_aboard_pct`]) with a parcel aboard. Each is raised once per
//! episode: again only after the robot moved or recharged. (Orders that will be late are announced by the
//! lateness watch.)

use crate::mission::StepAction;
use crate::{LatLon, RobotId, Timestamp};

use super::*;

/// A robot counts as moving once it is this far from where it was last seen moving, metres.
pub const WATCH_MOVE_M: f64 = 2.0;

/// Each robot is looked at every this many ticks (a share of the fleet per tick).
pub const WATCH_ROUNDS: usize = 5;

/// What the watchdogs remember per robot (in memory: after a restart every clock starts afresh).
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// Where each robot was and since when it has had a drive to make without leaving that spot.
    still: BTreeMap<RobotId, (LatLon, Timestamp)>,
    stalled: BTreeSet<RobotId>,
    low: BTreeSet<RobotId>,
    /// Where the next tick's share of robots starts after.
    cursor: Option<RobotId>,
}

impl Watch {
    /// Forgets a robot that left the fleet.
    pub(super) fn forget(&mut self, id: &RobotId) {
        self.still.remove(id);
        self.stalled.remove(id);
        self.low.remove(id);
        if self.cursor.as_ref() == Some(id) {
            self.cursor = None;
        }
    }
}

impl Dispatcher {
    /// A robot reported where it is: it moved when it left the spot it was last seen at.
    pub(super) fn watch_position(&mut self, id: &RobotId, pos: LatLon, now: Timestamp) {
        let moved = self.watch.still.get(id).is_none_or(|(at, _)| at.distance_m(pos) > WATCH_MOVE_M);
        if moved {
            self.watch.still.insert(id.clone(), (pos, now));
            self.watch.stalled.remove(id);
        }
    }

    /// The tick phase: each tick looks at the next [`WATCH_ROUNDS`]th of the robots, so every robot is looked at
    /// every few ticks and no tick pays for the whole fleet.
    pub(super) fn watchdogs(&mut self, now: Timestamp, out: &mut Out) {
        let (stall_s, low_pct) = (self.config.stall_alert_s, self.config.low_battery_aboard_pct);
        let n = self.robots.len();
        if n == 0 {
            return;
        }
        let per_tick = n.div_ceil(WATCH_ROUNDS);
        let watch = &mut self.watch;
        let chosen: Vec<&crate::robot::Robot> = match &watch.cursor {
            Some(c) => self
                .robots
                .range::<RobotId, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                .chain(self.robots.range::<RobotId, _>(..=c))
                .map(|(_, r)| r)
                .take(per_tick)
                .collect(),
            None => self.robots.values().take(per_tick).collect(),
        };
        watch.cursor = chosen.last().map(|r| r.id.clone());
        let mut alerts = Vec::new();
        for r in chosen {
            let should_drive = r.online
                && !r.paused
                && r.fault.is_none()
                && r.mission.base.first().is_some_and(|s| s.released && matches!(s.action, StepAction::Drive { .. }));
            let entry = watch.still.get_mut(&r.id);
            if !should_drive || entry.is_none() {
                // The clock runs only while the robot should be driving.
                match entry {
                    Some(e) => *e = (r.pos, now),
                    None => {
                        watch.still.insert(r.id.clone(), (r.pos, now));
                    }
                }
            } else if stall_s > 0.0
                && let Some((_, since)) = watch.still.get(&r.id)
                && now.secs_since(*since) >= stall_s
                && watch.stalled.insert(r.id.clone())
            {
                alerts.push((
                    r.id.clone(),
                    format!(
                        "robot {} has not moved for {:.0} s while it has a drive to make; it may be stuck",
                        r.id,
                        now.secs_since(*since)
                    ),
                ));
            }
            let low = !r.on_board.is_empty() && r.battery_pct < low_pct;
            if !low {
                if !watch.low.is_empty() {
                    watch.low.remove(&r.id);
                }
            } else if watch.low.insert(r.id.clone()) {
                let aboard: Vec<String> = r.on_board.iter().map(ToString::to_string).collect();
                alerts.push((
                    r.id.clone(),
                    format!(
                        "robot {} is at {:.0}% battery with parcels aboard ({})",
                        r.id,
                        r.battery_pct,
                        aboard.join(", ")
                    ),
                ));
            }
        }
        for (robot, message) in alerts {
            out.other.push(Output::Alert { id: 0, robot: Some(robot), message });
        }
    }
}
