"""Chapter 1's notebooks refuse a bad parameter by its notebook name, before any work.

Each test executes the notebook's hidden rules cell (imports, ``SCALES``, ``RULES``) and asks
:func:`helpers.results.start` to open a run with one bad parameter: a ``ValueError`` naming the parameter, the value
and what is allowed, raised before any data is loaded or any model trained.
"""
from __future__ import annotations


import pytest

from helpers import results
from notebook_params import open_run

CHAPTER = "ch1_lighter_robust"


# notebook, parameter, bad value, what the message says is allowed
BAD = [
    ("capacity", "EPOCHS", 0, "an int >= 1"),
    ("capacity", "DATASET", "imagenet", "one of 'mnist'"),
    ("capacity", "TRAIN_N", -5, "an int >= 1 (or None)"),
    ("capacity", "EVAL_N", 0, "an int >= 1 (or None)"),
    ("capacity", "CAPACITIES", [0, 7], "each one of 0, 1, 2, 3, 4, 5"),
    ("capacity", "CAPACITIES", [], "at least 1 item"),
    ("capacity", "EXTRA_EPS", 0, "a number in (0, 1]"),
    ("capacity", "EXTRA_EPS", 1.5, "a number in (0, 1]"),
    ("feature_usefulness", "EPOCHS", 0, "an int >= 1"),
    ("feature_usefulness", "DATASET", "imagenet", "one of 'mnist'"),
    ("feature_usefulness", "N_TRAIN", -5, "an int >= 1 (or None)"),
    ("feature_usefulness", "N_ROBUST", 0, "an int >= 1 (or None)"),
    ("feature_usefulness", "RUN_ADV", "yes", "True or False"),
    ("feature_usefulness", "RUN_PRUNING", 1, "True or False"),
    ("lottery_tickets", "EPOCHS", 0, "an int >= 1"),
    ("lottery_tickets", "DATASET", "imagenet", "one of 'mnist'"),
    ("lottery_tickets", "TRAIN_N", -5, "an int >= 1 (or None)"),
    ("lottery_tickets", "ROUNDS", 1, "an int >= 2"),
    ("lottery_tickets", "AMOUNT", 1.0, "a number in (0, 1)"),
    ("lottery_tickets", "PGD_N", -1, "an int >= 0 (or None)"),
] + [(notebook, "SEEDS", 0, "an int >= 1") for notebook in ("capacity", "feature_usefulness", "lottery_tickets")]


@pytest.mark.parametrize("notebook, name, value, allowed", BAD, ids=lambda v: str(v))
def test_a_bad_parameter_is_refused_by_its_notebook_name(notebook, name, value, allowed, monkeypatch):
    monkeypatch.setattr(results.Run, "datasets", lambda *a, **k: pytest.fail("data loaded after a bad parameter"))
    with pytest.raises(ValueError) as err:
        open_run(CHAPTER, notebook, **{name: value})
    message = str(err.value)
    assert message.startswith(f"{name} must be ") and allowed in message
    assert message.endswith(f"; got {value!r} (notebook parameter of {notebook}.ipynb)")


@pytest.mark.parametrize("notebook", ["capacity", "feature_usefulness", "lottery_tickets"])
def test_the_default_parameters_open_a_run_at_every_scale(notebook):
    for scale in results.SCALES:
        run = open_run(CHAPTER, notebook, SCALE=scale)
        assert run.scale == scale
        assert {"EPS", "ADV_WEIGHT", "SEEDS"} <= set(run.config)  # from the chapter's scales.yml
        assert run.config["SEEDS"] == {"smoke": 1, "book": 3, "paper": 5}[scale]  # issue 14: >= 3 seeds at book


def test_the_chapter_shares_eps_and_adv_weight_in_scales_yml():
    shared = {scale: row for scale, row in results.chapter_scales(CHAPTER).items() if scale in results.SCALES}
    assert {row["EPS"] for row in shared.values()} == {0.3} and {row["ADV_WEIGHT"] for row in shared.values()} == {0.5}
