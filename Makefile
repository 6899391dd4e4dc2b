# Two entry points (see README): `make demo` runs the owner workflow, `make test` the tests.
# Each creates .venv on first use: torch from the pinned wheels, then auditkit with its dev extra.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/auditkit demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest
