# The two commands: `make run` starts the product, `make test` runs the whole suite.
# Both set up everything they need first (see scripts/setup.sh).
.PHONY: run test setup bench

setup:
	@scripts/setup.sh $(if $(or $(OPENAI_API_KEY),$(OPENAI_BASE_URL)),,--model)

run: setup
	.venv/bin/python -m stack run

test:
	@scripts/setup.sh --model --browser
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m bench
