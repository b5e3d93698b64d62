//! Dispatcher behaviour as scenarios: each test is a short script and the decisions it must produce (see
//! [`super::script`] for the language). `UPDATE_EXPECT=1 cargo test -p fleet-core` rewrites the expectations.

use expect_test::expect;

use super::script::check;

/// A shop in the south-west corner with one robot parked there, and a second robot in the far corner.
const FLEET: &str = "
shop s 43.730,7.420
robot near 43.730,7.420
robot far 43.733,7.423
hello near
hello far
";

#[test]
fn an_order_goes_to_the_nearer_robot_and_is_released_step_by_step() {
    check(
        &format!(
            "{FLEET}
@0 place s k1 43.731,7.421 by +3600
@0 place s k1 43.731,7.421 by +3600   # the same key and request: the same order
@0 ready s ord-000001
@60 done near 1                        # loaded
show ord-000001"
        ),
        expect![[r#"
            > shop s 43.730,7.420
            ok shop s
            > robot near 43.730,7.420
            ok robot near
            > robot far 43.733,7.423
            ok robot far
            > hello near
              -> near update 0: no steps
            > hello far
              -> far update 0: no steps
            > place s k1 43.731,7.421 by +3600
            ok placed ord-000001 robot=near eta=+240s
              ~ ord-000001 AT_PICKUP robot=near eta=+180s
              -> near update 1: 1?:pickup ord-000001, 2?:dropoff ord-000001
            > place s k1 43.731,7.421 by +3600
            ok placed ord-000001 robot=near eta=+240s (replayed)
            > ready s ord-000001
            ok ord-000001 AT_PICKUP robot=near eta=+180s
              ~ ord-000001 AT_PICKUP robot=near eta=+180s
              -> near update 2: 1:pickup ord-000001, 2?:dropoff ord-000001
            > done near 1
              ~ ord-000001 IN_TRANSIT robot=near eta=+180s
              -> near update 3: 2:drive 0..1 (2 nodes), 3?:drive 1..5 (2 nodes), 4:dropoff ord-000001
            > show ord-000001
            ord-000001 IN_TRANSIT robot=near eta=+180s
        "#]],
    );
}

#[test]
fn refusals_say_why() {
    check(
        "
shop s 43.730,7.420
robot r 43.730,7.420
@0 quote s 43.733,7.423 by +3600        # nobody online
hello r
@0 quote s 43.733,7.423 by +300         # 660 m of sidewalk in five minutes
@0 quote s 43.733,7.423 by +3600 compartments 3
@0 place s k1 43.900,7.600 by +3600     # far off the map
@0 place s k1 43.733,7.423 by +3600
@0 place s k1 43.731,7.421 by +3600     # the key again, another request
@0 shift r +300                          # the shift ends before a trip of eight minutes
@0 quote s 43.733,7.423 by +3600
",
        expect![[r#"
            > shop s 43.730,7.420
            ok shop s
            > robot r 43.730,7.420
            ok robot r
            > quote s 43.733,7.423 by +3600
            ok quote refused NO_ROBOT_AVAILABLE: no robot is available right now
            > hello r
              -> r update 0: no steps
            > quote s 43.733,7.423 by +300
            ok quote refused DEADLINE_TOO_SOON: too far for the deliver-by time: the drop-off is 6 min from the shop by sidewalk, so even a robot waiting at the shop would arrive 5 min too late to hand it over by then, with the room plans keep for delays; it can be delivered by 00:31 UTC
            > quote s 43.733,7.423 by +3600 compartments 3
            ok quote refused PARCEL_TOO_LARGE: the parcel needs 3 compartments; the largest available robot has 2
            > place s k1 43.900,7.600 by +3600
            err OUT_OF_AREA: order refused: the drop-off is 23390 m from the nearest walkable way; the limit is 150 m
            > place s k1 43.733,7.423 by +3600
            ok placed ord-000001 robot=r eta=+479s
              ~ ord-000001 AT_PICKUP robot=r eta=+419s
              -> r update 1: 1?:pickup ord-000001, 2?:dropoff ord-000001
            > place s k1 43.731,7.421 by +3600
            err IDEMPOTENCY_KEY_REUSED: idempotency key "k1" was already used for order ord-000001 with a different request
            > shift r +300
            ok robot r
            > quote s 43.733,7.423 by +3600
            ok quote refused SHIFT_ENDS: every available robot's shift ends before it could deliver this order
        "#]],
    );
}

#[test]
fn a_robot_away_past_the_limit_hands_unstarted_work_to_one_that_is_online() {
    check(
        &format!(
            "{FLEET}
@0 place s k1 43.731,7.421 by +3600
@0 offline near
@60 tick                                 # a short absence changes nothing
show ord-000001
@121 tick                                # past the two-minute limit
show ord-000001"
        ),
        expect![[r#"
            > shop s 43.730,7.420
            ok shop s
            > robot near 43.730,7.420
            ok robot near
            > robot far 43.733,7.423
            ok robot far
            > hello near
              -> near update 0: no steps
            > hello far
              -> far update 0: no steps
            > place s k1 43.731,7.421 by +3600
            ok placed ord-000001 robot=near eta=+240s
              ~ ord-000001 AT_PICKUP robot=near eta=+180s
              -> near update 1: 1?:pickup ord-000001, 2?:dropoff ord-000001
            > offline near
            > tick
            > show ord-000001
            ord-000001 AT_PICKUP robot=near eta=+180s
            > tick
              ~ ord-000001 TO_PICKUP robot=far eta=+660s
              -> far update 1: 1:drive 15..4 (6 nodes), 2?:drive 4..0 (2 nodes), 3?:pickup ord-000001, 4?:dropoff ord-000001
            > show ord-000001
            ord-000001 TO_PICKUP robot=far eta=+660s
        "#]],
    );
}

#[test]
fn cancelling_is_allowed_until_the_parcel_is_loaded() {
    check(
        &format!(
            "{FLEET}
@0 place s k1 43.731,7.421 by +3600
@0 place s k2 43.732,7.421 by +3600
@0 cancel s ord-000001
@0 ready s ord-000002
@30 done near 1
@40 done near 2
@40 cancel s ord-000002                  # aboard: too late
@40 cancel s ord-000001                  # cancelled already"
        ),
        expect![[r#"
            > shop s 43.730,7.420
            ok shop s
            > robot near 43.730,7.420
            ok robot near
            > robot far 43.733,7.423
            ok robot far
            > hello near
              -> near update 0: no steps
            > hello far
              -> far update 0: no steps
            > place s k1 43.731,7.421 by +3600
            ok placed ord-000001 robot=near eta=+240s
              ~ ord-000001 AT_PICKUP robot=near eta=+180s
              -> near update 1: 1?:pickup ord-000001, 2?:dropoff ord-000001
            > place s k2 43.732,7.421 by +3600
            ok placed ord-000002 robot=near eta=+429s
              ~ ord-000001 AT_PICKUP robot=near eta=+240s
              ~ ord-000002 ASSIGNED robot=near eta=+369s
              -> near update 2: 1?:pickup ord-000001, 2?:pickup ord-000002, 3?:dropoff ord-000001, 4?:dropoff ord-000002
            > cancel s ord-000001
            ok ord-000001 CANCELLED robot=near eta=+240s (cancelled by the shop)
              ~ ord-000001 CANCELLED robot=near eta=+240s (cancelled by the shop)
              ~ ord-000002 AT_PICKUP robot=near eta=+369s
              -> near update 3: 1?:pickup ord-000002, 2?:dropoff ord-000002
            > ready s ord-000002
            ok ord-000002 AT_PICKUP robot=near eta=+369s
              ~ ord-000002 AT_PICKUP robot=near eta=+369s
              -> near update 4: 1:pickup ord-000002, 2?:dropoff ord-000002
            > done near 1
              ~ ord-000002 IN_TRANSIT robot=near eta=+369s
              -> near update 5: 2:drive 0..8 (3 nodes), 3?:drive 8..9 (2 nodes), 4:dropoff ord-000002
            > done near 2
              -> near update 6: 3:drive 8..9 (2 nodes), 4:dropoff ord-000002
            > cancel s ord-000002
            err FAILED_PRECONDITION: order ord-000002 is IN_TRANSIT and can no longer be cancelled
            > cancel s ord-000001
            err FAILED_PRECONDITION: order ord-000001 is CANCELLED and can no longer be cancelled
        "#]],
    );
}

#[test]
fn a_paused_robot_gets_no_new_work() {
    check(
        &format!(
            "{FLEET}
@0 pause near
@0 place s k1 43.731,7.421 by +3600
@0 resume near
# Cheapest added travel puts k2 on `far`, which drives to the shop anyway, though `near`, waiting there, would
# deliver it sooner: the policy minimises travel, not the customer's wait.
@0 place s k2 43.731,7.421 by +3600"
        ),
        expect![[r#"
            > shop s 43.730,7.420
            ok shop s
            > robot near 43.730,7.420
            ok robot near
            > robot far 43.733,7.423
            ok robot far
            > hello near
              -> near update 0: no steps
            > hello far
              -> far update 0: no steps
            > pause near
            ok
              -> near Pause
            > place s k1 43.731,7.421 by +3600
            ok placed ord-000001 robot=far eta=+599s
              ~ ord-000001 TO_PICKUP robot=far eta=+539s
              -> far update 1: 1:drive 15..4 (6 nodes), 2?:drive 4..0 (2 nodes), 3?:pickup ord-000001, 4?:dropoff ord-000001
            > resume near
            ok
              -> near Resume
            > place s k2 43.731,7.421 by +3600
            ok placed ord-000002 robot=far eta=+659s
              ~ ord-000001 TO_PICKUP robot=far eta=+659s
              ~ ord-000002 ASSIGNED robot=far eta=+599s
              -> far update 2: 1:drive 15..4 (6 nodes), 2?:drive 4..0 (2 nodes), 3?:pickup ord-000001, 4?:pickup ord-000002, 5?:dropoff ord-000002, 6?:dropoff ord-000001
        "#]],
    );
}
