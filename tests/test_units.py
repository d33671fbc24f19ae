"""helpers.units: the executor is resolved and validated by its notebook name, results come back in input order, and a
local Ray instance (2 CPUs) gives the local executor's numbers exactly for the smoke units of Chapter 1's capacity study
and Chapter 2's sweep; a Ray worker killed mid-training is retried and resumes from its unit's checkpoint."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

import helpers
from helpers import cache, checks, data_sources, results, rl, units
from helpers.train import adversarial, fit
from notebook_params import notebook_setup

try:
    import ray
except ImportError:  # the 'cluster' extra
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install -e '.[cluster]')")


def square(settings: dict) -> dict:
    return {"x": settings["x"], "square": settings["x"] ** 2, "items": settings["items"]}


# -- the executor and the arguments ----------------------------------------------------------------------------------

def test_resolve_executor_parameter_over_environment_over_local(monkeypatch):
    monkeypatch.delenv(units.EXECUTOR_ENV, raising=False)
    assert units.resolve_executor(None) == "local"
    monkeypatch.setenv(units.EXECUTOR_ENV, "ray")
    assert units.resolve_executor(None) == "ray" and units.resolve_executor("local") == "local"
    with pytest.raises(ValueError, match=r"EXECUTOR must be one of 'local', 'ray'.*'dask'.*notebook parameter"):
        units.resolve_executor("dask")
    monkeypatch.setenv(units.EXECUTOR_ENV, "slurm")
    with pytest.raises(ValueError, match=r"EXECUTOR.*'slurm'.*\$BOOK_EXECUTOR"):
        units.resolve_executor(None)


def test_map_units_local_keeps_the_order_and_hands_units_plain_settings(monkeypatch):
    monkeypatch.delenv(units.EXECUTOR_ENV, raising=False)
    out = units.map_units(square, [{"x": x, "items": (1, 2)} for x in (3, 1, 2)], progress=False)
    assert [r["square"] for r in out] == [9, 1, 4]
    assert out[0]["items"] == [1, 2]  # what a JSON round trip gives, whichever executor runs the unit


def test_map_units_refuses_bad_arguments_by_name():
    with pytest.raises(ValueError, match="module-level function"):
        units.map_units(lambda s: s, [{}], progress=False)
    with pytest.raises(ValueError, match=r"settings_list\[1\].*JSON"):
        units.map_units(square, [{"x": 1}, {"x": torch.ones(1)}], progress=False)
    with pytest.raises(ValueError, match=r"settings_list\[0\] must be a dict"):
        units.map_units(square, [3], progress=False)
    with pytest.raises(ValueError, match=r"resources\['num_gpus'\] must be a number >= 0"):
        units.map_units(square, [{"x": 1}], resources={"num_gpus": -1}, progress=False)
    with pytest.raises(ValueError, match="resources must be a dict with keys among num_cpus, num_gpus"):
        units.map_units(square, [{"x": 1}], resources={"memory": 1}, progress=False)
    with pytest.raises(ValueError, match="EXECUTOR must be one of"):
        units.map_units(square, [{"x": 1}], executor="threads", progress=False)
    with pytest.raises(ValueError, match="retries must be an int >= 0"):
        units.map_units(square, [{"x": 1}], retries=-1, progress=False)
    assert units.map_units(square, [], progress=False) == []


def test_unit_rules_name_the_notebook_setting():
    assert units.RULES["UNIT_RESOURCES"]("UNIT_RESOURCES", {"num_gpus": 1}) == {"num_cpus": 1, "num_gpus": 1.0}
    with pytest.raises(ValueError, match="UNIT_RESOURCES must be a dict of num_cpus"):
        units.RULES["UNIT_RESOURCES"]("UNIT_RESOURCES", {"num_cpus": 0})
    with pytest.raises(ValueError, match="EXECUTOR must be one of 'local', 'ray'"):
        units.RULES["EXECUTOR"]("EXECUTOR", "Ray")
    assert isinstance(units.RULES["EXECUTOR"], checks.Rule) and units.RULES["EXECUTOR"]("EXECUTOR", None) is None


def test_sweep_units_split_seeds_only_when_asked():
    kw = dict(steps={"BC": 3, "BCQ": 2}, data_seed=0, generation={}, width=0.1)
    batched = rl.sweep_units(["Pendulum-v1"], ["BC", "BCQ"], ["snip"], [0.0, 0.9], [0, 1, 2], seeds_per_unit=None, **kw)
    assert [(u["algorithm"], u["seeds"], u["steps"]) for u in batched] == [("BC", [0, 1, 2], 3), ("BCQ", [0, 1, 2], 2)]
    split = rl.sweep_units(["Pendulum-v1"], ["BC"], ["snip"], [0.9], [0, 1, 2], seeds_per_unit=2, **kw)
    assert [u["seeds"] for u in split] == [[0, 1], [2]]
    with pytest.raises(ValueError, match="seeds_per_unit must be an int >= 1"):
        rl.sweep_units(["Pendulum-v1"], ["BC"], ["snip"], [0.9], [0], seeds_per_unit=0, **kw)


def test_ray_workers_get_the_data_root_and_the_switches(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "root" / ".." / "root"))
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    monkeypatch.delenv("BOOK_DEVICE", raising=False)
    env = units._worker_env()
    assert env["BOOK_DATA"] == str((tmp_path / "root").resolve()) and env["BOOK_DRY_RUN"] == "1"
    assert "BOOK_DEVICE" not in env and env["BOOK_OFFLINE"] == os.environ["BOOK_OFFLINE"]


def test_an_interrupted_sweep_resumes_from_its_last_evaluation_point(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    data = rl.random_dataset("Pendulum-v1", 400, seed=0)
    data.ref_min_score, data.ref_max_score = -1200.0, -150.0
    kw = dict(steps=4, width=0.1, episodes=1, eval_every=2, progress=False, max_episode_steps=20)
    expected = rl.run_sweep(data, "BCQ", ["snip", "random"], [0.0, 0.9], [0, 1], cache=False, **kw)
    evaluate, calls = rl.sweep.evaluate_batch, []

    def cut_at_the_second_evaluation(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("the run is cut short")
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(rl.sweep, "evaluate_batch", cut_at_the_second_evaluation)
    with pytest.raises(KeyboardInterrupt):
        rl.run_sweep(data, "BCQ", ["snip", "random"], [0.0, 0.9], [0, 1], **kw)
    assert [p.suffix for p in (tmp_path / "rl" / "sweeps").glob("*.pt")] == [".pt"]  # the checkpoint at step 2
    monkeypatch.setattr(rl.sweep, "evaluate_batch", evaluate)
    assert rl.run_sweep(data, "BCQ", ["snip", "random"], [0.0, 0.9], [0, 1], **kw) == expected
    assert not list((tmp_path / "rl" / "sweeps").glob("*.pt"))  # the results file replaced it


# -- the smoke units of two notebooks, and the real engine -----------------------------------------------------------

def smoke_row(chapter: str, notebook: str) -> dict:
    _, scales, _ = notebook_setup(chapter, notebook)
    return results.merge_scales(scales, results.chapter_scales(chapter))["smoke"]


def capacity_smoke_units(capacities=(0, 2)) -> list[dict]:
    """The capacity notebook's smoke units (its smoke row; two of its three scales, to keep the test short)."""
    cfg = smoke_row("ch1_lighter_robust", "capacity")
    return adversarial.capacity_units(
        "mnist", [cfg["EPS"]], list(capacities), [0], train_n=cfg["TRAIN_N"], eval_n=cfg["EVAL_N"], subset_seed=0,
        train_steps=cfg["TRAIN_PGD_STEPS"], train_step_fraction=cfg["TRAIN_PGD_STEP_OVER_EPS"],
        eval_steps=cfg["EVAL_PGD_STEPS"], eval_step_fraction=cfg["EVAL_PGD_STEP_OVER_EPS"], epochs=cfg["EPOCHS"],
        optimizer=cfg["OPTIMIZER"], lr=cfg["LR"], momentum=cfg["MOMENTUM"], batch_size=cfg["BATCH_SIZE"],
        adv_weight=cfg["ADV_WEIGHT"])


def sweep_smoke_units() -> list[dict]:
    """The sweep notebook's smoke units (its smoke row) on a smaller generated Pendulum dataset, written before the
    units run (as the notebook's data cell does), and without the sweep cache, so every run trains."""
    cfg = smoke_row("ch2_offline_rl_pruning", "sweep")
    generation = dict(expert_steps=300, dataset_steps=600, expert_hidden=32, start_steps=100, noise=0.1,
                      reference_episodes=1)
    rl.load_tasks(cfg["TASKS"], 0, **generation)
    steps = rl.steps_per_algorithm(cfg["STEPS"], cfg["ALGORITHMS"])
    return rl.sweep_units(cfg["TASKS"], cfg["ALGORITHMS"], cfg["METHODS"], cfg["SPARSITIES"], [0], steps=steps,
                          seeds_per_unit=cfg["UNIT_SEEDS"], data_seed=0, generation=generation, width=cfg["WIDTH"],
                          episodes=cfg["EPISODES"], eval_every=cfg["EVAL_EVERY"], max_episode_steps=50, cache=False)


def data_root_with_images(root: Path) -> Path:
    """``root`` as a data root that holds Fashion-MNIST (linked from the repository's data root, which nothing here
    writes to) or, without it, relies on Debian's package; the capacity units load it in every worker."""
    root.mkdir(parents=True, exist_ok=True)
    repo_copy = Path(__file__).resolve().parents[1] / "data" / "FashionMNIST"
    if repo_copy.is_dir():
        (root / "FashionMNIST").symlink_to(repo_copy, target_is_directory=True)
    elif not Path(data_sources.DEBIAN_FASHION_MNIST).is_dir():
        pytest.skip("needs Fashion-MNIST (the capacity units' offline data): run `python -m helpers.data` once")
    return root


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "train s"} for row in rows]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance with 2 CPUs for this module, shut down afterwards."""
    if ray is None:
        pytest.skip("ray is not installed (pip install -e '.[cluster]')")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this file's units, for workers that cannot import it
    yield ray
    ray.shutdown()


@needs_ray
def test_ray_gives_the_local_numbers_for_the_capacity_and_sweep_smoke_units(local_ray, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "ray")))
    capacity, sweep = capacity_smoke_units(), sweep_smoke_units()
    on_ray = units.map_units(adversarial.capacity_unit, capacity, executor="ray", progress=False)
    sweep_on_ray = units.map_units(rl.sweep_unit, sweep, executor="ray", progress=False)
    assert len(list((tmp_path / "ray" / "checkpoints").glob("capacity-*.pt"))) == len(capacity)  # written by workers
    monkeypatch.setenv("BOOK_DATA", str(data_root_with_images(tmp_path / "local")))  # no checkpoint to load: the local run trains again
    sweep_local = units.map_units(rl.sweep_unit, sweep_smoke_units(), executor="local", progress=False)
    local = units.map_units(adversarial.capacity_unit, capacity, executor="local", progress=False)
    assert [(r["method"], r["scale"]) for r in on_ray] == [(m, s) for m in ("standard", "fgsm", "pgd") for s in (0, 2)]
    assert without_times(on_ray) == without_times(local)  # per-image scores included; train s is a wall time
    assert sweep_on_ray == sweep_local and {r["algorithm"] for rows in sweep_local for r in rows} == {"BC", "BCQ"}


def fault_unit(settings: dict) -> dict:
    """A unit that trains a small classifier for ``epochs`` epochs with a checkpoint after each; after every epoch it
    logs its process id and pauses (``pause`` seconds) so that a test can kill it mid-training."""
    seed, epochs = settings["seed"], settings["epochs"]
    helpers.limit_cpu_threads(torch.device("cpu"), 1)
    helpers.seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(256, 1, 8, 8, generator=g), torch.randint(0, 4, (256,), generator=g)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    log = Path(settings["log"])

    def mark(epoch, model, optimizer):
        with log.open("a") as f:
            f.write(f"{os.getpid()} {epoch}\n")
        time.sleep(settings["pause"])

    history = fit(model, (x, y), epochs=epochs, lr=0.05, batch_size=32, seed=seed, progress=False, on_epoch_end=mark,
                  checkpoint=cache.cache_path("fault-unit", {"seed": seed, "epochs": epochs}))
    return {"loss": [h["loss"] for h in history], "weights": [float(p.detach().sum()) for p in model.parameters()]}


@needs_ray
def test_a_killed_ray_worker_is_retried_and_resumes_from_its_checkpoint(local_ray, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "uninterrupted"))
    settings = {"seed": 3, "epochs": 4, "pause": 0.0, "log": str(tmp_path / "local.log")}
    expected = units.map_units(fault_unit, [settings], executor="local", progress=False)

    monkeypatch.setenv("BOOK_DATA", str(tmp_path / "killed"))
    log = tmp_path / "ray.log"
    checkpoint = cache.cache_path("fault-unit", {"seed": 3, "epochs": 4})
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(result=units.map_units(
        fault_unit, [{**settings, "pause": 1.0, "log": str(log)}], executor="ray", retries=2, progress=False)))
    worker.start()
    deadline = time.monotonic() + 60
    while not checkpoint.is_file():  # the first epoch's checkpoint: the unit is mid-training
        assert time.monotonic() < deadline and worker.is_alive(), "the unit never wrote its first checkpoint"
        time.sleep(0.02)
    killed = int(log.read_text().split()[0])
    os.kill(killed, signal.SIGKILL)  # the Ray worker process running the unit
    worker.join(timeout=90)
    assert not worker.is_alive() and "result" in out
    lines = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    retried = [epoch for pid, epoch in lines if pid != killed]
    assert {pid for pid, _ in lines} - {killed}, "the task was not retried in another worker"
    assert retried and retried[0] >= 1 and retried[-1] == 3  # resumed after the checkpointed epoch, not from scratch
    assert out["result"] == expected  # and the result equals the uninterrupted run's
