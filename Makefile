# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := tests/interop/node_modules/.installed

.PHONY: demo test install node clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The officers' client stack (matrix-js-sdk with its Rust crypto) for the interop test.
node: $(NODE_STAMP)

$(NODE_STAMP): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(STAMP)
	$(BIN)/python -m bridge demo --data demo-data

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) tests/interop/node_modules tests/artifacts
