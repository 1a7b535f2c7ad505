#!/usr/bin/env python3
"""Optional PyDMD peer for `koopman-bench perf`'s DMD timing.

Run `koopman-bench perf --export-dmd-peer --peer-dir DIR` first; it writes
DIR/dmd_x.npy, DIR/dmd_y.npy (n x m, states as columns), DIR/dmd_true_eigs.npy
(rows re, im) and DIR/dmd_rust_seconds.npy (exact DMD, DMD_RRR fit seconds).
This script fits PyDMD's `DMD(svd_rank=...)` on the same pair (X, Y), times the
fit, and reports the fit-time ratio against koopman-core and the eigenvalue
agreement (Wasserstein-1 distance by optimal assignment, scipy).

    pip install pydmd scipy numpy
    python3 koopman-bench/peers/pydmd_peer.py --dir reports/peer --rank 10
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def wasserstein(a, b):
    from scipy.optimize import linear_sum_assignment

    cost = np.abs(a[:, None] - b[None, :])
    r, c = linear_sum_assignment(cost)
    return float(cost[r, c].mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="reports/peer")
    ap.add_argument("--rank", type=int, default=10, help="svd_rank passed to PyDMD")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    try:
        from pydmd import DMD
    except ImportError:
        print("pydmd is not installed (pip install pydmd); skipping", file=sys.stderr)
        return 0
    x = np.load(os.path.join(args.dir, "dmd_x.npy"))
    y = np.load(os.path.join(args.dir, "dmd_y.npy"))
    true = np.load(os.path.join(args.dir, "dmd_true_eigs.npy"))
    true = true[:, 0] + 1j * true[:, 1]
    rust = np.load(os.path.join(args.dir, "dmd_rust_seconds.npy"))
    times = []
    eigs = None
    for _ in range(max(1, args.repeats)):
        dmd = DMD(svd_rank=args.rank)
        t0 = time.perf_counter()
        dmd.fit(x, y)
        times.append(time.perf_counter() - t0)
        eigs = np.asarray(dmd.eigs)
    secs = float(np.median(times))
    out = {
        "shape": list(x.shape),
        "svd_rank": args.rank,
        "pydmd_fit_seconds": secs,
        "koopman_exact_seconds": float(rust[0]),
        "koopman_rrr_seconds": float(rust[1]),
        "ratio_pydmd_over_exact": secs / float(rust[0]),
        "ratio_pydmd_over_rrr": secs / float(rust[1]),
        "pydmd_eig_error_vs_truth": wasserstein(eigs, true) if len(eigs) == len(true) else None,
        "pydmd_rank": int(len(eigs)),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
