"""The scoreboard: every chapter's claims joined with every results file, the best verdict per claim, the table.

``collect`` reads ``book/<chapter>/claims.yml`` and the results files that :class:`helpers.results.Run` writes;
a results file of the wrong shape is skipped with a warning naming it, an unknown verdict is shown as not run.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

from .paths import repo_root
from .results import (NOT_RUN, SCALES, VERDICTS, book_root, load_claims, paper_text, resolve_scale, results_root,
                      style_verdicts)

#: The columns of the table :func:`collect` returns.
RESULT_COLUMNS = ["chapter", "notebook", "id", "claim", "where", "paper", "scale", "ours", "verdict",
                  "dataset_used", "git_commit"]

__all__ = ["collect", "best_per_claim", "scoreboard", "chapter_titles", "chapter_dirs", "runs_results_root"]


def chapter_titles(root: Path | None = None) -> dict[str, str]:
    """``{chapter folder: part caption}`` read from ``_toc.yml`` (e.g. ``"Paper 1: ..."``); empty
    when the file is missing or has no parts."""
    toc = Path(root or repo_root()) / "_toc.yml"
    try:
        data = yaml.safe_load(toc.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    titles: dict[str, str] = {}
    for part in data.get("parts", []) if isinstance(data, dict) else []:
        if not isinstance(part, dict):
            continue
        for entry in part.get("chapters", []) or []:
            parts = str(entry.get("file", "") if isinstance(entry, dict) else "").split("/")
            if len(parts) >= 3 and parts[0] == "book" and part.get("caption"):
                titles.setdefault(parts[1], str(part["caption"]))
    return titles


def runs_results_root() -> Path:
    """Where ``make run`` (papermill) puts its results: ``<repo>/runs/results``."""
    return repo_root() / "runs" / "results"


def collect(results_dir: Path | None = None, book_dir: Path | None = None):
    """Every claim of every ``<book_dir>/ch*/claims.yml`` joined with every results file.

    Results are read from ``results_dir``, by default :func:`results_root` and :func:`runs_results_root`
    (the newest file wins when both hold the same notebook and scale). One row per (claim, scale with a
    result); a claim without any result gets one row with verdict ``not run at this scale`` and empty
    ``scale``/``ours``. Chapters without ``claims.yml`` are skipped; unreadable results files are skipped
    with a warning. Columns: :data:`RESULT_COLUMNS`.
    """

    import pandas as pd

    dirs = [Path(results_dir)] if results_dir is not None else [results_root(), runs_results_root()]
    book_dir = Path(book_dir) if book_dir is not None else book_root()
    newest: dict[tuple[str, str, str], dict] = {}
    for path in sorted(p for d in dirs if d.is_dir() for p in d.glob("*/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            key = (str(data.get("chapter", path.parent.name)), str(data["notebook"]), resolve_scale(data["scale"]))
            data["scale"] = key[2]
            _check_results_shape(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            warnings.warn(f"skipping unreadable results file {path}: {err}", stacklevel=2)
            continue
        for claim_id, judged in data["claims"].items():
            if judged.get("verdict", NOT_RUN) not in VERDICTS:
                warnings.warn(f"{path}: claim {claim_id!r} has an unknown verdict {judged.get('verdict')!r}"
                              f" (known: {', '.join(VERDICTS)}); it is shown as {NOT_RUN!r}", stacklevel=2)
                judged["verdict"] = NOT_RUN
        finished = str((data.get("provenance") or {}).get("finished_utc", ""))
        if key not in newest or finished >= str((newest[key].get("provenance") or {}).get("finished_utc", "")):
            newest[key] = data
    results: dict[tuple[str, str], list[dict]] = {}
    for (chapter, notebook, _), data in newest.items():
        results.setdefault((chapter, notebook), []).append(data)
    rows = []
    for chapter_dir in chapter_dirs(book_dir):
        if not (chapter_dir / "claims.yml").is_file():
            continue
        for c in load_claims(chapter_dir.name, book_dir):
            base = {"chapter": chapter_dir.name, "notebook": c["notebook"], "id": c["id"],
                    "claim": c["claim"], "where": c["where"], "paper": c["paper"]}
            found = False
            runs = sorted(results.get((chapter_dir.name, c["notebook"]), []),
                          key=lambda d: SCALES.index(d["scale"]))
            for run in runs:
                judged = (run.get("claims") or {}).get(c["id"])
                if not isinstance(judged, dict):
                    continue
                found = True
                rows.append({**base, "scale": run["scale"], "ours": str(judged.get("ours", "")),
                             "verdict": judged.get("verdict", NOT_RUN),
                             "dataset_used": _datasets_text(run.get("dataset_used") or {}),
                             "git_commit": (run.get("provenance") or {}).get("git_commit", "unknown")})
            if not found:
                rows.append({**base, "scale": "", "ours": "", "verdict": NOT_RUN, "dataset_used": "",
                             "git_commit": ""})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _check_results_shape(data: Any) -> None:
    """A results file's ``claims`` must map ids to mappings, its ``provenance`` must be a mapping."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if not isinstance(data.get("claims", {}), dict) or not all(isinstance(v, dict) for v in data.get("claims", {}).values()):
        raise ValueError("'claims' must map claim ids to {ours, verdict} objects")
    if not isinstance(data.get("provenance", {}), dict):
        raise ValueError("'provenance' must be an object")
    data.setdefault("claims", {})
    data.setdefault("provenance", {})


def best_per_claim(df):
    """One row per claim: a judged verdict beats ``not run at this scale``, then paper > book > smoke."""
    if df.empty:
        return df.copy()
    rank = {"paper": 3, "book": 2, "smoke": 1}
    ranked = df.assign(_judged=(df["verdict"] != NOT_RUN).astype(int), _rank=df["scale"].map(rank).fillna(0),
                       _order=range(len(df)))
    first = ranked.groupby(["chapter", "id"], sort=False)["_order"].transform("min")
    ranked = ranked.assign(_first=first).sort_values(["_judged", "_rank"], ascending=False, kind="stable")
    best = ranked.drop_duplicates(["chapter", "id"], keep="first").sort_values("_first", kind="stable")
    return best.drop(columns=["_judged", "_rank", "_order", "_first"]).reset_index(drop=True)


def scoreboard(df):
    """Each claim at the best scale available (see :func:`best_per_claim`): the paper's value beside
    ours, the scale and the dataset used, coloured by verdict. The ``chapter`` column is dropped when
    ``df`` holds a single chapter (the scoreboard notebook shows one table per paper)."""
    best = best_per_claim(df)
    columns = {"chapter": "chapter", "id": "claim id", "claim": "claim", "where": "where",
               "paper": "paper", "ours": "ours", "scale": "scale", "verdict": "verdict",
               "dataset_used": "data"}
    if best["chapter"].nunique() <= 1:
        columns.pop("chapter")
    table = best.reindex(columns=list(columns)).copy()
    table["paper"] = table["paper"].map(paper_text)
    return style_verdicts(table.fillna("").rename(columns=columns))


def chapter_dirs(book_dir: Path | None = None) -> list[Path]:
    """The chapter folders ``<book_dir>/ch*`` in natural order (ch2 before ch10)."""
    book_dir = Path(book_dir) if book_dir is not None else book_root()

    def natural(p: Path):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]
    return sorted((p for p in book_dir.glob("ch*") if p.is_dir()), key=natural) if book_dir.is_dir() else []


def _datasets_text(used: dict) -> str:
    return ", ".join(req if req == got else f"{got} (for {req})" for req, got in used.items())
