# Two commands from a fresh clone: `make demo` and `make test`. Both build .venv on first use and
# reuse it until a pyproject.toml or requirements file changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
PACKAGES := core plugins/memory plugins/sqlite plugins/redis contract_tests
SOURCES := core/src plugins/memory/src plugins/sqlite/src plugins/redis/src contract_tests/src

.PHONY: demo test lint typecheck unit contract bench clean

$(STAMP): requirements/dev.txt $(addsuffix /pyproject.toml,$(PACKAGES))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation \
		$(addprefix -e ,$(PACKAGES))
	@touch $@

demo: $(STAMP)
	@mkdir -p build
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(SOURCES)

unit: $(STAMP)
	$(BIN)/pytest

# The contract suite exactly as a backend author runs it, on every backend in the repository.
contract: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract --sessionstore-backend memory
	$(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract --sessionstore-backend memory://contract
	@mkdir -p build && rm -f build/contract.db build/contract.db-wal build/contract.db-shm
	$(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract --sessionstore-backend sqlite:///build/contract.db

test: lint typecheck unit contract

# The peers bench_redis.py measures against. If they cannot be installed, the stamp is not
# written (the next `make bench` tries again) and bench_redis.py says which peer it skipped.
$(BENCH_STAMP): requirements/bench.txt $(STAMP)
	@if $(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt; \
	then touch $@; \
	else echo "make bench: requirements/bench.txt not installed; the peers will be skipped" >&2; fi

# Speed comparisons, not tests: each prints both sides and their ratio, measured in one run.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_sqlite.py
	$(BIN)/python bench/bench_redis.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
