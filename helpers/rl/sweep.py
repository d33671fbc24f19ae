"""The sparsity sweep of Arnob et al. 2021 (Figs 1-2): algorithm x pruning method x sparsity x seed.

For one algorithm (BCQ or BC) every configuration of the sweep becomes one member of a
:class:`~helpers.rl.offline.BCQEnsemble` and all are trained together, then evaluated together
(:func:`~helpers.rl.evaluation.evaluate_batch`). All configurations of a seed start from the same initial
weights (the seed's agent), so they differ only by their masks. ``random`` uses the layer-wise kept counts of
SNIP at the same sparsity (random positions); ``magnitude`` keeps the largest initial weights per network.
Results are cached under the data root, keyed by the settings and the dataset.
"""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import cache, checks
from ..io import atomic_write_json
from ..paths import work_root
from .evaluation import evaluate_batch
from .networks import BCQNetworks
from .offline import BCQEnsemble, PRUNING_METHODS, agent_density, masks_from_scores, prune_agent, pruning_scores

__all__ = ["sweep_configs", "run_sweep", "final_scores", "score_table", "steps_per_algorithm", "episode_scores",
           "ALGORITHMS", "STEPS_RULE"]

ALGORITHMS = ("BCQ", "BC")


def steps_per_algorithm(steps: int | Mapping[str, int], algorithms: Sequence[str] = ALGORITHMS,
                        name: str = "steps") -> dict[str, int]:
    """Gradient steps per algorithm: ``steps`` an int (the same for every algorithm) or a dict with an int >= 1
    for each of ``algorithms`` (e.g. the sweep's ``{"BC": 3500, "BCQ": 2500}``)."""
    if isinstance(steps, Mapping):
        for algorithm in algorithms:
            if algorithm not in steps:
                raise ValueError(f"{name} has no entry for {algorithm!r}; it needs one per algorithm {list(algorithms)}")
        return {a: checks.integer(f"{name}[{a!r}]", steps[a], low=1) for a in algorithms}
    return dict.fromkeys(algorithms, checks.integer(name, steps, low=1))


#: The rule of a notebook's ``STEPS`` (an int for every algorithm, or a dict of one int per algorithm).
STEPS_RULE = checks.Rule(lambda name, value: steps_per_algorithm(value, name=name),
                         "an int >= 1, or a dict of an int >= 1 for each of 'BCQ', 'BC'", "int")


def sweep_configs(methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The configurations: per seed one dense agent, and every method at every sparsity > 0."""
    for i, m in enumerate(methods):
        checks.choice(f"methods[{i}]", m, PRUNING_METHODS)
    for i, s in enumerate(sparsities):
        checks.number(f"sparsities[{i}]", s, 0, 1, high_open=True)
    out = []
    for seed in seeds:
        out.append({"method": "dense", "sparsity": 0.0, "seed": int(seed)})
        out += [{"method": m, "sparsity": float(s), "seed": int(seed)} for m in methods for s in sparsities if s > 0]
    return out


def _cache_path(settings: dict[str, Any]):
    key = cache.digest(settings, length=12)
    return work_root() / "rl" / "sweeps" / f"{settings['algorithm']}-{settings['env_id']}-{key}.json"


def run_sweep(data: Any, algorithm: str, methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int],
              steps: int, width: float = 1.0, episodes: int = 5, eval_every: int | None = None,
              eval_seed: int = 12_345, cache: bool = True, progress: bool = True,
              max_members: int = 32) -> list[dict[str, Any]]:
    """Train and evaluate every configuration of :func:`sweep_configs` for ``algorithm`` on ``data``.

    Returns one row per configuration and evaluation point: method, sparsity, seed, step, mean return over
    ``episodes`` evaluation episodes, normalised score (``data``'s references), the normalised score of every
    episode (``episode_scores``; episode ``k`` starts from the same state for every configuration), kept fraction
    per network.
    ``eval_every``: also evaluate every that many steps (None: only at the end). ``max_members``: configurations
    per batched ensemble (more are trained one chunk after the other, e.g. the 125 full-size agents of the
    paper's grid).
    """
    from tqdm.auto import tqdm

    checks.choice("algorithm", algorithm, ALGORITHMS)
    checks.integer("steps", steps, low=1)
    configs = sweep_configs(methods, sparsities, seeds)
    settings = dict(algorithm=algorithm, env_id=data.env_id, data=data.metadata.get("settings_key", data.source),
                    n=len(data), methods=list(methods), sparsities=[float(s) for s in sparsities],
                    seeds=[int(s) for s in seeds], steps=steps, width=width, episodes=episodes,
                    eval_every=eval_every, eval_seed=eval_seed, version=2)
    checks.integer("max_members", max_members, low=1)
    if len(configs) > max_members:  # chunking changes the random draws, so it is part of the key
        settings["max_members"] = max_members
    path = _cache_path(settings)
    if cache and path.is_file():
        return json.loads(path.read_text())["rows"]
    start = time.perf_counter()
    cloning = algorithm == "BC"
    agents, masks = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        base = BCQNetworks(data.state_dim, data.action_dim, data.max_action, cloning=cloning, width=width)
        gen = torch.Generator().manual_seed(seed)
        scores = {m: pruning_scores(base, m, data, gen) for m in methods if m != "random"}
        snip = None
        if "random" in methods:  # random keeps SNIP's layer-wise counts
            snip = scores["snip"] if "snip" in scores else pruning_scores(base, "snip", data, gen)
        for cfg in (c for c in configs if c["seed"] == seed):
            density = 1.0 - cfg["sparsity"]
            if cfg["method"] == "dense":
                m = None
            elif cfg["method"] == "random":
                m = prune_agent(base, "random", density, data, gen, reference=masks_from_scores(snip, density))
            else:
                m = masks_from_scores(scores[cfg["method"]], density)
            agents.append(copy.deepcopy(base))
            masks.append(m)
    trans = data.transitions()
    points = sorted({steps, *([] if not eval_every else range(eval_every, steps, eval_every))})
    rows = []
    for lo in range(0, len(configs), max_members):
        part = slice(lo, lo + max_members)
        ensemble = BCQEnsemble(agents[part], masks[part], seed=int(seeds[0]) + lo)
        bar = tqdm(total=steps, desc=f"{algorithm} x {len(configs[part])} configs", disable=not progress,
                   mininterval=2.0)
        done = 0
        for point in points:
            for _ in range(point - done):
                ensemble.train_step(trans)
                bar.update(1)
            done = point
            returns = evaluate_batch(ensemble.act, data.env_id, len(configs[part]), episodes, eval_seed)
            for cfg, ret, m in zip(configs[part], returns, masks[part]):
                density = {k: 1.0 for k in ("actor", "critic", "vae_encoder", "vae_decoder")} if m is None \
                    else agent_density(m)
                per_episode = np.asarray(data.normalized_score(ret), dtype=float).reshape(-1)
                rows.append({**cfg, "algorithm": algorithm, "step": point, "return": float(ret.mean()),
                             "score": float(per_episode.mean()), "episode_scores": per_episode.tolist(),
                             "density": density})
        bar.close()
    if cache:
        atomic_write_json(path, {"settings": settings, "rows": rows, "seconds": time.perf_counter() - start})
    return rows


def final_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a sweep's results (``run_sweep``'s, with a ``task`` column) at the last evaluation step of each
    (task, algorithm): the scores of Figs 1-2."""
    return frame[frame["step"] == frame.groupby(["task", "algorithm"])["step"].transform("max")].copy()


def score_table(final: pd.DataFrame) -> pd.DataFrame:
    """The final normalised score by (task, algorithm, method), one ``"<sparsity> mean|min|max"`` column per
    sparsity and statistic over seeds (the table beside Figs 1-2)."""
    table = final.groupby(["task", "algorithm", "method", "sparsity"])["score"].agg(["mean", "min", "max"])
    table = table.unstack("sparsity").reorder_levels([1, 0], axis=1).sort_index(axis=1)
    table.columns = [f"{s:.0%} {stat}" for s, stat in table.columns]
    return table


def episode_scores(final: pd.DataFrame, task: str, algorithm: str, method: str,
                   sparsity: float | None = None) -> np.ndarray:
    """The normalised score of every evaluation episode of one configuration of a :func:`final_scores` table, as
    ``[seeds, episodes]`` (seeds in increasing order; ``method="dense"`` ignores ``sparsity``): the arms
    :func:`helpers.claims.bootstrap` pairs, since every configuration of a seed starts from that seed's weights
    and episode ``k`` from the same state."""
    sel = final[(final["task"] == task) & (final["algorithm"] == algorithm) & (final["method"] == method)]
    if method != "dense":
        sel = sel[np.isclose(sel["sparsity"], float(sparsity))]
    if sel.empty:
        raise ValueError(f"no final scores for {task} {algorithm} {method} at sparsity {sparsity}")
    sel = sel.sort_values("seed")
    return np.array([list(v) for v in sel["episode_scores"]], dtype=float)

