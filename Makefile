# The two commands a user needs: `make repro` and `make test`.
# Both create .venv and install the pinned environment first (constraints.txt).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro test test-fast lint bench clean

install: $(VENV)/.installed

# torch first, on its own: the exact CPU build pinned here (a loose pin pulls a
# CUDA build of several GB). Everything else is pinned by constraints.txt.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

repro: install
	dvc repro

test: install
	snakemake --lint
	pytest -q

test-fast: install
	pytest -q -m "not e2e"

lint: install
	snakemake --lint

bench: install
	python -m instructflow.bench --out benchmarks/bench.json

clean:
	rm -rf .snakemake logs benchmarks checkpoints
