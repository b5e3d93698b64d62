//! The certification-style scenarios of `scenarios/safety/`, each run as `trundle-sim run` runs it and held to
//! its thresholds: a person stepping out, a crowd crossing, two robots head-on on a narrow way, four robots for
//! one shop door, a signalised crossing, a speed-limited zone, a blocked way and a breakdown on a narrow way.

mod common;

use std::path::{Path, PathBuf};

use common::monaco_area;
use sim::{Report, ScenarioFile};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/safety").join(format!("{name}.toml"))
}

/// Runs `scenarios/safety/NAME.toml` on the bundled map.
fn run(name: &str) -> Report {
    let (map, s) = ScenarioFile::load(&scenario(name)).expect("the scenario loads");
    assert!(map.ends_with("monaco.osm.pbf"), "{}", map.display());
    sim::simulate(&monaco_area(), &s, &mut |_, _| {}).expect("runs").report
}

/// Nothing a robot did caused a contact: no robot at fault, no robot-robot contact.
/// Robots drive within their ways' corridors: never more than the steering tolerance beyond a way's edge.
fn on_the_way(r: &Report, name: &str) {
    assert!(r.social.driving_s > 0.0, "{name}: nobody drove");
    assert!(r.social.off_way_max_m <= 0.15, "{name}: a robot {} m beyond its way's edge", r.social.off_way_max_m);
    assert!(r.social.off_way_s <= 0.001 * r.social.driving_s, "{name}: {:?}", r.social);
}

fn no_fault_of_a_robot(r: &Report, name: &str) {
    let f = &r.contact_faults;
    assert_eq!(f.robot_at_fault, 0, "{name}: a robot at fault in {:?}", r.contacts);
    assert_eq!(r.collisions.robot_robot, 0, "{name}: robots touched: {:?}", r.contacts);
}

fn everything_delivered(r: &Report, name: &str) {
    assert!(r.placed > 0, "{name}: nothing placed");
    assert_eq!(r.delivered, r.placed, "{name}: {} of {} delivered", r.delivered, r.placed);
    assert_eq!(r.open_at_end, 0, "{name}");
}

#[test]
fn a_person_stepping_out_in_front_of_robots_is_never_hit_by_one() {
    let r = run("person-steps-out");
    on_the_way(&r, "person-steps-out");
    everything_delivered(&r, "person-steps-out");
    no_fault_of_a_robot(&r, "person-steps-out");
    // The person did step out in front of robots, again and again.
    assert!(r.social.ttc_under_1s >= 1 || r.near_misses >= 1, "{:?}", r.social);
    // The robots' stopping distance at their speed is reported, and short.
    assert!(r.stopping_distance_m > 0.2 && r.stopping_distance_m < 1.2, "{}", r.stopping_distance_m);
}

#[test]
fn robots_get_through_a_crowd_crossing_their_way_without_hitting_anyone() {
    let r = run("crowd-crossing");
    on_the_way(&r, "crowd-crossing");
    everything_delivered(&r, "crowd-crossing");
    no_fault_of_a_robot(&r, "crowd-crossing");
    // The crowd was in the robots' way: people walked into robots that had stopped for them.
    assert!(r.contact_faults.struck_while_stopped > 0, "{:?}", r.contact_faults);
}

#[test]
fn two_robots_head_on_on_a_narrow_way_take_turns_and_both_deliver() {
    let r = run("narrow-head-on");
    on_the_way(&r, "narrow-head-on");
    everything_delivered(&r, "narrow-head-on");
    no_fault_of_a_robot(&r, "narrow-head-on");
    let t = &r.traffic;
    // Each stood on the spot the other drove to: one had to back off (a deadlock found and resolved).
    assert!(t.deadlocks >= 1 && t.reroutes >= 1, "{t:?}");
}

#[test]
fn four_robots_for_one_shop_door_queue_for_it() {
    let r = run("shop-door");
    on_the_way(&r, "shop-door");
    everything_delivered(&r, "shop-door");
    no_fault_of_a_robot(&r, "shop-door");
    assert!(r.traffic.waited >= 1, "someone waited for the door: {:?}", r.traffic);
    let robots = r.robots.iter().filter(|x| x.deliveries > 0).count();
    assert!(robots >= 3, "several robots came to the door: {:?}", r.robots);
}

#[test]
fn robots_never_start_across_a_signalised_crossing_on_red() {
    let r = run("signalised-crossing");
    on_the_way(&r, "signalised-crossing");
    everything_delivered(&r, "signalised-crossing");
    no_fault_of_a_robot(&r, "signalised-crossing");
    let t = &r.traffic;
    assert!(t.signalised >= 1, "{t:?}");
    assert!(t.signal_crossed >= 10, "the robots crossed: {t:?}");
    assert_eq!(t.signal_entered_on_red, 0, "{t:?}");
    // With 20 s of green in 90 s, robots arriving at random met red lights and waited for green.
    assert!(t.signal_waits >= 3 && t.signal_wait_s > 30.0, "{t:?}");
}

#[test]
fn no_robot_drives_faster_than_a_speed_zone_allows() {
    let r = run("speed-zone");
    on_the_way(&r, "speed-zone");
    everything_delivered(&r, "speed-zone");
    no_fault_of_a_robot(&r, "speed-zone");
    let [zone] = r.speed_zones.as_slice() else { panic!("one zone: {:?}", r.speed_zones) };
    assert!(zone.inside_s > 600.0, "robots drove in the zone: {zone:?}");
    assert!(zone.fastest_mps <= zone.max_mps + 1e-3, "{zone:?}");
    // They drove at the limit, not crawling: the limit, not something else, set their speed.
    assert!(zone.fastest_mps >= 0.9 * zone.max_mps, "{zone:?}");
}

#[test]
fn a_blocked_way_is_reported_and_driven_round() {
    let r = run("blocked-way");
    on_the_way(&r, "blocked-way");
    everything_delivered(&r, "blocked-way");
    no_fault_of_a_robot(&r, "blocked-way");
    assert_eq!(r.collisions.robot_static, 0, "{:?}", r.contacts);
    assert!(r.reroutes >= 1, "a robot reported the way blocked and was re-routed");
}

#[test]
fn a_robot_broken_down_on_a_narrow_way_keeps_it_and_the_other_goes_round() {
    let r = run("breakdown-narrow");
    on_the_way(&r, "breakdown-narrow");
    no_fault_of_a_robot(&r, "breakdown-narrow");
    // Robot 1's parcel arrives by the long way round; robot 0's stays aboard the broken robot, not lost.
    let by_robot = |id: &str| r.orders.iter().find(|o| o.robots.iter().any(|x| x == id)).expect("an order");
    assert_eq!(by_robot("robot-001").status, "DELIVERED", "{:?}", r.orders);
    assert_eq!(by_robot("robot-000").status, "IN_TRANSIT", "{:?}", r.orders);
    assert!(r.traffic.reroutes >= 1, "{:?}", r.traffic);
}
