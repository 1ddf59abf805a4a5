# catena: `make up` starts a local cluster, `make test` runs every test tier.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: up test install system-deps sim-long test-long bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests and benchmarks use (real redis-cli/redis-benchmark/redis-server, etcd,
# iptables and iproute2 for kernel-level partitions in a test's own network namespace, openssl
# for the TLS tests' certificates, chromium for the status page's browser test).
system-deps:
	@if ! command -v redis-cli >/dev/null || ! command -v redis-server >/dev/null || ! command -v etcd >/dev/null || ! command -v iptables >/dev/null || ! command -v ip >/dev/null || ! command -v openssl >/dev/null || ! command -v chromium >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server redis-tools etcd-server iptables iproute2 openssl chromium; \
	fi

up: $(STAMP)
	$(VENV)/bin/catena up

# Three workers on two cores: integration tests mostly wait on processes; each test file runs
# whole on one worker (its fixtures and servers stay its own).
test: $(STAMP) system-deps
	$(PY) -m pytest -q -n 3 --dist loadfile

# The integration tests too long for `make test` (a full rebalance to three chains: ~10 min).
test-long: $(STAMP) system-deps
	CATENA_LONG=1 $(PY) -m pytest -q tests/integration/test_rebalance_three_chains.py

# Many more simulation schedules than `make test` runs.
sim-long: $(STAMP)
	CATENA_SIM_SEEDS=1000 $(PY) -m pytest -q tests/sim

bench: $(STAMP) system-deps
	$(PY) bench/throughput/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
