"""BCQ training speed on this machine: our batched trainer against the original code's loop structure.

Prints ONE line: gradient steps per second (one step = one BCQ update of one agent: VAE, twin critics, actor,
targets) of :class:`helpers.rl.ReferenceBCQ` (nn.Modules with torch.nn.utils.prune masks, separate critic
passes, three optimisers, per-parameter target updates: the structure of sfujim/BCQ) and of
:class:`helpers.rl.BCQEnsemble` with one agent and with ``--configs`` masked agents trained at once, and the
ratios. Best of ``--repeats`` timings, candidates interleaved so that load changes on a shared CPU hit all alike;
``--cpu-time`` times with the process CPU clock instead of the wall clock.
Usage:
    python benchmarks/bcq_speed.py [--width 0.15] [--configs 26] [--steps 30] [--repeats 3] [--threads 1] [--cpu-time]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

import helpers
from helpers import rl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--width", type=float, default=0.15,
                        help="hidden-layer scale (0.15: the book sweep; 1.0: the paper's 400-300 and 750-750)")
    parser.add_argument("--configs", type=int, default=26,
                        help="masked agents trained at once (26: one algorithm of the book sweep)")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process CPU clock (fairer on a shared, overloaded machine)")
    args = parser.parse_args()
    helpers.seed_everything(0)
    torch.set_num_threads(args.threads)
    data = rl.random_dataset(args.env, 2000, 0)
    trans = data.transitions()
    gen = torch.Generator().manual_seed(0)

    def agent() -> rl.BCQNetworks:
        return rl.BCQNetworks(data.state_dim, data.action_dim, data.max_action, width=args.width)

    agents = [agent() for _ in range(args.configs)]
    masks = [rl.prune_agent(a, "magnitude", 1 - args.sparsity, data, gen) for a in agents]
    reference = rl.ReferenceBCQ(copy.deepcopy(agents[0]), masks[0])
    single = rl.BCQEnsemble(agents[:1], masks[:1])
    many = rl.BCQEnsemble(agents, masks)
    runs = {"reference": (lambda: reference.train_step(trans), 1), "ours": (lambda: single.train_step(trans), 1),
            "ours_batched": (lambda: many.train_step(trans), args.configs)}
    for fn, _ in runs.values():  # warm-up
        for _ in range(3):
            fn()
    clock = time.process_time if args.cpu_time else time.perf_counter
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):
        for name, (fn, _) in runs.items():
            start = clock()
            for _ in range(args.steps):
                fn()
            best[name] = min(best[name], clock() - start)
    speed = {name: args.steps * agents_per_step / best[name] for name, (_, agents_per_step) in runs.items()}
    ref = speed["reference"]
    unit = "per CPU-second" if args.cpu_time else "per second"
    print(f"BCQ gradient steps {unit} ({args.env}, width {args.width:g}, batch 100, {args.sparsity:.0%} sparse, "
          f"{args.threads} thread): reference loop {ref:.1f}, ours 1 agent {speed['ours']:.1f} "
          f"({speed['ours'] / ref:.2f}x), ours {args.configs} agents batched {speed['ours_batched']:.1f} agent-steps/s "
          f"({speed['ours_batched'] / ref:.2f}x)")


if __name__ == "__main__":
    main()
