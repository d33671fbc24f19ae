"""helpers.rl datasets: the D4RL hdf5 loader and its validation, normalised scores, generated-data round trips."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from helpers import rl


def _arrays(n: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[19] = True
    timeouts[39] = True
    return {"observations": rng.normal(size=(n, 3)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": terminals, "timeouts": timeouts}


def _write(path, arrays, **attrs):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


def test_hdf5_roundtrip_and_d4rl_refs(tmp_path):
    arrays = _arrays()
    data = rl.load_d4rl_hdf5(_write(tmp_path / "hopper-expert-v2.hdf5", arrays))
    assert data.env_id == "Hopper-v5" and data.metadata["d4rl_name"] == "hopper-expert-v2" and len(data) == 50
    for k, v in arrays.items():
        np.testing.assert_array_equal(getattr(data, k), v)
    assert (data.ref_min_score, data.ref_max_score) == rl.D4RL_REF_SCORES["hopper"]
    # qlearning: next row as s', the timeout transition and the last row dropped (d4rl.qlearning_dataset)
    q = rl.qlearning_arrays(data.arrays())
    assert len(q["observations"]) == 48
    np.testing.assert_array_equal(q["next_observations"][0], arrays["observations"][1])
    assert q["terminals"].sum() == 1
    assert not any((q["observations"] == arrays["observations"][39]).all(1))
    rets = data.episode_returns()
    np.testing.assert_allclose(rets, [arrays["rewards"][:20].sum(), arrays["rewards"][20:40].sum()], rtol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("timeouts"), "missing key"),
    (lambda a: a.update(rewards=a["rewards"][:-1]), "'rewards' has length 49"),
    (lambda a: a.update(actions=a["actions"].astype(np.int64)), "'actions' must hold floats"),
    (lambda a: a.update(terminals=a["terminals"].astype(np.float32)), "'terminals' must be bool"),
    (lambda a: a.update(terminals=a["terminals"].astype(np.int8) * 2), "'terminals' must contain only 0 and 1"),
    (lambda a: a.update(observations=a["observations"][:, 0]), "'observations' must be 2-D"),
    (lambda a: a["observations"].__setitem__((3, 1), np.nan), "'observations' contains NaN"),
])
def test_malformed_files_name_the_problem(tmp_path, change, message):
    arrays = _arrays()
    change(arrays)
    path = _write(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(ValueError, match=message):
        rl.load_d4rl_hdf5(path)
    with pytest.raises(ValueError, match=message):  # the d4rl get_dataset() dict goes through the same checks
        rl.from_d4rl_dict(arrays, "hopper-expert-v0")


def test_not_an_hdf5_file(tmp_path):
    (tmp_path / "x.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable hdf5"):
        rl.load_d4rl_hdf5(tmp_path / "x.hdf5")


@pytest.mark.parametrize("env", ["hopper-expert-v0", "HalfCheetah-v5", "walker2d-medium-v2"])
def test_normalized_score_reference_points(env):
    lo, hi = rl.reference_scores(env)
    assert rl.d4rl_normalized_score(env, lo) == pytest.approx(0.0, abs=1e-9)
    assert rl.d4rl_normalized_score(env, hi) == pytest.approx(100.0)
    assert rl.d4rl_normalized_score(env, (lo + hi) / 2) == pytest.approx(50.0)


def test_normalized_score_own_references_and_unknown_env():
    data = rl.from_d4rl_dict(_arrays(), "Pendulum-v1", ref_min_score=-1200.0, ref_max_score=-150.0)
    assert data.normalized_score(-1200.0) == pytest.approx(0.0)
    assert data.normalized_score(-150.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no reference returns"):
        rl.d4rl_normalized_score("Pendulum-v1", -150.0)


def test_generated_dataset_roundtrip_hdf5_and_minari(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    data, returns = rl.rollout_dataset("Pendulum-v1", None, 450, seed=3)
    assert data.timeouts.sum() == 3 and not data.terminals.any()  # 200-step episodes, last one cut
    np.testing.assert_allclose(data.episode_returns()[:2], returns, rtol=1e-5)
    data.ref_min_score, data.ref_max_score = -1200.0, -150.0
    path = rl.save_d4rl_hdf5(data, tmp_path / "p.hdf5")
    back = rl.load_d4rl_hdf5(path)
    assert back.env_id == "Pendulum-v1" and back.ref_max_score == -150.0 and back.max_action == 2.0
    for k, v in data.arrays().items():
        np.testing.assert_array_equal(getattr(back, k), v)
    pytest.importorskip("minari")
    rl.save_minari(back, "test/pendulum/random-v0", root=tmp_path / "minari")
    mini = rl.load_minari("test/pendulum/random-v0", root=tmp_path / "minari")
    assert (mini.ref_min_score, mini.ref_max_score) == (-1200.0, -150.0) and mini.env_id == "Pendulum-v1"
    for k, v in data.arrays().items():
        np.testing.assert_allclose(getattr(mini, k), v, rtol=1e-6)
    with pytest.raises(ValueError, match="not a local Minari dataset"):
        rl.load_minari("test/pendulum/other-v0", root=tmp_path / "minari")


def test_actions_outside_the_box_are_clipped_with_a_warning_or_refused(tmp_path):
    arrays = _arrays()
    arrays["actions"][3, 0] = 1.02  # a small excursion: clipped, and the warning names the file
    path = _write(tmp_path / "hopper-expert-v2.hdf5", arrays)
    with pytest.warns(UserWarning, match=r"hopper-expert-v2.hdf5: 1 of 100 action values lie outside \[-1, 1\]"):
        data = rl.load_d4rl_hdf5(path)
    assert data.actions.max() <= 1.0 and data.actions[3, 0] == 1.0
    with pytest.warns(UserWarning, match="d4rl dataset hopper-expert-v0"):
        rl.from_d4rl_dict(arrays, "hopper-expert-v0")
    arrays["actions"][5, 1] = -2.0  # far out: another action scale, refused
    path = _write(tmp_path / "walker2d-expert-v2.hdf5", arrays)
    with pytest.raises(ValueError, match="walker2d-expert-v2.hdf5: 2 of 100 action values.*refused.*max_action"):
        rl.load_d4rl_hdf5(path)
    with pytest.raises(ValueError, match="refused"):
        rl.from_d4rl_dict(arrays, "walker2d-expert-v0")
    # a file that stores its bound (Pendulum: [-2, 2]) loads as it is, without a warning
    ok = _write(tmp_path / "pendulum.hdf5", arrays, max_action=2.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(rl.load_d4rl_hdf5(ok).actions, arrays["actions"])


def test_unknown_task_is_refused_before_any_work():
    with pytest.raises(ValueError, match="task must be a D4RL task or a registered gymnasium environment.*"
                                         "'Pendulum-v1'.*got 'bogus-v0'"):
        rl.load_task("bogus-v0")


@pytest.mark.parametrize("name, env", [("hopper-expert-v2", "Hopper-v5"), ("halfcheetah-expert-v2", "HalfCheetah-v5"),
                                       ("walker2d-expert-v2", "Walker2d-v5"), ("Pendulum-v1", "Pendulum-v1"),
                                       ("Hopper-v5", "Hopper-v5"), ("my-own-data", "my-own-data")])
def test_a_d4rl_name_is_evaluated_in_the_gymnasium_task_it_was_recorded_on(name, env):
    assert rl.evaluation_env(name) == env


def test_a_d4rl_file_of_every_paper_task_loads_and_evaluates_in_gymnasium(tmp_path):
    """The paper row's path: <d4rl_dir>/<task>.hdf5 -> load_task -> evaluate_batch (gym.make of the dataset's
    env_id). It failed with NameNotFound ('hopper-expert') when the D4RL name was used as the gymnasium id."""
    import gymnasium as gym

    for task in rl.D4RL_TASKS:
        env = gym.make(rl.evaluation_env(task))
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        arrays = _arrays(60)
        arrays["observations"] = np.random.default_rng(1).normal(size=(60, obs_dim)).astype(np.float32)
        arrays["actions"] = np.random.default_rng(2).uniform(-1, 1, size=(60, act_dim)).astype(np.float32)
        _write(tmp_path / f"{task}.hdf5", arrays)
        data = rl.load_task(task, d4rl_dir=str(tmp_path))
        assert data.source == f"D4RL hdf5 {task}.hdf5" and data.metadata["d4rl_name"] == task
        assert data.env_id == rl.D4RL_TASKS[task][1]
        assert (data.ref_min_score, data.ref_max_score) == rl.D4RL_REF_SCORES[task.split("-")[0]]
        zero = lambda obs: torch.zeros((*obs.shape[:2], act_dim))  # noqa: E731
        returns = rl.evaluate_batch(zero, data.env_id, policies=1, episodes=1, max_steps=5)
        assert returns.shape == (1, 1) and np.isfinite(returns).all()


def test_a_d4rl_named_file_flows_through_datasets_masks_and_sweep_in_a_dry_run(tmp_path, monkeypatch):
    """Issue 15: the paper row's path at dry-run scale. A D4RL-layout file named as D4RL names it, at
    <data root>/d4rl/hopper-expert-v2.hdf5, is read by the datasets notebook's call, scored by the masks notebook's
    (Fig. 3, both algorithms, SNIP and GraSP) and trained and evaluated by the sweep's unit in Hopper-v5."""
    import gymnasium as gym

    from helpers import units

    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    task = "hopper-expert-v2"
    env = gym.make(rl.evaluation_env(task))
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    arrays = _arrays(400)
    arrays["observations"] = np.random.default_rng(1).normal(size=(400, obs_dim)).astype(np.float32)
    arrays["actions"] = np.random.default_rng(2).uniform(-1, 1, size=(400, act_dim)).astype(np.float32)
    (tmp_path / "d4rl").mkdir()
    _write(tmp_path / "d4rl" / f"{task}.hdf5", arrays)
    config = {"TASKS": [task], "EXPERT_STEPS": 2, "DATASET_STEPS": 400, "EXPERT_HIDDEN": 256, "START_STEPS": 1,
              "NOISE": 0.1, "REF_EPISODES": 1}
    data = rl.chapter_datasets(config, None)[task]  # datasets.ipynb
    assert data.source == f"D4RL hdf5 {task}.hdf5" and data.env_id == "Hopper-v5"
    layers, kept = rl.layer_densities({data.env_id: data}, ["BCQ", "BC"], [0], {"snip": "SNIP", "grasp": "GraSP"},
                                      0.05, keep=(data.env_id, "BCQ", 0))  # masks.ipynb
    assert set(layers["method"]) == {"SNIP", "GraSP"} and set(kept) == {"snip", "grasp"}
    unit_settings = rl.sweep_units([task], ["BC"], ["snip"], [0.0, 0.95], [0], steps={"BC": 2}, seeds_per_unit=None,
                                   data_seed=0, generation=rl.generation_settings(config), width=1.0, episodes=1,
                                   eval_every=None, max_episode_steps=5)  # sweep.ipynb
    rows = [row for out in units.map_units(rl.sweep_unit, unit_settings, progress=False) for row in out]
    assert {r["task"] for r in rows} == {task} and {r["method"] for r in rows} == {"dense", "snip"}
    assert all(np.isfinite(r["score"]) for r in rows)


def test_a_dry_run_without_d4rl_files_reads_a_d4rl_layout_stand_in_of_the_real_sizes(tmp_path, monkeypatch):
    import gymnasium as gym

    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    for task in rl.D4RL_TASKS:
        data = rl.load_task(task, dataset_steps=60, seed=0)
        env = gym.make(rl.evaluation_env(task))
        assert (data.state_dim, data.action_dim) == (env.observation_space.shape[0], env.action_space.shape[0])
        assert data.env_id == rl.evaluation_env(task) and data.metadata["d4rl_name"] == task and len(data) == 60
        assert (data.ref_min_score, data.ref_max_score) == pytest.approx(rl.D4RL_REF_SCORES[task.split("-")[0]])
        assert (tmp_path / "dry-run" / "d4rl" / f"{task}.hdf5").is_file()  # never in <data root>/d4rl
        assert not (tmp_path / "d4rl").exists()
        note = rl.dataset_note(task, data)
        assert "stand-in" in note.name and note.requested == f"D4RL {task}"
