//! `report.html`: one self-contained page (inline SVG, no script, no external asset) with the run's key
//! figures and the charts a person would rather look at than read: orders placed and delivered over time, the
//! delivery-time histogram, utilisation per robot, battery traces, and the map with the robots' trajectories.
//!
//! The SVG is written by hand: a few hundred lines buy charts with no plotting dependency, and every number
//! is printed with a fixed precision, so the same report and trace give the same bytes.

use std::fmt::Write as _;

use crate::report::{Report, Trace};

/// Ten distinguishable colours (Tableau 10), cycled over robots.
const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const W: f64 = 860.0;
const H: f64 = 260.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) for about five ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// A plot area with linear axes from (0, 0) to (`x1`, `y1`).
struct Frame {
    x1: f64,
    y1: f64,
}

const L: f64 = 56.0;
const R: f64 = 16.0;
const T: f64 = 14.0;
const B: f64 = 40.0;

impl Frame {
    fn px(&self, x: f64) -> f64 {
        L + (W - L - R) * (x / self.x1).clamp(0.0, 1.0)
    }
    fn py(&self, y: f64) -> f64 {
        H - B - (H - B - T) * (y / self.y1).clamp(0.0, 1.0)
    }
    /// Opens the SVG and draws the axes, grid and labels.
    fn open(&self, out: &mut String, title: &str, xlabel: &str, ylabel: &str) {
        let _ = write!(
            out,
            "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
             viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">",
            esc(title)
        );
        let (xs, ys) = (nice_step(self.x1), nice_step(self.y1));
        let mut y = 0.0;
        while y <= self.y1 + 1e-9 {
            let p = self.py(y);
            let _ = write!(
                out,
                "<line x1=\"{L}\" y1=\"{p:.1}\" x2=\"{:.1}\" y2=\"{p:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                W - R,
                L - 4.0,
                p + 4.0,
                trim(y)
            );
            y += ys;
        }
        let mut x = 0.0;
        while x <= self.x1 + 1e-9 {
            let p = self.px(x);
            let _ = write!(
                out,
                "<line x1=\"{p:.1}\" y1=\"{:.1}\" x2=\"{p:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
                 <text x=\"{p:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                H - B,
                H - B + 4.0,
                H - B + 16.0,
                trim(x)
            );
            x += xs;
        }
        let _ = write!(
            out,
            "<line x1=\"{L}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
             <line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{:.1}\" stroke=\"#333\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"12\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {:.1})\">{}</text>",
            H - B,
            W - R,
            H - B,
            H - B,
            (L + W - R) / 2.0,
            H - 6.0,
            esc(xlabel),
            (T + H - B) / 2.0,
            (T + H - B) / 2.0,
            esc(ylabel)
        );
    }
    fn polyline(&self, out: &mut String, pts: impl Iterator<Item = (f64, f64)>, colour: &str, width: f64) {
        out.push_str("<polyline fill=\"none\" stroke=\"");
        out.push_str(colour);
        let _ = write!(out, "\" stroke-width=\"{width}\" points=\"");
        for (x, y) in pts {
            let _ = write!(out, "{:.1},{:.1} ", self.px(x), self.py(y));
        }
        out.push_str("\"/>");
    }
}

/// A tick label: whole numbers without decimals.
fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn legend(out: &mut String, items: &[(&str, &str)]) {
    for (k, (label, colour)) in items.iter().enumerate() {
        let x = L + 10.0 + 130.0 * k as f64;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{T}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 14.0,
            T + 9.0,
            esc(label)
        );
    }
}

fn orders_chart(out: &mut String, t: &Trace) {
    let s = &t.series;
    let hours = s.placed.len() as f64 * s.bucket_s as f64 / 3600.0;
    let max = s.placed.iter().chain(&s.delivered).copied().max().unwrap_or(0).max(1) as f64;
    let f = Frame { x1: hours.max(0.25), y1: max * 1.1 };
    f.open(out, &format!("Orders placed and delivered per {} min", s.bucket_s / 60), "hours since start", "orders");
    let mid = |k: usize| (k as f64 + 0.5) * s.bucket_s as f64 / 3600.0;
    f.polyline(out, s.placed.iter().enumerate().map(|(k, &v)| (mid(k), f64::from(v))), PALETTE[0], 2.0);
    f.polyline(out, s.delivered.iter().enumerate().map(|(k, &v)| (mid(k), f64::from(v))), PALETTE[4], 2.0);
    legend(out, &[("placed", PALETTE[0]), ("delivered", PALETTE[4])]);
    out.push_str("</svg></figure>\n");
}

fn histogram(out: &mut String, t: &Trace) {
    const BIN: f64 = 5.0;
    let max_m = t.delivery_minutes.last().copied().unwrap_or(0.0);
    let bins = ((max_m / BIN).floor() as usize + 1).max(1);
    let mut counts = vec![0u32; bins];
    for &m in &t.delivery_minutes {
        counts[((m / BIN).floor().max(0.0) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let f = Frame { x1: bins as f64 * BIN, y1: top * 1.1 };
    f.open(out, "Delivery time (placed to handed over), 5-minute bins", "minutes", "orders");
    for (k, &c) in counts.iter().enumerate() {
        let (x0, x1) = (f.px(k as f64 * BIN), f.px((k + 1) as f64 * BIN));
        let y = f.py(f64::from(c));
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            x0 + 1.0,
            (x1 - x0 - 2.0).max(0.5),
            f.py(0.0) - y,
            PALETTE[0]
        );
    }
    out.push_str("</svg></figure>\n");
}

fn utilisation_chart(out: &mut String, r: &Report) {
    let n = r.robots.len().max(1);
    let f = Frame { x1: n as f64, y1: 100.0 };
    f.open(out, "Utilisation per robot (driving, serving or waiting for a PIN)", "robot", "% of the period");
    for (k, robot) in r.robots.iter().enumerate() {
        let (x0, x1) = (f.px(k as f64), f.px(k as f64 + 1.0));
        let y = f.py(100.0 * robot.utilisation);
        let colour = if robot.broken { PALETTE[2] } else { PALETTE[k % PALETTE.len()] };
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{} {:.1}%</title></rect>",
            x0 + 1.0,
            (x1 - x0 - 2.0).max(0.5),
            f.py(0.0) - y,
            esc(&robot.id),
            100.0 * robot.utilisation
        );
    }
    out.push_str("</svg></figure>\n");
}

fn battery_chart(out: &mut String, r: &Report, t: &Trace) {
    let every_h = 6.0 * t.sample_s as f64 / 3600.0;
    let hours = r.scenario.duration_s as f64 / 3600.0;
    let lowest = t.battery_pct.iter().flatten().copied().fold(100.0f32, f32::min);
    let f = Frame { x1: hours.max(0.25), y1: 100.0 };
    f.open(out, &format!("Battery per robot (lowest {lowest:.1}%)"), "hours since start", "battery %");
    for (k, trace) in t.battery_pct.iter().enumerate() {
        f.polyline(
            out,
            trace.iter().enumerate().map(|(j, &b)| (j as f64 * every_h, f64::from(b))),
            PALETTE[k % PALETTE.len()],
            1.2,
        );
    }
    out.push_str("</svg></figure>\n");
}

fn map_chart(out: &mut String, t: &Trace) {
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (a, b) in &t.edges {
        for p in [a, b] {
            x0 = x0.min(p[0]);
            y0 = y0.min(p[1]);
            x1 = x1.max(p[0]);
            y1 = y1.max(p[1]);
        }
    }
    if t.edges.is_empty() {
        return;
    }
    let w = W;
    let scale = w / (x1 - x0).max(1.0);
    let h = ((y1 - y0) * scale).clamp(100.0, 1_400.0);
    let scale = scale.min(h / (y1 - y0).max(1.0));
    let px = |p: [f64; 2]| ((p[0] - x0) * scale, h - (p[1] - y0) * scale);
    let _ = write!(
        out,
        "<figure><figcaption>The map: walkable ways (grey), robot trajectories sampled every {} s, shops (black)\
         </figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 \
         {w:.0} {h:.0}\"><path fill=\"none\" stroke=\"#ccc\" stroke-width=\"0.6\" d=\"",
        t.sample_s
    );
    for &(a, b) in &t.edges {
        let (a, b) = (px(a), px(b));
        let _ = write!(out, "M{:.1} {:.1}L{:.1} {:.1}", a.0, a.1, b.0, b.1);
    }
    out.push_str("\"/>");
    for (k, pts) in t.xy.iter().enumerate() {
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-opacity=\"0.75\" stroke-width=\"1.2\" points=\"",
            PALETTE[k % PALETTE.len()]
        );
        let mut last = None;
        for p in pts {
            let q = px([f64::from(p[0]), f64::from(p[1])]);
            let q = (format!("{:.1}", q.0), format!("{:.1}", q.1));
            // Standing still prints the same point again: skip it.
            if last.as_ref() != Some(&q) {
                let _ = write!(out, "{},{} ", q.0, q.1);
                last = Some(q);
            }
        }
        out.push_str("\"/>");
    }
    for &s in &t.shops {
        let (x, y) = px(s);
        let _ = write!(out, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"6\" height=\"6\" fill=\"#000\"/>", x - 3.0, y - 3.0);
    }
    out.push_str("</svg></figure>\n");
}

/// The page for `report` and its `trace`.
pub fn render(r: &Report, t: &Trace) -> String {
    let s = &r.scenario;
    let mut out = String::with_capacity(1 << 20);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Trundle simulation report</title>\
         <style>body{font-family:sans-serif;max-width:900px;margin:1em auto;color:#222}\
         table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #eee}\
         td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}figcaption{font-weight:bold;\
         margin-bottom:4px}</style></head><body>\n<h1>Trundle simulation report</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>Seed {}, {} robots, {} shops, {:.1} h simulated, {} pedestrians, physics at {} Hz, {} building walls.</p>",
        s.seed,
        s.robots,
        s.shops,
        s.duration_s as f64 / 3600.0,
        s.pedestrians,
        s.physics_hz,
        r.building_walls
    );
    let c = &r.collisions;
    let opt = |v: Option<f64>, unit: &str| v.map_or_else(|| "none".to_string(), |v| format!("{v:.2} {unit}"));
    let rows: Vec<(&str, String)> = vec![
        ("orders requested", r.orders_requested.to_string()),
        ("refused at placement", r.refusals().to_string()),
        ("placed", format!("{} ({} on an offered later deliver-by)", r.placed, r.offers_taken)),
        ("delivered", format!("{} ({} on time, {} late)", r.delivered, r.on_time, r.late)),
        ("on-time rate", format!("{:.1}%", 100.0 * r.on_time_rate())),
        (
            "handed over by the quoted ETA / by the quoted latest",
            format!(
                "{} / {} ({:.1}% by the latest)",
                r.by_quoted_eta,
                r.by_quoted_latest,
                100.0 * r.by_quoted_latest_rate()
            ),
        ),
        (
            "hand-over minus quoted ETA p50 / p90",
            format!("{:.1} / {:.1} min", r.quote_error_min_p50, r.quote_error_min_p90),
        ),
        (
            "late notices (DELAYED) / late deliveries announced before their deliver-by",
            format!("{} / {} of {}", r.delayed_notices, r.late_announced_in_time, r.late),
        ),
        (
            "learned: drive time over free flow / quote ratios (ETA, latest)",
            format!(
                "{:.2} ({} legs) / {:.2}, {:.2}",
                r.learned_travel_factor, r.learned_legs, r.learned_promise_p50, r.learned_promise_p90
            ),
        ),
        ("idle positioning: drives to wait near the shops", r.idle_moves.to_string()),
        ("failed / returned / open at end", format!("{} / {} / {}", r.failed, r.returned, r.open_at_end)),
        (
            "delivery time p50 / p90 / p95 / max",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} min",
                r.delivery_min_p50, r.delivery_min_p90, r.delivery_min_p95, r.delivery_min_max
            ),
        ),
        ("deliveries per robot-hour", format!("{:.2}", r.deliveries_per_robot_hour)),
        ("utilisation (mean)", format!("{:.1}%", 100.0 * r.utilisation_mean)),
        ("fleet distance", format!("{:.2} km", r.distance_km)),
        ("energy", format!("{:.0} Wh ({:.1}% of a battery)", r.energy_used_wh, r.energy_used_pct)),
        (
            "collisions (robot-robot / -pedestrian / -static)",
            format!("{} ({} / {} / {})", c.total(), c.robot_robot, c.robot_pedestrian, c.robot_static),
        ),
        (
            "contacts: robot at fault (with people / robots) / struck while stopped / other at fault",
            format!(
                "{} ({} / {}) / {} / {}",
                r.contact_faults.robot_at_fault,
                r.contact_faults.robot_at_fault_pedestrian,
                r.contact_faults.robot_at_fault_robot,
                r.contact_faults.struck_while_stopped,
                r.contact_faults.other_at_fault
            ),
        ),
        (
            "people out (mean, of them near robots, at most; trips)",
            format!("{:.0}, {:.0}, {}; {}", r.crowd.mean_out, r.crowd.mean_in_physics, r.crowd.peak_out, r.crowd.trips),
        ),
        (
            "attentive / distracted / impassive people",
            format!("{} / {} / {}", r.crowd.attentive, r.crowd.distracted, r.crowd.impassive),
        ),
        ("closest a robot came to a person", opt(r.social.min_person_distance_m, "m")),
        (
            "personal-space intrusions (under 0.45 m)",
            format!("{} ({:.0} s inside)", r.social.intrusions, r.social.intrusion_s),
        ),
        (
            "least time-to-collision with a person (alerts under 1 s)",
            format!("{} ({})", opt(r.social.min_ttc_s, "s"), r.social.ttc_under_1s),
        ),
        ("time stopped while driving", format!("{:.1}%", 100.0 * r.stopped_share)),
        ("path irregularity", format!("{:.3} rad/m", r.path_irregularity_rad_per_m)),
        (
            "driving off the way (body over 0.1 m beyond its edge)",
            format!("{:.0} s, at most {:.2} m beyond", r.social.off_way_s, r.social.off_way_max_m),
        ),
        (
            "stopping distance at full speed",
            format!("{:.2} m at {:.1} m/s", r.stopping_distance_m, r.scenario.model.max_speed_mps),
        ),
        ("near misses", r.near_misses.to_string()),
        ("blocked / re-routes asked / sidesteps", format!("{} / {} / {}", r.blocked_events, r.reroutes, r.sidesteps)),
        ("open at end / the run went on after the day", format!("{} / {:.1} min", r.open_at_end, r.drain_min)),
        (
            "traffic: narrow ways / crossings on the map",
            if r.traffic.enabled {
                format!("{} / {}", r.traffic.narrow_ways, r.traffic.crossings)
            } else {
                "off (routes released whole)".into()
            },
        ),
        (
            "traffic: turns at once / waited (s in all, longest)",
            format!(
                "{} / {} ({:.0} s, {:.0} s)",
                r.traffic.granted_at_once, r.traffic.waited, r.traffic.wait_s_total, r.traffic.wait_s_max
            ),
        ),
        (
            "traffic: deadlocks / re-routes round a held way",
            format!("{} / {}", r.traffic.deadlocks, r.traffic.reroutes),
        ),
        (
            "signals: signalised crossings / crossed / on red / waits (s)",
            format!(
                "{} / {} / {} / {} ({:.0} s)",
                r.traffic.signalised,
                r.traffic.signal_crossed,
                r.traffic.signal_entered_on_red,
                r.traffic.signal_waits,
                r.traffic.signal_wait_s
            ),
        ),
    ];
    let mut rows = rows;
    for z in &r.speed_zones {
        rows.push((
            "speed zone: limit / fastest inside / robot-seconds inside",
            format!("{}: {:.2} / {:.2} m/s / {:.0} s", z.name, z.max_mps, z.fastest_mps, z.inside_s),
        ));
    }
    out.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&v));
    }
    out.push_str("</table>\n");
    for (title, map) in [("Refusals", &r.refused), ("Failures", &r.failed_reasons)] {
        if !map.is_empty() {
            let _ = writeln!(out, "<h3>{title}</h3><ul>");
            for (why, n) in map {
                let _ = writeln!(out, "<li>{n}: {}</li>", esc(why));
            }
            out.push_str("</ul>\n");
        }
    }
    out.push_str(
        "<h3>How safety is judged</h3><ul>\n\
         <li><b>Robot at fault</b>: at the start of a contact the robot was moving towards the other faster than \
         0.05 m/s (it moved into them; a sidewalk robot yields to everyone). <b>Struck while stopped</b>: the robot \
         was slower than 0.05 m/s. <b>Other at fault</b>: the robot was moving, but not towards the other (struck \
         from the side or behind). A robot-robot contact judges both robots; touching a wall while moving is at \
         fault.</li>\n\
         <li><b>Closest to a person</b>: least gap between a robot's footprint and a person's body (0 = touching).\
         </li>\n\
         <li><b>Personal-space intrusion</b>: a person within 0.45 m of a robot's body, counted on entry.</li>\n\
         <li><b>Time-to-collision</b>: for pairs within 3 m whose gap shrinks, the gap over the speed it shrinks \
         at.</li>\n\
         <li><b>Time stopped</b>: share of the time robots had a drive to make and stood (slower than 0.05 m/s).\
         </li>\n\
         <li><b>Path irregularity</b>: heading change summed while moving, per metre driven.</li>\n</ul>\n",
    );
    if !r.contacts.is_empty() {
        let _ = writeln!(
            out,
            "<h3>Contacts</h3><table><tr><th>at</th><th>robot</th><th>with</th><th>judged</th>\
             <th>robot speed</th><th>towards the other</th><th>other's speed</th></tr>"
        );
        for x in &r.contacts {
            let _ = writeln!(
                out,
                "<tr><td>{:.0} s</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} m/s</td><td>{:.2} m/s</td>\
                 <td>{:.2} m/s</td></tr>",
                x.at_s,
                esc(&x.robot),
                esc(&x.other),
                x.fault.label(),
                x.robot_speed_mps,
                x.closing_mps,
                x.other_speed_mps
            );
        }
        out.push_str("</table>\n");
    }
    if !r.faults.is_empty() {
        out.push_str("<h3>Faults</h3><ul>\n");
        for f in &r.faults {
            let _ = writeln!(out, "<li>at {:.0} s, {}: {}</li>", f.at_s, esc(&f.kind), esc(&f.detail));
        }
        out.push_str("</ul>\n");
    }
    orders_chart(&mut out, t);
    histogram(&mut out, t);
    utilisation_chart(&mut out, r);
    battery_chart(&mut out, r, t);
    map_chart(&mut out, t);
    out.push_str(
        "<h3>Robots</h3><table><tr><th>robot</th><th>deliveries</th><th>km</th><th>utilisation</th>\
                  <th>battery at end</th><th>state</th></tr>\n",
    );
    for x in &r.robots {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td></tr>",
            esc(&x.id),
            x.deliveries,
            x.distance_km,
            100.0 * x.utilisation,
            x.battery_end_pct,
            if x.broken { "broken down" } else { "ok" }
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}
