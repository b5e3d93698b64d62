//! The map a data directory was last given (`trundle map apply`, the `LoadMap` call), kept beside the store so
//! that a restart comes back on it. A new map is written as `map.pending.osm.pbf` first (synced), the core swaps
//! it in and commits its fingerprint, and only then is it renamed to `map.osm.pbf`. A crash between the commit
//! and the rename leaves the store naming the pending file's map: at the next start [`candidates`] offers both
//! files and the one whose fingerprint the store names is taken.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The map the data directory was last given.
pub fn current(data_dir: &Path) -> PathBuf {
    data_dir.join("map.osm.pbf")
}

/// A map being swapped in.
pub fn pending(data_dir: &Path) -> PathBuf {
    data_dir.join("map.pending.osm.pbf")
}

/// The data directory's map files that exist, to try when the configured map does not fit the store.
pub fn candidates(data_dir: &Path) -> Vec<PathBuf> {
    [current(data_dir), pending(data_dir)].into_iter().filter(|p| p.is_file()).collect()
}

/// Writes `bytes` as the pending map, synced to disk.
pub fn write_pending(data_dir: &Path, bytes: &[u8]) -> Result<(), Error> {
    let path = pending(data_dir);
    let io = |e: std::io::Error| Error::Setup(format!("cannot write {}: {e}", path.display()));
    let mut f = std::fs::File::create(&path).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)
}

/// Makes the pending map the current one (after the core committed it), durably.
pub fn promote_pending(data_dir: &Path) -> Result<(), Error> {
    let (from, to) = (pending(data_dir), current(data_dir));
    std::fs::rename(&from, &to)
        .and_then(|()| std::fs::File::open(data_dir).and_then(|d| d.sync_all()))
        .map_err(|e| Error::Setup(format!("cannot move {} to {}: {e}", from.display(), to.display())))
}

/// Drops a pending map the core refused.
pub fn discard_pending(data_dir: &Path) {
    let _ = std::fs::remove_file(pending(data_dir));
}
