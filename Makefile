# The two commands of the README: `make up` and `make test`. Both bootstrap first (idempotent).
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: up test bootstrap lint typecheck unit integration services bench clean

bootstrap:
	@bash scripts/bootstrap.sh

up: bootstrap
	@bash scripts/up.sh

services: bootstrap
	@bash scripts/services.sh start

lint: bootstrap
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/lint-imports --no-cache

typecheck: bootstrap
	$(VENV)/mypy

unit: bootstrap
	$(VENV)/pytest -q tests/unit

integration: services
	$(VENV)/pytest -q tests/integration

test: bootstrap services
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/lint-imports --no-cache
	$(VENV)/mypy
	$(VENV)/pytest -q tests

clean:
	rm -rf .venv .run .mypy_cache .pytest_cache .ruff_cache
