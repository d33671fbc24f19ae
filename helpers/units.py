"""Work as units mapped through one executor: the long loops of a notebook (seeds x settings x methods) as calls of one
function on plain settings, run in this process (``local``) or as Ray tasks (``ray``), with the same results.

A *unit* is a module-level function of one dict of JSON-able settings that trains or evaluates, writes its checkpoint
under the work root keyed by those settings (:func:`helpers.cache.cache_path`), resumes from it when run again, and
returns a small picklable result (numbers, lists, dicts). It seeds itself from its settings and sets its own torch
threads, so its result does not depend on the process that runs it. A notebook maps its units in one call::

    rows = units.map_units(adversarial.capacity_unit, settings_list, executor=EXECUTOR,
                           resources=cfg["UNIT_RESOURCES"])

* ``local`` (the default; ``make book`` and ``make test``): a plain loop in this process.
* ``ray``: one Ray task per unit. ``ray.init()`` starts a local Ray instance unless ``address`` (or ``$RAY_ADDRESS``)
  names a cluster to join. ``resources`` (``num_cpus``, ``num_gpus``: the notebook's ``UNIT_RESOURCES``) are asked for
  each task; a task whose worker dies is retried (``retries``) and resumes from its unit's checkpoint; an exception
  raised by a unit is not retried. The workers get the driver's data root, dry-run and offline switches
  (:data:`FORWARDED_ENV`), so they read and write the same files; on a cluster the data root must be storage every
  worker sees at the same path.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

from .progress import tqdm

from . import checks
from .paths import DRY_RUN_ENV, data_root

__all__ = ["EXECUTORS", "EXECUTOR_ENV", "FORWARDED_ENV", "DEFAULT_RESOURCES", "RESOURCES_RULE", "RULES",
           "resolve_executor", "check_resources", "map_units"]

EXECUTORS = ("local", "ray")
#: The environment variable that picks the executor when a notebook's ``EXECUTOR`` parameter is ``None``.
EXECUTOR_ENV = "BOOK_EXECUTOR"
#: Environment variables a Ray worker gets from the driver (``BOOK_DATA`` always: the driver's resolved data root).
FORWARDED_ENV = ("BOOK_DATA", DRY_RUN_ENV, "BOOK_OFFLINE", "BOOK_DEVICE")
#: What one unit asks of a Ray worker when a notebook's table does not say.
DEFAULT_RESOURCES = {"num_cpus": 1, "num_gpus": 0}


def resolve_executor(name: str | None) -> str:
    """The executor a notebook maps its units through: an explicit ``name`` (the notebook parameter ``EXECUTOR``) wins
    over ``$BOOK_EXECUTOR``, which wins over ``"local"``; anything not in :data:`EXECUTORS` is a ``ValueError``."""
    source = "notebook parameter EXECUTOR"
    if name is None:
        name, source = os.environ.get(EXECUTOR_ENV) or "local", f"${EXECUTOR_ENV}"
    if not isinstance(name, str) or name.strip().lower() not in EXECUTORS:
        raise ValueError(f"EXECUTOR must be one of {', '.join(map(repr, EXECUTORS))} (or None: ${EXECUTOR_ENV}, "
                         f"else 'local'); got {name!r} ({source})")
    return name.strip().lower()


def check_resources(name: str, value: Any) -> dict[str, float]:
    """``value`` as a unit's Ray resources: a dict of ``num_cpus`` and/or ``num_gpus``, each a number >= 0
    (``num_cpus`` > 0), over :data:`DEFAULT_RESOURCES`; a ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(value, Mapping) or not value or set(value) - set(DEFAULT_RESOURCES):
        raise ValueError(f"{name} must be a dict with keys among {', '.join(DEFAULT_RESOURCES)}; got {value!r}")
    out = dict(DEFAULT_RESOURCES)
    for key, amount in value.items():
        out[key] = checks.number(f"{name}[{key!r}]", amount, low=0, low_open=key == "num_cpus")
    return out


#: The rule of a scale table's ``UNIT_RESOURCES`` (what each unit asks of a Ray worker).
RESOURCES_RULE = checks.Rule(check_resources, "a dict of num_cpus (> 0) and num_gpus (>= 0)", "dict")
#: Rules for the parameters and settings every notebook with units has (``results.start(..., rules=...)``).
RULES: dict[str, checks.Rule] = {"EXECUTOR": checks.Choice(EXECUTORS, optional=True), "UNIT_RESOURCES": RESOURCES_RULE}


def _plain_settings(settings_list: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every unit's settings as what a JSON round trip gives, so both executors hand a unit the same plain values."""
    if isinstance(settings_list, (str, bytes, Mapping)) or not isinstance(settings_list, Sequence):
        raise ValueError(f"settings_list must be a list of dicts of plain settings; got {type(settings_list).__name__}")
    out = []
    for i, settings in enumerate(settings_list):
        if not isinstance(settings, Mapping):
            raise ValueError(f"settings_list[{i}] must be a dict of plain settings; got {settings!r}")
        try:
            out.append(json.loads(json.dumps(dict(settings), allow_nan=False)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"settings_list[{i}] must hold JSON-able values only (numbers, strings, lists, dicts): "
                             f"{err}") from None
    return out


def _check_unit(fn: Callable) -> Callable:
    qualname = getattr(fn, "__qualname__", "")
    if not callable(fn) or not qualname or "<" in qualname or "." in qualname:
        raise ValueError(f"fn must be a module-level function (a unit a Ray worker can import); got {fn!r}")
    return fn


def _worker_env() -> dict[str, str]:
    env = {key: os.environ[key] for key in FORWARDED_ENV if os.environ.get(key)}
    env["BOOK_DATA"] = str(data_root())
    return env


def map_units(fn: Callable[[dict], Any], settings_list: Sequence[Mapping[str, Any]], *, executor: str | None = None,
              resources: Mapping[str, float] | None = None, retries: int = 3, progress: bool = True,
              address: str | None = None, desc: str | None = None) -> list:
    """``[fn(settings) for settings in settings_list]``, run by ``executor`` (:func:`resolve_executor`): in this
    process (``local``) or as Ray tasks (``ray``, each asking ``resources``, retried ``retries`` times when its worker
    dies); the results in the order of ``settings_list`` whichever finishes first. ``progress``: a bar over completed
    units. ``address``: the Ray cluster to join (default ``$RAY_ADDRESS``, else a local instance)."""
    executor = resolve_executor(executor)
    _check_unit(fn)
    settings_list = _plain_settings(settings_list)
    resources = check_resources("resources", DEFAULT_RESOURCES if resources is None else resources)
    retries = checks.integer("retries", retries, low=0)
    if not settings_list:
        return []
    bar = tqdm(total=len(settings_list), desc=desc or f"{fn.__name__} units", disable=not progress)
    if executor == "local":
        results = []
        for settings in settings_list:
            results.append(fn(settings))
            bar.update(1)
        bar.close()
        return results
    import ray  # the cluster extra: only a Ray run needs it

    if not ray.is_initialized():
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address, ignore_reinit_error=True)
        else:
            ray.init(include_dashboard=False, ignore_reinit_error=True)
    task = ray.remote(fn).options(num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"],
                                  max_retries=retries, retry_exceptions=False,
                                  runtime_env={"env_vars": _worker_env()})
    refs = [task.remote(settings) for settings in settings_list]
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
        return ray.get(refs)
    finally:
        bar.close()
