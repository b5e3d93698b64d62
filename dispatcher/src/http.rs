//! The dispatcher's HTTP port (`--http ADDR`): `/metrics` in the Prometheus text format and `/healthz`. The
//! figures come from the same places the gRPC services use: a query on the core for orders and robots (one
//! pass over them, on the core's thread), the core's and the writer's histograms, and the services' own per-RPC
//! times and refusals.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use fleet_core::dispatcher::Dispatcher;

use crate::core::CoreHandle;
use crate::stats::{CoreStats, Histogram, RpcInner, RpcStats};

/// Histogram bucket bounds, seconds: 100 us to 10 s.
const LE_S: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
struct Shared {
    core: CoreHandle,
    rpc: Arc<RpcStats>,
}

/// The routes, on `core` and the services' `rpc` figures.
pub fn router(core: CoreHandle, rpc: Arc<RpcStats>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(Shared { core, rpc })
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    match s.core.query(|_| ()).await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the core has stopped\n"),
    }
}

async fn metrics(State(s): State<Shared>) -> axum::response::Response {
    let fleet = s.core.query(Fleet::of).await;
    let core = s.core.stats().await;
    match (fleet, core) {
        (Ok(fleet), Ok(core)) => {
            let body = render(&fleet, &core, &s.rpc.snapshot());
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the core has stopped\n").into_response(),
    }
}

/// Orders and robots as counted on the core's thread.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fleet {
    /// Orders by state (the wire's names: PENDING, ASSIGNED, ..., DELIVERED).
    pub orders: std::collections::BTreeMap<String, u64>,
    /// Robots by what they are doing: offline, faulted, paused, charging, working, idle (each robot once, in that
    /// order of precedence).
    pub robots: std::collections::BTreeMap<&'static str, u64>,
    /// Each robot's battery, percent.
    pub battery: Vec<(String, f64)>,
    /// Alerts raised and not yet acknowledged.
    pub alerts_open: u64,
}

impl Fleet {
    pub fn of(d: &Dispatcher) -> Self {
        let mut f = Fleet { alerts_open: d.open_alerts().count() as u64, ..Fleet::default() };
        for o in d.orders() {
            *f.orders.entry(o.status.name().to_string()).or_default() += 1;
        }
        for state in ["offline", "faulted", "paused", "charging", "working", "idle"] {
            f.robots.insert(state, 0);
        }
        for r in d.robots() {
            let state = r.unavailable().unwrap_or(if !r.plan.is_empty() || !r.mission.base.is_empty() {
                "working"
            } else {
                "idle"
            });
            *f.robots.entry(state).or_default() += 1;
            f.battery.push((r.id.to_string(), r.battery_pct));
        }
        f
    }
}

/// A label value with `\`, `"` and newlines escaped as the text format asks.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for le in LE_S {
        let n = h.count_at_most_us((le * 1e6) as u64);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
pub fn render(fleet: &Fleet, core: &CoreStats, rpc: &RpcInner) -> String {
    let mut out = String::new();
    head(&mut out, "trundle_orders", "gauge", "Orders by state, terminal ones included.");
    for (state, n) in &fleet.orders {
        let _ = writeln!(out, "trundle_orders{{state=\"{}\"}} {n}", label(state));
    }
    head(&mut out, "trundle_robots", "gauge", "Robots by what they are doing.");
    for (state, n) in &fleet.robots {
        let _ = writeln!(out, "trundle_robots{{state=\"{state}\"}} {n}");
    }
    head(&mut out, "trundle_robot_battery_percent", "gauge", "Each robot's battery, as it last reported.");
    for (robot, pct) in &fleet.battery {
        let _ = writeln!(out, "trundle_robot_battery_percent{{robot=\"{}\"}} {pct}", label(robot));
    }
    head(&mut out, "trundle_rpc_duration_seconds", "histogram", "Quote and PlaceOrder, request to answer.");
    for (method, h) in &rpc.calls {
        histogram(&mut out, "trundle_rpc_duration_seconds", &format!("method=\"{method}\""), h);
    }
    head(&mut out, "trundle_refusals_total", "counter", "Refused places and infeasible quotes, by stable reason.");
    for ((method, reason), n) in &rpc.refusals {
        let _ = writeln!(out, "trundle_refusals_total{{method=\"{method}\",reason=\"{}\"}} {n}", label(reason));
    }
    head(&mut out, "trundle_core_queue_depth", "gauge", "Commands waiting in the core's queue.");
    let _ = writeln!(out, "trundle_core_queue_depth {}", core.queue_depth);
    head(&mut out, "trundle_core_queue_seconds", "histogram", "An input's wait in the core's queue.");
    histogram(&mut out, "trundle_core_queue_seconds", "", &core.queued);
    head(&mut out, "trundle_core_input_seconds", "histogram", "The core's handling of an input, by kind.");
    for (kind, h) in &core.handle {
        histogram(&mut out, "trundle_core_input_seconds", &format!("kind=\"{kind}\""), h);
    }
    head(&mut out, "trundle_store_commit_seconds", "histogram", "One flushed store write.");
    histogram(&mut out, "trundle_store_commit_seconds", "", &core.write);
    head(&mut out, "trundle_core_tick_seconds", "histogram", "One periodic tick of the core.");
    histogram(&mut out, "trundle_core_tick_seconds", "", &core.tick);
    head(
        &mut out,
        "trundle_improvements_applied_total",
        "counter",
        "Better plans from the background search installed.",
    );
    let _ = writeln!(out, "trundle_improvements_applied_total {}", core.proposals_applied);
    head(&mut out, "trundle_alerts_total", "counter", "Alerts raised for operators.");
    let _ = writeln!(out, "trundle_alerts_total {}", core.alerts);
    head(&mut out, "trundle_alerts_open", "gauge", "Alerts not yet acknowledged by an operator.");
    let _ = writeln!(out, "trundle_alerts_open {}", fleet.alerts_open);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_well_formed_and_cumulative() {
        let mut fleet = Fleet::default();
        fleet.orders.insert("DELIVERED".into(), 3);
        fleet.robots.insert("idle", 2);
        fleet.battery.push(("r\"1".into(), 80.5));
        let mut core = CoreStats::default();
        for us in [50, 800, 3_000, 20_000_000] {
            core.queued.record_us(us);
        }
        let rpc = RpcStats::default();
        rpc.record("PlaceOrder", std::time::Duration::from_millis(2), Some("FLEET_BUSY".into()));
        let text = render(&fleet, &core, &rpc.snapshot());
        assert!(text.contains("trundle_orders{state=\"DELIVERED\"} 3"), "{text}");
        assert!(text.contains("trundle_robot_battery_percent{robot=\"r\\\"1\"} 80.5"), "{text}");
        assert!(text.contains("trundle_refusals_total{method=\"PlaceOrder\",reason=\"FLEET_BUSY\"} 1"), "{text}");
        assert!(text.contains("trundle_core_queue_seconds_count 4"), "{text}");
        assert!(text.contains("trundle_core_queue_seconds_bucket{le=\"+Inf\"} 4"), "{text}");
        // Buckets never decrease, and the one past 10 s holds the 20 s sample only in +Inf.
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("trundle_core_queue_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a count"))
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets[buckets.len() - 2], 3);
        // Every sample line is `name{labels} value` or `name value` with a number.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').expect("name and value");
            assert!(value.parse::<f64>().is_ok(), "{l}");
            assert!(name.starts_with("trundle_"), "{l}");
        }
    }
}

#[cfg(test)]
mod dashboard {
    /// The Grafana dashboard in the repository asks only for metrics `/metrics` exposes.
    #[test]
    fn the_grafana_dashboard_uses_only_exposed_metrics() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/trundle-dispatcher.json");
        let text = std::fs::read_to_string(path).expect("the dashboard is in the repository");
        let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let mut fleet = super::Fleet::default();
        fleet.orders.insert("PENDING".into(), 1);
        fleet.robots.insert("idle", 1);
        fleet.battery.push(("r1".into(), 50.0));
        let rpc = crate::stats::RpcStats::default();
        rpc.record("PlaceOrder", std::time::Duration::from_millis(1), Some("FLEET_BUSY".into()));
        let mut core = crate::stats::CoreStats::default();
        core.handle.insert("place", crate::stats::Histogram::default());
        let exposed = super::render(&fleet, &core, &rpc.snapshot());
        let panels = json["panels"].as_array().expect("panels");
        assert!(panels.len() >= 6);
        let mut asked = 0;
        for p in panels {
            for t in p["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("an expression");
                for (i, _) in expr.match_indices("trundle_") {
                    let name: String =
                        expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    asked += 1;
                    assert!(
                        exposed.lines().any(|l| !l.starts_with('#') && l.starts_with(&name)),
                        "panel {:?} asks for {name}, which /metrics does not expose",
                        p["title"]
                    );
                }
            }
        }
        assert!(asked >= 10, "{asked}");
    }
}
