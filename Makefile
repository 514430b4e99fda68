# The two commands of the README. Both create .venv first when it is missing.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# benchmark sets (llmrouter-9llm/, routerdc-7llm/); override with GRAPHROUTE_DATA=… make bench
export GRAPHROUTE_DATA ?= $(abspath ../shared/data)

.PHONY: demo test env bench

env:
	@bash scripts/env.sh

demo: env
	.venv/bin/graphroute demo --out runs/demo
	@echo "serving the demo router on http://127.0.0.1:8000 (OpenAPI at /docs; Ctrl-C stops; set GRAPHROUTE_API_KEY to enable writes)"
	.venv/bin/graphroute serve runs/demo/router --port 8000

test: env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/python -m pytest -q

bench: env
	.venv/bin/graphroute -v bench routing --out runs/bench
	.venv/bin/graphroute -v bench held-out-tasks --out runs/bench
	.venv/bin/graphroute -v bench users --out runs/bench
	.venv/bin/graphroute -v bench new-llm --out runs/bench
	.venv/bin/graphroute -v bench service --out runs/bench
	.venv/bin/graphroute -v bench scale --out runs/bench
