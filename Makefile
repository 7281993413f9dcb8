# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The demo is lighter than `bench run`'s defaults (64 px, 20 epochs) so that all 132 cells
# (11 methods x 4 rates x 3 seeds) finish within 10 minutes on 2 CPU cores
# (6 min 18 s and 7 min 41 s measured).
demo: $(STAMP)
	$(BIN)/bench run --methods all --rates 0.2,0.4,0.6,0.8 --experiment demo \
		--epochs 8 --set dataset_options.synthetic-retina.image_size=32 \
		--executor process --workers 2
	$(BIN)/bench report --experiment demo --out reports/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) results/mlflow.db results/artifacts results/cache reports/demo
