# The two commands a newcomer needs: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The pretrained audio front end's weights ship in this wheel. Its metadata pins numpy < 1.17,
# which cannot resolve beside numpy 2, so it is installed without its dependencies: only its
# checkpoint files are read (musicvae/model/musicnn.py), never its code.
MUSICNN := musicnn==0.1.0

.PHONY: install demo demo-stop stack-status system-deps test test-fast lint format clean \
	bench bench-model bench-features bench-training bench-sql bench-validation \
	bench-pipeline bench-scale

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) --version >/dev/null 2>&1 || { echo "musicvae needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dev,bench]'
	$(PY) -m pip install --quiet --no-deps $(MUSICNN)
	touch $@

demo: install
	$(VENV)/bin/musicvae demo

demo-stop:
	@if [ -x $(VENV)/bin/musicvae ]; then $(VENV)/bin/musicvae stack down; fi

stack-status: install
	$(VENV)/bin/musicvae stack status

# Debian packages the end-to-end tests drive: Chromium for the browser test (Playwright uses it;
# no browser is downloaded) and redis-server, the Celery broker of the CeleryExecutor test.
# As root they are installed with apt-get; otherwise this says what to install.
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "The browser and Celery tests need Debian's$$missing: sudo apt-get install$$missing"; \
	    exit 1; \
	  fi; \
	fi

# pytest exits 5 when it collected no test: that is a broken suite, not a passing one.
test: install system-deps
	$(PY) -m pytest -ra --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing the suite"; exit 1; fi; \
	exit $$rc

test-fast: install
	$(PY) -m pytest -ra -m "not e2e"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: demo-stop
	rm -rf .stack

# Benchmarks print a table and write benchmarks/results/<name>.json. BENCH_ARGS passes options
# to bench-model, e.g. BENCH_ARGS="--tracks 300 --epochs 3" for a quick look.
bench: bench-features bench-training bench-sql bench-validation bench-model

bench-features: install
	$(PY) -m benchmarks.bench_features

bench-training: install
	$(PY) -m benchmarks.bench_training

bench-model: install
	$(PY) -m benchmarks.bench_model $(BENCH_ARGS)

# Not part of `make bench`: about an hour on 2 cores (a 3554-track catalogue through every DAG).
bench-pipeline: install
	$(PY) -m benchmarks.bench_pipeline

# Not part of `make bench` (figures in benchmarks/results/scale.json): the recluster of 250,000
# and of a million tracks, twice each; then the sharded stages on 1 and 2 Celery workers,
# BENCH_ARGS passed on (hours at the default 100,000 tracks on 2 cores; e.g.
# BENCH_ARGS="--tracks 6000 --shard-size 3000", about 25 minutes).
bench-scale: install system-deps
	$(PY) -m benchmarks.bench_scale
	$(PY) -m benchmarks.bench_reduces
	$(PY) -m benchmarks.bench_workers $(BENCH_ARGS)

bench-sql: install
	$(PY) -m benchmarks.bench_sql

bench-validation: install
	$(PY) -m benchmarks.bench_validation
