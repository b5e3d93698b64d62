//! The one adaptive large neighbourhood search of the planner. It improves routes of requests for any
//! [`Problem`]: the Li & Lim / Solomon benchmark ([`crate::planner::pdptw::solve`], Euclidean distances, routes opened
//! and closed, vehicles first) and the dispatcher's background improvement ([`crate::planner::improve`], road travel
//! times, commitments, one route per robot), so that the solver the benchmark measures is the one production
//! runs.
//!
//! The engine owns the search: destroy operators (random, related, worst and route removal), repair by greedy
//! or regret-k insertion with noise over a cache of per-route insertion costs in which only the route that
//! changed is recomputed, simulated annealing cooled over the caller's budget, adaptive operator weights,
//! best-so-far tracking and, where routes may be closed, fleet minimisation with a request bank. The problem
//! owns what a route is, which requests may move, and the insertion-cost evaluation (each side keeps its own
//! fast pair insertion). The engine reads no clock: `used(iteration)` says how much of the budget is spent.
//! Same problem, start and seed: same answer.

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

/// What the engine needs to know about a routing problem. Requests are numbered `0..n` by the problem; a
/// request the problem does not report in [`Problem::requests_on`] never moves.
pub trait Problem {
    /// One route with whatever its insertion evaluator needs (timing arrays, the robot it belongs to).
    type Route: Clone;
    /// Where a request goes in a route, as [`Problem::best_insertion`] found it.
    type Place: Copy;

    /// The requests on `route` that may move, ascending.
    fn requests_on(&self, route: &Self::Route) -> Vec<usize>;
    /// Whether `route` has no stops at all (only asked where routes may be closed).
    fn is_empty(&self, route: &Self::Route) -> bool;
    /// What `route` costs (distance, travel time).
    fn cost(&self, route: &Self::Route) -> f64;
    /// The cheapest feasible insertion of request `q` into `route`: (added cost, where), or `None`.
    fn best_insertion(&mut self, route: &Self::Route, q: usize) -> Option<(f64, Self::Place)>;
    /// Puts `q` into `route` where [`Problem::best_insertion`] said. False (and `route` unchanged) when the
    /// result turns out infeasible after all.
    fn insert(&mut self, route: &mut Self::Route, q: usize, at: Self::Place) -> bool;
    /// Takes the requests `qs` (all on `route`) out of it. False when the rest is infeasible.
    fn remove(&mut self, route: &mut Self::Route, qs: &[usize]) -> bool;
    /// What taking each movable request out of `route` alone would save: (request, saving).
    fn removal_savings(&mut self, route: &Self::Route) -> Vec<(usize, f64)>;
    /// How far apart two requests are, in place and time; smaller is more related.
    fn relatedness(&self, a: usize, b: usize) -> f64;
    /// The routes worth trying for `q` (a mask over `routes`), or `None` for all of them.
    fn candidate_routes(&mut self, _routes: &[Self::Route], _q: usize) -> Option<Vec<bool>> {
        None
    }
    /// A new empty route, where routes may be opened.
    fn new_route(&self) -> Option<Self::Route> {
        None
    }
}

/// Whether the search may open and close routes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fleet {
    /// One route per vehicle, kept even when empty (the dispatcher's robots).
    Fixed,
    /// Routes open while fewer than `max_routes` exist and close when emptied; each costs `route_cost` on
    /// top of its own cost, so a large `route_cost` minimises vehicles first.
    Open { max_routes: usize, route_cost: f64, minimise: Option<Minimise> },
}

/// Fleet minimisation before the search for cost: empty the smallest route into a request bank, search with
/// no new route allowed and each banked request costing `bank_penalty`, until the bank is empty (one vehicle
/// fewer, and the next route is emptied) or `stall` iterations pass without the bank shrinking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minimise {
    /// Share of the budget it may use at most; the cost search cools over the rest.
    pub share: f64,
    pub stall: u64,
    pub bank_penalty: f64,
}

/// Search settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Requests removed per iteration, at least and at most (inclusive); route removal takes a whole route.
    pub remove_min: usize,
    pub remove_max: usize,
    /// Repair operators: `k = 1` is greedy insertion, `k >= 2` regret-k.
    pub regrets: Vec<usize>,
    /// Relative noise on the repair's choice, so equal regrets do not always resolve the same way.
    pub noise: f64,
    pub fleet: Fleet,
    /// At the start a move this much worse (as a fraction of the cost) is accepted half the time...
    pub worse_accepted: f64,
    /// ...and at the end of the budget the temperature is this many times lower.
    pub cooling: f64,
}

/// The best routes found and the iterations it took.
#[derive(Debug, Clone)]
pub struct Outcome<R> {
    pub routes: Vec<R>,
    pub iterations: u64,
}

/// The destroy operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destroy {
    Random,
    Related,
    Worst,
    Route,
}

const DESTROY: [Destroy; 4] = [Destroy::Random, Destroy::Related, Destroy::Worst, Destroy::Route];

/// A request's best insertion into one route: (added cost, where).
type Insertion<P> = (f64, <P as Problem>::Place);

/// Regret of a request with fewer than `k` feasible routes: so large that the requests with the fewest
/// options are placed first.
const MISSING_OPTION: f64 = 1e6;

/// Puts `pending` into `routes` by regret-`k` insertion (k = 1 is greedy) with relative `noise`, opening
/// routes up to `open` routes when nothing fits. Returns the requests that could not be placed.
pub fn insert_all<P: Problem>(
    p: &mut P,
    routes: &mut Vec<P::Route>,
    pending: Vec<usize>,
    k: usize,
    noise: f64,
    open: Option<usize>,
    rng: &mut Rng,
) -> Vec<usize> {
    repair(p, routes, pending, k, noise, open, true, rng)
}

/// Regret-k insertion over a cache of per-route best insertions. `keep_going`: place what fits when some
/// request fits nowhere (to bank the rest); otherwise give up as soon as one request cannot be placed.
#[allow(clippy::too_many_arguments)]
fn repair<P: Problem>(
    p: &mut P,
    routes: &mut Vec<P::Route>,
    mut pending: Vec<usize>,
    k: usize,
    noise: f64,
    open: Option<usize>,
    keep_going: bool,
    rng: &mut Rng,
) -> Vec<usize> {
    // Which routes each pending request may go to; routes opened later are open to every request.
    let mut allowed: Vec<Option<Vec<bool>>> = pending.iter().map(|&q| p.candidate_routes(routes, q)).collect();
    let may = |mask: &Option<Vec<bool>>, r: usize| mask.as_ref().is_none_or(|m| m.get(r).copied().unwrap_or(true));
    // cache[i][r]: the best insertion of pending[i] into route r. Only the route that changed is recomputed.
    let mut cache: Vec<Vec<Option<Insertion<P>>>> = Vec::with_capacity(pending.len());
    for (&q, mask) in pending.iter().zip(&allowed) {
        let row =
            routes.iter().enumerate().map(|(r, route)| if may(mask, r) { p.best_insertion(route, q) } else { None });
        cache.push(row.collect());
    }
    let mut failed = Vec::new();
    let mut opts: Vec<(f64, usize)> = Vec::new();
    while !pending.is_empty() {
        let mut pick: Option<(f64, usize, usize)> = None; // (score, index in pending, route)
        let mut stuck = false;
        for (idx, row) in cache.iter().enumerate() {
            opts.clear();
            opts.extend(row.iter().enumerate().filter_map(|(r, c)| c.map(|(c, _)| (c, r))));
            if opts.is_empty() {
                stuck = true;
                continue;
            }
            opts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let best = opts[0];
            let regret: f64 = if k <= 1 {
                -best.0
            } else {
                (1..k).map(|m| opts.get(m).map_or(MISSING_OPTION, |o| o.0) - best.0).sum()
            };
            let score = regret * (1.0 + noise * (rng.unit() - 0.5));
            if pick.is_none_or(|(s, _, _)| score > s) {
                pick = Some((score, idx, best.1));
            }
        }
        if stuck && !keep_going && open.is_none() {
            // Inserting elsewhere never makes room on a route, so this request will not fit: stop early.
            failed.append(&mut pending);
            break;
        }
        match pick {
            Some((_, idx, r)) => {
                let q = pending[idx];
                let (_, at) = cache[idx][r].expect("picked from the entries that exist");
                if !p.insert(&mut routes[r], q, at) {
                    cache[idx][r] = None;
                    continue;
                }
                pending.swap_remove(idx);
                cache.swap_remove(idx);
                allowed.swap_remove(idx);
                for ((row, &q), mask) in cache.iter_mut().zip(&pending).zip(&allowed) {
                    row[r] = if may(mask, r) { p.best_insertion(&routes[r], q) } else { None };
                }
            }
            None => {
                // Nothing fits anywhere: open a route for the first pending request, if a vehicle is left.
                let fresh = open.filter(|&max| routes.len() < max).and_then(|_| p.new_route());
                let Some(mut route) = fresh else {
                    failed.append(&mut pending);
                    break;
                };
                let q = pending.swap_remove(0);
                cache.swap_remove(0);
                allowed.swap_remove(0);
                match p.best_insertion(&route, q) {
                    Some((_, at)) if p.insert(&mut route, q, at) => {
                        for (row, &q) in cache.iter_mut().zip(&pending) {
                            row.push(p.best_insertion(&route, q));
                        }
                        routes.push(route);
                    }
                    _ => failed.push(q),
                }
            }
        }
    }
    failed
}

/// The search state: the weights of the operators and the iteration count.
struct Alns<'c> {
    cfg: &'c Config,
    destroy_w: [f64; DESTROY.len()],
    repair_w: Vec<f64>,
    iter: u64,
}

/// Scores of an operator's outcome, blended into its weight.
const SCORE_BEST: f64 = 3.0;
const SCORE_BETTER: f64 = 2.0;
const SCORE_OTHER: f64 = 0.5;
const SCORE_FAILED: f64 = 0.1;
/// How fast weights follow recent scores.
const REACTION: f64 = 0.05;

fn roulette(weights: &[f64], rng: &mut Rng) -> usize {
    let sum: f64 = weights.iter().sum();
    let mut x = rng.unit() * sum;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

/// Picks from a list sorted best first with a bias towards its top (Ropke and Pisinger's `y^p`, p = 3).
fn biased(len: usize, rng: &mut Rng) -> usize {
    ((rng.unit().powi(3) * len as f64) as usize).min(len.saturating_sub(1))
}

impl Alns<'_> {
    fn new(cfg: &Config) -> Alns<'_> {
        Alns { cfg, destroy_w: [1.0; DESTROY.len()], repair_w: vec![1.0; cfg.regrets.len().max(1)], iter: 0 }
    }

    fn reward(&mut self, op: usize, k: usize, score: f64) {
        self.destroy_w[op] = self.destroy_w[op] * (1.0 - REACTION) + REACTION * score;
        self.repair_w[k] = self.repair_w[k] * (1.0 - REACTION) + REACTION * score;
    }

    fn routes_cost<P: Problem>(&self, p: &P, routes: &[P::Route]) -> f64 {
        let own: f64 = routes.iter().map(|r| p.cost(r)).sum();
        match self.cfg.fleet {
            Fleet::Open { route_cost, .. } => own + route_cost * routes.len() as f64,
            Fleet::Fixed => own,
        }
    }

    /// Chooses a destroy operator and the requests it takes out of `routes`: (operator, [(request, route)]).
    /// `None` when no request may move.
    fn destroy<P: Problem>(
        &mut self,
        p: &mut P,
        routes: &[P::Route],
        rng: &mut Rng,
    ) -> Option<(usize, Vec<(usize, usize)>)> {
        let on: Vec<Vec<usize>> = routes.iter().map(|r| p.requests_on(r)).collect();
        let assigned: Vec<(usize, usize)> =
            on.iter().enumerate().flat_map(|(r, qs)| qs.iter().map(move |&q| (q, r))).collect();
        if assigned.is_empty() {
            return None;
        }
        let (lo, hi) = (self.cfg.remove_min.max(1), self.cfg.remove_max.max(self.cfg.remove_min.max(1)));
        let count = (lo + rng.below(hi - lo + 1)).min(assigned.len());
        let op = roulette(&self.destroy_w, rng);
        let chosen = match DESTROY[op] {
            Destroy::Random => {
                let mut pool = assigned;
                for k in 0..count {
                    let m = k + rng.below(pool.len() - k);
                    pool.swap(k, m);
                }
                pool.truncate(count);
                pool
            }
            Destroy::Related => {
                // A random request and the ones nearest to it in place and time (noised, so the same seed
                // request does not always bring the same company).
                let (seed, _) = assigned[rng.below(assigned.len())];
                let mut scored: Vec<(f64, usize)> = assigned
                    .iter()
                    .enumerate()
                    .map(|(i, &(q, _))| (p.relatedness(seed, q) * (1.0 + 0.3 * rng.unit()), i))
                    .collect();
                scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                scored.iter().take(count).map(|&(_, i)| assigned[i]).collect()
            }
            Destroy::Worst => {
                // The requests whose removal saves most, picked with a bias towards the top.
                let mut scored: Vec<(f64, usize, usize)> = Vec::with_capacity(assigned.len());
                for (r, route) in routes.iter().enumerate() {
                    if on[r].is_empty() {
                        continue;
                    }
                    scored.extend(p.removal_savings(route).into_iter().map(|(q, s)| (s, q, r)));
                }
                scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let mut out = Vec::with_capacity(count);
                while out.len() < count && !scored.is_empty() {
                    let (_, q, r) = scored.remove(biased(scored.len(), rng));
                    out.push((q, r));
                }
                out
            }
            Destroy::Route => {
                // Every movable request of one route, the smaller routes more likely: emptying a short route
                // is how a vehicle is saved, and a short route's requests are the easiest to place elsewhere.
                let mut by_size: Vec<(usize, f64, usize)> = on
                    .iter()
                    .enumerate()
                    .filter(|(_, qs)| !qs.is_empty())
                    .map(|(r, qs)| (qs.len(), p.cost(&routes[r]), r))
                    .collect();
                by_size.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
                let (_, _, r) = by_size[biased(by_size.len(), rng)];
                on[r].iter().map(|&q| (q, r)).collect()
            }
        };
        Some((op, chosen))
    }

    /// Takes `chosen` out of `routes` (closing routes left empty where routes may close) and returns the
    /// requests in the order they were chosen, or `None` when a route is infeasible without them.
    fn take_out<P: Problem>(
        &self,
        p: &mut P,
        routes: &mut Vec<P::Route>,
        chosen: &[(usize, usize)],
    ) -> Option<Vec<usize>> {
        let mut by_route: Vec<(usize, usize)> = chosen.iter().map(|&(q, r)| (r, q)).collect();
        by_route.sort_unstable();
        let mut k = 0;
        while k < by_route.len() {
            let r = by_route[k].0;
            let end = k + by_route[k..].iter().take_while(|x| x.0 == r).count();
            let qs: Vec<usize> = by_route[k..end].iter().map(|x| x.1).collect();
            if !p.remove(&mut routes[r], &qs) {
                return None;
            }
            k = end;
        }
        if matches!(self.cfg.fleet, Fleet::Open { .. }) {
            routes.retain(|r| !p.is_empty(r));
        }
        Some(chosen.iter().map(|&(q, _)| q).collect())
    }

    /// Fleet minimisation (see [`Minimise`]); returns the best complete routes found.
    fn minimise<P: Problem>(
        &mut self,
        p: &mut P,
        start: Vec<P::Route>,
        m: Minimise,
        rng: &mut Rng,
        used: &mut dyn FnMut(u64) -> f64,
    ) -> Vec<P::Route> {
        let own = |p: &P, routes: &[P::Route]| routes.iter().map(|r| p.cost(r)).sum::<f64>();
        let mut best = start.clone();
        let mut best_cost = self.routes_cost(p, &best);
        let mut cur = start;
        let mut bank: Vec<usize> = Vec::new();
        let mut stall = 0u64;
        // A gentle fixed schedule: this phase is about the bank, not the cost.
        let mut temp = 0.001 * own(p, &cur);
        while used(self.iter) < m.share {
            self.iter += 1;
            if bank.is_empty() {
                let c = self.routes_cost(p, &cur);
                if c < best_cost {
                    best = cur.clone();
                    best_cost = c;
                }
                if cur.len() <= 1 {
                    break;
                }
                let smallest = cur
                    .iter()
                    .enumerate()
                    .map(|(r, route)| (p.requests_on(route).len(), p.cost(route), r))
                    .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
                let Some((_, _, r)) = smallest else { break };
                bank = p.requests_on(&cur[r]);
                cur.remove(r);
                stall = 0;
                continue;
            }
            if stall >= m.stall {
                break;
            }
            stall += 1;
            let mut cand = cur.clone();
            let Some((op, chosen)) = self.destroy(p, &cand, rng) else { break };
            let Some(mut pending) = self.take_out(p, &mut cand, &chosen) else { continue };
            pending.extend(bank.iter().copied());
            let k = roulette(&self.repair_w, rng);
            let regret = self.cfg.regrets.get(k).copied().unwrap_or(1);
            let failed = repair(p, &mut cand, pending, regret, self.cfg.noise, None, true, rng);
            let fc = own(p, &cand) + m.bank_penalty * failed.len() as f64;
            let fcur = own(p, &cur) + m.bank_penalty * bank.len() as f64;
            let accept = fc < fcur || rng.unit() < (-(fc - fcur) / temp.max(1e-9)).exp();
            let score = if failed.len() < bank.len() {
                SCORE_BEST
            } else if fc < fcur - 1e-6 {
                SCORE_BETTER
            } else {
                SCORE_OTHER
            };
            self.reward(op, k, score);
            if accept {
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
}

/// Improves `start` (every request placed) until `used(iteration)` reaches 1, and returns the best routes
/// found. `rng` carries the seed; the same problem, start, settings and sequence of `used` answers give the
/// same outcome.
pub fn run<P: Problem>(
    p: &mut P,
    start: Vec<P::Route>,
    cfg: &Config,
    rng: &mut Rng,
    used: &mut dyn FnMut(u64) -> f64,
) -> Outcome<P::Route> {
    let mut s = Alns::new(cfg);
    let (open, from) = match cfg.fleet {
        Fleet::Open { max_routes, minimise, .. } => (Some(max_routes), minimise.map_or(0.0, |m| m.share)),
        Fleet::Fixed => (None, 0.0),
    };
    let mut best = match cfg.fleet {
        Fleet::Open { minimise: Some(m), .. } => s.minimise(p, start, m, rng, used),
        _ => start,
    };
    let mut best_cost = s.routes_cost(p, &best);
    let mut current = best.clone();
    let mut cur_cost = best_cost;
    // Simulated annealing cooled over the budget, not per iteration, so a long budget keeps exploring. The
    // scale is the routes' own cost, without the per-route cost, which no worse move may pay.
    let own: f64 = current.iter().map(|r| p.cost(r)).sum();
    let t_start = (cfg.worse_accepted * own / std::f64::consts::LN_2).max(1e-6);
    let t_end = t_start / cfg.cooling.max(1.0);
    let from = from.clamp(0.0, 0.99);
    loop {
        let spent = used(s.iter);
        if spent >= 1.0 {
            break;
        }
        let progress = ((spent - from) / (1.0 - from)).clamp(0.0, 1.0);
        let temp = t_start * (t_end / t_start).powf(progress);
        s.iter += 1;
        let mut cand = current.clone();
        let Some((op, chosen)) = s.destroy(p, &cand, rng) else { break };
        let k = roulette(&s.repair_w, rng);
        let Some(pending) = s.take_out(p, &mut cand, &chosen) else {
            s.reward(op, k, SCORE_FAILED);
            continue;
        };
        let regret = cfg.regrets.get(k).copied().unwrap_or(1);
        if !repair(p, &mut cand, pending, regret, cfg.noise, open, false, rng).is_empty() {
            s.reward(op, k, SCORE_FAILED);
            continue;
        }
        let c = s.routes_cost(p, &cand);
        let score = if c < best_cost - 1e-6 {
            SCORE_BEST
        } else if c < cur_cost - 1e-6 {
            SCORE_BETTER
        } else {
            SCORE_OTHER
        };
        s.reward(op, k, score);
        if c < cur_cost || rng.unit() < (-(c - cur_cost) / temp).exp() {
            current = cand;
            cur_cost = c;
            if c < best_cost - 1e-6 {
                best = current.clone();
                best_cost = c;
            }
        }
    }
    Outcome { routes: best, iterations: s.iter }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy problem the engine knows nothing special about: visit points from a depot at the origin, at
    /// most `cap` points a route, shortest total length.
    struct Points {
        at: Vec<[f64; 2]>,
        cap: usize,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Tour {
        stops: Vec<usize>,
        len: f64,
    }

    impl Points {
        fn xy(&self, s: Option<usize>) -> [f64; 2] {
            s.map_or([0.0, 0.0], |s| self.at[s])
        }
        fn d(&self, a: Option<usize>, b: Option<usize>) -> f64 {
            let (a, b) = (self.xy(a), self.xy(b));
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
        }
        /// The stop before position `k` and the one at it (`None`: the depot).
        fn around(t: &Tour, k: usize) -> (Option<usize>, Option<usize>) {
            (k.checked_sub(1).map(|k| t.stops[k]), t.stops.get(k).copied())
        }
        fn measure(&self, t: &mut Tour) {
            let mut at = None;
            t.len = 0.0;
            for &s in &t.stops {
                t.len += self.d(at, Some(s));
                at = Some(s);
            }
            t.len += self.d(at, None);
        }
    }

    impl Problem for Points {
        type Route = Tour;
        type Place = usize;

        fn requests_on(&self, t: &Tour) -> Vec<usize> {
            let mut v = t.stops.clone();
            v.sort_unstable();
            v
        }
        fn is_empty(&self, t: &Tour) -> bool {
            t.stops.is_empty()
        }
        fn cost(&self, t: &Tour) -> f64 {
            t.len
        }
        fn best_insertion(&mut self, t: &Tour, q: usize) -> Option<(f64, usize)> {
            if t.stops.len() >= self.cap {
                return None;
            }
            (0..=t.stops.len())
                .map(|k| {
                    let (a, b) = Self::around(t, k);
                    (self.d(a, Some(q)) + self.d(Some(q), b) - self.d(a, b), k)
                })
                .min_by(|x, y| x.0.total_cmp(&y.0))
        }
        fn insert(&mut self, t: &mut Tour, q: usize, at: usize) -> bool {
            t.stops.insert(at, q);
            self.measure(t);
            true
        }
        fn remove(&mut self, t: &mut Tour, qs: &[usize]) -> bool {
            t.stops.retain(|s| !qs.contains(s));
            self.measure(t);
            true
        }
        fn removal_savings(&mut self, t: &Tour) -> Vec<(usize, f64)> {
            (0..t.stops.len())
                .map(|k| {
                    let (a, _) = Self::around(t, k);
                    let b = t.stops.get(k + 1).copied();
                    let s = Some(t.stops[k]);
                    (t.stops[k], self.d(a, s) + self.d(s, b) - self.d(a, b))
                })
                .collect()
        }
        fn relatedness(&self, a: usize, b: usize) -> f64 {
            self.d(Some(a), Some(b))
        }
        fn new_route(&self) -> Option<Tour> {
            Some(Tour { stops: vec![], len: 0.0 })
        }
    }

    fn points(n: usize, cap: usize) -> Points {
        let mut rng = Rng::new(5);
        Points { at: (0..n).map(|_| [rng.unit() * 100.0 - 50.0, rng.unit() * 100.0 - 50.0]).collect(), cap }
    }

    fn config(fleet: Fleet) -> Config {
        Config {
            remove_min: 2,
            remove_max: 8,
            regrets: vec![1, 2, 3],
            noise: 0.1,
            fleet,
            worse_accepted: 0.05,
            cooling: 1_000.0,
        }
    }

    fn iterations(n: u64) -> impl FnMut(u64) -> f64 {
        move |i| i as f64 / n as f64
    }

    /// Every request exactly once over all routes.
    fn placed_once(p: &Points, routes: &[Tour]) -> bool {
        let mut all: Vec<usize> = routes.iter().flat_map(|t| t.stops.clone()).collect();
        all.sort_unstable();
        all == (0..p.at.len()).collect::<Vec<_>>()
    }

    #[test]
    fn same_seed_same_routes() {
        let run = |seed| {
            let mut p = points(40, 8);
            let mut rng = Rng::new(seed);
            let mut routes = Vec::new();
            let left = insert_all(&mut p, &mut routes, (0..40).collect(), 2, 0.0, Some(10), &mut rng);
            assert!(left.is_empty());
            let fleet = Fleet::Open {
                max_routes: 10,
                route_cost: 10_000.0,
                minimise: Some(Minimise { share: 0.3, stall: 200, bank_penalty: 500.0 }),
            };
            run(&mut p, routes, &config(fleet), &mut rng, &mut iterations(600))
        };
        let (a, b) = (run(3), run(3));
        assert_eq!(a.routes, b.routes, "same seed, same routes");
        assert_eq!(a.iterations, b.iterations);
        assert!(placed_once(&points(40, 8), &a.routes));
        assert_eq!(a.routes.len(), 5, "40 points, 8 a route: the fleet is minimised to 5");
    }

    #[test]
    fn a_fixed_fleet_keeps_its_routes_and_never_gets_worse() {
        let mut p = points(30, 30);
        // A poor start: points dealt round-robin to four routes, one left empty.
        let mut routes: Vec<Tour> =
            (0..4).map(|r| Tour { stops: (0..30).filter(|s| r < 3 && s % 3 == r).collect(), len: 0.0 }).collect();
        for t in &mut routes {
            p.measure(t);
        }
        let start: f64 = routes.iter().map(|t| t.len).sum();
        let out = run(&mut p, routes, &config(Fleet::Fixed), &mut Rng::new(1), &mut iterations(400));
        assert_eq!(out.routes.len(), 4, "no route opened or closed");
        assert!(placed_once(&p, &out.routes));
        let end: f64 = out.routes.iter().map(|t| t.len).sum();
        assert!(end < 0.8 * start, "{start} -> {end}");
        for t in &out.routes {
            let mut again = t.clone();
            p.measure(&mut again);
            assert!((again.len - t.len).abs() < 1e-9, "the reported cost is the route's cost");
        }
    }

    #[test]
    fn regret_repair_places_the_constrained_request_first() {
        // Two routes with room for one more point each. Point 0 fits only the first route; greedy by cost
        // alone would give its only place to point 1, which fits both.
        struct Only<'a>(&'a mut Points);
        let mut base = Points { at: vec![[10.0, 0.0], [9.0, 0.0]], cap: 1 };
        let mut routes = vec![Tour { stops: vec![], len: 0.0 }, Tour { stops: vec![], len: 0.0 }];
        impl Problem for Only<'_> {
            type Route = Tour;
            type Place = usize;
            fn requests_on(&self, t: &Tour) -> Vec<usize> {
                self.0.requests_on(t)
            }
            fn is_empty(&self, t: &Tour) -> bool {
                t.stops.is_empty()
            }
            fn cost(&self, t: &Tour) -> f64 {
                t.len
            }
            fn best_insertion(&mut self, t: &Tour, q: usize) -> Option<(f64, usize)> {
                self.0.best_insertion(t, q)
            }
            fn insert(&mut self, t: &mut Tour, q: usize, at: usize) -> bool {
                self.0.insert(t, q, at)
            }
            fn remove(&mut self, t: &mut Tour, qs: &[usize]) -> bool {
                self.0.remove(t, qs)
            }
            fn removal_savings(&mut self, t: &Tour) -> Vec<(usize, f64)> {
                self.0.removal_savings(t)
            }
            fn relatedness(&self, a: usize, b: usize) -> f64 {
                self.0.relatedness(a, b)
            }
            fn candidate_routes(&mut self, routes: &[Tour], q: usize) -> Option<Vec<bool>> {
                Some((0..routes.len()).map(|r| q == 1 || r == 0).collect())
            }
        }
        let mut only = Only(&mut base);
        let greedy = {
            let mut r = routes.clone();
            insert_all(&mut only, &mut r, vec![0, 1], 1, 0.0, None, &mut Rng::new(1))
        };
        assert_eq!(greedy, vec![0], "greedy takes the cheaper point first and strands the other");
        let left = insert_all(&mut only, &mut routes, vec![0, 1], 2, 0.0, None, &mut Rng::new(1));
        assert!(left.is_empty(), "regret places the point with one option first: {left:?}");
        assert_eq!(routes[0].stops, vec![0]);
    }
}
