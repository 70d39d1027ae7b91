# The two commands a fresh machine needs: `make test` and `make demo`. Everything else they need
# (the virtual environment, the package and its dependencies) they install themselves, at the exact
# versions of requirements-lock.txt (pip constraints: pyproject.toml keeps the compatible ranges).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PA_VENV := .venv-pa
LOCK   := requirements-lock.txt
EXTRAS := all,dev

.PHONY: test lint demo install lock clean-venv perf-analyzer bench-quick

# --no-compile: byte-compiling the ~13 000 .py files of torch and the rest took over a minute of a 2-core
# machine's install; Python compiles what is imported, once, on first use.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c $(LOCK) pip >/dev/null
	$(PY) -m pip install --no-compile -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

test: lint $(PA_VENV)/bin/perf_analyzer
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=15

# Formatting, lint and the dependency graph (the layers in pyproject.toml's [tool.importlinter]).
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

demo: $(STAMP)
	$(PY) -m cityserve demo

clean-venv:
	rm -rf $(VENV)

# Regenerate the lock: a fresh environment installs '.[all,dev]' with the current lock as constraints
# (existing pins stay, new dependencies resolve to their newest compatible version, dropped ones go),
# and its exact versions replace the lock's list; the header comment is kept. See the lock's header.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q -c $(LOCK) pip
	.venv-lock/bin/pip install -q -c $(LOCK) '.[$(EXTRAS)]'
	sed '/^[^#]/,$$d' $(LOCK) > $(LOCK).new
	.venv-lock/bin/pip freeze --all --exclude cityserve | sed 's/+[A-Za-z0-9.]*$$//' >> $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
	@echo "$(LOCK) regenerated: run make test, then commit it with pyproject.toml"

# perf_analyzer in its own environment (tritonclient 2.41.1 carries the binary; the main environment
# has a newer tritonclient). Its two missing libraries come from the nvidia-pytriton wheel.
perf-analyzer: $(PA_VENV)/bin/perf_analyzer
$(PA_VENV)/bin/perf_analyzer: $(STAMP)
	rm -rf $(PA_VENV)
	$(PYTHON) -m venv $(PA_VENV)
	$(PA_VENV)/bin/pip install --no-deps 'tritonclient==2.41.1'
	mkdir -p $(PA_VENV)/lib/pa
	libs=$$($(PY) -c "import nvidia_pytriton.libs as m, os; print(os.path.dirname(m.__file__))" 2>/dev/null || \
	       $(PY) -c "import pytriton, os, glob; print(glob.glob(os.path.join(os.path.dirname(pytriton.__file__), '..', 'nvidia_pytriton.libs'))[0])"); \
	ln -sf $$libs/libb64-*.so.0d $(PA_VENV)/lib/pa/libb64.so.0d; \
	ln -sf $$libs/libcudart-*.so.12* $(PA_VENV)/lib/pa/libcudart.so.12
	mv -f $(PA_VENV)/bin/perf_analyzer $(PA_VENV)/bin/perf_analyzer.bin
	printf '#!/bin/sh\nd=$$(cd "$$(dirname "$$0")/.." && pwd)\nLD_LIBRARY_PATH="$$d/lib/pa:$$LD_LIBRARY_PATH" exec "$$d/bin/perf_analyzer.bin" "$$@"\n' > $(PA_VENV)/bin/perf_analyzer
	chmod +x $(PA_VENV)/bin/perf_analyzer
	$(PA_VENV)/bin/perf_analyzer --help >/dev/null 2>&1 || $(PA_VENV)/bin/perf_analyzer --version
	@echo "perf_analyzer ready: $(PA_VENV)/bin/perf_analyzer"
