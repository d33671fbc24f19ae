"""The scoreboard: every chapter's claims joined with every results file, the best verdict per claim, the table.

``collect`` reads ``book/<chapter>/claims.yml`` and the results files that :class:`helpers.results.Run` writes;
a results file of the wrong shape is skipped with a warning naming it, an unknown verdict is shown as not run.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

from . import claims as c
from .paths import dry_run, repo_root
from .plots.scoreboard import plot_forest
from .results import (NOT_RUN, SCALES, VERDICT_COLOURS as VERDICT_STYLE, VERDICTS, book_root, load_claims, paper_text,
                      resolve_scale, results_root, style_verdicts)

#: The columns of the table :func:`collect` returns (``parts`` and ``guards`` are the judgement's lists of dicts).
RESULT_COLUMNS = ["chapter", "notebook", "id", "claim", "where", "paper", "kind", "test", "scale", "ours", "verdict",
                  "seeds", "examples", "parts", "guards", "reason", "dataset_used", "git_commit"]
#: Empirical verdicts in the order the counts show them, then the arithmetic checks.
EMPIRICAL_ORDER = [c.REPRODUCED, c.PARTLY, c.INCONCLUSIVE, c.NOT_REPRODUCED, c.NOT_RUN]
ARITHMETIC_ORDER = [c.CHECKED, c.DOES_NOT_CHECK]
#: The heading of the section where every notebook judges its claims (the scoreboard links to it).
CLAIMS_ANCHOR = "claims"

__all__ = ["collect", "best_per_claim", "scoreboard", "verdict_counts", "claim_rows", "show_paper", "chapter_titles",
           "chapter_dirs", "runs_results_root", "EMPIRICAL_ORDER", "ARITHMETIC_ORDER", "CLAIMS_ANCHOR"]


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
    with a warning. Results of a dry run (``BOOK_DRY_RUN=1``) are read only by a dry run. Columns:
    :data:`RESULT_COLUMNS`.
    """

    import pandas as pd

    dirs = [Path(results_dir)] if results_dir is not None else [results_root(), runs_results_root()]
    book_dir = Path(book_dir) if book_dir is not None else book_root()
    newest: dict[tuple[str, str, str], dict] = {}
    for path in sorted(p for d in dirs if d.is_dir() for p in d.glob("*/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if bool(data.get("dry_run")) != dry_run():
                continue  # a dry run's numbers mean nothing: only a dry run's scoreboard reads them
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
        for claim in load_claims(chapter_dir.name, book_dir):
            base = {"chapter": chapter_dir.name, "notebook": claim["notebook"], "id": claim["id"],
                    "claim": claim["claim"], "where": claim["where"], "paper": claim["paper"],
                    "kind": claim.get("kind", "empirical"), "test": claim.get("test", "")}
            found = False
            runs = sorted(results.get((chapter_dir.name, claim["notebook"]), []),
                          key=lambda d: SCALES.index(d["scale"]))
            for run in runs:
                judged = (run.get("claims") or {}).get(claim["id"])
                if not isinstance(judged, dict):
                    continue
                found = True
                rows.append({**base, "scale": run["scale"], "ours": str(judged.get("ours", "")),
                             "verdict": judged.get("verdict", NOT_RUN), "seeds": judged.get("seeds", ""),
                             "examples": judged.get("examples", ""), "parts": list(judged.get("parts") or []),
                             "guards": list(judged.get("guards") or []), "reason": str(judged.get("reason", "")),
                             "dataset_used": _datasets_text(run.get("dataset_used") or {}),
                             "git_commit": (run.get("provenance") or {}).get("git_commit", "unknown")})
            if not found:
                rows.append({**base, "scale": "", "ours": "", "verdict": NOT_RUN, "seeds": "", "examples": "",
                             "parts": [], "guards": [], "reason": "no results file judges it yet",
                             "dataset_used": "", "git_commit": ""})
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


def verdict_counts(best, titles: dict[str, str] | None = None):
    """How many claims of each paper reached each verdict (each claim once, at its best scale): one row per
    chapter (named by ``titles``), the empirical verdicts (:data:`EMPIRICAL_ORDER`), then the arithmetic checks
    (:data:`ARITHMETIC_ORDER`), and a total row."""
    import pandas as pd

    columns = EMPIRICAL_ORDER + ARITHMETIC_ORDER
    if best.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([]))
    counts = pd.crosstab(best["chapter"], best["verdict"]).reindex(columns=columns, fill_value=0)
    counts = counts.reindex(list(dict.fromkeys(best["chapter"])))
    counts.loc["all papers"] = counts.sum()
    titles = titles or {}
    counts.index = pd.Index([titles.get(ch, ch).split(":")[0] for ch in counts.index])
    counts.columns.name = None
    return counts


def _interval_text(part: dict) -> str:
    fmt = str(part.get("fmt") or "{:.3g}")
    try:
        f = fmt.format
        return f"{f(part['estimate'])} [{f(part['low'])}, {f(part['high'])}]"
    except (KeyError, ValueError, TypeError):
        return ""


def _badge(verdict: str) -> str:
    from html import escape

    style = VERDICT_STYLE.get(verdict, VERDICT_STYLE[NOT_RUN])
    return (f'<span style="{style}; padding: 1px 6px; border-radius: 8px; white-space: nowrap; '
            f'font-size: 0.85em">{escape(verdict)}</span>')


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + " …"


def claim_rows(best, link_prefix: str = "") -> str:
    """One compact HTML row per claim: the claim's short name (a link to the ``## Claims`` section of the notebook
    that judges it, ``<link_prefix><chapter>/<notebook>.html#claims``), a verdict badge, the paper's value, ours (the
    first part's estimate and interval; an arithmetic check's detail), the scale and the seeds. The full claim,
    its test, every part and guard sit in a dropdown under the name."""
    from html import escape

    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                   ("claim", "verdict", "paper", "ours [95% interval]", "scale", "seeds"))
    rows = []
    for r in best.itertuples(index=False):
        parts = list(r.parts) if isinstance(r.parts, list) else []
        ours = (_interval_text(parts[0]) + (f" (+{len(parts) - 1} part{'s' * (len(parts) > 2)})" if len(parts) > 1
                                            else "")) if parts else _short(r.ours or r.reason, 60)
        details = [f"<b>Claim</b> ({escape(str(r.where))}): {escape(str(r.claim))}"]
        if r.test:
            details.append(f"<b>Test</b>: {escape(str(r.test))}")
        if paper_text(r.paper):
            details.append(f"<b>Paper</b>: {escape(paper_text(r.paper))}")
        for part in parts:
            side = ">" if part.get("side") == "above" else "<"
            fmt = str(part.get("fmt") or "{:.3g}")
            details.append(f"<b>Part</b>: {escape(str(part.get('name', '')))} {escape(_interval_text(part))}, needs "
                           f"{side} {escape(fmt.format(part.get('threshold', float('nan'))))}: "
                           f"{escape(str(part.get('verdict', '')))}")
        for guard in list(r.guards) if isinstance(r.guards, list) else []:
            details.append(f"<b>Guard</b>: {escape(str(guard.get('name', '')))} = {guard.get('value', float('nan')):.3g}"
                           f" ({'passed' if guard.get('passed') else 'failed'})")
        if r.reason:
            details.append(f"<b>Why</b>: {escape(str(r.reason))}")
        if r.ours:
            details.append(f"<b>Ours</b>: {escape(str(r.ours))}")
        if r.dataset_used:
            details.append(f"<b>Data</b>: {escape(str(r.dataset_used))}")
        name = escape(str(r.id).replace("_", " "))
        link = f"{link_prefix}{r.chapter}/{r.notebook}.html#{CLAIMS_ANCHOR}"
        cell = (f"<a href='{escape(link)}'>{name}</a><details><summary style='font-size:0.8em; color:#555'>"
                f"details</summary><div style='font-size:0.85em'>{'<br>'.join(details)}</div></details>")
        seeds = "" if r.seeds in ("", None) or (isinstance(r.seeds, float) and math.isnan(r.seeds)) else r.seeds
        td, small = "<td style='text-align:left'>", "<td style='text-align:left; font-size:0.85em'>"
        rows.append(f"<tr>{td}{cell}</td>{td}{_badge(str(r.verdict))}</td>"
                    f"{small}{escape(_short(paper_text(r.paper), 60) or '–')}</td>{small}{escape(ours)}</td>"
                    f"{td}{escape(str(r.scale or '–'))}</td>{td}{escape(str(seeds or '–'))}</td></tr>")
    return (f"<table style='table-layout:auto; width:100%; border-collapse:collapse'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def show_paper(best, chapter: str, title: str = "") -> None:
    """The scoreboard's section for one chapter: its claims as compact rows (:func:`claim_rows`), then the forest
    plot of their statistics against their thresholds (:func:`helpers.plots.scoreboard.plot_forest`)."""
    from IPython.display import HTML, display

    rows = best[best["chapter"] == chapter]
    if rows.empty:
        display(HTML(f"<p><i>{chapter}: no claims.yml yet.</i></p>"))
        return
    display(HTML(claim_rows(rows)))
    fig = plot_forest(rows, title=f"{title.split(':')[0] or chapter}: each part's estimate and 95% interval; dashed:"
                                  " the threshold, shaded: the claim's side")
    if fig is not None:
        import matplotlib.pyplot as plt

        plt.show()


def chapter_dirs(book_dir: Path | None = None) -> list[Path]:
    """The chapter folders ``<book_dir>/ch*`` in natural order (ch2 before ch10)."""
    book_dir = Path(book_dir) if book_dir is not None else book_root()

    def natural(p: Path):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]
    return sorted((p for p in book_dir.glob("ch*") if p.is_dir()), key=natural) if book_dir.is_dir() else []


def _datasets_text(used: dict) -> str:
    return ", ".join(req if req == got else f"{got} (for {req})" for req, got in used.items())
