# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv, install torch 2.13.0 first (the CPU build that lies on this
# machine's disk; users with CUDA keep their own torch since pyproject asks for
# torch>=2.4), then the package. A stamp file makes the second run skip installs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_VERSION ?= 2.13.0

.PHONY: demo test install clean smollm2

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[dev,gguf]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rest-mcts demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
