# Two commands: `make run` (set up + serve the app) and `make test` (set up + run every test).
# Both are idempotent: the virtualenv is rebuilt only when pyproject.toml changes.
# `make run PORT=8080 HOST=127.0.0.1` passes --port/--host to serve (else MNIST_LAB_PORT/HOST, 8000).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# axe-core, the accessibility checker the browser tests inject into the page: from npm, never committed.
AXE_VERSION := 4.14.1
AXE    := .cache/axe-$(AXE_VERSION)/node_modules/axe-core/axe.min.js

.PHONY: run test test-fast test-docker lint bench chromium docker-tools clean

run: $(STAMP)
	$(BIN)/mnist-lab fetch-data
	$(BIN)/mnist-lab serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test: $(STAMP) chromium docker-tools $(AXE)
	$(BIN)/mnist-lab fetch-data
	$(BIN)/ruff check engine app tests bench
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest tests/docker

# The edit loop: every test that needs neither the MNIST files nor a browser nor a Ray cluster.
test-fast: $(STAMP)
	$(BIN)/ruff check engine app tests bench
	$(BIN)/python -m pytest -m "not mnist and not browser and not ray"

# The Docker image, built from the Dockerfile on a local Debian base and run by a real daemon
# (started here, as root, if none runs). Skips with the reason where no daemon can start;
# fails instead when CI is set.
test-docker: $(STAMP) docker-tools
	$(BIN)/mnist-lab fetch-data
	$(BIN)/python -m pytest tests/docker

bench: $(STAMP)
	$(BIN)/mnist-lab fetch-data
	$(BIN)/mnist-lab bench

lint: $(STAMP)
	$(BIN)/ruff check engine app tests bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

$(AXE):
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq npm; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq npm; fi; }
	npm install --prefix .cache/axe-$(AXE_VERSION) --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION)

# Browser tests drive Debian's Chromium; Playwright cannot download its own browser here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# Debian's docker.io (dockerd) and debootstrap (the local base image: no registry is reachable).
docker-tools:
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq docker.io debootstrap; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq docker.io debootstrap; fi; }

clean:
	rm -rf $(VENV) dist build .pytest_cache .ruff_cache .cache
