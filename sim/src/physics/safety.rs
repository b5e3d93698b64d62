//! What the operator needs to judge a robot's manners among people: who was at fault in each contact
//! ([`Fault`], [`Contact`]) and the social-navigation figures of the run ([`SocialNav`]).
//!
//! Fault: at the step a contact starts, each robot in it is judged by its own velocity along the line from its
//! centre to the other's. Moving towards the other faster than [`MOVING_MPS`] is **robot at fault** (it moved
//! into the other: a sidewalk robot must yield to everyone). Slower than that in every direction is **struck
//! while stopped**. Moving, but not towards the other (the other came from the side or from behind) is **other
//! at fault**. A robot turning on the spot whose corners sweep faster than [`MOVING_MPS`] and faster than the
//! other comes at it swung into the other: **robot at fault**. A robot-robot contact judges both robots; a wall or obstacle never
//! moves, so a robot touching one while moving is at fault.
//!
//! Social navigation (definitions as in the report):
//! - *minimum distance to a person*: the least gap between a robot's body (its footprint rectangle) and a
//!   person's body (a circle of 0.3 m), over every step; 0 when they touched.
//! - *personal-space intrusions*: times a person came within [`PERSONAL_SPACE_M`] of a robot's body (counted
//!   when the pair enters; it leaves 5 cm further out), and the person-robot seconds spent inside.
//! - *time-to-collision*: for a robot and a person within [`LOOK_M`] whose gap is shrinking, the gap divided by
//!   the speed at which it shrinks (both keep their velocities); the least seen, and the times a pair fell under
//!   [`TTC_ALERT_S`].
//! - *time stopped*: robot-seconds spent slower than [`MOVING_MPS`] while the robot had a drive to make, beside
//!   the robot-seconds it had one.
//! - *path irregularity*: the heading change summed over every step while moving, in radians, per metre driven
//!   (a straight drive scores almost 0: joining the keep-right lane is a quarter radian; weaving around people
//!   raises it).

use std::collections::BTreeSet;

use serde::Serialize;

use super::norm;

/// A robot whose body stands further than this beyond its way's edge is off its way (steering tolerance).
pub const OFF_WAY_M: f32 = 0.1;
/// Slower than this a robot is stopped; faster towards the other at contact, it is at fault.
pub const MOVING_MPS: f32 = 0.05;
/// A person closer to a robot's body than this is inside its personal space (the "intimate" zone of proxemics).
pub const PERSONAL_SPACE_M: f32 = 0.45;
/// Time-to-collision is watched for pairs closer than this.
pub const LOOK_M: f32 = 3.0;
/// A time-to-collision under this is counted.
pub const TTC_ALERT_S: f32 = 1.0;

/// A robot's share of the blame for one contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    RobotAtFault,
    StruckWhileStopped,
    OtherAtFault,
}

impl Fault {
    /// Judges a robot at contact start from its velocity `v`, the unit vector `towards` the other, the speed its
    /// corners sweep at when it turns (`swing_mps`: yaw rate times the half diagonal) and the speed the other
    /// comes at it (`other_closing_mps`).
    pub fn judge(v: [f32; 2], towards: [f32; 2], swing_mps: f32, other_closing_mps: f32) -> Self {
        let speed = norm(v);
        let closing = v[0] * towards[0] + v[1] * towards[1];
        if speed < MOVING_MPS && swing_mps >= MOVING_MPS && swing_mps > other_closing_mps {
            Fault::RobotAtFault
        } else if speed < MOVING_MPS {
            Fault::StruckWhileStopped
        } else if closing > MOVING_MPS {
            Fault::RobotAtFault
        } else {
            Fault::OtherAtFault
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Fault::RobotAtFault => "robot at fault",
            Fault::StruckWhileStopped => "struck while stopped",
            Fault::OtherAtFault => "other at fault",
        }
    }
}

/// Contacts by fault, one per robot in a contact (a robot-robot contact counts for both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Faults {
    pub robot_at_fault: u64,
    pub struck_while_stopped: u64,
    pub other_at_fault: u64,
    /// Of `robot_at_fault`, the contacts with a person.
    pub robot_at_fault_pedestrian: u64,
    /// Of `robot_at_fault`, the contacts with another robot.
    pub robot_at_fault_robot: u64,
}

impl Faults {
    pub fn count(&mut self, fault: Fault, other: &Other) {
        match fault {
            Fault::RobotAtFault => {
                self.robot_at_fault += 1;
                match other {
                    Other::Pedestrian(_) => self.robot_at_fault_pedestrian += 1,
                    Other::Robot(_) => self.robot_at_fault_robot += 1,
                    Other::Static => {}
                }
            }
            Fault::StruckWhileStopped => self.struck_while_stopped += 1,
            Fault::OtherAtFault => self.other_at_fault += 1,
        }
    }
}

/// What a robot touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Other {
    Pedestrian(usize),
    Robot(usize),
    Static,
}

/// One robot's side of one contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    /// Seconds after the start.
    pub at_s: f64,
    /// The robot's index.
    pub robot: usize,
    pub other: Other,
    pub fault: Fault,
    /// The robot's speed, and its speed towards the other, at contact (m/s).
    pub robot_speed_mps: f64,
    pub closing_mps: f64,
    /// The other's speed at contact (m/s; 0 for a wall).
    pub other_speed_mps: f64,
    /// Where the robot stood, in the world's frame (metres east and north of its origin).
    pub xy: [f64; 2],
}

/// The social-navigation figures of a run; see the module docs for the definitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SocialNav {
    /// `None` until a person came within [`LOOK_M`] of a robot.
    pub min_person_distance_m: Option<f64>,
    pub intrusions: u64,
    pub intrusion_s: f64,
    /// `None` until a pair within [`LOOK_M`] closed in.
    pub min_ttc_s: Option<f64>,
    pub ttc_under_1s: u64,
    pub stopped_s: f64,
    pub driving_s: f64,
    /// Heading change summed while moving, radians (divided by the distance in the report).
    pub heading_change_rad: f64,
    /// Robot-seconds of driving with the body more than [`OFF_WAY_M`] beyond its way's edge (the corridor its
    /// drive carries), and the furthest beyond it any robot was, metres.
    pub off_way_s: f64,
    pub off_way_max_m: f64,
}

/// Robot-person pairs inside personal space and under the time-to-collision alert, at the last step (`was`)
/// and this one (`now`): a pair counts when it is in `now` and was not in `was`, so each entry counts once and
/// a pair that went out of sight counts again when it comes back.
#[derive(Debug, Default)]
pub(super) struct Episodes {
    was: Pairs,
    now: Pairs,
}

#[derive(Debug, Default)]
struct Pairs {
    inside: BTreeSet<(usize, usize)>,
    ttc: BTreeSet<(usize, usize)>,
}

impl Episodes {
    /// Ends a step: what was seen now is what was seen last.
    pub(super) fn end_step(&mut self) {
        std::mem::swap(&mut self.was, &mut self.now);
        self.now.inside.clear();
        self.now.ttc.clear();
    }
}

/// Gap between a robot's footprint (a rectangle of half extents `half` at `c`, facing the unit vector
/// `facing`) and a circle of radius `r` at `p`; 0 when they overlap. Also the unit vector from the nearest
/// point of the rectangle towards `p` (from `c` when `p` is inside).
pub fn footprint_gap(c: [f32; 2], facing: [f32; 2], half: [f32; 2], p: [f32; 2], r: f32) -> (f32, [f32; 2]) {
    let (co, s) = (facing[0], facing[1]);
    let d = [p[0] - c[0], p[1] - c[1]];
    // In the robot's frame.
    let local = [d[0] * co + d[1] * s, -d[0] * s + d[1] * co];
    let near = [local[0].clamp(-half[0], half[0]), local[1].clamp(-half[1], half[1])];
    let off = [local[0] - near[0], local[1] - near[1]];
    let out = norm(off);
    let (dir_local, gap) = if out > 1e-6 {
        ([off[0] / out, off[1] / out], (out - r).max(0.0))
    } else {
        let n = norm(local).max(1e-6);
        ([local[0] / n, local[1] / n], 0.0)
    };
    let dir = [dir_local[0] * co - dir_local[1] * s, dir_local[0] * s + dir_local[1] * co];
    (gap, dir)
}

impl SocialNav {
    /// Accounts one robot-person pair seen at one step of `dt` seconds: the robot's index `i` and velocity
    /// `v_robot`, the person's index `j` and velocity `v_person`, their gap and the unit vector from the robot
    /// towards the person.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pair(
        &mut self,
        episodes: &mut Episodes,
        i: usize,
        j: usize,
        gap: f32,
        towards: [f32; 2],
        v_robot: [f32; 2],
        v_person: [f32; 2],
        dt: f32,
    ) {
        if gap >= LOOK_M {
            return;
        }
        let (was, now) = (&episodes.was, &mut episodes.now);
        let gap64 = f64::from(gap);
        self.min_person_distance_m = Some(self.min_person_distance_m.map_or(gap64, |m| m.min(gap64)));
        if gap < PERSONAL_SPACE_M {
            self.intrusion_s += f64::from(dt);
            now.inside.insert((i, j));
            if !was.inside.contains(&(i, j)) {
                self.intrusions += 1;
            }
        } else if gap <= PERSONAL_SPACE_M + 0.05 && was.inside.contains(&(i, j)) {
            // Not out yet: leaving takes 5 cm more, so a person standing on the edge is one intrusion.
            now.inside.insert((i, j));
        }
        // The speed at which the gap shrinks.
        let closing = (v_robot[0] - v_person[0]) * towards[0] + (v_robot[1] - v_person[1]) * towards[1];
        if closing > 1e-3 && gap > 0.0 {
            let ttc = gap / closing;
            let t64 = f64::from(ttc);
            self.min_ttc_s = Some(self.min_ttc_s.map_or(t64, |m| m.min(t64)));
            if ttc < TTC_ALERT_S {
                now.ttc.insert((i, j));
                if !was.ttc.contains(&(i, j)) {
                    self.ttc_under_1s += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_by_the_robots_own_motion_towards_the_other() {
        // Driving east into something to the east.
        assert_eq!(Fault::judge([1.0, 0.0], [1.0, 0.0], 0.0, 0.0), Fault::RobotAtFault);
        // Standing still (a little drift is still standing).
        assert_eq!(Fault::judge([0.01, 0.02], [1.0, 0.0], 0.0, 0.0), Fault::StruckWhileStopped);
        // Driving east, struck from the north side or from behind.
        assert_eq!(Fault::judge([1.0, 0.0], [0.0, 1.0], 0.0, 0.0), Fault::OtherAtFault);
        assert_eq!(Fault::judge([1.0, 0.0], [-1.0, 0.0], 0.0, 0.0), Fault::OtherAtFault);
        // Driving at an angle towards it.
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert_eq!(Fault::judge([1.0, 0.0], [h, h], 0.0, 0.0), Fault::RobotAtFault);
        // Turning on the spot, corners sweeping at 0.2 m/s: it swung into the other, unless the other came at it
        // faster.
        assert_eq!(Fault::judge([0.0, 0.0], [1.0, 0.0], 0.2, 0.1), Fault::RobotAtFault);
        assert_eq!(Fault::judge([0.0, 0.0], [1.0, 0.0], 0.2, 0.8), Fault::StruckWhileStopped);
    }

    #[test]
    fn footprint_gap_measures_from_the_rectangle_not_the_centre() {
        let half = [0.35, 0.275];
        // In front along the heading (east): 1.0 - 0.35 - 0.3.
        let (gap, dir) = footprint_gap([0.0, 0.0], [1.0, 0.0], half, [1.0, 0.0], 0.3);
        assert!((gap - 0.35).abs() < 1e-5 && (dir[0] - 1.0).abs() < 1e-5, "{gap} {dir:?}");
        // The same point, robot turned to face north: now beside it, 1.0 - 0.275 - 0.3.
        let (gap, _) = footprint_gap([0.0, 0.0], [0.0, 1.0], half, [1.0, 0.0], 0.3);
        assert!((gap - 0.425).abs() < 1e-5, "{gap}");
        // Off a corner: the distance to the corner.
        let (gap, _) = footprint_gap([0.0, 0.0], [1.0, 0.0], half, [0.35 + 0.6, 0.275 + 0.8], 0.3);
        assert!((gap - 0.7).abs() < 1e-5, "{gap}");
        // Overlapping.
        assert_eq!(footprint_gap([0.0, 0.0], [1.0, 0.0], half, [0.5, 0.0], 0.3).0, 0.0);
    }

    #[test]
    fn counts_each_intrusion_and_each_ttc_alert_once_per_entry() {
        let (mut s, mut e) = (SocialNav::default(), Episodes::default());
        let dt = 0.05;
        // A person walks towards a stopped robot and stops 0.3 m away, then leaves.
        for gap in [2.0, 1.0, 0.6, 0.44, 0.3, 0.3, 0.3, 0.47, 0.6, 2.0, 0.4, 3.5] {
            s.pair(&mut e, 0, 7, gap, [1.0, 0.0], [0.0, 0.0], [-1.0, 0.0], dt);
            e.end_step();
        }
        // Inside at 0.44, 0.3 x3 and again at 0.4 (after leaving past 0.50 at 0.6): two entries.
        assert_eq!(s.intrusions, 2);
        assert!((s.intrusion_s - 0.25).abs() < 1e-6, "{}", s.intrusion_s);
        assert_eq!(s.min_person_distance_m, Some(f64::from(0.3f32)));
        // Closing at 1 m/s: under 1 s from 0.6 m down and back to 0.6 m, out at 2.0 m, under again at 0.4 m.
        assert_eq!(s.ttc_under_1s, 2);
        assert!(s.min_ttc_s.is_some_and(|t| (t - 0.3).abs() < 1e-6));
        // A pair not seen for a step (out of sight) that comes back inside is a new intrusion.
        let (mut s, mut e) = (SocialNav::default(), Episodes::default());
        for seen in [true, false, true] {
            if seen {
                s.pair(&mut e, 1, 2, 0.2, [1.0, 0.0], [0.0, 0.0], [0.0, 0.0], dt);
            }
            e.end_step();
        }
        assert_eq!(s.intrusions, 2);
        // Moving apart: no time-to-collision.
        let (mut s, mut e) = (SocialNav::default(), Episodes::default());
        s.pair(&mut e, 0, 1, 0.5, [1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], dt);
        assert_eq!((s.min_ttc_s, s.ttc_under_1s), (None, 0));
    }
}
