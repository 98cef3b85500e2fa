# The two commands a new user needs (as root on Debian/Ubuntu; see README):
#   make run    install and run the gateway on its embedded default
#   make test   install everything the tests need (Debian packages included) and run them
PYTHON ?= python3
DEBS = avahi-daemon avahi-utils chrony dnsutils knot knot-dnsutils dnsperf nsd tcpdump \
       iproute2 procps libcap2-bin dnsmasq-base kea-dhcp4-server kea-dhcp6-server \
       dbus-daemon util-linux
PYTEST_ARGS ?=

.PHONY: run test deps-run deps-test lint pytest test-compiled clean-compiled bench

deps-run:
	$(PYTHON) -m pip install -q -e .

run: deps-run
	$(PYTHON) -m bridge run

deps-test:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $(DEBS); \
	else echo "not root or no apt-get: skipping Debian packages ($(DEBS))"; fi
	$(PYTHON) -m pip install -q -e '.[test]'

lint:
	$(PYTHON) -m ruff check bridge tests loadtest *.py
	$(PYTHON) -m ruff format --check bridge tests loadtest *.py
	$(PYTHON) -m mypy

pytest:
	$(PYTHON) -m pytest -q -rs $(PYTEST_ARGS)

# the same unit tests against the compiled hot-path modules (build_ext.py), built in place
# for the run and removed after it, so that the checkout never runs stale binaries
test-compiled:
	@trap '$(MAKE) -s clean-compiled' EXIT; \
	  MDNS_GATEWAY_COMPILE=1 $(PYTHON) setup.py -q build_ext --inplace && \
	  $(PYTHON) -c 'import bridge.mdns.wire as w; assert w.__file__.endswith(".so"), w.__file__' && \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) --ignore=tests/integration \
	    --ignore=tests/test_loadtest_smoke.py

clean-compiled:
	rm -f bridge/*.so bridge/*/*.so

test: deps-test lint pytest test-compiled

# the side-by-side benchmark (README, "Performance"); BENCH_ARGS e.g. --only udp,tcp
BENCH_ARGS ?=
bench: deps-test
	$(PYTHON) -m pip install -q -e '.[test,bench]'
	$(PYTHON) -m loadtest $(BENCH_ARGS)
