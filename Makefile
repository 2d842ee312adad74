# The two commands of the README. Both create .venv and install the project on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MEMBERS ?= 3
WATCH_HUBS ?= 2

.PHONY: install run test lint clean proto

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: install
	$(PY) -m tools.cluster up --members $(MEMBERS) --watch-hubs $(WATCH_HUBS)

test: install
	$(PY) -m pytest -n auto

lint: install
	$(VENV)/bin/ruff check actors proto_schemas etcdz tools tests

proto: install
	$(PY) -m tools.gen_proto

clean:
	rm -rf $(VENV) build *.egg-info
