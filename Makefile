# The README's commands. Each works on a fresh machine with only Python 3.11: the virtual environment
# is created and the package installed on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,report,hf,io,text,scale,tune]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mmunlearn demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Style (ruff), types (mypy) and the layers of the imports (import-linter, contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

# The quick grid of both scenarios (a few minutes), then its report (open runs/bench/quick/report/index.html).
bench: $(STAMP)
	$(BIN)/mmunlearn bench benchmarks/configs/quick.yaml
	$(BIN)/mmunlearn report runs/bench/quick/results.jsonl --out runs/bench/quick/report

clean:
	rm -rf $(VENV) runs .pytest_cache
