# Two commands on a fresh machine with python3: `make demo` and `make test`.
# Each creates .venv and installs pinned dependencies on first use.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-torch-$(TORCH_VERSION)
DEMO_ARGS ?=

.PHONY: demo test lint docs browser bench clean

$(STAMP): setup.py pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -r requirements.txt -e .
	rm -f $(VENV)/.installed-torch-*
	touch $@

demo: $(STAMP)
	$(BIN)/landscape demo --out runs/demo $(DEMO_ARGS)

test: $(STAMP) browser lint docs
	$(BIN)/python -m pytest -q tests

# lint + format check (ruff) and types (mypy on landscape/ and trainers/), as CI runs them
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The API reference from the docstrings (warnings are errors), then every public name checked to be in it
docs: $(STAMP)
	$(BIN)/sphinx-build -W -q -b html docs docs/_build/html
	$(BIN)/python docs/coverage_check.py docs/_build/html/objects.inv

# The explorer's browser tests use Debian's chromium; install it where we may (root + apt), else they skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  echo "no chromium: the browser tests will be skipped"

bench: $(STAMP)
	$(BIN)/python -m pip install -q loss-landscapes==3.0.6 pyhessian==0.1
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/step_cost.py
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/surface.py
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/sweep.py
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/hessian.py
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/problem.py --dataset digits --width 16 --rounds 21
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/problem.py --rounds 7
	$(BIN)/python bench/corruptions.py
	$(BIN)/python bench/cli_latency.py
	$(BIN)/python bench/hdf5_scan.py

clean:
	rm -rf $(VENV) runs .pytest_cache docs/_build
