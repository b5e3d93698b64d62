//! Report assembly at the end of a run: every order's outcome from the dispatcher, the delivery-time
//! distribution, per-robot distance, battery and utilisation from the physics world, the safety and network
//! counts, the applied faults, and the chart series (orders per bucket, the map's edges, the shops) that go
//! with the trace into `report.html`.

use std::collections::BTreeMap;

use fleet_core::map::Profile;
use fleet_core::order::OrderStatus;
use fleet_core::{NodeId, Timestamp};

use super::lockstep::{Fleet, Ran};
use super::setup::Shops;
use super::{Outcome, SERIES_BUCKET_S};
use crate::physics::Other;
use crate::report::{AppliedFault, ContactOutcome, CrowdReport, OrderOutcome, RobotOutcome, Series, TrafficReport};
use crate::world::demand::Demand;
use crate::{Report, Scenario};

/// What a finished run hands to [`assemble`].
pub(super) struct Inputs<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) start: Timestamp,
    pub(super) map_nodes: usize,
    /// Building walls put into the physics world.
    pub(super) walls: usize,
    pub(super) shops: &'a Shops,
    pub(super) fleet: &'a Fleet,
    pub(super) demand: Demand,
    pub(super) applied: Vec<AppliedFault>,
    pub(super) ran: Ran,
}

/// The report and the trace of a finished run.
pub(super) fn assemble(inputs: Inputs<'_>) -> Outcome {
    let Inputs { scenario, start, map_nodes, walls, shops, fleet, demand, applied, ran } = inputs;
    let Fleet { host, net, robots, phys } = fleet;
    let Ran { ticks, now, busy_ms, improvements, improvement_saved_s, mut trace } = ran;
    let dt = scenario.dt_ms;
    let stats = phys.stats();
    let orders_requested = demand.requested();
    let (refused, promised, offers_taken) = demand.into_outcome();
    let mut report = Report {
        scenario: scenario.clone(),
        map_nodes,
        building_walls: walls,
        orders_requested,
        refused,
        offers_taken,
        placed: 0,
        delivered: 0,
        on_time: 0,
        late: 0,
        failed: 0,
        failed_reasons: BTreeMap::new(),
        returned: 0,
        open_at_end: 0,
        drain_min: (ticks.saturating_sub(scenario.duration_s * 1000 / dt) * dt) as f64 / 60_000.0,
        by_quoted_eta: 0,
        by_quoted_latest: 0,
        quote_error_min_p50: 0.0,
        quote_error_min_p90: 0.0,
        delayed_notices: 0,
        late_announced_in_time: 0,
        learned_travel_factor: 1.0,
        learned_legs: 0,
        idle_moves: 0,
        learned_promise_p50: 0.0,
        learned_promise_p90: 0.0,
        delivery_min_mean: 0.0,
        delivery_min_p50: 0.0,
        delivery_min_p90: 0.0,
        delivery_min_p95: 0.0,
        delivery_min_max: 0.0,
        distance_km: phys.distance_m() / 1000.0,
        energy_used_pct: phys.energy_used_pct(),
        energy_used_wh: phys.energy_used_pct() / 100.0 * scenario.model.battery_wh,
        collisions: stats.collisions,
        near_misses: stats.near_misses,
        blocked_events: stats.blocked_events,
        reroutes: net.reroutes,
        sidesteps: stats.sidesteps,
        contact_faults: stats.faults,
        social: stats.social,
        crowd: {
            let c = phys.crowd_stats();
            let [attentive, distracted, impassive] = phys.crowd_attention();
            CrowdReport {
                mean_out: c.out_s / c.stepped_s.max(1e-9),
                mean_in_physics: c.in_world_s / c.stepped_s.max(1e-9),
                peak_out: c.peak_out,
                trips: c.trips,
                attentive,
                distracted,
                impassive,
            }
        },
        traffic: {
            let (narrow_ways, crossings, t) = host.dispatcher().traffic_stats();
            let (signalised, sig) = phys.signal_stats();
            TrafficReport {
                signalised,
                signal_crossed: sig.crossed,
                signal_entered_on_red: sig.entered_on_red,
                signal_waits: sig.waits,
                signal_wait_s: (sig.wait_s * 10.0).round() / 10.0,
                enabled: scenario.dispatch.traffic.enabled,
                narrow_ways,
                crossings,
                granted_at_once: t.granted_at_once,
                waited: t.waited,
                wait_s_total: t.wait_s_total,
                wait_s_max: t.wait_s_max,
                deadlocks: t.deadlocks,
                reroutes: t.reroutes,
            }
        },
        speed_zones: phys.zones(),
        stopping_distance_m: {
            let (v, cfg) = (scenario.model.max_speed_mps, phys.config());
            let d = v / f64::from(cfg.hz) + v * v / (2.0 * 2.0 * f64::from(cfg.brake_mps2));
            (d * 1000.0).round() / 1000.0
        },
        stopped_share: stats.social.stopped_s / stats.social.driving_s.max(1e-9),
        path_irregularity_rad_per_m: stats.social.heading_change_rad / phys.distance_m().max(1e-9),
        contacts: Vec::new(),
        deliveries_per_robot_hour: 0.0,
        utilisation_mean: 0.0,
        improvements,
        improvement_saved_min: improvement_saved_s / 60.0,
        faults: applied,
        lost_messages: net.lost_messages,
        alerts: net.alerts,
        ticks,
        physics_steps: stats.steps,
        robots: Vec::new(),
        orders: Vec::new(),
    };
    let mut minutes = Vec::new();
    // Hand-over minus the quoted ETA, minutes.
    let mut quote_errors = Vec::new();
    let mut deliveries = vec![0usize; robots.len()];
    let secs_of = |t: Timestamp| t.secs_since(start);
    let d = host.dispatcher();
    let mm = |v: f64| (v * 1000.0).round() / 1000.0;
    report.learned_travel_factor = mm(d.travel_factor());
    report.learned_legs = d.learned().legs();
    report.idle_moves = d.idle_moves();
    let (p50, p90) = d.learned().promise_ratios();
    (report.learned_promise_p50, report.learned_promise_p90) = (mm(p50), mm(p90));
    for o in d.orders() {
        report.placed += 1;
        report.delayed_notices += usize::from(o.delayed_at.is_some());
        let promise = promised.get(&o.id);
        let (eta, latest) = (promise.and_then(|p| p.eta), promise.and_then(|p| p.latest));
        let mut outcome = OrderOutcome {
            id: o.id.to_string(),
            shop: o.shop.to_string(),
            status: o.status.name().to_string(),
            reason: o.reason.clone(),
            robots: net.assigned.get(&o.id).map(|v| v.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            placed_s: secs_of(o.created_at),
            delivered_s: None,
            deliver_by_s: secs_of(o.request.deliver_by),
            delayed_s: o.delayed_at.map(secs_of),
            quoted_eta_s: eta.map(secs_of),
            quoted_latest_s: latest.map(secs_of),
            took_offer: promise.is_some_and(|p| p.offer),
            minutes: None,
            on_time: None,
        };
        match o.status {
            OrderStatus::Delivered => {
                report.delivered += 1;
                let at = o.delivered_at.unwrap_or(now);
                let on_time = at <= o.request.deliver_by;
                if on_time {
                    report.on_time += 1;
                } else {
                    report.late += 1;
                    report.late_announced_in_time +=
                        usize::from(o.delayed_at.is_some_and(|t| t < o.request.deliver_by));
                }
                report.by_quoted_eta += usize::from(eta.is_some_and(|e| at <= e));
                report.by_quoted_latest += usize::from(latest.is_some_and(|l| at <= l));
                if let Some(e) = eta {
                    quote_errors.push((at.0 as f64 - e.0 as f64) / 60_000.0);
                }
                let m = at.secs_since(o.created_at) / 60.0;
                minutes.push(m);
                outcome.delivered_s = Some(secs_of(at));
                outcome.minutes = Some(m);
                outcome.on_time = Some(on_time);
                if let Some(&i) = o.robot.as_ref().and_then(|r| net.index.get(r)) {
                    deliveries[i] += 1;
                }
            }
            OrderStatus::Failed => {
                report.failed += 1;
                let why = o.reason.clone().unwrap_or_else(|| "no reason given".into());
                *report.failed_reasons.entry(why).or_default() += 1;
            }
            OrderStatus::Returned => report.returned += 1,
            s if !s.is_terminal() => report.open_at_end += 1,
            _ => {}
        }
        report.orders.push(outcome);
    }
    quote_errors.sort_by(f64::total_cmp);
    if !quote_errors.is_empty() {
        report.quote_error_min_p50 = percentile(&quote_errors, 0.5);
        report.quote_error_min_p90 = percentile(&quote_errors, 0.9);
    }
    minutes.sort_by(f64::total_cmp);
    if !minutes.is_empty() {
        report.delivery_min_mean = minutes.iter().sum::<f64>() / minutes.len() as f64;
        report.delivery_min_p50 = percentile(&minutes, 0.5);
        report.delivery_min_p90 = percentile(&minutes, 0.9);
        report.delivery_min_p95 = percentile(&minutes, 0.95);
        report.delivery_min_max = percentile(&minutes, 1.0);
    }
    let robot_hours = scenario.robots as f64 * scenario.duration_s as f64 / 3600.0;
    report.deliveries_per_robot_hour = report.delivered as f64 / robot_hours;
    let duration_ms = (ticks * dt).max(1) as f64;
    for (i, r) in robots.iter().enumerate() {
        report.robots.push(RobotOutcome {
            id: r.id.to_string(),
            distance_km: phys.odometer_m(i) / 1_000.0,
            battery_end_pct: phys.battery_pct(i),
            utilisation: busy_ms[i] as f64 / duration_ms,
            deliveries: deliveries[i],
            broken: phys.is_broken(i),
        });
    }
    report.utilisation_mean =
        report.robots.iter().map(|r| r.utilisation).sum::<f64>() / report.robots.len().max(1) as f64;
    let id = |i: usize| robots.get(i).map_or_else(|| format!("robot {i}"), |r| r.id.to_string());
    report.contacts = phys
        .contacts()
        .iter()
        .map(|c| ContactOutcome {
            at_s: mm(c.at_s),
            robot: id(c.robot),
            other: match c.other {
                Other::Pedestrian(j) => format!("pedestrian {j}"),
                Other::Robot(j) => format!("robot {}", id(j)),
                Other::Static => "static".into(),
            },
            fault: c.fault,
            robot_speed_mps: mm(c.robot_speed_mps),
            closing_mps: mm(c.closing_mps),
            other_speed_mps: mm(c.other_speed_mps),
            lat: (phys.projection().to_latlon(c.xy).lat() * 1e6).round() / 1e6,
            lon: (phys.projection().to_latlon(c.xy).lon() * 1e6).round() / 1e6,
        })
        .collect();

    // The chart series: orders placed and delivered per bucket.
    let buckets = scenario.duration_s.div_ceil(SERIES_BUCKET_S) as usize;
    let mut series = Series { bucket_s: SERIES_BUCKET_S, placed: vec![0; buckets], delivered: vec![0; buckets] };
    let bucket = |s: f64| ((s.max(0.0) as u64 / SERIES_BUCKET_S) as usize).min(buckets.saturating_sub(1));
    for o in &report.orders {
        series.placed[bucket(o.placed_s)] += 1;
        if let Some(t) = o.delivered_s {
            series.delivered[bucket(t)] += 1;
        }
    }
    trace.series = series;
    trace.delivery_minutes = minutes;
    let m = d.map();
    trace.edges = m
        .weighted_edges(Profile::default())
        .into_iter()
        .filter(|&(u, v, _)| u < v)
        .filter_map(|(u, v, _)| Some((m.node(NodeId(u))?.xy, m.node(NodeId(v))?.xy)))
        .collect();
    trace.shops = shops.pos.iter().map(|&p| m.to_xy(p)).collect();
    Outcome { report, trace }
}

/// The value at quantile `q` of `sorted` (non-empty, ascending), nearest rank.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
