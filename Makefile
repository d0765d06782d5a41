# Two commands a new developer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install whenever the project's dependencies change.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint format proto diagram config-table bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "evplug needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/evplug demo

# What the tests start or drive (InfluxDB 1.x, Chromium, an OIDC provider): installed once, when missing.
test: $(STAMP) lint
	sh tools/install_os_packages.sh
	tools/install_test_tools.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

proto: $(STAMP)
	$(BIN)/python tools/gen_proto.py

diagram: $(STAMP)
	$(BIN)/python tools/gen_state_diagram.py

config-table: $(STAMP)
	$(BIN)/python tools/gen_config_table.py

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/relay_poll.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/broker_ingest.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
