"""Seeds trained together (helpers.train.ensemble.fit_stacked) against one seed trained alone (helpers.train.fit).

For each network, times one training epoch of 1 seed with ``fit`` and of ``--seeds`` seeds with ``fit_stacked``,
interleaved ``--repeats`` times (so a load change on a shared machine hits both alike), and prints the ratio
stacked / single as min / median / max over the interleaved pairs. The goal for networks bound by per-operator
overhead: 3 seeds in at most 1.5x the time of one. For every network it also prints the FLOP/s each reached (torch's
FLOP counter on one training step) against a large matmul timed in the same run: the arithmetic limit. Usage:
    python benchmarks/seed_batching.py [--seeds 3] [--repeats 5] [--threads 1] [--images 3000]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import helpers
from helpers.attacks import classification_loss
from helpers.models import MLP, capacity_cnn
from helpers.train import fit
from helpers.train.ensemble import fit_stacked

#: name -> (network factory, input shape, batch size): the lottery MLP (Paper 1, batch 60 as in Frankle & Carbin),
#: the capacity CNNs of Paper 1 at scales 1 and 3 (batch 50, as the chapter trains them), Paper 5's 100-unit MLP
#: (batch 20), and a tiny MLP of the size of Chapter 2's pruned offline-RL networks (batch 100).
NETWORKS = {
    "tiny MLP 17-38-38-10 (offline-RL size)": (lambda: MLP(17, (38, 38), 10), (17,), 100),
    "defences MLP 784-100-10": (lambda: MLP(784, (100,), 10), (1, 28, 28), 20),
    "lottery MLP 784-300-100-10": (lambda: MLP(784, (300, 100), 10), (1, 28, 28), 60),
    "capacity CNN scale 1": (lambda: capacity_cnn(1), (1, 28, 28), 50),
    "capacity CNN scale 3": (lambda: capacity_cnn(3), (1, 28, 28), 50),
}


def matmul_flops_per_second(n: int = 1024, repeats: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(make, shape, batch: int) -> int:
    model = make()
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        classification_loss(model(x), y).mean().backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the chapter notebooks use 1)")
    parser.add_argument("--images", type=int, default=3000, help="training images per epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    helpers.seed_everything(0)
    seeds = list(range(args.seeds))
    for name, (make, shape, batch) in NETWORKS.items():
        x, y = torch.rand(args.images, *shape), torch.randint(0, 10, (args.images,))
        common = dict(epochs=1, lr=0.01, batch_size=batch, optimizer="sgd", progress=False)
        single_t, stacked_t, peaks = [], [], []
        for _ in range(args.repeats):
            peaks.append(matmul_flops_per_second())
            single_t.append(_seconds(lambda: fit(make(), (x, y), seed=0, **common)))
            stacked_t.append(_seconds(lambda: fit_stacked([make() for _ in seeds], (x, y), seeds=seeds, **common)))
        ratios = sorted(s / t for s, t in zip(stacked_t, single_t))
        flops = step_flops(make, shape, batch) * (args.images // batch)
        peak = statistics.median(peaks)
        print(f"{name}: {args.seeds} seeds stacked / 1 seed = {ratios[0]:.2f} / {statistics.median(ratios):.2f} / "
              f"{ratios[-1]:.2f}x (min / median / max of {args.repeats} interleaved pairs); FLOP/s: 1 seed "
              f"{flops / min(single_t) / 1e9:.1f} G, {args.seeds} stacked {args.seeds * flops / min(stacked_t) / 1e9:.1f}"
              f" G, large matmul {peak / 1e9:.1f} G ({args.threads} thread{'s' * (args.threads > 1)})")


if __name__ == "__main__":
    main()
