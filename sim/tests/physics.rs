//! The physics world on its own: a robot stops for what its sensor sees, steps around it, reports itself
//! blocked when it cannot, and two robots meeting head-on both get where they are going without touching.
//! Real rapier bodies, a manual clock; no map needed.

use fleet_core::{LatLon, Timestamp};
use robot_agent::agent::{PlatformCommand, PlatformEvent};
use robot_agent::platform::Platform;
use sim::physics::{Fault, Other, PhysicsConfig, PhysicsWorld};

const T0: Timestamp = Timestamp(1_780_653_600_000);

fn origin() -> LatLon {
    LatLon::new(43.73, 7.42).expect("valid")
}

/// The point `north` metres north and `east` metres east of the origin.
fn at(world: &PhysicsWorld, east: f64, north: f64) -> LatLon {
    world.projection().to_latlon([east, north])
}

fn drive(world: &mut PhysicsWorld, i: usize, path: Vec<LatLon>) {
    world.robot(i).execute(T0, PlatformCommand::Drive { path, speed_mps: 1.6, corridor_m: Vec::new() });
}

/// Runs for up to `secs`, one poll per simulated second like the driver; returns each robot's events and the
/// second each arrived.
fn run(world: &mut PhysicsWorld, secs: u64) -> (Vec<Vec<PlatformEvent>>, Vec<Option<u64>>) {
    let n = world.robot_count();
    let mut events = vec![Vec::new(); n];
    let mut arrived = vec![None; n];
    for s in 1..=secs {
        let now = Timestamp(T0.0 + s * 1_000);
        world.advance_to(now);
        for i in 0..n {
            let ev = world.robot(i).poll(now);
            if ev.contains(&PlatformEvent::Arrived) {
                arrived[i].get_or_insert(s);
            }
            events[i].extend(ev);
        }
        if arrived.iter().all(Option::is_some) {
            break;
        }
    }
    (events, arrived)
}

#[test]
fn stops_for_an_obstacle_ahead_then_steps_around_it() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    // A 0.6 m wide box on the line, 10 m ahead.
    w.add_obstacle(at(&w, 0.0, 10.0), [0.3, 0.3, 0.5]);
    let path = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 30.0)];
    drive(&mut w, r, path);
    w.advance_to(Timestamp(T0.0 + 9_000));
    // Standing still in front of the box, short of it: the sensor saw it.
    let xy = w.robot_xy(r).expect("robot");
    let front = xy[1] + 0.35;
    let gap = (10.0 - 0.3) - front;
    let tel = w.telemetry(r).expect("robot");
    assert!(tel.speed_mps < 0.05, "still moving: {tel:?}");
    assert!((0.5..1.2).contains(&gap), "stopped {gap} m short of the box");
    assert_eq!(w.stats().collisions.total(), 0, "{:?}", w.stats());
    // A few seconds later it steps aside and drives on to the end.
    let (ev, arrived) = run(&mut w, 60);
    assert!(arrived[0].is_some(), "never arrived: {:?} {:?}", w.robot_xy(r), w.stats());
    assert_eq!(ev[0].last(), Some(&PlatformEvent::Arrived));
    assert_eq!(w.stats().collisions.total(), 0, "{:?}", w.stats());
    assert!(w.stats().sidesteps >= 1);
    assert!((w.odometer_m(r) - 30.0).abs() < 3.0, "{} m", w.odometer_m(r));
    assert!(w.battery_pct(r) < 100.0);
}

/// A robot drives 30 m north past a box `2 * half` metres wide on its line, 10 m ahead, keeping within
/// `corridor` of the line (no corridor: empty); the world after up to a minute, the events, and the robot's
/// furthest east or west.
fn past_a_box_within(half: f64, corridor: Vec<f32>) -> (PhysicsWorld, Vec<PlatformEvent>, f32) {
    let cfg = PhysicsConfig { blocked_after_s: 20.0, ..PhysicsConfig::default() };
    let mut w = PhysicsWorld::new(origin(), T0, cfg).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    w.add_obstacle(at(&w, 0.0, 10.0), [half as f32, 0.3, 0.5]);
    // Two segments, so that the drive's end (pulled over at the way's edge) lies beyond the box.
    let path = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 20.0), at(&w, 0.0, 30.0)];
    let corridor_m = if corridor.is_empty() { corridor } else { vec![corridor[0]; 2] };
    w.robot(r).execute(T0, PlatformCommand::Drive { path, speed_mps: 1.6, corridor_m });
    let (mut events, mut widest) = (Vec::new(), 0.0f32);
    for s in 1..=60 {
        for k in 1..=10 {
            w.advance_to(Timestamp(T0.0 + (s - 1) * 1_000 + k * 100));
            widest = widest.max(w.robot_xy(r).expect("robot")[0].abs());
        }
        let ev = w.robot(r).poll(Timestamp(T0.0 + s * 1_000));
        let done = ev.contains(&PlatformEvent::Arrived);
        events.extend(ev);
        if done {
            break;
        }
    }
    (w, events, widest)
}

#[test]
fn a_robot_steps_round_an_obstacle_only_within_its_corridor() {
    // Room beside the box: a 0.3 m post on a 2 m footway, a 0.6 m box on a 2.5 m way. The step aside stays
    // inside the corridor (its centre at most half the width less half the robot's, 0.275 m, off the line).
    for (half, corridor) in [(0.15, 1.0), (0.3, 1.25)] {
        let (w, ev, widest) = past_a_box_within(half, vec![corridor]);
        assert_eq!(ev.last(), Some(&PlatformEvent::Arrived), "{half} in {corridor}: {:?}", w.stats());
        assert!(w.stats().sidesteps >= 1 && w.stats().collisions.total() == 0, "{:?}", w.stats());
        // (Its lane is 0.1 m inside that; a step aside overshoots by about as much, within the steering
        // tolerance the report allows before it counts a robot off its way.)
        assert!(widest <= corridor - 0.275 + 0.1, "{half} in {corridor}: its centre went {widest} m aside");
        assert_eq!(w.stats().social.off_way_s, 0.0, "{:?}", w.stats().social);
    }
    // A 0.6 m box on a 1 m way (0.5 m each side): no room to pass, so the robot stays on the way, does not
    // touch the box, and reports itself blocked for the dispatcher to send it round.
    let (w, ev, widest) = past_a_box_within(0.3, vec![0.5]);
    assert!(!ev.contains(&PlatformEvent::Arrived), "it squeezed past: {:?}", w.stats());
    assert!(ev.contains(&PlatformEvent::Blocked { index: 0 }), "{ev:?}");
    assert!(widest <= 0.5 - 0.275 + 0.1, "its centre went {widest} m aside");
    assert_eq!((w.stats().social.off_way_s, w.stats().collisions.total()), (0.0, 0), "{:?}", w.stats());
    // Without a corridor the robot keeps its own margins: it steps a metre aside and gets past.
    let (w, ev, widest) = past_a_box_within(0.3, Vec::new());
    assert_eq!(ev.last(), Some(&PlatformEvent::Arrived), "{:?}", w.stats());
    assert!(widest > 0.9, "{widest}");
}

#[test]
fn a_robot_held_up_too_long_reports_itself_blocked() {
    // No stepping aside: a wall across the whole footway, as far as this robot is concerned.
    let cfg = PhysicsConfig { sidestep_after_s: f64::INFINITY, blocked_after_s: 5.0, ..PhysicsConfig::default() };
    let mut w = PhysicsWorld::new(origin(), T0, cfg).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    w.add_obstacle(at(&w, 0.0, 5.0), [2.0, 0.2, 0.5]);
    let path = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 2.0), at(&w, 0.0, 20.0)];
    drive(&mut w, r, path);
    w.advance_to(Timestamp(T0.0 + 6_000));
    assert_eq!(w.blocked(r), None, "not yet: it has only just stopped");
    w.advance_to(Timestamp(T0.0 + 15_000));
    let b = w.blocked(r).expect("blocked by now");
    assert_eq!(b.index, 1, "between the second point and the third");
    assert_eq!(w.stats().blocked_events, 1);
    assert_eq!(w.stats().collisions.total(), 0);
}

#[test]
fn two_robots_meeting_head_on_both_arrive_without_touching() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let a = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    let b = w.add_robot(at(&w, 0.0, 40.0), -std::f32::consts::FRAC_PI_2);
    let line = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 20.0), at(&w, 0.0, 40.0)];
    let back: Vec<LatLon> = line.iter().rev().copied().collect();
    drive(&mut w, a, line);
    drive(&mut w, b, back);
    let (ev, arrived) = run(&mut w, 120);
    assert!(arrived.iter().all(Option::is_some), "{arrived:?} {:?}", w.stats());
    for e in &ev {
        let passed: Vec<usize> = e
            .iter()
            .filter_map(|x| if let PlatformEvent::Passed { index } = x { Some(*index) } else { None })
            .collect();
        assert_eq!(passed, vec![0, 1, 2]);
    }
    assert_eq!(w.stats().collisions.total(), 0, "{:?}", w.stats());
    // 40 m at 1.6 m/s is 25 s; keeping right costs nothing.
    assert!(arrived.iter().flatten().all(|&s| s < 35), "{arrived:?}");
}

#[test]
fn head_on_on_exactly_the_same_line_the_higher_index_steps_aside() {
    // Nobody keeps right: they meet nose to nose, and only the yield rule gets them past each other. (b starts
    // 1.5 m beyond a's end, so that a's drive ends on the line itself, not on a parking place beside b.)
    let cfg = PhysicsConfig { keep_right_m: 0.0, ..PhysicsConfig::default() };
    let mut w = PhysicsWorld::new(origin(), T0, cfg).expect("valid config");
    let a = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    let b = w.add_robot(at(&w, 0.0, 41.5), -std::f32::consts::FRAC_PI_2);
    let line = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 40.0)];
    let back: Vec<LatLon> = line.iter().rev().copied().collect();
    drive(&mut w, a, line);
    drive(&mut w, b, back);
    let (_, arrived) = run(&mut w, 120);
    assert!(arrived.iter().all(Option::is_some), "{arrived:?} {:?}", w.stats());
    assert_eq!(w.stats().sidesteps, 1, "exactly one of them steps aside: {:?}", w.stats());
    assert_eq!(w.stats().collisions.total(), 0, "{:?}", w.stats());
    assert_eq!(w.stats().blocked_events, 0, "{:?}", w.stats());
}

#[test]
fn two_robots_crossing_at_right_angles_do_not_deadlock() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    // Same distance to the crossing, same speed: they get there together.
    let a = w.add_robot(at(&w, 0.0, -15.0), std::f32::consts::FRAC_PI_2);
    let b = w.add_robot(at(&w, -15.0, 0.0), 0.0);
    let pa = vec![at(&w, 0.0, -15.0), at(&w, 0.0, 0.0), at(&w, 0.0, 15.0)];
    let pb = vec![at(&w, -15.0, 0.0), at(&w, 0.0, 0.0), at(&w, 15.0, 0.0)];
    drive(&mut w, a, pa);
    drive(&mut w, b, pb);
    let (_, arrived) = run(&mut w, 120);
    assert!(arrived.iter().all(Option::is_some), "{arrived:?} {:?}", w.stats());
    assert_eq!(w.stats().blocked_events, 0, "{:?}", w.stats());
    assert_eq!(w.stats().collisions.total(), 0, "{:?}", w.stats());
}

#[test]
fn a_robot_follows_a_slower_pedestrian_without_touching_them() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    // Walking north ahead of the robot at 1 m/s on the same side, then back on the other side.
    w.add_pedestrian(at(&w, 0.0, 4.0), at(&w, 0.0, 30.0), 1.0, 0.0);
    let path = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 40.0)];
    drive(&mut w, r, path);
    let mut slowest_after_catching_up = f64::MAX;
    for s in 1..=60u64 {
        let now = Timestamp(T0.0 + s * 1_000);
        w.advance_to(now);
        let tel = w.telemetry(r).expect("robot");
        if (10..20).contains(&s) {
            slowest_after_catching_up = slowest_after_catching_up.min(tel.speed_mps);
        }
        if w.robot(r).poll(now).contains(&PlatformEvent::Arrived) {
            break;
        }
    }
    assert!(slowest_after_catching_up < 1.2, "never slowed: {slowest_after_catching_up}");
    assert_eq!(w.stats().collisions.total(), 0, "{:?}", w.stats());
}

#[test]
fn a_blocked_robot_tells_its_agent_once_per_blocked_segment() {
    // A wall across the whole footway; the robot steps aside again and again, but it is one blocking episode.
    let cfg = PhysicsConfig { blocked_after_s: 5.0, ..PhysicsConfig::default() };
    let mut w = PhysicsWorld::new(origin(), T0, cfg).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    let wall = w.add_wall_across(at(&w, 0.0, 6.0), std::f32::consts::FRAC_PI_2, 4.0);
    let path = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 2.0), at(&w, 0.0, 20.0)];
    drive(&mut w, r, path);
    let (ev, arrived) = run(&mut w, 120);
    assert_eq!(arrived[0], None, "the wall is across the whole way");
    let blocked: Vec<&PlatformEvent> = ev[0].iter().filter(|e| matches!(e, PlatformEvent::Blocked { .. })).collect();
    assert_eq!(blocked, [&PlatformEvent::Blocked { index: 1 }], "{:?} {:?}", ev[0], w.stats());
    assert!(w.stats().sidesteps >= 2, "{:?}", w.stats());
    // Taken away, the way is free again: the robot drives on to the end.
    w.remove_obstacle(wall);
    let later = Timestamp(T0.0 + 180_000);
    w.advance_to(later);
    assert!(w.robot(r).poll(later).contains(&PlatformEvent::Arrived), "{:?}", w.robot_xy(r));
}

#[test]
fn a_broken_down_robot_stops_for_good_and_reports_a_fatal_fault() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    let path = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 40.0)];
    drive(&mut w, r, path);
    w.advance_to(Timestamp(T0.0 + 5_000));
    w.break_down(r);
    let ev = w.robot(r).poll(Timestamp(T0.0 + 5_000));
    assert!(matches!(ev.as_slice(), [PlatformEvent::Fault { fatal: true, .. }]), "{ev:?}");
    w.advance_to(Timestamp(T0.0 + 8_000));
    let stopped = w.robot_xy(r).expect("robot");
    w.advance_to(Timestamp(T0.0 + 30_000));
    assert_eq!(w.robot_xy(r), Some(stopped), "a broken robot does not move");
    assert!(w.robot(r).poll(Timestamp(T0.0 + 30_000)).is_empty(), "the fault is reported once");
    // A command it cannot carry out is answered with the fault again (its agent may have been idle before).
    let path = vec![at(&w, 0.0, 10.0), at(&w, 0.0, 40.0)];
    drive(&mut w, r, path);
    let ev = w.robot(r).poll(Timestamp(T0.0 + 31_000));
    assert!(matches!(ev.as_slice(), [PlatformEvent::Fault { fatal: true, .. }]), "{ev:?}");
    assert!(!w.is_busy(r) && w.is_broken(r));
}

#[test]
fn robots_stopping_at_the_same_place_park_apart() {
    // Four robots in a row head for the same stop: the crowded-shop case that used to pile them up.
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    for k in 0..4 {
        let r = w.add_robot(at(&w, -1.5 * k as f64, -20.0), std::f32::consts::FRAC_PI_2);
        let path = vec![at(&w, -1.5 * k as f64, -20.0), at(&w, 0.0, 0.0)];
        drive(&mut w, r, path);
    }
    let (_, arrived) = run(&mut w, 120);
    assert!(arrived.iter().all(Option::is_some), "{arrived:?} {:?}", w.stats());
    w.advance_to(Timestamp(T0.0 + 130_000));
    let xy: Vec<[f32; 2]> = (0..4).map(|i| w.robot_xy(i).expect("robot")).collect();
    for a in 0..4 {
        for b in a + 1..4 {
            let d = ((xy[a][0] - xy[b][0]).powi(2) + (xy[a][1] - xy[b][1]).powi(2)).sqrt();
            assert!(d > 0.9, "robots {a} and {b} park {d} m apart: {xy:?}");
        }
        let from_stop = (xy[a][0].powi(2) + xy[a][1].powi(2)).sqrt();
        assert!(from_stop < 5.0, "robot {a} parked {from_stop} m from the stop");
    }
    assert_eq!(w.stats().collisions.robot_robot, 0, "{:?}", w.stats());
}

#[test]
fn a_person_walking_into_a_standing_robot_is_judged_struck_while_stopped() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    // People keep right: walking east from (-10, 0), this one passes 0.6 m south of the line, through the
    // robot's back corner (the footprint reaches 0.35 m south of its centre, the person 0.3 m north of theirs).
    w.add_pedestrian(at(&w, -10.0, 0.0), at(&w, 10.0, 0.0), 1.0, 0.0);
    w.advance_to(Timestamp(T0.0 + 15_000));
    let contacts = w.contacts();
    assert!(!contacts.is_empty(), "{:?}", w.stats());
    let first = &contacts[0];
    assert_eq!((first.robot, first.other, first.fault), (r, Other::Pedestrian(0), Fault::StruckWhileStopped));
    assert!(first.other_speed_mps > 0.5 && first.robot_speed_mps < 0.05, "{first:?}");
    let stats = w.stats();
    assert_eq!(stats.faults.struck_while_stopped as usize, contacts.len(), "{stats:?}");
    assert_eq!((stats.faults.robot_at_fault, stats.faults.other_at_fault), (0, 0), "{stats:?}");
    // They touched (the contact; the closest gap the figures measured between steps is within a centimetre),
    // and the person was inside the robot's personal space once per pass.
    assert!(stats.social.min_person_distance_m.is_some_and(|d| d < 0.01), "{:?}", stats.social);
    assert!(stats.social.intrusions >= 1 && stats.social.intrusion_s > 0.0, "{:?}", stats.social);
    // An idle robot has no drive to make: no time counted as stopped while driving.
    assert_eq!((stats.social.driving_s, stats.social.stopped_s), (0.0, 0.0));
    // The person walked on along the robot, not through it: it was nudged, not shoved off its spot.
    let xy = w.robot_xy(r).expect("robot");
    assert!(xy[0].hypot(xy[1]) < 0.1, "the robot was pushed to {xy:?}");
}

#[test]
fn a_robot_driving_a_straight_line_alone_is_never_stopped_and_hardly_turns() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), std::f32::consts::FRAC_PI_2);
    let path = vec![at(&w, 0.0, 0.0), at(&w, 0.0, 30.0)];
    drive(&mut w, r, path);
    let (_, arrived) = run(&mut w, 60);
    assert!(arrived[0].is_some());
    let s = w.stats().social;
    assert!(s.driving_s > 15.0, "{s:?}");
    // Only the first step, before the controller's first command takes hold, counts as standing.
    assert!(s.stopped_s <= 0.1, "{s:?}");
    // Joining the keep-right lane (0.4 m off the line) and straightening again turn it about a quarter radian;
    // nothing else does.
    assert!(s.heading_change_rad > 0.1 && s.heading_change_rad < 0.5, "{s:?}");
    assert_eq!((s.min_person_distance_m, s.intrusions, s.min_ttc_s), (None, 0, None));
    assert!(w.contacts().is_empty());
}

/// A person steps out from the side so that, had the robot kept its speed, its front would have met them in its
/// lane: the robot's look-out sees their course and gives way early, outside their personal space.
#[test]
fn a_person_stepping_out_in_front_of_a_robot_at_speed_is_given_way_to() {
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let r = w.add_robot(at(&w, 0.0, 0.0), 0.0);
    // The robot (centre 0.4 m south of the line, keeping right) reaches x = 12.2, its front at 12.55, after
    // about 8.4 s at full speed; the person, walking north 0.6 m east of x = 12 at 1.3 m/s, reaches its lane
    // then. They never give way to a robot.
    w.add_pedestrian(at(&w, 12.0, -11.4), at(&w, 12.0, 11.0), 1.3, 0.0);
    let path = vec![at(&w, 0.0, 0.0), at(&w, 40.0, 0.0)];
    drive(&mut w, r, path);
    let mut slowest_after_start = f64::INFINITY;
    for s in 1..=60u64 {
        let now = Timestamp(T0.0 + s * 1_000);
        w.advance_to(now);
        if s > 3 && s < 12 {
            slowest_after_start = slowest_after_start.min(w.telemetry(r).expect("robot").speed_mps);
        }
        if w.robot(r).poll(now).contains(&PlatformEvent::Arrived) {
            break;
        }
    }
    let stats = w.stats();
    assert_eq!(stats.faults.robot_at_fault, 0, "{:?}", w.contacts());
    assert!(w.contacts().iter().all(|c| c.fault == Fault::StruckWhileStopped), "{:?}", w.contacts());
    assert!(slowest_after_start < 0.8, "it gave way: slowest {slowest_after_start} m/s while the person crossed");
    // And early: the person never came into its personal space (the forward sensor alone stops the robot
    // about 0.13 m from them).
    let closest = stats.social.min_person_distance_m.expect("they met");
    assert!(closest > 0.45 && stats.social.intrusions == 0, "{:?}", stats.social);
    assert!(w.odometer_m(r) > 39.0, "and then drove on to the end: {} m", w.odometer_m(r));
}

/// People walk trips over the walkable graph: as many are out as the hour's profile asks, they start trips
/// and move, and the same seed gives the same crowd.
#[test]
fn people_walk_trips_and_come_out_as_the_profile_asks() {
    use rand::SeedableRng;
    let map = fleet_core::map::MapGraph::street_grid(4, 0.001).expect("the grid builds");
    let crowd = |seed: u64, share: f32| {
        let mut w = PhysicsWorld::new(map.origin(), T0, PhysicsConfig::default()).expect("valid config");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        w.add_pedestrians(&map, 30, [share; 24], &mut rng);
        w.advance_to(Timestamp(T0.0 + 600_000));
        w
    };
    let full = crowd(1, 1.0);
    let stats = full.crowd_stats();
    assert_eq!(stats.peak_out, 30, "{stats:?}");
    assert!((stats.out_s / stats.stepped_s - 30.0).abs() < 0.5, "{stats:?}");
    // Ten minutes of 150-420 m trips at about 1.3 m/s: everyone finished at least one.
    assert!(stats.trips >= 30, "{stats:?}");
    let half = crowd(1, 0.5).crowd_stats();
    // Groups come out whole, so the number out may pass the target by one or two.
    assert!((15..=17).contains(&half.peak_out), "{half:?}");
    let none = crowd(1, 0.0).crowd_stats();
    assert_eq!((none.peak_out, none.trips), (0, 0), "{none:?}");
    assert_eq!(crowd(1, 1.0).crowd_stats(), stats, "same seed, same crowd");
    assert_ne!(crowd(2, 1.0).crowd_stats(), stats, "another seed, another crowd");
    assert_eq!(full.crowd_attention().iter().sum::<u64>(), 30);
}

#[test]
fn robots_ending_their_drives_at_one_stop_park_one_behind_the_other_at_the_ways_edge() {
    // Three robots in a row on a 2 m way (corridor 1 m each side), all sent to one stop 20 m ahead: the first
    // stops just short of it, the others one behind the other along the way, all pulled over to its right-hand
    // edge and inside it, without touching.
    let mut w = PhysicsWorld::new(origin(), T0, PhysicsConfig::default()).expect("valid config");
    let robots: Vec<usize> = [0.0, -3.0, -6.0].iter().map(|&x| w.add_robot(at(&w, x, -0.4), 0.0)).collect();
    for &r in &robots {
        let path = vec![at(&w, -8.0, 0.0), at(&w, 10.0, 0.0), at(&w, 20.0, 0.0)];
        w.robot(r).execute(T0, PlatformCommand::Drive { path, speed_mps: 1.6, corridor_m: vec![1.0, 1.0] });
    }
    let (events, arrived) = run(&mut w, 120);
    assert!(arrived.iter().all(Option::is_some), "{events:?}");
    assert_eq!(w.stats().collisions.total(), 0, "{:?}", w.stats());
    let mut xy: Vec<[f32; 2]> = robots.iter().map(|&r| w.robot_xy(r).expect("a robot")).collect();
    xy.sort_by(|a, b| b[0].total_cmp(&a[0]));
    for p in &xy {
        // Right of the line (south, heading east), at most the corridor less half the robot's width from it.
        assert!(p[1] < -0.4 && p[1] > -(1.0 - 0.275 + 0.05), "pulled over inside the way: {xy:?}");
        assert!(p[0] < 20.0, "short of the stop: {xy:?}");
    }
    for pair in xy.windows(2) {
        assert!(pair[0][0] - pair[1][0] > 0.8, "one behind the other: {xy:?}");
    }
    assert!(xy[0][0] > 18.5, "the first just short of the stop: {xy:?}");
}
