//! Orders and their state machine (DESIGN.md section 3):
//! `Pending -> Assigned -> ToPickup -> AtPickup -> InTransit -> AtDropoff -> Delivered`, terminal `Cancelled`
//! and `Failed` (with a reason), and `Returning -> Returned` after a failed hand-over. Every transition goes
//! through [`Order::transition`], which refuses the illegal ones.

use serde::{Deserialize, Serialize};

use crate::{CoreError, Grams, LatLon, NodeId, OrderId, RobotId, ShopId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    Pending,
    Assigned,
    ToPickup,
    AtPickup,
    InTransit,
    AtDropoff,
    Delivered,
    Cancelled,
    Failed,
    Returning,
    Returned,
}

impl OrderStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Cancelled | Self::Failed | Self::Returned)
    }

    /// Is the parcel on a robot?
    pub fn on_board(self) -> bool {
        matches!(self, Self::InTransit | Self::AtDropoff | Self::Returning)
    }

    fn can_go(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        match (self, to) {
            (Pending, Assigned) | (Assigned, ToPickup) | (ToPickup, AtPickup) => true,
            (AtPickup, InTransit) | (InTransit, AtDropoff) | (AtDropoff, Delivered) => true,
            (AtDropoff, Returning) | (Returning, Returned) => true,
            // Un-assignment (the robot went away before loading).
            (Assigned | ToPickup | AtPickup, Pending) => true,
            (Pending | Assigned | ToPickup | AtPickup, Cancelled) => true,
            (from, Failed) => !from.is_terminal(),
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        use OrderStatus::*;
        match self {
            Pending => "PENDING",
            Assigned => "ASSIGNED",
            ToPickup => "TO_PICKUP",
            AtPickup => "AT_PICKUP",
            InTransit => "IN_TRANSIT",
            AtDropoff => "AT_DROPOFF",
            Delivered => "DELIVERED",
            Cancelled => "CANCELLED",
            Failed => "FAILED",
            Returning => "RETURNING",
            Returned => "RETURNED",
        }
    }
}

/// Parcel size and weight. Invariant (checked by [`Parcel::new`]): 1..=4 compartments, 1 g ..= 50 kg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub weight: Grams,
    pub compartments: u8,
}

impl Parcel {
    pub fn new(weight: Grams, compartments: u8) -> Result<Self, CoreError> {
        if weight.0 == 0 || weight.0 > 50_000 {
            return Err(CoreError::invalid(format!("parcel weight {} g is outside [1, 50000]", weight.0)));
        }
        if !(1..=4).contains(&compartments) {
            return Err(CoreError::invalid(format!("a parcel needs 1 to 4 compartments, not {compartments}")));
        }
        Ok(Self { weight, compartments })
    }
}

/// What a shop asks for. Built from wire data by `proto` (coordinates and parcel already checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRequest {
    pub dropoff: LatLon,
    pub parcel: Parcel,
    /// When the parcel will be packed; `None` means now.
    pub ready_at: Option<Timestamp>,
    pub deliver_by: Timestamp,
}

/// A place on the map: the coordinate asked for and the graph node it snapped to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub pos: LatLon,
    pub node: NodeId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub shop: ShopId,
    pub idempotency_key: String,
    pub request: DeliveryRequest,
    pub pickup: Place,
    pub dropoff: Place,
    /// The hand-over PIN, shown to the owning shop only.
    pub pin: String,
    pub status: OrderStatus,
    /// Why the order failed, was cancelled or is returning.
    pub reason: Option<String>,
    pub marked_ready: bool,
    pub robot: Option<RobotId>,
    pub robot_pos: Option<LatLon>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub eta_pickup: Option<Timestamp>,
    pub eta_dropoff: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    /// What the shop was promised when it placed the order.
    #[serde(default)]
    pub promise: Option<Promise>,
    /// When the dispatcher first told the shop the order will miss its deliver-by time (it re-planned first
    /// and that did not save it); the ETA at that moment is in `eta_dropoff`.
    #[serde(default)]
    pub delayed_at: Option<Timestamp>,
    /// The SHA-256 (hex) of the customer tracking link's secret; the secret itself is never stored.
    #[serde(default)]
    pub link_hash: Option<String>,
}

/// The hand-over times promised when an order was placed ([`crate::learn`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Promise {
    /// The hand-over as the plan had it then (the learned outcomes are measured against it).
    pub planned: Timestamp,
    /// The ETA quoted: the time the fleet meets half the time.
    pub eta: Timestamp,
    /// The latest time quoted: the time the fleet meets nine times in ten.
    pub latest: Timestamp,
    /// The latest arrival at the drop-off that plans keep to ([`crate::dispatcher::Config::plan_quantile`]):
    /// earlier than the deliver-by leaves room by as much as the fleet tends to slip. `None` on orders stored
    /// before it was kept: the deliver-by less the hand-over and the buffer.
    #[serde(default)]
    pub plan_by: Option<Timestamp>,
}

impl Order {
    /// Moves to `to`, or refuses with a message naming both states.
    pub fn transition(&mut self, to: OrderStatus, now: Timestamp) -> Result<(), CoreError> {
        if !self.status.can_go(to) {
            return Err(CoreError::precondition(format!(
                "order {} is {} and cannot become {}",
                self.id,
                self.status.name(),
                to.name()
            )));
        }
        self.status = to;
        self.updated_at = now;
        if to == OrderStatus::Delivered {
            self.delivered_at = Some(now);
        }
        if matches!(to, OrderStatus::Pending) {
            self.robot = None;
            self.robot_pos = None;
        }
        Ok(())
    }

    pub fn ready_at(&self) -> Timestamp {
        self.request.ready_at.unwrap_or(self.created_at)
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn legal_and_illegal_transitions() {
        let path = [Pending, Assigned, ToPickup, AtPickup, InTransit, AtDropoff, Delivered];
        for w in path.windows(2) {
            assert!(w[0].can_go(w[1]), "{:?}->{:?}", w[0], w[1]);
        }
        for (a, b) in [
            (Delivered, Cancelled),
            (InTransit, Cancelled),
            (Pending, Delivered),
            (Cancelled, Pending),
            (Failed, Failed),
            (Returned, Failed),
        ] {
            assert!(!a.can_go(b), "{a:?}->{b:?}");
        }
        assert!(AtDropoff.can_go(Returning) && Returning.can_go(Returned));
        assert!(InTransit.can_go(Failed));
    }

    #[test]
    fn parcel_limits() {
        assert!(Parcel::new(Grams(0), 1).is_err());
        assert!(Parcel::new(Grams(50_001), 1).is_err());
        assert!(Parcel::new(Grams(1_000), 0).is_err());
        assert!(Parcel::new(Grams(1_000), 5).is_err());
        assert!(Parcel::new(Grams(50_000), 4).is_ok());
    }
}
