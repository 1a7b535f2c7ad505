#!/usr/bin/env python3
"""PyTorch peer of `stepping_mnist` (paper 000, supplement S10): times the paper's training loop.

The paper took its MNIST code from PyTorch's examples (`mnist/main.py`), replaced the
convolutional layers by a 784:20:20:20:10 ReLU MLP, and measured the Koopman speedup against the
run times tau_i of that loop's epochs after t2 (S10, Eq. 13). This script runs that loop on the
IDX files the Rust experiment reads and writes the training seconds of every epoch as JSON, for
`koopman-bench reproduce --only stepping_mnist` to divide by its own Koopman times. Two loops:

- `paper_loop`: as the example: `torchvision.datasets.MNIST` with `ToTensor()` and
  `Normalize((0.1307,), (0.3081,))`, `DataLoader(batch_size=64, shuffle=True)`, Adadelta
  (lr 1.0, rho 0.9 as PyTorch's default), `StepLR(step_size=1, gamma=0.7)`, `log_softmax` + `nll_loss`. The example's
  progress printing is left out (it would only add to PyTorch's time).
- `tensor_loop`: the same model, optimizer and schedule on one pre-loaded, pre-normalised tensor
  indexed by a shuffled permutation per epoch (no per-sample transforms, no DataLoader): the
  fastest plain PyTorch loop, and the one closest to the Rust loop.

Only the training steps of an epoch are timed (the validation pass after each epoch is not), as
in the Rust experiment. Usage (koopman-bench runs it itself when it finds the interpreter):

    python torch_mnist_peer.py --data "$KOOPMAN_DATA_DIR/mnist" --epochs 9 --json out.json

Never part of the tests or CI.
"""

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import StepLR

FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
MEAN, STD = 0.1307, 0.3081


def mlp(sizes):
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def torchvision_root(data_dir, tmp):
    """Lays the IDX files out as torchvision's MNIST expects them (ROOT/MNIST/raw, uncompressed)."""
    raw = os.path.join(tmp, "MNIST", "raw")
    os.makedirs(raw)
    for name in FILES:
        plain = os.path.join(data_dir, name)
        packed = plain + ".gz"
        target = os.path.join(raw, name)
        if os.path.exists(packed):
            with gzip.open(packed, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif os.path.exists(plain):
            shutil.copyfile(plain, target)
        else:
            sys.exit(f"torch_mnist_peer: {name}(.gz) not found in {data_dir}")
    return tmp


def validation_loss(model, x, y):
    model.eval()
    with torch.no_grad():
        loss = F.nll_loss(F.log_softmax(model(x), dim=1), y, reduction="mean").item()
    model.train()
    return loss


def run_loop(kind, train_set, val, args):
    torch.manual_seed(args.seed)
    model = mlp(args.sizes)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=args.lr, rho=args.rho)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    if kind == "paper_loop":
        loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    else:
        x_all, y_all = train_set
    epoch_seconds, val_losses, steps = [], [], 0
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        if kind == "paper_loop":
            for data, target in loader:
                optimizer.zero_grad()
                loss = F.nll_loss(F.log_softmax(model(data), dim=1), target)
                loss.backward()
                optimizer.step()
                steps += 1
        else:
            order = torch.randperm(x_all.shape[0])
            for idx in order.split(args.batch_size):
                optimizer.zero_grad()
                loss = F.nll_loss(F.log_softmax(model(x_all[idx]), dim=1), y_all[idx])
                loss.backward()
                optimizer.step()
                steps += 1
        epoch_seconds.append(time.perf_counter() - start)
        scheduler.step()
        val_losses.append(validation_loss(model, *val))
    return {
        "epoch_seconds": epoch_seconds,
        "val_losses": val_losses,
        "steps_per_epoch": steps // args.epochs,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder with the MNIST IDX files (.gz or raw)")
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--rho", type=float, default=0.9)
    p.add_argument("--gamma", type=float, default=0.7)
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                   default=[784, 20, 20, 20, 10])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import torchvision
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(args.data, tmp)
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
        train = datasets.MNIST(root, train=True, download=False, transform=transform)
        test = datasets.MNIST(root, train=False, download=False)
        x_train = ((train.data.float() / 255.0 - MEAN) / STD).unsqueeze(1)
        y_train = train.targets.clone()
        x_val = ((test.data.float() / 255.0 - MEAN) / STD).unsqueeze(1)
        val = (x_val, test.targets.clone())
        loops = {
            "paper_loop": run_loop("paper_loop", train, val, args),
            "tensor_loop": run_loop("tensor_loop", (x_train, y_train), val, args),
        }
    out = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "train_samples": int(y_train.shape[0]),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "loops": loops,
    }
    tmp_path = args.json + ".tmp"
    with open(tmp_path, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp_path, args.json)
    for name, loop in loops.items():
        per_step = sum(loop["epoch_seconds"]) / (loop["steps_per_epoch"] * args.epochs)
        print(f"{name}: {per_step * 1e3:.3f} ms per step, epochs {loop['epoch_seconds']}")


if __name__ == "__main__":
    main()
