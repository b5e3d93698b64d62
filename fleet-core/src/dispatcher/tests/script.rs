//! A data-driven harness for dispatcher behaviour: a scenario is a few lines of text run through one
//! dispatcher on the 4x4 grid map ([`crate::map::tests::grid`], streets about 80 m apart), and what the
//! dispatcher decided is printed as text and compared with the expected text. `UPDATE_EXPECT=1 cargo test`
//! rewrites the expectations in place; review the diff like any other change.
//!
//! One command a line, `#` starts a comment, `@S` in front sets the time to S seconds after the start (it stays
//! there for the lines after). Coordinates are `LAT,LON`; the grid's corners are 43.730,7.420 and 43.733,7.423.
//!
//! ```text
//! shop ID LAT,LON                  register a shop
//! robot ID LAT,LON                 register a robot with its depot
//! hello ID                         the robot connects (default model, two compartments)
//! offline ID                       its session ends
//! place SHOP KEY LAT,LON by +S [ready +S] [compartments N]
//! quote SHOP LAT,LON by +S [compartments N]
//! cancel SHOP ORDER | ready SHOP ORDER
//! done ROBOT SEQ                   the robot finished step SEQ
//! shift ROBOT +S | shift ROBOT none
//! pause ROBOT | resume ROBOT | tick
//! show ORDER                       the order as the dispatcher has it
//! ```
//!
//! Each command prints its reply (`ok ...` or `err REASON: message`), then what it changed: orders (`~`),
//! missions and instant actions sent to robots (`->`) and operator alerts (`!`). Times print as seconds after
//! the start.

use expect_test::Expect;

use super::*;
use crate::Grams;
use crate::map::tests::grid;
use crate::mission::{Hello, Step};
use crate::order::Parcel;

const T0: Timestamp = Timestamp(1_000_000);

fn secs(t: Timestamp) -> String {
    format!("+{:.0}s", t.secs_since(T0))
}

fn point(s: &str) -> LatLon {
    let (a, b) = s.split_once(',').unwrap_or_else(|| panic!("{s:?} is not LAT,LON"));
    let num = |v: &str| v.trim().parse::<f64>().unwrap_or_else(|_| panic!("{v:?} is not a number"));
    LatLon::new(num(a), num(b)).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn offset(s: &str, now: Timestamp) -> Timestamp {
    let v = s.strip_prefix('+').unwrap_or_else(|| panic!("{s:?}: times are +SECONDS"));
    now.plus_secs(v.parse::<f64>().unwrap_or_else(|_| panic!("{s:?} is not a number of seconds")))
}

/// `by +S`, `ready +S` and `compartments N` after the positional words of a request.
fn request(words: &[&str], now: Timestamp) -> DeliveryRequest {
    let mut req = DeliveryRequest {
        dropoff: point(words[0]),
        parcel: Parcel::new(Grams(500), 1).expect("a valid parcel"),
        ready_at: None,
        deliver_by: now.plus_secs(3_600.0),
    };
    let mut rest = words[1..].chunks(2);
    for pair in rest.by_ref() {
        match pair {
            ["by", t] => req.deliver_by = offset(t, now),
            ["ready", t] => req.ready_at = Some(offset(t, now)),
            ["compartments", n] => {
                let n: u8 = n.parse().unwrap_or_else(|_| panic!("{n:?} compartments"));
                req.parcel = Parcel::new(Grams(500), n).unwrap_or_else(|e| panic!("{e}"));
            }
            other => panic!("unknown request words {other:?}"),
        }
    }
    req
}

fn step(s: &Step) -> String {
    let what = match &s.action {
        StepAction::Drive { nodes, .. } => {
            format!(
                "drive {}..{} ({} nodes)",
                nodes.first().map_or(0, |n| n.0),
                nodes.last().map_or(0, |n| n.0),
                nodes.len()
            )
        }
        StepAction::Pickup { order, .. } => format!("pickup {order}"),
        StepAction::Dropoff { order, .. } => format!("dropoff {order}"),
        StepAction::Return { order, .. } => format!("return {order}"),
        StepAction::Charge { until_pct } => format!("charge to {until_pct:.0}%"),
    };
    format!("{}{}:{what}", s.seq, if s.released { "" } else { "?" })
}

fn order_line(o: &crate::order::Order) -> String {
    let mut line = format!("{} {}", o.id, o.status.name());
    if let Some(r) = &o.robot {
        line += &format!(" robot={r}");
    }
    if let Some(eta) = o.eta_dropoff {
        line += &format!(" eta={}", secs(eta));
    }
    if let Some(why) = &o.reason {
        line += &format!(" ({why})");
    }
    line
}

fn print_outputs(out: &[Output], text: &mut String) {
    for o in out {
        let line = match o {
            Output::Reply(Ok(r)) => match r {
                Reply::Placed { order, quote, replayed } => format!(
                    "ok placed {} robot={} eta={}{}",
                    order.id,
                    quote.robot.as_ref().map_or("-".into(), ToString::to_string),
                    quote.eta_dropoff.map_or("-".into(), secs),
                    if *replayed { " (replayed)" } else { "" }
                ),
                Reply::Quote(q) => match &q.reason {
                    None => format!(
                        "ok quote robot={} eta={} latest={}",
                        q.robot.as_ref().map_or("-".into(), ToString::to_string),
                        q.eta_dropoff.map_or("-".into(), secs),
                        q.eta_latest.map_or("-".into(), secs)
                    ),
                    Some(r) => format!("ok quote refused {}: {r}", r.code()),
                },
                Reply::Order(o) => format!("ok {}", order_line(o)),
                Reply::Robot(r) => format!("ok robot {}", r.id),
                Reply::Shop(s) => format!("ok shop {}", s.id),
                Reply::Done => "ok".into(),
                Reply::MapSwapped(s) => format!("ok map {}", s.fingerprint),
            },
            Output::Reply(Err(e)) => format!("err {}: {e}", e.reason()),
            Output::OrderChanged(o) => format!("  ~ {}", order_line(o)),
            Output::Send { robot, msg: ToRobot::Mission(m) } if m.steps.is_empty() => {
                format!("  -> {robot} update {}: no steps", m.update_id)
            }
            Output::Send { robot, msg: ToRobot::Mission(m) } => format!(
                "  -> {robot} update {}: {}",
                m.update_id,
                m.steps.iter().map(step).collect::<Vec<_>>().join(", ")
            ),
            Output::Send { robot, msg: ToRobot::Instant(a) } => format!("  -> {robot} {a:?}"),
            Output::Alert { robot, message, .. } => {
                format!("  ! {}{message}", robot.as_ref().map_or(String::new(), |r| format!("{r}: ")))
            }
            // Records and robot notes follow from the above; printing them would only repeat it.
            Output::Persist(_) | Output::RobotChanged(_) => continue,
        };
        text.push_str(&line);
        text.push('\n');
    }
}

/// Runs `script` and compares what the dispatcher decided with `expect`.
pub(crate) fn check(script: &str, expect: Expect) {
    let mut d = Dispatcher::new(grid(), Config::default());
    let mut now = T0;
    let mut text = String::new();
    for raw in script.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if let Some(t) = words[0].strip_prefix('@') {
            now = T0.plus_secs(t.parse::<f64>().unwrap_or_else(|_| panic!("{t:?} is not a time")));
            words.remove(0);
        }
        text.push_str(&format!("> {}\n", words.join(" ")));
        let (shop, robot, order) = (
            |s: &str| ShopId::parse(s).unwrap_or_else(|e| panic!("{e}")),
            |s: &str| RobotId::parse(s).unwrap_or_else(|e| panic!("{e}")),
            |s: &str| OrderId::parse(s).unwrap_or_else(|e| panic!("{e}")),
        );
        let input = match words.as_slice() {
            ["shop", id, at] => Input::RegisterShop { id: shop(id), name: (*id).into(), pos: point(at) },
            ["robot", id, at] => Input::RegisterRobot { id: robot(id), name: String::new(), depot: point(at) },
            ["hello", id] => Input::Robot {
                robot: robot(id),
                msg: FromRobot::Hello(Hello {
                    model: RobotModel::default(),
                    mission_id: String::new(),
                    last_update_id: 0,
                    finished: vec![],
                }),
            },
            ["offline", id] => Input::RobotDisconnected { robot: robot(id) },
            ["place", s, key, rest @ ..] => Input::PlaceOrder {
                shop: shop(s),
                idempotency_key: (*key).into(),
                request: request(rest, now),
                pin: "1234".into(),
                link_hash: None,
            },
            ["quote", s, rest @ ..] => Input::Quote { shop: shop(s), request: request(rest, now) },
            ["cancel", s, o] => Input::CancelOrder { shop: shop(s), order: order(o) },
            ["ready", s, o] => Input::MarkReady { shop: shop(s), order: order(o) },
            ["done", r, seq] => Input::Robot {
                robot: robot(r),
                msg: FromRobot::Event(RobotEvent::StepFinished {
                    seq: seq.parse().unwrap_or_else(|_| panic!("{seq:?} is not a step")),
                    outcome: StepOutcome::Done,
                }),
            },
            ["shift", r, "none"] => Input::SetShift { robot: robot(r), end: None },
            ["shift", r, t] => Input::SetShift { robot: robot(r), end: Some(offset(t, now)) },
            ["pause", r] => Input::PauseRobot { robot: robot(r) },
            ["resume", r] => Input::ResumeRobot { robot: robot(r) },
            ["tick"] => Input::Tick,
            ["show", o] => {
                let line = d.order(&order(o)).map_or_else(|| format!("{o} unknown"), order_line);
                text.push_str(&format!("{line}\n"));
                continue;
            }
            other => panic!("unknown command {other:?}"),
        };
        print_outputs(&d.handle(now, input), &mut text);
    }
    expect.assert_eq(&text);
}
