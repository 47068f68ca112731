# Every target sets up what it needs: a fresh clone runs `make demo` or `make test` directly.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two install stamps: the platform's own dependencies (`make demo`), and those plus what the
# tests drive (`make test`: brokers, a browser driver, an embedded ClickHouse of ~0.5 GB).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench lint format clean

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The live platform (twins, pipelines, API, dashboard); Ctrl-C stops it, `make demo` resumes it.
# ARGS passes flags through, e.g. `make demo ARGS="--fresh --machines 50"`.
demo: $(RUN_STAMP)
	$(BIN)/wearwatch up $(ARGS)

# The architecture contract first: a layering mistake fails in a second, not after the suite.
# Two test processes (pytest-xdist, one per core; a file's tests stay in one process): much of
# the suite waits on subprocesses, brokers and browsers, so this halves the wall time.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests src

bench: $(STAMP)
	$(BIN)/wearwatch bench runtime
	$(BIN)/wearwatch bench learners

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
