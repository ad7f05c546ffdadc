# runtime-host: the way in. `make run FUNC=...` and `make test` are all a
# fresh Debian machine needs (they set up the venv, the Docker engine and the
# images on first use).
VENV      ?= .venv
RH        := $(VENV)/bin/runtime-host
FUNC      ?= examples/hello-python
FUNCTIONS ?= examples
EVENT     ?= {}
# `make run` leaves a warm host for FUNC that ends after KEEP_WARM seconds without a run (0: none).
KEEP_WARM ?= 300
export EVENT EVENT_FILE

.PHONY: help venv docker browser images run serve conformance test unit fuzz load soak bench clean

help:
	@echo "make run FUNC=examples/hello-python [EVENT='{\"k\": \"v\"}' | EVENT_FILE=path] [KEEP_WARM=300]  run a function once (its sandbox kept warm for the next run)"
	@echo "make serve [FUNCTIONS=examples]   serve every function folder on http://127.0.0.1:9000"
	@echo "make conformance FUNC=path        check a function folder or a bootstrap against the Runtime API contract"
	@echo "make test                         import contracts, then the whole suite, end to end on the real Docker engine"
	@echo "make unit                         import contracts and the tests that need no Docker engine (seconds)"
	@echo "make bench                        benchmarks, as ratios to references measured in the same run"
	@echo "make images                       build the runtime images (cached by content hash)"
	@echo "make fuzz                         fuzz both APIs over real sockets for longer than the suite does (FUZZ_EXAMPLES=5000)"
	@echo "make load                         20,000 mixed invocations from 16 callers, then check nothing was lost (LOAD_CALLS=...)"
	@echo "make soak                         the same checks over one million invocations (SOAK_CALLS=...)"
	@echo "make docker                       make sure a Docker engine runs (installs docker.io as root on Debian)"
	@echo "make browser                      make sure chromium and chromedriver are installed, for the console's browser test"

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

docker:
	@scripts/ensure-docker

browser:
	@scripts/ensure-browser

images: venv docker
	$(RH) images build

run: venv docker
	@$(RH) run $(FUNC) --keep-warm $(KEEP_WARM) $(if $(EVENT_FILE),--event-file "$$EVENT_FILE",--event "$$EVENT")

serve: venv docker
	$(RH) serve --functions $(FUNCTIONS)

conformance: venv docker
	@$(RH) conformance $(FUNC) $(CONFORMANCE_ARGS)

test: venv docker browser
	$(VENV)/bin/lint-imports
	$(RH) images build
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

FUZZ_EXAMPLES ?= 5000
fuzz: venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_RANDOM=1 $(VENV)/bin/pytest -q tests/unit/test_fuzz_apis.py $(PYTEST_ARGS)

# tests/load.py: nothing lost, duplicated or mixed up, host RSS within 10 % (RELIABILITY.md).
LOAD_CALLS ?= 20000
SOAK_CALLS ?= 1000000
load: venv docker
	$(RH) images build
	$(VENV)/bin/python -m tests.load --calls $(LOAD_CALLS) --callers 16

soak: venv docker
	$(RH) images build
	$(VENV)/bin/python -m tests.load --calls $(SOAK_CALLS) --callers 16

unit: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -m "not docker" $(PYTEST_ARGS)

bench: venv docker
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	$(RH) images build
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .runtime-host .pytest_cache
