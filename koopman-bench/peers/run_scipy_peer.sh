#!/usr/bin/env bash
# Optional: compare koopman's expv with SciPy's expm_multiply on the same generators.
# Usage (from the repository root): bash koopman-bench/peers/run_scipy_peer.sh [RADIUS...]
# Creates .venv-peers (numpy, scipy), exports each radius with `koopman-bench perf --export-peer`,
# and runs scipy_expm_multiply.py. Never part of the tests or CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
radii=("${@:-5}")
if [ ! -x .venv-peers/bin/python ]; then
  python3 -m venv .venv-peers
  .venv-peers/bin/pip install -q numpy scipy
fi
rm -rf reports/peer
for r in "${radii[@]}"; do
  cargo run --release -q -p koopman-bench -- perf --radii "$r" --max-dense 0 --skip-dmd --skip-layered \
    --json "reports/peer/perf_r$r.json" --export-peer "$r" --peer-dir reports/peer
done
.venv-peers/bin/python koopman-bench/peers/scipy_expm_multiply.py reports/peer
