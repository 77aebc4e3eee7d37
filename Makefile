# marktrace: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLES ?= datasets/samples
OUT    ?= out

.PHONY: run test setup setup-dev lint typecheck pytest bench train-gpu train-cpu clean

# Serving install (numpy + opencv + onnxruntime, no torch), then read the sample photos.
$(BIN)/marktrace: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $@

setup: $(BIN)/marktrace

run: setup
	$(BIN)/marktrace models verify
	$(BIN)/marktrace batch $(SAMPLES) --out $(OUT)/records.jsonl
	@echo "records written to $(OUT)/records.jsonl"

# Development install: training (torch 2.14.1 from the local wheel cache), service, test and lint tools.
$(VENV)/.dev-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,service,dev]'
	touch $@

setup-dev: $(VENV)/.dev-installed

lint: setup-dev
	$(BIN)/ruff check src models training inference service datasets tests bench

typecheck: setup-dev
	$(BIN)/mypy

pytest: setup-dev
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: setup-dev
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[peers]'
	$(BIN)/python -m bench.recognition --sets clean,worn --engines marktrace,rapidocr,easyocr,tesseract --n 50

train-cpu: setup-dev
	$(BIN)/marktrace train --config cpu --out runs

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache
