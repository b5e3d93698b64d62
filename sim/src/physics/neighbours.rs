//! Who is near whom: every robot and every person on the street, filed once per step in a grid of square cells
//! so that each can look at the cell it stands in and the eight around it. The grid is filled after rapier's
//! step (the positions the next step starts from) and read by the social-navigation figures of that step, by
//! the pedestrians' steering and by the robots' look-out in the next one.

use rapier3d::prelude::Real;

/// What an entry of the grid is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Robot,
    Person,
}

/// One robot or person: its grid cell (row, column), what it is, its index among its kind, where it stands,
/// its velocity and, for a robot, the unit vector it faces (for a person, the way it walks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Agent {
    pub(super) cell: (i32, i32),
    pub(super) kind: Kind,
    pub(super) index: usize,
    pub(super) pos: [Real; 2],
    pub(super) vel: [Real; 2],
    pub(super) facing: [Real; 2],
}

/// The grid: entries sorted by cell, then kind, then index (unique keys, so the order is deterministic).
#[derive(Debug, Default)]
pub(super) struct Grid {
    cell_m: Real,
    items: Vec<Agent>,
}

impl Grid {
    /// An empty grid of `cell_m` cells: every entry within `cell_m` of a point is in the point's cell or one
    /// of the eight around it.
    pub(super) fn new(cell_m: Real) -> Self {
        Self { cell_m, items: Vec::new() }
    }

    pub(super) fn cell_of(&self, pos: [Real; 2]) -> (i32, i32) {
        ((pos[1] / self.cell_m).floor() as i32, (pos[0] / self.cell_m).floor() as i32)
    }

    /// Empties the grid for a new filling.
    pub(super) fn clear(&mut self) {
        self.items.clear();
    }

    pub(super) fn push(&mut self, kind: Kind, index: usize, pos: [Real; 2], vel: [Real; 2], facing: [Real; 2]) {
        let cell = self.cell_of(pos);
        self.items.push(Agent { cell, kind, index, pos, vel, facing });
    }

    /// Sorts the entries pushed since [`Self::clear`]; call before reading.
    pub(super) fn seal(&mut self) {
        // One integer per entry orders as (cell, kind, index) does: comparing it is a fraction of comparing
        // the tuple (the sort was half of filling the grid).
        self.items.sort_unstable_by_key(|a| {
            let bias = |x: i32| u64::from((x as u32) ^ 0x8000_0000);
            (u128::from(bias(a.cell.0)) << 96)
                | (u128::from(bias(a.cell.1)) << 64)
                | (u128::from(a.kind == Kind::Person) << 63)
                | a.index as u128
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every robot in the grid, in grid order.
    pub(super) fn robots(&self) -> impl Iterator<Item = &Agent> + '_ {
        self.items.iter().filter(|a| a.kind == Kind::Robot)
    }

    /// Every entry in the 3 x 3 cells around `pos`, row by row in grid order.
    pub(super) fn around(&self, pos: [Real; 2]) -> impl Iterator<Item = &Agent> + '_ {
        let (row, col) = self.cell_of(pos);
        (row - 1..=row + 1).flat_map(move |r| {
            let lo = self.items.partition_point(|a| a.cell < (r, col - 1));
            let hi = self.items.partition_point(|a| a.cell <= (r, col + 1));
            self.items[lo..hi].iter()
        })
    }
}

/// Which coarse cells have a robot in them. People far from every robot need no body in the physics world
/// (nothing there can touch them or sense them); [`Presence::near`] tells who is close enough to need one.
#[derive(Debug)]
pub(super) struct Presence {
    cell_m: Real,
    cells: Vec<(i32, i32)>,
}

impl Presence {
    /// Cells of `cell_m`: a robot within `cell_m` of a point is in the point's cell or one of the eight
    /// around it.
    pub(super) fn new(cell_m: Real) -> Self {
        Self { cell_m, cells: Vec::new() }
    }

    /// Files the robots where they stand, forgetting the last filling.
    pub(super) fn fill(&mut self, robots: impl Iterator<Item = [Real; 2]>) {
        self.cells.clear();
        let cell_m = self.cell_m;
        self.cells.extend(robots.map(|p| ((p[1] / cell_m).floor() as i32, (p[0] / cell_m).floor() as i32)));
        self.cells.sort_unstable();
        self.cells.dedup();
    }

    /// Whether a robot is in the cells within `reach` cells of `pos`' cell (1: the 3 x 3 around it, so every
    /// robot within `cell_m`; 2: the 5 x 5, every robot within twice that).
    pub(super) fn near(&self, pos: [Real; 2], reach: i32) -> bool {
        let (row, col) = ((pos[1] / self.cell_m).floor() as i32, (pos[0] / self.cell_m).floor() as i32);
        (row - reach..=row + reach).any(|r| {
            let lo = self.cells.partition_point(|&c| c < (r, col - reach));
            self.cells.get(lo).is_some_and(|&c| c <= (r, col + reach))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_everyone_within_a_cell_and_nobody_two_cells_away() {
        let mut g = Grid::new(3.0);
        g.push(Kind::Person, 0, [0.5, 0.5], [0.0; 2], [1.0, 0.0]);
        g.push(Kind::Robot, 0, [2.9, -2.9], [0.0; 2], [1.0, 0.0]);
        g.push(Kind::Person, 1, [-2.9, 0.0], [0.0; 2], [1.0, 0.0]);
        g.push(Kind::Person, 2, [7.0, 0.0], [0.0; 2], [1.0, 0.0]);
        g.seal();
        let near: Vec<(Kind, usize)> = g.around([0.0, 0.0]).map(|a| (a.kind, a.index)).collect();
        assert_eq!(near, [(Kind::Robot, 0), (Kind::Person, 1), (Kind::Person, 0)]);
        assert!(!g.around([0.0, 0.0]).any(|a| a.index == 2));
        g.clear();
        assert!(g.is_empty() && g.around([0.0, 0.0]).next().is_none());
    }

    #[test]
    fn presence_finds_a_robot_within_one_cell_and_none_beyond_reach() {
        let mut p = Presence::new(10.0);
        p.fill([[5.0, 5.0], [5.5, 5.5], [-35.0, 0.0]].into_iter());
        assert_eq!(p.cells.len(), 2);
        assert!(p.near([14.9, 14.9], 1) && p.near([-5.0, -5.0], 1));
        assert!(!p.near([25.0, 5.0], 1) && p.near([25.0, 5.0], 2));
        assert!(!p.near([45.0, 5.0], 2));
        assert!(p.near([-30.0, 3.0], 1) && !p.near([-15.0, 3.0], 1));
        p.fill(std::iter::empty());
        assert!(!p.near([5.0, 5.0], 2));
    }
}
