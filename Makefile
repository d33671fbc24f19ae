# Lean & Robust: `make book` builds the whole book, `make test` checks it. Both set everything up.
SHELL := /bin/bash
# The interpreter that creates .venv (any Python >= 3.10; the book is built and tested with 3.11): make PYTHON=python3.12
PYTHON ?= python3.11
# The environment to install into: .venv by default; a conda user passes VENV="$$CONDA_PREFIX" (README, "Install").
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.14.1 torchvision==0.29.1
# Where torch and torchvision come from. Empty (the default): PyPI, whose Linux wheels are the CUDA build (~5 GB of
# nvidia/ and triton/ libraries; they also run on a CPU). TORCH_INDEX=cpu: PyTorch's CPU-only wheel index
# (https://download.pytorch.org/whl/cpu, ~1 GB less than torch alone plus no CUDA libraries); any other word is one of
# that site's indexes (cu126, ...), a URL is used as it is. Each choice has its own stamp, so switching reinstalls torch.
TORCH_INDEX ?=
TORCH_INDEX_URL := $(if $(TORCH_INDEX),$(if $(findstring ://,$(TORCH_INDEX)),$(TORCH_INDEX),https://download.pytorch.org/whl/$(TORCH_INDEX)))
STAMP := $(VENV)/.installed$(if $(TORCH_INDEX),-$(notdir $(TORCH_INDEX_URL)))
export BOOK_DATA ?= $(CURDIR)/data
# Everything make executes is headless: progress bars print text lines, not widgets (helpers/progress.py).
export BOOK_HEADLESS ?= 1
NB ?=
SCALE ?= book
EXECUTOR ?= local

.PHONY: book test paper-check run data env assets clean lint bench help
help:
	@echo "make book   - set up, provision data, execute every chapter at book scale, build the HTML"
	@echo "make test   - set up, unit tests, every notebook under nbval at smoke scale"
	@echo "make paper-check - every notebook's paper row as a dry run (paper settings, loops capped), on the CPU"
	@echo "make run NB=book/ch1_lighter_robust/capacity.ipynb SCALE=paper [EXECUTOR=ray]  - one notebook with papermill"
	@echo "make bench  - attack and training speed benchmarks"
	@echo "make env [TORCH_INDEX=cpu] [PYTHON=python3.12] - only the environment (TORCH_INDEX=cpu: CPU-only torch)"
	@echo "make clean  - remove build outputs, runs and results (keeps .venv and data)"

env: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# another index's torch is installed (another stamp is there): replace it, or pip keeps it as satisfied
	@if ls $(VENV)/.installed* 2>/dev/null | grep -qvx '$(STAMP)'; then $(BIN)/python -m pip uninstall -q -y torch torchvision; rm -f $(VENV)/.installed*; fi
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,cluster]'
	$(BIN)/python -m pip install -q --no-deps torchattacks==3.5.1
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

data: $(STAMP)
	$(BIN)/python -m helpers.data mnist fashion-mnist digits

# MathJax and the widget manager, served from the built site (npm registry, pinned and checked; see the script).
assets: $(STAMP)
	$(BIN)/python tools/offline_assets.py

# -W --keep-going: every page is built, then any Sphinx warning fails the build (after listing them all).
book: data assets
	BOOK_SCALE=book $(BIN)/jupyter-book build . --all --builder html -W --keep-going
	@echo "open _build/html/index.html"

test: data
	BOOK_OFFLINE=1 $(BIN)/python -m pytest -q tests
	BOOK_SCALE=smoke BOOK_OFFLINE=1 BOOK_RESULTS=$(CURDIR)/runs/smoke-results $(BIN)/python -m pytest -q --nbval-lax --nbval-cell-timeout=600 book

# The paper rows, executed: the paper's architectures, shapes and settings with every loop capped (the tables' `dry`
# rows), synthetic stand-ins for data this machine lacks; stops at the first failing notebook.
paper-check: data
	rm -rf runs/paper-check "$(BOOK_DATA)/dry-run"  # a dry run trains everything afresh: cached capped models prove nothing
	BOOK_DRY_RUN=1 BOOK_SCALE=paper BOOK_OFFLINE=1 BOOK_RESULTS=$(CURDIR)/runs/paper-check/results $(BIN)/python -m pytest -q -x --nbval-lax --nbval-cell-timeout=900 book

run: data
	@test -n "$(NB)" || { echo "usage: make run NB=<notebook.ipynb> SCALE=smoke|book|paper"; exit 2; }
	@mkdir -p runs/$(SCALE)
	BOOK_EXECUTOR=$(EXECUTOR) BOOK_RESULTS=$(CURDIR)/runs/results $(BIN)/papermill --cwd $(dir $(NB)) $(NB) runs/$(SCALE)/$(notdir $(NB)) -p SCALE $(SCALE)

bench: $(STAMP)
	$(BIN)/python benchmarks/attack_speed.py
	$(BIN)/python benchmarks/bcq_speed.py
	$(BIN)/python benchmarks/seed_batching.py

lint:
	$(BIN)/python ../shared/tools/booklint.py

clean:
	rm -rf _build .jupyter_cache runs results
