# Common moves. Every target creates the virtual environment first, so a fresh clone needs
# nothing but python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run demo test lint typecheck bench synth lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run demo: venv
	$(BIN)/healthflow run --demo

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

synth: venv
	cd cdk && npx --yes aws-cdk@2 synth --quiet

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^torch==' > requirements.lock.new
	echo 'torch==2.13.0' >> requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info cdk/cdk.out
