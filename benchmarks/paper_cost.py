"""What the book's `paper` rows cost: units, FLOPs and GPU-hours per notebook (issue 15, item 2). ESTIMATES.

For each of the 14 chapter notebooks this script reads the notebook's ``paper`` row (its ``SCALES`` table, parsed
from the notebook's code cell, with the chapter's ``scales.yml`` row merged under it as ``helpers.results.start``
does), builds the ACTUAL models of ``helpers.models`` at the paper's widths and input shapes, and counts with
``torch.utils.flop_counter.FlopCounterMode`` the FLOPs of one training step of the helpers' own recipe
(``helpers.train.fit`` with the recipe's attack / step loss, ``ReferenceBCQ.train_step``, ...), of one attack
iteration and of one forward pass, on the CPU. Convnets are measured on a micro-batch of ``MICRO`` images (one
image for the 1000 x 1000 counting net) and scaled linearly to the paper's batch (convolutions and matrix products
are linear in the batch). The counts are multiplied by steps per epoch x epochs (dataset sizes below) and by the
number of units: a unit is one independent training or evaluation job that a cluster can run in parallel.

FlopCounterMode counts matrix products and convolutions (forward and backward); elementwise work (activations,
batch norm, the optimiser, FLOAT's weight noise) is not counted. GPU-hours = FLOPs / ``THROUGHPUT``: an
assumption (a sustained rate on one A100-class GPU) to be replaced by a measured figure when a GPU run is made.

Run:  .venv/bin/python benchmarks/paper_cost.py        (writes benchmarks/paper_cost.md; ~1-2 min on 2 cores)
"""
from __future__ import annotations

import argparse
import ast
import datetime
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Sustained FLOP/s of one A100-class GPU on these convnets (fp32 / TF32 mixed): an ASSUMPTION, not a measurement.
THROUGHPUT = 20e12
#: Chapter 2's MLPs are latency-bound: gradient steps per second of one agent in one GPU process (ASSUMPTION).
RL_STEPS_PER_S = 1_000
#: Images per micro-batch on which a convnet's per-image cost is measured (then scaled to the paper's batch).
MICRO = 2

#: Dataset sizes (images / transitions). MNIST 3 vs 7: the classes Chapter 1's feature notebook selects.
MNIST_TRAIN, MNIST_TEST = 60_000, 10_000
MNIST_37_TRAIN, MNIST_37_TEST = 6_131 + 6_265, 1_010 + 1_028
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
#: D4RL v2 tasks (and their gymnasium v5 twins): observation and action sizes.
RL_DIMS = {"hopper-expert-v2": (11, 3), "halfcheetah-expert-v2": (17, 6), "walker2d-expert-v2": (17, 6),
           "Hopper-v5": (11, 3), "HalfCheetah-v5": (17, 6), "Walker2d-v5": (17, 6)}
EPISODE_STEPS = 1_000  # a MuJoCo episode's step cap (upper bound: episodes that terminate early are shorter)

NOTEBOOKS = [
    ("ch1_lighter_robust", "capacity"), ("ch1_lighter_robust", "feature_usefulness"),
    ("ch1_lighter_robust", "lottery_tickets"), ("ch2_offline_rl_pruning", "datasets"),
    ("ch2_offline_rl_pruning", "masks"), ("ch2_offline_rl_pruning", "sweep"), ("ch3_gradauto", "dynamic_networks"),
    ("ch3_gradauto", "energy_attacks"), ("ch3_gradauto", "ablations"), ("ch4_float", "float_vs_oat"),
    ("ch4_float", "sparsity"), ("ch4_float", "attacks"), ("ch5_representation", "counting"),
    ("ch5_representation", "defences"),
]


# ----------------------------------------------------------------------------------------------------------------
# The paper rows
# ----------------------------------------------------------------------------------------------------------------

def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def notebook_parameters(chapter: str, notebook: str) -> dict[str, Any]:
    """The defaults of the notebook's ``parameters`` cell (papermill's), e.g. Chapter 3's ``KIND``."""
    for cell in _code_cells(ROOT / "book" / chapter / f"{notebook}.ipynb"):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            space: dict[str, Any] = {}
            exec(compile("".join(cell["source"]), f"{notebook}:parameters", "exec"), space)
            return {k: v for k, v in space.items() if not k.startswith("__")}
    return {}


def notebook_scales(chapter: str, notebook: str) -> dict[str, dict]:
    """The notebook's ``SCALES`` table: the imports and plain assignments of its cell up to ``SCALES = ...``, run."""
    for cell in _code_cells(ROOT / "book" / chapter / f"{notebook}.ipynb"):
        source = "".join(cell["source"])
        if "SCALES" not in source:
            continue
        tree = ast.parse(source)
        keep = []
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                keep.append(node)
            elif isinstance(node, ast.Assign):
                keep.append(node)
                if any(isinstance(t, ast.Name) and t.id == "SCALES" for t in node.targets):
                    space: dict[str, Any] = {}
                    exec(compile(ast.Module(body=keep, type_ignores=[]), f"{notebook}:SCALES", "exec"), space)
                    return space["SCALES"]
    raise ValueError(f"no SCALES table in book/{chapter}/{notebook}.ipynb")


def paper_row(chapter: str, notebook: str) -> dict[str, Any]:
    """The notebook's paper settings: the chapter's scales.yml paper row with the notebook's own paper row over it."""
    shared_path = ROOT / "book" / chapter / "scales.yml"
    shared = (yaml.safe_load(shared_path.read_text()) or {}).get("paper", {}) if shared_path.exists() else {}
    params = {k: v for k, v in notebook_parameters(chapter, notebook).items() if v is not None}  # e.g. KIND
    return {**params, **shared, **notebook_scales(chapter, notebook)["paper"]}


# ----------------------------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------------------------

class _GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP goes to "Global" (no per-module breakdown).
    The tracker's backward hooks break ``torch.autograd.grad`` w.r.t. an input leaf (every attack here does that:
    "A leaf node was passed to _will_engine_execute_node ..."), so it is switched off."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs that ``fn()`` runs, as torch's FlopCounterMode counts them (matmuls and convolutions, fwd and bwd)."""
    mode = FlopCounterMode(display=False)
    mode.mod_tracker = _GlobalOnly()
    with mode:
        fn()
    return int(mode.get_total_flops())


class Meter:
    """Measurements by key, each counted once; ``dry=True`` returns 1.0 for every measurement without running it
    (the unit counts alone: what the tests check)."""

    def __init__(self, dry: bool = False) -> None:
        self.dry, self.cache = dry, {}

    def __call__(self, key: str, fn: Callable[[], float]) -> float:
        if self.dry:
            return 1.0
        if key not in self.cache:
            start = time.perf_counter()
            self.cache[key] = float(fn())
            print(f"  measured {key}: {self.cache[key]:.3e} ({time.perf_counter() - start:.1f} s)", flush=True)
        return self.cache[key]


def images(shape: tuple[int, ...], n: int = MICRO, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g), torch.randint(classes, (n,), generator=g)


def fit_step(model_fn: Callable[[], torch.nn.Module], shape: tuple[int, ...], classes: int = 10, n: int = MICRO,
             **fit_kwargs) -> float:
    """FLOPs per image of one ``helpers.train.fit`` optimiser step (the recipe's attack / step loss included)."""
    from helpers.train import fit

    model = model_fn()
    x, y = images(shape, n, classes)
    return count_flops(lambda: fit(model, (x, y), epochs=1, batch_size=n, progress=False, **fit_kwargs)) / n


def evaluation(model_fn: Callable[[], torch.nn.Module], shape: tuple[int, ...], attack=None, classes: int = 10,
               n: int = MICRO, **kwargs) -> float:
    """FLOPs per image of ``helpers.train.evaluate`` (clean pass, the attack, the pass on the attacked images)."""
    from helpers.train import evaluate

    model = model_fn()
    x, y = images(shape, n, classes)
    return count_flops(lambda: evaluate(model, (x, y), attack=attack, batch_size=n, **kwargs)) / n


def forward(model_fn: Callable[[], torch.nn.Module], shape: tuple[int, ...], n: int = MICRO) -> float:
    model = model_fn().eval()
    x, _ = images(shape, n)
    with torch.no_grad():
        return count_flops(lambda: model(x)) / n


def pgd_iteration(model_fn: Callable[[], torch.nn.Module], shape: tuple[int, ...], *, eps: float, context=None,
                  n: int = MICRO, classes: int = 10, **call_kwargs) -> float:
    """FLOPs per image of ONE PGD iteration (forward + input gradient) of helpers.attacks: PGD-2 minus PGD-1."""
    from contextlib import nullcontext

    from helpers.attacks import Attack

    model = model_fn().eval()
    x, y = images(shape, n, classes)

    def run(steps: int) -> int:
        attack = Attack("pgd", eps=eps, alpha=eps / 4, steps=steps)
        with context(model) if context else nullcontext():
            return count_flops(lambda: attack(model, x, y, generator=torch.Generator().manual_seed(0), **call_kwargs))

    return (run(2) - run(1)) / n


@dataclass
class Row:
    notebook: str
    part: str
    units: int
    unit: str
    flops_per_unit: float
    notes: str = ""
    rl_hours: float | None = None  # Chapter 2: GPU-hours by RL_STEPS_PER_S instead of FLOPs

    @property
    def total(self) -> float:
        return self.units * self.flops_per_unit

    @property
    def gpu_hours(self) -> float:
        return self.total / THROUGHPUT / 3600


def steps_per_epoch(n: int, batch: int) -> int:
    return math.ceil(n / batch)


# ----------------------------------------------------------------------------------------------------------------
# Chapter 1
# ----------------------------------------------------------------------------------------------------------------

def capacity(cfg: dict, m: Meter) -> list[Row]:
    from helpers.models import capacity_cnn
    from helpers.train.adversarial import CAPACITY_ATTACKS, CAPACITY_TRAININGS, capacity_attack

    eps_list = [cfg["EPS"]] + ([cfg["EXTRA_EPS"]] if cfg.get("EXTRA_EPS") else [])
    n_train = cfg["TRAIN_N"] or MNIST_TRAIN
    n_eval = cfg["EVAL_N"] or MNIST_TEST
    steps = cfg["EPOCHS"] * steps_per_epoch(n_train, cfg["BATCH_SIZE"])
    rows = []
    for method, label in CAPACITY_TRAININGS.items():
        per_unit = []
        for scale in cfg["CAPACITIES"]:
            for eps in eps_list:
                train_attack = None if method == "standard" else capacity_attack(
                    method, eps, cfg["TRAIN_PGD_STEPS"], cfg["TRAIN_PGD_STEP_OVER_EPS"])
                eval_attacks = [capacity_attack(kind, eps, cfg["EVAL_PGD_STEPS"], cfg["EVAL_PGD_STEP_OVER_EPS"])
                                for kind in CAPACITY_ATTACKS]  # every model under FGSM and PGD
                step = m(f"capacity {method} scale {scale} train step/img", lambda: fit_step(
                    lambda: capacity_cnn(scale), (1, 28, 28), lr=cfg["LR"], optimizer=cfg["OPTIMIZER"],
                    momentum=cfg["MOMENTUM"], attack=train_attack, adv_weight=cfg["ADV_WEIGHT"]))
                ev = sum(m(f"capacity {a.kind} scale {scale} eval/img",
                           lambda a=a: evaluation(lambda: capacity_cnn(scale), (1, 28, 28), a)) for a in eval_attacks)
                per_unit.append(steps * cfg["BATCH_SIZE"] * step + n_eval * ev)
        n_units = cfg["SEEDS"] * len(cfg["CAPACITIES"]) * len(eps_list)
        k = cfg["TRAIN_PGD_STEPS"] if method == "pgd" else 1 if method == "fgsm" else 0
        rows.append(Row("capacity", f"{label} models", n_units,
                        f"(seed, capacity scale, eps): {label} training + evaluation",
                        sum(per_unit) / len(per_unit),
                        f"{cfg['EPOCHS']} epochs x {steps // cfg['EPOCHS']} steps of batch {cfg['BATCH_SIZE']} on MNIST 60k; "
                        f"a step = attack ({k} fwd+input-grad) + the training passes + backward; eval: FGSM and "
                        f"{eval_attacks[-1].describe()} on {n_eval:,} test images; FLOPs/unit is the mean over scales "
                        f"{cfg['CAPACITIES']} (scale 5 dominates)"))
    return rows


def feature_usefulness(cfg: dict, m: Meter) -> list[Row]:
    from helpers.attacks import Attack
    from helpers.models import BinaryFeatureCNN

    n_train = cfg["N_TRAIN"] or MNIST_37_TRAIN
    n_test = MNIST_37_TEST
    n_robust = cfg["N_ROBUST"] or n_test
    batch = cfg["BATCH"]
    binary = (1, 28, 28)

    def train_std():
        return fit_step(BinaryFeatureCNN, binary, classes=2, lr=cfg["LR"], optimizer=cfg["OPTIMIZER"])

    at_attack = Attack("pgd", eps=cfg["EPS"], alpha=cfg["AT_ALPHA"], steps=cfg["AT_STEPS"])

    def train_at():
        return fit_step(BinaryFeatureCNN, binary, classes=2, lr=cfg["LR"], optimizer=cfg["OPTIMIZER"],
                        attack=at_attack, adv_weight=cfg["ADV_WEIGHT"])

    std = m("feature standard train step/img", train_std)
    adv = m("feature PGD-AT train step/img", train_at)
    it = m("feature PGD iteration/img", lambda: pgd_iteration(lambda: BinaryFeatureCNN(), binary, eps=cfg["EPS"], classes=2))
    fwd = m("feature forward/img", lambda: forward(BinaryFeatureCNN, binary))
    features = 100  # upper bound: only the live features with a non-zero weight are attacked
    per_feature_pgd3 = features * (cfg["PAPER_PGD_STEPS"] * it + fwd)
    seed_unit = (cfg["EPOCHS"] * steps_per_epoch(n_train, batch) * batch * std
                 + n_robust * per_feature_pgd3 + n_test * fwd)
    eval_pgd = len(cfg["EVAL_EPS"]) * (cfg["N_EVAL"] or n_test) * (cfg["EVAL_STEPS"] * it + 2 * fwd)
    measures = len(("sigmoid", "ilyas")) * (n_robust * per_feature_pgd3
                                          + cfg["N_STRONG"] * features * (cfg["STRONG_PGD_STEPS"] * it + fwd))
    at_unit = (cfg["AT_EPOCHS"] * steps_per_epoch(cfg["AT_N_TRAIN"] or n_train, batch) * batch * adv
               + eval_pgd + measures)
    prune_models = 2 * 2 * len(cfg["PRUNE_KEEP"])  # heads {as trained, refit} x rankings x kept counts (upper bound)
    extra_unit = eval_pgd + measures + prune_models * cfg["N_PRUNE"] * (cfg["EVAL_STEPS"] * it + 2 * fwd)
    return [
        Row("feature_usefulness", "standard models", cfg["SEEDS"], "seed: standard training + per-feature PGD-3",
            seed_unit, f"{cfg['EPOCHS']} epochs on MNIST 3 vs 7 ({n_train:,} images), batch {batch}; robust usefulness: "
            f"PGD-{cfg['PAPER_PGD_STEPS']} per (feature, image), 100 features (upper bound) x {n_robust:,} test images"),
        Row("feature_usefulness", "PGD-AT model", 1, "the PGD-AT model: training + its measures",
            at_unit, f"PGD-{cfg['AT_STEPS']} adversarial training {cfg['AT_EPOCHS']} epochs; PGD-{cfg['EVAL_STEPS']} "
            f"accuracy at eps {cfg['EVAL_EPS']}; per-feature PGD-3 and PGD-{cfg['STRONG_PGD_STEPS']} (both read-outs)"),
        Row("feature_usefulness", "standard model measures + pruning", 1,
            "first seed's model: accuracy rows, per-feature measures, pruning curves", extra_unit,
            f"pruning: up to {prune_models} pruned models x PGD-{cfg['EVAL_STEPS']} on {cfg['N_PRUNE']} images "
            "(head refits: L-BFGS on features, not counted)"),
    ]


def lottery_tickets(cfg: dict, m: Meter) -> list[Row]:
    from helpers.attacks import Attack
    from helpers.models import MLP
    from helpers.train.adversarial import LOTTERY_ARCH

    mlp = lambda: MLP(LOTTERY_ARCH[0], LOTTERY_ARCH[1], 10)  # noqa: E731
    fgsm = Attack("fgsm", eps=cfg["EPS"])
    pgd = Attack("pgd", eps=cfg["EPS"], alpha=0.01, steps=40)
    std = m("lottery standard train step/img", lambda: fit_step(mlp, (1, 28, 28), lr=cfg["LR"], optimizer="adam"))
    adv = m("lottery FGSM-AT train step/img", lambda: fit_step(mlp, (1, 28, 28), lr=cfg["LR"], optimizer="adam",
                                                                attack=fgsm, adv_weight=cfg["ADV_WEIGHT"]))
    ev_fgsm = m("lottery FGSM eval/img", lambda: evaluation(mlp, (1, 28, 28), fgsm))
    ev_pgd = m("lottery PGD-40 eval/img", lambda: evaluation(mlp, (1, 28, 28), pgd))
    n_train, n_test = cfg["TRAIN_N"] or MNIST_TRAIN, cfg["TEST_N"] or MNIST_TEST
    steps = cfg["EPOCHS"] * steps_per_epoch(n_train, cfg["BATCH_SIZE"]) * cfg["BATCH_SIZE"]
    scopes = cfg.get("SCOPES") or ["layer"]
    rows = []
    for training, step, extra in (("standard", std, 0.0), ("FGSM-AT", adv, cfg["PGD_N"] * ev_pgd)):
        per_round = steps * step + n_test * ev_fgsm + extra
        for scope in scopes:
            chains = 2 + (1 if cfg.get("CONTROL") and scope == scopes[0] else 0)
            rows.append(Row("lottery_tickets", f"{training} chains, {scope} pruning", cfg["SEEDS"],
                            f"(seed, {scope}, {training}): {chains} chains (rewind, random re-init"
                            + (", the ticket's mask re-initialised" if chains == 3 else "")
                            + f") of {cfg['ROUNDS']} sequential pruning rounds (adversarial.lottery_unit)",
                            chains * cfg["ROUNDS"] * per_round,
                            f"784-300-100-100-10 MLP, {cfg['EPOCHS']} epochs x batch {cfg['BATCH_SIZE']} per round (masked "
                            f"weights computed densely); FGSM eval on {n_test:,} each round" +
                            (f", PGD-40 on {cfg['PGD_N']:,}" if extra else "") +
                            "; the dense round 0 is shared by the chains (counted for each: upper bound)"))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Chapter 2
# ----------------------------------------------------------------------------------------------------------------

def _transitions(state_dim: int, action_dim: int, n: int = 1_000):
    from helpers.rl.networks import Transitions

    g = torch.Generator().manual_seed(0)
    return Transitions(torch.randn(n, state_dim, generator=g), torch.rand(n, action_dim, generator=g) * 2 - 1,
                       torch.randn(n, 1, generator=g), torch.randn(n, state_dim, generator=g), torch.ones(n, 1))


def bcq_step(task: str, algorithm: str, width: float) -> float:
    """FLOPs of one gradient step of ``ReferenceBCQ`` (sfujim/BCQ's structure; BC trains the VAE only), batch 100."""
    from helpers.rl.networks import BCQNetworks
    from helpers.rl.offline import ReferenceBCQ

    s, a = RL_DIMS[task]
    torch.manual_seed(0)
    agent = BCQNetworks(s, a, 1.0, cloning=algorithm == "BC", width=width)
    learner = ReferenceBCQ(agent)
    data = _transitions(s, a)
    return count_flops(lambda: learner.train_step(data))


def bcq_act(task: str, algorithm: str, width: float) -> float:
    """FLOPs of choosing one action (BCQ: 100 sampled actions scored by Q1; BC: one VAE decode)."""
    from helpers.rl.networks import BCQNetworks

    s, a = RL_DIMS[task]
    agent = BCQNetworks(s, a, 1.0, cloning=algorithm == "BC", width=width)
    return count_flops(lambda: agent.act(torch.randn(1, s)))


def td3_step(task: str, hidden: int, batch: int = 256) -> float:
    """FLOPs per environment step of TD3 as helpers.rl.online.train_td3 runs it: one critic update (target actor and
    twin target critics forward, twin critics forward + backward) every step, an actor update (actor and Q1 forward +
    backward) every 2nd step (policy_freq 2), one actor forward to act."""
    import torch.nn.functional as F

    from helpers.rl.online import TD3Expert, _Q

    s, a = RL_DIMS[task]
    actor, q1, q2 = TD3Expert(s, a, 1.0, hidden), _Q(s, a, hidden), _Q(s, a, hidden)

    def q(net, st, ac):
        x = torch.cat([st, ac], -1)
        return net.l3(torch.relu(net.l2(torch.relu(net.l1(x)))))

    st, ac, nx = torch.randn(batch, s), torch.rand(batch, a), torch.randn(batch, s)

    def critic():
        with torch.no_grad():
            a2 = actor(nx)
            target = torch.min(q(q1, nx, a2), q(q2, nx, a2))
        (F.mse_loss(q(q1, st, ac), target) + F.mse_loss(q(q2, st, ac), target)).backward()

    def actor_update():
        (-q(q1, st, actor(st)).mean()).backward()

    with torch.no_grad():
        act = count_flops(lambda: actor(torch.randn(1, s)))
    return count_flops(critic) + 0.5 * count_flops(actor_update) + act


def datasets(cfg: dict, m: Meter) -> list[Row]:
    tasks = cfg["TASKS"]
    per = sum(m(f"TD3 step {t}", lambda t=t: td3_step(t, cfg["EXPERT_HIDDEN"])) for t in tasks) / len(tasks)
    rollout = sum(m(f"TD3 act {t}", lambda t=t: _td3_act(t, cfg["EXPERT_HIDDEN"])) for t in tasks) / len(tasks)
    unit = cfg["EXPERT_STEPS"] * per + cfg["DATASET_STEPS"] * rollout
    hours = cfg["EXPERT_STEPS"] / RL_STEPS_PER_S / 3600
    return [Row("datasets", "TD3 experts (only without D4RL files)", len(tasks),
                "task: TD3 expert + 1M-transition rollout", unit,
                f"0 when the D4RL expert files (the paper's data) are present; otherwise TD3 with "
                f"{cfg['EXPERT_HIDDEN']}-{cfg['EXPERT_HIDDEN']} nets, batch 256, {cfg['EXPERT_STEPS']:,} env + gradient "
                f"steps, then {cfg['DATASET_STEPS']:,} rollout steps; MuJoCo simulation (CPU) not counted",
                rl_hours=len(tasks) * hours)]


def _td3_act(task: str, hidden: int) -> float:
    from helpers.rl.online import TD3Expert

    s, a = RL_DIMS[task]
    actor = TD3Expert(s, a, 1.0, hidden)
    with torch.no_grad():
        return count_flops(lambda: actor(torch.randn(1, s)))


def masks(cfg: dict, m: Meter) -> list[Row]:
    from helpers.rl.networks import BCQNetworks
    from helpers.rl.offline import pruning_scores

    class Data:  # an OfflineDataset stand-in: what pruning_scores draws its one batch from
        def __init__(self, s: int, a: int) -> None:
            self.t = _transitions(s, a)

        def sample(self, n: int, generator: torch.Generator):
            idx = torch.randint(len(self.t.state), (n,), generator=generator)
            return type(self.t)(*(x[idx] for x in self.t))

    def scoring(env: str, algo: str) -> float:
        s, a = RL_DIMS[env]
        agent = BCQNetworks(s, a, 1.0, cloning=algo == "BC")
        data, g = Data(s, a), torch.Generator().manual_seed(0)
        return sum(count_flops(lambda meth=meth: pruning_scores(agent, meth, data, g)) for meth in ("snip", "grasp"))

    per = [m(f"masks scoring {e} {a}", lambda e=e, a=a: scoring(e, a)) for e in cfg["ENVS"] for a in cfg["ALGOS"]]
    return [Row("masks", "SNIP + GraSP masks at initialisation", len(cfg["ENVS"]) * len(cfg["ALGOS"]) * cfg["SEEDS"],
                "(task, algorithm, seed): one scoring batch per method", sum(per) / len(per),
                f"SNIP on {cfg['SNIP_BATCH']} and GraSP on {cfg['GRASP_BATCH']} transitions, full-width nets; negligible "
                f"(the actor latency timing, {cfg['TIME_REPEATS']} repeats, is excluded). "
                f"The paper row's expert data: D4RL files, else the datasets notebook's TD3 fallback (counted there)")]


def sweep(cfg: dict, m: Meter) -> list[Row]:
    from helpers.rl.sweep import steps_per_algorithm, sweep_configs

    seeds = list(range(cfg["SEEDS"]))
    configs = len(sweep_configs(cfg["METHODS"], cfg["SPARSITIES"], seeds))
    steps = steps_per_algorithm(cfg["STEPS"], cfg["ALGORITHMS"])
    rows = []
    for algo in cfg["ALGORITHMS"]:
        n_steps = steps[algo]
        points = len({n_steps, *(range(cfg["EVAL_EVERY"], n_steps, cfg["EVAL_EVERY"]) if cfg["EVAL_EVERY"] else [])})
        env_steps = points * cfg["EPISODES"] * EPISODE_STEPS
        per = [m(f"{algo} step {t} width {cfg['WIDTH']}", lambda t=t: bcq_step(t, algo, cfg["WIDTH"])) for t in cfg["TASKS"]]
        act = [m(f"{algo} act {t}", lambda t=t: bcq_act(t, algo, cfg["WIDTH"])) for t in cfg["TASKS"]]
        agent = n_steps * sum(per) / len(per) + env_steps * sum(act) / len(act)
        # the notebook's units (rl.sweep_units): per task and algorithm, UNIT_SEEDS seeds in one batched ensemble
        unit_seeds = cfg.get("UNIT_SEEDS") or len(seeds)
        agents_per_unit = configs // len(seeds) * unit_seeds
        n_units = len(cfg["TASKS"]) * -(-len(seeds) // unit_seeds)
        rows.append(Row("sweep", f"{algo} agents", n_units,
                        f"(task, {algo}, {unit_seeds} seed{'s' if unit_seeds > 1 else ''}): {agents_per_unit} agents "
                        f"(dense + pruning method x sparsity) in one batched ensemble", agents_per_unit * agent,
                        f"{n_steps:,} gradient steps of batch 100 (ReferenceBCQ.train_step, width {cfg['WIDTH']}: "
                        f"400-300 actor/critics, 750-750 VAE); {configs} configs per task = {cfg['SEEDS']} seeds x "
                        f"(1 dense + {len(cfg['METHODS'])} methods x {sum(s > 0 for s in cfg['SPARSITIES'])} sparsities); "
                        f"evaluation: {points} points x {cfg['EPISODES']} episodes x <= {EPISODE_STEPS} env steps = "
                        f"{env_steps / 1e6:.0f}M MuJoCo steps per agent (CPU-bound, not in the GPU-hours); "
                        f"run_sweep batches up to 32 agents per process", rl_hours=n_units * agents_per_unit * n_steps / RL_STEPS_PER_S / 3600))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Chapter 3
# ----------------------------------------------------------------------------------------------------------------

def _dynamic(kind: str, cfg: dict):
    from helpers.models.dynamic import dynamic_resnet

    options = {"gate": "bn_mlp"} if kind in ("depth", "width") else {}
    torch.manual_seed(0)
    return dynamic_resnet(kind, cfg[f"LAYERS_{kind.upper()}"], 10, 3, cfg["WIDTH"], 32, **options)


def dynamic_train_step(kind: str, cfg: dict, hrl: bool = False) -> float:
    """FLOPs per image of one step of helpers.train.dynamic's recipe (fit with the gating step loss; HRL: REINFORCE)."""
    import torch.nn.functional as F

    from helpers.models.dynamic import policy_sampling
    from helpers.train import fit
    from helpers.train.dynamic import HRL_DEFAULTS, hybrid_rl_loss

    model = _dynamic(kind, cfg)
    x, y = images((3, 32, 32))
    penalty = cfg[f"PENALTY_{kind.upper()}"]

    def sp_loss(mod, xb, yb):
        logits, trace = mod.forward_with_gates(xb)
        return F.cross_entropy(logits, yb) + penalty * mod.gating_penalty(trace), logits

    def hrl_loss(mod, xb, yb):
        logits, trace = mod.forward_with_gates(xb)
        return hybrid_rl_loss(logits, yb, trace, HRL_DEFAULTS["alpha"], HRL_DEFAULTS["rl_weight"], HRL_DEFAULTS["gamma"]), logits

    if not hrl:
        return count_flops(lambda: fit(model, (x, y), epochs=1, lr=cfg["TRAIN_LR"], batch_size=len(x),
                                       optimizer=cfg["OPTIMIZER"], weight_decay=cfg["WEIGHT_DECAY"], step_loss=sp_loss,
                                       lr_schedule=cfg["LR_SCHEDULE"], augment=cfg["AUGMENT"], progress=False)) / len(x)
    with policy_sampling(model):
        return count_flops(lambda: fit(model, (x, y), epochs=1, lr=cfg["HRL_LR"], batch_size=len(x),
                                       optimizer=cfg["HRL_OPTIMIZER"], weight_decay=cfg["HRL_WEIGHT_DECAY"],
                                       step_loss=hrl_loss, progress=False)) / len(x)


def energy_iteration(kind: str, method: str, cfg: dict) -> float:
    """FLOPs per image of ONE iteration of helpers.attacks.energy (dense execution, as timed_attack runs it)."""
    from helpers.attacks import EnergyAttack
    from helpers.attacks.energy import timed_attack

    net = _dynamic(kind, cfg).eval()
    x, _ = images((3, 32, 32))
    extra = {"K": 1.0} if method == "gradauto" else {}

    def run(steps: int) -> int:
        return count_flops(lambda: timed_attack(net, x, EnergyAttack(method, steps=steps, lr=0.01, **extra),
                                                batch_size=len(x)))

    return (run(2) - run(1)) / len(x)


LABELS3 = {"depth": "SkipNet ResNet-{}", "act": "SACT ResNet-{}", "width": "ManiDP ResNet-{}"}


def dynamic_networks(cfg: dict, m: Meter) -> list[Row]:
    n_train = cfg["TRAIN_N"] or CIFAR_TRAIN
    spe = steps_per_epoch(n_train, cfg["BATCH_SIZE"])
    rows = []
    for kind in ("depth", "act", "width"):
        label = LABELS3[kind].format(cfg[f"LAYERS_{kind.upper()}"])
        sp = m(f"ch3 {kind} SP step/img", lambda kind=kind: dynamic_train_step(kind, cfg))
        fwd = m(f"ch3 {kind} forward/img", lambda kind=kind: forward(lambda: _dynamic(kind, cfg), (3, 32, 32)))
        unit = cfg["EPOCHS"] * spe * cfg["BATCH_SIZE"] * sp + (n_train + CIFAR_TEST) * fwd
        note = (f"{cfg['EPOCHS']} epochs x {spe} steps of batch {cfg['BATCH_SIZE']} on CIFAR-10 (fit + gating penalty; "
                f"FLOPs as executed: straight-through gates run every block in training); precise-BN pass + test pass")
        if kind == "depth":
            hrl = m("ch3 depth HRL step/img", lambda: dynamic_train_step("depth", cfg, hrl=True))
            unit += cfg["HRL_EPOCHS"] * spe * cfg["BATCH_SIZE"] * hrl
            note += f"; then SkipNet's hybrid-RL stage, {cfg['HRL_EPOCHS']} epochs (sequential: same unit)"
        rows.append(Row("dynamic_networks", label, cfg["SEEDS"], f"seed: train one {label}", unit, note))
    return rows


def _attack_rows(notebook: str, cfg: dict, m: Meter, jobs: list[tuple[str, str, int]]) -> list[Row]:
    n_images = cfg["N_IMAGES"] or CIFAR_TEST
    rows = []
    for kind, method, per_seed in jobs:
        label = LABELS3[kind].format(cfg[f"LAYERS_{kind.upper()}"])
        it = m(f"ch3 {kind} {method} iteration/img", lambda kind=kind, method=method: energy_iteration(kind, method, cfg))
        rows.append(Row(notebook, f"{method.upper() if method == 'ilfo' else 'GradAuto'} on {label}",
                        cfg["SEEDS"] * per_seed, f"(seed, attack{' variant' if per_seed > 1 else ''}): one attack of the "
                        "test set", n_images * cfg["STEPS"] * it,
                        f"{cfg['STEPS']} Adam iterations per image on {n_images:,} CIFAR-10 test images (dense execution, "
                        f"forward + input gradient); {per_seed} attack(s) per seed"))
    return rows


def energy_attacks(cfg: dict, m: Meter) -> list[Row]:
    return _attack_rows("energy_attacks", cfg, m, [(k, meth, 1) for k in ("depth", "act", "width")
                                                   for meth in ("ilfo", "gradauto")])


def ablations(cfg: dict, m: Meter) -> list[Row]:
    kind = cfg.get("KIND", "depth")
    other = "act" if kind != "act" else "depth"
    k_values = 6 - 1  # Table 3's K grid (1e-3 ... 1e2); K = 1 reuses the RD+RM run
    return _attack_rows("ablations", cfg, m, [(kind, "ilfo", 1), (kind, "gradauto", 3 + k_values),
                                              (other, "ilfo", 1), (other, "gradauto", 3)])


# ----------------------------------------------------------------------------------------------------------------
# Chapter 4
# ----------------------------------------------------------------------------------------------------------------

PGD7 = dict(eps=8 / 255, steps=7)


def _ch4_model(method: str, cfg: dict, width: float = 1.0):
    """A Chapter 4 network as helpers.train.once_for_all builds it (FLOATS slim switched to slimming ``width``)."""
    from helpers.models import FLOAT_EVAL_LAMBDAS, set_width
    from helpers.train.once_for_all import chapter_model

    torch.manual_seed(0)
    model = chapter_model(method, cfg["ARCH"], 10, 3, cfg["WIDTH"], lambda_choices=FLOAT_EVAL_LAMBDAS)
    if width != 1.0:
        set_width(model, width)
    return model


def ch4_pass(method: str, cfg: dict, lam: float, width: float = 1.0) -> float:
    """FLOPs per image of one training pass (forward + loss backward) at ``lam`` (and slimming factor ``width``)."""
    import torch.nn.functional as F

    from helpers.models import conditioned_on

    model = _ch4_model(method, cfg, width).train()
    x, y = images((3, 32, 32))

    def run():
        if method == "pgd-at":
            F.cross_entropy(model(x), y).backward()
        else:
            with conditioned_on(model, lam):
                F.cross_entropy(model(x), y).backward()

    return count_flops(run) / len(x)


def ch4_iteration(method: str, cfg: dict, width: float = 1.0) -> float:
    """FLOPs per image of one PGD iteration on a Chapter 4 network (at lambda 1 for the conditioned ones)."""
    from helpers.models import conditioned_on

    context = None if method == "pgd-at" else (lambda model: conditioned_on(model, 1.0))
    return pgd_iteration(lambda: _ch4_model(method, cfg, width), (3, 32, 32), eps=8 / 255, context=context)


def lambda_shares(choices, batch: int, draws: int = 1_000) -> tuple[float, float]:
    """Mean share of a batch with lambda < 1 (a clean pass) and with lambda > 0 (attack + adversarial pass), as
    helpers.train.once_for_all.sample_lambdas draws them (the counting of its training_work)."""
    from helpers.train.once_for_all import sample_lambdas

    g = torch.Generator().manual_seed(0)
    clean = adv = 0.0
    for _ in range(draws):
        lams = sample_lambdas(batch, choices, g)
        clean += float((lams < 1).float().mean())
        adv += float((lams > 0).float().mean())
    return clean / draws, adv / draws


def _ch4_costs(method: str, cfg: dict, m: Meter, width: float = 1.0) -> tuple[float, float, float]:
    base = "float" if method in ("floats-i", "floats-c") else method  # sparse momentum: FLOAT's dense network
    tag = f"{base} width {width}"
    t = m(f"ch4 {tag} train pass/img", lambda: ch4_pass(base, cfg, 1.0 if base != "pgd-at" else 0.0, width))
    a = m(f"ch4 {tag} PGD iteration/img", lambda: ch4_iteration(base, cfg, width))
    f = m(f"ch4 {tag} forward/img", lambda: forward(lambda: _ch4_model(base, cfg, width), (3, 32, 32)))
    return t, a, f


def ch4_training(method: str, cfg: dict, m: Meter, lam: float | None = None) -> float:
    """Training FLOPs of one Chapter 4 model: epochs x steps x batch x per-image cost of the recipe."""
    from helpers.models import FLOAT_EVAL_LAMBDAS, FLOAT_TRAIN_LAMBDAS, WIDTHS

    n = cfg["TRAIN_N"] or CIFAR_TRAIN
    images_seen = cfg["EPOCHS"] * steps_per_epoch(n, cfg["BATCH_SIZE"]) * cfg["BATCH_SIZE"]
    k = PGD7["steps"]
    widths = WIDTHS if method == "floats-slim" else (1.0,)
    per_image = 0.0
    for w in widths:
        t, a, _ = _ch4_costs(method, cfg, m, w)
        if method == "pgd-at":
            per_image += (lam > 0) * (k * a + t) + (lam < 1) * t
        else:
            choices = FLOAT_EVAL_LAMBDAS if method == "oat" else FLOAT_TRAIN_LAMBDAS
            clean, adv = lambda_shares(choices, cfg["BATCH_SIZE"]) if not m.dry else (1.0, 1.0)
            per_image += clean * t + adv * (k * a + t)
    return images_seen * per_image


def ch4_eval(method: str, cfg: dict, m: Meter, settings: int, steps: int, n: int, width: float = 1.0) -> float:
    """``settings`` evaluations (lambda settings) of clean + PGD-``steps`` accuracy on ``n`` test images."""
    _, a, f = _ch4_costs(method, cfg, m, width)
    return settings * n * (steps * a + 2 * f)


def float_vs_oat(cfg: dict, m: Meter) -> list[Row]:
    n_test = cfg["TEST_N"] or CIFAR_TEST
    recipe = (f"ResNet-34 (width {cfg['WIDTH']}) on CIFAR-10, {cfg['EPOCHS']} epochs of batch {cfg['BATCH_SIZE']}, "
              "PGD-7 on the lambda > 0 part of each batch")
    float_unit = ch4_training("float", cfg, m) + ch4_eval("float", cfg, m, 6, 7, n_test)
    oat_unit = ch4_training("oat", cfg, m) + ch4_eval("oat", cfg, m, 4, 7, n_test)
    rows = [Row("float_vs_oat", "FLOAT", cfg["SEEDS"], "seed: train FLOAT + PGD-7 trade-off", float_unit,
                f"{recipe}: half the batch clean, half PGD-7 (Alg. 1); eval: PGD-7 on {n_test:,} test images at "
                "6 (lambda_n, lambda_th) settings"),
            Row("float_vs_oat", "OAT", cfg["SEEDS"], "seed: train OAT + PGD-7 trade-off", oat_unit,
                f"{recipe}: lambda per image from {{0, 0.2, 0.7, 1}} (3/4 of a batch attacked); eval at 4 lambdas")]
    for lam in cfg["PGDAT_LAMBDAS"]:
        rows.append(Row("float_vs_oat", f"PGD-AT lambda={lam:g}", 1, "first seed: one PGD-AT model",
                        ch4_training("pgd-at", cfg, m, lam) + ch4_eval("pgd-at", cfg, m, 1, 7, n_test),
                        f"plain ResNet-34, (1 - lam) CE(x) + lam CE(PGD-7(x)); lam = 0: standard training"))
    return rows


def sparsity(cfg: dict, m: Meter) -> list[Row]:
    from helpers.models import WIDTHS

    n_test = cfg["TEST_N"] or CIFAR_TEST
    note = ("sparse momentum keeps masks over dense kernels: FLOPs of the dense FLOAT step (a sparse kernel would save "
            "up to 1 - density)")
    rows = [Row("sparsity", name, cfg["SEEDS"], f"seed: train {name} + PGD-7 at lambda 0 and 1",
                ch4_training(method, cfg, m) + ch4_eval(method, cfg, m, 2, 7, n_test),
                f"FLOAT's recipe with density {d:g}; {note}")
            for name, method, d in (("FLOATS-i", "floats-i", cfg["DENSITY_I"]), ("FLOATS-c", "floats-c", cfg["DENSITY_C"]))]
    slim = ch4_training("floats-slim", cfg, m) + sum(ch4_eval("floats-slim", cfg, m, 4, 7, n_test, w) for w in WIDTHS)
    rows.append(Row("sparsity", "FLOATS slim", 1, "first seed: train FLOATS slim + evaluate both widths", slim,
                    f"every batch at widths {WIDTHS} (summed losses); density {cfg['DENSITY_SLIM']:g}; {note}"))
    rows.append(Row("sparsity", "FLOAT evaluation", cfg["SEEDS"], "seed: PGD-7 on float_vs_oat's FLOAT at 4 lambdas",
                    ch4_eval("float", cfg, m, 4, 7, n_test), "FLOAT itself is trained by float_vs_oat (same checkpoint)"))
    return rows


def attacks(cfg: dict, m: Meter) -> list[Row]:
    n_test = cfg["TEST_N"] or CIFAR_TEST
    _, a, f = _ch4_costs("float", cfg, m)
    _, a_p, f_p = _ch4_costs("pgd-at", cfg, m)
    lambdas = len(cfg["PGDAT_LAMBDAS"])
    suite = lambda it, fw, settings: settings * n_test * ((20 * it + 2 * fw) + (it + 2 * fw))  # noqa: E731 PGD-20, FGSM
    tradeoff = suite(a, f, 6 + 4) + suite(a_p, f_p, lambdas)
    aa_per_image = 2 * cfg["AA_STEPS"] * cfg["AA_EOT"]  # APGD-CE then APGD-DLR, EOT samples per step
    aa = cfg["AA_N"] * aa_per_image * (4 * a + lambdas * a_p)
    k = cfg["CHECK_STEPS"]
    check_iters = 1 + k + k + len(cfg["EPS_GRID"]) * k + k + sum(cfg["STEPS_GRID"])
    check = cfg["CHECK_N"] * check_iters * a
    return [
        Row("attacks", "PGD-20 + FGSM trade-off", 1, "FLOAT, OAT and PGD-AT of the first seed under PGD-20 and FGSM",
            tradeoff, f"{n_test:,} test images; FLOAT at 6 settings, OAT at 4, {lambdas} PGD-AT models; every model is "
            "trained by float_vs_oat (same checkpoints: 0 training here)"),
        Row("attacks", "AutoAttack-rand", 4 + lambdas, "(model, lambda_n): AutoAttack-rand on the AA images",
            aa / (4 + lambdas), f"{cfg['AA_N']:,} images x (APGD-CE + APGD-DLR) x {cfg['AA_STEPS']} steps x "
            f"{cfg['AA_EOT']} EOT samples = {aa_per_image:,} forward + input-gradient passes per image (upper bound: "
            "APGD-DLR runs on all images, not only those APGD-CE left correct)"),
        Row("attacks", "obfuscation checklist", cfg["SEEDS"] * len(cfg["CHECK_LAMBDAS"]),
            "(seed, lambda_n): the five checks on FLOAT", check,
            f"{cfg['CHECK_N']:,} images x ~{check_iters} attack iterations (FGSM, PGD-{k}, transfer PGD-{k} on the "
            f"source, eps grid {len(cfg['EPS_GRID'])} x PGD-{k}, unbounded PGD-{k}, steps grid {cfg['STEPS_GRID']})"),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Chapter 5
# ----------------------------------------------------------------------------------------------------------------

def counting(cfg: dict, m: Meter) -> list[Row]:
    from helpers.models.counting import CountingCNN
    from helpers.train.counting import count_loss

    size = cfg["IMAGE_SIZE"]
    shape = (3, size, size)

    def step(norm: bool) -> float:
        torch.manual_seed(0)
        net_fn = lambda: CountingCNN("softplus", layers=cfg["LAYERS"], image_size=size, batch_norm=norm)  # noqa: E731
        model = net_fn()
        x = torch.rand(1, *shape)
        y = torch.rand(1, model.head.out_features)
        from helpers.train import fit

        return count_flops(lambda: fit(model, (x, y), epochs=1, lr=cfg["LR"], batch_size=1, optimizer=cfg["OPTIMIZER"],
                                       loss_fn=count_loss, progress=False))

    plain = m("counting step/img", lambda: step(False))
    steps = steps_per_epoch(cfg["TRAIN_N"], cfg["BATCH_SIZE"]) * cfg["BATCH_SIZE"]
    main = Row("counting", f"{cfg['MAIN']} nets", cfg["SEEDS"], f"seed: train the {cfg['MAIN']} counting net",
               cfg["EPOCHS"] * steps * plain,
               f"{len(cfg['LAYERS'])} strided convolutions on {size} x {size} RGB images, {cfg['TRAIN_N']:,} images, "
               f"batch {cfg['BATCH_SIZE']}, {cfg['EPOCHS']} epochs (one image measured, x batch); saliency / detection "
               f"on {cfg['SALIENCY_N']} images (< 1%) excluded")
    compare = Row("counting", "ReLU and sigmoid comparisons", 2, "activation: one comparison net (first seed)",
                  cfg["COMPARE_EPOCHS"] * steps * plain,
                  f"{cfg['COMPARE_EPOCHS']} epochs each; the sigmoid net's BatchNorm is elementwise (not counted)")
    return [main, compare]


def defences(cfg: dict, m: Meter) -> list[Row]:
    from helpers.attacks import Attack
    from helpers.models.defences import DEFENCES, pooled_defence_network
    from helpers.train.defences import THESIS_TRAINING, onehot_mse_loss, step_loss_for

    n_train = (MNIST_TRAIN - cfg["VALIDATION_N"]) if not cfg["TRAIN_N"] else cfg["TRAIN_N"]
    n_test = cfg["TEST_N"] or MNIST_TEST
    batch = THESIS_TRAINING["batch_size"]
    rows = []
    per_net = {}
    for name, spec in DEFENCES.items():
        build = lambda name=name: pooled_defence_network(name, image_shape=(1, 28, 28), pool=cfg["PD_POOL"])  # noqa: E731
        step = m(f"defence {name} step/img", lambda build=build, spec=spec: fit_step(
            build, (1, 28, 28), lr=spec.lr, momentum=THESIS_TRAINING["momentum"], loss_fn=onehot_mse_loss,
            step_loss=step_loss_for(spec)))
        fgsm = m(f"defence {name} FGSM eval/img", lambda build=build: evaluation(
            build, (1, 28, 28), Attack("fgsm", eps=THESIS_TRAINING["fgsm_eps"]), loss_fn=onehot_mse_loss))
        fwd = m(f"defence {name} forward/img", lambda build=build: forward(build, (1, 28, 28)))
        it = m(f"defence {name} PGD iteration/img", lambda build=build: pgd_iteration(
            build, (1, 28, 28), eps=THESIS_TRAINING["fgsm_eps"], loss_fn=onehot_mse_loss))
        per_net[name] = (step, fgsm, fwd, it)
        unit = (cfg["EPOCHS"] * steps_per_epoch(n_train, batch) * batch * step + cfg["EPOCHS"] * cfg["VALIDATION_N"] * fwd
                + 3 * n_test * fgsm)
        rows.append(Row("defences", f"{name} ({spec.title})", cfg["SEEDS"], f"seed: train and FGSM-test {name}", unit,
                        f"{cfg['EPOCHS']} epochs (upper bound: early stopping after {cfg['PATIENCE']}) of batch {batch} on "
                        f"{n_train:,} MNIST images" + (", GMR's input-gradient penalty (double backward)" if spec.uses_gmr
                                                        else "") + f"; FGSM white / black / small on {n_test:,}"))
    s = per_net["S"]
    rows.append(Row("defences", "black-box source S'", cfg["SEEDS"], "seed: train the second standard net",
                    cfg["EPOCHS"] * steps_per_epoch(n_train, batch) * batch * s[0], "as S"))
    k = cfg["PGD_STEPS"]
    check_iters = 1 + k + k + 4 * k + k + (k // 4 + k + 4 * k)  # obfuscation_checklist's default grids
    rows.append(Row("defences", "PGD checklist", len(DEFENCES), "network (first seed): the five checks",
                    sum(v[3] for v in per_net.values()) / len(per_net) * (cfg["CHECK_N"] or n_test) * check_iters,
                    f"{cfg['CHECK_N'] or n_test:,} images x ~{check_iters} attack iterations (PGD-{k}, default eps and "
                    "steps grids)"))
    return rows


CHAPTERS = {"capacity": capacity, "feature_usefulness": feature_usefulness, "lottery_tickets": lottery_tickets,
            "datasets": datasets, "masks": masks, "sweep": sweep, "dynamic_networks": dynamic_networks,
            "energy_attacks": energy_attacks, "ablations": ablations, "float_vs_oat": float_vs_oat,
            "attacks": attacks, "sparsity": sparsity, "counting": counting, "defences": defences}


def notebook_rows(chapter: str, notebook: str, meter: Meter) -> list[Row]:
    return CHAPTERS[notebook](paper_row(chapter, notebook), meter)


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------

def sci(x: float) -> str:
    return "0" if x == 0 else f"{x:.2e}"


def hours(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"


def summary(rows: list[Row]) -> list[dict]:
    out = []
    for chapter, notebook in NOTEBOOKS:
        mine = [r for r in rows if r.notebook == notebook]
        rl = [r.rl_hours for r in mine if r.rl_hours is not None]
        out.append(dict(chapter=chapter, notebook=notebook, units=sum(r.units for r in mine),
                        flops=sum(r.total for r in mine), gpu_hours=sum(r.gpu_hours for r in mine),
                        rl_hours=sum(rl) if rl else None))
    return out


def summary_table(rows: list[Row]) -> str:
    lines = ["| chapter | notebook | units | total FLOPs | GPU-hours (FLOPs / throughput) | GPU-hours (steps/s, Ch. 2) |",
             "|---|---|---:|---:|---:|---:|"]
    for s in summary(rows):
        rl = hours(s["rl_hours"]) if s["rl_hours"] is not None else ""
        lines.append(f"| {s['chapter']} | {s['notebook']} | {s['units']:,} | {sci(s['flops'])} | {hours(s['gpu_hours'])} | {rl} |")
    table = summary(rows)
    total = sum(s["flops"] for s in table)
    # the best single figure: Chapter 2's notebooks by steps/s (latency-bound), every other by FLOPs
    best = sum(s["rl_hours"] if s["rl_hours"] is not None else s["gpu_hours"] for s in table)
    lines.append(f"| **all** | | {sum(s['units'] for s in table):,} | {sci(total)} | "
                 f"{hours(total / THROUGHPUT / 3600)} | {hours(best)} with Chapter 2 by steps/s |")
    return "\n".join(lines)


def report(rows: list[Row], seconds: float) -> str:
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    head = f"""# What the paper rows cost (ESTIMATES)

Generated by `benchmarks/paper_cost.py` on {today} with torch {torch.__version__} ({seconds:.0f} s on the CPU).
**Every figure here is an estimate**, to be replaced by a measured one when a GPU run is made.

- **FLOPs**: `torch.utils.flop_counter.FlopCounterMode` on the CPU, over one training step of each notebook's own
  recipe (the actual `helpers.models` networks at the paper's widths and input shapes, `helpers.train.fit` with the
  recipe's attack or step loss; `ReferenceBCQ.train_step` for Chapter 2), one attack iteration and one forward pass;
  convnets measured on a micro-batch of {MICRO} images (the counting net: 1 image) and scaled linearly to the paper's
  batch; then x steps per epoch x epochs (MNIST 60k, CIFAR-10 50k, MNIST 3 vs 7 12,396) x units. Matrix products and
  convolutions only: elementwise work (activations, batch norm, optimiser, FLOAT's weight noise) is not counted.
- **GPU-hours** = FLOPs / **{THROUGHPUT / 1e12:.0f} TFLOP/s**, an ASSUMED sustained rate of one A100-class GPU on these
  convnets (fp32/TF32; small MNIST nets and batch-20 training will reach far less: read their hours as a floor).
- **Chapter 2** trains small MLPs at batch 100: latency-bound, not FLOP-bound, so its FLOP-based hours are
  meaningless; the second column assumes **{RL_STEPS_PER_S:,} gradient steps/s per agent in one GPU process**
  (an ASSUMPTION; `run_sweep` batches up to 32 agents per process, which should do better). Its MuJoCo evaluation
  episodes run on CPUs and are not in either column.
- **Evaluation** is counted where it is large: the attacks over the test set (Chapter 1's PGD-40 / FGSM tests and
  per-feature PGD, Chapter 3's 300-iteration energy attacks, Chapter 4's PGD-7 / PGD-20 / FGSM trade-offs, the
  obfuscation checklists with their grids, AutoAttack-rand counted as APGD-CE + APGD-DLR, each step averaging 20
  EOT forward + input-gradient passes, on every attacked image: an upper bound). Excluded (each under 1% or not
  GPU work): Chapter 5's saliency maps, latency timings, head refits, and Chapter 2's MuJoCo evaluation episodes.
- Upper bounds where the run may stop early: Chapter 5's defences train all 100 epochs (early stopping may end
  them sooner); every live feature of Chapter 1's binary model is attacked (only live ones are).
- A **unit** is one independent job a cluster can run in parallel (helpers.units maps a notebook's units through the
  executor); sequential work (lottery rounds, SkipNet's HRL stage after its pre-training) stays inside one unit.
- Checkpoints shared between notebooks (Chapter 3's nets, Chapter 4's FLOAT/OAT/PGD-AT) are counted once, in the
  notebook that trains them first in the book's order.

## Summary

{summary_table(rows)}
"""
    parts = [head]
    for chapter, notebook in NOTEBOOKS:
        parts.append(f"\n## {chapter} / {notebook}\n")
        parts.append("| part | units | a unit is | FLOPs per unit | total FLOPs | GPU-hours | notes |")
        parts.append("|---|---:|---|---:|---:|---:|---|")
        for r in (r for r in rows if r.notebook == notebook):
            gh = hours(r.gpu_hours) + (f" (by steps/s: {hours(r.rl_hours)})" if r.rl_hours is not None else "")
            parts.append(f"| {r.part} | {r.units:,} | {r.unit} | {sci(r.flops_per_unit)} | {sci(r.total)} | {gh} | "
                         f"{r.notes} |")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "paper_cost.md"), help="the Markdown report")
    parser.add_argument("--only", nargs="*", help="notebook names (default: all 14)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    meter, rows = Meter(), []
    for chapter, notebook in NOTEBOOKS:
        if args.only and notebook not in args.only:
            continue
        print(f"{chapter}/{notebook}", flush=True)
        rows += notebook_rows(chapter, notebook, meter)
    seconds = time.perf_counter() - start
    text = report(rows, seconds)
    print(text)
    if not args.only:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
