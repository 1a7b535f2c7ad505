#!/usr/bin/env bash
# Optional: make the Python that `koopman-bench reproduce` uses for the PyTorch peer of
# stepping_mnist (torch_mnist_peer.py, the paper's speed comparison against PyTorch's example
# training loop). Creates .venv-peers in the workspace root (or adds to it) with torch and
# torchvision from PyPI (a few GB with PyPI's CUDA-enabled wheels; the peer runs on the CPU).
# `reproduce` finds .venv-peers/bin/python by itself; --torch-python picks another interpreter,
# --no-torch-peer skips the peer. Never part of the tests or CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ ! -x .venv-peers/bin/python ]; then
  python3 -m venv .venv-peers
fi
.venv-peers/bin/pip install -q torch torchvision numpy
.venv-peers/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
