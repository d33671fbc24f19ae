"""helpers.results: scale resolution, configuration, records with provenance, claims, the scoreboard."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import helpers
from helpers import checks, claims, results
from helpers import scoreboard as board_module
from helpers.results import NOT_RUN, SCALES, VERDICTS, Run, load_claims, resolve_scale
from helpers.scoreboard import collect

TABLE = {
    "smoke": {"epochs": 1, "width": 4},
    "book": {"epochs": 5, "width": 16},
    "paper": {"epochs": 100, "width": 64},
}

CLAIMS = """\
- id: acc_high
  notebook: nb1
  claim: Accuracy is high.
  where: Table 1
  paper: 0.99
  kind: empirical
  test: Accuracy minus 0.5 above 0.
  guard: The model trains (loss falls).
- id: robust_low
  notebook: nb1
  claim: Robust accuracy is low.
  where: Fig. 2
  paper: null
  kind: empirical
  test: Robust accuracy below 0.2.
  guard: Clean accuracy at least 0.5.
- id: other
  notebook: nb2
  claim: Something else.
  where: Sec. 3
  paper: "about 5%"
  kind: arithmetic
  test: The paper's sum adds up.
  guard: null
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A temporary book (one chapter with claims, one without) and results folder."""
    book = tmp_path / "book"
    (book / "ch1_demo").mkdir(parents=True)
    (book / "ch1_demo" / "claims.yml").write_text(CLAIMS)
    (book / "ch2_nothing_yet").mkdir()
    out = tmp_path / "results"
    monkeypatch.setenv("BOOK_RESULTS", str(out))
    monkeypatch.delenv("BOOK_SCALE", raising=False)
    return SimpleNamespace(book=book, results=out)


def make_run(env, scale="smoke", notebook="nb1", **kwargs) -> Run:
    return Run("ch1_demo", notebook, scale, TABLE, book_dir=env.book, **kwargs)


def outcome(verdict: str) -> claims.Judgement:
    """An empirical judgement with ``verdict``: one part whose interval lies above, below or across 0."""
    if verdict == NOT_RUN:
        return claims.not_run("not tested here")
    low, high = {"reproduced": (0.1, 0.3), "not reproduced": (-0.3, -0.1), "inconclusive": (-0.1, 0.1)}[verdict]
    interval = claims.Interval((low + high) / 2, low, high, level=0.95, seeds=3, examples=100)
    return claims.judge([claims.Part("a minus b", interval, threshold=0.0)])


# -- scale, verdicts, locations -------------------------------------------------------------------

def test_resolve_scale_precedence(monkeypatch):
    monkeypatch.delenv("BOOK_SCALE", raising=False)
    assert resolve_scale(None) == "book"
    monkeypatch.setenv("BOOK_SCALE", "smoke")
    assert resolve_scale(None) == "smoke"
    assert resolve_scale("paper") == "paper"  # an explicit (papermill) value wins over the environment


@pytest.mark.parametrize("bad", ["huge", "", 3])
def test_resolve_scale_rejects_unknown(monkeypatch, bad):
    monkeypatch.delenv("BOOK_SCALE", raising=False)
    with pytest.raises(ValueError, match="SCALE must be one of smoke, book, paper"):
        resolve_scale(bad)


def test_resolve_scale_rejects_bad_environment(monkeypatch):
    monkeypatch.setenv("BOOK_SCALE", "full")
    with pytest.raises(ValueError, match="got 'full'"):
        resolve_scale(None)


def test_verdicts_and_scales():
    assert set(VERDICTS) == {"reproduced", "partly", "inconclusive", "not reproduced", "not run at this scale",
                             "checked", "does not check"}
    assert SCALES == ("smoke", "book", "paper")


def test_roots(monkeypatch, tmp_path):
    assert results.repo_root() == Path(helpers.__file__).resolve().parents[1]
    monkeypatch.delenv("BOOK_RESULTS", raising=False)
    assert results.results_root() == results.repo_root() / "results"
    monkeypatch.setenv("BOOK_RESULTS", str(tmp_path))
    assert results.results_root() == tmp_path


# -- configuration ---------------------------------------------------------------------------------

def test_config_from_table_and_overrides(env):
    run = make_run(env, "book", overrides={"epochs": 7, "width": None})
    assert run.config == {"epochs": 7, "width": 16}  # None means: take it from the table
    assert TABLE["book"] == {"epochs": 5, "width": 16}  # the table itself is not modified


def test_scale_from_environment(env, monkeypatch):
    monkeypatch.setenv("BOOK_SCALE", "paper")
    assert make_run(env, None).config["epochs"] == 100


def test_unknown_override_rejected(env):
    with pytest.raises(ValueError, match=r"'epoch'.*allowed: epochs, width"):
        make_run(env, overrides={"epoch": 3})


def test_table_must_have_every_scale(env):
    with pytest.raises(ValueError, match="smoke, book, paper"):
        Run("ch1_demo", "nb1", "smoke", {"smoke": {}, "book": {}}, book_dir=env.book)
    with pytest.raises(ValueError, match="same keys"):
        Run("ch1_demo", "nb1", "smoke", {**TABLE, "paper": {"epochs": 1}}, book_dir=env.book)


def test_show_config_and_banner_print_outside_ipython(env, capsys):
    run = make_run(env, overrides={"epochs": 3})
    run.use_dataset(SimpleNamespace(name="fashion-mnist", requested="mnist", substituted=True,
                                    reason="not under ./data"))
    run.show_config()
    run.banner()
    out = capsys.readouterr().out
    assert "epochs (override)" in out and "device" in out
    assert "MNIST is not available offline here: this run uses Fashion-MNIST" in out
    assert "not comparable to the paper's" in out


# -- record and save -------------------------------------------------------------------------------

def test_record_converts_and_save_writes_provenance(env):
    run = make_run(env, params={"SCALE": None, "EPOCHS": 3, "DATASET": "mnist"}, seed=3)
    assert run.record("acc", torch.tensor(0.5), "{:.1%}") == 0.5
    assert run.record("n", np.int64(7)) == 7
    assert run.record("curve", np.array([0.25, 0.5])) == [0.25, 0.5]
    run.record("ok", np.bool_(True))
    run.record("nested", {"a": [np.float32(1.5), "x"]})
    run.use_dataset(SimpleNamespace(name="fashion-mnist", requested="mnist", substituted=True))
    run.judge("acc_high", outcome("not reproduced"), ours="50.0% (paper 99%)")
    path = run.save()

    assert path == env.results / "ch1_demo" / "nb1.smoke.json"
    data = json.loads(path.read_text())
    assert data["values"] == {"acc": 0.5, "n": 7, "curve": [0.25, 0.5], "ok": True,
                              "nested": {"a": [1.5, "x"]}}
    assert type(data["values"]["n"]) is int and type(data["values"]["ok"]) is bool
    assert data["chapter"] == "ch1_demo" and data["notebook"] == "nb1" and data["scale"] == "smoke"
    assert data["seed"] == 3 and data["config"] == TABLE["smoke"]
    assert data["params"] == {"SCALE": None, "EPOCHS": 3, "DATASET": "mnist"}
    assert data["dataset_used"] == {"mnist": "fashion-mnist"}
    stored = data["claims"]["acc_high"]
    assert stored["ours"] == "50.0% (paper 99%)" and stored["kind"] == "empirical"
    assert stored["verdict"] == NOT_RUN and "would be 'not reproduced'" in stored["reason"]  # smoke judges nothing
    assert (stored["seeds"], stored["examples"]) == (3, 100) and stored["parts"][0]["threshold"] == 0.0
    prov = data["provenance"]
    for key in ("helpers_version", "git_commit", "torch_version", "python_version", "device",
                "platform", "started_utc", "wall_time_s"):
        assert key in prov, key
    assert prov["helpers_version"] == helpers.__version__
    assert prov["torch_version"] == torch.__version__
    assert prov["wall_time_s"] >= 0
    assert prov["git_commit"] == "unknown" or len(prov["git_commit"].removesuffix("+dirty")) == 40


def test_save_is_atomic_and_overwrites(env):
    run = make_run(env)
    run.record("x", 1)
    run.save()
    run.record("x", 2)
    path = run.save()
    folder = path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["nb1.smoke.json"]  # no .tmp left behind
    assert json.loads(path.read_text())["values"] == {"x": 2}


def test_save_failure_leaves_previous_file(env, monkeypatch):
    run = make_run(env)
    run.record("x", 1)
    path = run.save()
    run.record("x", 2)
    import helpers.io

    def crash(src, dst):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(helpers.io.os, "replace", crash)
        with pytest.raises(OSError, match="disk full"):
            run.save()
    assert json.loads(path.read_text())["values"] == {"x": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["nb1.smoke.json"]


def test_record_glues_notebook_key_inside_ipython(env, monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    import IPython

    glued = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.append((name, value, display)))
    run = make_run(env)
    run.record("clean_acc", 0.9321, "{:.1%}")
    run.record("loss", 0.25)
    run.record("eps", 0.3, ".2f")
    assert glued == [("nb1_clean_acc", "93.2%", False), ("nb1_loss", 0.25, False), ("nb1_eps", "0.30", False)]
    assert run.values == {"clean_acc": 0.9321, "loss": 0.25, "eps": 0.3}


def test_record_rejects_unplain_values_and_bad_keys(env):
    run = make_run(env)
    with pytest.raises(TypeError, match="record\\('model'\\)"):
        run.record("model", torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="key"):
        run.record("has space", 1)


# -- claims ----------------------------------------------------------------------------------------

def test_load_claims(env):
    claims = load_claims("ch1_demo", env.book)
    assert [c["id"] for c in claims] == ["acc_high", "robust_low", "other"]
    assert claims[1]["paper"] is None


JUDGED = "  kind: empirical\n  test: a minus b above 0\n  guard: clean at least 0.2\n"


@pytest.mark.parametrize("text, message", [
    ("- id: a\n  notebook: nb1\n  claim: c\n  where: w\n" + JUDGED, "lacks paper"),
    ("- id: a\n  notebook: nb1\n  claim: c\n  where: w\n  paper: 1\n", "lacks kind, test, guard"),
    ("- id: a\n  notebook: nb1\n  claim: c\n  where: w\n  paper: 1\n" + JUDGED.replace("empirical", "vibes"),
     "kind must be one of empirical, arithmetic"),
    ("- id: a\n  notebook: nb1\n  claim: c\n  where: w\n  paper: 1\n" + JUDGED.replace("a minus b above 0", "''"),
     "test must say in words"),
    ("- id: a\n  notebook: nb1\n  claim: c\n  where: w\n  paper: 1\n" + JUDGED.replace("clean at least 0.2", "null"),
     "an empirical claim needs a guard"),
    (("- id: a\n  notebook: nb1\n  claim: c\n  where: w\n  paper: 1\n" + JUDGED) * 2, "duplicate id 'a'"),
    ("id: a\n", "expected a YAML list"),
    ("- just a string\n", "entry 0 is not a mapping"),
    ("- id: ''\n  notebook: nb1\n  claim: c\n  where: w\n  paper: 1\n" + JUDGED, "id must be a non-empty string"),
])
def test_load_claims_rejects_malformed(env, text, message):
    (env.book / "ch1_demo" / "claims.yml").write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_claims("ch1_demo", env.book)
    assert "claims.yml" in str(info.value)


def test_judge_stores_the_interval_and_enforces_the_claims_kind(env):
    import numpy as np

    from helpers import claims

    run = make_run(env, scale="book")
    a, b = np.ones((3, 50)), np.zeros((3, 50))
    part = claims.Part("a minus b", claims.bootstrap(claims.difference, a, b), 0.5)
    with pytest.raises(ValueError, match="known ids"):
        run.judge("nope", claims.judge([part]))
    with pytest.raises(TypeError, match="Judgement"):
        run.judge("acc_high", "reproduced")
    with pytest.raises(ValueError, match="empirical in claims.yml but was judged as arithmetic"):
        run.judge("acc_high", claims.check(True, "1 = 1"))
    run.judge("acc_high", claims.judge([part]))
    stored = run.claims["acc_high"]
    assert stored["verdict"] == "reproduced" and stored["seeds"] == 3 and stored["examples"] == 50
    assert stored["parts"][0]["low"] == 1.0 and "a minus b" in stored["ours"]
    assert run.claims_table().set_index("id").loc["acc_high", "verdict"] == "reproduced"
    smoke = make_run(env, scale="smoke")
    smoke.judge("acc_high", claims.judge([part]))
    assert smoke.claims["acc_high"]["verdict"] == "not run at this scale"
    assert "would be 'reproduced'" in smoke.claims["acc_high"]["reason"]


def test_load_claims_missing_file(env):
    with pytest.raises(FileNotFoundError, match="ch2_nothing_yet"):
        load_claims("ch2_nothing_yet", env.book)


def test_claims_table_shows_judged_and_unjudged_claims(env):
    run = make_run(env, scale="book")
    with pytest.raises(ValueError, match="known ids: acc_high, robust_low"):
        run.judge("nope", outcome("reproduced"))
    with pytest.raises(ValueError, match="known ids"):
        run.judge("other", claims.check(True, "1 + 1 = 2"))  # belongs to another notebook
    run.judge("acc_high", outcome("reproduced"), ours="99.1%")
    table = run.claims_table()
    assert list(table.columns) == ["id", "claim", "where", "paper", "ours", "verdict", "seeds"]
    assert table.set_index("id")["verdict"].to_dict() == {"acc_high": "reproduced", "robust_low": NOT_RUN}


# -- collect and scoreboard ------------------------------------------------------------------------

def test_collect_without_results_marks_everything_not_run(env, tmp_path):
    df = collect(tmp_path / "no-results", env.book)
    assert list(df.columns) == board_module.RESULT_COLUMNS
    assert list(df["id"]) == ["acc_high", "robust_low", "other"]
    assert set(df["verdict"]) == {NOT_RUN} and set(df["scale"]) == {""} and set(df["ours"]) == {""}
    board = board_module.scoreboard(df)
    assert len(getattr(board, "data", board)) == 3


def test_collect_joins_claims_with_results(env):
    smoke = make_run(env, "smoke")
    smoke.judge("acc_high", outcome("not reproduced"), ours="12%")
    smoke.judge("robust_low", outcome(NOT_RUN), ours="n/a")
    smoke.save()
    book = make_run(env, "book")
    book.use_dataset(SimpleNamespace(name="fashion-mnist", requested="mnist", substituted=True))
    book.judge("acc_high", outcome("reproduced"), ours="98%")
    book.save()
    (env.results / "ch1_demo" / "broken.book.json").write_text("{not json")

    with pytest.warns(UserWarning, match="broken.book.json"):
        df = collect(env.results, env.book)
    rows = {(r.id, r.scale): r for r in df.itertuples()}
    assert set(rows) == {("acc_high", "smoke"), ("acc_high", "book"), ("robust_low", "smoke"), ("other", "")}
    assert rows["acc_high", "book"].verdict == "reproduced"
    assert rows["acc_high", "book"].dataset_used == "fashion-mnist (for mnist)"
    assert rows["acc_high", "smoke"].ours == "12%"
    assert rows["other", ""].verdict == NOT_RUN and rows["other", ""].paper == "about 5%"

    best = board_module.best_per_claim(df).set_index("id")
    assert best.loc["acc_high", "scale"] == "book"  # book beats smoke
    assert best.loc["robust_low", "verdict"] == NOT_RUN
    assert list(best.index) == ["acc_high", "robust_low", "other"]  # claims.yml order is kept


def test_best_prefers_a_judged_verdict_over_a_larger_unjudged_scale(env):
    book = make_run(env, "book")
    book.judge("acc_high", outcome("inconclusive"), ours="97%")
    book.save()
    paper = make_run(env, "paper")
    paper.judge("acc_high", outcome(NOT_RUN), ours="")
    paper.save()
    best = board_module.best_per_claim(collect(env.results, env.book)).set_index("id")
    assert (best.loc["acc_high", "scale"], best.loc["acc_high", "verdict"]) == ("book", "inconclusive")


def test_collect_with_no_book(tmp_path):
    df = collect(tmp_path / "r", tmp_path / "no-book")
    assert df.empty and list(df.columns) == board_module.RESULT_COLUMNS
    board_module.scoreboard(df)  # does not fail on an empty frame


def test_collect_reads_make_run_results_and_keeps_the_newest(env, tmp_path, monkeypatch):
    """By default the scoreboard reads results/ and runs/results (make run); the newest file wins."""
    runs = tmp_path / "runs-results"
    monkeypatch.setattr(board_module, "runs_results_root", lambda: runs)
    old = make_run(env, "book")
    old.judge("acc_high", outcome("not reproduced"), ours="50%")
    old.save()
    monkeypatch.setenv("BOOK_RESULTS", str(runs))
    new = make_run(env, "book")
    new.judge("acc_high", outcome("reproduced"), ours="99%")
    new.save()
    paper = make_run(env, "paper")
    paper.judge("acc_high", outcome("reproduced"), ours="98%")
    paper.save()
    monkeypatch.setenv("BOOK_RESULTS", str(env.results))
    df = collect(book_dir=env.book)
    rows = {(r.id, r.scale): r for r in df.itertuples()}
    assert rows["acc_high", "book"].ours == "99%"
    assert rows["acc_high", "paper"].verdict == "reproduced"
    assert len(df[(df.id == "acc_high") & (df.scale == "book")]) == 1


@pytest.mark.parametrize("broken", [
    {"claims": ["acc_high"]},
    {"claims": {"acc_high": "reproduced"}},
    {"provenance": "yesterday"},
])
def test_collect_skips_results_of_the_wrong_shape_naming_the_file(env, broken):
    run = make_run(env, "book")
    run.judge("acc_high", outcome("reproduced"), ours="98%")
    path = run.save()
    path.with_name("nb1.smoke.json").write_text(json.dumps({**json.loads(path.read_text()), "scale": "smoke",
                                                            **broken}))
    with pytest.warns(UserWarning, match="nb1.smoke.json"):
        df = collect(env.results, env.book)
    assert set(df[df.id == "acc_high"]["scale"]) == {"book"}


def test_collect_warns_on_an_unknown_verdict_and_shows_it_as_not_run(env):
    run = make_run(env, "book")
    run.judge("acc_high", outcome("reproduced"), ours="98%")
    path = run.save()
    data = json.loads(path.read_text())
    data["claims"]["acc_high"]["verdict"] = "reproduced!!"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"unknown verdict 'reproduced!!'"):
        df = collect(env.results, env.book)
    assert df.set_index("id").loc["acc_high", "verdict"] == NOT_RUN


def test_git_commit_ignores_untracked_files(tmp_path):
    import subprocess

    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no git")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "a.txt").write_text("a")
    subprocess.run(["git", "-C", str(repo), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "a"], check=True)
    (repo / "MUJOCO_LOG.TXT").write_text("log")
    assert not results.git_commit(repo).endswith("+dirty")
    (repo / "a.txt").write_text("b")
    assert results.git_commit(repo).endswith("+dirty")


# -- results.start: the parameters once, checked by rule, before any work ---------------------------

START_SCALES = {
    "smoke": {"EPOCHS": 1, "TRAIN_N": 64, "WIDTH": 4},
    "book": {"EPOCHS": 5, "TRAIN_N": None, "WIDTH": 16},
    "paper": {"EPOCHS": 100, "TRAIN_N": None, "WIDTH": 64},
}
START_RULES = {"WIDTH": checks.Integer(low=1), "METHOD": checks.Choice(["fgsm", "pgd"])}


def start(env, **params):
    params = {"SCALE": "smoke", "SEED": 0, "EPOCHS": None, "TRAIN_N": None, "METHOD": "pgd", **params}
    return results.start("ch1_demo", "nb1", START_SCALES, params, rules=START_RULES, threads=None,
                         book_dir=env.book)


def test_start_resolves_the_row_and_applies_parameters_that_are_set(env):
    run = start(env, EPOCHS=3)
    assert run.config == {"EPOCHS": 3, "TRAIN_N": 64, "WIDTH": 4}
    assert run.overridden == ["EPOCHS"]
    assert run.params["METHOD"] == "pgd" and run.seed == 0
    assert isinstance(run.generator, torch.Generator)


def test_start_seeds_everything(env):
    start(env, SEED=7)
    a = torch.rand(3)
    start(env, SEED=7)
    assert torch.equal(a, torch.rand(3))


@pytest.mark.parametrize("params, named, allowed", [
    (dict(EPOCHS=0), "EPOCHS", ">= 1"),
    (dict(TRAIN_N=-5), "TRAIN_N", ">= 1"),
    (dict(TRAIN_N=0), "TRAIN_N", ">= 1"),
    (dict(METHOD="bim"), "METHOD", "'fgsm', 'pgd'"),
    (dict(SEED=-1), "SEED", ">= 0"),
    (dict(EPOCHS=2.5), "EPOCHS", "an int"),
])
def test_start_refuses_a_bad_parameter_by_its_notebook_name(env, params, named, allowed):
    with pytest.raises(ValueError) as err:
        start(env, **params)
    message = str(err.value)
    assert message.startswith(named) and allowed in message and "notebook parameter of nb1.ipynb" in message
    assert not (env.results / "ch1_demo").exists()  # nothing written


def test_start_refuses_a_bad_scale_and_a_parameter_without_a_rule(env):
    with pytest.raises(ValueError, match="SCALE must be one of smoke, book, paper"):
        start(env, SCALE="huge")
    with pytest.raises(ValueError, match="no rule for parameter 'COLOUR'"):
        start(env, COLOUR="red")


def test_start_checks_the_table_values_too(env):
    bad = {**START_SCALES, "smoke": {**START_SCALES["smoke"], "WIDTH": 0}}
    with pytest.raises(ValueError, match=r"WIDTH must be an int >= 1; got 0 \(SCALES\['smoke'\]"):
        results.start("ch1_demo", "nb1", bad, {"SCALE": "smoke"}, rules=START_RULES, threads=None,
                      book_dir=env.book)


def test_start_merges_the_chapter_scales_file_under_the_notebook_table(env):
    (env.book / "ch1_demo" / "scales.yml").write_text(
        "smoke: {LR: 0.1, WIDTH: 2}\nbook: {LR: 0.01, WIDTH: 8}\npaper: {LR: 0.001, WIDTH: 32}\n")
    run = start(env)
    assert run.config["LR"] == 0.1 and run.config["WIDTH"] == 4  # the notebook's own row wins
    (env.book / "ch1_demo" / "scales.yml").write_text("smoke: {LR: 0.1}\nbook: {LR: 0.01}\n")
    with pytest.raises(ValueError, match="scales.yml must have exactly the keys smoke, book, paper"):
        start(env)


def test_start_takes_the_parameters_from_the_notebook_globals(env):
    import math as some_module
    namespace = {"__builtins__": {}, "SCALE": "smoke", "SEED": 3, "EPOCHS": 2, "TRAIN_N": None, "METHOD": "fgsm",
                 "SCALES": START_SCALES, "RULES": START_RULES, "math": some_module, "lower": 1, "In": [],
                 "Helper": object, "WIDTH": None}
    run = results.start("ch1_demo", "nb1", START_SCALES, namespace, rules=START_RULES, threads=None,
                        book_dir=env.book)
    assert run.params == {"SCALE": "smoke", "SEED": 3, "EPOCHS": 2, "TRAIN_N": None, "METHOD": "fgsm", "WIDTH": None}
    assert run.config["EPOCHS"] == 2 and run.seed == 3
    namespace["PAPER_LAYERS"] = (1, 2)  # an imported constant without a rule is not a parameter
    run = results.start("ch1_demo", "nb1", START_SCALES, namespace, rules=START_RULES, threads=None,
                        book_dir=env.book)
    assert "PAPER_LAYERS" not in run.params


def test_the_scoreboard_counts_links_and_plots_judged_claims(env, shown):
    from helpers import claims
    from helpers.plots.scoreboard import plot_forest, plot_verdict_counts

    run = make_run(env, scale="book")
    a, b = np.ones((3, 40)), np.zeros((3, 40))
    part = claims.Part("a minus b", claims.bootstrap(claims.difference, a, b), 0.5, fmt="{:+.1%}")
    run.judge("acc_high", claims.judge([part], guards=[claims.Guard("clean", 0.9, at_least=0.2)]))
    run.judge("robust_low", claims.not_run("no attack at this scale"))
    run.save()
    best = board_module.best_per_claim(collect(env.results, env.book))
    counts = board_module.verdict_counts(best, {"ch1_demo": "Paper 1: demo"})
    assert counts.loc["Paper 1", "reproduced"] == 1 and counts.loc["Paper 1", "not run at this scale"] == 2
    assert counts.loc["all papers"].sum() == 3 and list(counts.columns[-2:]) == ["checked", "does not check"]
    html = board_module.claim_rows(best)
    assert "href='ch1_demo/nb1.html#claims'" in html and ">acc high</a>" in html
    assert "+100.0% [+100.0%, +100.0%]" in html and "no attack at this scale" in html
    assert html.count("<tr>") == 4  # head + three claims
    assert plot_forest(best) is not None and plot_forest(best.iloc[1:]) is None
    assert plot_verdict_counts(counts) is not None


# -- the dry run of the paper rows (issue 15) ----------------------------------------------------------------------

DRY_SCALES = {**START_SCALES, "dry": {"EPOCHS": 1, "TRAIN_N": 32}}


def dry_start(env, **params):
    params = {"SCALE": None, "SEED": 0, "EPOCHS": None, "TRAIN_N": None, "METHOD": "pgd", **params}
    return results.start("ch1_demo", "nb1", DRY_SCALES, params, rules=START_RULES, threads=None, book_dir=env.book)


def test_a_dry_run_takes_the_paper_row_with_the_dry_caps_over_it(env, monkeypatch):
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    run = dry_start(env)
    assert run.scale == "paper" and run.dry_run
    assert run.config == {"EPOCHS": 1, "TRAIN_N": 32, "WIDTH": 64}  # the paper's width, its loops capped
    assert run.capped == {"EPOCHS": (100, 1), "TRAIN_N": (None, 32)}
    run = dry_start(env, EPOCHS=7)  # a cap wins over a parameter: a dry run stays capped
    assert run.config["EPOCHS"] == 1
    with pytest.raises(ValueError, match="a dry run runs the paper row.*allowed: 'paper' or None"):
        dry_start(env, SCALE="book")
    monkeypatch.setenv("BOOK_DRY_RUN", "0")
    assert dry_start(env).config == {"EPOCHS": 5, "TRAIN_N": None, "WIDTH": 16}  # off: the dry row is ignored
    monkeypatch.setenv("BOOK_DRY_RUN", "maybe")
    with pytest.raises(ValueError, match="BOOK_DRY_RUN must be 1"):
        dry_start(env)


def test_a_dry_row_may_only_cap_settings_of_the_paper_row(env, monkeypatch):
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    with pytest.raises(ValueError, match=r"\['dry'\] caps settings of the paper row; DEPTH is not among them"):
        results.start("ch1_demo", "nb1", {**START_SCALES, "dry": {"DEPTH": 2}}, {"SCALE": None}, rules=START_RULES,
                      threads=None, book_dir=env.book)
    with pytest.raises(ValueError, match="WIDTH must be an int >= 1"):
        results.start("ch1_demo", "nb1", {**START_SCALES, "dry": {"WIDTH": 0}}, {"SCALE": None}, rules=START_RULES,
                      threads=None, book_dir=env.book)


def test_a_dry_run_judges_nothing_and_saves_apart_from_the_paper_results(env, monkeypatch):
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    run = dry_start(env)
    judged = run.judge("acc_high", outcome("reproduced"))
    assert judged.verdict == NOT_RUN and "dry run" in judged.reason and "'reproduced'" in judged.reason
    path = run.save()
    assert path.name == "nb1.paper.dry-run.json"
    saved = json.loads(path.read_text())
    assert saved["dry_run"] is True and saved["capped"]["EPOCHS"] == [100, 1]
    assert set(collect(env.results, env.book)["verdict"]) == {NOT_RUN}  # a dry run's scoreboard reads it ...
    monkeypatch.setenv("BOOK_DRY_RUN", "0")
    assert set(collect(env.results, env.book)["scale"]) == {""}  # ... nothing else does


def test_a_dry_run_puts_what_it_trains_under_the_data_root_dry_run_folder(tmp_path, monkeypatch):
    from helpers import cache, paths

    monkeypatch.setenv("BOOK_DATA", str(tmp_path))
    monkeypatch.setenv("BOOK_DRY_RUN", "1")
    assert paths.work_root() == tmp_path / "dry-run"
    assert cache.cache_path("demo", {"a": 1}).parent == tmp_path / "dry-run" / "checkpoints"
    monkeypatch.delenv("BOOK_DRY_RUN")
    assert cache.cache_path("demo", {"a": 1}).parent == tmp_path / "checkpoints"
