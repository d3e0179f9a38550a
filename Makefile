# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv bench clean

$(BIN)/ordersync: pyproject.toml
	@test -n "$(PYTHON)" || { echo "ordersync needs Python 3.11 or 3.12 (durable-rules does not import on 3.13)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/ordersync

demo: venv
	$(BIN)/ordersync rules check rules
	$(BIN)/ordersync demo

test: venv
	$(BIN)/ordersync rules check rules
	$(BIN)/ordersync rules test rules
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/rules_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
