# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := tests/interop/node_modules/.installed
BROWSER_STAMP := tests/browser/node_modules/.installed
CHROMIUM   := /usr/bin/chromium
NGINX      := /usr/sbin/nginx
REDIS      := /usr/bin/redis-server
OFFLINE_KIT := tests/artifacts/offline-kit/.built
# With no network (docs/deployment.md, "Air-gapped install"): `make demo WHEELHOUSE=wheelhouse` (likewise install,
# node, browser) takes every Python and Node package from the folder `make wheelhouse` filled on a connected machine
# and asks no package index; without it everything comes from PyPI and npm as usual.
ifdef WHEELHOUSE
export PIP_NO_INDEX := 1
export PIP_FIND_LINKS := $(abspath $(WHEELHOUSE))/python
NPM_OFFLINE := --offline --cache $(abspath $(WHEELHOUSE))/npm
endif
# The homeserver tests that also run against Synapse with workers (PostgreSQL, Redis, nginx) in `make test`:
# the core conversation, restarts of the bridge and of the homeserver, backup and restore, and federation.
WORKER_TESTS := tests/integration/test_conversation.py tests/integration/test_restart.py \
                tests/integration/test_homeserver_restart.py tests/integration/test_backup_restore.py tests/federation

.PHONY: demo test test-workers test-wheelhouse abuse load latency chaos install node browser chromium nginx homeserver-packages wheelhouse clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The officers' client stack (matrix-js-sdk with its Rust crypto) for the interop test.
node: $(NODE_STAMP)

$(NODE_STAMP): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci $(NPM_OFFLINE) --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests: axe-core from npm, and Debian's Chromium, which Playwright (from PyPI, in the
# venv) drives as it is; nothing downloads a browser of its own. Installing it needs root, no stdin.
browser: $(BROWSER_STAMP) chromium

$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci $(NPM_OFFLINE) --no-audit --no-fund --loglevel=error
	touch $@

chromium:
	@test -x $(CHROMIUM) || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium </dev/null)

# Debian's nginx, which tests/browser/test_behind_nginx.py starts itself (as a child process, on free loopback
# ports, with config/nginx-precinct.conf); the package's own service is neither needed nor touched (RUNLEVEL=1 keeps
# invoke-rc.d from starting it where no policy-rc.d does, so a busy port 80 cannot fail the install).
nginx:
	@test -x $(NGINX) || (apt-get update && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y nginx </dev/null)

# Debian's PostgreSQL and Redis for Synapse with workers (bridge/devtools/workers.py starts a throw-away cluster
# and a Redis of its own as child processes, on a unix socket and a free loopback port); the packages' own
# services are neither needed nor started (RUNLEVEL=1, as for nginx). As root, PostgreSQL runs as the
# package's `postgres` user.
homeserver-packages:
	@test -x $(REDIS) && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || (apt-get update && \
	  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql redis-server </dev/null)

demo: $(STAMP)
	$(BIN)/python -m bridge demo --data demo-data

test: $(STAMP) $(NODE_STAMP) browser nginx homeserver-packages $(OFFLINE_KIT)
	$(BIN)/python -m pytest -q
	PRECINCT_HOMESERVER=workers $(BIN)/python -m pytest -q $(WORKER_TESTS)

# The whole integration and federation suite against Synapse with workers on PostgreSQL (tests/conftest.py).
test-workers: $(STAMP) $(NODE_STAMP) browser nginx homeserver-packages
	PRECINCT_HOMESERVER=workers $(BIN)/python -m pytest -q tests/integration tests/federation

# An air-gapped install (docs/deployment.md): every wheel (the tests' too), both Node folders' packages as an
# npm cache, the Debian package list and the operator's INSTALL.md, in one folder to carry across.
wheelhouse: $(STAMP)
	$(BIN)/python -m bridge.devtools.wheelhouse wheelhouse --extras test --node tests/interop --node tests/browser

# The whole kit checked as an offline machine uses it (bridge/devtools/offline_check.py): a copy of the checkout
# installs the tests' extras and both Node folders from it with every index unreachable, then runs the demo's, the
# Element client stack's and an axe-core test from that install. Two to three minutes; `make test` checks the
# runtime part only (below).
test-wheelhouse: wheelhouse browser
	$(BIN)/python -m bridge.devtools.offline_check wheelhouse

# The runtime part of it, from which tests/integration/test_offline_install.py installs with every index
# unreachable (gathered here, online, like the other things the tests need; a few seconds).
$(OFFLINE_KIT): $(STAMP) setup.cfg pyproject.toml tests/browser/package-lock.json $(shell find bridge -type f ! -name '*.pyc')
	$(BIN)/python -m bridge.devtools.wheelhouse $(dir $@) --node tests/browser
	touch $@

# The floods of issue 10 against the real bridge and Synapse, full size (several minutes; figures in
# docs/security.md). `make test` runs a reduced one (tests/integration/test_bench_guards.py).
abuse: $(STAMP)
	$(BIN)/python bench/abuse.py

# Visitor ⇄ officer latency against plain Matrix, and the new chat split into its parts (issue 11): 1, 10 and 100
# citizens, one Synapse on SQLite (bench/README.md; --homeserver postgres|workers|both for the others). About three
# minutes. `make test` runs a reduced one (tests/integration/test_bench_guards.py).
latency: $(STAMP)
	$(BIN)/python bench/latency.py

# Many citizens at once, in rounds (issue 11): latencies, memory and descriptors per round, against one Synapse
# process on SQLite and then Synapse with workers on PostgreSQL (issue 12), compared at the end. Several minutes.
load: $(STAMP) nginx homeserver-packages
	$(BIN)/python bench/load.py --homeserver both

# Faults injected at volume (issue 13): the bridge SIGKILLed 10 times while 20 citizens and 2 officers (one on
# matrix-nio, one on matrix-js-sdk + Rust crypto, Element's stack: hence `node`) talk, 50 messages each way per chat; exits 1 if anything is lost, doubled or reordered (docs/reliability.md).
# `make test` runs a reduced one (tests/integration/test_bench_guards.py).
# The homeserver's faults (bench/chaos_homeserver.py): Synapse stopped 60 s under traffic; the bridge down 4 min,
# twice, with and without its start-up ping (docs/reliability.md has a 10-minute run); the bridge started 60 s
# before Synapse. Reduced ones: tests/integration/test_chaos_homeserver.py.
# Hostile clients: 1,000 malformed WebSocket frames on raw sockets; every kind of stolen or forged credential on
# every endpoint (about 3 minutes together). Reduced ones: tests/integration/test_chaos_fuzz.py.
# The store's faults: the bridge SIGKILLed 100 times mid-burst of writes, integrity_check and every acknowledged
# message looked up after each (about 4 minutes); the store's file system filled mid-conversation (a tmpfs:
# root) and given space back. Reduced ones: tests/integration/test_chaos_store.py.
# Room keys (bench/chaos_keys.py, 10 rounds each): new officer devices writing while the bridge is down; a room key
# held back and sent late, and one held back for good. Reduced ones: tests/integration/test_chaos_keys.py.
chaos: $(STAMP) $(NODE_STAMP)
	$(BIN)/python bench/kill_loop.py
	$(BIN)/python bench/chaos_homeserver.py --scenario restart
	$(BIN)/python bench/chaos_homeserver.py --scenario outage --down 240 --compare
	$(BIN)/python bench/chaos_homeserver.py --scenario cold-start
	$(BIN)/python bench/ws_fuzz.py --frames 1000
	$(BIN)/python bench/token_abuse.py --rounds 20
	$(BIN)/python bench/chaos_writes.py
	$(BIN)/python bench/chaos_disk_full.py
	$(BIN)/python bench/chaos_keys.py --scenario outage-keys --rounds 10
	$(BIN)/python bench/chaos_keys.py --scenario late-key --rounds 10

clean:
	rm -rf $(VENV) tests/interop/node_modules tests/browser/node_modules tests/artifacts wheelhouse
