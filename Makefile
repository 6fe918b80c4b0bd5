# Two commands for a newcomer: `make demo` and `make test` (README). Both create the
# virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export LAKEHOUSE_HOME ?= $(CURDIR)/.lakehouse
export DAGSTER_HOME ?= $(LAKEHOUSE_HOME)/dagster
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
# Our own modules are compiled once into __pycache__ rather than at every process start (a run worker, the fork
# server of its steps), where a machine's environment says otherwise.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test test-fast ui serve graph docs bench realdata replay clean home materialize job rollback

MANIFEST := dbt_project/target/manifest.json

setup: $(VENV)/.installed $(MANIFEST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# dagster-dbt's own preparation (dbt parse); `dagster dev` re-prepares by itself.
$(MANIFEST): $(VENV)/.installed $(shell find dbt_project -name '*.sql' -o -name '*.yml' | grep -v target)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dagster-dbt project prepare-and-package --file resources/dbt.py >/dev/null

demo: setup
	$(BIN)/python demo.py

# One pytest worker per core (at most 4: an end-to-end module holds a trained home in memory); a test file stays
# on one worker, so its module fixtures are built once.
PYTEST_WORKERS := -n auto --maxprocesses 4 --dist loadfile

test: setup
	$(BIN)/ruff format --check --quiet . && $(BIN)/ruff check --quiet .
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_WORKERS)

# Unit and asset tests only (no end-to-end graph, nothing marked slow).
test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_WORKERS) -m "not e2e and not slow"

ui: home
	$(BIN)/dagster dev -w workspace.yaml

# The Dagster instance under the project home (runs, schedules, alerts), created where missing.
home: setup
	@mkdir -p $(DAGSTER_HOME) && cp -n deploy/dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true

# On demand, in the same instance as `make ui` (each case page lists its one-liners):
#   make materialize SELECT=forecast/model+ [PARTITION=key | PARTITION_RANGE=a...b] [CONFIG='{"ops": ...}']
#   make job JOB=triage_quarterly_retraining [CONFIG='{"ops": ...}']
materialize: home
	$(BIN)/dagster asset materialize -m definitions --select '$(SELECT)' \
		$(if $(PARTITION),--partition '$(PARTITION)') $(if $(PARTITION_RANGE),--partition-range '$(PARTITION_RANGE)') \
		$(if $(CONFIG),--config-json '$(CONFIG)')

job: home
	$(BIN)/dagster job execute -m definitions -j '$(JOB)' $(if $(CONFIG),--config-json '$(CONFIG)')

# Move a case's `champion` back to an earlier version that passed its gate, with the reason:
#   make rollback CASE=fraud VERSION=3 REASON="v4 blocks too many good payments"
rollback: home
	@test -n "$(CASE)" -a -n "$(VERSION)" -a -n "$(REASON)" || (echo "usage: make rollback CASE=<case> VERSION=<n> REASON=<why>" && exit 2)
	$(BIN)/dagster asset materialize -m definitions --select '$(CASE)/champion_model' \
		--config-json '{"ops": {"$(CASE)__champion_model": {"config": {"rollback_to": "$(VERSION)", "reason": "$(REASON)"}}}}'

# Months in production on a fresh home, every schedule and sensor ticking through simulated time, faults
# injected (docs/replay.md): make replay CASE=fraud
replay: setup
	@test -n "$(CASE)" || (echo "usage: make replay CASE=<churn|forecast|fraud|triage>" && exit 2)
	$(BIN)/python -m bench.replay --case $(CASE)

serve: setup
	$(BIN)/python -m lakehouse.serving

graph: setup
	$(BIN)/python -m demos.graph

docs: setup
	$(BIN)/python -m lakehouse.churn.schemas > docs/churn_raw_tables.md
	$(BIN)/python -m lakehouse.forecast.schemas > docs/forecast_raw_tables.md

bench: setup
	$(BIN)/python -m bench.churn_scoring
	$(BIN)/python -m bench.platform_overhead
	$(BIN)/python -m bench.forecast_nightly --skus 1000
	$(BIN)/python -m bench.forecast_lookup
	$(BIN)/python -m bench.fraud_latency
	$(BIN)/python -m bench.fraud_outage
	$(BIN)/python -m bench.triage
	$(BIN)/python -m bench.imports

# Each case's public dataset (../shared/realdata) through its documented path; `make realdata CASE=fraud` for one.
realdata: setup
	$(BIN)/python -m bench.realdata $(if $(CASE),--case $(CASE))

clean:
	rm -rf $(LAKEHOUSE_HOME)
