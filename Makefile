# Two commands set everything up on a fresh machine:
#   make demo   the whole pipeline on local data (NLBSE'24 facebook/react), no network
#   make test   the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ISSUELAB_DATA ?= $(abspath ../shared/data)
export ISSUELAB_DATA

.PHONY: demo test test-fast test-slow lint bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,lora,embed,serve,annotate,report]'
	touch $@

demo: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not torch"

# The slow tests also cover the llama.cpp backend; llama-cpp-python builds from source where no
# wheel exists (minutes, once: pip caches the wheel).
$(BIN)/.installed-llamacpp: $(BIN)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,lora,embed,serve,annotate,report,llamacpp]'
	touch $@

test-slow: $(BIN)/.installed-llamacpp
	$(BIN)/python -m pytest -q -m slow

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/nlbse24.py --engine tfidf --json docs/results/nlbse24-tfidf.json

clean:
	rm -rf $(VENV) work
