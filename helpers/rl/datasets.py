"""Offline RL datasets in the D4RL layout (Fu et al. 2020): read, validate, normalise scores.

The layout is five aligned arrays ``observations (N, S)``, ``actions (N, A)``, ``rewards (N,)``,
``terminals (N,)``, ``timeouts (N,)`` (+ optional ``next_observations``, ``infos/*``, ``metadata/*``).
Sources: a D4RL hdf5 file (:func:`load_d4rl_hdf5`), the dict of ``d4rl``'s ``env.get_dataset()``
(:func:`from_d4rl_dict`), a local Minari dataset (:func:`load_minari`), or a dataset generated here with
gymnasium (:func:`helpers.rl.generate.load_or_generate`). Every source goes through :func:`validate_d4rl`,
so a malformed file raises a ``ValueError`` naming the key and what is wrong. Actions of a D4RL file or dict
must lie in ``[-1, 1]`` (the action box of D4RL's MuJoCo tasks; a file of another task stores its bound as the
``max_action`` attribute): :func:`bounded_actions` clips a small excursion with a warning naming the file and
refuses a larger one, so out-of-range actions are never used silently.

Normalised scores use D4RL's convention ``100 * (R - R_random) / (R_expert - R_random)``: 0 is the random
policy, 100 the expert. (!) ``d4rl.get_normalized_score`` returns the 0-1 value; D4RL tables show x100.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .. import checks
from ..paths import data_root
from .networks import Transitions

__all__ = [
    "D4RL_KEYS",
    "D4RL_REF_SCORES",
    "D4RL_GYM_ENVS",
    "evaluation_env",
    "OfflineDataset",
    "validate_d4rl",
    "from_d4rl_dict",
    "load_d4rl_hdf5",
    "save_d4rl_hdf5",
    "load_minari",
    "save_minari",
    "minari_root",
    "qlearning_arrays",
    "episode_returns",
    "d4rl_normalized_score",
    "reference_scores",
    "bounded_actions",
    "D4RL_ACTION_BOUND",
    "ACTION_CLIP_SLACK",
]

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
# D4RL v0 reference returns (d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE): random policy, expert (SAC).
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}

#: The gymnasium task a D4RL MuJoCo dataset is evaluated in. D4RL recorded its data on gym's mujoco-py v3 tasks;
#: gymnasium's v5 tasks keep their observation and action spaces (Hopper 11/3, HalfCheetah 17/6, Walker2d 17/6).
D4RL_GYM_ENVS: dict[str, str] = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}

#: The action box of D4RL's MuJoCo tasks, ``[-1, 1]``: the bound of a file that stores no ``max_action``.
D4RL_ACTION_BOUND = 1.0
#: Actions at most this fraction beyond the bound are clipped (with a warning); further out, the file is refused.
ACTION_CLIP_SLACK = 0.05


def _env_family(env: str) -> str | None:
    """'hopper' for 'hopper-expert-v0', 'Hopper-v5', 'mujoco/hopper/expert-v0'; None when not a D4RL task."""
    low = env.lower().replace("_", "").replace("-", "/")
    for family in D4RL_REF_SCORES:
        if any(part.startswith(family) for part in low.split("/")):
            return family
    return None


def evaluation_env(name: str) -> str:
    """The gymnasium id to evaluate a dataset called ``name`` in: ``name`` itself when gymnasium registers it
    (``"Pendulum-v1"``, ``"Hopper-v5"``), else the v5 task of its D4RL family (``"hopper-expert-v2"`` ->
    ``"Hopper-v5"``, :data:`D4RL_GYM_ENVS`); a name of neither kind is returned as it is."""
    import gymnasium as gym

    checks.text("name", name)
    if name in gym.envs.registry:
        return name
    family = _env_family(name)
    return D4RL_GYM_ENVS[family] if family is not None else name


@dataclass
class OfflineDataset:
    """A validated D4RL-layout dataset (numpy arrays) with its environment and reference returns.

    ``ref_min_score`` / ``ref_max_score`` are the returns that map to 0 and 100 (:func:`d4rl_normalized_score`).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    env_id: str
    next_observations: np.ndarray | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arrays = validate_d4rl(self.arrays(), what=self.source or "dataset")
        for key, value in arrays.items():
            setattr(self, key, value)
        if self.ref_min_score is None or self.ref_max_score is None:
            refs = reference_scores(self.env_id)
            if refs is not None:
                self.ref_min_score, self.ref_max_score = refs

    def arrays(self) -> dict[str, np.ndarray]:
        out = {key: getattr(self, key) for key in D4RL_KEYS}
        if self.next_observations is not None:
            out["next_observations"] = self.next_observations
        return out

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def state_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def max_action(self) -> float:
        """The action bound, from the metadata when stored, else the largest |action| in the data (at least 1)."""
        if "max_action" in self.metadata:
            return float(self.metadata["max_action"])
        return float(max(1.0, np.abs(self.actions).max()))

    def episode_returns(self) -> np.ndarray:
        return episode_returns(self.rewards, self.terminals, self.timeouts)

    def normalized_score(self, ret: float | np.ndarray) -> float | np.ndarray:
        return d4rl_normalized_score(self, ret)

    def transitions(self, device: torch.device | str = "cpu") -> Transitions:
        """All Q-learning transitions (:func:`qlearning_arrays`) as float32 tensors (cached per device)."""
        cache = self.__dict__.setdefault("_transitions", {})
        if str(device) in cache:
            return cache[str(device)]
        q = qlearning_arrays(self.arrays())
        t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)  # noqa: E731
        cache[str(device)] = Transitions(t(q["observations"]), t(q["actions"]), t(q["rewards"]).reshape(-1, 1),
                                         t(q["next_observations"]), t(1.0 - q["terminals"]).reshape(-1, 1))
        return cache[str(device)]

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Transitions:
        """``batch_size`` Q-learning transitions drawn uniformly with replacement (as sfujim/BCQ's buffer)."""
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        full = self.transitions(device)
        idx = torch.randint(len(full.state), (batch_size,), generator=generator).to(full.state.device)
        return Transitions(*(x[idx] for x in full))

    def describe(self) -> str:
        rets = self.episode_returns()
        ref = "" if self.ref_max_score is None else (
            f", references {self.ref_min_score:.1f} (random) / {self.ref_max_score:.1f} (expert)")
        return (f"{self.env_id}: {len(self)} transitions, {len(rets)} episodes, return "
                f"{rets.mean():.1f} ± {rets.std():.1f}{ref} [{self.source}]")


def _fail(what: str, key: str, problem: str) -> ValueError:
    return ValueError(f"{what}: key {key!r} {problem}")


def validate_d4rl(data: Mapping[str, Any], what: str = "dataset") -> dict[str, np.ndarray]:
    """Check the D4RL layout and return clean numpy arrays (float32 data, bool flags, rewards ``(N,)``).

    Required: the five :data:`D4RL_KEYS`; ``observations``/``actions`` 2-D floating, ``rewards`` floating
    ``(N,)`` or ``(N, 1)``, ``terminals``/``timeouts`` bool or 0/1 integers ``(N,)``, all of length N >= 2,
    finite; ``next_observations`` (optional) like ``observations``. Raises ``ValueError`` naming the key.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected a dict of arrays (D4RL layout), got {type(data).__name__}")
    missing = [k for k in D4RL_KEYS if k not in data]
    if missing:
        raise ValueError(f"{what}: missing key(s) {missing}; the D4RL layout needs {list(D4RL_KEYS)} "
                         f"(found {sorted(data)})")
    out: dict[str, np.ndarray] = {}
    keys = list(D4RL_KEYS) + (["next_observations"] if data.get("next_observations") is not None else [])
    for key in keys:
        arr = np.asarray(data[key])
        if key in ("observations", "actions", "next_observations"):
            if arr.dtype.kind != "f":
                raise _fail(what, key, f"must hold floats, got dtype {arr.dtype}")
            if arr.ndim != 2:
                raise _fail(what, key, f"must be 2-D (N, dim), got shape {arr.shape}")
            arr = arr.astype(np.float32, copy=False)
        elif key == "rewards":
            if arr.dtype.kind != "f":
                raise _fail(what, key, f"must hold floats, got dtype {arr.dtype}")
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise _fail(what, key, f"must be 1-D (N,), got shape {arr.shape}")
            arr = arr.astype(np.float32, copy=False)
        else:  # terminals, timeouts
            if arr.dtype.kind not in "biu":
                raise _fail(what, key, f"must be bool (or 0/1 integers), got dtype {arr.dtype}")
            if arr.ndim != 1:
                raise _fail(what, key, f"must be 1-D (N,), got shape {arr.shape}")
            if arr.dtype.kind != "b":
                if arr.size and not np.isin(arr, (0, 1)).all():
                    raise _fail(what, key, "must contain only 0 and 1")
                arr = arr.astype(bool)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise _fail(what, key, "contains NaN or infinite values")
        out[key] = arr
    n = len(out["observations"])
    if n < 2:
        raise _fail(what, "observations", f"must hold at least 2 transitions, got {n}")
    for key, arr in out.items():
        if len(arr) != n:
            raise _fail(what, key, f"has length {len(arr)}, but 'observations' has length {n}")
    if "next_observations" in out and out["next_observations"].shape != out["observations"].shape:
        raise _fail(what, "next_observations", f"has shape {out['next_observations'].shape}, "
                    f"'observations' has {out['observations'].shape}")
    return out


def bounded_actions(actions: np.ndarray, bound: float, what: str) -> np.ndarray:
    """``actions`` inside ``[-bound, bound]``: as they are when inside; clipped with a ``UserWarning`` naming ``what``
    when the largest ``|a|`` exceeds ``bound`` by at most :data:`ACTION_CLIP_SLACK` (rounding, exploration noise
    kept unclipped); refused with a ``ValueError`` further out (a different action scale, or the wrong file).
    """
    bound = checks.number("bound", bound, 0, low_open=True)
    actions = np.asarray(actions)
    largest = float(np.abs(actions).max()) if actions.size else 0.0
    if largest <= bound:
        return actions
    outside = int((np.abs(actions) > bound).sum())
    where = (f"{what}: {outside} of {actions.size} action values lie outside [-{bound:g}, {bound:g}] "
             f"(largest |a| = {largest:.6g})")
    if largest > bound * (1 + ACTION_CLIP_SLACK):
        raise ValueError(f"{where}; more than {ACTION_CLIP_SLACK:.0%} beyond the bound, so the file is refused: D4RL "
                         f"actions lie in [-{D4RL_ACTION_BOUND:g}, {D4RL_ACTION_BOUND:g}]; a task with another action "
                         "bound must store it as the file's 'max_action' attribute")
    warnings.warn(f"{where}; clipped to the bound", UserWarning, stacklevel=3)
    return np.clip(actions, -bound, bound).astype(actions.dtype, copy=False)


def reference_scores(env: str) -> tuple[float, float] | None:
    """D4RL's (random, expert) reference returns for hopper / halfcheetah / walker2d tasks, else None."""
    family = _env_family(env) if isinstance(env, str) else None
    return None if family is None else D4RL_REF_SCORES[family]


def d4rl_normalized_score(env: str | OfflineDataset, ret: float | np.ndarray) -> float | np.ndarray:
    """D4RL normalised score ``100 * (R - R_random) / (R_expert - R_random)`` (Fu et al. 2020, Sec. 5).

    ``env``: a D4RL/gymnasium task name (hopper, halfcheetah, walker2d: D4RL's references) or an
    :class:`OfflineDataset` (its own references, e.g. a generated dataset). 0-100 scale, not d4rl's 0-1.
    """
    if isinstance(env, OfflineDataset):
        refs = None if env.ref_max_score is None else (env.ref_min_score, env.ref_max_score)
        name = env.env_id
    elif isinstance(env, str):
        refs, name = reference_scores(env), env
    else:
        raise ValueError(f"env must be a task name or an OfflineDataset, got {type(env).__name__}")
    if refs is None:
        raise ValueError(f"env {name!r} has no reference returns: D4RL's are known for "
                         f"{sorted(D4RL_REF_SCORES)}; for other tasks pass the OfflineDataset with its own")
    lo, hi = refs
    out = 100.0 * (np.asarray(ret, dtype=np.float64) - lo) / (hi - lo)
    return float(out) if out.ndim == 0 else out


def episode_returns(rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Undiscounted return of every complete episode (ended by a terminal or a timeout)."""
    ends = np.flatnonzero(np.asarray(terminals, bool) | np.asarray(timeouts, bool))
    if len(ends) == 0:
        return np.asarray([float(np.sum(rewards))])
    cums = np.concatenate([[0.0], np.cumsum(np.asarray(rewards, np.float64))])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return cums[ends + 1] - cums[starts]


def qlearning_arrays(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``(s, a, r, s', terminal)`` arrays like ``d4rl.qlearning_dataset``: timeout transitions are dropped.

    ``s'`` is ``next_observations`` when the data has it, else the next row of ``observations`` (so the last
    row is dropped too, as d4rl does).
    """
    data = validate_d4rl(data)
    n = len(data["observations"])
    if "next_observations" in data:
        keep = ~data["timeouts"]
        nxt = data["next_observations"]
    else:
        keep = ~data["timeouts"][: n - 1]
        nxt = data["observations"][1:]
        keep = np.concatenate([keep, [False]])
        nxt = np.concatenate([nxt, data["observations"][-1:]])
    return {"observations": data["observations"][keep], "actions": data["actions"][keep],
            "rewards": data["rewards"][keep], "next_observations": nxt[keep],
            "terminals": data["terminals"][keep].astype(np.float32)}


def from_d4rl_dict(data: Mapping[str, Any], env_id: str, **kwargs: Any) -> OfflineDataset:
    """An :class:`OfflineDataset` from the dict of ``d4rl``'s ``env.get_dataset()`` (validated)."""
    what = f"d4rl dataset {env_id}"
    arrays = validate_d4rl(data, what=what)
    bound = kwargs.get("metadata", {}).get("max_action", D4RL_ACTION_BOUND)
    arrays["actions"] = bounded_actions(arrays["actions"], bound, what)
    return OfflineDataset(env_id=env_id, source=kwargs.pop("source", "d4rl get_dataset()"), **arrays, **kwargs)


def _meta_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _meta_value(value[()])
    return value


def load_d4rl_hdf5(path: str | os.PathLike, env_id: str | None = None) -> OfflineDataset:
    """Read a D4RL hdf5 file with h5py (top-level arrays + ``metadata/*`` + root attributes), validated.

    The dataset's name is ``env_id``, else the file's ``env_id`` attribute or ``metadata/env_id``, else the file
    stem (``hopper-expert-v2``: D4RL hopper references). A D4RL name is not a gymnasium id, so the dataset's
    ``env_id`` is the task it is evaluated in (:func:`evaluation_env`: ``Hopper-v5``), and the name is kept in
    ``metadata["d4rl_name"]``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"path {str(path)!r} is not a readable hdf5 file ({err})") from err
    with f:
        arrays = {key: f[key][()] for key in (*D4RL_KEYS, "next_observations")
                  if key in f and isinstance(f[key], h5py.Dataset)}
        meta = {k: _meta_value(v) for k, v in f.attrs.items()}
        if "metadata" in f and isinstance(f["metadata"], h5py.Group):
            f["metadata"].visititems(lambda name, obj: meta.setdefault(name, _meta_value(obj[()]))
                                     if isinstance(obj, h5py.Dataset) else None)
    arrays = validate_d4rl(arrays, what=f"hdf5 file {path.name}")
    bound = meta.get("max_action", D4RL_ACTION_BOUND)
    arrays["actions"] = bounded_actions(arrays["actions"], bound, f"hdf5 file {path}")
    name = str(env_id or meta.get("env_id") or path.stem)
    meta.setdefault("d4rl_name", name)
    return OfflineDataset(env_id=evaluation_env(name), source=f"D4RL hdf5 {path.name}",
                          ref_min_score=meta.get("ref_min_score"), ref_max_score=meta.get("ref_max_score"),
                          metadata=meta, **arrays)


def save_d4rl_hdf5(dataset: OfflineDataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` in the D4RL hdf5 layout (atomic: a temporary file renamed into place).

    Metadata (``env_id``, reference returns, ``max_action``, ...) go to root attributes and ``metadata/*``.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    meta = {**dataset.metadata, "env_id": dataset.env_id}
    if dataset.ref_max_score is not None:
        meta.update(ref_min_score=float(dataset.ref_min_score), ref_max_score=float(dataset.ref_max_score))
    with h5py.File(tmp, "w") as f:
        for key, arr in dataset.arrays().items():
            f.create_dataset(key, data=arr)
        for key, value in meta.items():
            f.attrs[key] = value
            f.create_dataset(f"metadata/{key}", data=value)
    os.replace(tmp, path)
    return path


def minari_root() -> Path:
    """Where this book keeps its Minari datasets: ``<data root>/minari``."""
    return data_root() / "minari"


@contextlib.contextmanager
def minari_path(root: str | os.PathLike | None) -> Iterator[None]:
    if root is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def load_minari(dataset_id: str, root: str | os.PathLike | None = None) -> OfflineDataset:
    """Read a local Minari dataset by id into the D4RL layout (``next_observations`` from the episodes).

    ``root`` defaults to Minari's own location (``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``). Never
    downloads. Reference returns come from the dataset's ``ref_min_score`` / ``ref_max_score`` when stored.
    """
    try:
        import minari
    except ImportError as err:
        raise ValueError("load_minari needs the 'minari' package (pip install minari)") from err
    with minari_path(root):
        local = minari.list_local_datasets()
        if dataset_id not in local:
            raise ValueError(f"dataset_id {dataset_id!r} is not a local Minari dataset; local ones: {sorted(local)}")
        ds = minari.load_dataset(dataset_id)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*D4RL_KEYS, "next_observations")}
        for ep in ds.iterate_episodes():
            obs = np.asarray(ep.observations)
            parts["observations"].append(obs[:-1])
            parts["next_observations"].append(obs[1:])
            parts["actions"].append(np.asarray(ep.actions))
            parts["rewards"].append(np.asarray(ep.rewards))
            parts["terminals"].append(np.asarray(ep.terminations, bool))
            parts["timeouts"].append(np.asarray(ep.truncations, bool))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        meta = dict(ds.storage.metadata)
    env_spec = meta.get("env_spec")
    env_id = meta.get("env_id") or dataset_id
    if isinstance(env_spec, str) and '"id"' in env_spec:
        import json

        with contextlib.suppress(ValueError):
            env_id = json.loads(env_spec)["id"]
    keep = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) and k != "env_spec"}
    refs = (meta.get("ref_min_score"), meta.get("ref_max_score"))
    return OfflineDataset(env_id=str(env_id), source=f"Minari {dataset_id}",
                          ref_min_score=None if refs[0] is None else float(refs[0]),
                          ref_max_score=None if refs[1] is None else float(refs[1]),
                          metadata=keep, **arrays)


def save_minari(dataset: OfflineDataset, dataset_id: str, root: str | os.PathLike | None = None,
                description: str = "") -> str:
    """Store ``dataset`` as a Minari dataset (``create_dataset_from_buffers`` with ``EpisodeBuffer`` objects; no jax).

    Episodes are split at terminals and timeouts; a trailing incomplete episode is marked truncated. The
    reference returns go into Minari's ``ref_min_score`` / ``ref_max_score``. Returns the dataset id.
    """
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    if dataset.ref_max_score is None:
        raise ValueError("dataset must carry ref_min_score and ref_max_score to be stored as a Minari dataset")
    arrays = dataset.arrays()
    nxt = arrays.get("next_observations")
    if nxt is None:
        raise ValueError("dataset needs next_observations to be stored as a Minari dataset")
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    if len(ends) == 0 or ends[-1] != len(dataset) - 1:
        ends = np.concatenate([ends, [len(dataset) - 1]])
    buffers, start = [], 0
    for i, end in enumerate(ends):
        sl = slice(start, end + 1)
        obs = np.concatenate([arrays["observations"][sl], nxt[end:end + 1]])
        terminals = arrays["terminals"][sl].copy()
        truncs = arrays["timeouts"][sl].copy()
        if not (terminals[-1] or truncs[-1]):
            truncs[-1] = True
        buffers.append(EpisodeBuffer(id=i, observations=list(obs), actions=list(arrays["actions"][sl]),
                                     rewards=list(arrays["rewards"][sl].astype(np.float64)),
                                     terminations=list(terminals), truncations=list(truncs)))
        start = end + 1
    env = gym.make(dataset.env_id)
    try:
        with minari_path(root):
            if dataset_id in minari.list_local_datasets():
                minari.delete_dataset(dataset_id)
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id, buffer=buffers, env=env, algorithm_name=dataset.metadata.get("algorithm", "unknown"), eval_env=dataset.env_id,
                ref_min_score=float(dataset.ref_min_score), ref_max_score=float(dataset.ref_max_score),
                description=description or dataset.describe(), author="Lean & Robust book",
                author_email="book@example.invalid", code_permalink="helpers/rl/datasets.py")
    finally:
        env.close()
    return dataset_id
