//! Customer tracking links: the core keeps only the hash of a link's secret and finds the order by it.

use super::*;

fn hash(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn place_with_link(d: &mut Dispatcher, shop: &ShopId, key: &str, link: &str, now: Timestamp) -> Reply {
    let request = DeliveryRequest {
        dropoff: ll(43.731, 7.421),
        parcel: Parcel::new(Grams(500), 1).expect("valid"),
        ready_at: None,
        deliver_by: now.plus_secs(3_600.0),
    };
    let input = Input::PlaceOrder {
        shop: shop.clone(),
        idempotency_key: key.into(),
        request,
        pin: "1234".into(),
        link_hash: Some(link.into()),
    };
    reply(&d.handle(now, input)).expect("placed")
}

/// A link finds its order; a retried placing and a new link each replace the old one, which then finds nothing;
/// another shop cannot make a link for the order; a malformed hash is refused; a restart keeps the index.
#[test]
fn a_link_finds_its_order_until_replaced() {
    let (mut d, shop, _, _) = fleet();
    let t = Timestamp(1_000_000);
    let Reply::Placed { order, .. } = place_with_link(&mut d, &shop, "k", &hash('a'), t) else { panic!() };
    assert_eq!(d.order_by_link(&hash('a')).map(|o| o.id.clone()), Some(order.id.clone()));
    assert!(d.order_by_link(&hash('b')).is_none());

    let Reply::Placed { replayed, .. } = place_with_link(&mut d, &shop, "k", &hash('b'), t) else { panic!() };
    assert!(replayed);
    assert!(d.order_by_link(&hash('a')).is_none(), "the first link ended");
    assert_eq!(d.order_by_link(&hash('b')).map(|o| o.id.clone()), Some(order.id.clone()));

    let other = ShopId::parse("other").expect("valid");
    reply(&d.handle(t, Input::RegisterShop { id: other.clone(), name: "O".into(), pos: ll(43.73, 7.42) }))
        .expect("shop");
    let stolen = d.handle(t, Input::NewTrackingLink { shop: other, order: order.id.clone(), link_hash: hash('c') });
    assert!(matches!(reply(&stolen), Err(CoreError::NotFound(_))), "{stolen:?}");
    assert!(d.order_by_link(&hash('c')).is_none());
    let bad =
        d.handle(t, Input::NewTrackingLink { shop: shop.clone(), order: order.id.clone(), link_hash: "x".into() });
    assert!(matches!(reply(&bad), Err(CoreError::BadField { .. })), "{bad:?}");

    let out = d.handle(t, Input::NewTrackingLink { shop: shop.clone(), order: order.id.clone(), link_hash: hash('d') });
    reply(&out).expect("new link");
    assert!(d.order_by_link(&hash('b')).is_none());
    let persisted: Vec<Record> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Persist(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(
        persisted.iter().any(|r| matches!(r, Record::Order(o) if o.link_hash.as_deref() == Some(hash('d').as_str()))),
        "the new link is persisted with the order"
    );

    let records: Vec<Record> = d.orders().map(|o| Record::Order(Box::new(o.clone()))).collect();
    let back = Dispatcher::restore(grid(), Config::default(), records);
    assert_eq!(back.order_by_link(&hash('d')).map(|o| o.id.clone()), Some(order.id));
}
