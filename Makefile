# Lean & Robust: `make book` builds the whole book, `make test` checks it. Both set everything up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
export BOOK_DATA ?= $(CURDIR)/data
NB ?=
SCALE ?= book
EXECUTOR ?= local

.PHONY: book test paper-check run data env clean lint bench help
help:
	@echo "make book   - set up, provision data, execute every chapter at book scale, build the HTML"
	@echo "make test   - set up, unit tests, every notebook under nbval at smoke scale"
	@echo "make paper-check - every notebook's paper row as a dry run (paper settings, loops capped), on the CPU"
	@echo "make run NB=book/ch1_lighter_robust/capacity.ipynb SCALE=paper [EXECUTOR=ray]  - one notebook with papermill"
	@echo "make bench  - attack and training speed benchmarks"
	@echo "make clean  - remove build outputs, runs and results (keeps .venv and data)"

env: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,cluster]'
	$(BIN)/python -m pip install -q --no-deps torchattacks==3.5.1
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

data: $(STAMP)
	$(BIN)/python -m helpers.data mnist fashion-mnist digits

book: data
	BOOK_SCALE=book $(BIN)/jupyter-book build . --all --builder html
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
