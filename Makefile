# Set-up and everyday commands. `make run` and `make test` install everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision must come as a pair built for each other (PyPI's torchvision does not import
# beside other torch builds); timm needs torchvision. Pairs known to import together, per machine:
ifeq ($(shell uname -m),aarch64)
TORCH_PAIR ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install run test test-all lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PAIR)
	$(PY) -m pip install --quiet -e ".[dev]" $(TORCH_PAIR)
	$(PY) -c "import torch, torchvision, timm, lightning; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

run: install
	$(PY) -m fod_lightning.run $(ARGS)

# One pytest worker per core (pytest-xdist); each test runs one intra-op thread (tests/conftest.py).
test: install
	WANDB_MODE=offline $(PY) -m pytest -q -n auto

test-all: install
	WANDB_MODE=offline $(PY) -m pytest -q -n auto -m ""

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: install
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
