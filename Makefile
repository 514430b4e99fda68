# The two commands of the README. Both create .venv first when it is missing.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test env bench

env:
	@bash scripts/env.sh

demo: env
	.venv/bin/graphroute demo --out runs/demo

test: env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python -m pytest -q

bench: env
	.venv/bin/graphroute -v bench routing --out runs/bench
