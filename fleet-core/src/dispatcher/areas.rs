//! Service areas ([`crate::area`]): a dispatcher that serves one takes shops and drop-offs inside its outline
//! only, and robots move between areas only when idle, through a hand-off: the giving dispatcher lets the robot
//! go ([`Input::HandOffRobot`]), the store turns its last record into a hand-off the other area's dispatcher
//! takes up ([`Input::AdoptRobot`]). A robot with parcels aboard or stops planned never changes owner.

use crate::area::ServiceArea;
use crate::robot::Robot;
use crate::{CoreError, LatLon, Refusal, RobotId, Timestamp};

use super::*;

impl Dispatcher {
    /// Refuses a drop-off outside this dispatcher's service area.
    pub(super) fn check_in_area(&self, dropoff: LatLon) -> Result<(), CoreError> {
        match &self.config.service_area {
            Some(a) if !a.contains(dropoff) => {
                Err(CoreError::Refused(Refusal::OutsideServiceArea { area: a.name.clone() }))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a shop outside this dispatcher's service area.
    pub(super) fn check_shop_in_area(&self, pos: LatLon) -> Result<(), CoreError> {
        match &self.config.service_area {
            Some(a) if !a.contains(pos) => Err(CoreError::field(
                "location",
                format!("the shop is outside service area {}; register it with that area's dispatcher", a.name),
            )),
            _ => Ok(()),
        }
    }

    /// Lets an idle robot go to area `to_area`.
    pub(super) fn hand_off(
        &mut self,
        now: Timestamp,
        id: &RobotId,
        to_area: &str,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        ServiceArea::check_name(to_area).map_err(|e| CoreError::field("to_area", e.to_string()))?;
        if self.config.service_area.as_ref().is_some_and(|a| a.name == to_area) {
            return Err(CoreError::field("to_area", format!("robot {id} is in area {to_area} already")));
        }
        let r = self.robots.get(id).ok_or_else(|| CoreError::not_found(format!("robot {id} not found")))?;
        if !r.on_board.is_empty() {
            return Err(CoreError::precondition(format!(
                "robot {id} has {} parcel(s) aboard: a robot with parcels never changes area",
                r.on_board.len()
            )));
        }
        if !r.plan.is_empty() {
            return Err(CoreError::precondition(format!(
                "robot {id} has {} stop(s) planned: move its orders to other robots first",
                r.plan.len()
            )));
        }
        if !r.mission.base.is_empty() {
            return Err(CoreError::precondition(format!(
                "robot {id} is under way ({} step(s) released): pause it and hand it over once it stands still",
                r.mission.base.len()
            )));
        }
        let mut robot = self.robots.remove(id).expect("looked up above");
        self.forget_robot(id);
        robot.handed_to = Some(to_area.to_owned());
        robot.last_seen = robot.last_seen.or(Some(now));
        out.other.push(Output::Persist(Record::Robot(Box::new(robot.clone()))));
        out.other.push(Output::RobotChanged(Box::new(robot.clone())));
        Ok(Reply::Robot(Box::new(robot)))
    }

    /// Takes a robot handed over by another area into this fleet.
    pub(super) fn adopt(&mut self, mut robot: Robot, out: &mut Out) -> Result<Reply, CoreError> {
        let id = robot.id.clone();
        if self.robots.contains_key(&id) {
            return Err(CoreError::AlreadyExists(format!(
                "robot {id} is already in this area's fleet; it cannot be handed over here"
            )));
        }
        if !robot.on_board.is_empty() || !robot.plan.is_empty() {
            return Err(CoreError::precondition(format!("robot {id} comes with work: only an idle robot moves")));
        }
        let snap = self.map.snap(robot.pos, f64::INFINITY)?;
        robot.node = snap.node;
        robot.handed_to = None;
        robot.online = false;
        robot.charging = false;
        robot.mission.base.clear();
        self.robots.insert(id.clone(), robot.clone());
        self.plans_version += 1;
        out.robots.insert(id);
        out.meta = true;
        Ok(Reply::Robot(Box::new(robot)))
    }

    /// Drops everything kept about a robot that left the fleet.
    fn forget_robot(&mut self, id: &RobotId) {
        self.traffic.free_all(id);
        self.traffic.withdraw(id);
        self.legs.remove(id);
        self.views.borrow_mut().remove(id);
        self.drive_targets.retain(|(r, _), _| r != id);
        self.offline_since.remove(id);
        self.offline_handled.remove(id);
        self.claimed_steps.remove(id);
        self.deadlock_alerted.remove(id);
        self.reroute_tried.remove(id);
        self.deadlock_avoided.remove(id);
        self.aside_end.remove(id);
        self.leg_clock.remove(id);
        if self.late_cursor.as_ref() == Some(id) {
            self.late_cursor = None;
        }
        self.watch.forget(id);
        self.plans_version += 1;
    }
}
