"""What a JupyterLab reader sees of the glued numbers: Run.record, in a notebook front end, shows the value and the
notebook's sentences it completes, with the numbers in place of the {glue:text} roles; headless it shows nothing."""
from __future__ import annotations

import json

from helpers import results


def test_completed_sentences_fill_every_role_once_all_are_known():
    prose = ["In this run {glue:text}`nb_n` of 100 features are negative.",
             "Accuracy {glue:text}`nb_acc:.1%` against {glue:text}`nb_base`.", "No number here."]
    assert results.completed_sentences(prose, "nb_n", {"nb_n": 37}) == [
        "In this run **37** of 100 features are negative."]
    assert results.completed_sentences(prose, "nb_acc", {"nb_acc": 0.912}) == []  # nb_base still unknown
    assert results.completed_sentences(prose, "nb_base", {"nb_acc": 0.912, "nb_base": "80.0%"}) == [
        "Accuracy **91.2%** against **80.0%**."]


def test_notebook_prose_reads_the_markdown_sentences(tmp_path, monkeypatch):
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Title\n", "\n", "First {glue:text}`a_x` here. Second\n",
                                                         "line. (Third.)"]},
                    {"cell_type": "code", "source": ["x = 1  # not prose."]}]}
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    monkeypatch.chdir(tmp_path)
    assert results.notebook_prose("book/ch/a.ipynb") == ["# Title", "First {glue:text}`a_x` here.", "Second line.",
                                                         "(Third.)"]
    assert results.notebook_prose("") == [] and results.notebook_prose("missing.ipynb") == []


def test_record_shows_formatted_values_in_a_front_end(monkeypatch, tmp_path):
    shown = []
    monkeypatch.setattr(results, "interactive", lambda: True)
    monkeypatch.setattr(results.Run, "_show_glued", lambda self, name: shown.append(dict(self._shown)))
    import IPython
    import myst_nb

    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: None)  # the real one would create a global IPython shell
    run = results.Run("ch1_demo", "nb1", "smoke", {s: {"N": 1} for s in results.SCALES}, book_dir=tmp_path)
    run.record("acc", 0.9123, "{:.1%}")
    run.record("n", 37)
    assert shown[-1] == {"nb1_acc": (None, "91.2%"), "nb1_n": (37, 37)}  # formatted: the glued text; raw: the number
