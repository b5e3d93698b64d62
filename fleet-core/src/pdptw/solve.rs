//! The PDPTW solver: regret insertion to construct, then adaptive large neighbourhood search (random, worst,
//! related and route removals; greedy and regret-3 reinsertion; simulated-annealing acceptance) with a route
//! elimination move, minimising vehicles first and distance second. Deterministic for a seed and a number of
//! iterations; anytime under a budget the caller measures: `used(iteration)` returns the fraction of the budget
//! spent (by time or by iterations), because the core reads no clock.

use super::{Instance, Request, Solution};

/// A small deterministic generator (SplitMix64): seeds come in as data, no random source is read.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One route with the timing arrays that make an insertion check cheap.
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
                        if arrive > site.due + 1e-9 || r.load[j] + extra > cap {
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

    /// Inserts `pending` requests by regret-k (k = 1 is greedy), opening routes while vehicles remain. Returns
    /// the requests that could not be placed.
    fn repair(
        &self,
        routes: &mut Vec<Route>,
        mut pending: Vec<usize>,
        k: usize,
        rng: &mut Rng,
        noise: f64,
        open_routes: bool,
    ) -> Vec<usize> {
        // cost[q][r]: best insertion of q into route r.
        let mut cache: Vec<Vec<Option<(f64, usize, usize)>>> =
            pending.iter().map(|&q| routes.iter().map(|r| self.best_in_route(r, q)).collect()).collect();
        let mut failed = Vec::new();
        while !pending.is_empty() {
            let mut pick: Option<(f64, usize, usize, usize, usize)> = None; // (score, idx, route, i, j)
            for (idx, row) in cache.iter().enumerate() {
                let mut opts: Vec<(f64, usize, usize, usize)> =
                    row.iter().enumerate().filter_map(|(ri, c)| c.map(|(c, i, j)| (c, ri, i, j))).collect();
                if opts.is_empty() {
                    continue;
                }
                opts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let best = opts[0];
                let regret: f64 =
                    if k <= 1 { -best.0 } else { (1..k).map(|m| opts.get(m).map_or(1e6, |o| o.0) - best.0).sum() };
                let score = regret * (1.0 + noise * (rng.unit() - 0.5));
                if pick.is_none_or(|p| score > p.0) {
                    pick = Some((score, idx, best.1, best.2, best.3));
                }
            }
            match pick {
                Some((_, idx, ri, i, j)) => {
                    let q = pending.swap_remove(idx);
                    cache.swap_remove(idx);
                    self.apply(&mut routes[ri], q, i, j);
                    for (row, &p) in cache.iter_mut().zip(&pending) {
                        row[ri] = self.best_in_route(&routes[ri], p);
                    }
                }
                None => {
                    // Nothing fits anywhere: open a route for the hardest-to-place request, if a vehicle is left.
                    if !open_routes || routes.len() >= self.inst.max_vehicles {
                        failed.append(&mut pending);
                        break;
                    }
                    let q = pending.swap_remove(0);
                    cache.swap_remove(0);
                    let mut r = Route::default();
                    self.refresh(&mut r);
                    match self.best_in_route(&r, q) {
                        Some((_, i, j)) => {
                            self.apply(&mut r, q, i, j);
                            routes.push(r);
                            let last = routes.len() - 1;
                            for (row, &p) in cache.iter_mut().zip(&pending) {
                                row.push(self.best_in_route(&routes[last], p));
                            }
                        }
                        None => failed.push(q),
                    }
                }
            }
        }
        failed
    }

    fn remove(&self, routes: &mut Vec<Route>, reqs: &[usize]) {
        let mut drop = vec![false; self.inst.n()];
        for &q in reqs {
            for s in self.sites_of(q) {
                drop[s] = true;
            }
        }
        for r in routes.iter_mut() {
            let before = r.stops.len();
            r.stops.retain(|&s| !drop[s]);
            if r.stops.len() != before {
                self.refresh(r);
            }
        }
        routes.retain(|r| !r.stops.is_empty());
    }

    fn requests_in(&self, r: &Route) -> Vec<usize> {
        let mut v: Vec<usize> = r.stops.iter().map(|&s| self.inst.request_of[s]).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Objective: vehicles first, then distance.
fn objective(routes: &[Route]) -> f64 {
    routes.len() as f64 * 100_000.0 + routes.iter().map(|r| r.distance).sum::<f64>()
}

/// Chooses the requests to take out this iteration: random, related (near a seed request in place and time) or
/// worst (whose stops cost most where they are).
fn destroy(ctx: &Ctx<'_>, cand: &[Route], rng: &mut Rng, params: &Params) -> Vec<usize> {
    let inst = ctx.inst;
    let nq = inst.requests.len();
    let lo = ((nq as f64 * params.remove_min) as usize).max(1);
    let hi = ((nq as f64 * params.remove_max) as usize).max(lo + 1);
    let q = lo + rng.below(hi - lo);
    match rng.below(3) {
        0 => {
            let mut v: Vec<usize> = (0..nq).collect();
            for k in 0..q.min(nq) {
                let m = k + rng.below(nq - k);
                v.swap(k, m);
            }
            v.truncate(q);
            v
        }
        1 => {
            // Related removal: requests near a random seed request.
            let seed = rng.below(nq);
            let s0 = ctx.sites_of(seed)[0];
            let mut v: Vec<(f64, usize)> = (0..nq)
                .map(|r| {
                    let s = ctx.sites_of(r)[0];
                    let rel = inst.d(s0, s) + 0.2 * (inst.sites[s0].ready - inst.sites[s].ready).abs();
                    (rel * (1.0 + 0.3 * rng.unit()), r)
                })
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v.into_iter().take(q).map(|x| x.1).collect()
        }
        _ => {
            // Worst removal: the requests whose stops cost most in their routes.
            let mut v: Vec<(f64, usize)> = Vec::new();
            for r in cand {
                for (k, &s) in r.stops.iter().enumerate() {
                    let prev = if k == 0 { 0 } else { r.stops[k - 1] };
                    let next = r.stops.get(k + 1).copied().unwrap_or(0);
                    let saving = inst.d(prev, s) + inst.d(s, next) - inst.d(prev, next);
                    v.push((saving * (0.7 + 0.6 * rng.unit()), inst.request_of[s]));
                }
            }
            v.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut out: Vec<usize> = v.into_iter().map(|x| x.1).collect();
            let mut seen = vec![false; nq];
            out.retain(|&r| !std::mem::replace(&mut seen[r], true));
            out.truncate(q);
            out
        }
    }
}

/// Cost of a request left unplaced while the fleet is being reduced.
const BANK_PENALTY: f64 = 1_000.0;

fn distance(routes: &[Route]) -> f64 {
    routes.iter().map(|r| r.distance).sum()
}

/// Fleet minimisation: empty the smallest route into a request bank, then run the large neighbourhood search
/// with no new routes allowed and unplaced requests penalised, until the bank is empty (one vehicle fewer, and
/// the next route is emptied) or the search stalls. Returns the best complete solution found.
fn minimise_fleet(
    ctx: &Ctx<'_>,
    start: Vec<Route>,
    params: &Params,
    rng: &mut Rng,
    iter: &mut u64,
    used: &mut dyn FnMut(u64) -> f64,
    until: f64,
) -> Vec<Route> {
    let mut best = start.clone();
    let mut cur = start;
    let mut bank: Vec<usize> = Vec::new();
    let mut stall = 0u64;
    let mut temp = 0.01 * distance(&cur) / 10.0;
    while used(*iter) < until {
        *iter += 1;
        if bank.is_empty() {
            if objective(&cur) < objective(&best) {
                best = cur.clone();
            }
            if cur.len() <= 1 {
                break;
            }
            let (ri, _) = cur
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.stops.len().cmp(&b.1.stops.len()).then(a.1.distance.total_cmp(&b.1.distance)))
                .expect("non-empty");
            bank = ctx.requests_in(&cur[ri]);
            cur.remove(ri);
            stall = 0;
            continue;
        }
        if stall >= params.fleet_stall {
            break;
        }
        stall += 1;
        let mut cand = cur.clone();
        let removed = destroy(ctx, &cand, rng, params);
        ctx.remove(&mut cand, &removed);
        let mut pending = removed;
        pending.extend(bank.iter().copied());
        let k = if rng.below(2) == 0 { 1 } else { 3 };
        let failed = ctx.repair(&mut cand, pending, k, rng, 0.1, false);
        let fc = distance(&cand) + BANK_PENALTY * failed.len() as f64;
        let fcur = distance(&cur) + BANK_PENALTY * bank.len() as f64;
        if fc < fcur || rng.unit() < (-(fc - fcur) / temp.max(1e-9)).exp() {
            if failed.len() < bank.len() {
                stall = 0;
            }
            cur = cand;
            bank = failed;
        }
        temp *= 0.999;
    }
    best
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

/// Solves `inst`. `used(iteration)` is asked before every iteration for the fraction of the budget spent; the
/// search stops at 1, spending the first `params.fleet_share` on the fleet and the rest on distance. Returns the
/// best solution, or `None` when construction cannot place every request with the vehicles available.
pub fn solve(inst: &Instance, params: Params, used: &mut dyn FnMut(u64) -> f64) -> Option<Solution> {
    let ctx = Ctx { inst };
    let mut rng = Rng::new(params.seed);
    let mut routes: Vec<Route> = Vec::new();
    let all: Vec<usize> = (0..inst.requests.len()).collect();
    if !ctx.repair(&mut routes, all, 2, &mut rng, 0.0, true).is_empty() {
        return None;
    }
    let mut iter = 0u64;
    let mut best = minimise_fleet(&ctx, routes, &params, &mut rng, &mut iter, used, params.fleet_share);
    let mut current = best.clone();
    // Simulated annealing cooled over the budget, not per iteration, so a long budget keeps exploring: at the
    // start a move 5% worse than the current distance is accepted half the time, at the end almost none is.
    let t_start = 0.05 * distance(&current) / std::f64::consts::LN_2;
    let t_end = t_start / 2_000.0;
    let share = params.fleet_share.clamp(0.0, 0.99);
    loop {
        let spent = used(iter);
        if spent >= 1.0 {
            break;
        }
        let progress = ((spent - share) / (1.0 - share)).clamp(0.0, 1.0);
        let temp = t_start * (t_end / t_start).powf(progress);
        iter += 1;
        let mut cand = current.clone();
        // Every so often, try to empty the route with the fewest stops.
        let removed: Vec<usize> = if iter.is_multiple_of(50) && cand.len() > 1 {
            let (ri, _) = cand.iter().enumerate().min_by_key(|(_, r)| r.stops.len()).expect("non-empty");
            ctx.requests_in(&cand[ri])
        } else {
            destroy(&ctx, &cand, &mut rng, &params)
        };
        ctx.remove(&mut cand, &removed);
        let k = if rng.below(2) == 0 { 1 } else { 3 };
        let failed = ctx.repair(&mut cand, removed, k, &mut rng, 0.1, true);
        if !failed.is_empty() {
            continue;
        }
        let (fc, fcur, fbest) = (objective(&cand), objective(&current), objective(&best));
        if fc < fcur || rng.unit() < (-(fc - fcur) / temp.max(1e-9)).exp() {
            current = cand;
            if fc < fbest {
                best = current.clone();
            }
        }
    }
    Some(Solution { routes: best.into_iter().map(|r| r.stops).collect() })
}

#[cfg(test)]
mod tests {
    use super::super::check::check;
    use super::*;

    const LC101: &str = include_str!("../../../data/pdptw/lc101.txt");
    const C101: &str = include_str!("../../../data/vrptw/C101.txt");

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
