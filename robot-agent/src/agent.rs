//! The agent state machine. It owns the robot's copy of its mission (released base plus horizon), runs one step
//! at a time through platform commands, and never runs a step twice: finished steps are remembered by seq, and
//! a mission update that still lists them (because it crossed the robot's report) does not bring them back.

use std::collections::VecDeque;

use fleet_core::mission::{
    ErrorLevel, FromRobot, Hello, InstantAction, MissionUpdate, RobotEvent, RobotReport, Step, StepAction, StepOutcome,
    ToRobot, pin_hash,
};
use fleet_core::robot::RobotModel;
use fleet_core::{LatLon, NodeId, OrderId, Timestamp};

/// How long a robot waits at the door for the right PIN before it gives up and brings the parcel back.
pub const HANDOVER_TIMEOUT_S: f64 = 300.0;
/// Wrong PINs accepted before the hand-over fails.
pub const MAX_PIN_ATTEMPTS: u32 = 3;
/// Finished steps remembered for the hello after a reconnect.
const FINISHED_KEPT: usize = 64;

/// Where the body is, as the platform measures it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Telemetry {
    pub pos: LatLon,
    pub heading_deg: f64,
    pub speed_mps: f64,
    pub battery_pct: f64,
}

/// What the agent asks of its platform.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformCommand {
    /// Drive along `path` (one point per route node) at up to `speed_mps`, keeping the body within
    /// `corridor_m[k]` of the centre line of segment k (empty: no corridor given).
    Drive {
        path: Vec<LatLon>,
        speed_mps: f64,
        corridor_m: Vec<f32>,
    },
    /// Open a compartment for the shop to load (or take back) a parcel; reports `ServiceDone` when closed.
    Load {
        order: OrderId,
        service_s: f64,
    },
    /// Open a compartment for the customer; reports `ServiceDone` when closed.
    Unload {
        order: OrderId,
        service_s: f64,
    },
    /// Plug in and charge; reports `ServiceDone` once the battery holds `until_pct`.
    Charge {
        until_pct: f64,
    },
    /// Stop moving and abandon the current command.
    Stop,
    Pause,
    Resume,
}

/// What the platform tells the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformEvent {
    /// Passed point `index` of the current drive path.
    Passed {
        index: usize,
    },
    Arrived,
    ServiceDone,
    /// Cannot get from point `index` of the current path to the next.
    Blocked {
        index: usize,
    },
    Fault {
        fatal: bool,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The session to the dispatcher is (again) up.
    Connected,
    FromDispatcher(ToRobot),
    Platform(PlatformEvent),
    /// Someone typed a PIN on the robot's keypad.
    PinEntered(String),
    /// Periodic: report state.
    Tick(Telemetry),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(FromRobot),
    Platform(PlatformCommand),
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Driving {
        nodes: Vec<NodeId>,
    },
    Loading,
    Charging,
    /// Waiting at the door for the customer's PIN.
    AwaitingPin {
        order: OrderId,
        pin_hash: String,
        attempts: u32,
        until: Timestamp,
        service_s: f64,
    },
    Unloading,
}

/// The agent. See the module docs.
#[derive(Debug, Clone)]
pub struct Agent {
    model: RobotModel,
    mission_id: String,
    update_id: u64,
    /// Steps not yet finished, in seq order: released base first, then horizon.
    steps: Vec<Step>,
    /// The step being executed (always `steps[0]`) and its phase.
    current: Option<(u32, Phase)>,
    finished: VecDeque<(u32, StepOutcome)>,
    /// Highest seq finished in this mission: anything at or below it never runs again.
    finished_through: u32,
    paused: bool,
    last_node: Option<NodeId>,
    last_telemetry: Option<Telemetry>,
}

impl Agent {
    pub fn new(model: RobotModel) -> Self {
        Self {
            model,
            mission_id: String::new(),
            update_id: 0,
            steps: Vec::new(),
            current: None,
            finished: VecDeque::new(),
            finished_through: 0,
            paused: false,
            last_node: None,
            last_telemetry: None,
        }
    }

    pub fn mission_id(&self) -> &str {
        &self.mission_id
    }
    pub fn update_id(&self) -> u64 {
        self.update_id
    }
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
    pub fn is_idle(&self) -> bool {
        self.current.is_none()
    }
    /// The order whose parcel the robot is waiting to hand over, if any.
    pub fn awaiting_pin(&self) -> Option<&OrderId> {
        match &self.current {
            Some((_, Phase::AwaitingPin { order, .. })) => Some(order),
            _ => None,
        }
    }

    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Connected => out.push(Output::Send(FromRobot::Hello(Hello {
                model: self.model,
                mission_id: self.mission_id.clone(),
                last_update_id: self.update_id,
                finished: self.finished.iter().cloned().collect(),
            }))),
            Input::FromDispatcher(ToRobot::Mission(m)) => self.on_mission(m, &mut out),
            Input::FromDispatcher(ToRobot::Instant(InstantAction::Pause)) => {
                if !self.paused {
                    self.paused = true;
                    out.push(Output::Platform(PlatformCommand::Pause));
                }
            }
            Input::FromDispatcher(ToRobot::Instant(InstantAction::Resume)) => {
                if self.paused {
                    self.paused = false;
                    out.push(Output::Platform(PlatformCommand::Resume));
                }
            }
            Input::Platform(ev) => self.on_platform(ev, &mut out),
            Input::PinEntered(pin) => self.on_pin(&pin, &mut out),
            Input::Tick(t) => {
                self.last_telemetry = Some(t);
                if let Some((seq, Phase::AwaitingPin { until, .. })) = &self.current
                    && now >= *until
                {
                    let seq = *seq;
                    self.finish(seq, StepOutcome::HandoverFailed("no valid PIN before the time-out".into()), &mut out);
                }
                out.push(Output::Send(FromRobot::State(RobotReport {
                    pos: t.pos,
                    heading_deg: t.heading_deg,
                    speed_mps: t.speed_mps,
                    battery_pct: t.battery_pct,
                    last_node: self.last_node,
                    update_id: self.update_id,
                    driving: matches!(self.current, Some((_, Phase::Driving { .. }))),
                    paused: self.paused,
                })));
            }
        }
        self.advance(now, &mut out);
        out
    }

    fn on_mission(&mut self, m: MissionUpdate, out: &mut Vec<Output>) {
        if m.mission_id != self.mission_id {
            // A different mission replaces ours entirely.
            if self.current.take().is_some() {
                out.push(Output::Platform(PlatformCommand::Stop));
            }
            self.mission_id = m.mission_id;
            self.finished.clear();
            self.finished_through = 0;
        } else if m.update_id <= self.update_id {
            // Stale or repeated: already applied. Acknowledge again so the dispatcher stops waiting.
            out.push(Output::Send(FromRobot::Ack { update_id: self.update_id }));
            return;
        }
        self.update_id = m.update_id;
        let through = self.finished_through;
        self.steps = m.steps.into_iter().filter(|s| s.seq > through).collect();
        if let Some((seq, _)) = &self.current
            && !self.steps.first().is_some_and(|s| s.seq == *seq && s.released)
        {
            // The step we run is no longer first in the base: the dispatcher withdrew it.
            self.current = None;
            out.push(Output::Platform(PlatformCommand::Stop));
        }
        out.push(Output::Send(FromRobot::Ack { update_id: self.update_id }));
    }

    fn on_platform(&mut self, ev: PlatformEvent, out: &mut Vec<Output>) {
        let Some((seq, phase)) = self.current.clone() else {
            return;
        };
        match (ev, phase) {
            (PlatformEvent::Passed { index }, Phase::Driving { nodes }) => {
                if let Some(&n) = nodes.get(index) {
                    self.last_node = Some(n);
                }
            }
            (PlatformEvent::Arrived, Phase::Driving { nodes }) => {
                self.last_node = nodes.last().copied().or(self.last_node);
                self.finish(seq, StepOutcome::Done, out);
            }
            (PlatformEvent::Blocked { index }, Phase::Driving { nodes }) => {
                if let (Some(&from), Some(&to)) = (nodes.get(index), nodes.get(index + 1)) {
                    out.push(Output::Send(FromRobot::Event(RobotEvent::Blocked { from, to })));
                }
            }
            (PlatformEvent::ServiceDone, Phase::Loading | Phase::Unloading | Phase::Charging) => {
                self.finish(seq, StepOutcome::Done, out);
            }
            (PlatformEvent::Fault { fatal, detail }, _) => {
                out.push(Output::Send(FromRobot::Event(RobotEvent::Error {
                    level: if fatal { ErrorLevel::Fatal } else { ErrorLevel::Warning },
                    kind: "platform".into(),
                    detail,
                })));
            }
            // Events that do not fit the phase (a late event from an abandoned command) are ignored.
            _ => {}
        }
    }

    fn on_pin(&mut self, pin: &str, out: &mut Vec<Output>) {
        let Some((seq, Phase::AwaitingPin { order, pin_hash: want, attempts, until, service_s })) =
            self.current.clone()
        else {
            return;
        };
        if pin_hash(&order, pin) == want {
            self.current = Some((seq, Phase::Unloading));
            out.push(Output::Platform(PlatformCommand::Unload { order, service_s }));
        } else if attempts + 1 >= MAX_PIN_ATTEMPTS {
            self.finish(seq, StepOutcome::HandoverFailed(format!("{MAX_PIN_ATTEMPTS} wrong PINs")), out);
        } else {
            self.current =
                Some((seq, Phase::AwaitingPin { order, pin_hash: want, attempts: attempts + 1, until, service_s }));
        }
    }

    fn finish(&mut self, seq: u32, outcome: StepOutcome, out: &mut Vec<Output>) {
        self.current = None;
        self.steps.retain(|s| s.seq != seq);
        self.finished_through = self.finished_through.max(seq);
        self.finished.push_back((seq, outcome.clone()));
        while self.finished.len() > FINISHED_KEPT {
            self.finished.pop_front();
        }
        out.push(Output::Send(FromRobot::Event(RobotEvent::StepFinished { seq, outcome })));
    }

    /// Starts the next released step when idle and not paused.
    fn advance(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        if self.current.is_some() || self.paused {
            return;
        }
        let Some(step) = self.steps.first().filter(|s| s.released).cloned() else {
            return;
        };
        let phase = match step.action {
            StepAction::Drive { nodes, path, speed_mps, corridor_m, .. } => {
                let speed_mps = speed_mps.min(self.model.max_speed_mps);
                out.push(Output::Platform(PlatformCommand::Drive { path, speed_mps, corridor_m }));
                Phase::Driving { nodes }
            }
            StepAction::Pickup { order, service_s, .. } => {
                out.push(Output::Platform(PlatformCommand::Load { order, service_s }));
                Phase::Loading
            }
            StepAction::Return { order, service_s } => {
                out.push(Output::Platform(PlatformCommand::Unload { order, service_s }));
                Phase::Unloading
            }
            StepAction::Charge { until_pct } => {
                out.push(Output::Platform(PlatformCommand::Charge { until_pct }));
                Phase::Charging
            }
            StepAction::Dropoff { order, pin_hash, service_s } => {
                Phase::AwaitingPin { order, pin_hash, attempts: 0, until: now.plus_secs(HANDOVER_TIMEOUT_S), service_s }
            }
        };
        self.current = Some((step.seq, phase));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).expect("valid")
    }

    fn mission(update_id: u64, steps: Vec<Step>) -> Input {
        Input::FromDispatcher(ToRobot::Mission(MissionUpdate { mission_id: "m-r1".into(), update_id, steps }))
    }

    fn drive(seq: u32) -> Step {
        Step {
            seq,
            released: true,
            action: StepAction::Drive {
                nodes: vec![NodeId(1), NodeId(2)],
                path: vec![p(43.73, 7.42), p(43.731, 7.42)],
                length_m: 111.0,
                speed_mps: 1.6,
                corridor_m: vec![1.0],
            },
        }
    }

    fn dropoff(seq: u32, released: bool) -> Step {
        let order = OrderId::parse("ord-1").expect("valid");
        Step {
            seq,
            released,
            action: StepAction::Dropoff { pin_hash: pin_hash(&order, "1234"), order, service_s: 30.0 },
        }
    }

    fn finished(out: &[Output]) -> Vec<(u32, StepOutcome)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(FromRobot::Event(RobotEvent::StepFinished { seq, outcome })) => {
                    Some((*seq, outcome.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn runs_the_base_and_waits_at_the_horizon() {
        let mut a = Agent::new(RobotModel::default());
        let t = Timestamp(0);
        let out = a.handle(t, mission(1, vec![drive(1), dropoff(2, false)]));
        assert!(out.iter().any(|o| matches!(o, Output::Platform(PlatformCommand::Drive { .. }))));
        let out = a.handle(t, Input::Platform(PlatformEvent::Arrived));
        assert_eq!(finished(&out), vec![(1, StepOutcome::Done)]);
        // The drop-off is only on the horizon: nothing starts.
        assert!(a.is_idle());
        a.handle(t, mission(2, vec![dropoff(2, true)]));
        assert_eq!(a.awaiting_pin().map(|o| o.as_str()), Some("ord-1"));
        a.handle(t, Input::PinEntered("9999".into()));
        let out = a.handle(t, Input::PinEntered("1234".into()));
        assert!(out.iter().any(|o| matches!(o, Output::Platform(PlatformCommand::Unload { .. }))));
        let out = a.handle(t, Input::Platform(PlatformEvent::ServiceDone));
        assert_eq!(finished(&out), vec![(2, StepOutcome::Done)]);
    }

    #[test]
    fn a_stale_or_crossing_update_never_repeats_a_step() {
        let mut a = Agent::new(RobotModel::default());
        let t = Timestamp(0);
        a.handle(t, mission(1, vec![drive(1), dropoff(2, true)]));
        a.handle(t, Input::Platform(PlatformEvent::Arrived));
        // Re-sent update 1: ignored, acknowledged.
        let out = a.handle(t, mission(1, vec![drive(1), dropoff(2, true)]));
        assert!(out.contains(&Output::Send(FromRobot::Ack { update_id: 1 })));
        assert!(!out.iter().any(|o| matches!(o, Output::Platform(PlatformCommand::Drive { .. }))));
        // Update 2 crossed our report and still lists step 1: it must not run again.
        let out = a.handle(t, mission(2, vec![drive(1), dropoff(2, true)]));
        assert!(!out.iter().any(|o| matches!(o, Output::Platform(PlatformCommand::Drive { .. }))));
        assert_eq!(a.awaiting_pin().map(|o| o.as_str()), Some("ord-1"));
        // The hello after a reconnect lists what finished.
        let out = a.handle(t, Input::Connected);
        match &out[0] {
            Output::Send(FromRobot::Hello(h)) => {
                assert_eq!(h.finished, vec![(1, StepOutcome::Done)])
            }
            o => panic!("expected a hello, got {o:?}"),
        }
    }

    #[test]
    fn wrong_pins_and_time_out_fail_the_handover() {
        let tel = Telemetry { pos: p(43.73, 7.42), heading_deg: 0.0, speed_mps: 0.0, battery_pct: 90.0 };
        let mut a = Agent::new(RobotModel::default());
        a.handle(Timestamp(0), mission(1, vec![dropoff(1, true)]));
        a.handle(Timestamp(0), Input::PinEntered("0000".into()));
        a.handle(Timestamp(0), Input::PinEntered("0001".into()));
        let out = a.handle(Timestamp(0), Input::PinEntered("0002".into()));
        assert!(matches!(finished(&out)[..], [(1, StepOutcome::HandoverFailed(_))]));

        let mut b = Agent::new(RobotModel::default());
        b.handle(Timestamp(0), mission(1, vec![dropoff(1, true)]));
        assert!(finished(&b.handle(Timestamp(299_000), Input::Tick(tel))).is_empty());
        let out = b.handle(Timestamp(300_000), Input::Tick(tel));
        assert!(matches!(finished(&out)[..], [(1, StepOutcome::HandoverFailed(_))]));
    }

    #[test]
    fn pause_holds_the_next_step() {
        let mut a = Agent::new(RobotModel::default());
        let t = Timestamp(0);
        a.handle(t, Input::FromDispatcher(ToRobot::Instant(InstantAction::Pause)));
        let out = a.handle(t, mission(1, vec![drive(1)]));
        assert!(!out.iter().any(|o| matches!(o, Output::Platform(PlatformCommand::Drive { .. }))));
        let out = a.handle(t, Input::FromDispatcher(ToRobot::Instant(InstantAction::Resume)));
        assert!(out.iter().any(|o| matches!(o, Output::Platform(PlatformCommand::Drive { .. }))));
    }
}
