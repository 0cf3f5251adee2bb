# recpipe: `make demo` runs the pipeline end to end, `make test` runs the tests.
# Both install what they need (venv, pinned packages, Debian packages) on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.recpipe-installed
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(BIN))/python
export AIRFLOW_HOME ?= $(abspath var/airflow)
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(abspath dags)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: deps system-deps kafka-deps demo test lint airflow clean

$(STAMP): requirements.txt constraints.txt setup.cfg
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps torchrec==1.8.0
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

system-deps:
	@bash scripts/system_deps.sh

# Jars of the local Kafka broker (scripts/kafka_broker.sh) in .kafka/lib, via Maven.
kafka-deps: system-deps
	@bash scripts/kafka_deps.sh

deps: system-deps kafka-deps $(STAMP)

demo: deps
	bash scripts/demo.sh

test: deps
	bash scripts/test.sh

lint: deps
	$(BIN)/ruff check .

airflow: deps
	bash scripts/airflow_standalone.sh

clean:
	rm -rf var
