# The two commands of the README: `make run` and `make test`.
# Both create the virtual environment .venv on first use (and after pyproject.toml changes).

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CORES   ?= 2
# CPU wheel for local runs and CI; clusters install their own torch build.
TORCH   ?= torch==2.13.0
# Debian packages the tests need: a real single-node SLURM (issue 6).
DEBS    := slurmctld slurmd slurm-client munge
# The checkout's Snakefile, wherever make runs (tests/test_recovery.py: `make -f` in a scratch directory).
REPO    := $(dir $(abspath $(firstword $(MAKEFILE_LIST))))
# More snakemake arguments, e.g. make run ARGS="--configfile configs/camels.yaml".
ARGS    ?=
# A run killed on the way (even with kill -9) is taken up again: jobs it left incomplete
# rerun, and a failed job's log is printed, not only its path.
SNAKEMAKE = $(BIN)/snakemake --snakefile $(REPO)Snakefile --cores $(CORES) --rerun-incomplete --show-failed-logs $(ARGS)

.PHONY: run test report install debs clean-results

run: $(STAMP)
	$(BIN)/python -m dm2gal.locks
	$(SNAKEMAKE) all
	$(SNAKEMAKE) --report results/report.html all

test: $(STAMP) debs
	$(BIN)/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

clean-results:
	rm -rf results .snakemake
