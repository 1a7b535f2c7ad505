#!/usr/bin/env python3
"""PyTorch peer of `stepping_de` (paper 000, Sec. 4 and Table 1): times the optimizer's steps.

The paper trained its NN differential-equation solver in PyTorch (supplement S9) and measured
the Koopman speedup against that optimizer's step times. This script trains the same problem
as `koopman_bench::experiments::p000_stepping::trials::de_solver` in PyTorch, the way a PyTorch
DE solver is usually written: a 1:10:10:2 sigmoid MLP N(t) in float64, the trial solution
x = x0 + (1 - e^-t) N1, p = p0 + (1 - e^-t) N2 of the oscillator x' = p, p' = -x - lambda x^3
(lambda 1, x0 1.3, p0 1) on 200 points of [0, 4 pi], the time derivatives by
`torch.autograd.grad(..., create_graph=True)`, the loss
mean((x' - p)^2) + mean((p' + x + lambda x^3)^2), one of the paper's optimizers (Adam with
betas (0.999, 0.9999), Adagrad, Adadelta with rho 0.999) and the schedule 8 / (1000 + t).

Every step (zero_grad, loss, backward, optimizer step, schedule) is timed after a warm-up, once
for each thread count of `--threads` (from the same initial weights); the JSON holds each run's
median and mean seconds per step and loss before and after, and the fastest run's median as
`step_seconds_median` (the peer at its best: for a network this small one thread is often faster
than two), for `koopman-bench reproduce --only stepping_de` to turn its T_eq into PyTorch
seconds. Usage (koopman-bench runs it itself when it finds the interpreter):

    python torch_de_peer.py --optimizer adadelta --steps 1000 --threads 1,2 --json out.json

Never part of the tests or CI.
"""

import argparse
import json
import math
import os
import statistics
import tempfile
import time

import torch
from torch import nn


def make_optimizer(args, params):
    name = args.optimizer
    if name == "adam":
        return torch.optim.Adam(params, lr=1.0, betas=(args.beta1, args.beta2))
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=1.0)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=1.0, rho=args.rho)
    raise SystemExit(f"unknown optimizer {name!r} (adam, adagrad, adadelta)")


def time_steps(args, threads):
    """Trains from the seed's initial weights with `threads` intra-op threads, timing each step."""
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    dtype = torch.float64
    lam, x0, p0 = 1.0, 1.3, 1.0
    model = nn.Sequential(
        nn.Linear(1, 10), nn.Sigmoid(), nn.Linear(10, 10), nn.Sigmoid(), nn.Linear(10, 2)
    ).to(dtype)
    t = torch.linspace(0.0, 4.0 * math.pi, args.points, dtype=dtype).reshape(-1, 1)
    t.requires_grad_(True)
    e = torch.exp(-t.detach())
    opt = make_optimizer(args, model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 8.0 / (1000.0 + step))

    def loss_fn():
        n = model(t)
        dn1 = torch.autograd.grad(n[:, 0].sum(), t, create_graph=True)[0]
        dn2 = torch.autograd.grad(n[:, 1].sum(), t, create_graph=True)[0]
        n1, n2 = n[:, :1], n[:, 1:]
        x = x0 + (1.0 - e) * n1
        p = p0 + (1.0 - e) * n2
        dx = e * n1 + (1.0 - e) * dn1
        dp = e * n2 + (1.0 - e) * dn2
        return ((dx - p) ** 2).mean() + ((dp + x + lam * x**3) ** 2).mean()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        sched.step()

    loss_before = float(loss_fn().detach())
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "threads": threads,
        "step_seconds_median": statistics.median(times),
        "step_seconds_mean": sum(times) / len(times),
        "loss_before": loss_before,
        "loss_after": float(loss_fn().detach()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", required=True)
    ap.add_argument("--beta1", type=float, default=0.999, help="Adam's beta1 (the paper's 0.999)")
    ap.add_argument("--beta2", type=float, default=0.9999, help="Adam's beta2 (the paper's 0.9999)")
    ap.add_argument("--rho", type=float, default=0.999, help="Adadelta's rho (the paper's 0.999)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--threads", default="1", help="torch intra-op thread counts to time, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.points < 2:
        raise SystemExit("need steps >= 1, warmup >= 0, points >= 2")
    threads = [int(x) for x in args.threads.split(",") if x.strip()]
    if not threads or min(threads) < 1:
        raise SystemExit(f"--threads needs thread counts >= 1, got {args.threads!r}")
    runs = [time_steps(args, n) for n in threads]
    best = min(runs, key=lambda r: r["step_seconds_median"])
    report = {
        "torch": torch.__version__,
        "optimizer": args.optimizer,
        "points": args.points,
        "warmup": args.warmup,
        "steps": args.steps,
        "threads": best["threads"],
        "step_seconds_median": best["step_seconds_median"],
        "runs": runs,
    }
    folder = os.path.dirname(os.path.abspath(args.json))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
