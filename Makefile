# paystore: `make serve` runs it locally, `make test` runs the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test bench install clean model system-deps

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("paystore needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

# Debian packages the suite, the model and the bench use (PgBouncer, Spin + gcc, Chromium +
# chromedriver, pgbench); a no-op when they are there, apt-get (as root) when they are not.
system-deps:
	scripts/install-system-deps.sh

serve: $(VENV)/.installed
	scripts/serve-local.sh

test: $(VENV)/.installed system-deps
	$(BIN)/python -m pytest

# Knobs: make bench BENCH_LATENCY_MS=300 BENCH_BUYERS=32 BENCH_WORKER_CLASS=gthread|gevent
# (every knob is listed in the docstring of bench/__main__.py)
$(VENV)/.bench-installed: pyproject.toml | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

bench: $(VENV)/.bench-installed system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# The protocol model-checked with Spin: the correct model verifies, each broken variant must
# produce a counterexample (model/README.md).
model: system-deps
	model/check.sh
