//! Work split over the host's cores on rayon's global pool (the threads candle's CPU kernels run
//! on: they outlive each call, so a split starts no thread), and [`pin_candle_threads`], which a
//! program calls first thing in `main`.
//!
//! ```
//! use koopman_core::parallel::{parallel_map, pin_candle_threads, THREADS_VARIABLE};
//!
//! let threads = pin_candle_threads();
//! assert!(threads >= 1);
//! assert_eq!(std::env::var(THREADS_VARIABLE).unwrap(), threads.to_string());
//! let squares = parallel_map(&[1.0f64, 2.0, 3.0], |x| Ok(x * x))?;
//! assert_eq!(squares, vec![1.0, 4.0, 9.0]);
//! # Ok::<(), koopman_core::CoreError>(())
//! ```

use crate::{CoreError, Result};
use std::sync::OnceLock;

/// The environment variable candle (and rayon) read for their CPU thread count.
pub const THREADS_VARIABLE: &str = "RAYON_NUM_THREADS";

/// Fixes candle's CPU thread count for this process and returns it.
///
/// candle 0.11 asks for its thread count on every CPU matmul and, unless `RAYON_NUM_THREADS`
/// is set, recounts the physical cores each time (on Linux by parsing `/proc/cpuinfo`). For the
/// small matmuls of an MLP optimizer step or a Krylov iteration that recount costs more than
/// the product (the measured cost is in `koopman-bench/results/`). When the variable is unset
/// this sets it to the count candle would have chosen (the physical cores); a value the user set
/// is kept.
///
/// It changes the process environment: call it at the start of `main`, before any thread
/// starts (every binary and example of this workspace does).
pub fn pin_candle_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        let set = std::env::var(THREADS_VARIABLE)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0);
        set.unwrap_or_else(|| {
            let n = num_cpus::get_physical().max(1);
            std::env::set_var(THREADS_VARIABLE, n.to_string());
            n
        })
    })
}

/// Runs `f` on the available cores: `f(w, workers)` for every worker index `w`; results in
/// worker order.
pub fn on_workers<O: Send>(workers: usize, f: impl Fn(usize, usize) -> O + Sync) -> Result<Vec<O>> {
    let workers = workers.max(1);
    if workers == 1 {
        return Ok(vec![f(0, 1)]);
    }
    let mut slots: Vec<Option<O>> = (0..workers).map(|_| None).collect();
    rayon::scope(|scope| {
        let f = &f;
        for (w, slot) in slots.iter_mut().enumerate() {
            scope.spawn(move |_| {
                let run = std::panic::AssertUnwindSafe(|| f(w, workers));
                *slot = std::panic::catch_unwind(run).ok();
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| CoreError::Decomposition("a worker thread panicked".into())))
        .collect()
}

/// Number of worker threads available (asked once per process: the query reads cgroup files).
pub fn available_workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_run_in_order_and_a_panic_is_an_error() {
        let out = on_workers(3, |w, n| (w, n)).unwrap();
        assert_eq!(out, vec![(0, 3), (1, 3), (2, 3)]);
        let failed = on_workers(2, |w, _| {
            if w == 1 {
                panic!("worker 1 fails on purpose");
            }
            w
        });
        assert!(matches!(failed, Err(CoreError::Decomposition(_))));
    }
}
