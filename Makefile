# The two commands of the README. Both create .venv and install the project on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MEMBERS ?= 3
WATCH_HUBS ?= 2

.PHONY: install run test lint clean proto etcd3-venv

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: install
	$(PY) -m tools.cluster up --members $(MEMBERS) --watch-hubs $(WATCH_HUBS)

test: install
	@$(MAKE) -s etcd3-venv || echo "warning: could not install python-etcd3; its test will be skipped"
	$(PY) -m pytest -n auto

lint: install
	$(VENV)/bin/ruff check actors proto_schemas etcdz tools tests
	$(VENV)/bin/lint-imports --no-cache

# python-etcd3 (an etcd client from the package index) for tests/actors/test_grpc_api.py; it pins
# an old protobuf, so it has a virtualenv of its own.
etcd3-venv: .venv-etcd3/.installed

.venv-etcd3/.installed:
	$(PYTHON) -m venv .venv-etcd3
	.venv-etcd3/bin/python -m pip install -q 'etcd3==0.12.0' 'protobuf>=3.20,<3.21'
	touch $@

proto: install
	$(PY) -m tools.gen_proto

clean:
	rm -rf $(VENV) .venv-etcd3 build *.egg-info
