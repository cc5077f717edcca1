# Two commands: `make run` (set up + serve the app) and `make test` (set up + run every test).
# Both are idempotent: the virtualenv is rebuilt only when pyproject.toml changes.
# `make run PORT=8080 HOST=127.0.0.1` passes --port/--host to serve (else MNIST_LAB_PORT/HOST, 8000).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench chromium clean

run: $(STAMP)
	$(BIN)/mnist-lab fetch-data
	$(BIN)/mnist-lab serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test: $(STAMP) chromium
	$(BIN)/mnist-lab fetch-data
	$(BIN)/ruff check engine app tests bench
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/mnist-lab fetch-data
	$(BIN)/mnist-lab bench

lint: $(STAMP)
	$(BIN)/ruff check engine app tests bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Browser tests drive Debian's Chromium; Playwright cannot download its own browser here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

clean:
	rm -rf $(VENV) dist build .pytest_cache .ruff_cache
