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
        self.items.sort_unstable_by_key(|a| (a.cell, a.kind, a.index));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
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
}
