# Crossroads: `make run` and `make test` are all you need. `make help` lists every target.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL := 2

.DEFAULT_GOAL := help
.PHONY: help install run run-prod bench bench-failure train test test-unit validate evaluate content-check content-sync lock clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-15s %s\n", $$1, $$2}'

install: ## create .venv (Python 3.10) and install the locked dependencies; quick when done
	@bash scripts/install.sh

run: install ## train if needed, then start Rasa, the action server and the gateway (web chat on :8000)
	@$(PY) -m bot run

run-prod: install ## the production profile: PostgreSQL, Redis lock store, RabbitMQ events, 2 Rasa replicas, JSON logs, /metrics (docs/production.md)
	@$(PY) -m bot run --profile prod

bench: install ## stock `rasa init` vs this assistant at 1/10/50 conversations, Telegram end to end, then the failure test (reports/bench/)
	@$(PY) -m bot bench

bench-failure: install ## only the load-and-failure test: 50 x 40 Telegram messages, a Rasa replica and PostgreSQL restarted
	@$(PY) -m bot bench --only failure

train: install ## train the model when training data or config changed (shows progress and time)
	@$(PY) -m bot model train

test: install ## the whole suite: unit tests, data validation, test stories, end-to-end web chat
	@$(PY) -m bot model train
	@$(PY) -m pytest

test-unit: install ## only the fast tests (no trained model, no servers)
	@$(PY) -m pytest -m "not slow"

validate: install ## rasa data validate --fail-on-warnings
	@.venv/bin/rasa data validate --fail-on-warnings --data data/nlu data/rules data/stories

evaluate: install ## score intents per language on the held-out split, compare with the accepted model, chart (reports/nlu/); fails on a 2-point drop or safety recall < 1.0
	@$(PY) -m bot nlu evaluate

content-check: install ## per-language coverage of the answers; fails below 100% for launch languages
	@$(PY) -m bot content check

content-sync: install ## copy English answers into domain.yml's responses
	@$(PY) -m bot content sync-domain

lock: install ## re-resolve requirements.in into requirements.lock (then commit it)
	@tmp=$$(mktemp -d) && python3.10 -m venv $$tmp/v 2>/dev/null || $(PY) -m venv $$tmp/v; \
	$$tmp/v/bin/pip install -q -r requirements.in && $$tmp/v/bin/pip check && \
	$$tmp/v/bin/pip freeze --exclude-editable | grep -viE '^(pip|setuptools|wheel)==' > requirements.lock && \
	rm -rf $$tmp && echo "requirements.lock updated"

clean: ## remove trained models, evaluation work files and local databases (keeps .venv, .env, reports)
	rm -rf models reports/nlu/work var .pytest_cache
