# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project into it first: the demo only what it imports
# (the core and the [text] extra, for KEDR's prior-text encoder), the tests everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[text]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.demo-installed

# The demo is lighter than `bench run`'s defaults (64 px, 20 epochs): all 132 cells
# (11 methods x 4 rates x 3 seeds) at 32 px and 8 epochs on two worker processes.
demo: $(VENV)/.demo-installed
	$(BIN)/bench run --methods all --rates 0.2,0.4,0.6,0.8 --experiment demo \
		--epochs 8 --set dataset_options.synthetic-retina.image_size=32 \
		--executor process --workers 2
	$(BIN)/bench report --experiment demo --out reports/demo

test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) results/mlflow.db results/artifacts results/cache reports/demo
