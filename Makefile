# The two commands: `make run` and `make test`. Everything else is a helper for them.
#
# Installs come from the hashed lock files in requirements/ (pip-tools; see docs/operations.md,
# "Dependencies and the lock"): `make run` installs the runtime lock only, `make test` the
# development lock (runtime + test tools, same versions). `make lock` refreshes both locks to the
# newest releases pyproject.toml allows; `make test-latest` runs the suite on those newest
# releases in a separate venv without touching the lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/local.yaml
# The pip that installs the lock (the lock pins everything else, build tools included).
PIP_VERSION := 26.3
LATEST := .venv-latest
LOCK_OPTS := --quiet --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host
PORT   ?= 8000

RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP     := $(VENV)/.dev-stamp

.PHONY: run test checks lint typecheck contracts bench install install-runtime lock test-latest \
	docs clean

# Install one lock file into .venv: exactly its versions, every file checked against its hash,
# then the project itself (editable, built with the locked setuptools, no downloads).
define install_lock
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(1)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
endef

$(RUNTIME_STAMP): requirements/runtime.lock pyproject.toml
	$(call install_lock,requirements/runtime.lock)
	touch $@

$(DEV_STAMP): requirements/dev.lock pyproject.toml
	$(call install_lock,requirements/dev.lock)
	touch $@ $(RUNTIME_STAMP)

install-runtime: $(RUNTIME_STAMP)

install: $(DEV_STAMP)

run: $(RUNTIME_STAMP)
	$(BIN)/propylon serve --config $(CONFIG) --port $(PORT)

test: $(DEV_STAMP)
	@$(MAKE) --no-print-directory checks

# Lint, types, import contracts and the tests, with whatever venv BIN points at.
checks:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

contracts: $(DEV_STAMP)
	$(BIN)/lint-imports

# Re-resolve both locks to the newest releases pyproject.toml allows. The runtime lock is
# seeded from the development lock, so the versions the two share are the same.
lock: $(DEV_STAMP)
	$(BIN)/pip-compile $(LOCK_OPTS) --upgrade --extra dev -o requirements/dev.lock pyproject.toml
	cp requirements/dev.lock requirements/runtime.lock
	$(BIN)/pip-compile $(LOCK_OPTS) -o requirements/runtime.lock pyproject.toml

# The whole suite on the newest releases pyproject.toml allows, in its own venv: breakage
# shows here before a `make lock` brings it into the lock.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST)/bin/python -m pip list --format=freeze > $(LATEST)/versions.txt
	@$(MAKE) --no-print-directory checks BIN=$(LATEST)/bin

bench: $(DEV_STAMP)
	$(BIN)/propylon bench

docs: $(DEV_STAMP)
	$(BIN)/propylon config-docs --output docs/configuration.md

clean:
	rm -rf $(VENV) $(LATEST) .propylon .mypy_cache .pytest_cache .ruff_cache
