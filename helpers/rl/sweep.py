"""The sparsity sweep of Arnob et al. 2021 (Figs 1-2): algorithm x pruning method x sparsity x seed.

For one algorithm (BCQ or BC) every configuration of the sweep becomes one member of a
:class:`~helpers.rl.offline.BCQEnsemble` and all are trained together, then evaluated together
(:func:`~helpers.rl.evaluation.evaluate_batch`). All configurations of a seed start from the same initial
weights (the seed's agent), so they differ only by their masks. ``random`` uses the layer-wise kept counts of
SNIP at the same sparsity (random positions); ``magnitude`` keeps the largest initial weights per network.
Results are cached under the data root, keyed by the settings and the dataset; a run that evaluates along the way
(``eval_every``) checkpoints its ensemble at every evaluation point and resumes from there. :func:`sweep_unit` is one
(task, algorithm, seeds) sweep as a ``helpers.units`` unit of plain settings; :func:`sweep_units` lists them.
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

from .. import cache, checks, limit_cpu_threads
from ..io import atomic_torch_save, atomic_write_json, load_checkpoint
from ..paths import work_root
from ..progress import tqdm
from .evaluation import evaluate_batch
from .generate import load_tasks
from .networks import BCQNetworks
from .offline import BCQEnsemble, PRUNING_METHODS, agent_density, masks_from_scores, prune_agent, pruning_scores

__all__ = ["sweep_configs", "run_sweep", "sweep_units", "sweep_unit", "final_scores", "score_table", "steps_per_algorithm", "episode_scores",
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


def _progress_path(settings: dict[str, Any], chunk: int):
    """The checkpoint of one chunk of an unfinished sweep, beside its results file."""
    return _cache_path(settings).with_suffix(f".part{chunk}.pt")


def run_sweep(data: Any, algorithm: str, methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int],
              steps: int, width: float = 1.0, episodes: int = 5, eval_every: int | None = None,
              eval_seed: int = 12_345, cache: bool = True, progress: bool = True,
              max_members: int = 32, max_episode_steps: int | None = None) -> list[dict[str, Any]]:
    """Train and evaluate every configuration of :func:`sweep_configs` for ``algorithm`` on ``data``.

    Returns one row per configuration and evaluation point: method, sparsity, seed, step, mean return over
    ``episodes`` evaluation episodes, normalised score (``data``'s references), the normalised score of every
    episode (``episode_scores``; episode ``k`` starts from the same state for every configuration), kept fraction
    per network.
    ``eval_every``: also evaluate every that many steps (None: only at the end). ``max_members``: configurations
    per batched ensemble (more are trained one chunk after the other, e.g. the 125 full-size agents of the
    paper's grid). ``max_episode_steps``: cut every evaluation episode after that many steps (None: the task's own
    limit; a dry run's cap). With ``cache``, the ensemble and the rows so far are checkpointed at every evaluation
    point, and a rerun resumes from there (the resumed run equals an uninterrupted one); the results file replaces
    the checkpoints when the sweep is done.
    """

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
    if max_episode_steps is not None:  # only when set, so that sweeps cached before this option still load
        settings["max_episode_steps"] = checks.integer("max_episode_steps", max_episode_steps, low=1)
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
    progress_paths = []
    for lo in range(0, len(configs), max_members):
        part = slice(lo, lo + max_members)
        ensemble = BCQEnsemble(agents[part], masks[part], seed=int(seeds[0]) + lo)
        progress_path = _progress_path(settings, lo)
        progress_paths.append(progress_path)
        done, part_rows = 0, []
        if cache and progress_path.is_file():
            state = load_checkpoint(progress_path, keys=("done", "rows", "ensemble"))
            _load_ensemble_state(ensemble, state["ensemble"])
            done, part_rows = int(state["done"]), list(state["rows"])
        bar = tqdm(total=steps, initial=done, desc=f"{algorithm} x {len(configs[part])} configs",
                   disable=not progress, mininterval=2.0)
        for point in (p for p in points if p > done):
            for _ in range(point - done):
                ensemble.train_step(trans)
                bar.update(1)
            done = point
            returns = evaluate_batch(ensemble.act, data.env_id, len(configs[part]), episodes, eval_seed,
                                     max_steps=max_episode_steps)
            for cfg, ret, m in zip(configs[part], returns, masks[part]):
                density = {k: 1.0 for k in ("actor", "critic", "vae_encoder", "vae_decoder")} if m is None \
                    else agent_density(m)
                per_episode = np.asarray(data.normalized_score(ret), dtype=float).reshape(-1)
                part_rows.append({**cfg, "algorithm": algorithm, "step": point, "return": float(ret.mean()),
                                  "score": float(per_episode.mean()), "episode_scores": per_episode.tolist(),
                                  "density": density})
            if cache:  # resume from here if the run is cut short
                atomic_torch_save({"done": done, "rows": part_rows, "ensemble": _ensemble_state(ensemble)},
                                  progress_path)
        bar.close()
        rows += part_rows
    if cache:
        atomic_write_json(path, {"settings": settings, "rows": rows, "seconds": time.perf_counter() - start})
        for progress_path in progress_paths:  # the finished sweep's file replaces its checkpoints
            for stale in (progress_path, progress_path.with_name(progress_path.name + ".sha256")):
                stale.unlink(missing_ok=True)
    return rows


#: The tensors of a :class:`~helpers.rl.offline.BCQEnsemble` that training changes, and its optimisers.
_ENSEMBLE_NETS = ("actor", "critic", "encoder", "decoder", "actor_target", "critic_target")
_ENSEMBLE_OPTIMIZERS = ("vae_opt", "critic_opt", "actor_opt")


def _ensemble_state(ensemble: BCQEnsemble) -> dict[str, Any]:
    """What a resumed ensemble needs (tensors only, for ``weights_only`` loading): weights, optimiser states, the
    generator's state and the step count."""
    return {"nets": {n: [t.detach().clone() for t in getattr(ensemble, n).parameters()] for n in _ENSEMBLE_NETS},
            "optimizers": {o: getattr(ensemble, o).state_dict() for o in _ENSEMBLE_OPTIMIZERS},
            "generator": ensemble.generator.get_state(), "steps": ensemble.steps}


def _load_ensemble_state(ensemble: BCQEnsemble, state: Mapping[str, Any]) -> None:
    """Put :func:`_ensemble_state`'s ``state`` into a freshly built ``ensemble`` of the same configurations (in place,
    so the optimisers keep their parameters)."""
    with torch.no_grad():
        for name in _ENSEMBLE_NETS:
            for tensor, saved in zip(getattr(ensemble, name).parameters(), state["nets"][name]):
                tensor.copy_(saved)
    for name in _ENSEMBLE_OPTIMIZERS:
        getattr(ensemble, name).load_state_dict(state["optimizers"][name])
    ensemble.generator.set_state(state["generator"])
    ensemble.steps = int(state["steps"])


def sweep_units(tasks: Sequence[str], algorithms: Sequence[str], methods: Sequence[str], sparsities: Sequence[float],
                seeds: Sequence[int], *, steps: Mapping[str, int], seeds_per_unit: int | None, data_seed: int,
                generation: Mapping[str, Any], d4rl_dir: str | None = None, **options: Any) -> list[dict[str, Any]]:
    """The units of the sweep (:func:`sweep_unit`): per task and algorithm, one unit per ``seeds_per_unit`` seeds
    (None: all seeds in one unit, one batched ensemble, as fast as a CPU trains them), as plain settings. The data is
    :func:`~helpers.rl.generate.load_tasks`' with ``data_seed`` and ``generation`` (the notebook's
    :func:`~helpers.rl.generate.generation_settings`); ``steps`` per algorithm; ``options``: :func:`run_sweep`'s
    ``width``, ``episodes``, ``eval_every``, ``max_episode_steps``."""
    seeds = checks.seeds(seeds)
    size = len(seeds) if seeds_per_unit is None else checks.integer("seeds_per_unit", seeds_per_unit, low=1)
    return [dict(task=task, algorithm=algorithm, methods=list(methods), sparsities=[float(s) for s in sparsities],
                 seeds=seeds[i:i + size], steps=steps[algorithm], data_seed=data_seed, generation=dict(generation),
                 d4rl_dir=d4rl_dir, **options)
            for task in tasks for algorithm in algorithms for i in range(0, len(seeds), size)]


def sweep_unit(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One unit of the sweep (a ``helpers.units`` unit): load the task's data (cached on disk by the notebook that
    listed the units), then :func:`run_sweep` on one CPU thread; its rows with a ``task`` column."""
    settings = dict(settings)
    task, data_seed, generation = settings.pop("task"), settings.pop("data_seed"), settings.pop("generation")
    limit_cpu_threads(torch.device("cpu"), 1)
    data = load_tasks([task], data_seed, settings.pop("d4rl_dir"), **generation)[task]
    algorithm, methods, sparsities = settings.pop("algorithm"), settings.pop("methods"), settings.pop("sparsities")
    rows = run_sweep(data, algorithm, methods, sparsities, settings.pop("seeds"), settings.pop("steps"), **settings)
    return [{**row, "task": task} for row in rows]


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

