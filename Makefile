# The two commands a fresh machine needs: `make test` and `make demo`. Everything else they need
# (the virtual environment, the package and its dependencies) they install themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo install clean-venv lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

demo: $(STAMP)
	$(PY) -m cityserve demo

clean-venv:
	rm -rf $(VENV)
