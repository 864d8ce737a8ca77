# Unlearning replication suite. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# run parameters come from the command line (make reproduce PAPER=unsir SEEDS=0,1): a variable of the same name
# inherited from the environment (an unrelated exported DEVICE or THREADS) is ignored, with a warning
$(foreach v,PAPER PROFILE SEEDS DEVICE EXECUTOR WORKERS THREADS SOURCE FORCE,$(if $(filter environment,$(origin $(v))),\
  $(warning $(v) is set in the environment and ignored here; give it on the command line: make ... $(v)=...)\
  $(eval undefine $(v))))
PAPER   ?=
PROFILE ?= auto
SEEDS   ?=
DEVICE  ?= auto
EXECUTOR ?= local
WORKERS ?=
THREADS ?=
SOURCE  ?= auto
FORCE   ?=
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    ?= .venv
PY      := $(VENV)/bin/python
MATHJAX := book/_assets/mathjax/tex-chtml.js
MATHJAX_VERSION := 3.2.2
FMNIST  := /usr/share/datasets/fashion-mnist
# The run parameters reach the commands as environment variables, read by the shell ("$$PAPER"), never pasted
# into shell code by make: a value with quotes, backticks or $(...) is passed on as text and checked by the CLI.
RUN_VARS := PAPER PROFILE SEEDS DEVICE EXECUTOR WORKERS THREADS OFFICIAL PUSH SOURCE
export $(RUN_VARS)
# make itself expands a value holding '$$' (a command-line or environment variable is recursive): refuse it unread
$(foreach v,$(RUN_VARS) JOBS,$(if $(findstring $$,$(value $(v))),$(error $(v): a value containing '$$' is not accepted)))
# make test: JOBS test processes at once (pytest-xdist workers, notebooks side by side), each with its share of
# the cores as its torch threads, fixed so that every test sees one count whatever runs beside it. JOBS is checked
# by make's own functions (no shell sees it before it is known to be a number)
NPROC   := $(shell nproc 2>/dev/null || echo 1)
JOBS    ?= $(NPROC)
ifneq ($(words $(JOBS))$(filter 0%,$(JOBS))$(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst \
      6,,$(subst 7,,$(subst 8,,$(subst 9,,$(JOBS))))))))))),1)
  $(error JOBS=$(JOBS): expected a positive integer, the test processes at once (default: the cores, $(NPROC)))
endif
TEST_THREADS := $(shell t=$$(( $(NPROC) / $(JOBS) )); echo $$(( t > 0 ? t : 1 )))
TEST_ENV = UNLEARNLIB_THREADS=$(TEST_THREADS) OMP_NUM_THREADS=$(TEST_THREADS)
# --opt=VALUE: a value that starts with '-' (THREADS=-1) is the option's value, checked by the CLI, not an option
RUN_ARGS = --profile="$$PROFILE" --seeds="$$SEEDS" --device="$$DEVICE" \
           --executor="$$EXECUTOR" --workers="$$WORKERS" --threads="$$THREADS"
PAPERS  := $(notdir $(basename $(wildcard unlearnlib/papers/*.yaml)))
# PAPER is checked before `setup` (a typo costs no virtual environment); '%' would be a pattern to make's filter
PAPER_OK = $(and $(filter 1,$(words $(PAPER))),$(if $(findstring %,$(PAPER)),,$(filter $(PAPER),$(PAPERS))))

.PHONY: help setup reproduce reproduce-all ladder plan book reference check-reference publish test test-unit test-notebooks test-book lint benchmarks clean clean-cache \
        check-paper

help:  ## this list
	@echo "Unlearning replication suite"
	@echo
	@echo "  make reproduce PAPER=<id> [PROFILE=auto|paper|fast|cpu|smoke] [SEEDS=1,2] [DEVICE=auto|cpu|cuda]"
	@echo "                 [EXECUTOR=local|ray] [WORKERS=N] [THREADS=N]   (RAY_ADDRESS=<head>:6379 joins a cluster)"
	@echo "  make book [SOURCE=auto|reference|local]   (the reader's command: trains nothing)"
	@echo "  make reference PAPER=<id>|all [PROFILE=cpu] [FORCE=1];  make check-reference [PAPER=<id>]"
	@echo "  make publish [PUSH=1]   (PUSH=1: also push gh-pages to origin)"
	@echo "  make test"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'
	@echo
	@echo "papers: $$(ls unlearnlib/papers/*.yaml | xargs -n1 basename | sed 's/.yaml//' | tr '\n' ' ')"

setup: $(VENV)/.installed $(MATHJAX) data  ## create .venv (pinned packages), local MathJax, Fashion-MNIST

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: python3 not found"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(MATHJAX):
	@mkdir -p .cache/npm book/_assets
	cd .cache/npm && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null
	rm -rf book/_assets/mathjax .cache/npm/package
	tar -xzf .cache/npm/mathjax-$(MATHJAX_VERSION).tgz -C .cache/npm
	mv .cache/npm/package/es5 book/_assets/mathjax
	@test -f $@

data:  ## Fashion-MNIST from Debian's dataset-fashion-mnist (the cpu/smoke profiles' data)
	@if [ ! -d $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' or set UNLEARNLIB_DATA"; exit 1; fi; \
	fi

check-paper:
	@$(if $(PAPER_OK),true,echo "error: PAPER=$$PAPER: expected one of: $(PAPERS)" >&2; exit 2)

reproduce: check-paper setup  ## run PAPER end to end (notebook -> book/papers/) and build the book
	@$(PY) -m unlearnlib.cli reproduce --paper="$$PAPER" $(RUN_ARGS)

ladder: setup  ## the benchmark's scale ladder: its ladder-* profiles one after another (EXECUTOR=ray WORKERS=2 for two cells at once); then make book
	@$(PY) -m unlearnlib.cli ladder --executor="$${EXECUTOR:-local}" --workers="$$WORKERS" --threads="$$THREADS"

plan: check-paper  ## the cells of PAPER's run in PROFILE by kind and its estimated time per device (runs nothing)
	@$(PY) -m unlearnlib.cli plan --paper="$$PAPER" --profile="$$PROFILE"

reproduce-all: setup  ## every paper in PROFILE (side by side with EXECUTOR=ray), then the book
	@$(PY) -m unlearnlib.cli reproduce-all $(RUN_ARGS)

book: setup  ## every chapter from your finished runs, else our reference runs (SOURCE=reference: ours only); trains nothing
	@$(PY) -m unlearnlib.cli book --source="$$SOURCE"

reference: setup  ## PAPER=<id>|all: copy a finished local run into reference/ (refuses smoke, a dirty tree unless FORCE=1, another config)
	@$(PY) -m unlearnlib.cli reference --paper="$$PAPER" --profile="$$PROFILE" $(if $(filter 1,$(FORCE)),--force)

check-reference: setup  ## list per paper what changed (config, code fingerprints) since its reference run
	@$(PY) -m unlearnlib.cli check-reference --paper="$${PAPER:-all}"

publish: setup  ## build the reference book (every chapter from reference/), write book.tar.gz, commit it to gh-pages; PUSH=1 also pushes it
	@$(PY) -m unlearnlib.cli publish --source=reference $(if $(filter 1,$(PUSH)),--push)

test: setup lint test-unit test-notebooks test-book  ## ruff, unit tests, nbval (smoke) over every notebook, strict book build

test-unit:  # files spread over JOBS workers, a file's tests on one worker (its module fixtures built once)
	$(TEST_ENV) $(PY) -m pytest tests -q -n $(JOBS) --dist loadfile

test-notebooks:  # nbval runs each notebook as committed: profile = smoke
	$(TEST_ENV) $(PY) -m pytest --nbval-lax notebooks -q -p no:cacheprovider -n $(JOBS) --dist loadfile

test-book:
	$(TEST_ENV) $(PY) -m unlearnlib.cli book-test --dir build/book-test --jobs $(JOBS)

lint:  ## ruff
	$(VENV)/bin/ruff check unlearnlib tests scripts benchmarks

benchmarks: setup  ## performance benchmarks -> results/benchmarks/ (~30 min on 2 cores; OFFICIAL=<class_forgetting checkout>; the cpu runs' split read from results/*/cpu)
	$(PY) benchmarks/deep_unlearning.py $(if $(OFFICIAL),--official "$$OFFICIAL")
	$(PY) benchmarks/methods.py
	$(PY) benchmarks/concurrency.py
	$(PY) benchmarks/fit_overhead.py
	$(PY) benchmarks/cpu_costs.py
	$(PY) benchmarks/throughput.py --commit
	$(PY) benchmarks/plan_projection.py
	$(PY) benchmarks/suite.py --parts test $(foreach d,$(wildcard results/*/cpu),--from-run $(d))

clean:  ## remove built book, executed notebooks and scratch builds (keeps data, cache and results)
	rm -rf book/_build book/papers book/_generated book/_toc.yml build

clean-cache: $(VENV)/.installed  ## remove the cell store (UNLEARNLIB_CACHE, default .cache/unlearnlib): the next run computes everything
	$(PY) -m unlearnlib.cli clean-cache
