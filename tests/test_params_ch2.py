"""Chapter 2's notebooks refuse a bad parameter by its notebook name, with the value and what is allowed, before any
work: the rules of each notebook (its hidden rules cell, executed here) with helpers.results.start."""
from __future__ import annotations


import pytest

from helpers import results, rl
from notebook_params import notebook_setup, open_run

CHAPTER = "ch2_offline_rl_pruning"


@pytest.mark.parametrize("name", ["datasets", "masks", "sweep"])
def test_defaults_pass_every_rule(name):
    run = open_run(CHAPTER, name)
    assert run.scale == "smoke" and run.config["TASKS"] == ["Pendulum-v1"]  # the chapter's scales.yml is merged


@pytest.mark.parametrize("name, override, message", [
    # names: a Choice with the allowed values
    ("sweep", dict(TASK="bogus-v0"), r"TASK must be one of 'hopper-expert-v2', .*'Pendulum-v1' \(or None\); "
                                     r"got 'bogus-v0' \(notebook parameter of sweep.ipynb\)"),
    ("datasets", dict(TASK="hopper-medium-v2"), r"TASK must be one of .*got 'hopper-medium-v2'"),
    ("masks", dict(ENVS=["Ant-v5"]),
     r"ENVS must be a list of at least 1 item\(s\), each one of 'Hopper-v5'.*got \['Ant-v5'\]"),
    ("masks", dict(DATA="medium"), r"DATA must be one of 'random', 'expert'; got 'medium'"),
    # fractions: their real interval
    ("masks", dict(SPARSITY=1.5),
     r"SPARSITY must be a number in \[0, 1\); got 1.5 \(notebook parameter of masks.ipynb\)"),
    ("masks", dict(SPARSITY=-0.5), r"SPARSITY must be a number in \[0, 1\); got -0.5"),
    # sizes and counts: >= 1
    ("datasets", dict(EXPERT_STEPS=0), r"EXPERT_STEPS must be an int >= 1; got 0"),
    ("datasets", dict(DATASET_STEPS=1), r"DATASET_STEPS must be an int >= 2; got 1"),
    ("masks", dict(SEEDS=0), r"SEEDS must be an int >= 1; got 0"),
    ("sweep", dict(SEEDS=0), r"SEEDS must be an int >= 1; got 0"),
    ("sweep", dict(EPISODES=0), r"EPISODES must be an int >= 1; got 0"),
    ("sweep", dict(WIDTH=-1.0), r"WIDTH must be a number > 0; got -1.0"),
    # STEPS: an int for both algorithms (the table holds a dict of one per algorithm)
    ("sweep", dict(STEPS=0), r"STEPS must be an int >= 1, or a dict of an int >= 1 for each of 'BCQ', 'BC'.*; got 0"),
    ("sweep", dict(STEPS="many"), r"STEPS must be an int >= 1.*got 'many'"),
    # text
    ("datasets", dict(D4RL_DIR=""), r"D4RL_DIR must be a non-empty string \(or None\); got ''"),
])
def test_bad_parameters_are_refused_by_name_before_any_work(name, override, message, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match=message):
        open_run(CHAPTER, name, **override)
    assert not any(tmp_path.iterdir())  # nothing written


def test_scale_table_values_are_checked_too():
    params, scales, rules = notebook_setup(CHAPTER, "masks")
    bad = {k: dict(v) for k, v in scales.items()}
    bad["smoke"]["SNIP_BATCH"] = 50  # rl.prune_agent scores SNIP on the paper's 100 transitions
    with pytest.raises(ValueError, match=r"SNIP_BATCH must be one of 100; got 50 \(SCALES\['smoke'\]\['SNIP_BATCH'\]"):
        results.start(CHAPTER, "masks", bad, {**params, "SCALE": "smoke"}, rules=rules, threads=None)


def test_steps_per_algorithm():
    assert rl.steps_per_algorithm(7, ["BC", "BCQ"]) == {"BC": 7, "BCQ": 7}
    assert rl.steps_per_algorithm({"BC": 4, "BCQ": 2}, ["BCQ"]) == {"BCQ": 2}
    with pytest.raises(ValueError, match="steps has no entry for 'BC'"):
        rl.steps_per_algorithm({"BCQ": 2}, ["BC", "BCQ"])
    with pytest.raises(ValueError, match=r"steps\['BC'\] must be an int >= 1"):
        rl.steps_per_algorithm({"BC": 0, "BCQ": 2})
