# The shop: one entry point for every routine task. `make run` and `make test` are all a new
# user needs; both create the environment themselves (uv + the committed uv.lock).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv comes from PATH when present, else it is bootstrapped into .tools/ with the system Python.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python
REPLICAS ?= 1

.PHONY: help install protos lint test run bench chaos k8s clean

help:
	@echo "make run        start the five services and the gateway on http://127.0.0.1:8000 (REPLICAS=2 for two of each)"
	@echo "make test       install everything and run the whole test suite"
	@echo "make lint       buf lint + ruff (check and format) + mypy + bandit"
	@echo "make protos     regenerate libs/shop/*/v1 from protos/"
	@echo "make bench      measure the shop against a bare baseline (ARGS='--seconds 15' passes options)"
	@echo "make chaos      the longer invariant runs: concurrency tests 20x, 500 stock-model machines, the fault campaign over SEEDS seeds (20)"
	@echo "make k8s        render the Kustomize overlays into var/k8s/"

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

.venv/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

install: .venv/.installed

protos: install
	$(PY) scripts/gen_protos.py

lint: install
	$(PY) -m scripts.lint

test: install
	$(PY) -m scripts.test

run: install
	$(PY) -m scripts.run_local --replicas $(REPLICAS)

bench: install
	$(PY) -m scripts.bench $(ARGS)

# Longer than `make test` (which runs each of these once / 25 machines / 2 seeds). REPEAT, EXAMPLES
# and SEEDS (a count, or a comma-separated list of seeds to reproduce) override. Both parts run;
# the target fails when either does.
chaos: install
	@status=0; \
	CONCURRENCY_REPEAT=$(or $(REPEAT),20) STOCK_MODEL_EXAMPLES=$(or $(EXAMPLES),500) $(PY) -m pytest -q -p no:cacheprovider \
		tests/invariants/test_checkout_concurrency.py services/catalog/tests/test_stock_model.py || status=1; \
	CHAOS_SEEDS=$(or $(SEEDS),20) $(PY) -m pytest -q -s -p no:cacheprovider tests/chaos || status=1; \
	exit $$status

k8s: install
	$(PY) scripts/render_k8s.py

clean:
	rm -rf .venv .tools var .pytest_cache
