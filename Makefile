# The two commands: `make run` starts the product, `make test` runs the whole suite.
# Both set up everything they need first (see scripts/setup.sh).
.PHONY: run cluster test setup bench

setup:
	@scripts/setup.sh $(if $(or $(OPENAI_API_KEY),$(OPENAI_BASE_URL)),,--model)

run: setup
	.venv/bin/python -m stack run

# The same on a 3-node Restate cluster (cluster/) with WORKERS workers: docs/deploy.md.
WORKERS ?= 4
cluster: setup
	.venv/bin/python -m stack run --nodes 3 --workers $(WORKERS)

test:
	@scripts/setup.sh --model --browser
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m bench
