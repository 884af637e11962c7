# Quick start: `make demo` and `make test`; each sets itself up on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.bnc-installed

.PHONY: demo test test-all lint bench bench-fpga bench-mcu sparsity-table quantize-table setup clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	bash scripts/setup-system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q --run-slow

bench: $(STAMP)
	$(PY) bench/run.py

bench-fpga: $(STAMP)
	$(PY) bench/fpga.py

bench-mcu: $(STAMP)
	$(PY) bench/mcu.py

# Accuracy against sparsity (README "Sparse training"): trains the four models it lacks (12
# epochs each; 42 to 71 minutes apiece here, two at a time), then compiles and runs them.
sparsity-table: $(STAMP)
	$(PY) examples/sparsity_table.py --teacher-dense

# bnc quantize on the float example (examples/fashion_float.pt), every way (README "Quantizing
# a float model"): accuracy, bytes, host time and Cortex-M4 instructions per row.
quantize-table: $(STAMP)
	$(PY) examples/quantize_table.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build .pytest_cache .hypothesis
