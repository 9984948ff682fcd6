# streamrank: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default; e.g. TORCH_SPEC='torch' (CUDA build) on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/streamrank demo

# Tests use the bundled model only: forbid any model hub access.
test: export HF_HUB_OFFLINE = 1
test: $(STAMP)
	$(BIN)/ruff check stream encoders tests
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not kafka and not model"

lint: $(STAMP)
	$(BIN)/ruff check stream encoders tests
	$(BIN)/ruff format --check stream encoders tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
