# One command each, on a fresh machine:  make demo | make test | make docs | make bench
# (make examples runs every script in examples/ end to end; CI runs test, docs and examples.)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo examples test lint typecheck pytest docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,docs,bench]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) examples/quickstart.py

# distributed_data_parallel.py runs as 2 processes (gloo), launched the way its users launch it.
examples: setup
	@set -e; for f in examples/*.py; do echo "== $$f"; \
	  if [ "$$f" = examples/distributed_data_parallel.py ]; then \
	    PYTHONWARNINGS=error::UserWarning $(VENV)/bin/torchrun --standalone --nproc-per-node 2 $$f; \
	  else $(PY) -W error::UserWarning $$f; fi; done

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(PY) -m pytest -n 2

test: lint typecheck pytest

docs: setup
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) docs/_build build *.egg-info
