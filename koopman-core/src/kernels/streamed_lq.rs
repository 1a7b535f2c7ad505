//! The streamed LQ factorisation of many groups' snapshot matrices `[X_g; Y_g]` from one
//! trajectory of full states, the data never gathered.
//!
//! What: for every group `g` of coordinates, the first `d` columns `L = [L_11; L_21]` (`2d x d`)
//! of the LQ factor of `[X_g; Y_g] = L Q` (`X_g` the group's coordinates at times `0..m`, `Y_g`
//! at `1..=m`), from which the partitioned finite section solves `U_g = L_21 L_11^+`
//! (koopman-core's [`finite_section_partitioned`](crate::dmd::finite_section_partitioned)).
//!
//! How: the trajectory is read in chunks of [`LQ_CHUNK_PAIRS`] snapshot pairs; each chunk stays
//! in cache while every group copies its coordinates into the contiguous rows of its own work
//! block, and a full block is factored by the Householder sweep of
//! [`householder`](super::householder) together with the previous factor (a flat TSQR tree).
//! Few groups share the time range between the cores (the partial factors merged by one more
//! sweep); many groups, whose blocks would not stay in cache together, are split over the cores
//! in tiles whose blocks fit in the L2 cache, each streaming the whole range. The sizes below
//! were tuned on koopman-bench's `partitioned_fit` bench (the NN DE solver's fit and an MNIST
//! wrapper window); its timings are in koopman-bench/results/.

use super::householder::householder_l;
use crate::error::Result;
use crate::parallel::{available_workers, on_workers, parallel_map};
use faer::Mat;

/// Snapshot pairs absorbed per pass of the streamed LQ factorisation: the snapshots of one
/// chunk stay in cache while every group reads its coordinates from them, and a group's work
/// block (`2d x (d + 192)`, 36 KB at `d = 11`) stays in the L1 cache during its reflections.
/// The length avoids row strides that put every few rows about 4 KB on (160 pairs at `d = 11`:
/// every third row 4,104 bytes on), where loads and stores alias in the cache.
const LQ_CHUNK_PAIRS: usize = 192;

/// Largest work block of a small group's streamed LQ (doubles; 24 KB, so it stays in the L1
/// cache during the reflections): a group whose `2d x (d + LQ_CHUNK_PAIRS)` block is smaller
/// collects several chunks before it factors, which saves the per-block costs (the previous
/// factor's columns, one dispatch) that dominate for tiny groups.
const LQ_BLOCK_DOUBLES: usize = 3072;

/// Up to this many doubles of work blocks in all (2 MB), the groups share the time range
/// between the workers (the NN DE solver's 22 groups: 67,000); beyond it the blocks would not
/// stay in the cache between two snapshots, and the groups are split instead, in tiles of
/// [`LQ_TILE_DOUBLES`].
const LQ_TIME_SPLIT_DOUBLES: usize = 1 << 18;

/// Doubles of work blocks in one tile of groups streamed together (256 KB, an L2 cache): the
/// tile's blocks stay in cache while it streams the whole time range.
const LQ_TILE_DOUBLES: usize = 1 << 15;

/// The running compression of `[X; Y]` for one group of `d` coordinates: after absorbing
/// snapshot pairs block by block, `L = [L_11; L_21]` (`2d x d`) with `X = L_11 Q_1` and
/// `Y Q_1^T = L_21` for the pairs seen so far (a flat TSQR tree: each block factors
/// `[L_previous | new columns]` with the reflectors of `X`'s rows only, which gives the same
/// `L`; `Y`'s residual is never factored).
pub(crate) struct StreamedLq {
    d: usize,
    /// Snapshot pairs a block holds (a multiple of the chunk length).
    capacity: usize,
    l: Option<Mat<f64>>,
    /// Row-major `2d x (offset + capacity)`: the previous factor, then the block's pairs.
    block: Vec<f64>,
    /// Columns taken by the previous factor (0 or `d`).
    offset: usize,
    /// Pairs in the block before the current chunk.
    filled: usize,
    /// Pairs in the current chunk.
    chunk: usize,
}

impl StreamedLq {
    fn new(d: usize) -> Self {
        let chunks = (LQ_BLOCK_DOUBLES / (2 * d * (d + LQ_CHUNK_PAIRS))).max(1);
        Self {
            d,
            capacity: chunks * LQ_CHUNK_PAIRS,
            l: None,
            block: Vec::new(),
            offset: 0,
            filled: 0,
            chunk: 0,
        }
    }

    fn stride(&self) -> usize {
        self.offset + self.capacity
    }

    /// Doubles of this group's work block.
    fn block_len(&self) -> usize {
        2 * self.d * (self.d + self.capacity)
    }

    /// Starts a chunk of `c <= LQ_CHUNK_PAIRS` snapshot pairs, absorbing the block first when
    /// the chunk would not fit; the chunk's states are then set by [`Self::fill_chunk`].
    fn begin(&mut self, c: usize) {
        self.filled += self.chunk;
        self.chunk = 0;
        if self.block.is_empty() || self.filled + c > self.capacity {
            self.absorb();
            let (d, n) = (self.d, 2 * self.d);
            self.offset = if self.l.is_some() { d } else { 0 };
            let w = self.stride();
            self.block.resize(n * w, 0.0);
            if let Some(prev) = &self.l {
                for i in 0..n {
                    for k in 0..d {
                        self.block[i * w + k] = if k <= i { prev[(i, k)] } else { 0.0 };
                    }
                }
            }
        }
        self.chunk = c;
    }

    /// Fills the chunk begun by [`Self::begin`] from its `c + 1` full states: state `t` is `X`'s
    /// pair `t` (for `t < c`) and `Y`'s pair `t - 1` (for `t > 0`). Row by row, so the writes
    /// are contiguous (a `Y` row is its `X` row moved by one pair, and the state after).
    fn fill_chunk(&mut self, group: &[usize], states: &[&[f64]]) {
        let (d, w, c) = (self.d, self.stride(), self.chunk);
        let col = self.offset + self.filled;
        let (xs, ys) = self.block.split_at_mut(d * w);
        for (i, &g) in group.iter().enumerate() {
            let x = &mut xs[i * w + col..i * w + col + c];
            for (z, state) in x.iter_mut().zip(states) {
                *z = state[g];
            }
            let y = &mut ys[i * w + col..i * w + col + c];
            y[..c - 1].copy_from_slice(&x[1..]);
            y[c - 1] = states[c][g];
        }
    }

    /// Absorbs the block's pairs into the running factor (a partly filled block is first
    /// packed to its used columns) and empties it.
    fn absorb(&mut self) {
        self.filled += self.chunk;
        self.chunk = 0;
        if self.filled > 0 {
            let (n, w) = (2 * self.d, self.stride());
            let used = self.offset + self.filled;
            if used < w {
                for i in 1..n {
                    self.block.copy_within(i * w..i * w + used, i * used);
                }
            }
            let block = &mut self.block[..n * used];
            self.l = Some(householder_l(block, n, used, self.d, self.offset));
        }
        self.filled = 0;
    }

    /// `L` of the pairs absorbed by all parts (an LQ factorisation of `[L_1 | L_2 | ...]`).
    pub(crate) fn merge(parts: &[StreamedLq]) -> Option<Mat<f64>> {
        let ls: Vec<&Mat<f64>> = parts.iter().filter_map(|p| p.l.as_ref()).collect();
        if ls.len() <= 1 {
            return ls.first().map(|&l| l.clone());
        }
        let (n, d) = (ls[0].nrows(), ls[0].ncols());
        let w = d * ls.len();
        let mut stacked = vec![0.0; n * w];
        for (p, l) in ls.iter().enumerate() {
            for i in 0..n {
                for k in 0..d {
                    stacked[i * w + p * d + k] = l[(i, k)];
                }
            }
        }
        Some(householder_l(&mut stacked, n, w, d, d))
    }
}

/// The streamed factors of `groups` for the snapshot pairs `lo..hi`, a chunk of
/// [`LQ_CHUNK_PAIRS`] pairs at a time: every group gathers its rows of the chunk (whose states
/// stay in cache for all groups) into contiguous rows of its block, and factors the block when
/// it is full. Gathering row by row writes each group's block contiguously, where scattering
/// each state to every group's rows would touch `2d` cache lines of every group per state. The
/// work blocks are freed at the end.
fn stream_groups(
    snapshots: &[&[f64]],
    groups: &[&[usize]],
    lo: usize,
    hi: usize,
) -> Vec<StreamedLq> {
    let mut lqs: Vec<StreamedLq> = groups.iter().map(|g| StreamedLq::new(g.len())).collect();
    let mut t0 = lo;
    while t0 < hi {
        let c = LQ_CHUNK_PAIRS.min(hi - t0);
        for lq in lqs.iter_mut() {
            lq.begin(c);
        }
        for (lq, g) in lqs.iter_mut().zip(groups) {
            lq.fill_chunk(g, &snapshots[t0..=t0 + c]);
        }
        t0 += c;
    }
    for lq in lqs.iter_mut() {
        lq.absorb();
        lq.block = Vec::new();
    }
    lqs
}

/// The streamed factors of every group of `groups` over the trajectory `snapshots` (`m =
/// snapshots.len() - 1` pairs; every group's coordinates below the states' length): per group,
/// its partial factors (one per worker that streamed a part of the time range), for
/// [`StreamedLq::merge`]. See the [module docs](self) for the split over the cores.
pub(crate) fn stream_factors(
    snapshots: &[&[f64]],
    groups: &[&[usize]],
) -> Result<Vec<Vec<StreamedLq>>> {
    let m = snapshots.len().saturating_sub(1);
    let blocks: usize = groups
        .iter()
        .map(|g| StreamedLq::new(g.len()).block_len())
        .sum();
    if blocks <= LQ_TIME_SPLIT_DOUBLES {
        // Few groups: every worker streams its share of the time range into all of them.
        let workers = available_workers().min(m.div_ceil(LQ_CHUNK_PAIRS));
        let parts = on_workers(workers, |w, workers| {
            let (lo, hi) = (w * m / workers, (w + 1) * m / workers);
            stream_groups(snapshots, groups, lo, hi)
        })?;
        let mut per_group: Vec<Vec<StreamedLq>> = groups.iter().map(|_| Vec::new()).collect();
        for part in parts {
            for (slot, lq) in per_group.iter_mut().zip(part) {
                slot.push(lq);
            }
        }
        Ok(per_group)
    } else {
        // Many groups (their blocks would not stay in cache together): the groups are split
        // over the workers, and each streams the whole time range into tiles of groups
        // whose blocks fit in the cache, one tile after the other.
        let mut tiles: Vec<&[&[usize]]> = Vec::new();
        let (mut start, mut doubles) = (0, 0);
        for (k, g) in groups.iter().enumerate() {
            doubles += StreamedLq::new(g.len()).block_len();
            if doubles > LQ_TILE_DOUBLES {
                tiles.push(&groups[start..=k]);
                (start, doubles) = (k + 1, 0);
            }
        }
        if start < groups.len() {
            tiles.push(&groups[start..]);
        }
        Ok(
            parallel_map(&tiles, |tile| Ok(stream_groups(snapshots, tile, 0, m)))?
                .into_iter()
                .flatten()
                .map(|lq| vec![lq])
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::values;

    /// The merged factor of every group against the gathered data: with `A = [X; Y]` (`2d x
    /// m`), `A X^T = L L_11^T` to a tolerance of `eps m` times the Gram matrix's size.
    fn check_groups(states: usize, m: usize, groups: &[Vec<usize>], seed: u64) {
        let data = values(seed, (m + 1) * states);
        let snaps: Vec<&[f64]> = data.chunks_exact(states).collect();
        let refs: Vec<&[usize]> = groups.iter().map(|g| g.as_slice()).collect();
        let parts = stream_factors(&snaps, &refs).unwrap();
        assert_eq!(parts.len(), groups.len());
        for (g, parts) in groups.iter().zip(&parts) {
            let d = g.len();
            let l = StreamedLq::merge(parts).expect("a factor");
            assert_eq!((l.nrows(), l.ncols()), (2 * d, d));
            let a = Mat::from_fn(2 * d, m, |i, t| {
                if i < d {
                    snaps[t][g[i]]
                } else {
                    snaps[t + 1][g[i - d]]
                }
            });
            let gram = &a * a.subrows(0, d).transpose();
            let llt = &l * l.subrows(0, d).transpose();
            let err = (&gram - &llt).norm_max();
            let tol = 50.0 * f64::EPSILON * m as f64 * gram.norm_max();
            assert!(err <= tol, "group of {d} over {m} pairs: {err:e} > {tol:e}");
            for i in 0..d {
                for j in i + 1..d {
                    assert_eq!(l[(i, j)], 0.0, "L_11 is lower triangular");
                }
            }
        }
    }

    /// Few groups (the time range split between the workers, partial factors merged): sizes 1,
    /// 2 (several chunks per block), 5 and 11, over a range that ends in a partial chunk.
    #[test]
    fn time_split_factors_reproduce_the_gram_matrices() {
        let groups = vec![
            vec![0],
            vec![3, 1],
            vec![2, 4, 6, 8, 10],
            (11..22).collect(),
        ];
        let blocks: usize = groups
            .iter()
            .map(|g| StreamedLq::new(g.len()).block_len())
            .sum();
        assert!(blocks <= LQ_TIME_SPLIT_DOUBLES);
        assert!(StreamedLq::new(2).capacity > LQ_CHUNK_PAIRS);
        check_groups(23, 5 * LQ_CHUNK_PAIRS + 37, &groups, 1);
        // Fewer pairs than one chunk: one worker, one block.
        check_groups(23, 40, &groups, 2);
    }

    /// Many groups (split over the workers in tiles, each streaming the whole range).
    #[test]
    fn tiled_factors_reproduce_the_gram_matrices() {
        let groups: Vec<Vec<usize>> = (0..70)
            .map(|g| (0..10).map(|i| 10 * g + (i * 3 + g) % 10).collect())
            .collect();
        let blocks: usize = groups
            .iter()
            .map(|g| StreamedLq::new(g.len()).block_len())
            .sum();
        assert!(blocks > LQ_TIME_SPLIT_DOUBLES);
        check_groups(700, LQ_CHUNK_PAIRS + 61, &groups, 3);
    }
}
