//! The pickup-and-delivery problem with time windows as the optimizer sees it, and readers for the public
//! benchmarks: Li & Lim PDPTW instances (pairs of pickup and delivery) and Solomon VRPTW instances (every order
//! starts at the depot: a delivery whose parcel is on board from the start).
//!
//! Distances are Euclidean in double precision, travel time equals distance (speed 1), an early vehicle waits,
//! service must start by the due time, and every route starts and ends at the depot (site 0).

pub mod check;
pub mod solve;

use crate::CoreError;

/// A place to visit. For a pickup `demand > 0`, for a delivery `demand < 0`; the depot has 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    pub x: f64,
    pub y: f64,
    pub demand: i32,
    pub ready: f64,
    pub due: f64,
    pub service: f64,
}

/// One order: a pickup and its delivery, or (VRPTW) a delivery loaded at the depot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Pair { pickup: usize, delivery: usize },
    FromDepot { delivery: usize },
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    /// Vehicles available.
    pub max_vehicles: usize,
    pub capacity: i32,
    /// Site 0 is the depot.
    pub sites: Vec<Site>,
    pub requests: Vec<Request>,
    /// The request each site belongs to (`usize::MAX` for the depot).
    pub request_of: Vec<usize>,
    /// Row-major distance matrix.
    dist: Vec<f64>,
}

impl Instance {
    pub fn n(&self) -> usize {
        self.sites.len()
    }

    #[inline]
    pub fn d(&self, a: usize, b: usize) -> f64 {
        self.dist[a * self.sites.len() + b]
    }

    fn new(name: String, max_vehicles: usize, capacity: i32, sites: Vec<Site>, requests: Vec<Request>) -> Self {
        let n = sites.len();
        let mut dist = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                dist[i * n + j] = ((sites[i].x - sites[j].x).powi(2) + (sites[i].y - sites[j].y).powi(2)).sqrt();
            }
        }
        let mut request_of = vec![usize::MAX; n];
        for (r, req) in requests.iter().enumerate() {
            match *req {
                Request::Pair { pickup, delivery } => {
                    request_of[pickup] = r;
                    request_of[delivery] = r;
                }
                Request::FromDepot { delivery } => request_of[delivery] = r,
            }
        }
        Self { name, max_vehicles, capacity, sites, requests, request_of, dist }
    }

    /// Reads a Li & Lim instance (`K Q S` then `id x y demand ready due service pickup delivery` rows).
    pub fn parse_lilim(name: &str, text: &str) -> Result<Self, CoreError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let head: Vec<f64> = nums(lines.next().ok_or_else(|| bad(name, "empty file"))?, name)?;
        if head.len() < 2 {
            return Err(bad(name, "first line must be: vehicles capacity speed"));
        }
        let mut rows = Vec::new();
        for l in lines {
            let v = nums(l, name)?;
            if v.len() != 9 {
                return Err(bad(name, &format!("row {l:?} has {} fields, not 9", v.len())));
            }
            rows.push(v);
        }
        let mut sites = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            if r[0] as usize != i {
                return Err(bad(name, &format!("row {i} has id {}", r[0])));
            }
            sites.push(Site { x: r[1], y: r[2], demand: r[3] as i32, ready: r[4], due: r[5], service: r[6] });
        }
        let mut requests = Vec::new();
        for (i, r) in rows.iter().enumerate().skip(1) {
            let (p, d) = (r[7] as usize, r[8] as usize);
            if p == 0 && d != 0 {
                if d >= rows.len() || rows[d][7] as usize != i {
                    return Err(bad(name, &format!("pickup {i} names delivery {d}, which does not name it back")));
                }
                requests.push(Request::Pair { pickup: i, delivery: d });
            }
        }
        if requests.len() * 2 + 1 != sites.len() {
            return Err(bad(name, "every task must belong to exactly one pickup-and-delivery pair"));
        }
        Ok(Self::new(name.into(), head[0] as usize, head[1] as i32, sites, requests))
    }

    /// Reads a Solomon VRPTW instance; each customer becomes a delivery loaded at the depot.
    pub fn parse_solomon(name: &str, text: &str) -> Result<Self, CoreError> {
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let vi = lines.iter().position(|l| l.starts_with("VEHICLE")).ok_or_else(|| bad(name, "no VEHICLE block"))?;
        let fleet = nums(lines.get(vi + 2).ok_or_else(|| bad(name, "no vehicle numbers"))?, name)?;
        if fleet.len() != 2 {
            return Err(bad(name, "vehicle block must be: number capacity"));
        }
        let ci = lines.iter().position(|l| l.starts_with("CUSTOMER")).ok_or_else(|| bad(name, "no CUSTOMER block"))?;
        let mut sites = Vec::new();
        for l in &lines[ci + 2..] {
            let v = nums(l, name)?;
            if v.len() != 7 {
                return Err(bad(name, &format!("customer row {l:?} has {} fields, not 7", v.len())));
            }
            if v[0] as usize != sites.len() {
                return Err(bad(name, &format!("customer row {l:?} is out of order")));
            }
            sites.push(Site { x: v[1], y: v[2], demand: -(v[3] as i32), ready: v[4], due: v[5], service: v[6] });
        }
        if sites.len() < 2 {
            return Err(bad(name, "no customers"));
        }
        let requests = (1..sites.len()).map(|delivery| Request::FromDepot { delivery }).collect();
        Ok(Self::new(name.into(), fleet[0] as usize, fleet[1] as i32, sites, requests))
    }
}

fn bad(name: &str, why: &str) -> CoreError {
    CoreError::invalid(format!("instance {name}: {why}"))
}

fn nums(line: &str, name: &str) -> Result<Vec<f64>, CoreError> {
    line.split_whitespace()
        .map(|t| t.parse::<f64>().map_err(|_| bad(name, &format!("{t:?} is not a number"))))
        .collect()
}

/// A solution: routes of site ids, depot excluded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Solution {
    pub routes: Vec<Vec<usize>>,
}

/// What a checked solution costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub vehicles: usize,
    pub distance: f64,
}
