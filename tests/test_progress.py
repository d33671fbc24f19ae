"""helpers.progress: widgets only for a reader in a notebook front end; executed headlessly, plain lines on stdout
with a final summary, quick transient bars silent, and a line at least every TEXT_INTERVAL seconds."""
from __future__ import annotations

import io
import time

import pytest

from helpers import progress


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(progress, "TEXT_INTERVAL", 0.05)
    monkeypatch.delenv(progress.HEADLESS_ENV, raising=False)
    for name in ("JPY_SESSION_NAME", "VSCODE_PID"):
        monkeypatch.delenv(name, raising=False)


def test_headless_outside_a_kernel_whatever_the_front_end_variables(fast, monkeypatch):
    assert not progress.interactive()
    monkeypatch.setenv("JPY_SESSION_NAME", "book/x.ipynb")  # no IPython kernel here: still text
    assert not progress.interactive()
    monkeypatch.setenv(progress.HEADLESS_ENV, "1")
    assert not progress.interactive()
    assert isinstance(progress.tqdm(range(2)), progress.TextBar)


def test_a_bad_switch_is_named(fast, monkeypatch):
    monkeypatch.setenv(progress.HEADLESS_ENV, "maybe")
    with pytest.raises(ValueError, match="BOOK_HEADLESS"):
        progress.interactive()


def test_text_lines_with_final_summary(fast):
    out = io.StringIO()
    for _ in progress.tqdm(range(8), desc="train", file=out):
        time.sleep(0.02)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) >= 2, lines  # periodic lines, then the summary
    assert lines[-1].startswith("train: 100%") and "8/8" in lines[-1]
    assert not any("0/8" in line for line in lines)  # no opening 0% line


def test_quick_bars(fast):
    out = io.StringIO()
    for _ in progress.tqdm(range(3), desc="inner", leave=False, file=out):
        pass
    assert out.getvalue() == ""  # a quick transient bar says nothing
    with progress.tqdm(total=2, desc="units", file=out) as bar:
        bar.update(2)
    assert out.getvalue().strip().startswith("units: 100%")  # a kept bar always ends with its summary
    out = io.StringIO()
    for _ in progress.tqdm(range(5), desc="slow inner", leave=False, file=out):
        time.sleep(0.03)
    assert out.getvalue().splitlines()[-1].startswith("slow inner: 100%")  # it printed, so it ends summarised


def test_disabled_bar_prints_nothing(fast):
    out = io.StringIO()
    for _ in progress.tqdm(range(3), disable=True, file=out):
        pass
    assert out.getvalue() == ""


def test_defaults_to_stdout(fast, capsys):
    for _ in progress.tqdm(range(2), desc="x"):
        pass
    captured = capsys.readouterr()
    assert captured.out.startswith("x: 100%") and captured.err == ""
