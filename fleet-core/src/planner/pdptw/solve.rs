//! The Li & Lim / Solomon benchmark as a problem for the planner's one search engine ([`crate::planner::alns`]): routes
//! of sites on Euclidean distances with the timing arrays that make a pair insertion O(n^2), routes opened and
//! closed, vehicles first and distance second. [`solve`] builds a start by regret insertion and hands it to
//! the engine, whose fleet minimisation and simulated annealing do the rest. Deterministic for a seed and a
//! number of iterations; anytime under a budget the caller measures: `used(iteration)` returns the fraction of
//! the budget spent (by time or by iterations), because the core reads no clock.

use super::{Instance, Request, Solution};
use crate::planner::alns::{self, Config, Fleet, Minimise, Problem};

/// The engine's generator, named here too because the benchmark and tests have always found it here.
pub use crate::planner::alns::Rng;

#[derive(Debug, Clone, Default)]
struct Route {
    stops: Vec<usize>,
    /// Service start at each stop.
    start: Vec<f64>,
    /// Load after each stop.
    load: Vec<i32>,
    /// Latest service start at each stop that keeps the rest of the route feasible.
    latest: Vec<f64>,
    load_at_depot: i32,
    distance: f64,
}

struct Ctx<'a> {
    inst: &'a Instance,
}

impl Ctx<'_> {
    fn refresh(&self, r: &mut Route) {
        let inst = self.inst;
        let n = r.stops.len();
        r.start.resize(n, 0.0);
        r.load.resize(n, 0);
        r.latest.resize(n, 0.0);
        r.load_at_depot = r
            .stops
            .iter()
            .filter(|&&s| matches!(inst.requests[inst.request_of[s]], Request::FromDepot { .. }))
            .map(|&s| -inst.sites[s].demand)
            .sum();
        let (mut t, mut at, mut load, mut dist) = (inst.sites[0].ready, 0, r.load_at_depot, 0.0);
        for (k, &s) in r.stops.iter().enumerate() {
            let site = &inst.sites[s];
            dist += inst.d(at, s);
            t = (t + inst.d(at, s)).max(site.ready);
            r.start[k] = t;
            t += site.service;
            load += site.demand;
            r.load[k] = load;
            at = s;
        }
        r.distance = dist + inst.d(at, 0);
        let mut next_latest = inst.sites[0].due;
        let mut next = 0;
        for k in (0..n).rev() {
            let s = r.stops[k];
            let site = &inst.sites[s];
            r.latest[k] = site.due.min(next_latest - inst.d(s, next) - site.service);
            next_latest = r.latest[k];
            next = s;
        }
    }

    /// Cost of inserting `a` before position `i` and (if `b` is given) `b` before position `j` of the original
    /// route (`j >= i`; `b` goes right after `a` when `j == i`), or `None` when infeasible.
    fn insertion(&self, r: &Route, a: usize, b: Option<usize>, i: usize, j: usize) -> Option<f64> {
        let inst = self.inst;
        let cap = inst.capacity;
        let depot_load = match b {
            None => r.load_at_depot - inst.sites[a].demand,
            Some(_) => r.load_at_depot,
        };
        if depot_load > cap {
            return None;
        }
        let extra = if b.is_some() { inst.sites[a].demand } else { 0 };
        // Walk from the stop before `i`.
        let (mut t, mut at) = if i == 0 {
            (inst.sites[0].ready, 0)
        } else {
            (r.start[i - 1] + inst.sites[r.stops[i - 1]].service, r.stops[i - 1])
        };
        let mut delta = 0.0;
        let visit = |t: &mut f64, at: &mut usize, s: usize, delta: &mut f64| -> bool {
            let arrive = *t + inst.d(*at, s);
            let site = &inst.sites[s];
            if arrive > site.due + 1e-9 {
                return false;
            }
            *delta += inst.d(*at, s);
            *t = arrive.max(site.ready) + site.service;
            *at = s;
            true
        };
        if !visit(&mut t, &mut at, a, &mut delta) {
            return None;
        }
        let mut k = i;
        if let Some(b) = b {
            while k < j {
                if r.load[k] + extra > cap {
                    return None;
                }
                let s = r.stops[k];
                if !visit(&mut t, &mut at, s, &mut delta) {
                    return None;
                }
                k += 1;
            }
            if !visit(&mut t, &mut at, b, &mut delta) {
                return None;
            }
        } else if i > 0 && r.load[i - 1] > cap {
            return None;
        }
        // Rejoin the original route at stop k: its service may start no later than latest[k].
        let next = r.stops.get(k).copied().unwrap_or(0);
        let arrive = t + inst.d(at, next);
        if k < r.stops.len() {
            if arrive.max(inst.sites[next].ready) > r.latest[k] + 1e-9 {
                return None;
            }
        } else if arrive > inst.sites[0].due + 1e-9 {
            return None;
        }
        delta += inst.d(at, next);
        // Remove the edges the insertion replaced.
        let before = if i == 0 { 0 } else { r.stops[i - 1] };
        let after_i = r.stops.get(i).copied().unwrap_or(0);
        let removed = if b.is_some() && j > i {
            let before_j = r.stops[j - 1];
            let after_j = r.stops.get(j).copied().unwrap_or(0);
            inst.d(before, after_i) + inst.d(before_j, after_j)
        } else {
            inst.d(before, after_i)
        };
        // `delta` counted the segment between i and j again; take it back out.
        let mut seg = 0.0;
        if b.is_some() {
            for m in i..j.saturating_sub(1) {
                seg += inst.d(r.stops[m], r.stops[m + 1]);
            }
        }
        Some(delta - removed - seg)
    }

    /// The best insertion of request `q` into route `r`: (cost, i, j).
    fn best_in_route(&self, r: &Route, q: usize) -> Option<(f64, usize, usize)> {
        let n = r.stops.len();
        let mut best: Option<(f64, usize, usize)> = None;
        match self.inst.requests[q] {
            Request::Pair { pickup, delivery } => {
                let inst = self.inst;
                let cap = inst.capacity;
                let extra = inst.sites[pickup].demand;
                let (ps, ds) = (&inst.sites[pickup], &inst.sites[delivery]);
                for i in 0..=n {
                    let (t0, before) = if i == 0 {
                        (inst.sites[0].ready, 0)
                    } else {
                        (r.start[i - 1] + inst.sites[r.stops[i - 1]].service, r.stops[i - 1])
                    };
                    let arrive_p = t0 + inst.d(before, pickup);
                    if arrive_p > ps.due + 1e-9 {
                        // Later positions leave even later.
                        break;
                    }
                    let load_before = if i == 0 { r.load_at_depot } else { r.load[i - 1] };
                    if load_before + extra > cap {
                        continue;
                    }
                    let after_i = r.stops.get(i).copied().unwrap_or(0);
                    let pick_cost = inst.d(before, pickup) - inst.d(before, after_i);
                    // Distances obey the triangle inequality, so the delivery adds at least nothing to the
                    // pickup's own detour: a pickup position whose detour is no cheaper than the best found
                    // cannot win.
                    if best.is_some_and(|b| pick_cost + inst.d(pickup, after_i) >= b.0) {
                        continue;
                    }
                    // Walk forward from the pickup, keeping the shifted time at each original stop, and try the
                    // delivery before each of them: O(n) per pickup position.
                    let (mut t, mut at) = (arrive_p.max(ps.ready) + ps.service, pickup);
                    for j in i..=n {
                        // Delivery before original stop j (or before the depot when j == n).
                        let arrive_d = t + inst.d(at, delivery);
                        if arrive_d <= ds.due + 1e-9 {
                            let leave_d = arrive_d.max(ds.ready) + ds.service;
                            let next = r.stops.get(j).copied().unwrap_or(0);
                            let arrive_next = leave_d + inst.d(delivery, next);
                            let ok = if j < n {
                                arrive_next.max(inst.sites[next].ready) <= r.latest[j] + 1e-9
                            } else {
                                arrive_next <= inst.sites[0].due + 1e-9
                            };
                            if ok {
                                let prev_j = if j == i { pickup } else { r.stops[j - 1] };
                                let c = if j == i {
                                    inst.d(before, pickup) + inst.d(pickup, delivery) + inst.d(delivery, after_i)
                                        - inst.d(before, after_i)
                                } else {
                                    pick_cost
                                        + inst.d(pickup, after_i)
                                        + inst.d(prev_j, delivery)
                                        + inst.d(delivery, next)
                                        - inst.d(prev_j, next)
                                };
                                if best.is_none_or(|b| c < b.0) {
                                    best = Some((c, i, j));
                                }
                            }
                        }
                        if j == n {
                            break;
                        }
                        // Visit original stop j with the parcel on board.
                        let s = r.stops[j];
                        let site = &inst.sites[s];
                        let arrive = t + inst.d(at, s);
                        // Later than `latest[j]`, the rest of the route fails whatever comes after: a delivery
                        // further on only delays it more.
                        if arrive > site.due + 1e-9
                            || arrive.max(site.ready) > r.latest[j] + 1e-9
                            || r.load[j] + extra > cap
                        {
                            break;
                        }
                        t = arrive.max(site.ready) + site.service;
                        at = s;
                    }
                }
            }
            Request::FromDepot { delivery } => {
                for i in 0..=n {
                    if let Some(c) = self.insertion(r, delivery, None, i, i)
                        && best.is_none_or(|b| c < b.0)
                    {
                        best = Some((c, i, i));
                    }
                }
            }
        }
        best
    }

    fn apply(&self, r: &mut Route, q: usize, i: usize, j: usize) {
        match self.inst.requests[q] {
            Request::Pair { pickup, delivery } => {
                r.stops.insert(j, delivery);
                r.stops.insert(i, pickup);
            }
            Request::FromDepot { delivery } => r.stops.insert(i, delivery),
        }
        self.refresh(r);
    }

    fn sites_of(&self, q: usize) -> [usize; 2] {
        match self.inst.requests[q] {
            Request::Pair { pickup, delivery } => [pickup, delivery],
            Request::FromDepot { delivery } => [delivery, delivery],
        }
    }

    fn requests_in(&self, r: &Route) -> Vec<usize> {
        let mut v: Vec<usize> = r.stops.iter().map(|&s| self.inst.request_of[s]).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

impl Problem for Ctx<'_> {
    type Route = Route;
    /// Pickup (or lone delivery) before original position `i`, delivery before original position `j`.
    type Place = (usize, usize);

    fn requests_on(&self, r: &Route) -> Vec<usize> {
        self.requests_in(r)
    }

    fn is_empty(&self, r: &Route) -> bool {
        r.stops.is_empty()
    }

    fn cost(&self, r: &Route) -> f64 {
        r.distance
    }

    fn best_insertion(&mut self, r: &Route, q: usize) -> Option<(f64, (usize, usize))> {
        self.best_in_route(r, q).map(|(c, i, j)| (c, (i, j)))
    }

    fn insert(&mut self, r: &mut Route, q: usize, (i, j): (usize, usize)) -> bool {
        self.apply(r, q, i, j);
        true
    }

    fn remove(&mut self, r: &mut Route, qs: &[usize]) -> bool {
        r.stops.retain(|&s| !qs.contains(&self.inst.request_of[s]));
        self.refresh(r);
        // Fewer stops only arrive earlier: the rest stays feasible.
        true
    }

    fn removal_savings(&mut self, r: &Route) -> Vec<(usize, f64)> {
        let inst = self.inst;
        let site = |k: usize| if k < r.stops.len() { r.stops[k] } else { 0 };
        let before = |k: usize| if k == 0 { 0 } else { r.stops[k - 1] };
        // Per stop: the distance saved by skipping it alone.
        let alone: Vec<f64> = (0..r.stops.len())
            .map(|k| inst.d(before(k), r.stops[k]) + inst.d(r.stops[k], site(k + 1)) - inst.d(before(k), site(k + 1)))
            .collect();
        let mut first: Vec<(usize, usize)> = Vec::new(); // (request, position of its first stop)
        let mut out: Vec<(usize, f64)> = Vec::new();
        for (k, &s) in r.stops.iter().enumerate() {
            let q = inst.request_of[s];
            match self.inst.requests[q] {
                Request::FromDepot { .. } => out.push((q, alone[k])),
                Request::Pair { .. } => match first.iter().position(|&(p, _)| p == q) {
                    None => first.push((q, k)),
                    Some(at) => {
                        let (_, i) = first.swap_remove(at);
                        // Adjacent stops share an edge; apart, each saves what it saves alone.
                        let saving = if i + 1 == k {
                            inst.d(before(i), r.stops[i]) + inst.d(r.stops[i], s) + inst.d(s, site(k + 1))
                                - inst.d(before(i), site(k + 1))
                        } else {
                            alone[i] + alone[k]
                        };
                        out.push((q, saving));
                    }
                },
            }
        }
        out
    }

    fn relatedness(&self, a: usize, b: usize) -> f64 {
        let inst = self.inst;
        let (sa, sb) = (self.sites_of(a)[0], self.sites_of(b)[0]);
        inst.d(sa, sb) + 0.2 * (inst.sites[sa].ready - inst.sites[sb].ready).abs()
    }

    fn new_route(&self) -> Option<Route> {
        let mut r = Route::default();
        self.refresh(&mut r);
        Some(r)
    }
}

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub seed: u64,
    /// Requests removed per iteration, as a fraction range of all requests.
    pub remove_min: f64,
    pub remove_max: f64,
    /// Fleet-minimisation iterations without progress before the search turns to distance.
    pub fleet_stall: u64,
    /// Share of the budget the fleet minimisation may use at most.
    pub fleet_share: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { seed: 1, remove_min: 0.05, remove_max: 0.3, fleet_stall: 2_000, fleet_share: 0.5 }
    }
}

/// What a vehicle costs against distance: more than any route's distance, so vehicles come first.
const VEHICLE_COST: f64 = 100_000.0;
/// Cost of a request left in the bank while the fleet is being reduced.
const BANK_PENALTY: f64 = 1_000.0;

/// Solves `inst`. `used(iteration)` is asked before every iteration for the fraction of the budget spent; the
/// search stops at 1, spending the first `params.fleet_share` on the fleet and the rest on distance. Returns the
/// best solution, or `None` when construction cannot place every request with the vehicles available.
pub fn solve(inst: &Instance, params: Params, used: &mut dyn FnMut(u64) -> f64) -> Option<Solution> {
    let mut ctx = Ctx { inst };
    let mut rng = Rng::new(params.seed);
    let mut routes: Vec<Route> = Vec::new();
    let all: Vec<usize> = (0..inst.requests.len()).collect();
    if !alns::insert_all(&mut ctx, &mut routes, all, 2, 0.0, Some(inst.max_vehicles), &mut rng).is_empty() {
        return None;
    }
    let nq = inst.requests.len();
    let lo = ((nq as f64 * params.remove_min) as usize).max(1);
    let hi = ((nq as f64 * params.remove_max) as usize).max(lo + 1);
    let cfg = Config {
        remove_min: lo,
        remove_max: hi - 1,
        regrets: vec![1, 3],
        noise: 0.1,
        fleet: Fleet::Open {
            max_routes: inst.max_vehicles,
            route_cost: VEHICLE_COST,
            minimise: Some(Minimise {
                share: params.fleet_share,
                stall: params.fleet_stall,
                bank_penalty: BANK_PENALTY,
            }),
        },
        // At the start a move 5% worse than the current distance is accepted half the time, at the end
        // almost none is.
        worse_accepted: 0.05,
        cooling: 2_000.0,
    };
    let out = alns::run(&mut ctx, routes, &cfg, &mut rng, used);
    Some(Solution { routes: out.routes.into_iter().map(|r| r.stops).collect() })
}

#[cfg(test)]
mod tests {
    use super::super::check::check;
    use super::*;

    const LC101: &str = include_str!("../../../../data/pdptw/lc101.txt");
    const C101: &str = include_str!("../../../../data/vrptw/C101.txt");

    #[test]
    fn solves_feasibly_and_deterministically() {
        for (inst, its) in [
            (Instance::parse_lilim("lc101", LC101).expect("parses"), 600),
            (Instance::parse_solomon("C101", C101).expect("parses"), 600),
        ] {
            let run = |seed| {
                solve(&inst, Params { seed, ..Params::default() }, &mut |i| i as f64 / its as f64).expect("solved")
            };
            let a = run(3);
            let cost = check(&inst, &a).expect("the checker accepts the solver's solution");
            assert_eq!(a, run(3), "same seed, same solution");
            // Both instances have a known optimum of 10 vehicles and 828.94.
            assert!(cost.vehicles <= 12 && cost.distance < 1100.0, "{}: {cost:?}", inst.name);
        }
    }

    #[test]
    fn fast_pair_insertion_matches_brute_force() {
        let inst = Instance::parse_lilim("lc101", LC101).expect("parses");
        let ctx = Ctx { inst: &inst };
        let sol = solve(&inst, Params::default(), &mut |i| i as f64 / 30.0).expect("solved");
        let mut checked = 0;
        for stops in &sol.routes {
            // Take one request out of the route and compare both ways of putting it back anywhere.
            let q = inst.request_of[stops[0]];
            let mut r = Route {
                stops: stops.iter().copied().filter(|&s| inst.request_of[s] != q).collect(),
                ..Route::default()
            };
            ctx.refresh(&mut r);
            let Request::Pair { pickup, delivery } = inst.requests[q] else { panic!("pairs") };
            let mut brute: Option<(f64, usize, usize)> = None;
            for i in 0..=r.stops.len() {
                for j in i..=r.stops.len() {
                    if let Some(c) = ctx.insertion(&r, pickup, Some(delivery), i, j)
                        && brute.is_none_or(|b| c < b.0 - 1e-9)
                    {
                        brute = Some((c, i, j));
                    }
                }
            }
            let fast = ctx.best_in_route(&r, q);
            match (fast, brute) {
                (Some(f), Some(b)) => assert!((f.0 - b.0).abs() < 1e-6, "{f:?} vs {b:?}"),
                (f, b) => assert_eq!(f.is_some(), b.is_some(), "{f:?} vs {b:?}"),
            }
            checked += 1;
        }
        assert!(checked >= 5);
    }

    #[test]
    fn the_checker_catches_violations() {
        let inst = Instance::parse_lilim("lc101", LC101).expect("parses");
        let sol = solve(&inst, Params::default(), &mut |i| i as f64 / 20.0).expect("solved");
        // Swap a pickup behind its delivery.
        let mut bad = sol.clone();
        let r = bad.routes.iter_mut().find(|r| r.len() >= 2).expect("a route with a pair");
        let Request::Pair { pickup, delivery } = inst.requests[inst.request_of[r[0]]] else {
            panic!("Li & Lim has pairs")
        };
        let (pi, di) =
            (r.iter().position(|&s| s == pickup).expect("p"), r.iter().position(|&s| s == delivery).expect("d"));
        r.swap(pi, di);
        assert!(check(&inst, &bad).is_err());
        // Drop a request entirely.
        let mut missing = sol.clone();
        let gone = inst.request_of[missing.routes[0][0]];
        missing.routes[0].retain(|&s| inst.request_of[s] != gone);
        assert!(check(&inst, &missing).expect_err("missing").contains("visited 0 times"));
        // One vehicle too many.
        let mut many = sol;
        many.routes.extend(std::iter::repeat_n(vec![], 3));
        let small = Instance { max_vehicles: many.routes.iter().filter(|r| !r.is_empty()).count() - 1, ..inst.clone() };
        assert!(check(&small, &many).is_err());
    }
}
