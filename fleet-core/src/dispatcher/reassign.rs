//! An operator moves an order to another robot ([`Input::ReassignOrder`]). Checked like any other input: the
//! order must not have started loading (its parcel is not aboard nor being loaded), the robot must be available
//! and able to fit it in before its deliver-by; otherwise nothing changes and the error says why. The order
//! leaves its robot's plan (a drive already released towards it is withdrawn where it can be) and is inserted
//! where it costs least in the new robot's plan.

use crate::order::OrderStatus;
use crate::robot::StopKind;
use crate::{CoreError, OrderId, RobotId, Timestamp};

use super::*;

impl Dispatcher {
    pub(super) fn reassign(
        &mut self,
        now: Timestamp,
        order: &OrderId,
        robot: &RobotId,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        let o = self.orders.get(order).ok_or_else(|| CoreError::not_found(format!("order {order} not found")))?;
        let target = self.robots.get(robot).ok_or_else(|| CoreError::not_found(format!("robot {robot} not found")))?;
        if o.status.is_terminal() {
            return Err(CoreError::precondition(format!("order {order} has ended ({})", o.status.name())));
        }
        let from = o.robot.clone();
        if from.as_ref() == Some(robot) {
            return Ok(Reply::Order(Box::new(o.clone())));
        }
        let loading = from.as_ref().and_then(|f| self.robots.get(f)).is_some_and(|r| {
            r.on_board.contains(order)
                || r.plan.iter().any(|s| &s.order == order && s.kind == StopKind::Pickup && s.action_released)
                || !r.plan.iter().any(|s| &s.order == order && s.kind == StopKind::Pickup)
        });
        if o.status.on_board() || (from.is_some() && loading) {
            return Err(CoreError::precondition(format!(
                "order {order} is being loaded or is aboard robot {}; it stays there",
                from.map_or("?".to_string(), |f| f.to_string())
            )));
        }
        if let Some(why) = target.unavailable() {
            return Err(CoreError::precondition(format!("robot {robot} is {why} and takes no work")));
        }
        let (req, p, d) = (o.request.clone(), o.pickup, o.dropoff);
        let (pt, dt) = self.tasks_for(order, &req, p, d, now);
        let ins = self.best_insertion_among(now, &pt, &dt, |r| &r.id == robot).map_err(|refusal| {
            CoreError::precondition(format!("robot {robot} cannot take order {order}: {refusal}"))
        })?;
        // It fits: take it off its robot, then give it to the new one.
        if let Some(f) = &from {
            if let Some(r) = self.robots.get_mut(f) {
                r.plan.retain(|s| &s.order != order);
            }
            self.legs.remove(f);
            self.views.get_mut().remove(f);
            self.plans_version += 1;
            out.robots.insert(f.clone());
            self.release(now, f, out, true);
        }
        let o = self.orders.get_mut(order).expect("checked above");
        if o.status != OrderStatus::Pending {
            o.transition(OrderStatus::Pending, now)?;
        }
        o.transition(OrderStatus::Assigned, now)?;
        o.robot = Some(robot.clone());
        o.eta_pickup = None;
        out.orders.insert(order.clone());
        self.apply_insertion(now, ins, out);
        out.other.push(Output::Alert {
            id: 0,
            robot: Some(robot.clone()),
            message: format!(
                "order {order} moved by an operator from {} to robot {robot}",
                from.map_or("no robot".to_string(), |f| format!("robot {f}"))
            ),
        });
        Ok(Reply::Order(Box::new(self.orders[order].clone())))
    }
}
