"""The built book (``_build/html``, after ``make book``; skipped when it is not there) reads offline and shows no path
of the machine that built it: no absolute path of the repository or the data root on any page, no script or
stylesheet from a CDN, MathJax and the widget manager from the site itself, and no tqdm widget embedded."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.paths import data_root, repo_root

HTML = repo_root() / "_build" / "html"
pytestmark = pytest.mark.skipif(not (HTML / "index.html").is_file(), reason="no built book (make book)")


def pages() -> list[Path]:
    return sorted(p for p in HTML.rglob("*.html") if "_static" not in p.parts)


def test_no_page_shows_a_machine_path():
    roots = {str(repo_root()), str(data_root()), str(Path.home())} - {"/", "/root"}
    leaks = [f"{p.relative_to(HTML)}: {root}" for p in pages() for root in roots
             if root in p.read_text(encoding="utf-8")]
    assert not leaks, leaks[:10]


def test_scripts_and_styles_come_from_the_site():
    remote = re.compile(r"<(?:script|link)[^>]+(?:src|href)=\"(https?://[^\"]+)\"")
    found = {url for p in pages() for url in remote.findall(p.read_text(encoding="utf-8"))
             if not url.startswith(("https://mybinder.org", "https://colab.research.google.com"))}
    assert not found, sorted(found)
    assert (HTML / "_static" / "vendor" / "mathjax" / "es5" / "tex-mml-chtml.js").is_file()
    assert (HTML / "_static" / "vendor" / "html-manager" / "dist" / "embed-amd.js").is_file()


def test_no_progress_bar_widgets_are_embedded():
    bars = [p.relative_to(HTML) for p in pages() if "FloatProgressModel" in p.read_text(encoding="utf-8")]
    assert not bars, bars
