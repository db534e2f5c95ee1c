# postier — see README.md. Every target creates/updates .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

.PHONY: run test lint bench fuzz clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## serve on development ports with ./postier.toml, written on the first run
## (domain example.test, data in ./data, a demo account whose login it prints)
run: $(STAMP)
	@test -f postier.toml || $(VENV)/bin/postier init --dev --demo --domain example.test
	$(VENV)/bin/postier -c postier.toml serve

## the whole test suite; first the Debian tools it drives (scripts/install-deps:
## installed as root, else the tests needing them are skipped with the reason)
test: $(STAMP)
	@scripts/install-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

## ruff (format check + lint) and mypy --strict
lint: $(STAMP)
	$(VENV)/bin/ruff format --check postier tests bench
	$(VENV)/bin/ruff check postier tests bench
	$(VENV)/bin/mypy

## coverage-guided fuzzing (atheris), one target at a time, FUZZ_SECONDS each;
## FUZZ_TARGETS="smtp imap" picks targets (see tests/fuzz/__main__.py, docs/development.md)
fuzz: $(STAMP)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m tests.fuzz $(FUZZ_TARGETS)

## benchmarks against peers run side by side (see bench/README.md)
bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
