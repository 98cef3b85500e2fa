# The two commands a new user needs (as root on Debian/Ubuntu; see README):
#   make run    install the gateway into .venv and run it on its embedded default
#   make test   install everything the tests need (Debian packages included) and run them
# Both use a project virtual environment (.venv, made by `$(PYTHON) -m venv`), never the system
# interpreter: Debian's own python3 refuses pip installs (PEP 668), and a pyenv or conda python
# first on PATH works the same way.
PYTHON ?= python3
VENV ?= .venv
VPY = $(VENV)/bin/python
# the lab's real peers and tools; gcc and the Python headers for make test-compiled (Cython)
DEBS = avahi-daemon avahi-utils chrony dnsutils knot knot-dnsutils dnsperf nsd tcpdump \
       iproute2 procps libcap2-bin dnsmasq-base kea-dhcp4-server kea-dhcp6-server \
       dbus-daemon util-linux gcc libc6-dev python3-dev unbound knot-resolver
DEBS += prometheus   # alerts: promtool checks and unit-tests deploy/prometheus/rules.yaml
DEBS += $(if $(shell command -v kubectl),,kubernetes-client)   # deploy: kubectl kustomize in tests/test_deploy.py; not over another kubectl package (both ship /usr/bin/kubectl)
DEBS += ldnsutils   # one-shot relay lab test: drill, a one-shot querier that takes replies from any source (dig 9.18/kdig drop them)
DEBS += busybox   # announce (issue 19): its udhcpc is the DHCP client of the lease-name lab tests
DEBS += isc-dhcp-client   # dhclient -6: the DHCPv6 client (IA_NA, Client FQDN) of tests/integration/test_dhcp_lab.py
DEBS += chromium chromium-driver   # webui: the web page is tested in real headless Chromium (tests/integration/test_web_lab.py)
DEBS += bind9 bind9-utils   # wide-area: the README's BIND example runs in the lab (named, tsig-keygen; named-checkconf); nsupdate is in dnsutils
PYTEST_ARGS ?=
# the tests find the console script and the venv's tools on PATH
VENV_PATH = PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: run test venv deps-run deps-test lint pytest test-compiled clean-compiled bench fuzz

# Debian's python3 has venv only with python3-venv (ensurepip); installed here when missing
venv: $(VPY)
$(VPY):
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    sh scripts/install-debs python3-venv; \
	  else echo "$(PYTHON) has no venv module: install python3-venv (as root: apt-get install python3-venv)"; exit 1; fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

# pip runs again only when the project's metadata changes (the install is editable: code
# changes need none); a stamp in the venv records each install
deps-run: $(VENV)/.installed-run
$(VENV)/.installed-run: pyproject.toml setup.py | $(VPY)
	$(VPY) -m pip install -q -e .
	touch $@

run: deps-run
	$(VPY) -m bridge run

deps-test: $(VENV)/.installed-test
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  sh scripts/install-debs $(DEBS); \
	else echo "not root or no apt-get: skipping Debian packages ($(DEBS))"; fi
$(VENV)/.installed-test: pyproject.toml setup.py | $(VPY)
	$(VPY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

# lint, pytest and test-compiled use the venv's python when there is one (make test made it),
# else $(PYTHON): `make lint` works in a checkout whose tools are installed another way
TPY = "$$(if [ -x $(VPY) ]; then echo $(VPY); else echo $(PYTHON); fi)"

lint:
	$(TPY) -m ruff check bridge netlab tests loadtest *.py
	$(TPY) -m ruff format --check bridge netlab tests loadtest *.py
	$(TPY) -m mypy

pytest:
	$(VENV_PATH) $(TPY) -m pytest -q -rs $(PYTEST_ARGS)

# the same unit tests against the compiled hot-path modules (build_ext.py), built in place
# for the run and removed after it, so that the checkout never runs stale binaries
test-compiled:
	@trap '$(MAKE) -s clean-compiled' EXIT; \
	  MDNS_GATEWAY_COMPILE=1 $(TPY) setup.py -q build_ext --inplace && \
	  $(TPY) -c 'import sys, build_ext; bad = build_ext.not_compiled(); sys.exit(f"not compiled: {bad}" if bad else 0)' && \
	  $(VENV_PATH) $(TPY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) --ignore=tests/integration

clean-compiled:
	rm -f bridge/*.so bridge/*/*.so

test: deps-test lint pytest test-compiled

# the fuzzing tests run longer than make test does: the mDNS path (ingest, store, reflector;
# 150 examples in make test) and the DNS pipeline (300)
FUZZ_EXAMPLES ?= 20000
fuzz:
	MDNS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PYTHON) -m pytest -q -p no:cacheprovider \
	  tests/mdns/test_hostile.py -k fuzzed
	DNS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PYTHON) -m pytest -q -p no:cacheprovider \
	  tests/dnsfront/test_fuzz.py

# the side-by-side benchmark (README, "Performance"); BENCH_ARGS e.g. --only udp,tcp
BENCH_ARGS ?=
bench: deps-test
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VENV_PATH) $(VPY) -m loadtest $(BENCH_ARGS)
