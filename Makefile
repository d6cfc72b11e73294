# User entry points: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test test-slow lint bench bench-relevance bench-control bench-dialogue bench-worldmodel \
	bench-arrcoc bench-planning install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/arrcoc demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: bench-worldmodel bench-arrcoc bench-dialogue bench-planning bench-control bench-relevance

bench-relevance: $(STAMP)
	$(BIN)/python -m benches.relevance

bench-dialogue: $(STAMP)
	$(BIN)/python benches/bench_dialogue.py

bench-worldmodel: $(STAMP)
	$(BIN)/python -m benches.bench_worldmodel

bench-arrcoc: $(STAMP)
	$(BIN)/python benches/bench_arrcoc.py

bench-planning: $(STAMP)
	$(BIN)/python benches/bench_planning.py

# CartPole-v1 learning curves (3 seeds, one after another), the sheeprl peer and the time-to-475
# race against it (need sheeprl in its own venv: SHEEPRL=/path/to/bin/sheeprl, see docs/control.md).
bench-control: $(STAMP)
	for seed in 0 1 2; do $(BIN)/python -m benches.control.learning run --seed $$seed || exit 1; done
	$(BIN)/python -m benches.control.learning report
	$(BIN)/python -m benches.control.peer
	$(BIN)/python -m benches.control.race

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
