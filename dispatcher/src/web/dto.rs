//! What the pages read: JSON shaped from the gRPC messages (one conversion, from `pb`), times as Unix
//! milliseconds, ids as strings. The customer's view is its own type, so a field a shop sees cannot reach a
//! customer by accident.

use serde::{Deserialize, Serialize};
use trundle_proto::pb;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Ll {
    pub lat: f64,
    pub lon: f64,
}

fn ll(p: Option<&pb::LatLon>) -> Option<Ll> {
    p.map(|p| Ll { lat: p.lat, lon: p.lon })
}

pub fn ms(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// The wire's status name without its prefix: `IN_TRANSIT`.
pub fn status_name(s: i32) -> &'static str {
    pb::OrderStatus::try_from(s).map_or("UNSPECIFIED", |s| {
        let n = s.as_str_name();
        n.strip_prefix("ORDER_STATUS_").unwrap_or(n)
    })
}

pub fn is_terminal(s: i32) -> bool {
    is_terminal_name(status_name(s))
}

pub fn is_terminal_name(s: &str) -> bool {
    matches!(s, "DELIVERED" | "CANCELLED" | "FAILED" | "RETURNED")
}

/// An order as its shop (or an operator) sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Order {
    pub id: String,
    pub shop: String,
    pub status: &'static str,
    pub reason: String,
    pub pickup: Option<Ll>,
    pub dropoff: Option<Ll>,
    pub weight_g: u32,
    pub compartments: u32,
    pub ready_at: Option<i64>,
    pub deliver_by: Option<i64>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub marked_ready: bool,
    pub robot: String,
    pub robot_pos: Option<Ll>,
    pub eta_pickup: Option<i64>,
    pub eta_dropoff: Option<i64>,
    pub delivered_at: Option<i64>,
    pub pin: String,
    pub promised_eta: Option<i64>,
    pub promised_latest: Option<i64>,
    pub delayed_at: Option<i64>,
}

impl From<&pb::Order> for Order {
    fn from(o: &pb::Order) -> Self {
        let parcel = o.parcel.unwrap_or_default();
        Order {
            id: o.order_id.clone(),
            shop: o.shop_id.clone(),
            status: status_name(o.status),
            reason: o.reason.clone(),
            pickup: ll(o.pickup.as_ref()),
            dropoff: ll(o.dropoff.as_ref()),
            weight_g: parcel.weight_grams,
            compartments: parcel.compartments,
            ready_at: ms(o.ready_at.as_ref()),
            deliver_by: ms(o.deliver_by.as_ref()),
            created_at: ms(o.created_at.as_ref()),
            updated_at: ms(o.updated_at.as_ref()),
            marked_ready: o.marked_ready,
            robot: o.robot_id.clone(),
            robot_pos: ll(o.robot_position.as_ref()),
            eta_pickup: ms(o.eta_pickup.as_ref()),
            eta_dropoff: ms(o.eta_dropoff.as_ref()),
            delivered_at: ms(o.delivered_at.as_ref()),
            pin: o.pin.clone(),
            promised_eta: ms(o.promised_eta.as_ref()),
            promised_latest: ms(o.promised_latest.as_ref()),
            delayed_at: ms(o.delayed_at.as_ref()),
        }
    }
}

/// An order as its customer sees it through the tracking link: where the parcel is and when it comes, and the
/// PIN while the robot still has to hand it over. No shop, robot or other order data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tracked {
    pub status: &'static str,
    pub dropoff: Option<Ll>,
    pub robot_pos: Option<Ll>,
    pub eta_dropoff: Option<i64>,
    pub promised_latest: Option<i64>,
    pub delivered_at: Option<i64>,
    pub delayed: bool,
    pub pin: Option<String>,
}

impl From<&pb::Order> for Tracked {
    fn from(o: &pb::Order) -> Self {
        let open = !is_terminal(o.status);
        Tracked {
            status: status_name(o.status),
            dropoff: ll(o.dropoff.as_ref()),
            robot_pos: if open { ll(o.robot_position.as_ref()) } else { None },
            eta_dropoff: if open { ms(o.eta_dropoff.as_ref()) } else { None },
            promised_latest: if open { ms(o.promised_latest.as_ref()) } else { None },
            delivered_at: ms(o.delivered_at.as_ref()),
            delayed: o.delayed_at.is_some(),
            pin: open.then(|| o.pin.clone()),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quote {
    pub feasible: bool,
    pub reason: String,
    pub refusal: String,
    pub eta_pickup: Option<i64>,
    pub eta_dropoff: Option<i64>,
    pub eta_latest: Option<i64>,
    pub earliest_deliver_by: Option<i64>,
}

impl From<&pb::Quote> for Quote {
    fn from(q: &pb::Quote) -> Self {
        Quote {
            feasible: q.feasible,
            reason: q.reason.clone(),
            refusal: q.refusal.clone(),
            eta_pickup: ms(q.eta_pickup.as_ref()),
            eta_dropoff: ms(q.eta_dropoff.as_ref()),
            eta_latest: ms(q.eta_latest.as_ref()),
            earliest_deliver_by: ms(q.earliest_deliver_by.as_ref()),
        }
    }
}

/// What a shop asks to be delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub lat: f64,
    pub lon: f64,
    pub weight_g: u32,
    #[serde(default = "one")]
    pub compartments: u32,
    /// When the parcel will be packed; absent: now.
    #[serde(default)]
    pub ready_at: Option<i64>,
    pub deliver_by: i64,
}

fn one() -> u32 {
    1
}

impl Delivery {
    pub fn to_wire(&self) -> pb::Delivery {
        pb::Delivery {
            dropoff: Some(pb::LatLon { lat: self.lat, lon: self.lon }),
            parcel: Some(pb::Parcel { weight_grams: self.weight_g, compartments: self.compartments }),
            ready_at: self.ready_at.map(ts),
            deliver_by: Some(ts(self.deliver_by)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// The page draws one per order form, so a retried submission places the order once.
    pub idempotency_key: String,
    pub delivery: Delivery,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Robot {
    pub id: String,
    pub name: String,
    pub pos: Option<Ll>,
    pub battery_pct: f64,
    pub online: bool,
    pub paused: bool,
    pub charging: bool,
    pub fault: String,
    /// offline, faulted, paused, charging, working or idle.
    pub state: &'static str,
    pub planned_orders: Vec<String>,
    pub on_board: Vec<String>,
}

impl From<&pb::Robot> for Robot {
    fn from(r: &pb::Robot) -> Self {
        let state = if !r.online {
            "offline"
        } else if !r.fault.is_empty() {
            "faulted"
        } else if r.paused {
            "paused"
        } else if r.charging {
            "charging"
        } else if !r.planned_orders.is_empty() {
            "working"
        } else {
            "idle"
        };
        Robot {
            id: r.robot_id.clone(),
            name: r.name.clone(),
            pos: ll(r.position.as_ref()),
            battery_pct: r.battery_pct,
            online: r.online,
            paused: r.paused,
            charging: r.charging,
            fault: r.fault.clone(),
            state,
            planned_orders: r.planned_orders.clone(),
            on_board: r.on_board.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Shop {
    pub id: String,
    pub name: String,
    pub pos: Option<Ll>,
}

impl From<&pb::Shop> for Shop {
    fn from(s: &pb::Shop) -> Self {
        Shop { id: s.shop_id.clone(), name: s.name.clone(), pos: ll(s.location.as_ref()) }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    pub id: u64,
    pub robot: String,
    pub message: String,
    pub raised_at: Option<i64>,
}

impl From<&pb::Alert> for Alert {
    fn from(a: &pb::Alert) -> Self {
        Alert {
            id: a.alert_id,
            robot: a.robot_id.clone(),
            message: a.message.clone(),
            raised_at: ms(a.raised_at.as_ref()),
        }
    }
}
