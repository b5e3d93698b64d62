//! What a shop asks of the dispatcher: validate and snap a delivery request, quote it, place it (idempotent on
//! the shop's key), cancel it before loading, mark it ready.

use crate::order::{DeliveryRequest, Order, OrderStatus, Place, Promise};
use crate::planner::insertion::{self, Task};
use crate::{CoreError, OrderId, Refusal, ShopId, Timestamp};

use super::*;

impl Dispatcher {
    /// Checks a request and snaps its ends; the pickup is the shop.
    pub(super) fn check_request(
        &self,
        now: Timestamp,
        shop: &ShopId,
        req: &DeliveryRequest,
    ) -> Result<(Place, Place), CoreError> {
        let shop =
            self.shops.get(shop).ok_or_else(|| CoreError::not_found(format!("shop {shop} is not registered")))?;
        if req.deliver_by <= now {
            return Err(CoreError::field(
                "delivery.deliver_by",
                format!("deliver-by time is {:.0} s in the past", now.secs_since(req.deliver_by)),
            ));
        }
        if req.deliver_by.secs_since(now) > self.config.max_lead_s {
            return Err(CoreError::field(
                "delivery.deliver_by",
                format!("deliver-by time is more than {:.0} days ahead", self.config.max_lead_s / 86_400.0),
            ));
        }
        if let Some(r) = req.ready_at
            && r >= req.deliver_by
        {
            return Err(CoreError::field("delivery.ready_at", "ready time must be before the deliver-by time"));
        }
        self.check_in_area(req.dropoff)?;
        // Snapped without a limit so that the distance is known; beyond the limit the address is outside the
        // area this map serves.
        let snap = self.map.snap(req.dropoff, f64::INFINITY)?;
        if snap.edge_distance_m > self.config.max_snap_m {
            return Err(CoreError::Refused(Refusal::OutOfArea {
                distance_m: snap.edge_distance_m.round().min(f64::from(u32::MAX)) as u32,
                limit_m: self.config.max_snap_m.round() as u32,
            }));
        }
        Ok((shop.place, Place { pos: req.dropoff, node: snap.node }))
    }

    pub(super) fn quote(&mut self, now: Timestamp, shop: &ShopId, req: &DeliveryRequest) -> Result<Quote, CoreError> {
        let (pickup, dropoff) = self.check_request(now, shop, req)?;
        let probe = OrderId::parse("quote").expect("a constant valid id");
        let (p, d) = self.tasks_for(&probe, req, pickup, dropoff, now);
        Ok(match self.best_insertion(now, &p, &d) {
            Ok(ins) => self.quote_of(&ins, now),
            Err(refusal) => Quote {
                feasible: false,
                reason: Some(self.with_offer(refusal, now, &p, &d, req.deliver_by)),
                robot: None,
                eta_pickup: None,
                eta_dropoff: None,
                eta_latest: None,
            },
        })
    }

    /// The quote for an insertion: the hand-over the plan gives, scaled by how the fleet's promises turned out
    /// ([`crate::learn`]): the ETA by their median, the latest by their 90th percentile.
    pub(super) fn quote_of(&self, ins: &insertion::Insertion, now: Timestamp) -> Quote {
        let p = self.promise_of(ins.eta_dropoff, now);
        Quote {
            feasible: true,
            reason: None,
            robot: Some(ins.robot.clone()),
            eta_pickup: Some(ins.eta_pickup),
            eta_dropoff: Some(p.eta),
            eta_latest: Some(p.latest),
        }
    }

    /// What to promise for a drop-off the plan reaches at `arrival`.
    pub(super) fn promise_of(&self, arrival: Timestamp, now: Timestamp) -> Promise {
        let planned = arrival.plus_secs(self.config.dropoff_service_s);
        let (p50, p90) = self.learned.promise_ratios();
        let remaining = planned.secs_since(now).max(0.0);
        Promise { planned, eta: now.plus_secs(remaining * p50), latest: now.plus_secs(remaining * p90), plan_by: None }
    }

    /// A refusal about time, with the earliest deliver-by the fleet can meet when there is one.
    fn with_offer(&mut self, refusal: Refusal, now: Timestamp, p: &Task, d: &Task, deliver_by: Timestamp) -> Refusal {
        match refusal {
            Refusal::DeadlineTooSoon { .. } | Refusal::FleetBusy { .. } => {
                let offer = self.earliest_offer(now, p, d, deliver_by);
                refusal.offering(offer)
            }
            other => other,
        }
    }

    /// A quote answering a repeated placement: what was promised then.
    fn quote_replayed(o: &Order) -> Quote {
        Quote {
            feasible: true,
            reason: None,
            robot: o.robot.clone(),
            eta_pickup: o.eta_pickup,
            eta_dropoff: o.promise.map(|p| p.eta).or(o.eta_dropoff),
            eta_latest: o.promise.map(|p| p.latest),
        }
    }

    pub(super) fn place(&mut self, now: Timestamp, placing: Placing, out: &mut Out) -> Result<Reply, CoreError> {
        let Placing { shop, key, req, pin, link_hash } = placing;
        if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
            return Err(CoreError::field(
                "idempotency_key",
                format!("idempotency key must be 1 to {MAX_KEY_LEN} bytes without control characters"),
            ));
        }
        if pin.len() < 4 || pin.len() > 12 || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CoreError::field("pin", "PIN must be 4 to 12 digits"));
        }
        if let Some(h) = &link_hash {
            check_link_hash(h)?;
        }
        if let Some(id) = self.keys.get(&(shop.clone(), key.clone())).cloned() {
            let o = &self.orders[&id];
            if o.request != req {
                return Err(CoreError::KeyReused { key, order: id.to_string() });
            }
            if let Some(h) = link_hash
                && !o.status.is_terminal()
            {
                self.set_link(now, &id, h, out);
            }
            let o = &self.orders[&id];
            let quote = Self::quote_replayed(o);
            return Ok(Reply::Placed { order: Box::new(o.clone()), quote, replayed: true });
        }
        let open = self.open.get(&shop).map_or(0, BTreeSet::len);
        debug_assert_eq!(
            open,
            self.orders.values().filter(|o| o.shop == shop && !o.status.is_terminal()).count(),
            "the open orders kept for shop {shop} are stale"
        );
        if open >= self.config.max_open_orders_per_shop {
            return Err(CoreError::ResourceExhausted(format!(
                "shop {shop} already has {open} open orders; the limit is {}",
                self.config.max_open_orders_per_shop
            )));
        }
        let (pickup, dropoff) = self.check_request(now, &shop, &req)?;
        let id = OrderId::parse(&format!("ord-{:06}", self.meta.next_order_seq + 1)).expect("digits are a valid id");
        let (p, d) = self.tasks_for(&id, &req, pickup, dropoff, now);
        let ins = match self.best_insertion(now, &p, &d) {
            Ok(ins) => ins,
            Err(refusal) => {
                self.note_demand(&shop, now);
                return Err(CoreError::Refused(self.with_offer(refusal, now, &p, &d, req.deliver_by)));
            }
        };
        let quote = self.quote_of(&ins, now);
        let promise = Promise { plan_by: d.deadline, ..self.promise_of(ins.eta_dropoff, now) };
        self.note_demand(&shop, now);
        self.meta.next_order_seq += 1;
        out.meta = true;
        let mut order = Order {
            id: id.clone(),
            shop: shop.clone(),
            idempotency_key: key.clone(),
            request: req,
            pickup,
            dropoff,
            pin,
            status: OrderStatus::Pending,
            reason: None,
            marked_ready: false,
            robot: None,
            robot_pos: None,
            created_at: now,
            updated_at: now,
            eta_pickup: None,
            eta_dropoff: None,
            delivered_at: None,
            promise: Some(promise),
            delayed_at: None,
            link_hash: None,
        };
        order.transition(OrderStatus::Assigned, now)?;
        order.robot = Some(ins.robot.clone());
        self.orders.insert(id.clone(), order);
        self.keys.insert((shop, key), id.clone());
        if let Some(h) = link_hash {
            self.set_link(now, &id, h, out);
        }
        out.orders.insert(id.clone());
        self.apply_insertion(now, ins, out);
        Ok(Reply::Placed { order: Box::new(self.orders[&id].clone()), quote, replayed: false })
    }

    /// Replaces an open order's tracking link.
    pub(super) fn new_link(
        &mut self,
        now: Timestamp,
        shop: &ShopId,
        id: &OrderId,
        link_hash: String,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        check_link_hash(&link_hash)?;
        let o = self.order_for_shop(shop, id)?;
        if o.status.is_terminal() {
            return Err(CoreError::precondition(format!(
                "order {id} is {}; its tracking link has ended",
                o.status.name()
            )));
        }
        self.set_link(now, id, link_hash, out);
        Ok(Reply::Order(Box::new(self.orders[id].clone())))
    }

    /// Points the link index at `id` under `hash`, dropping the order's old link.
    fn set_link(&mut self, now: Timestamp, id: &OrderId, hash: String, out: &mut Out) {
        let Some(o) = self.orders.get_mut(id) else { return };
        if let Some(old) = o.link_hash.take() {
            self.links.remove(&old);
        }
        o.link_hash = Some(hash.clone());
        o.updated_at = now;
        self.links.insert(hash, id.clone());
        out.orders.insert(id.clone());
    }

    pub(super) fn cancel(
        &mut self,
        now: Timestamp,
        shop: &ShopId,
        id: &OrderId,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        let o = self.order_for_shop(shop, id)?;
        if o.status.is_terminal() || o.status.on_board() {
            return Err(CoreError::precondition(format!(
                "order {id} is {} and can no longer be cancelled",
                o.status.name()
            )));
        }
        let robot = o.robot.clone();
        if let Some(rid) = &robot
            && let Some(r) = self.robots.get(rid)
            && r.plan.iter().any(|s| &s.order == id && s.action_released)
        {
            return Err(CoreError::precondition(format!(
                "order {id} is being loaded by robot {rid} and can no longer be cancelled"
            )));
        }
        let o = self.orders.get_mut(id).expect("found above");
        o.transition(OrderStatus::Cancelled, now)?;
        o.reason = Some("cancelled by the shop".into());
        out.orders.insert(id.clone());
        if let Some(rid) = robot
            && let Some(r) = self.robots.get_mut(&rid)
        {
            r.plan.retain(|s| &s.order != id);
            self.plans_version += 1;
            out.robots.insert(rid.clone());
            self.release(now, &rid, out, true);
        }
        Ok(Reply::Order(Box::new(self.orders[id].clone())))
    }

    pub(super) fn mark_ready(
        &mut self,
        now: Timestamp,
        shop: &ShopId,
        id: &OrderId,
        out: &mut Out,
    ) -> Result<Reply, CoreError> {
        let o = self.order_for_shop(shop, id)?;
        if o.status.is_terminal() {
            return Err(CoreError::precondition(format!("order {id} is {} already", o.status.name())));
        }
        if !o.marked_ready {
            let o = self.orders.get_mut(id).expect("found above");
            o.marked_ready = true;
            o.updated_at = now;
            out.orders.insert(id.clone());
            if let Some(rid) = o.robot.clone() {
                self.release(now, &rid, out, false);
            }
        }
        Ok(Reply::Order(Box::new(self.orders[id].clone())))
    }
}

/// A link hash is the SHA-256 of the secret, as 64 lowercase hex digits.
fn check_link_hash(h: &str) -> Result<(), CoreError> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(CoreError::field("link_hash", "a tracking link hash is 64 lowercase hex digits (SHA-256)"))
    }
}

/// What [`Input::PlaceOrder`] carries.
pub(super) struct Placing {
    pub shop: ShopId,
    pub key: String,
    pub req: DeliveryRequest,
    pub pin: String,
    pub link_hash: Option<String>,
}
