# The lab's entry points. `make demo` and `make test` are all a fresh machine needs
# (Python 3.11 and Java 17); both start with `make setup`, which is idempotent.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
STAMP := $(VENV)/.fraudlab-installed

# The same environment for every Spark run: the venv's pyspark, the lab's Spark
# configuration folder, loopback binding, the venv's Python on driver and executors.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SPARK_HOME := $(CURDIR)/$(VENV)/lib/python3.11/site-packages/pyspark
export SPARK_CONF_DIR := $(CURDIR)/compose/spark
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(PY)

.PHONY: help setup demo test test-compose up up-offline down docker-engine docker-engine-down docker-base docker-certs images bench bench-batch bench-streaming check-java clean services-fetch services-up services-down services-status chromium lab-up lab-down lab-status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

check-java: ## stop with one sentence when Java 17+ is missing
	@bash scripts/check_java.sh

setup: check-java $(STAMP) ## create .venv and install the locked dependencies (idempotent)
	@echo "setup: .venv is up to date with requirements.lock"

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "setup: $(PYTHON) not found: install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv)"; exit 1; }
	@test -x $(PY) || { echo "setup: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@test -x $(VENV)/bin/uv || { echo "setup: installing uv $(UV_VERSION) into $(VENV)"; $(PY) -m pip install -q "uv==$(UV_VERSION)"; }
	@echo "setup: installing the locked dependencies from requirements.lock"
	@$(VENV)/bin/uv pip install -q --python $(PY) --require-hashes -r requirements.lock
	@echo "setup: installing the fraudlab package (editable)"
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $(STAMP)

demo: setup ## run the batch pipeline on local Spark: generate, prepare, fit, score, report
	@$(PY) scripts/demo.py

test: setup chromium ## run the whole test suite (tests/compose/ in a second session beside the rest)
	@echo "test: running pytest (the harness starts and stops the services it needs)"
	@$(PY) scripts/test_suite.py

bench: bench-batch bench-streaming ## run every benchmark; results in bench/results/

bench-batch: setup ## batch benchmark: Spark MLlib against scikit-learn on full-size data
	@$(PY) bench/batch.py

bench-streaming: setup ## streaming benchmark on the real Kafka and Cassandra (started if not running)
	@$(PY) bench/streaming.py

services-fetch: setup ## fetch the Kafka, Cassandra and Spark-Kafka jars from Maven Central (once)
	@$(PY) -m services.runner fetch

services-up: setup ## start Kafka (127.0.0.1:9092) and Cassandra (127.0.0.1:9042) as local processes
	@$(PY) -m services.runner up

services-down: ## stop the local Kafka and Cassandra
	@$(PY) -m services.runner down

services-status: ## show whether the local services run
	@$(PY) -m services.runner status

COMPOSE := docker compose -f docker-compose.yml -f airflow-compose.yaml
# The same with the offline override: every third-party image built from the lab's Debian base.
COMPOSE_OFFLINE := $(COMPOSE) -f compose/offline.yml

up: ## start the compose stack with Airflow (needs a Docker engine): builds the images on first use
	$(COMPOSE) up -d --build

up-offline: docker-base images ## the stack without any registry: offline images for Kafka, Cassandra, Postgres
	$(COMPOSE_OFFLINE) up -d --no-build --wait

down: ## stop the compose stack (volumes kept; add -v by hand to forget them)
	$(COMPOSE) down

docker-engine: setup ## a Docker engine: the running one, else (root on Debian) the lab's own dockerd
	@$(PY) -m services.docker_engine up

docker-engine-down: setup ## stop the dockerd that `make docker-engine` started (if it did)
	@$(PY) -m services.docker_engine down

docker-base: setup ## the base image of every Dockerfile stage: present, pulled, or debootstrapped offline
	@$(PY) -m services.docker_engine base

docker-certs: setup ## copy this machine's extra CA certificates into docker/certs/ (trusted by every image)
	@$(PY) -m services.docker_engine certs

images: setup ## build every image once, in the order that shares stages (offline override included)
	@$(PY) -m services.docker_engine build

test-compose: setup chromium ## only the compose stack tests (tests/compose/: build, up, end to end, down)
	@$(PY) -m pytest tests/compose

clean: ## remove generated data and service state, the lab's own Docker engine and its images included (keeps .venv)
	@if [ -x $(PY) ]; then $(PY) -m services.docker_engine down; fi
	rm -rf data/raw data/prepared data/models data/scored data/reports data/mlflow .lab/run spark-warehouse

chromium: ## install Debian's chromium (headless page checks of the lab test) when it is missing
	@bash scripts/install_chromium.sh

lab-up: setup ## the Docker-free twin: Spark, Kafka, Cassandra, MLflow, Airflow, Jupyter on 127.0.0.1
	@$(PY) -m services.lab up

lab-down: setup ## stop the twin (Kafka/Cassandra only if lab-up started them)
	@$(PY) -m services.lab down

lab-status: setup ## show the twin's services, pids and readiness
	@$(PY) -m services.lab status
