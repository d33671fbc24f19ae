"""The book's configuration as a reader meets it: launch URLs built from _config.yml the way sphinx-book-theme builds
them (header_buttons/launch.py) point at this repository and at notebooks that exist; Binder has a CPU environment;
the install files agree with each other; MathJax and the widget manager are served from the site."""
from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def notebook_pages() -> list[str]:
    """The toc's entries that are notebooks (docnames without suffix), e.g. ``book/ch1_lighter_robust/capacity``."""
    files = [entry["file"] for part in TOC["parts"] for entry in part["chapters"]]
    return [f for f in files if (ROOT / f"{f}.ipynb").is_file()]


def launch_urls(config: dict, pagename: str) -> dict[str, str]:
    """The Binder and Colab links of one page, as sphinx-book-theme 1.x writes them from jupyter-book's mapping
    (repository.url -> repository_url, path_to_book -> path_to_docs, branch -> repository_branch)."""
    repo, buttons = config["repository"], config["launch_buttons"]
    provider_url, org, name = re.fullmatch(r"(https://github\.com)/([^/]+)/([^/]+?)/?", repo["url"]).groups()
    branch = repo.get("branch", "main")
    book_relpath = str(repo.get("path_to_book", "")).strip("/")
    if book_relpath != "":
        book_relpath += "/"
    path_rel_repo = f"{book_relpath}{pagename}.ipynb"
    ui_pre = {"classic": "tree", "jupyterlab": "lab/tree"}[buttons.get("notebook_interface", "classic")]
    binder = buttons["binderhub_url"].strip("/")
    colab = buttons["colab_url"].strip("/")
    return {"binder": f"{binder}/v2/gh/{org}/{name}/{branch}?urlpath={ui_pre}/{path_rel_repo}",
            "colab": f"{colab}/github/{org}/{name}/blob/{branch}/{path_rel_repo}",
            "path": path_rel_repo}


def test_launch_urls_point_at_existing_notebooks_of_this_repository():
    pages = notebook_pages()
    assert len(pages) >= 15
    repo_url = PYPROJECT["project"]["urls"]["Repository"].rstrip("/")
    assert CONFIG["repository"]["url"].rstrip("/") == repo_url
    org, name = repo_url.split("/")[-2:]
    for page in pages:
        urls = launch_urls(CONFIG, page)
        for kind in ("binder", "colab"):
            assert "/./" not in urls[kind] and "//" not in urls[kind].split("://", 1)[1], urls[kind]
        assert (ROOT / urls["path"]).is_file(), urls["path"]
        assert urls["colab"] == f"https://colab.research.google.com/github/{org}/{name}/blob/main/{page}.ipynb"
        assert urls["binder"] == f"https://mybinder.org/v2/gh/{org}/{name}/main?urlpath=lab/tree/{page}.ipynb"


def test_the_branch_is_the_one_this_clone_builds_from():
    branch = subprocess.run(["git", "-C", str(ROOT), "symbolic-ref", "--short", "-q", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    if branch and branch != CONFIG["repository"]["branch"]:
        pytest.skip(f"this clone is on branch {branch!r}; the book's launch links use {CONFIG['repository']['branch']!r}")
    assert CONFIG["repository"]["branch"] == "main"


def test_binder_installs_cpu_torch_at_the_makefile_pins_and_the_helpers():
    requirements = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8")
    pins = re.search(r"^TORCH := (.+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M).group(1).split()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    for pin in pins:
        assert f"{pin}+cpu" in requirements.split(), pin
    assert "jupyterlab-myst" in requirements
    post_build = (ROOT / "binder" / "postBuild").read_text(encoding="utf-8")
    assert "pip install" in post_build and "-e ." in post_build
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"


def test_environment_yml_matches_the_makefile():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = re.search(r"^TORCH := (.+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M).group(1).split()
    for pin in pins:
        assert pin in pip
    assert "-e .[dev,cluster]" in pip
    assert "python=3.11" in env["dependencies"]


def test_cpu_index_reaches_pip_in_the_makefile():
    out = subprocess.run(["make", "-n", "-B", "env", "TORCH_INDEX=cpu"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if "pip install" in l and "torch==" in l)
    assert "--index-url https://download.pytorch.org/whl/cpu" in line
    default = subprocess.run(["make", "-n", "-B", "env"], cwd=ROOT, capture_output=True, text=True).stdout
    line = next(l for l in default.splitlines() if "pip install" in l and "torch==" in l)
    assert "index-url" not in line  # the default stays PyPI


def test_licence_and_offline_assets_are_configured():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    config = CONFIG["sphinx"]["config"]
    assert not config["mathjax_path"].startswith("http")
    assert all(not key.startswith("http") for key in config["nb_ipywidgets_js"])
    assert "-W --keep-going" in (ROOT / "Makefile").read_text(encoding="utf-8")
