# mlpublish: every command the README shows. Each target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
AWSCLI_VENV := .venv-awscli
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
# sam build needs the Lambda runtime's Python (3.13) on PATH; pyenv provides it here.
SAM_BUILD_ENV := PYENV_VERSION=3.13.0:3.11.7
DEMO_DIR := .demo
ENV ?= default
# Debian packages (make deb): umoci/skopeo build and copy OCI images, runc runs them, debootstrap makes root filesystems.
DEB_PACKAGES := umoci skopeo runc debootstrap
# pytest worker processes (pytest-xdist), one test file per worker at a time so a file's shared runs are made once;
# the suite waits on containers, sleeps of the sandbox's clock and locks as much as on the CPU, so more than the cores.
PYTEST_WORKERS ?= 4
PYTEST := $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile
# Offline commands (validate, lint) still want a region and credentials to exist.
OFFLINE_AWS := AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline

.PHONY: schemas faults help venv sam-venv awscli-venv checkov-venv deb sandbox-cache lint test unit integration e2e demo build layer-check deploy bench clean

help: ## list the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements/dev.txt
	# the domain layer and the repository root are importable, as Lambda and pytest see them
	printf '%s\n%s\n' "$(CURDIR)/layers/publishing" "$(CURDIR)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mlpublish-dev.pth
	touch $@

venv: $(VENV)/.installed ## create the pinned development virtualenv

$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet --no-compile -r requirements/sam.txt
	touch $@

sam-venv: $(SAM_VENV)/.installed ## create the pinned SAM CLI virtualenv (its boto3 differs from moto's)

$(AWSCLI_VENV)/.installed: requirements/awscli.txt
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/pip install --quiet --upgrade pip
	$(AWSCLI_VENV)/bin/pip install --quiet --no-compile -r requirements/awscli.txt
	touch $@

awscli-venv: $(AWSCLI_VENV)/.installed ## create the pinned AWS CLI virtualenv (.venv-awscli/bin/aws)

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet --no-compile -r requirements/checkov.txt
	touch $@

checkov-venv: $(CHECKOV_VENV)/.installed ## create the pinned checkov virtualenv (its dependencies clash with moto's)

deb: ## install the Debian packages for real OCI images and containers (DEB_PACKAGES) if missing
	@missing=$$(for package in $(DEB_PACKAGES); do \
	  [ "$$(dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null)" = "install ok installed" ] || echo "$$package"; done); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ]; then as_root=; \
	elif command -v sudo >/dev/null; then as_root=sudo; \
	else echo "make deb: installing" $$missing "needs root; run it as root or install sudo" >&2; exit 1; fi; \
	echo "make deb: installing" $$missing; \
	$$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null

# checkov checks that hold for every function and are not followed, by design (the rest are
# skipped in template.yaml, each on its resource with the reason):
#   CKV_AWS_115 reserved concurrency: it is taken from the account's unreserved pool (a new account
#     cannot spare it, so the deploy would fail); Map MaxConcurrency and the SQS event source bound it;
#   CKV_AWS_116 dead-letter queue: a function DLQ is for asynchronous invocations only; Step Functions
#     invokes synchronously and catches failures, the trigger queue has its own DLQ;
#   CKV_AWS_117 VPC: the functions call only AWS APIs; a VPC would add NAT or endpoints, not isolation;
#   CKV_AWS_173 environment KMS key: the environment holds no secrets (regions, names, ARNs) and
#     Lambda encrypts it at rest already.
CHECKOV_SKIP := CKV_AWS_115,CKV_AWS_116,CKV_AWS_117,CKV_AWS_173
# --skip-download: no calls to Prisma Cloud (offline; the checks are in the package).
CHECKOV := $(CHECKOV_VENV)/bin/checkov --skip-download --compact --quiet
# bandit: the deployed code (layers, functions) with every test; the local tooling (sandbox, tools,
# bench; never deployed) without B101 (its asserts narrow types for mypy) and B404/B603 (it runs fixed
# programs - runc, umoci, pip - with argument lists and no shell, on the developer's machine). Every
# other suppression is a "# nosec BXXX  # reason" comment on its line.
# bandit warns "nosec encountered ... but no failed test" for nosec lines that do suppress a finding
# (PyCQA/bandit#1041, and every line of a multi-line statement); those lines are dropped.
BANDIT_NOISE := nosec encountered .*but no failed test

lint: venv sam-venv checkov-venv ## ruff, mypy, statelint, cfn-lint, sam validate --lint, checkov, bandit, schemas current
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy functions
	$(VENV)/bin/mypy tools
	$(VENV)/bin/statelint --ignore=URI statemachine/publish.asl.json
	$(PY) -m tools.schemas --check
	$(VENV)/bin/cfn-lint template.yaml templates/source-account.yaml
	$(OFFLINE_AWS) $(SAM) validate --lint
	$(CHECKOV) --file template.yaml --file templates/source-account.yaml --framework cloudformation --skip-check $(CHECKOV_SKIP)
	set -o pipefail; $(VENV)/bin/bandit --quiet --recursive layers functions 2>&1 | { grep -v '$(BANDIT_NOISE)' || true; }
	set -o pipefail; $(VENV)/bin/bandit --quiet --recursive sandbox tools bench --skip B101,B404,B603 2>&1 \
	  | { grep -v '$(BANDIT_NOISE)' || true; }

schemas: venv ## regenerate schemas/ (JSON Schemas of the release file and every event) from the models
	$(PY) -m tools.schemas

unit: venv ## unit tests only (no network)
	$(PYTEST) -m unit -q

integration: venv deb ## handlers and domain against moto
	$(PYTEST) -m integration -q

e2e: venv awscli-venv deb ## the whole state machine in the sandbox
	$(PYTEST) -m "e2e and not faults" -q

# The matrix is one file of independent runs: spread them one by one (--dist load), not by file.
faults: venv deb ## the full fault-injection matrix: every AWS operation the stack calls, throttled, failing, losing answers
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist load -m faults -q

# The checks, the virtualenvs, sam build and the sandbox's caches do not depend on each other:
# they run side by side (about a minute sooner on 2 cores), each one's output kept together.
test: ## everything CI runs: lint, static checks, sam build, layer-check, the whole pytest suite
	$(MAKE) --no-print-directory -j5 --output-sync=target lint awscli-venv sandbox-cache layer-check
	$(PYTEST) -q

sandbox-cache: venv deb ## build what the sandbox caches outside the checkout: the serving images and the Lambda environment
	$(PY) -c 'from sandbox.images_real import build_serving_image; print("serving images:", build_serving_image("good").parent)'
	$(PY) -c 'from sandbox.lambda_env import ensure_environment; print("Lambda environment:", ensure_environment().runtime_dir.parent)'

demo: venv deb ## publish a sample product end to end on the embedded local AWS, its validation run for real with runc
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@echo "• the serving image (Debian bookworm + a SageMaker-style server; built once, about 2 minutes, then cached)"
	image=$$($(PY) -c 'from sandbox.images_real import build_serving_image; print(build_serving_image("good"))') && \
	$(PY) -m sandbox run --release events/release.example.yaml --image "$$image" --repeat --log-file $(DEMO_DIR)/lambda.log

build: sam-venv ## sam build (python3.13, arm64) into .aws-sam/
	@$(SAM_BUILD_ENV) python3.13 --version >/dev/null 2>&1 || { \
	  echo "sam build needs python3.13 (the Lambda runtime) on PATH, e.g. pyenv install 3.13.0"; exit 1; }
	$(SAM_BUILD_ENV) $(SAM) build

layer-check: venv build ## the layer sam built holds the sandbox's packages; every handler imports on python3.13
	$(PY) -m tools.check_lambda_package

deploy: build ## sam deploy with samconfig.toml (ENV=default|dev|prod); first time: make deploy GUIDED=1
	$(SAM) deploy --config-env $(ENV) $(if $(GUIDED),--guided,)

bench: venv ## benchmarks that print figures
	$(PY) -m bench

clean: ## remove build output and virtualenvs
	rm -rf $(VENV) $(SAM_VENV) $(AWSCLI_VENV) $(CHECKOV_VENV) .aws-sam $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
