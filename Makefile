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

# Which build of vLLM (and torch) to install: cuda where nvidia-smi lists a GPU, else cpu. Set it to choose:
# `make install ACCELERATOR=cpu` (or the environment variable). Each has its files in install/<accelerator>/.
ifndef ACCELERATOR
ACCELERATOR := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo cuda || echo cpu)
endif
ifeq ($(filter $(ACCELERATOR),cpu cuda),)
$(error ACCELERATOR=$(ACCELERATOR): expected cpu or cuda)
endif
INSTALL := install/$(ACCELERATOR)
# The venv's own pip (Python 3.11's 23.2) is replaced first: 26.3 resolves the install's set in under half the time.
PIP_VERSION := 26.3
UV_VERSION := 0.13.10
UV_FLAGS ?=

.PHONY: install repro test plan constraints dvc.yaml

install: $(VENV)/.installed-$(ACCELERATOR)

# One stamp per accelerator. Switching makes the venv anew (the other build's CUDA-only packages go with it); a
# vLLM build installed by hand is uninstalled before pip runs; the install ends with a check
# (selfalign/core/install.py): the venv never holds both builds. The --no-deps step runs -qq: setuptools warns at
# every editable install that a folder named like the package may shadow it. Bytecode is compiled once after pip,
# on every core (pip compiles file by file, one core): every stage's process imports from it. -qq, 2>/dev/null
# and || true: a few packages ship files that are not Python 3 source (test data, templates), which pip skips too.
$(VENV)/.installed-$(ACCELERATOR): requirements.txt install/vllm.txt install/no-deps.txt $(wildcard $(INSTALL)/*.txt) \
                                   pyproject.toml
	@for stamp in $(VENV)/.installed-*; do if [[ -e $$stamp && $$stamp != $@ ]]; then \
	  echo "install: $(VENV) holds the $${stamp##*-} install: making it anew for $(ACCELERATOR)"; rm -rf $(VENV); fi; done
	python3 -m venv $(VENV)
	rm -f $(VENV)/.installed $(VENV)/.installed-*
	$(PY) -m pip install -q pip==$(PIP_VERSION) $(PIPQ)
	$(PY) -m selfalign.core.install prepare $(ACCELERATOR)
	$(PY) -m pip install -q --no-compile -r $(INSTALL)/requirements.txt -c $(INSTALL)/constraints.txt $(PIPQ)
	$(PY) -m pip install -qq --no-compile --no-deps --no-build-isolation -r $(INSTALL)/no-deps.txt -e . $(PIPQ)
	$(PY) -m selfalign.core.install check $(ACCELERATOR)
	$(PY) -m compileall -qq -j 0 $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') 2>/dev/null || true
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

# Regenerate install/*/constraints.txt, the full frozen sets, from the requirements they list at the top, with
# uv's resolver for Linux x86_64 and Python 3.11 against PyPI. Versions already pinned there are kept where
# they still fit; `make constraints UV_FLAGS=--upgrade` moves them all to the newest that fit.
# tests/test_install.py checks that pip resolves each set from PyPI alone.
constraints: install
	$(PY) -m pip install -q uv==$(UV_VERSION) $(PIPQ)
	for a in cpu cuda; do \
	  $(VENV)/bin/uv pip compile -q install/$$a/requirements.txt --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 --annotation-style line \
	    --custom-compile-command "make constraints" $(UV_FLAGS) -o install/$$a/constraints.txt; \
	done
