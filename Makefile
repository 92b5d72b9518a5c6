# The two commands of the README: `make up` and `make test`. Both bootstrap first (idempotent).
SHELL := /bin/bash
VENV := .venv/bin
# the whole pytest run of `make test` ends within this (seconds; CI allows 90 minutes): SIGINT
# first, so pytest prints what ran and the slowest tests, then SIGKILL a minute later
TEST_TIMEOUT ?= 1500
# pytest's exit 5 (nothing collected) and a run cut by TEST_TIMEOUT are failures, said in words
PYTEST_RC = rc=$$?; case $$rc in \
	0) ;; \
	5) echo "make: pytest collected no tests" >&2; exit 1;; \
	124|137) echo "make: pytest ran past $(TEST_TIMEOUT)s and was stopped" >&2; exit 1;; \
	*) exit $$rc;; esac

.PHONY: up test bootstrap lint typecheck unit integration services bench clean lab lab-down

bootstrap:
	@bash scripts/bootstrap.sh

up: bootstrap
	@bash scripts/up.sh

services: bootstrap
	@bash scripts/services.sh start

# the 3-host Swarm lab on this machine (scripts/lab.sh; README "Many hosts")
lab: bootstrap
	@bash scripts/lab.sh up

lab-down:
	@bash scripts/lab.sh down

lint: bootstrap
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/lint-imports --no-cache

typecheck: bootstrap
	$(VENV)/mypy

unit: bootstrap
	$(VENV)/pytest -q tests/unit; $(PYTEST_RC)

integration: services
	timeout --signal=INT -k 60 $(TEST_TIMEOUT) $(VENV)/pytest -q --durations=15 tests/integration; \
		$(PYTEST_RC)

test: bootstrap services
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/lint-imports --no-cache
	$(VENV)/mypy
	timeout --signal=INT -k 60 $(TEST_TIMEOUT) $(VENV)/pytest -q --durations=15 tests; $(PYTEST_RC)

clean:
	rm -rf .venv .run .mypy_cache .pytest_cache .ruff_cache
