"""Optional peer comparison: SciPy's expm_multiply on the generator koopman-bench exported.

Run through run_scipy_peer.sh (it creates a virtual environment with numpy and scipy). Reads the
files written by `koopman-bench perf --export-peer R --peer-dir DIR`, rebuilds the same Toeplitz
generator L = sum_k A^k D_k (t = 1) as a scipy.sparse matrix from the exported gather table,
times scipy.sparse.linalg.expm_multiply(L, v) and compares it with koopman's expv and Taylor
(koopman_core::taylor) results and times (each the median of seven calls after a warm-up).
Never part of the tests.
"""
import glob
import json
import os
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply


def load(prefix, name):
    return np.load(f"{prefix}_{name}.npy")


def main(peer_dir):
    results = []
    for gather_path in sorted(glob.glob(os.path.join(peer_dir, "n*_gather.npy"))):
        prefix = gather_path[: -len("_gather.npy")]
        gather = load(prefix, "gather")
        points = load(prefix, "points")
        n, m = gather.shape
        rows = np.repeat(np.arange(n), m)
        cols = gather.reshape(-1)
        inside = cols < n
        L = sp.csr_matrix((n, n), dtype=np.complex128)
        for k in range(points.shape[1]):
            a = load(prefix, f"coeff{k}_re") + 1j * load(prefix, f"coeff{k}_im")
            vals = np.tile(a, n)
            A = sp.csr_matrix((vals[inside], (rows[inside], cols[inside])), shape=(n, n))
            D = sp.diags(1j * points[:, k])
            L = L + A @ D
        v = load(prefix, "v_re") + 1j * load(prefix, "v_im")
        w_ours = load(prefix, "w_re") + 1j * load(prefix, "w_im")
        ours_s = float(load(prefix, "expv_seconds")[0])
        taylor_s = float(load(prefix, "taylor_seconds")[0])
        w_taylor = load(prefix, "w_taylor_re") + 1j * load(prefix, "w_taylor_im")
        expm_multiply(L, v)  # warm-up (norm estimates, caches)
        # Median of seven calls, as koopman-bench times its side (PEER_REPEATS in perf.rs).
        samples = []
        for _ in range(7):
            t0 = time.perf_counter()
            w = expm_multiply(L, v)
            samples.append(time.perf_counter() - t0)
        scipy_s = float(np.median(samples))
        diff = float(np.linalg.norm(w - w_ours) / np.linalg.norm(v))
        diff_taylor = float(np.linalg.norm(w - w_taylor) / np.linalg.norm(v))
        results.append(
            {
                "n": int(n),
                "scipy_seconds": scipy_s,
                "koopman_expv_seconds": ours_s,
                "scipy_over_koopman": scipy_s / ours_s,
                "relative_difference": diff,
                "koopman_taylor_seconds": taylor_s,
                "scipy_over_koopman_taylor": scipy_s / taylor_s,
                "relative_difference_taylor": diff_taylor,
                "scipy_version": scipy.__version__,
            }
        )
        print(
            f"|N| = {n}: scipy expm_multiply {scipy_s:.3e} s, koopman expv {ours_s:.3e} s "
            f"(scipy/expv {scipy_s / ours_s:.2f}, ||w_scipy - w_expv||/||v|| = {diff:.2e}), "
            f"koopman Taylor {taylor_s:.3e} s (scipy/taylor {scipy_s / taylor_s:.2f}, "
            f"||w_scipy - w_taylor||/||v|| = {diff_taylor:.2e})"
        )
    with open(os.path.join(peer_dir, "scipy_peer.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports/peer")
