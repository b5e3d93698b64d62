//! Quotes and refusals say why an order cannot be served.

use super::*;
use crate::map::tests::grid;
use crate::mission::Hello;
use crate::order::Parcel;
use crate::{Grams, Refusal};

#[test]
fn a_quote_says_why_an_order_cannot_be_served() {
    let t = Timestamp(1_000_000);
    let mut d = Dispatcher::new(grid(), Config::default());
    let ll = |a, b| LatLon::new(a, b).expect("valid");
    let shop = ShopId::parse("s").expect("valid");
    let robot = RobotId::parse("r").expect("valid");
    d.handle(t, Input::RegisterShop { id: shop.clone(), name: "S".into(), pos: ll(43.73, 7.42) });
    d.handle(t, Input::RegisterRobot { id: robot.clone(), name: String::new(), depot: ll(43.73, 7.42) });
    let hello = Hello { model: RobotModel::default(), mission_id: String::new(), last_update_id: 0, finished: vec![] };
    d.handle(t, Input::Robot { robot, msg: FromRobot::Hello(hello) });
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
