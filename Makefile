# Unlearning replication suite. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PAPER   ?=
PROFILE ?= auto
SEEDS   ?=
DEVICE  ?= auto
EXECUTOR ?= local
WORKERS ?=
THREADS ?=
PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    ?= .venv
PY      := $(VENV)/bin/python
MATHJAX := book/_assets/mathjax/tex-chtml.js
MATHJAX_VERSION := 3.2.2
FMNIST  := /usr/share/datasets/fashion-mnist
# make test: JOBS test processes at once (pytest-xdist workers, notebooks side by side), each with its share of
# the cores as its torch threads, fixed so that every test sees one count whatever runs beside it
NPROC   := $(shell nproc 2>/dev/null || echo 1)
JOBS    ?= $(NPROC)
ifneq ($(shell echo '$(JOBS)' | grep -E '^[1-9][0-9]*$$'),$(JOBS))
  $(error JOBS=$(JOBS): expected a positive integer, the test processes at once (default: the cores, $(NPROC)))
endif
TEST_THREADS := $(shell t=$$(( $(NPROC) / $(JOBS) )); echo $$(( t > 0 ? t : 1 )))
TEST_ENV = UNLEARNLIB_THREADS=$(TEST_THREADS) OMP_NUM_THREADS=$(TEST_THREADS)
RUN_ARGS = --profile "$(PROFILE)" --seeds "$(SEEDS)" --device "$(DEVICE)" \
           --executor "$(EXECUTOR)" --workers "$(WORKERS)" --threads "$(THREADS)"

.PHONY: help setup reproduce reproduce-all book publish test test-unit test-notebooks test-book lint benchmarks clean clean-cache

help:  ## this list
	@echo "Unlearning replication suite"
	@echo
	@echo "  make reproduce PAPER=<id> [PROFILE=auto|paper|cpu|smoke] [SEEDS=1,2] [DEVICE=auto|cpu|cuda]"
	@echo "                 [EXECUTOR=local|ray] [WORKERS=N] [THREADS=N]   (RAY_ADDRESS=<head>:6379 joins a cluster)"
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

reproduce: setup  ## run PAPER end to end (notebook -> book/papers/) and build the book
	@$(PY) -m unlearnlib.cli reproduce --paper "$(PAPER)" $(RUN_ARGS)

reproduce-all: setup  ## every paper in PROFILE (side by side with EXECUTOR=ray), then the book
	@$(PY) -m unlearnlib.cli reproduce-all $(RUN_ARGS)

book: setup  ## build book/_build/html from the executed notebooks
	@$(PY) -m unlearnlib.cli book

publish: setup  ## build the book (every executed chapter), write book.tar.gz, ghp-import to gh-pages (pushed when a remote is set)
	@$(PY) -m unlearnlib.cli publish

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
	$(PY) benchmarks/deep_unlearning.py $(if $(OFFICIAL),--official "$(OFFICIAL)")
	$(PY) benchmarks/methods.py
	$(PY) benchmarks/concurrency.py
	$(PY) benchmarks/suite.py --parts test $(foreach d,$(wildcard results/*/cpu),--from-run $(d))

clean:  ## remove built book, executed notebooks and scratch builds (keeps data, cache and results)
	rm -rf book/_build book/papers book/_generated book/_toc.yml build

clean-cache:  ## remove the cell store (checkpoints, cell records, logits): the next run computes everything
	rm -rf .cache/unlearnlib
