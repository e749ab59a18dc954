# Two commands set everything up on a fresh machine (see README):
#   make run      — create .venv, install genred, run the daemon on embedded defaults
#   make test     — create .venv, install genred with test tools, lint, type-check, test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
MUSIC ?= $(HOME)/Music

$(BIN)/genred: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: install run test lint
install: $(BIN)/genred

run: install
	$(BIN)/genred run --watch "$(MUSIC)"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest -q -ra --durations=25
