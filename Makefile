# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install Butler into it (editable, with the test tools) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell $(PYTHON) -c "import hashlib,sys;print(hashlib.sha1(open('pyproject.toml','rb').read()).hexdigest()[:12])")

.PHONY: demo test bench lint schemas clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/butler demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/butler schemas --check
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/run_all.py

schemas: $(STAMP)
	$(BIN)/butler schemas --write

clean:
	rm -rf $(VENV) build dist *.egg-info
