# One command each, from a fresh clone (needs python3 >= 3.10 and make):
#   make demo    set up .venv, train the offline demo model and tag new sentences
#   make test    set up .venv and run the test suite
#   make lint    set up .venv with the dev tools; ruff (lint, format) and mypy
#   make labelstudio       install Label Studio into its own venv, .venv-labelstudio
#   make test-labelstudio  the tests against the real Label Studio (serve as its ML backend)
# torch: the CPU build (from PyTorch's CPU index) unless nvidia-smi finds a GPU.
# Set TORCH_INDEX= to install torch from your usual index only.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
PY := $(VENV)/bin/python
# Label Studio pins its own Django, requests, pydantic...: its own venv, never .venv.
LABEL_STUDIO ?= label-studio==1.23.2
LS_VENV ?= .venv-labelstudio

.PHONY: demo test lint labelstudio test-labelstudio

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --retries 1)

$(VENV)/.%-installed: $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[$*]"
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m spacy project run demo

test: $(VENV)/.test-installed
	$(PY) -m pytest tests

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

$(LS_VENV)/bin/label-studio:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q "$(LABEL_STUDIO)"

labelstudio: $(LS_VENV)/bin/label-studio

test-labelstudio: $(VENV)/.test-installed $(LS_VENV)/bin/label-studio
	LABEL_STUDIO_BIN=$(abspath $(LS_VENV))/bin/label-studio $(PY) -m pytest tests -m labelstudio -s
