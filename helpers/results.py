"""Run records, glue and claim verdicts: every headline number is recorded once, here.

A chapter notebook opens a :class:`Run` (scale, configuration, seed), records its numbers with
:meth:`Run.record` (stored, and glued for the text as ``{glue:text}`<notebook>_<key>```), judges the
paper's claims from ``book/<chapter>/claims.yml`` with :meth:`Run.judge` (verdicts from :mod:`helpers.claims`), and
writes ``results/<chapter>/<notebook>.<scale>.json`` with its provenance (:meth:`Run.save`).
:func:`collect` and :func:`scoreboard` read all of it back for ``book/scoreboard.ipynb``.

In a chapter notebook::

    # parameters cell (literals only)
    SCALE = None; SEED = 0; DATASET = "mnist"; EPOCHS = None
    # setup cell (hide-input)
    run = Run("ch1_lighter_robust", "capacity", SCALE, TABLE, seed=SEED,
              overrides={"epochs": EPOCHS}, params=dict(SCALE=SCALE, SEED=SEED, DATASET=DATASET, EPOCHS=EPOCHS))
    run.show_config(); data = load_dataset(DATASET, "train"); run.use_dataset(data); run.banner()
    # results: acc = run.record("clean_acc", acc, "{:.1%}")  ->  text: {glue:text}`capacity_clean_acc`
    # claims cell
    part = claims.Part("scale 5 minus scale 0", claims.bootstrap(claims.difference, correct[5], correct[0]), 0.0)
    run.judge("clean_grows_with_capacity", claims.judge([part], guards=[claims.Guard("clean, scale 0", acc0, at_least=0.2)]))
    run.save(); run.claims_table()

Environment: ``BOOK_SCALE`` (default scale), ``BOOK_RESULTS`` (where results go; default
``<repo>/results``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import re
import subprocess
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

import helpers
from helpers import checks, claims as claims_
from helpers.data import DATASETS, DatasetSubstitutedWarning, display_name, load_dataset
from helpers.io import atomic_write_json
from helpers.paths import ShownPath, dry_run, repo_root
from helpers.progress import interactive

__all__ = [
    "SCALES", "DRY", "VERDICTS", "COMMON_RULES", "start", "chapter_scales", "merge_scales", "repo_root", "book_root",
    "results_root", "resolve_scale", "load_claims", "Run", "style_verdicts", "paper_text", "git_commit",
]

SCALES = ("smoke", "book", "paper")
#: The optional row of a scale table that caps the paper row's loops in a dry run (``BOOK_DRY_RUN=1``): a subset of
#: the paper row's keys (epochs, steps, sample counts, attack iterations), never its architectures, widths or tasks.
DRY = "dry"
VERDICTS = claims_.VERDICTS
NOT_RUN = claims_.NOT_RUN

CLAIM_KEYS = ("id", "notebook", "claim", "where", "paper")
#: Keys every claim will carry once every notebook judges with :mod:`helpers.claims`: its kind, its test in words
#: (what is compared, the threshold and why) and, for an empirical claim, its guard in words.
JUDGING_KEYS = ("kind", "test", "guard")
SCALE_NOTES = {
    "smoke": "seconds; proves only that the code runs, the numbers mean nothing",
    "book": "a laptop CPU, minutes; the rendered book",
    "paper": "the paper's settings, meant for a GPU",
}
VERDICT_COLOURS = {
    "reproduced": "background-color: #d1e7dd; color: #0f5132",
    "partly": "background-color: #fff3cd; color: #664d03",
    "inconclusive": "background-color: #cff4fc; color: #055160",
    "not reproduced": "background-color: #f8d7da; color: #842029",
    NOT_RUN: "background-color: #e2e3e5; color: #41464b",
    "checked": "background-color: #e7e3f4; color: #3d2a73",
    "does not check": "background-color: #f8d7da; color: #842029",
}
#: Rules for the parameters that many notebooks share; a notebook adds its own with ``start(..., rules=...)``.
COMMON_RULES: dict[str, checks.Rule] = {
    "SEED": checks.Integer(low=0),
    "DATASET": checks.Choice(DATASETS),
    "EPOCHS": checks.Integer(low=1),
    "TRAIN_N": checks.Integer(low=1, optional=True),
    "TEST_N": checks.Integer(low=1, optional=True),
    "BATCH_SIZE": checks.Integer(low=1),
    "LR": checks.Number(low=0, low_open=True),
    "WEIGHT_DECAY": checks.Number(low=0),
    "SEEDS": checks.Integer(low=1),
    "STEPS": checks.Integer(low=1),
}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


# --------------------------------------------------------------------------------------------
# Locations, scale, verdicts, claims
# --------------------------------------------------------------------------------------------

def book_root() -> Path:
    """The book's source folder, ``<repo>/book`` (its ``ch*/claims.yml`` list the papers' claims)."""
    return repo_root() / "book"


def results_root() -> Path:
    """Where results files go: ``$BOOK_RESULTS`` when set, else ``<repo>/results``."""
    env = os.environ.get("BOOK_RESULTS")
    return Path(env).expanduser() if env else repo_root() / "results"


def resolve_scale(scale: str | None) -> str:
    """The scale a notebook runs at: an explicit (papermill-injected) ``scale`` wins over
    ``$BOOK_SCALE``, which wins over ``"book"``. Anything not in :data:`SCALES` is a ``ValueError``."""
    if scale is None:
        scale = os.environ.get("BOOK_SCALE") or "book"
    if not isinstance(scale, str) or scale.strip().lower() not in SCALES:
        raise ValueError(f"SCALE must be one of {', '.join(SCALES)}; got {scale!r}")
    return scale.strip().lower()


def load_claims(chapter: str, book_dir: Path | None = None) -> list[dict]:
    """The paper's claims of one chapter: ``<book_dir>/<chapter>/claims.yml``, validated.

    The file is a YAML list of mappings with keys ``id, notebook, claim, where, paper`` (``paper`` may
    be null) and the judging keys ``kind`` (``empirical`` or ``arithmetic``), ``test`` (in words: what is compared,
    the threshold and why) and ``guard`` (what the models must reach before an empirical claim is judged; null
    for an arithmetic one); other keys are kept. Ids are unique within the file. ``FileNotFoundError`` when the file
    does not exist, ``ValueError`` naming the file and the entry when it is malformed.
    """
    _check_name("chapter", chapter)
    path = Path(book_dir or book_root()) / chapter / "claims.yml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no claims file for chapter {chapter!r}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a YAML list of claims, got {type(data).__name__}")
    claims, seen = [], set()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {index} is not a mapping: {entry!r}")
        missing = [key for key in CLAIM_KEYS + JUDGING_KEYS if key not in entry]
        if missing:
            raise ValueError(f"{path}: entry {index} ({entry.get('id', '?')!r}) lacks {', '.join(missing)};"
                             f" every claim needs {', '.join(CLAIM_KEYS + JUDGING_KEYS)} (paper and guard may be"
                             f" null)")
        for key in ("id", "notebook", "claim", "where"):
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise ValueError(f"{path}: entry {index} ({entry.get('id')!r}): {key} must be a non-empty"
                                 f" string, got {entry[key]!r}")
        if entry["kind"] not in claims_.KINDS:
            raise ValueError(f"{path}: entry {index} ({entry['id']!r}): kind must be one of "
                             f"{', '.join(claims_.KINDS)}, got {entry['kind']!r}")
        if not isinstance(entry["test"], str) or not entry["test"].strip():
            raise ValueError(f"{path}: entry {index} ({entry['id']!r}): test must say in words what is compared, "
                             f"the threshold and why; got {entry['test']!r}")
        if entry["kind"] == "empirical" and (not isinstance(entry["guard"], str) or not entry["guard"].strip()):
            raise ValueError(f"{path}: entry {index} ({entry['id']!r}): an empirical claim needs a guard (what the "
                             f"models must reach before it is judged); got {entry['guard']!r}")
        if entry["id"] in seen:
            raise ValueError(f"{path}: entry {index}: duplicate id {entry['id']!r}")
        seen.add(entry["id"])
        claims.append(dict(entry))
    return claims


def chapter_scales(chapter: str, book_dir: Path | None = None) -> dict[str, dict]:
    """The scale rows that several notebooks of a chapter share: ``<book_dir>/<chapter>/scales.yml`` (a mapping
    of ``smoke, book, paper`` to settings), or ``{}`` when the chapter has none."""
    path = Path(book_dir or book_root()) / chapter / "scales.yml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    _check_table(data, str(path))
    return data


def merge_scales(own: dict[str, dict], shared: dict[str, dict]) -> dict[str, dict]:
    """The notebook's own ``SCALES`` rows over the chapter's shared rows (a key in both: the notebook's wins); the
    optional ``dry`` rows merge the same way."""
    _check_table(own, "SCALES")
    merged = {scale: {**shared.get(scale, {}), **own[scale]} for scale in SCALES}
    if DRY in own or DRY in shared:
        merged[DRY] = {**shared.get(DRY, {}), **own.get(DRY, {})}
        _check_table(merged, "SCALES merged with the chapter's scales.yml")
    return merged


def _check_table(table: Any, what: str) -> None:
    if not isinstance(table, dict) or not set(SCALES) <= set(table) <= {*SCALES, DRY}:
        got = sorted(table) if isinstance(table, dict) else type(table).__name__
        raise ValueError(f"{what} must have exactly the keys {', '.join(SCALES)} (and optionally {DRY!r}); got {got}")
    for name, row in table.items():
        if not isinstance(row, dict):
            raise ValueError(f"{what}[{name!r}] must be a dict of settings, got {type(row).__name__}")
    extra = set(table.get(DRY, {})) - set(table["paper"])
    if extra:
        raise ValueError(f"{what}[{DRY!r}] caps settings of the paper row; {', '.join(sorted(extra))} "
                         f"{'is' if len(extra) == 1 else 'are'} not among them ({', '.join(sorted(table['paper']))})")
    keys = {name: set(row) for name, row in table.items() if name != DRY}
    if len({frozenset(k) for k in keys.values()}) > 1:
        raise ValueError(f"every row of {what} must have the same keys; got "
                         + "; ".join(f"{name}: {', '.join(sorted(k))}" for name, k in keys.items()))


# --------------------------------------------------------------------------------------------
# A run
# --------------------------------------------------------------------------------------------

class Run:
    """One execution of a chapter notebook at one scale: configuration, values, claims, provenance.

    ``table`` maps each of ``smoke, book, paper`` to a row of settings (the same keys in every row);
    ``config`` is the chosen row updated with every ``overrides`` value that is not ``None`` (a
    parameters cell sets ``EPOCHS = None`` to mean "take it from the table"). ``params`` are the
    notebook's raw parameters, kept for provenance. ``book_dir`` (default ``<repo>/book``) is where
    ``<chapter>/claims.yml`` is read from.

    Values recorded with :meth:`record` are glued as ``<notebook>_<key>`` (notebook names are unique
    across the book), so the text reads ``{glue:text}`capacity_clean_acc```.

    A dry run (``dry_run=True``, which :func:`start` sets from ``$BOOK_DRY_RUN``) runs the ``paper`` row with the
    table's ``dry`` caps over it: the paper's architectures, shapes and settings, every loop cut short. Its empirical
    verdicts are always *not run at this scale (dry run)* and its results file is ``<notebook>.paper.dry-run.json``,
    which the scoreboard ignores.
    """

    def __init__(self, chapter: str, notebook: str, scale: str | None, table: dict[str, dict],
                 seed: int = 0, overrides: dict | None = None, params: dict | None = None,
                 book_dir: Path | None = None, dry_run: bool = False) -> None:
        _check_name("chapter", chapter)
        _check_name("notebook", notebook)
        self.chapter, self.notebook = chapter, notebook
        self.scale = resolve_scale(scale)
        _check_table(table, "table")
        self.dry_run = bool(dry_run)
        if self.dry_run and self.scale != "paper":
            raise ValueError(f"a dry run runs the paper row: SCALE must be 'paper' (or None), got {self.scale!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self.config: dict = dict(table[self.scale])
        self.overridden: list[str] = []
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in self.config:
                raise ValueError(f"override {key!r} is not a setting of this notebook; allowed: "
                                 f"{', '.join(sorted(self.config))}")
            self.config[key] = value
            self.overridden.append(key)
        #: the settings a dry run capped: {key: (paper value, dry-run value)}
        self.capped: dict[str, tuple[Any, Any]] = {}
        if self.dry_run:
            for key, value in table.get(DRY, {}).items():
                self.capped[key] = (self.config[key], value)
                self.config[key] = value
        self.params: dict = dict(params or {})
        self.book_dir = Path(book_dir) if book_dir is not None else None
        self.values: dict[str, Any] = {}
        self.dataset_used: dict[str, str] = {}
        self.dataset_reasons: dict[str, str] = {}
        self.claims: dict[str, dict[str, str]] = {}
        self.device = helpers.device()
        if self.scale == "paper" and not self.dry_run and self.device.type == "cpu":
            warnings.warn(f"{chapter}/{notebook}: a paper-scale run is starting on the CPU "
                          f"({'BOOK_DEVICE=' + os.environ['BOOK_DEVICE'] if os.environ.get('BOOK_DEVICE') else 'no usable GPU'}"
                          f"); the paper rows are meant for a GPU and take GPU-hours there "
                          f"(benchmarks/paper_cost.md). A dry run (BOOK_DRY_RUN=1) checks the row on the CPU.",
                          helpers.DeviceWarning, stacklevel=3)
        self.generator: Any = None  # set by :func:`start`, which also seeds
        self.described: list[str] = []
        self._shown: dict[str, tuple[Any, Any]] = {}  # glue name -> (raw value when unformatted, glued value)
        self._prose: list[str] | None = None
        self.started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    def __repr__(self) -> str:
        return f"Run({self.chapter}/{self.notebook}, scale={self.scale}, seed={self.seed})"

    def datasets(self, name: str, train_n: int | None = None, test_n: int | None = None,
                 splits: Sequence[str] = ("train", "test")) -> tuple:
        """Load ``splits`` of dataset ``name`` (a substitution is noted for the banner and the results), keep
        the first ``train_n`` / ``test_n`` of a shuffle seeded with the run's seed, then :meth:`show`.
        Returns one ``ImageData`` per split."""
        out = []
        for split in splits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the banner states any substitution
                data = load_dataset(name, split)
            n = train_n if split == "train" else test_n
            if n:
                data = data.subset(n, seed=self.seed)
            self.use_dataset(data)
            self.described.append(data.describe())
            out.append(data)
        self.show()
        return tuple(out)

    def show(self, *lines: str) -> None:
        """Display the banner (scale, seed, device, data used, substitutions) and the configuration, then the
        datasets' descriptions and any further ``lines``."""
        self.banner()
        self.show_config()
        for text in [*self.described, *lines]:
            print(text)

    # -- display ------------------------------------------------------------------------------
    def show_config(self) -> None:
        """Display the resolved configuration as a two-column table (scale, seed, device first)."""
        import pandas as pd

        rows = [("scale", self.scale + (" (dry run)" if self.dry_run else "")), ("seed", self.seed),
                ("device", self.device)]
        rows += [(key + (" (override)" if key in self.overridden else "")
                  + (f" (dry run; paper: {self.capped[key][0]})" if key in self.capped else ""), value)
                 for key, value in self.config.items()]
        frame = pd.DataFrame([(k, str(v)) for k, v in rows], columns=["parameter", "value"])
        _display(frame, frame.to_string(index=False))

    def use_dataset(self, data: Any) -> None:
        """Note the dataset a notebook actually uses (``helpers.data.ImageData`` or any object with
        ``name``, ``requested`` and ``substituted``, or just a name such as ``"generated shapes"``); it goes into
        the banner and the results file."""
        name = data if isinstance(data, str) else str(getattr(data, "name"))
        requested = name if isinstance(data, str) else str(getattr(data, "requested", None) or name)
        self.dataset_used[requested] = name
        if requested != name and getattr(data, "reason", ""):
            self.dataset_reasons[requested] = str(data.reason)

    def substitutions(self) -> dict[str, str]:
        """``{requested: used}`` for every dataset that had to be substituted."""
        return {req: used for req, used in self.dataset_used.items() if req != used}

    def banner(self) -> None:
        """Display the scale this run uses, the datasets actually used, and a warning per substitution."""
        lines = [f"**Scale: `{self.scale}`** ({SCALE_NOTES[self.scale]}) · seed {self.seed} · device "
                 f"`{self.device}`"]
        if self.dry_run:
            lines.append(f"⚠️ **Dry run of the paper row** (`BOOK_DRY_RUN=1`): the paper's architectures, shapes and "
                         f"settings with every loop capped ({', '.join(self.capped) or 'nothing capped'}); it proves "
                         f"that the paper row runs, its numbers mean nothing and no claim is judged.")
        if self.dataset_used:
            lines.append("Data: " + ", ".join(display_name(u) for u in dict.fromkeys(self.dataset_used.values())))
        for requested, used in self.substitutions().items():
            lines.append(f"⚠️ **{display_name(requested)} is not available offline here: this run uses "
                         f"{display_name(used)}; numbers are not comparable to the paper's.**"
                         + (f" _(why: {self.dataset_reasons[requested]})_" if requested in self.dataset_reasons else ""))
        text = "\n\n".join(lines)
        try:
            from IPython import get_ipython
            from IPython.display import Markdown, display

            if get_ipython() is not None:
                display(Markdown(text))
                return
        except ImportError:
            pass
        print(text.replace("**", "").replace("`", ""))

    # -- values and claims --------------------------------------------------------------------
    def record(self, key: str, value: Any, fmt: str | None = None) -> Any:
        """Store a headline number and glue it for the text as ``<notebook>_<key>``.

        ``value`` is a float/int/str/bool/None or a list/dict of those (numpy and torch scalars and
        small arrays are converted). With ``fmt`` (``"{:.1%}"`` or just ``".1%"``) the glued text is formatted;
        without, the raw number is glued and the text can format it: ``{glue:text}`name:.1%```.
        Returns the stored (plain Python) value.
        """
        _check_name("key", key)
        try:
            plain = _plain(value, strict=True)
        except TypeError as err:
            raise TypeError(f"record({key!r}): {err}") from None
        self.values[key] = plain
        shown = (fmt.format(plain) if "{" in fmt else format(plain, fmt)) if fmt else plain
        try:
            from IPython import get_ipython
            from myst_nb import glue
        except ImportError:
            return plain
        if get_ipython() is not None:
            glue(self.glue_name(key), shown, display=False)
            self._shown[self.glue_name(key)] = (None if fmt else plain), shown
            if interactive():  # a reader in JupyterLab: the prose's {glue:text} roles stay placeholders there
                self._show_glued(self.glue_name(key))
        return plain

    def _show_glued(self, name: str) -> None:
        """Display the value glued as ``name`` and the notebook's sentences that it completes, with this run's
        numbers in place of their ``{glue:text}`` roles (the notebook is the file ``$JPY_SESSION_NAME`` names)."""
        from IPython.display import Markdown, display

        if self._prose is None:
            self._prose = notebook_prose(os.environ.get("JPY_SESSION_NAME", ""))
        values = {n: (shown if raw is None else raw) for n, (raw, shown) in self._shown.items()}
        lines = [f"`{name}` = **{self._shown[name][1]}**"]
        lines += [f"> {sentence}" for sentence in completed_sentences(self._prose, name, values)]
        display(Markdown("\n\n".join(lines)))

    def glue_name(self, key: str) -> str:
        """The glue name of a recorded value: ``<notebook>_<key>``."""
        return f"{self.notebook}_{key}"

    def _claims(self) -> list[dict]:
        return [c for c in load_claims(self.chapter, self.book_dir) if c["notebook"] == self.notebook]

    def judge(self, claim_id: str, judgement: claims_.Judgement, ours: str | None = None) -> claims_.Judgement:
        """Judge one claim of ``claims.yml`` that belongs to this notebook with a :class:`helpers.claims.Judgement`
        (from :func:`helpers.claims.judge`, :func:`~helpers.claims.not_run` or :func:`~helpers.claims.check`, whose
        kind must be the claim's ``kind`` in claims.yml). ``ours`` is the short text shown beside the paper's
        value (default: the judgement's summary). The results file keeps the statistic, its interval, the
        threshold, the guards and the replication. Returns ``judgement``."""
        entry = {c["id"]: c for c in self._claims()}.get(claim_id)
        if entry is None:
            raise ValueError(f"claim {claim_id!r} is not a claim of {self.chapter}/{self.notebook} in claims.yml; "
                             f"known ids: {', '.join(c['id'] for c in self._claims()) or '(none)'}")
        if not isinstance(judgement, claims_.Judgement):
            raise TypeError(f"judge({claim_id!r}): expected a helpers.claims.Judgement, got "
                            f"{type(judgement).__name__}")
        kind = entry["kind"]
        if judgement.kind != kind:
            raise ValueError(f"claim {claim_id!r} is {kind} in claims.yml but was judged as {judgement.kind}: "
                             + ("use claims.check" if kind == "arithmetic" else "use claims.judge or claims.not_run"))
        if (self.scale == "smoke" or self.dry_run) and judgement.kind == "empirical" and judgement.verdict != NOT_RUN:
            # smoke runs and dry runs prove the code runs; their numbers mean nothing, so they judge nothing
            why = "dry run (paper row, loops capped)" if self.dry_run else "smoke scale"
            judgement = dataclasses.replace(judgement, verdict=NOT_RUN, reason=f"{why}: would be "
                                            f"{judgement.verdict!r}, but these numbers mean nothing")
        self.claims[claim_id] = {"ours": str(ours) if ours else judgement.summary(), **judgement.to_dict()}
        return judgement

    def claims_table(self):
        """This notebook's claims beside what it measured: ``id, claim, where, paper, ours, verdict``
        (claims not judged yet show ``not run at this scale``). Colour it with :func:`style_verdicts`."""
        import pandas as pd

        rows = []
        for c in self._claims():
            judged = self.claims.get(c["id"], {})
            rows.append({"id": c["id"], "claim": c["claim"], "where": c["where"],
                         "paper": paper_text(c["paper"]), "ours": judged.get("ours", ""),
                         "verdict": judged.get("verdict", NOT_RUN), "seeds": judged.get("seeds", "")})
        return pd.DataFrame(rows, columns=["id", "claim", "where", "paper", "ours", "verdict", "seeds"])

    # -- saving -------------------------------------------------------------------------------
    def provenance(self) -> dict:
        """Where these numbers come from: code version, commit, libraries, machine, wall time."""
        import torch

        return {
            "helpers_version": helpers.__version__,
            "git_commit": git_commit(repo_root()),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "device": str(self.device),
            "platform": platform.platform(),
            "started_utc": self.started_utc,
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "wall_time_s": round(time.perf_counter() - self._t0, 3),
        }

    def path(self) -> Path:
        """``results_root()/<chapter>/<notebook>.<scale>.json`` (a dry run: ``<notebook>.paper.dry-run.json``)."""
        # a ShownPath: printed (as some notebooks do) it reads <repo>/results/..., never this machine's path
        return ShownPath(results_root() / self.chapter / f"{self.notebook}.{self.scale}{'.dry-run' if self.dry_run else ''}.json")

    def save(self) -> Path:
        """Write the results file atomically and return its path (safe to call again; it overwrites), a
        :class:`helpers.paths.ShownPath`: it prints relative to the repository (``<repo>/results/...``)."""
        record = {
            "chapter": self.chapter, "notebook": self.notebook, "scale": self.scale, "seed": self.seed,
            "dry_run": self.dry_run, "capped": {k: list(_plain(v)) for k, v in self.capped.items()},
            "config": _plain(self.config), "params": _plain(self.params),
            "dataset_used": dict(self.dataset_used), "dataset_reasons": dict(self.dataset_reasons),
            "values": self.values,
            "claims": {k: dict(v) for k, v in self.claims.items()}, "provenance": self.provenance(),
        }
        return ShownPath(atomic_write_json(self.path(), record))  # prints as <repo>/results/...: no machine path


def start(chapter: str, notebook: str, scales: dict[str, dict], params: dict[str, Any], *,
          rules: dict[str, checks.Rule] | None = None, threads: int | None = 1,
          book_dir: Path | None = None) -> Run:
    """Open the :class:`Run` of a chapter notebook from its parameters, named once, after checking every one.

    ``params`` holds the notebook's parameters (``dict(SCALE=SCALE, SEED=SEED, EPOCHS=EPOCHS, ...)``), or is
    the notebook's ``globals()``: then every name that has a rule or is a key of ``scales`` is a parameter
    (imported constants are not; papermill itself warns about a ``-p`` name the notebook does not have).
    ``SCALE`` picks a row (papermill's value > ``$BOOK_SCALE`` > ``book``; a dry run, ``$BOOK_DRY_RUN=1``: ``paper``
    with the table's ``dry`` caps over it) of ``scales``, the notebook's own
    ``SCALES`` table, merged over the chapter's shared rows in ``book/<chapter>/scales.yml`` when that file
    exists. A parameter that names a key of the row and is not ``None`` overrides it. Every parameter and every
    configuration value is checked against its rule (``rules`` over :data:`COMMON_RULES`), before any work: a
    bad value raises one ``ValueError`` naming the notebook parameter, the value and what is allowed. Then the
    run seeds everything (``run.generator``), and on the CPU limits torch to ``threads`` threads (``None``:
    leave it). Load the data with :meth:`Run.datasets`, or display the banner with :meth:`Run.show`.
    """
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of the notebook's parameters, got {type(params).__name__}")
    every_rule = {**COMMON_RULES, **(rules or {})}
    if "__builtins__" in params:  # the notebook's globals(): its parameters are the names that have a rule
        known = {"SCALE", *every_rule, *(key for row in scales.values() for key in row)} - {"SCALES", "RULES"}
        params = {k: v for k, v in params.items() if k in known}

    def checked(name: str, value: Any, where: str | None = None) -> Any:
        rule = every_rule.get(name)
        if rule is None:
            raise ValueError(f"{notebook}: no rule for {'setting' if where else 'parameter'} {name!r}; declare"
                             f" one with results.start(..., rules=dict({name}=checks.Integer(...)))")
        try:
            return rule(name, value)
        except ValueError as err:
            origin = f"{where}[{name!r}] of the notebook" if where else f"notebook parameter of {notebook}.ipynb"
            raise ValueError(f"{err} ({origin})") from None

    dry = dry_run()
    scale = resolve_scale(params.get("SCALE") or ("paper" if dry else None))
    if dry and scale != "paper":
        raise ValueError(f"SCALE={scale!r} with BOOK_DRY_RUN=1: a dry run runs the paper row (notebook parameter of "
                         f"{notebook}.ipynb; allowed: 'paper' or None)")
    table = merge_scales(scales, chapter_scales(chapter, book_dir))
    seed = checked("SEED", params.get("SEED", 0))
    overrides = {}
    for key, value in params.items():
        if key in ("SCALE", "SEED") or (value is None and key in table[scale]):
            continue  # None: "take it from the SCALE table"
        checked(key, value)  # the value is kept as given: cache digests of existing checkpoints stay valid
        if key in table[scale]:
            overrides[key] = value
    for key, value in table[scale].items():
        if key not in overrides:
            checked(key, value, where=f"SCALES[{scale!r}]")
    for key, value in table.get(DRY, {}).items():
        checked(key, value, where=f"SCALES[{DRY!r}]")
    run = Run(chapter, notebook, scale, table, seed=seed, overrides=overrides, params=params, book_dir=book_dir,
              dry_run=dry)
    # The run's banner states every substitution (Run.use_dataset) and the results file records it: the warning's
    # stderr copy would only repeat it (and a stderr output is a warning of the book's build).
    warnings.filterwarnings("ignore", category=DatasetSubstitutedWarning)
    run.generator = helpers.seed_everything(seed)
    if threads is not None:
        helpers.limit_cpu_threads(run.device, threads)
    return run


#: A glue role in the prose: ``{glue:text}`name``` or ``{glue}`name```, with an optional ``:format`` spec.
GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([A-Za-z0-9_]+)(?::([^`]*))?`")


def notebook_prose(path: str | Path) -> list[str]:
    """The sentences of a notebook's Markdown cells (``[]`` when ``path`` is empty or no readable notebook;
    a relative path is looked for as given, then beside the kernel's working directory, where a notebook runs)."""
    if not str(path):
        return []
    candidates = [Path(path), Path.cwd() / Path(path).name]
    for candidate in candidates:
        try:
            cells = json.loads(candidate.read_text(encoding="utf-8"))["cells"]
            break
        except (OSError, ValueError, KeyError, TypeError):
            continue
    else:
        return []
    sentences = []
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            text = "".join(cell.get("source", ""))
            for paragraph in re.split(r"\n\s*\n", text):
                flat = " ".join(paragraph.split())
                sentences += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(*_])", flat) if s]
    return sentences


def completed_sentences(sentences: Sequence[str], name: str, values: dict[str, Any]) -> list[str]:
    """The sentences that use the glue ``name`` and whose every glue role has a value now, with each role written
    as its value (bold), formatted by the role's spec when it has one. Shown in JupyterLab, where MyST's glue roles
    are not rendered."""
    out = []
    for sentence in sentences:
        names = [m.group(1) for m in GLUE_ROLE.finditer(sentence)]
        if name not in names or not all(n in values for n in names):
            continue

        def value(match: re.Match) -> str:
            raw, spec = values[match.group(1)], match.group(2)
            try:
                return f"**{format(raw, spec) if spec else raw}**"
            except (TypeError, ValueError):
                return f"**{raw}**"

        out.append(GLUE_ROLE.sub(value, sentence))
    return out


def git_commit(root: Path) -> str:
    """``git rev-parse HEAD`` of ``root`` with ``+dirty`` when tracked files have changes (untracked logs and
    outputs do not count);
    ``"unknown"`` outside a git repository or without git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


# --------------------------------------------------------------------------------------------
# The scoreboard
# --------------------------------------------------------------------------------------------

def style_verdicts(df):
    """Colour the ``verdict`` column of a table by verdict (a pandas ``Styler``; the frame itself when
    styling is unavailable)."""
    try:
        styler = df.style
    except ImportError:  # Styler needs jinja2
        return df
    if "verdict" in df.columns:
        styler = styler.map(lambda v: VERDICT_COLOURS.get(v, ""), subset=["verdict"])
    styler = styler.set_properties(**{"text-align": "left", "vertical-align": "top"})
    # a claims table in a ~700 px column: long ids may wrap, what we measured gets the room
    for column, props in (("id", {"overflow-wrap": "anywhere", "min-width": "7em"}), ("ours", {"min-width": "16em"}),
                          ("claim", {"min-width": "10em"})):
        if column in df.columns:
            styler = styler.set_properties(subset=[column], **props)
    return styler.set_table_styles([{"selector": "", "props": "font-size: 0.85em"}]).hide(axis="index")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} must be a plain name (letters, digits, _ . -), got {name!r}")


def _display(obj: Any, fallback: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(obj)
            return
    except ImportError:
        pass
    print(fallback)




def paper_text(value: Any) -> str:
    """A paper value for a table: ``""`` for null, the value as text otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _plain(value: Any, strict: bool = False) -> Any:
    """JSON-ready plain Python: numpy/torch scalars and arrays become numbers and lists.
    ``strict``: other objects are a ``TypeError``; else they become their ``str``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v, strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, strict) for v in value]
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu()
        return _plain(value.item() if value.numel() == 1 and value.dim() == 0 else value.tolist(), strict)
    if type(value).__module__ == "numpy":
        return _plain(value.tolist(), strict)  # numpy scalar or array -> Python
    if isinstance(value, Path):
        return str(value)
    if strict:
        raise TypeError(f"cannot record a {type(value).__name__}; use a number, str, bool, or a "
                        "list/dict of those")
    return str(value)
