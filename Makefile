#################################################################################
# GLOBALS                                                                       #
#################################################################################

PROJECT_NAME = kpi-kit
PYTHON ?= python3
VENV = .venv
PY = $(VENV)/bin/python
# Touched after `pip install`; older than pyproject.toml means the install is stale.
INSTALLED = $(VENV)/.installed

DEMO = data/demo.duckdb
SOURCE ?= $(DEMO)
# The source options every command takes: PRESET=salesforce|hubspot, OPTIONS=, COLMAP=, FX=
# (or a source YAML as SOURCE, which names them and the org's configuration).
SOURCE_OPTIONS = $(if $(PRESET),--preset $(PRESET)) $(if $(OPTIONS),--options $(OPTIONS)) \
	$(if $(COLMAP),--colmap $(COLMAP)) $(if $(FX),--fx $(FX))
OUT ?= reports
# Default: the last complete month, as the CLI computes it (evaluated only when used).
PERIOD ?= $(shell $(PY) -m kpi_lib last-month)
JOBS ?=

.DEFAULT_GOAL := help

#################################################################################
# ENVIRONMENT                                                                   #
#################################################################################

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(INSTALLED)

## Create .venv and install the project with its dev tools (reruns when pyproject.toml changes)
.PHONY: venv
venv: $(INSTALLED)

## Install the nbstripout git filter: notebooks are committed without outputs
.PHONY: hooks
hooks: $(INSTALLED)
	$(VENV)/bin/nbstripout --install

#################################################################################
# DATA AND REPORTS                                                              #
#################################################################################

$(DEMO): | $(INSTALLED)
	$(PY) -m kpi_lib demo-data --out $(DEMO)

## Generate the demo CRM in data/demo.duckdb (again, if it exists)
.PHONY: data
data: $(INSTALLED)
	$(PY) -m kpi_lib demo-data --out $(DEMO)

## Render every report of PERIOD (default: last complete month) into reports/PERIOD/
.PHONY: reports
reports: $(INSTALLED) $(if $(filter $(DEMO),$(SOURCE)),$(DEMO))
	$(PY) -m kpi_lib render --period $(PERIOD) --source $(SOURCE) $(SOURCE_OPTIONS) --out $(OUT) $(if $(JOBS),--jobs $(JOBS))

## Render the month to date (data through yesterday) into reports/<this month>/
.PHONY: mtd
mtd: $(INSTALLED) $(if $(filter $(DEMO),$(SOURCE)),$(DEMO))
	$(PY) -m kpi_lib mtd --source $(SOURCE) $(SOURCE_OPTIONS) --out $(OUT) $(if $(JOBS),--jobs $(JOBS))

## Email the digests of PERIOD and post its Slack/Teams channels (SMTP via KPI_SMTP_HOST, else .eml files)
.PHONY: send
send: $(INSTALLED)
	$(PY) -m kpi_lib send --period $(PERIOD) --out $(OUT)

## Render the last complete month and send its digests (SMTP from KPI_SMTP_*, else .eml files)
.PHONY: monthly
monthly: $(INSTALLED) $(if $(filter $(DEMO),$(SOURCE)),$(DEMO))
	$(PY) -m kpi_lib monthly --source $(SOURCE) $(SOURCE_OPTIONS) --out $(OUT) $(if $(JOBS),--jobs $(JOBS))

## Open JupyterLab on notebooks/ with the project's kernel
.PHONY: lab
lab: $(INSTALLED) $(DEMO)
	$(PY) -m ipykernel install --sys-prefix --name $(PROJECT_NAME) --display-name "Python ($(PROJECT_NAME))"
	$(VENV)/bin/jupyter lab notebooks/

## Regenerate the KPI reference in docs/kpis.md from the registry
.PHONY: docs
docs: $(INSTALLED)
	$(PY) -c "from kpi_lib.metrics.registry import write_kpi_docs; write_kpi_docs()"

#################################################################################
# QUALITY                                                                       #
#################################################################################

## Check the system prerequisites of the tests (Chromium, PostgreSQL 15); one line if missing
.PHONY: prerequisites
prerequisites:
	@PYTHON=$(PYTHON) sh scripts/prerequisites.sh

## Run every test, including the slow end-to-end suites (batches, browsers)
.PHONY: test
test: prerequisites $(INSTALLED)
	$(PY) -m pytest

## Run the fast tests only (skips tests marked slow)
.PHONY: test-fast
test-fast: prerequisites $(INSTALLED)
	$(PY) -m pytest -m 'not slow'

## Check the code with ruff, and the house's import contracts with import-linter
.PHONY: lint
lint: $(INSTALLED)
	$(VENV)/bin/ruff check kpi_lib tests bench
	$(VENV)/bin/lint-imports

## Format the code with ruff and apply its safe fixes
.PHONY: format
format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix kpi_lib tests
	$(VENV)/bin/ruff format kpi_lib tests

## Delete generated reports and caches (keeps .venv and data/)
.PHONY: clean
clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

#################################################################################
# PERFORMANCE                                                                   #
#################################################################################

## Benchmark the cube and the batch render (writes bench/results/*.md and *.json)
.PHONY: bench
bench: $(INSTALLED)
	$(PY) bench/cube.py
	$(PY) bench/render.py

#################################################################################
# SELF-DOCUMENTING                                                              #
#################################################################################

## Show this list of targets
.PHONY: help
help:
	@echo "Usage: make <target> [PERIOD=YYYY-MM] [SOURCE=path] [PRESET=name] [JOBS=n]"
	@echo
	@awk '/^## /{ sentence = substr($$0, 4); next } \
	     /^\.PHONY/{ next } \
	     /^[a-zA-Z_-]+:/{ if (sentence) { split($$0, t, ":"); printf "  %-14s %s\n", t[1], sentence }; sentence = "" } \
	     { sentence = "" }' $(MAKEFILE_LIST)
