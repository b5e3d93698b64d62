//! An independent feasibility checker: it re-reads a solution against the instance from scratch (every request
//! served exactly once, pickup before delivery in the same route, capacity, time windows, depot hours, fleet
//! size) and recomputes the cost. It shares nothing with the solver but the instance.

use super::{Cost, Instance, Request, Solution};

/// Checks `sol`; returns its cost or the first violation found.
pub fn check(inst: &Instance, sol: &Solution) -> Result<Cost, String> {
    let n = inst.n();
    let mut seen = vec![0u32; n];
    let mut route_of = vec![usize::MAX; n];
    let mut pos = vec![0usize; n];
    let eps = 1e-6;
    let mut distance = 0.0;
    let depot = inst.sites[0];
    let used: Vec<&Vec<usize>> = sol.routes.iter().filter(|r| !r.is_empty()).collect();
    if used.len() > inst.max_vehicles {
        return Err(format!("{} routes but only {} vehicles", used.len(), inst.max_vehicles));
    }
    for (ri, route) in used.iter().enumerate() {
        // Load at the start: every depot-loaded delivery on this route.
        let mut load: i64 = 0;
        for &s in route.iter() {
            if s == 0 || s >= n {
                return Err(format!("route {ri} visits site {s}, which is not a task"));
            }
            if matches!(inst.requests[inst.request_of[s]], Request::FromDepot { .. }) {
                load -= i64::from(inst.sites[s].demand);
            }
        }
        if load > i64::from(inst.capacity) {
            return Err(format!("route {ri} leaves the depot with load {load} > {}", inst.capacity));
        }
        let mut t = depot.ready;
        let mut at = 0usize;
        for (k, &s) in route.iter().enumerate() {
            seen[s] += 1;
            route_of[s] = ri;
            pos[s] = k;
            let site = inst.sites[s];
            let dx = inst.sites[at].x - site.x;
            let dy = inst.sites[at].y - site.y;
            let leg = (dx * dx + dy * dy).sqrt();
            distance += leg;
            let arrive = t + leg;
            if arrive > site.due + eps {
                return Err(format!("route {ri} reaches site {s} at {arrive:.3}, after its due time {}", site.due));
            }
            t = arrive.max(site.ready) + site.service;
            load += i64::from(site.demand);
            if load < 0 || load > i64::from(inst.capacity) {
                return Err(format!("route {ri} carries {load} after site {s} (capacity {})", inst.capacity));
            }
            at = s;
        }
        let dx = inst.sites[at].x - depot.x;
        let dy = inst.sites[at].y - depot.y;
        let back = (dx * dx + dy * dy).sqrt();
        distance += back;
        if t + back > depot.due + eps {
            return Err(format!("route {ri} returns to the depot at {:.3}, after {}", t + back, depot.due));
        }
    }
    if let Some((s, times)) = seen.iter().enumerate().skip(1).find(|(_, t)| **t != 1) {
        return Err(format!("site {s} is visited {times} times"));
    }
    for req in &inst.requests {
        if let Request::Pair { pickup, delivery } = *req
            && (route_of[pickup] != route_of[delivery] || pos[pickup] > pos[delivery])
        {
            return Err(format!("pickup {pickup} and delivery {delivery} are not in order on one route"));
        }
    }
    Ok(Cost { vehicles: used.len(), distance })
}
