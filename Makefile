# `make reproduce` and `make test` create the environment when it is missing, then run.
PYTHON ?= python3
VENV   ?= .venv
PAPER  ?= all
QUICK  ?= 0
SEEDS  ?=
FORCE  ?= 0
ARGS   ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Use the local data mirror when it sits beside the checkout (as on the CI machines).
ifneq ($(wildcard ../shared/data),)
export REPRO_DATA_MIRROR ?= $(abspath ../shared/data)
endif

.PHONY: env reproduce report test test-fast clean-env help

help:
	@echo "make reproduce [PAPER=mbgmn_tf|fgnn|agnn|mpm|gcsan] [QUICK=1] [SEEDS=0,1,2] [FORCE=1]"
	@echo "                  plan, run (resumable, shortest first) and write runs/REPORT.md"
	@echo "make reproduce QUICK=1   every paper on a shortened schedule (<= 15 min on 2 cores): try this first"
	@echo "make report              runs/REPORT.md from existing runs, and README tables from results/"
	@echo "make test                every test"
	@echo "make env                 only create $(VENV)"

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade-strategy only-if-needed -r requirements.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/python -m common.reproduce '$(PAPER)' --quick '$(QUICK)' $(if $(SEEDS),--seeds '$(SEEDS)') --force '$(FORCE)' $(ARGS)

report: $(STAMP)
	$(BIN)/python -m common.reproduce '$(PAPER)' --quick '$(QUICK)' --report-only
	$(BIN)/python -m common.report --readmes

# TensorFlow's disable_v2_behavior() is process-wide: the TF1 paper runs in its own pytest process.
test: $(STAMP)
	$(BIN)/python -m pytest tests common agnn fgnn mpm gcsan
	$(BIN)/python -m pytest mbgmn_tf || [ $$? -eq 5 ]  # 5: no tests collected yet

clean-env:
	rm -rf $(VENV)
