# One entry point for a fresh machine: `make demo` runs the job locally, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The IaC scanners live in a venv of their own: checkov pins an old boto3 and packaging that would break
# aws-sam-cli and moto in $(VENV).
SECURITY_VENV := .venv-security
SECURITY_BIN := $(SECURITY_VENV)/bin
SECURITY_STAMP := $(SECURITY_VENV)/.installed
# checkov fully offline: no platform API key, no policy/guideline download, no PyPI version check; a template
# it cannot parse fails the build instead of passing with nothing scanned.
CHECKOV := env -u BC_API_KEY BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true CKV_PARSE_ERROR_FAIL=true \
	$(SECURITY_BIN)/checkov --skip-download --quiet --compact
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export POWERTOOLS_TRACE_DISABLED ?= 1
# The same import roots as the Lambda runtime: the layer's python/ and the function's folder.
RUN_PYTHONPATH := $(CURDIR)/layers/shared:$(CURDIR)/functions/scheduled_donations:$(CURDIR)

# Python 3.13 is the Lambda runtime; find it without anyone exporting anything.
# Each candidate is run, not just found: a pyenv shim for python3.13 exists even where it cannot run.
PYTHON313 := $(shell for c in "$$(PYENV_VERSION=3.13.0 pyenv which python3 2>/dev/null)" \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3 2>/dev/null) \
	"$$(command -v python3.13 2>/dev/null)" /usr/bin/python3.13 /usr/local/bin/python3.13; do \
	[ -n "$$c" ] && "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo "$$c"; break; }; \
	done)

.PHONY: help venv lint typecheck validate security build build-check unit test demo reliability bench clean \
	local-up local-down local-invoke

# Every target a person may run carries a "## what it does" comment; `make help` prints them all.
help: ## list every target
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)$$/\1\t\2/' | \
		awk -F'\t' '{ printf "make %-13s %s\n", $$1, $$2 }'

$(STAMP): requirements-dev.txt layers/shared/requirements.txt
	@if [ -z "$(PYTHON313)" ]; then \
		echo "error: Python 3.13 not found. Install it (e.g. 'pyenv install 3.13.0' or your OS package python3.13) and re-run." >&2; exit 1; fi
	@echo "using $(PYTHON313)"
	rm -rf $(VENV)
	$(PYTHON313) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# The project itself (editable): puts the `donations` operator CLI in $(BIN).
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP) ## build .venv (Python 3.13) with every pinned requirement and the `donations` CLI

lint: venv ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv ## mypy, strict
	$(BIN)/mypy

validate: venv ## sam validate --lint on template.yaml
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/sam validate --lint --template-file template.yaml

$(SECURITY_STAMP): requirements-security.txt
	@if [ -z "$(PYTHON313)" ]; then \
		echo "error: Python 3.13 not found. Install it (e.g. 'pyenv install 3.13.0' or your OS package python3.13) and re-run." >&2; exit 1; fi
	rm -rf $(SECURITY_VENV)
	$(PYTHON313) -m venv $(SECURITY_VENV)
	$(SECURITY_BIN)/pip install --quiet --upgrade pip
	$(SECURITY_BIN)/pip install --quiet -r requirements-security.txt
	touch $(SECURITY_STAMP)

# IaC scanning; any finding not justified in place in template.yaml (Metadata cfn-lint ignore_checks or
# checkov skip, each with its reason) fails the build.
security: $(SECURITY_STAMP) ## cfn-lint with the serverless rules and checkov on template.yaml (own venv)
	$(SECURITY_BIN)/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	$(CHECKOV) --framework cloudformation --file template.yaml

build: venv ## sam build: the function and the arm64 layer in .aws-sam/
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/sam build --template-file template.yaml

# Proves the deployable artefact: the layer holds our package and arm64 builds of the compiled wheels.
build-check: build ## sam build, then check the layer and function artefacts
	test -f .aws-sam/build/SharedLayer/python/donation_processor/engine.py
	ls .aws-sam/build/SharedLayer/python/bson/ | grep -q 'aarch64'
	test -f .aws-sam/build/ScheduledDonationsFunction/app.py
	@echo "build-check: layer and function artefacts OK"

# The fast tier: pure rules and the engine on in-memory fakes, no sockets (seconds).
unit: venv ## the fast tier only: pure rules and the engine on in-memory fakes (seconds)
	$(BIN)/pytest tests/unit tests/fast -q

test: lint typecheck validate security ## everything CI runs: lint, typecheck, validate, security and the whole pytest suite
	$(BIN)/pytest -q

demo: venv ## run the job locally against moto, mongomock and the local Stripe server, twice
	PYTHONPATH=$(RUN_PYTHONPATH) $(BIN)/python -m harness.local.demo

# Runs the fault-injection suite and regenerates docs/RELIABILITY.md from its figures.
reliability: venv ## fault-injection suite; regenerates docs/RELIABILITY.md
	PYTHONPATH=$(RUN_PYTHONPATH) $(BIN)/python -m harness.reports.reliability

bench: venv ## throughput and memory benchmark (about 30 min); regenerates docs/BENCHMARKS.md
	PYTHONPATH=$(RUN_PYTHONPATH) $(BIN)/python -m harness.bench

# Practise locally (docs/RUNBOOK.md#practise-locally): moto, the Stripe-compatible server and a MongoDB as
# background processes (pid files and logs in .local/); `source .local/env`, then run `donations ...`.
# Ports: LOCAL_MOTO_PORT, LOCAL_STRIPE_PORT, LOCAL_MONGO_PORT; LOCAL_MONGODB_URI uses that MongoDB instead.
local-up: venv ## start the practice stack: moto, the Stripe server, a MongoDB (then: source .local/env)
	PYTHONPATH=$(RUN_PYTHONPATH) $(BIN)/python -m harness.local.local_up

local-down: venv ## stop the practice stack and remove .local/env
	PYTHONPATH=$(RUN_PYTHONPATH) $(BIN)/python -m harness.local.local_down

local-invoke: venv ## one handler run against the practice stack [EVENT=events/manual_dry_run.json]
	PYTHONPATH=$(RUN_PYTHONPATH) $(BIN)/python -m harness.local.local_invoke

clean: ## remove everything make creates: venvs, the practice stack, build output, caches
	@if [ -d .local ] && [ -x $(BIN)/python ]; then PYTHONPATH=$(RUN_PYTHONPATH) $(BIN)/python -m harness.local.local_down; fi
	rm -rf $(VENV) $(SECURITY_VENV) .local .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
