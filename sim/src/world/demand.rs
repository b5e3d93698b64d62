//! The day's orders: drawn up front ([`plan`]) so the stream does not depend on what the fleet does, either
//! replayed from the scenario's log or a seeded Poisson stream (thinned by the hourly profile) to customers
//! near each shop; then, during the run, placed with the dispatcher when due and marked ready when packed
//! ([`Demand`]), which also knows each order's PIN for the customer at the door.

use std::collections::BTreeMap;

use fleet_core::dispatcher::{Input, Reply};
use fleet_core::host::Host;
use fleet_core::order::{DeliveryRequest, Parcel};
use fleet_core::{CoreError, Grams, LatLon, OrderId, ShopId, Timestamp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::lockstep::Net;
use super::setup::{Shops, node_pos, snaps};
use crate::osm::{Area, Footprint};
use crate::scenario::Customers;
use crate::{Error, Scenario};

/// A shop's planned order: when it is placed, where it goes, when the parcel is ready.
#[derive(Debug, Clone)]
pub(super) struct PlannedOrder {
    at: Timestamp,
    shop: usize,
    dropoff: LatLon,
    ready_at: Timestamp,
    deliver_by: Timestamp,
    grams: u32,
    pin: String,
}

/// Customers other than random nodes: per shop, the addresses within the delivery radius (more than 100 m
/// away, like the nodes), or all of them when none is. Empty lists when customers live at random nodes.
fn customers(area: &Area, scenario: &Scenario, shops: &Shops) -> Vec<Vec<LatLon>> {
    let (map, features) = (&area.map, &area.features);
    let addresses: Vec<LatLon> = match &scenario.customers {
        Customers::Nodes => Vec::new(),
        Customers::At(v) => v.clone(),
        Customers::Buildings => {
            let homes: Vec<LatLon> = features
                .buildings
                .iter()
                .filter(|b| b.residential)
                .filter_map(Footprint::centre)
                .filter(|&p| snaps(map, scenario, p))
                .collect();
            if homes.is_empty() {
                features.buildings.iter().filter_map(Footprint::centre).filter(|&p| snaps(map, scenario, p)).collect()
            } else {
                homes
            }
        }
    };
    shops
        .pos
        .iter()
        .map(|&s| {
            let near: Vec<LatLon> = addresses
                .iter()
                .copied()
                .filter(|p| {
                    let d = p.distance_m(s);
                    d < scenario.delivery_radius_m && d > 100.0
                })
                .collect();
            if near.is_empty() { addresses.clone() } else { near }
        })
        .collect()
}

/// The period's orders in the order they are placed, drawn from `rng` (a replayed log draws only the PINs).
pub(super) fn plan(
    area: &Area,
    scenario: &Scenario,
    shops: &Shops,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<PlannedOrder>, Error> {
    let map = &area.map;
    let n = map.node_count() as u32;
    let start = Timestamp(scenario.start_ms);
    let per_shop = customers(area, scenario, shops);
    let mut planned = Vec::new();
    if !scenario.replay.is_empty() {
        for o in &scenario.replay {
            let at = start.plus_secs(o.at_s);
            planned.push(PlannedOrder {
                at,
                shop: o.shop,
                dropoff: o.dropoff,
                ready_at: at.plus_secs(60.0 * o.prep_min),
                deliver_by: at.plus_secs(60.0 * o.deadline_min),
                grams: o.grams,
                pin: format!("{:06}", rng.random_range(0..1_000_000u32)),
            });
        }
        return Ok(planned);
    }
    let open_s = scenario.duration_s.saturating_sub(3_600).max(scenario.duration_s / 2) as f64;
    // An hourly profile thins a stream at the peak rate: a draw is kept with probability profile / peak.
    let peak = scenario.hourly_profile.iter().copied().fold(0.0, f64::max);
    let rate = scenario.orders_per_hour / 3600.0 * if scenario.hourly_profile.is_empty() { 1.0 } else { peak };
    let mut t = 0.0;
    if rate > 0.0 {
        loop {
            t += -(1.0 - rng.random::<f64>()).ln() / rate;
            if t >= open_s {
                break;
            }
            if !scenario.hourly_profile.is_empty() {
                let hour = ((scenario.start_ms / 1_000 + t as u64) / 3_600 % 24) as usize;
                if rng.random::<f64>() * peak >= scenario.hourly_profile[hour] {
                    continue;
                }
            }
            let shop = rng.random_range(0..scenario.shops);
            let mut dropoff = None;
            if per_shop[shop].is_empty() {
                for _ in 0..10_000 {
                    let p = node_pos(map, rng.random_range(0..n))?;
                    let d = p.distance_m(shops.pos[shop]);
                    if d < scenario.delivery_radius_m && d > 100.0 {
                        dropoff = Some(p);
                        break;
                    }
                }
            } else {
                dropoff = Some(per_shop[shop][rng.random_range(0..per_shop[shop].len())]);
            }
            let Some(dropoff) = dropoff else { continue };
            let at = start.plus_secs(t);
            let (pa, pb) = scenario.prep_min;
            let (da, db) = scenario.deadline_min;
            planned.push(PlannedOrder {
                at,
                shop,
                dropoff,
                ready_at: at.plus_secs(60.0 * (pa + (pb - pa) * rng.random::<f64>())),
                deliver_by: at.plus_secs(60.0 * (da + (db - da) * rng.random::<f64>())),
                grams: rng.random_range(200..8_000),
                pin: format!("{:06}", rng.random_range(0..1_000_000u32)),
            });
        }
    }
    Ok(planned)
}

/// The shops and customers during the run.
pub(super) struct Demand {
    planned: Vec<PlannedOrder>,
    /// How many of `planned` have been placed (or refused).
    placed: usize,
    /// Shop `i`'s id.
    shop_ids: Vec<ShopId>,
    /// Each placed order's PIN, for the customer at the door.
    pins: BTreeMap<OrderId, String>,
    /// Placed orders whose parcels are not yet marked ready, with the time they will be.
    ready_due: Vec<(Timestamp, ShopId, OrderId)>,
    /// Refused orders, by the dispatcher's reason.
    refused: BTreeMap<String, usize>,
    /// What each placed order's quote promised the shop: the drop-off ETA and the latest time.
    promised: BTreeMap<OrderId, Promise>,
    /// How much later than asked a shop takes an offered deliver-by, seconds; and how many offers were taken.
    accept_offer_s: f64,
    offers_taken: usize,
}

/// What a quote promised the shop at placing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Promise {
    pub(super) eta: Option<Timestamp>,
    pub(super) latest: Option<Timestamp>,
    /// Placed on the dispatcher's offer of a later deliver-by than the shop asked.
    pub(super) offer: bool,
}

impl Demand {
    pub(super) fn new(planned: Vec<PlannedOrder>, shop_ids: Vec<ShopId>, accept_offer_min: f64) -> Self {
        Self {
            planned,
            placed: 0,
            shop_ids,
            pins: BTreeMap::new(),
            ready_due: Vec::new(),
            refused: BTreeMap::new(),
            promised: BTreeMap::new(),
            accept_offer_s: accept_offer_min * 60.0,
            offers_taken: 0,
        }
    }

    /// Shops place the orders due by `now`.
    pub(super) fn place_due(&mut self, now: Timestamp, host: &mut Host, net: &mut Net) -> Result<(), Error> {
        while self.placed < self.planned.len() && self.planned[self.placed].at <= now {
            let p = &self.planned[self.placed];
            self.placed += 1;
            let parcel = Parcel::new(Grams(p.grams), 1).map_err(|e| Error::Setup(e.to_string()))?;
            let request =
                DeliveryRequest { dropoff: p.dropoff, parcel, ready_at: Some(p.ready_at), deliver_by: p.deliver_by };
            let shop = self.shop_ids[p.shop].clone();
            let place = |host: &mut Host, key: String, request: DeliveryRequest| {
                host.handle(
                    now,
                    Input::PlaceOrder {
                        shop: shop.clone(),
                        idempotency_key: key,
                        request,
                        pin: p.pin.clone(),
                        link_hash: None,
                    },
                )
            };
            let mut out = place(host, format!("k{}", self.placed), request.clone());
            let mut took_offer = false;
            // Refused with an offer of a later deliver-by the shop can live with: it takes it.
            if let Some(Err(CoreError::Refused(r))) = &out.reply
                && let Some(offer) = r.earliest()
                && offer.secs_since(request.deliver_by) <= self.accept_offer_s
            {
                net.absorb(out);
                out = place(host, format!("k{}-offer", self.placed), DeliveryRequest { deliver_by: offer, ..request });
                if matches!(out.reply, Some(Ok(Reply::Placed { .. }))) {
                    self.offers_taken += 1;
                    took_offer = true;
                }
            }
            match out.reply.take() {
                Some(Ok(Reply::Placed { order, quote, .. })) => {
                    self.promised.insert(
                        order.id.clone(),
                        Promise { eta: quote.eta_dropoff, latest: quote.eta_latest, offer: took_offer },
                    );
                    self.pins.insert(order.id.clone(), p.pin.clone());
                    self.ready_due.push((p.ready_at, shop.clone(), order.id.clone()));
                }
                // By reason, without the offered time (it differs for every order).
                Some(Err(CoreError::Refused(r))) => {
                    *self.refused.entry(CoreError::Refused(r.offering(None)).to_string()).or_default() += 1;
                }
                Some(Err(e)) => *self.refused.entry(e.to_string()).or_default() += 1,
                _ => {}
            }
            net.absorb(out);
        }
        Ok(())
    }

    /// Shops mark the parcels packed by `now` ready.
    pub(super) fn mark_ready(&mut self, now: Timestamp, host: &mut Host, net: &mut Net) {
        let (due, later): (Vec<_>, Vec<_>) = self.ready_due.drain(..).partition(|(at, _, _)| *at <= now);
        self.ready_due = later;
        for (_, shop, order) in due {
            let out = host.handle(now, Input::MarkReady { shop, order });
            net.absorb(out);
        }
    }

    /// The PIN the customer of `order` types at the door.
    pub(super) fn pin(&self, order: &OrderId) -> Option<&String> {
        self.pins.get(order)
    }

    /// Orders the shops asked for so far (placed or refused).
    pub(super) fn requested(&self) -> usize {
        self.placed
    }

    /// Refused orders by the dispatcher's reason, what each placed order was promised, and the offers taken.
    pub(super) fn into_outcome(self) -> (BTreeMap<String, usize>, BTreeMap<OrderId, Promise>, usize) {
        (self.refused, self.promised, self.offers_taken)
    }
}
