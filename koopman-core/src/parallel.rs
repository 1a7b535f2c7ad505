//! Work split over the host's cores with scoped threads (no pool, nothing kept between calls).
//!
//! ```
//! use koopman_core::parallel::parallel_map;
//!
//! let squares = parallel_map(&[1.0f64, 2.0, 3.0], |x| Ok(x * x))?;
//! assert_eq!(squares, vec![1.0, 4.0, 9.0]);
//! # Ok::<(), koopman_core::CoreError>(())
//! ```

use crate::{CoreError, Result};

/// Runs `f` on the available cores: `f(w, workers)` for every worker index `w`; results in
/// worker order.
pub fn on_workers<O: Send>(workers: usize, f: impl Fn(usize, usize) -> O + Sync) -> Result<Vec<O>> {
    let workers = workers.max(1);
    if workers == 1 {
        return Ok(vec![f(0, 1)]);
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..workers)
            .map(|w| scope.spawn(move || f(w, workers)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| CoreError::Decomposition("a worker thread panicked".into()))
            })
            .collect()
    })
}

/// Number of worker threads available.
pub fn available_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Maps `f` over `items` on the available cores (contiguous chunks, order kept).
pub fn parallel_map<I: Sync, O: Send>(
    items: &[I],
    f: impl Fn(&I) -> Result<O> + Sync,
) -> Result<Vec<O>> {
    let workers = available_workers().min(items.len()).max(1);
    let chunk = items.len().div_ceil(workers).max(1);
    let parts = on_workers(workers, |w, _| {
        let lo = (w * chunk).min(items.len());
        let hi = ((w + 1) * chunk).min(items.len());
        items[lo..hi].iter().map(&f).collect::<Result<Vec<O>>>()
    })?;
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}
