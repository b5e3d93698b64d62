//! The Li & Lim / Solomon benchmark as a problem for the planner's one search engine ([`crate::planner::alns`]): routes
//! of sites on Euclidean distances with the timing arrays that make a pair insertion at most O(n^2) (pruned by
//! bounds, usually far less), routes opened and closed, vehicles first and distance second. [`solve`] builds a start by regret insertion and hands it to
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
    /// Length of the edge into each position: `edge[k]` from the stop before `k` (or the depot) to stop `k`
    /// (or the depot, `k == stops.len()`).
    edge: Vec<f64>,
    load_at_depot: i32,
    distance: f64,
}

/// What [`Ctx::best_pair`] knows of one delivery position `k`: the legs from stop `k - 1` to the delivery and
/// from it to stop `k`, what it adds there, and the least of that at `k` or later where it fits on the route's
/// own timing.
#[derive(Debug, Clone, Copy)]
struct Slot {
    to: f64,
    from: f64,
    detour: f64,
    bound: f64,
}

/// Whether a delivery at `ds`, reached `to` after leaving the stop before position `k` at `leave`, is on time
/// and, `from` before stop `k` (or the depot), leaves that stop able to start by its latest start.
#[inline]
fn fits(inst: &Instance, r: &Route, ds: &super::Site, k: usize, leave: f64, to: f64, from: f64) -> bool {
    let arrive_d = leave + to;
    if arrive_d > ds.due + 1e-9 {
        return false;
    }
    let arrive_next = arrive_d.max(ds.ready) + ds.service + from;
    match r.stops.get(k) {
        Some(&next) => arrive_next.max(inst.sites[next].ready) <= r.latest[k] + 1e-9,
        None => arrive_next <= inst.sites[0].due + 1e-9,
    }
}

struct Ctx<'a> {
    inst: &'a Instance,
    /// Scratch of [`Ctx::best_pair`], kept so that the hottest call allocates nothing.
    scratch: Vec<Slot>,
}

impl<'a> Ctx<'a> {
    fn new(inst: &'a Instance) -> Self {
        Self { inst, scratch: Vec::new() }
    }

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
        r.edge.clear();
        r.edge.extend((0..=n).map(|k| {
            let before = if k == 0 { 0 } else { r.stops[k - 1] };
            inst.d(before, r.stops.get(k).copied().unwrap_or(0))
        }));
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
    fn best_in_route(&mut self, r: &Route, q: usize) -> Option<(f64, usize, usize)> {
        match self.inst.requests[q] {
            Request::Pair { pickup, delivery } => self.best_pair(r, pickup, delivery),
            Request::FromDepot { delivery } => {
                let mut best: Option<(f64, usize, usize)> = None;
                for i in 0..=r.stops.len() {
                    if let Some(c) = self.insertion(r, delivery, None, i, i)
                        && best.is_none_or(|b| c < b.0)
                    {
                        best = Some((c, i, i));
                    }
                }
                best
            }
        }
    }

    /// The best insertion of the pair `pickup`, `delivery` into `r`: (cost, i, j), pickup before original
    /// position `i`, delivery before original position `j`. The same answer as trying every pair of positions
    /// with [`Ctx::insertion`]; this is where the solver spends most of its time.
    ///
    /// Where the pickup goes first and the delivery later (`j > i`), the cost splits into the pickup's detour
    /// at `i` and the delivery's detour at `j`, and the delivery's part does not depend on `i`. So the delivery
    /// detours are computed once per call, each with whether the delivery fits there even on the route's own
    /// timing (the pickup only delays what follows it, so a delivery that does not fit then never fits), and
    /// the least of those that fit from each position on bounds every remaining candidate: a pickup position,
    /// or the rest of a forward walk, that cannot beat the best found is not walked. Positions outside the
    /// windows the time windows allow (found by binary search: service starts and latest starts both only
    /// grow along a route) are not looked at.
    fn best_pair(&mut self, r: &Route, pickup: usize, delivery: usize) -> Option<(f64, usize, usize)> {
        let inst = self.inst;
        let n = r.stops.len();
        let cap = inst.capacity;
        let extra = inst.sites[pickup].demand;
        let (ps, ds) = (&inst.sites[pickup], &inst.sites[delivery]);
        let site_at = |k: usize| r.stops.get(k).copied().unwrap_or(0);
        // The delivery can only go after a stop served by its due time (service starts only get later along a
        // route) and before a stop whose latest start leaves room for its ready time and service (latest
        // starts only get later too); the pickup likewise.
        let k_hi = r.start.partition_point(|&s| s <= ds.due + 1e-9);
        let k_lo = r.latest.partition_point(|&l| l + 1e-9 < ds.ready + ds.service);
        let i_lo = r.latest.partition_point(|&l| l + 1e-9 < ps.ready + ps.service);
        let i_hi = r.start.partition_point(|&s| s <= ps.due + 1e-9).min(k_hi);
        // A delivery apart from its pickup comes after a stop, and after the first stop the pickup may precede.
        let k_lo = k_lo.max(i_lo + 1);
        if i_lo > i_hi {
            return None;
        }

        // Per delivery position k in k_lo..=k_hi (between original stops k-1 and k): the legs to and from the
        // delivery, what it adds (`detour`), and the least detour at k or later among the positions where the
        // delivery fits on the original timing (`bound`).
        let s = &mut self.scratch;
        s.clear();
        s.resize(n + 2, Slot { to: 0.0, from: 0.0, detour: f64::INFINITY, bound: f64::INFINITY });
        for k in (k_lo..=k_hi).rev() {
            let prev = r.stops[k - 1];
            let (to, from) = (inst.d(prev, delivery), inst.d(delivery, site_at(k)));
            let detour = to + from - r.edge[k];
            let next_bound = s[k + 1].bound;
            let bound = if detour < next_bound
                && r.load[k - 1] + extra <= cap
                && fits(inst, r, ds, k, r.start[k - 1] + inst.sites[prev].service, to, from)
            {
                detour
            } else {
                next_bound
            };
            s[k] = Slot { to, from, detour, bound };
        }
        let s = &self.scratch;
        // The bound from position k on; below the window it is the window's.
        let bound = |k: usize| s[k.max(k_lo)].bound;
        let mut best: Option<(f64, usize, usize)> = None;
        let beaten = |best: Option<(f64, usize, usize)>, c: f64| best.is_some_and(|b| c >= b.0);
        let p_to_d = inst.d(pickup, delivery);
        for i in i_lo..=i_hi {
            let (t0, before) = if i == 0 {
                (inst.sites[0].ready, 0)
            } else {
                (r.start[i - 1] + inst.sites[r.stops[i - 1]].service, r.stops[i - 1])
            };
            let to_p = inst.d(before, pickup);
            let arrive_p = t0 + to_p;
            if arrive_p > ps.due + 1e-9 {
                // Later positions leave even later.
                break;
            }
            let load_before = if i == 0 { r.load_at_depot } else { r.load[i - 1] };
            if load_before + extra > cap {
                continue;
            }
            let after_i = site_at(i);
            let (p_to_after, d_to_after) = (inst.d(pickup, after_i), inst.d(delivery, after_i));
            let pick_detour = to_p + p_to_after - r.edge[i];
            let together = to_p + p_to_d + d_to_after - r.edge[i];
            if beaten(best, together.min(pick_detour + bound(i + 1))) {
                continue;
            }
            let mut t = arrive_p.max(ps.ready) + ps.service;
            // The delivery right after the pickup.
            if !beaten(best, together) && fits(inst, r, ds, i, t, p_to_d, d_to_after) {
                best = Some((together, i, i));
            }
            // Walk forward, carrying the parcel past original stop j, and try the delivery right after it.
            for j in i..k_hi {
                if beaten(best, pick_detour + bound(j + 1)) {
                    break;
                }
                let stop = &inst.sites[r.stops[j]];
                let arrive = t + if j == i { p_to_after } else { r.edge[j] };
                // Later than `latest[j]`, the rest of the route fails whatever comes after: a delivery
                // further on only delays it more.
                if arrive > stop.due + 1e-9 || arrive.max(stop.ready) > r.latest[j] + 1e-9 || r.load[j] + extra > cap {
                    break;
                }
                t = arrive.max(stop.ready) + stop.service;
                let k = j + 1;
                if k < k_lo {
                    continue;
                }
                let c = pick_detour + s[k].detour;
                if beaten(best, c) {
                    continue;
                }
                if fits(inst, r, ds, k, t, s[k].to, s[k].from) {
                    best = Some((c, i, k));
                } else if t + s[k].to > ds.due + 1e-9 {
                    // Distances obey the triangle inequality, so from any later stop the delivery is reached
                    // no earlier.
                    break;
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
    let mut ctx = Ctx::new(inst);
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
        let tight = Instance::parse_lilim("lc101", LC101).expect("parses");
        // The same sites with every time window opened halfway to the depot's closing: long, loose routes like
        // those of the lr2 and lrc2 instances, where the pruning has the most to cut.
        let mut loose = tight.clone();
        let close = loose.sites[0].due;
        for site in loose.sites.iter_mut().skip(1) {
            site.due = (site.due + close) / 2.0;
        }
        let mut checked = 0;
        for (inst, its) in [(&tight, 30), (&loose, 300)] {
            let mut ctx = Ctx::new(inst);
            let sol = solve(inst, Params::default(), &mut |i| i as f64 / its as f64).expect("solved");
            for stops in &sol.routes {
                // Every request put into this route (taken out of it first where it is on it), both ways.
                for q in 0..inst.requests.len() {
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
                        (Some(f), Some(b)) => assert!((f.0 - b.0).abs() < 1e-6, "{}: {f:?} vs {b:?}", inst.name),
                        (f, b) => assert_eq!(f.is_some(), b.is_some(), "{}: {f:?} vs {b:?}", inst.name),
                    }
                    if let Some((_, i, j)) = fast {
                        assert!(
                            ctx.insertion(&r, pickup, Some(delivery), i, j).is_some(),
                            "the fast answer is feasible"
                        );
                    }
                    checked += usize::from(fast.is_some());
                }
            }
        }
        assert!(checked >= 100, "{checked}");
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
