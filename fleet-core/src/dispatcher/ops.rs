//! Operator commands on the dispatcher: registering shops and robots, closing and reopening sidewalks, pausing
//! and resuming robots.

use std::sync::Arc;

use crate::mission::{InstantAction, ToRobot};
use crate::order::Place;
use crate::robot::{MissionState, Robot, RobotModel};
use crate::{CoreError, LatLon, NodeId, RobotId, ShopId};

use super::*;

impl Dispatcher {
    pub(super) fn check_name(name: &str) -> Result<(), CoreError> {
        if name.len() > MAX_NAME_LEN {
            return Err(CoreError::invalid(format!("name is {} bytes long; the limit is {MAX_NAME_LEN}", name.len())));
        }
        if name.chars().any(char::is_control) {
            return Err(CoreError::invalid("name must not contain control characters"));
        }
        Ok(())
    }

    pub(super) fn register_shop(
        &mut self,
        id: ShopId,
        name: String,
        pos: LatLon,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        Self::check_name(&name)?;
        if self.shops.contains_key(&id) {
            return Err(CoreError::AlreadyExists(format!("shop {id} is already registered")));
        }
        self.check_shop_in_area(pos)?;
        let snap = self.map.snap(pos, self.config.max_snap_m)?;
        let shop = Shop { id: id.clone(), name, place: Place { pos, node: snap.node } };
        self.shops.insert(id.clone(), shop.clone());
        out.shops.insert(id);
        // With the first record that names a node goes the map's fingerprint ([`Dispatcher::check_map`]).
        out.meta = true;
        Ok(Reply::Shop(shop))
    }

    pub(super) fn register_robot(
        &mut self,
        id: RobotId,
        name: String,
        depot: LatLon,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        Self::check_name(&name)?;
        if self.robots.contains_key(&id) {
            return Err(CoreError::AlreadyExists(format!("robot {id} is already registered")));
        }
        let snap = self.map.snap(depot, self.config.max_snap_m)?;
        let robot = Robot {
            id: id.clone(),
            name,
            depot,
            model: RobotModel::default(),
            pos: depot,
            node: snap.node,
            battery_pct: 100.0,
            online: false,
            paused: false,
            last_seen: None,
            plan: Vec::new(),
            mission: MissionState {
                mission_id: format!("m-{id}"),
                update_id: 0,
                next_seq: 1,
                base: Vec::new(),
                acked_update_id: 0,
            },
            on_board: Vec::new(),
            shift_end: None,
            fault: None,
            charging: false,
            handed_to: None,
        };
        self.robots.insert(id.clone(), robot.clone());
        out.robots.insert(id);
        out.meta = true;
        Ok(Reply::Robot(Box::new(robot)))
    }

    pub(super) fn set_edge(&mut self, a: NodeId, b: NodeId, close: bool, out: &mut Out) -> Result<Reply, CoreError> {
        if !self.map.adjacent(a, b) {
            return Err(CoreError::not_found(format!("there is no edge between {a} and {b}")));
        }
        let map = Arc::make_mut(&mut self.map);
        if close {
            map.close_edge(a, b);
        } else {
            map.open_edge(a, b);
        }
        self.plans_version += 1;
        self.table.clear();
        self.legs.clear();
        self.meta.closed_edges = self.map.closed_edges().collect();
        out.meta = true;
        Ok(Reply::Done)
    }

    pub(super) fn set_paused(&mut self, robot: &RobotId, paused: bool, out: &mut Out) {
        if paused {
            // A leg with a pause in it says nothing about the sidewalks.
            self.leg_clock.remove(robot);
        }
        if let Some(r) = self.robots.get_mut(robot) {
            r.paused = paused;
            // Resuming is also how an operator returns a repaired robot to service.
            if !paused {
                r.fault = None;
            }
            self.plans_version += 1;
            out.robots.insert(robot.clone());
            out.other.push(Output::Send {
                robot: robot.clone(),
                msg: ToRobot::Instant(if paused { InstantAction::Pause } else { InstantAction::Resume }),
            });
        }
    }
}
