//! Quotes and refusals say why an order cannot be served.

use super::*;
use crate::map::tests::grid;
use crate::mission::Hello;
use crate::order::Parcel;
use crate::{Grams, Refusal};

/// The grid with shop `s` at its south-west corner and robot `r` online there.
fn one_robot_at_the_shop(t: Timestamp) -> (Dispatcher, ShopId) {
    let mut d = Dispatcher::new(grid(), Config::default());
    let at = LatLon::new(43.73, 7.42).expect("valid");
    let shop = ShopId::parse("s").expect("valid");
    let robot = RobotId::parse("r").expect("valid");
    d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: at });
    d.handle(t, Input::RegisterRobot { id: robot.clone(), name: String::new(), depot: at });
    let hello = Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
    d.handle(t, Input::Robot { robot, msg: FromRobot::Hello(hello) });
    (d, shop)
}

#[test]
fn a_quote_says_why_an_order_cannot_be_served() {
    let t = Timestamp(1_000_000);
    let (mut d, shop) = one_robot_at_the_shop(t);
    let ll = |a, b| LatLon::new(a, b).expect("valid");
    let quote = |d: &mut Dispatcher, deliver_in_s: f64| {
        let request = DeliveryRequest {
            dropoff: ll(43.733, 7.423),
            parcel: Parcel::new(Grams(500), 1).expect("valid"),
            ready_at: None,
            deliver_by: t.plus_secs(deliver_in_s),
        };
        match d.handle(t, Input::Quote { shop: shop.clone(), request }).into_iter().next() {
            Some(Output::Reply(Ok(Reply::Quote(q)))) => q,
            other => panic!("no quote: {other:?}"),
        }
    };
    // About 660 m across the grid: more than 5 minutes at 1.6 m/s, plus a minute of loading.
    let q = quote(&mut d, 300.0);
    assert!(!q.feasible);
    assert!(matches!(q.reason, Some(Refusal::DeadlineTooSoon { .. })), "{q:?}");
    assert!(q.reason.as_ref().is_some_and(|r| r.to_string().starts_with("too far for the deliver-by time")), "{q:?}");
    let q = quote(&mut d, 3_600.0);
    assert!(q.feasible, "{q:?}");
    // A shift that ends in five minutes leaves no time for a trip of eight.
    let out =
        d.handle(t, Input::SetShift { robot: RobotId::parse("r").expect("valid"), end: Some(t.plus_secs(300.0)) });
    assert!(matches!(super::tests::reply(&out), Ok(Reply::Robot(r)) if r.shift_end == Some(t.plus_secs(300.0))));
    let q = quote(&mut d, 3_600.0);
    assert_eq!(q.reason, Some(Refusal::ShiftEnds), "{q:?}");
    let out = d.handle(t, Input::SetShift { robot: RobotId::parse("nobody").expect("valid"), end: None });
    assert!(matches!(super::tests::reply(&out), Err(CoreError::NotFound(_))));
    d.handle(t, Input::SetShift { robot: RobotId::parse("r").expect("valid"), end: None });
    assert!(quote(&mut d, 3_600.0).feasible);
}

#[test]
fn a_refusal_about_time_offers_the_earliest_deliver_by_the_fleet_can_meet_and_placing_with_it_works() {
    let t = Timestamp(1_000_000);
    let (mut d, shop) = one_robot_at_the_shop(t);
    let ll = |a, b| LatLon::new(a, b).expect("valid");
    let request = |deliver_in_s: f64| DeliveryRequest {
        dropoff: ll(43.733, 7.423),
        parcel: Parcel::new(Grams(500), 1).expect("valid"),
        ready_at: None,
        deliver_by: t.plus_secs(deliver_in_s),
    };
    // Five minutes is too soon for the 8-minute trip; the refusal offers the first five-minute step that fits.
    let asked = request(300.0);
    let out = d.handle(
        t,
        Input::PlaceOrder {
            shop: shop.clone(),
            idempotency_key: "soon".into(),
            request: asked.clone(),
            pin: "1234".into(),
            link_hash: None,
        },
    );
    let Err(CoreError::Refused(r)) = super::tests::reply(&out) else { panic!("refused: {out:?}") };
    let offer = r.earliest().expect("an offer");
    assert!(matches!(r, Refusal::DeadlineTooSoon { .. }), "{r:?}");
    assert!(offer > asked.deliver_by && (offer.secs_since(asked.deliver_by) / 300.0).fract() == 0.0, "{r:?}");
    assert!(r.to_string().contains("; it can be delivered by "), "{r}");
    assert!(
        r.metadata().iter().any(|(k, v)| *k == "earliest_deliver_by" && v == &(offer.as_millis() / 1000).to_string())
    );
    // One step earlier would not do: the offer is the earliest.
    let earlier = DeliveryRequest { deliver_by: offer.minus_secs(300.0), ..asked.clone() };
    assert!(!quote_of(&mut d, t, &shop, earlier).feasible);
    // The shop takes it: placed with the offered deliver-by, and handed over by it as planned.
    let taken = DeliveryRequest { deliver_by: offer, ..asked };
    let out = d.handle(
        t,
        Input::PlaceOrder {
            shop: shop.clone(),
            idempotency_key: "k".into(),
            request: taken,
            pin: "1234".into(),
            link_hash: None,
        },
    );
    let Ok(Reply::Placed { order, .. }) = super::tests::reply(&out) else { panic!("placed: {out:?}") };
    assert!(order.promise.is_some_and(|p| p.planned <= offer), "{order:?}");
    // Refusals not about time carry no offer.
    let big = DeliveryRequest { parcel: Parcel::new(Grams(500), 3).expect("valid"), ..request(3600.0) };
    let q = quote_of(&mut d, t, &shop, big);
    assert!(matches!(q.reason, Some(Refusal::ParcelTooLarge { .. })) && q.reason.and_then(|r| r.earliest()).is_none());
}

fn quote_of(d: &mut Dispatcher, t: Timestamp, shop: &ShopId, request: DeliveryRequest) -> Quote {
    match super::tests::reply(&d.handle(t, Input::Quote { shop: shop.clone(), request })) {
        Ok(Reply::Quote(q)) => q,
        other => panic!("no quote: {other:?}"),
    }
}
