# Two commands: `make demo` and `make test` (see README.md).
# `make demo` installs only what the demo runs on (the package with its web, speed and metrics extras);
# `make test` adds the test tools, the Debian peers (libcoap, Chromium), tinydtls and the npm peer.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench debs clean cluster

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[web,speed,metrics]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(PY) debs
	$(PY) -m pip install --quiet -e '.[test,speed]'
	@# aiocoap's DTLS (tinydtls) is built from source; without it one interop test is skipped.
	$(PY) -m pip install --quiet 'aiocoap[tinydtls]==0.4.17' || \
	  echo "aiocoap[tinydtls] could not be built: its DTLS interop test will be skipped"
	touch $(STAMP)

# Debian packages the tests need: libcoap's command-line clients (interop), GnuTLS's and
# OpenSSL's command-line tools (DTLS peers: gnutls-cli speaks raw public keys), Chromium (the
# console tests drive it through Playwright), Redis and nginx's stream module (the cluster's
# store and UDP balancer), mosquitto (the MQTT export's broker) and autotools to build aiocoap's
# tinydtls.
debs:
	@missing=""; \
	command -v coap-client-notls >/dev/null 2>&1 || missing="$$missing libcoap3-bin"; \
	command -v gnutls-cli >/dev/null 2>&1 || missing="$$missing gnutls-bin"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v nginx >/dev/null 2>&1 || missing="$$missing nginx libnginx-mod-stream"; \
	[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing="$$missing libnginx-mod-stream"; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v autoreconf >/dev/null 2>&1 || missing="$$missing autoconf automake libtool gcc"; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# npm packages the interop tests need (lwm2m-node-lib), kept in tests/peers.
NODE_PEERS := tests/peers/node_modules/.installed
$(NODE_PEERS): tests/peers/package.json
	cd tests/peers && npm install --silent --no-audit --no-fund --no-package-lock
	touch $(NODE_PEERS)

# mypy checks what [tool.mypy] in pyproject.toml names, strictly where it says; a type error fails the target.
# The tests run in TEST_WORKERS processes (pytest-xdist; each test picks its own free ports and
# starts its own peers): most of a test's time is waiting on sockets and processes, so two keep
# two cores busy. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: $(STAMP) debs $(NODE_PEERS)
	$(VENV)/bin/ruff check src tests tools bench
	$(PY) -m mypy
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests tools bench
	$(VENV)/bin/ruff format --check src tests tools bench
	$(PY) -m mypy

demo: $(DEMO_STAMP)
	$(VENV)/bin/lwm2m demo

# A cluster on this machine to try out: Redis, three server nodes and nginx in front of them
# (deploy/cluster_demo.py, docs/cluster.md); options through ARGS, e.g. ARGS='--devices 100'.
cluster: $(DEMO_STAMP)
	@command -v redis-server >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1 && \
	  [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server nginx libnginx-mod-stream >/dev/null; }
	@$(PY) -c 'import redis' 2>/dev/null || $(PY) -m pip install --quiet -e '.[web,speed,cluster]'
	$(PY) deploy/cluster_demo.py $(ARGS)

bench: $(STAMP)
	$(PY) bench/coap_loop.py
	$(PY) bench/coap_tcp.py
	$(PY) bench/codecs.py
	$(PY) bench/dtls.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis tests/peers/node_modules
