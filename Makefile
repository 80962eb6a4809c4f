# Two commands from a fresh clone: `make demo` and `make test`. Both build .venv on first use and
# reuse it until a pyproject.toml or requirements file changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
PACKAGES := core plugins/memory plugins/sqlite plugins/redis plugins/postgres contract_tests
SOURCES := core/src plugins/memory/src plugins/sqlite/src plugins/redis/src plugins/postgres/src \
	contract_tests/src \
	examples/third_party_backend/src
# The MCP end-to-end tests (core/tests/mcp) run the SDK's newest 1.x in a venv of its own.
MCP1_VENV := .venv-mcp1
MCP1_STAMP := $(MCP1_VENV)/.installed
MCP1_PACKAGES := core plugins/memory plugins/sqlite plugins/redis plugins/postgres
# `make demo` needs a runtime only: the core, the embedded default and memory, in a venv of its own
# (requirements/demo.txt), so a first `make demo` does not build the development toolchain.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
DEMO_PACKAGES := core plugins/memory plugins/sqlite

.PHONY: demo test lint typecheck unit contract bench clean

$(STAMP): requirements/dev.txt $(addsuffix /pyproject.toml,$(PACKAGES))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation \
		$(addprefix -e ,$(PACKAGES))
	@touch $@

$(MCP1_STAMP): requirements/mcp1.txt $(addsuffix /pyproject.toml,$(MCP1_PACKAGES))
	@test -x $(MCP1_VENV)/bin/python || $(PYTHON) -m venv $(MCP1_VENV)
	$(MCP1_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/mcp1.txt
	$(MCP1_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation \
		$(addprefix -e ,$(MCP1_PACKAGES))
	@touch $@

$(DEMO_STAMP): requirements/demo.txt $(addsuffix /pyproject.toml,$(DEMO_PACKAGES))
	@test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/demo.txt
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation \
		$(addprefix -e ,$(DEMO_PACKAGES))
	@touch $@

demo: $(DEMO_STAMP)
	@mkdir -p build
	$(DEMO_VENV)/bin/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(SOURCES)

# The documentation site (mkdocs.yml), strict: a broken link, anchor or reference fails the build.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# The docs site's browser test (tests/test_docs_site.py) reads the built site in Debian's headless
# chromium: installed here with apt-get when missing (as root, else through sudo). Where that
# cannot be done, make goes on and the test is skipped with that reason (a failure under CI=true).
.PHONY: .browser
.browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ command -v apt-get >/dev/null 2>&1 && \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo="sudo -n"; fi && \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium >/dev/null; } || \
	echo "make .browser: chromium could not be installed; the browser test will say so" >&2

# Two workers (pytest-xdist): most of the unit run waits on servers and subprocesses. loadscope
# keeps each module on one worker, so a module's setup (wheels, servers, a docs build) runs once.
# Test names must not vary between processes (nothing random in a parameter's id).
unit: $(STAMP) $(MCP1_STAMP) .browser
	$(BIN)/pytest -n 2 --dist loadscope

# The contract suite through the payload middleware: encryption, compression, and both stacked
# (compression outermost), with a public test key. `make test` runs them on the sessionstore-fast
# profile (both stacked on SQLite; Redis in plugins/redis/tests/test_redis_contract_middleware.py);
# `make long` runs every combination at full size.
CONTRACT_KEYS := SESSIONSTORE_ENCRYPTION_KEYS=1ohJgZjND7a72iLUQbp1PaZtgVM49oY2r9QklQqzJUI=,yi2zwsvmrFylJVZbg--Ihgiz-CZ89voN62sQoNim3nE=
ENCRYPTED := --sessionstore-middleware sessionstore.encryption:EncryptionMiddleware.from_environment
COMPRESSED := --sessionstore-middleware sessionstore.compression:CompressionMiddleware
# PostgreSQL runs get a fresh database, dropped afterwards: the command's {url} names it
# (plugins/postgres/tests/postgres_servers.py finds or starts the server).
IN_FRESH_POSTGRES := $(BIN)/python plugins/postgres/tests/postgres_servers.py
PROTECTED_CONTRACT := $(CONTRACT_KEYS) $(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract
PROTECTED_POSTGRES_CONTRACT := $(CONTRACT_KEYS) $(IN_FRESH_POSTGRES) \
	$(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract

# The contract suite exactly as a backend author runs it, on every backend in the repository. Each
# run is a process of its own on data of its own (memory, its own SQLite file, a fresh PostgreSQL
# database), so they run two at a time (the machine's two cores), the longest first: each run's
# output is printed whole when it ends (--output-sync), and a failed run fails `make contract`.
CONTRACT_RUNS := contract-postgres contract-sqlite contract-protected-postgres \
	contract-protected-sqlite contract-memory contract-memory-url contract-encrypted \
	contract-compressed contract-stacked
.PHONY: contract $(CONTRACT_RUNS)
contract: $(STAMP)
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(CONTRACT_RUNS)

contract-memory: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract --sessionstore-backend memory
contract-memory-url: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract --sessionstore-backend memory://contract
contract-sqlite: $(STAMP)
	@mkdir -p build && rm -f build/contract.db build/contract.db-wal build/contract.db-shm
	$(BIN)/pytest -p no:cacheprovider --pyargs sessionstore_contract --sessionstore-backend sqlite:///build/contract.db
contract-postgres: $(STAMP)
	$(IN_FRESH_POSTGRES) $(BIN)/pytest -p no:cacheprovider \
		--pyargs sessionstore_contract --sessionstore-backend '{url}?synchronous_commit=off'
contract-encrypted: $(STAMP)
	$(PROTECTED_CONTRACT) --sessionstore-backend memory://protected --hypothesis-profile sessionstore-fast $(ENCRYPTED)
contract-compressed: $(STAMP)
	$(PROTECTED_CONTRACT) --sessionstore-backend memory://protected --hypothesis-profile sessionstore-fast $(COMPRESSED)
contract-stacked: $(STAMP)
	$(PROTECTED_CONTRACT) --sessionstore-backend memory://protected --hypothesis-profile sessionstore-fast $(ENCRYPTED) $(COMPRESSED)
contract-protected-sqlite: $(STAMP)
	@mkdir -p build && rm -f build/protected.db build/protected.db-wal build/protected.db-shm
	$(PROTECTED_CONTRACT) --sessionstore-backend sqlite:///build/protected.db --hypothesis-profile sessionstore-fast $(ENCRYPTED) $(COMPRESSED)
contract-protected-postgres: $(STAMP)
	$(PROTECTED_POSTGRES_CONTRACT) --sessionstore-backend '{url}?synchronous_commit=off' \
		--hypothesis-profile sessionstore-fast $(ENCRYPTED) $(COMPRESSED)

test: lint typecheck docs unit contract

# An sdist and a wheel of every distribution, as they would be published, into dist/. Each wheel is
# built from its sdist, so a file missing from an sdist fails here. tests/test_distributions.py
# builds them the same way and installs them into fresh virtual environments.
.PHONY: dist
dist: $(STAMP)
	rm -rf dist
	for package in $(PACKAGES); do \
		$(BIN)/python -m build --no-isolation --outdir dist $$package || exit 1; \
	done

# The peers bench_redis.py measures against. If they cannot be installed, the stamp is not
# written (the next `make bench` tries again) and bench_redis.py says which peer it skipped.
$(BENCH_STAMP): requirements/bench.txt $(STAMP)
	@if $(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt; \
	then touch $@; \
	else echo "make bench: requirements/bench.txt not installed; the peers will be skipped" >&2; fi

# Tests at a size too slow for `make test`: the CLI's migration of 100,000 sessions, SQLite to Redis
# and back, and SQLite to PostgreSQL to Redis (make test runs the same tests at 20,000); the
# example backend's wheel through the whole contract suite with Hypothesis's default profile, as
# its CI would run it, and `sessionstore check`'s whole-suite tests on SQLite and Redis likewise
# (make test runs them with the suite's sessionstore-fast profile).
.PHONY: long
long: $(STAMP)
	SESSIONSTORE_MIGRATE_SESSIONS=100000 $(BIN)/pytest -p no:cacheprovider \
		plugins/redis/tests/test_cli_redis.py -k migrate_many_sessions -s
	SESSIONSTORE_MIGRATE_SESSIONS=100000 $(BIN)/pytest -p no:cacheprovider \
		plugins/postgres/tests/test_cli_postgres.py -k migrate_many_sessions -s
	SESSIONSTORE_FULL_CONTRACT=1 $(BIN)/pytest -p no:cacheprovider \
		tests/test_distributions.py -k the_example_backend_passes_the_contract_suite
	@mkdir -p build
	for middleware in "$(ENCRYPTED)" "$(COMPRESSED)" "$(ENCRYPTED) $(COMPRESSED)"; do \
		rm -f build/protected.db build/protected.db-wal build/protected.db-shm; \
		$(PROTECTED_CONTRACT) --sessionstore-backend memory://protected $$middleware || exit 1; \
		$(PROTECTED_CONTRACT) --sessionstore-backend sqlite:///build/protected.db $$middleware || exit 1; \
		$(PROTECTED_POSTGRES_CONTRACT) --sessionstore-backend '{url}?synchronous_commit=off' \
			$$middleware || exit 1; \
	done
	SESSIONSTORE_FULL_CONTRACT=1 $(BIN)/pytest -p no:cacheprovider \
		plugins/redis/tests/test_redis_contract_middleware.py \
		core/tests/test_cli.py::test_check_runs_the_contract_suite_and_leaves_other_data_alone \
		plugins/redis/tests/test_cli_redis.py::test_check_touches_nothing_but_its_scratch_namespaces

# Speed comparisons, not tests: each prints both sides and their ratio, measured in one run.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_sqlite.py
	$(BIN)/python bench/bench_redis.py
	$(BIN)/python bench/bench_postgres.py
	$(BIN)/python bench/bench_mcp.py
	$(BIN)/python bench/bench_middleware.py
	$(BIN)/python bench/bench_push.py

clean:
	rm -rf $(VENV) $(MCP1_VENV) $(DEMO_VENV) dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
