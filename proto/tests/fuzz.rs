//! A seeded mutation fuzzer over the wire-to-domain conversions: valid encodings of every message the
//! dispatcher and the agent read are mutated (bits flipped, bytes overwritten, cut, spliced, extreme floats
//! written into them), decoded, and converted. No input may panic; whatever converts must convert back to the
//! wire and again to the same domain value; and a converted coordinate is always finite and in range.

use fleet_core::mission::{FromRobot, ToRobot};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trundle_proto::{convert, pb};

fn ll(lat: f64, lon: f64) -> pb::LatLon {
    pb::LatLon { lat, lon }
}

fn robot_messages() -> Vec<Vec<u8>> {
    use pb::robot_message::Msg;
    let hello = pb::Hello {
        factsheet: Some(pb::Factsheet {
            model: "m".into(),
            compartments: 2,
            max_payload_grams: 20_000,
            max_speed_mps: 1.6,
            battery_capacity_wh: 1000.0,
        }),
        mission_id: "m-r1".into(),
        last_update_id: 7,
        finished: vec![pb::StepResult { seq: 3, outcome: pb::StepOutcome::Done as i32, detail: String::new() }],
        robot_id: "r1".into(),
    };
    let state = pb::RobotState {
        position: Some(ll(43.73, 7.42)),
        heading_deg: 90.0,
        speed_mps: 1.2,
        battery_pct: 80.0,
        last_node: 12,
        has_last_node: true,
        mission_update_id: 4,
        driving: true,
        paused: false,
    };
    let event = |e| pb::RobotMessage { msg: Some(Msg::Event(pb::RobotEvent { event: Some(e) })) };
    [
        pb::RobotMessage { msg: Some(Msg::Hello(hello)) },
        pb::RobotMessage { msg: Some(Msg::State(state)) },
        event(pb::robot_event::Event::StepFinished(pb::StepResult {
            seq: 9,
            outcome: pb::StepOutcome::HandoverFailed as i32,
            detail: "no PIN".into(),
        })),
        event(pb::robot_event::Event::Blocked(pb::Blocked { from_node: 1, to_node: 2 })),
        event(pb::robot_event::Event::Error(pb::RobotError {
            level: pb::ErrorLevel::Fatal as i32,
            r#type: "motor".into(),
            detail: "stuck".into(),
        })),
        pb::RobotMessage { msg: Some(Msg::Ack(pb::MissionAck { update_id: 5 })) },
    ]
    .iter()
    .map(Message::encode_to_vec)
    .collect()
}

fn dispatcher_messages() -> Vec<Vec<u8>> {
    use pb::step::Action;
    let step = |seq, action| pb::Step { seq, released: seq < 3, action: Some(action) };
    let mission = pb::MissionUpdate {
        mission_id: "m-r1".into(),
        update_id: 3,
        steps: vec![
            step(
                1,
                Action::Drive(pb::Drive {
                    nodes: vec![1, 2, 3],
                    path: vec![ll(43.73, 7.42), ll(43.731, 7.42), ll(43.732, 7.421)],
                    length_m: 250.0,
                    speed_mps: 1.6,
                    corridor_m: vec![1.0, 0.75],
                }),
            ),
            step(2, Action::Pickup(pb::Pickup { order_id: "ord-000001".into(), compartments: 1, service_s: 60.0 })),
            step(
                3,
                Action::Dropoff(pb::Dropoff {
                    order_id: "ord-000001".into(),
                    pin_sha256: "a".repeat(64),
                    service_s: 60.0,
                }),
            ),
            step(4, Action::ReturnParcel(pb::Return { order_id: "ord-000001".into(), service_s: 60.0 })),
            step(5, Action::Charge(pb::Charge { until_pct: 95.0 })),
        ],
    };
    [
        pb::DispatcherMessage { msg: Some(pb::dispatcher_message::Msg::Mission(mission)) },
        pb::DispatcherMessage {
            msg: Some(pb::dispatcher_message::Msg::Action(pb::InstantAction {
                r#type: pb::InstantActionType::Pause as i32,
            })),
        },
        pb::DispatcherMessage {
            msg: Some(pb::dispatcher_message::Msg::Welcome(pb::Welcome {
                robot_id: "r1".into(),
                fencing_token: 0,
                area: String::new(),
            })),
        },
    ]
    .iter()
    .map(Message::encode_to_vec)
    .collect()
}

fn deliveries() -> Vec<Vec<u8>> {
    let d = pb::Delivery {
        dropoff: Some(ll(43.74, 7.43)),
        parcel: Some(pb::Parcel { weight_grams: 1500, compartments: 1 }),
        ready_at: Some(prost_types::Timestamp { seconds: 1_780_653_600, nanos: 5 }),
        deliver_by: Some(prost_types::Timestamp { seconds: 1_780_657_200, nanos: 0 }),
    };
    vec![d.encode_to_vec()]
}

/// Extreme values a mutation may write as a little-endian f64 (protobuf's `double`).
const FLOATS: [f64; 9] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e308, -1e308, 90.0000001, 180.5, 5e-324];

fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..6) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            2 if !b.is_empty() => b.truncate(rng.random_range(0..b.len())),
            3 => {
                let i = rng.random_range(0..=b.len());
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                b.splice(i..i, junk);
            }
            4 if b.len() >= 8 => {
                let i = rng.random_range(0..=b.len() - 8);
                let f = FLOATS[rng.random_range(0..FLOATS.len())];
                b[i..i + 8].copy_from_slice(&f.to_le_bytes());
            }
            _ if !b.is_empty() => {
                let (i, j) = (rng.random_range(0..b.len()), rng.random_range(0..b.len()));
                let (lo, hi) = (i.min(j), i.max(j));
                let chunk = b[lo..hi].to_vec();
                b.extend_from_slice(&chunk);
            }
            _ => {}
        }
    }
    b
}

fn check_latlon(p: fleet_core::LatLon) {
    assert!(p.lat().is_finite() && p.lon().is_finite());
    assert!((-90.0..=90.0).contains(&p.lat()) && (-180.0..=180.0).contains(&p.lon()), "{p:?}");
}

#[test]
fn no_mutated_message_panics_and_what_converts_round_trips() {
    let iterations: usize =
        std::env::var("TRUNDLE_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let mut rng = ChaCha8Rng::seed_from_u64(0x7275_6e64);
    let (robot, dispatcher, delivery) = (robot_messages(), dispatcher_messages(), deliveries());
    let (mut decoded, mut converted) = (0usize, 0usize);
    for _ in 0..iterations {
        match rng.random_range(0..3) {
            0 => {
                let k = rng.random_range(0..robot.len());
                let bytes = mutate(&mut rng, &robot[k]);
                let Ok(m) = pb::RobotMessage::decode(bytes.as_slice()) else { continue };
                decoded += 1;
                if let Ok(domain) = convert::from_robot(m) {
                    converted += 1;
                    if let FromRobot::State(s) = &domain {
                        check_latlon(s.pos);
                    }
                    let again = convert::from_robot(convert::from_robot_to_wire(&domain))
                        .expect("a converted message converts again");
                    assert_eq!(again, domain);
                }
            }
            1 => {
                let k = rng.random_range(0..dispatcher.len());
                let bytes = mutate(&mut rng, &dispatcher[k]);
                let Ok(m) = pb::DispatcherMessage::decode(bytes.as_slice()) else { continue };
                decoded += 1;
                if let Ok(Some(domain)) = convert::to_robot(m) {
                    converted += 1;
                    if let ToRobot::Mission(u) = &domain {
                        for s in &u.steps {
                            if let fleet_core::mission::StepAction::Drive { path, .. } = &s.action {
                                path.iter().copied().for_each(check_latlon);
                            }
                        }
                    }
                    let again = convert::to_robot(convert::to_robot_to_wire(&domain)).expect("converts again");
                    assert_eq!(again, Some(domain));
                }
            }
            _ => {
                let bytes = mutate(&mut rng, &delivery[0]);
                let Ok(d) = pb::Delivery::decode(bytes.as_slice()) else { continue };
                decoded += 1;
                if let Ok(req) = convert::delivery(Some(&d)) {
                    converted += 1;
                    check_latlon(req.dropoff);
                    assert!(req.parcel.weight.0 > 0);
                }
            }
        }
    }
    // The mutations must reach the conversions (most break the framing, a good share do not), and not only
    // with inputs the conversions refuse.
    eprintln!("{iterations} mutated inputs, {decoded} decoded, {converted} converted");
    assert!(decoded > iterations / 20, "only {decoded} of {iterations} mutated inputs decoded");
    assert!(converted > decoded / 10, "only {converted} of {decoded} decoded inputs converted");
}

#[test]
fn arbitrary_coordinates_are_accepted_exactly_when_finite_and_in_range() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for _ in 0..100_000 {
        let pick = |rng: &mut ChaCha8Rng| match rng.random_range(0..3) {
            0 => f64::from_bits(rng.random()),
            1 => FLOATS[rng.random_range(0..FLOATS.len())],
            _ => rng.random_range(-200.0..200.0),
        };
        let (lat, lon) = (pick(&mut rng), pick(&mut rng));
        let ok = lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
        let got = convert::latlon("p", Some(&ll(lat, lon)));
        assert_eq!(got.is_ok(), ok, "{lat} {lon}: {got:?}");
    }
}
