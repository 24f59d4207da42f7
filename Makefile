# The README's two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel on our machines; GPU users install their CUDA build of torch into .venv first.
TORCH_SPEC ?= torch==2.13.0
EMULATOR := tests/telegram/emulator

.PHONY: run test coverage-packages install dev emulator system-deps lint typecheck clean gpu-wheels faults

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

run: install
	$(BIN)/familiar run

# The Telegram Bot API emulator the end-to-end tests run against (npm, pinned in package.json).
emulator:
	@if [ -f $(EMULATOR)/package.json ]; then \
	  if command -v npm >/dev/null; then \
	    [ -d $(EMULATOR)/node_modules ] || npm install --silent --no-audit --no-fund --prefix $(EMULATOR); \
	  else echo "npm not found: the Telegram end-to-end tests skip (and fail in CI)"; fi; \
	fi

# Programs the tests need, as command:Debian-package. espeak-ng makes the speech the voice tests
# transcribe; ffmpeg decodes M4A files and video notes; systemd-analyze checks the unit; node and
# npm run the Telegram emulator. Installed where missing (as root, with apt-get); elsewhere they are
# named, and the tests that need them skip in `make test` (the run ends with a line saying so)
# but fail in CI, which sets FAMILIAR_TEST_REQUIRE=all (tests/conftest.py).
SYSTEM_DEPS := espeak-ng:espeak-ng ffmpeg:ffmpeg systemd-analyze:systemd node:nodejs npm:npm
system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  command -v $${dep%%:*} >/dev/null || missing="$$missing $${dep##*:}"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	   apt-get install -y -qq --no-install-recommends $$missing >/dev/null) || \
	  echo "not installed:$$missing; the tests that need them skip (and fail in CI)"; }

# Coverage (line and branch, settings in pyproject.toml): the per-module table, then one line per
# package; pytest fails when the total is below [tool.coverage.report] fail_under.
PACKAGES := bot agents memory jobs
# Two processes, each test file in one of them (its module fixtures, the emulator among them, are
# set up once): the end-to-end tests mostly wait on their daemons, so on CI's two cores the suite
# takes about 9.5 minutes instead of 15. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
COV := $(PACKAGES:%=--cov=%) --cov-branch --cov-report=term
PACKAGE_TABLE = printf '%-8s %s\n' package "line+branch cover"; \
	for p in $(PACKAGES); do \
	  printf '%-8s %s%%\n' $$p "$$($(BIN)/coverage report --include="$$p/*" --format=total --fail-under=0)"; \
	done

test: dev system-deps emulator
	$(BIN)/ruff check bot agents memory jobs tests bench
	$(BIN)/ruff format --check bot agents memory jobs tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(COV); status=$$?; $(PACKAGE_TABLE); exit $$status

# The per-package table again, from the data the last `make test` left in .coverage.
coverage-packages:
	@$(PACKAGE_TABLE)

# The fault campaign (bench/faults.py): the real daemon killed, cut off and starved at random points.
faults: dev emulator
	$(BIN)/python bench/faults.py --trials $${TRIALS:-50} --seed $${SEED:-1}

lint: dev
	$(BIN)/ruff check bot agents memory jobs tests bench

typecheck: dev
	$(BIN)/mypy

# Wheels the GPU machine lacks (it has no network), for bench/gpu_figures.sh.
gpu-wheels: install
	$(BIN)/pip download --quiet --only-binary=:all: --no-deps --dest .wheels loguru

clean:
	rm -rf $(VENV) $(EMULATOR)/node_modules .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
