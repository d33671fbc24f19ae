"""Generate offline datasets with gymnasium: roll out a policy and store the D4RL layout.

:func:`rollout_dataset` records ``(s, a, r, s', terminal, timeout)`` of any policy; :func:`random_dataset` is the
uniform random policy (a few thousand steps in well under a second, handy for tests and pruning scores);
:func:`load_or_generate` trains a TD3 expert (:mod:`helpers.rl.online`), rolls it out, and caches the result
under the data root as a D4RL hdf5 file and as a Minari dataset (a second call loads).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .. import cache, checks
from ..io import atomic_torch_save, load_checkpoint
from ..paths import data_root, dry_run, work_root
from .datasets import (D4RL_GYM_ENVS, OfflineDataset, minari_path, load_d4rl_hdf5, load_minari, minari_root,
                       reference_scores, save_d4rl_hdf5, save_minari)
from .evaluation import evaluate_batch
from .online import TD3Expert, train_td3

__all__ = ["rollout_dataset", "random_dataset", "random_policy_return", "load_or_generate", "dataset_key", "dataset_paths",
           "load_task", "load_tasks", "d4rl_stand_in", "chapter_datasets", "behaviour_data", "dataset_note", "generation_settings", "D4RL_TASKS",
           "KNOWN_TASKS", "KNOWN_ENVS", "GENERATION_KEYS", "DATA_RULES"]

Policy = Callable[[np.ndarray], np.ndarray]


def rollout_dataset(env_id: str, policy: Policy | None, n_steps: int, seed: int = 0,
                    noise: float = 0.0) -> tuple[OfflineDataset, np.ndarray]:
    """Run ``policy`` (None: uniform random) for ``n_steps`` environment steps; D4RL layout + episode returns.

    ``noise``: std of Gaussian action noise (fraction of the action bound) added to the policy's actions.
    The last, unfinished episode is cut with ``timeouts = True``; its return is not in the returned array.
    """
    import gymnasium as gym

    checks.integer("n_steps", n_steps, low=2)
    checks.integer("seed", seed, low=0)
    checks.number("noise", noise, low=0)
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    high = env.action_space.high.astype(np.float32)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    out = {"observations": np.zeros((n_steps, obs_dim), np.float32),
           "next_observations": np.zeros((n_steps, obs_dim), np.float32),
           "actions": np.zeros((n_steps, act_dim), np.float32), "rewards": np.zeros(n_steps, np.float32),
           "terminals": np.zeros(n_steps, bool), "timeouts": np.zeros(n_steps, bool)}
    returns, ret = [], 0.0
    obs, _ = env.reset(seed=seed)
    for t in range(n_steps):
        if policy is None:
            action = env.action_space.sample()
        else:
            action = np.asarray(policy(obs), np.float32)
            if noise > 0:
                action = action + rng.normal(0.0, noise, act_dim).astype(np.float32) * high
            action = np.clip(action, -high, high)
        nxt, reward, terminated, truncated, _ = env.step(action)
        out["observations"][t], out["actions"][t], out["rewards"][t] = obs, action, reward
        out["next_observations"][t], out["terminals"][t], out["timeouts"][t] = nxt, terminated, truncated
        ret += float(reward)
        if terminated or truncated:
            returns.append(ret)
            ret = 0.0
            obs, _ = env.reset()
        else:
            obs = nxt
    out["timeouts"][-1] |= not out["terminals"][-1]
    env.close()
    data = OfflineDataset(env_id=env_id, source=f"generated ({'random' if policy is None else 'policy'})",
                          metadata={"max_action": float(high.max())}, **out)
    return data, np.asarray(returns)


def random_dataset(env_id: str = "Pendulum-v1", n_steps: int = 2000, seed: int = 0) -> OfflineDataset:
    """A small dataset of the uniform random policy (no training; for tests and quick pruning scores)."""
    return rollout_dataset(env_id, None, n_steps, seed)[0]


def random_policy_return(env_id: str, episodes: int = 10, seed: int = 0) -> float:
    """Mean undiscounted return of the uniform random policy over ``episodes`` episodes (the 0 reference)."""
    import gymnasium as gym

    checks.integer("episodes", episodes, low=1)
    env = gym.make(env_id)
    env.action_space.seed(seed)
    total = []
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done, ret = False, 0.0
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            ret += float(r)
            done = term or trunc
        total.append(ret)
    env.close()
    return float(np.mean(total))


def dataset_key(**settings: object) -> str:
    """A short hash of the generation settings (the cache key): ``cache.digest`` with 10 hex digits."""
    return cache.digest(settings, length=10)


def dataset_paths(env_id: str, key: str) -> dict[str, object]:
    """Where a generated dataset lives: hdf5 file, expert checkpoint (under ``<data root>/rl``), Minari id."""
    root = work_root() / "rl" / env_id
    family = env_id.split("-")[0].lower()
    return {"hdf5": root / f"expert-{key}.hdf5", "expert": root / f"td3-expert-{key}.pt",
            "minari_id": f"lean-robust/{family}/expert-{key}-v0"}


def load_or_generate(env_id: str, expert_steps: int, dataset_steps: int, seed: int = 0, expert_hidden: int = 256,
                     start_steps: int = 1000, noise: float = 0.1, reference_episodes: int = 10,
                     minari: bool = True, progress: bool = True) -> OfflineDataset:
    """An expert dataset for ``env_id`` in the D4RL layout: from the cache, else trained and rolled out here.

    1. TD3 (:func:`helpers.rl.online.train_td3`) for ``expert_steps`` steps (checkpoint cached);
    2. references: the uniform random policy's and the expert's (noise-free) mean return over
       ``reference_episodes`` episodes, the 0 and 100 of :func:`~helpers.rl.datasets.d4rl_normalized_score`;
    3. ``dataset_steps`` transitions of the expert with Gaussian action noise ``noise`` (x max action), like
       D4RL's expert data from a stochastic policy; saved as D4RL hdf5 under ``<data root>/rl/<env_id>/`` and,
       when ``minari`` (the package) is there, as a local Minari dataset under ``<data root>/minari``.

    A second call with the same settings loads the hdf5 file (and recreates a missing Minari copy).
    """
    checks.integer("expert_steps", expert_steps, low=1)
    checks.integer("dataset_steps", dataset_steps, low=2)
    settings = dict(env_id=env_id, expert_steps=expert_steps, dataset_steps=dataset_steps, seed=seed,
                    expert_hidden=expert_hidden, start_steps=start_steps, noise=noise,
                    reference_episodes=reference_episodes)
    key = dataset_key(**settings)
    paths = dataset_paths(env_id, key)
    if paths["hdf5"].is_file():
        data = load_d4rl_hdf5(paths["hdf5"])
    else:
        import gymnasium as gym

        env = gym.make(env_id)
        s_dim, a_dim = env.observation_space.shape[0], env.action_space.shape[0]
        max_action = float(env.action_space.high[0])
        env.close()
        expert = TD3Expert(s_dim, a_dim, max_action, expert_hidden)
        if paths["expert"].is_file():
            expert.load_state_dict(load_checkpoint(paths["expert"]))
            train_returns: list[float] = []
        else:
            expert, train_returns = train_td3(env_id, expert_steps, seed, expert_hidden, start_steps,
                                              progress=progress)
            atomic_torch_save(expert.state_dict(), paths["expert"])
        with torch.no_grad():
            expert_ret = evaluate_batch(lambda o: expert(o), env_id, 1, reference_episodes, seed + 10_000)[0]
        random_ret = random_policy_return(env_id, reference_episodes, seed + 20_000)
        data, returns = rollout_dataset(env_id, expert.policy(), dataset_steps, seed + 30_000, noise)
        data.ref_min_score, data.ref_max_score = float(random_ret), float(expert_ret.mean())
        data.metadata.update(algorithm="TD3 expert + Gaussian noise", expert_return=float(expert_ret.mean()),
                             expert_return_std=float(expert_ret.std()), random_return=float(random_ret),
                             expert_train_last_returns=float(np.mean(train_returns[-5:])) if train_returns else 0.0,
                             settings_key=key, **{f"setting_{k}": v for k, v in settings.items()})
        save_d4rl_hdf5(data, paths["hdf5"])
        data = load_d4rl_hdf5(paths["hdf5"])
    data.source = f"generated: TD3 expert + noise {noise}, cached as {paths['hdf5'].name}"
    if minari:
        try:
            import minari as _minari  # noqa: F401
        except ImportError:
            return data
        with minari_path(minari_root()):
            import minari as mn

            have = paths["minari_id"] in mn.list_local_datasets()
        if not have:
            save_minari(data, paths["minari_id"], root=minari_root())
        data.metadata["minari_id"] = paths["minari_id"]
    return data


# The paper's D4RL tasks, the Minari datasets that replace them, and the gymnasium environment to generate with.
D4RL_TASKS: dict[str, tuple[str, str]] = {
    f"{family}-expert-v2": (f"mujoco/{family}/expert-v0", env) for family, env in D4RL_GYM_ENVS.items()}

#: The tasks this chapter's code knows: the paper's D4RL tasks, the gymnasium environments that generate them,
#: and Pendulum-v1 (the book's CPU-scale task). :func:`load_task` takes any registered gymnasium id as well.
KNOWN_ENVS: tuple[str, ...] = (*(env for _, env in D4RL_TASKS.values()), "Pendulum-v1")
KNOWN_TASKS: tuple[str, ...] = (*D4RL_TASKS, *KNOWN_ENVS)


def load_task(task: str, d4rl_dir: str | None = None, **generate: object) -> OfflineDataset:
    """The dataset for ``task``: a D4RL file, else a local Minari dataset, else generated here.

    ``task`` is a D4RL name (``"hopper-expert-v2"``: looks for ``<d4rl_dir or data root/d4rl>/<task>.hdf5``, then the
    local Minari dataset of :data:`D4RL_TASKS`, then generates with the matching gymnasium v5 environment) or a
    gymnasium id (``"Pendulum-v1"``: generated). ``generate`` goes to :func:`load_or_generate`. The returned
    dataset's ``source`` says which one was used. An unknown ``task`` is refused before any work.

    In a dry run (``BOOK_DRY_RUN=1``) a D4RL task whose file and Minari dataset are absent reads a stand-in written in
    the D4RL layout under ``<work root>/d4rl/<task>.hdf5`` (:func:`d4rl_stand_in`), through the same file path.
    """
    import gymnasium as gym

    checks.text("task", task)
    if task not in D4RL_TASKS and task not in gym.envs.registry:
        raise ValueError(f"task must be a D4RL task or a registered gymnasium environment (this book knows "
                         f"{', '.join(map(repr, KNOWN_TASKS))}); got {task!r}")
    if task in D4RL_TASKS:
        path = (data_root() / "d4rl" if d4rl_dir is None else Path(d4rl_dir)) / f"{task}.hdf5"
        if path.is_file():
            return load_d4rl_hdf5(path, env_id=task)
        minari_id, env_id = D4RL_TASKS[task]
        try:
            return load_minari(minari_id)
        except ValueError:
            pass
        if dry_run():
            return d4rl_stand_in(task, int(generate.get("dataset_steps") or 1000), int(generate.get("seed") or 0))
        return load_or_generate(env_id, **generate)  # type: ignore[arg-type]
    return load_or_generate(task, **generate)  # type: ignore[arg-type]


STAND_IN_SOURCE = "dry-run stand-in"


def d4rl_stand_in(task: str, n_steps: int, seed: int = 0) -> OfflineDataset:
    """A D4RL-named hdf5 file for a dry run: ``n_steps`` transitions of the uniform random policy in the gymnasium task
    ``task`` was recorded on (its real observation and action sizes), with D4RL's reference scores, written under
    ``<work root>/d4rl/<task>.hdf5`` and read back through :func:`~helpers.rl.datasets.load_d4rl_hdf5` as a real file
    would be. Its ``source`` says it is a stand-in, so :func:`dataset_note` banners it."""
    checks.choice("task", task, tuple(D4RL_TASKS))
    path = work_root() / "d4rl" / f"{task}.hdf5"
    data = load_d4rl_hdf5(path) if path.is_file() else None
    if data is None or (data.metadata.get("stand_in_steps"), data.metadata.get("stand_in_seed")) != (n_steps, seed):
        fresh = random_dataset(D4RL_TASKS[task][1], n_steps=n_steps, seed=seed)
        fresh.metadata.update(stand_in_steps=n_steps, stand_in_seed=seed)
        fresh.env_id = task  # the file is named and tagged as D4RL's
        fresh.ref_min_score, fresh.ref_max_score = reference_scores(task)
        save_d4rl_hdf5(fresh, path)
        data = load_d4rl_hdf5(path)
    data.source = f"{STAND_IN_SOURCE}: {n_steps:,} random-policy steps in D4RL's layout ({path.name})"
    return data


#: The generation settings of Chapter 2's shared scale table (``book/ch2_offline_rl_pruning/scales.yml``), by the
#: keyword of :func:`load_or_generate` they go to.
GENERATION_KEYS = {"EXPERT_STEPS": "expert_steps", "DATASET_STEPS": "dataset_steps", "EXPERT_HIDDEN": "expert_hidden",
                   "START_STEPS": "start_steps", "NOISE": "noise", "REF_EPISODES": "reference_episodes"}
#: Rules (``helpers.results.start(..., rules=...)``) for the chapter's data parameters and shared settings.
DATA_RULES: dict[str, checks.Rule] = {
    "TASK": checks.Choice(KNOWN_TASKS, optional=True),
    "TASKS": checks.ListOf(checks.Choice(KNOWN_TASKS)),
    "D4RL_DIR": checks.Text(optional=True),
    "EXPERT_STEPS": checks.Integer(low=1),
    "DATASET_STEPS": checks.Integer(low=2),
    "EXPERT_HIDDEN": checks.Integer(low=1),
    "START_STEPS": checks.Integer(low=0),
    "NOISE": checks.Number(low=0),
    "REF_EPISODES": checks.Integer(low=1),
}


def generation_settings(config: Mapping[str, object]) -> dict[str, object]:
    """The keywords of :func:`load_or_generate` from a run's configuration (its :data:`GENERATION_KEYS`)."""
    return {kwarg: config[key] for key, kwarg in GENERATION_KEYS.items()}


def load_tasks(tasks: Sequence[str], seed: int = 0, d4rl_dir: str | None = None,
               **generate: object) -> dict[str, OfflineDataset]:
    """:func:`load_task` for every task (gymnasium and Minari notices silenced: :func:`dataset_note` says what
    was used); the same call in every notebook of Chapter 2, so they share one cached dataset per task."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {task: load_task(task, d4rl_dir=d4rl_dir, seed=seed, **generate) for task in tasks}


def chapter_datasets(config: dict, task: str | None, seed: int = 0,
                     d4rl_dir: str | None = None) -> dict[str, OfflineDataset]:
    """The datasets of a Chapter 2 run: of ``config["TASKS"]``, or of ``task`` alone when given (then
    ``config["TASKS"]`` becomes ``[task]``, so the results file says what ran), with the run's generation settings
    (:func:`generation_settings`). The datasets and sweep notebooks make this call: one cached dataset per task."""
    if task is not None:
        config["TASKS"] = [checks.text("task", task)]
    return load_tasks(config["TASKS"], seed, d4rl_dir, **generation_settings(config))


def behaviour_data(env_id: str, kind: str, n_steps: int, seed: int = 0,
                   expert_steps: int | None = None) -> OfflineDataset:
    """Behaviour data of ``env_id`` to score pruning masks on: ``kind="random"``, ``n_steps`` transitions of the
    uniform random policy (:func:`random_dataset`), or ``"expert"``, a generated expert dataset
    (:func:`load_or_generate` with ``expert_steps`` and its defaults). Gymnasium's notices are silenced."""
    checks.choice("kind", kind, ("random", "expert"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "expert":
            return load_or_generate(env_id, expert_steps=expert_steps, dataset_steps=n_steps, seed=seed)
        return random_dataset(env_id, n_steps=n_steps, seed=seed)


def _d4rl_name(task: str) -> str | None:
    if task in D4RL_TASKS:
        return task
    return next((name for name, (_, env) in D4RL_TASKS.items() if env == task), None)


def dataset_note(task: str, data: OfflineDataset, reason: str | None = None) -> SimpleNamespace:
    """What a run notes for ``task``'s data (``Run.use_dataset``): the paper's D4RL expert data, and what replaced it.

    A D4RL file or a Minari dataset is the paper's data; data generated here (a TD3 expert, random rollouts) is a
    substitution, noted with ``reason`` (default: why this scale generates).
    """
    paper = _d4rl_name(task)
    if not data.source.startswith(("D4RL hdf5", "Minari")):
        kind = "generated expert" if "settings_key" in data.metadata else data.source
        if data.source.startswith(STAND_IN_SOURCE):
            kind, reason = STAND_IN_SOURCE, reason or ("a dry run without D4RL's file: random-policy data of the real "
                                                       "task's observation and action sizes, in D4RL's layout")
        if reason is None:
            reason = ("D4RL's file and Minari's dataset are not on this machine: generated with a TD3 expert"
                      if paper else "the D4RL MuJoCo tasks need hours of expert training and 1M-step runs; this "
                      "scale uses an environment a CPU makes an expert for in minutes")
        return SimpleNamespace(name=f"{data.env_id} ({kind})", reason=reason,
                               requested=f"D4RL {paper}" if paper else "D4RL expert (hopper, halfcheetah, walker2d)")
    return SimpleNamespace(name=data.env_id, requested=data.env_id, reason="")
