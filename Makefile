# Every target sets up what it needs: a fresh clone runs `make demo` or `make test` directly.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two install stamps: the platform's own dependencies (`make demo`), and those plus what the
# tests drive (`make test`: brokers, a browser driver, an embedded ClickHouse of ~0.5 GB).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench moa lint format clean

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

# `bench learners` runs MOA's AMRulesRegressor (the reference) from .venv-moa when `make moa`
# could build it, and otherwise says why in its table; the other benchmarks run either way.
bench: $(STAMP)
	$(BIN)/wearwatch bench runtime
	@$(MAKE) --no-print-directory moa || echo "MOA reference skipped: building $(MOA_VENV) failed (see above)"
	$(BIN)/wearwatch bench learners

# MOA through capymoa, in its own virtualenv: capymoa pins pandas~=2.2 (ours is newer) and needs
# a Java runtime. As root with apt, Debian's default-jre-headless is installed when java is
# missing; without a JRE this prints one line and succeeds, so `make bench` still runs the rest.
MOA_VENV := .venv-moa
MOA_STAMP := $(MOA_VENV)/.installed
CAPYMOA := capymoa==0.15.1

moa:
	@if ! command -v java >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing a Java runtime (default-jre-headless) for MOA…"; \
		apt-get install -y -q default-jre-headless >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q default-jre-headless >/dev/null 2>&1; } \
		|| true; \
	fi
	@if command -v java >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(MOA_STAMP); \
	else \
		echo "MOA reference skipped: no Java runtime (install default-jre-headless or any JRE >= 11, then make moa)"; \
	fi

$(MOA_STAMP):
	test -x $(MOA_VENV)/bin/python || $(PY) -m venv $(MOA_VENV)
	$(MOA_VENV)/bin/python -m pip install -q '$(CAPYMOA)'
	touch $(MOA_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) $(MOA_VENV) build *.egg-info .pytest_cache
