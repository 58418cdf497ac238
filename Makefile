# tailsense-botclick: `make run` installs into .venv and runs the whole pipeline.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
# Real logs to use instead of the simulator, as one glob: make run LOGS='/var/log/apache2/access.log*'
LOGS ?=
UI_PORT ?= 5000
# Environment whose stores the release uses; its champion moves only when every check passes.
RELEASE_ENV ?= test

export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1

.PHONY: help install run params test ui clean release drift-check

help:
	@echo "make run [LOGS='<glob>']  install, then run the pipeline (simulated traffic unless LOGS is set)"
	@echo "make test                 run the test suite"
	@echo "make ui                   MLflow UI on http://127.0.0.1:$(UI_PORT)"
	@echo "make params               recompose params.yaml from conf/"
	@echo "make drift-check [LOGS='<glob>']  drift check; on drift, retrain and promote only through the gate"
	@echo "make release [RELEASE_ENV=test]  pipeline dry run, service smoke test, gate; moves champion only if all pass"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

params: install
	$(BIN)/botclick params

run: install
ifeq ($(strip $(LOGS)),)
	$(BIN)/dvc exp run
else
	@test -d '$(patsubst %/,%,$(dir $(LOGS)))' || { echo "LOGS folder not found: $(dir $(LOGS)). Pass an existing folder, e.g. make run LOGS='/var/log/apache2/access.log*'"; exit 2; }
	$(BIN)/dvc exp run -S 'paths.log_dir=$(patsubst %/,%,$(dir $(LOGS)))' -S "data.log_globs=['$(notdir $(LOGS))']"
endif
	@echo "metrics: reports/metrics.json, plots: reports/plots/, MLflow: make ui"

test: install
	$(BIN)/python -m pytest

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlartifacts --host 127.0.0.1 --port $(UI_PORT)

drift-check: install
	$(BIN)/botclick drift-check --retrain $(if $(strip $(LOGS)),--logs '$(LOGS)')

release: install
	$(BIN)/python -m src.release --env $(RELEASE_ENV)

clean:
	rm -rf data/raw data/interim data/features models reports logs mlflow.db mlartifacts
