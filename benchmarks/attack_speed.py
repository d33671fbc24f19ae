"""Attack and adversarial-training speed on this machine.

Prints one line comparing our PGD-40 with torchattacks.PGD on the same model and batch (images/s each and
the ratio), and one line with the time of one PGD-7 adversarial-training epoch. Usage:
    python benchmarks/attack_speed.py [--scale 4] [--batch 256] [--train-images 10000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import torch

import helpers
from helpers.attacks import Attack, pgd
from helpers.data import load_dataset
from helpers.models import capacity_cnn
from helpers.train import fit


def images_per_second(fns: dict, n_images: int, repeats: int) -> dict:
    """Best of ``repeats`` timings of each ``fns[name]()``, as images per second.

    The candidates are interleaved within each repeat, so a load change on a shared machine hits both alike.
    """
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: n_images / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, help="capacity scale of the Paper 1 CNN (4 ~ Madry's MNIST net)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torchattacks

    helpers.seed_everything(0)
    dev = helpers.device()
    test = load_dataset("mnist", "test").subset(args.batch)
    model = capacity_cnn(args.scale).to(dev).eval()
    x, y = test.x.to(dev), test.y.to(dev)
    theirs_attack = torchattacks.PGD(model, eps=0.3, alpha=0.01, steps=40, random_start=True)
    speed = images_per_second({"ours": lambda: pgd(model, x, y, 0.3, 0.01, 40), "torchattacks": lambda: theirs_attack(x, y)},
                              len(x), args.repeats)
    ours, theirs = speed["ours"], speed["torchattacks"]
    print(f"PGD-40 on capacity-scale-{args.scale} CNN, batch {len(x)}, {dev}: ours {ours:.0f} img/s, "
          f"torchattacks {theirs:.0f} img/s, ratio ours/torchattacks {ours / theirs:.2f}")

    train = load_dataset("mnist", "train").subset(args.train_images)
    small = capacity_cnn(1).to(dev)
    start = time.perf_counter()
    fit(small, train, epochs=1, lr=1e-3, optimizer="adam", attack=Attack("pgd", eps=0.3, alpha=0.1, steps=7), progress=False)
    print(f"PGD-7 adversarial-training epoch, capacity-scale-1 CNN, {len(train)} {train.name} images, {dev}: "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
