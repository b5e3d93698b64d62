//! What the fleet teaches the dispatcher about time.
//!
//! Two things are learned, both from what robots report and both kept across restarts (`Record::Learned`):
//!
//! - **How much longer drives take than the map says.** Each drive leg (from the release of the drive to a stop
//!   until the robot reports arriving) is compared with the router's free-flow time for it. The ratio, bounded,
//!   feeds a running mean per hour of the day (UTC), pulled towards the all-day mean while an hour has few legs,
//!   and that towards the prior of 1 (free flow) while the fleet has few legs at all. The planner multiplies
//!   every travel time by the factor of the hour it plans in: insertion, the improver, lateness checks and
//!   quotes all see the same slower-than-free-flow times.
//! - **How promises turn out.** For each delivered order, the time it took from placing to hand-over divided by
//!   the time the plan said at placing. Quotes scale the planned remaining time by the median and the
//!   [`LATEST_QUANTILE`] of the last [`OUTCOMES_KEPT`] ratios: the ETA the fleet meets half the time and the
//!   latest time it meets at least nine times in ten. Until [`MIN_OUTCOMES`] are known, the prior ratios are
//!   used. Plans also keep room by a quantile of these ratios (`Config::plan_quantile`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Hours in a day; one drive-time bucket each.
pub const HOURS: usize = 24;
/// Legs shorter than this (free flow, seconds) teach nothing: door-to-door noise swamps them.
pub const MIN_LEG_S: f64 = 30.0;
/// A leg's ratio counts within these bounds (a robot parked by a fault is not a slow sidewalk).
pub const RATIO_BOUNDS: (f64, f64) = (0.5, 4.0);
/// The drive factor never leaves these bounds.
pub const FACTOR_BOUNDS: (f64, f64) = (0.8, 3.0);
/// The drive factor before anything is learned: the map's free-flow times.
pub const PRIOR_FACTOR: f64 = 1.0;
/// How many legs the prior (for the all-day mean) and the all-day mean (for one hour) weigh.
pub const PRIOR_LEGS: f64 = 20.0;
/// An hour's mean follows roughly its last this many legs.
pub const WINDOW_LEGS: f64 = 200.0;
/// Promise outcomes kept (the most recent).
pub const OUTCOMES_KEPT: usize = 400;
/// Below this many outcomes, quotes use [`PRIOR_PROMISE`].
pub const MIN_OUTCOMES: usize = 30;
/// The ratios (actual over planned time to hand-over) quotes use before outcomes are known: the median and the
/// 90th percentile.
pub const PRIOR_PROMISE: (f64, f64) = (1.0, 1.25);
/// The quantile of past outcomes the latest time is quoted at. The 90th percentile of the orders before met
/// only 88-94% of the orders after on the lunch and main-job days (docs/benchmarks.md): the day gets busier
/// while the window looks back, so the promise that is to hold nine times in ten is quoted a little wider.
pub const LATEST_QUANTILE: f64 = 0.95;
/// Ratios of promise outcomes are kept within these bounds.
pub const OUTCOME_BOUNDS: (f64, f64) = (0.25, 5.0);

/// One hour's drive legs: how many were seen and the running mean of their ratios.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HourStat {
    pub legs: u32,
    pub mean_ratio: f64,
}

/// What was learned; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    /// By hour of the day (UTC); empty until the first leg.
    pub hours: Vec<HourStat>,
    /// Actual over planned time from placing to hand-over, oldest first.
    pub outcomes: VecDeque<f32>,
}

fn hour_of(t: Timestamp) -> usize {
    ((t.as_millis() / 3_600_000) % HOURS as u64) as usize
}

impl Learned {
    /// Learns from one drive leg that started at `at`, took `actual_s` and was planned at `free_s` (free flow).
    /// Returns whether it counted.
    pub fn observe_leg(&mut self, at: Timestamp, free_s: f64, actual_s: f64) -> bool {
        if !(free_s >= MIN_LEG_S && actual_s.is_finite() && actual_s >= 0.0) {
            return false;
        }
        if self.hours.len() != HOURS {
            self.hours = vec![HourStat::default(); HOURS];
        }
        let ratio = (actual_s / free_s).clamp(RATIO_BOUNDS.0, RATIO_BOUNDS.1);
        let h = &mut self.hours[hour_of(at)];
        h.legs = h.legs.saturating_add(1);
        let w = 1.0 / f64::from(h.legs).min(WINDOW_LEGS);
        h.mean_ratio += w * (ratio - h.mean_ratio);
        true
    }

    /// Drive legs learned from, over all hours.
    pub fn legs(&self) -> u64 {
        self.hours.iter().map(|h| u64::from(h.legs)).sum()
    }

    /// How much longer than free flow a drive starting at `at` is expected to take.
    pub fn drive_factor(&self, at: Timestamp) -> f64 {
        let weight = |h: &HourStat| f64::from(h.legs).min(WINDOW_LEGS);
        let (sum, n) = self.hours.iter().fold((0.0, 0.0), |(s, n), h| (s + weight(h) * h.mean_ratio, n + weight(h)));
        let all_day = (sum + PRIOR_LEGS * PRIOR_FACTOR) / (n + PRIOR_LEGS);
        let f = match self.hours.get(hour_of(at)) {
            Some(h) => (weight(h) * h.mean_ratio + PRIOR_LEGS * all_day) / (weight(h) + PRIOR_LEGS),
            None => all_day,
        };
        f.clamp(FACTOR_BOUNDS.0, FACTOR_BOUNDS.1)
    }

    /// Learns from one delivered order: `planned_s` from placing to the hand-over the plan promised, `actual_s`
    /// as it happened.
    pub fn observe_outcome(&mut self, planned_s: f64, actual_s: f64) -> bool {
        if !(planned_s >= 1.0 && actual_s.is_finite() && actual_s >= 0.0) {
            return false;
        }
        let ratio = (actual_s / planned_s).clamp(OUTCOME_BOUNDS.0, OUTCOME_BOUNDS.1);
        if self.outcomes.len() >= OUTCOMES_KEPT {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(ratio as f32);
        true
    }

    /// The ratio of actual to planned time to hand-over at quantile `q` (0 to 1); before enough deliveries,
    /// the prior's median below the 90th percentile and its 90th percentile from there.
    pub fn promise_ratio(&self, q: f64) -> f64 {
        if self.outcomes.len() < MIN_OUTCOMES {
            return if q < 0.9 { PRIOR_PROMISE.0 } else { PRIOR_PROMISE.1 };
        }
        let mut v: Vec<f32> = self.outcomes.iter().copied().collect();
        v.sort_by(f32::total_cmp);
        f64::from(v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize])
    }

    /// The median and the [`LATEST_QUANTILE`] ratio of actual to planned time to hand-over.
    pub fn promise_ratios(&self) -> (f64, f64) {
        if self.outcomes.len() < MIN_OUTCOMES {
            return PRIOR_PROMISE;
        }
        let mut v: Vec<f32> = self.outcomes.iter().copied().collect();
        v.sort_by(f32::total_cmp);
        let at = |q: f64| f64::from(v[((v.len() - 1) as f64 * q).round() as usize]);
        // The latest is never promised tighter than the ETA.
        let (p50, p90) = (at(0.5), at(LATEST_QUANTILE));
        (p50, p90.max(p50))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;

    #[test]
    fn the_drive_factor_starts_at_free_flow_and_follows_slow_legs_hour_by_hour() {
        let mut l = Learned::default();
        let noon = Timestamp::from_millis(12 * HOUR_MS);
        let night = Timestamp::from_millis(3 * HOUR_MS);
        assert_eq!(l.drive_factor(noon), PRIOR_FACTOR);
        // Short legs teach nothing.
        assert!(!l.observe_leg(noon, 10.0, 30.0));
        assert_eq!(l.legs(), 0);
        for _ in 0..400 {
            assert!(l.observe_leg(noon, 100.0, 150.0));
        }
        let f_noon = l.drive_factor(noon);
        assert!((f_noon - 1.5).abs() < 0.03, "noon legs take 1.5x free flow; learned {f_noon}");
        // An hour never seen leans on the all-day mean, not on the prior alone.
        let f_night = l.drive_factor(night);
        assert!(f_night > 1.3 && f_night < f_noon, "an unseen hour takes the all-day mean: {f_night}");
        // Night legs at free flow pull that hour back down without moving noon.
        for _ in 0..400 {
            l.observe_leg(night, 100.0, 100.0);
        }
        assert!((l.drive_factor(night) - 1.0).abs() < 0.1, "{}", l.drive_factor(night));
        assert!((l.drive_factor(noon) - 1.5).abs() < 0.1, "{}", l.drive_factor(noon));
    }

    #[test]
    fn wild_legs_are_bounded_and_the_factor_stays_in_its_bounds() {
        let mut l = Learned::default();
        let t = Timestamp::from_millis(0);
        for _ in 0..1_000 {
            l.observe_leg(t, 60.0, 60.0 * 100.0);
        }
        assert_eq!(l.drive_factor(t), RATIO_BOUNDS.1.min(FACTOR_BOUNDS.1));
        assert!(!l.observe_leg(t, 60.0, f64::NAN));
        assert!(!l.observe_leg(t, f64::NAN, 60.0));
    }

    #[test]
    fn promises_use_the_prior_until_enough_outcomes_then_their_quantiles() {
        let mut l = Learned::default();
        assert_eq!(l.promise_ratios(), PRIOR_PROMISE);
        assert_eq!(l.promise_ratio(0.5), PRIOR_PROMISE.0);
        assert_eq!(l.promise_ratio(0.9), PRIOR_PROMISE.1);
        // Ratios 0.90, 0.91, ... 1.89: the median about 1.4, the 90th percentile about 1.8, the latest's
        // quantile (95th) about 1.85.
        for k in 0..100 {
            l.observe_outcome(1000.0, 900.0 + 10.0 * f64::from(k));
        }
        let (p50, latest) = l.promise_ratios();
        assert!((p50 - 1.4).abs() < 0.02, "{p50}");
        assert!((latest - 1.85).abs() < 0.02, "{latest}");
        assert!((l.promise_ratio(0.9) - 1.8).abs() < 0.02, "{}", l.promise_ratio(0.9));
        assert!((l.promise_ratio(0.0) - 0.9).abs() < 1e-6);
        assert!((l.promise_ratio(1.0) - 1.89).abs() < 1e-6);
        // Only the most recent are kept: a fleet that got faster is quoted faster.
        for _ in 0..OUTCOMES_KEPT {
            l.observe_outcome(1000.0, 1000.0);
        }
        assert_eq!(l.outcomes.len(), OUTCOMES_KEPT);
        assert_eq!(l.promise_ratios(), (1.0, 1.0));
    }
}
