# ngx-mruby-rs: build nginx + the module, run the demo, run every test.
#   make setup   install system packages (Debian, apt)
#   make build   build/sbin/nginx, build/sbin/ngx-mruby-supervisor and
#                build/modules/ngx_http_mruby_module.so
#   make run     start nginx in the foreground on 127.0.0.1:8080 with conf/nginx.conf
#   make test    cargo test + prove -r t/
#   make bench   instruction counts and req/s against plain nginx (bench/)
#   make test-valgrind   a chosen subset of t/ with nginx under valgrind memcheck
#   make module  the module for another nginx: NGINX_SOURCE_DIR=<source> and/or NGINX_BINARY=<nginx>
#   make deb     libnginx-mod-http-mruby .deb for Debian's nginx (/usr/sbin/nginx)
#   make test-module  make module against the vendored source, run suites with it (CI)
#   make test-debian  install the .deb next to Debian's nginx, serve, reload, run t/ (CI)

CARGO   ?= cargo
PROFILE ?= release
BUILD   := build
NGINX   := $(BUILD)/sbin/nginx
MODULE  := $(BUILD)/modules/ngx_http_mruby_module.so
SUPERVISOR := $(BUILD)/sbin/ngx-mruby-supervisor
TARGET  := target/$(PROFILE)
CARGO_FLAGS := $(if $(filter release,$(PROFILE)),--release,)

APT_PACKAGES := build-essential pkg-config libclang-dev clang ruby rake bison dpkg-dev \
	libpcre2-dev zlib1g-dev libssl-dev perl libtest-base-perl libwww-perl \
	libhttp-message-perl libtext-diff-perl liblist-moreutils-perl \
	valgrind wrk curl openssl procps iproute2 python3-venv \
	php-cgi fcgiwrap passwd

# Python for tests that need a real parser (prometheus_client's text
# format parser); a venv of Debian's python3, filled from PyPI.
PYVENV := $(BUILD)/venv
PYTHON_PACKAGES := prometheus_client

# `make module` / `make deb`: the nginx to build the module for, and
# cargo's target directory for it (default target/nginx-<version>).
NGINX_SOURCE_DIR ?=
NGINX_BINARY ?=
MODULE_TARGET_DIR ?=

.PHONY: setup build run test test-debian test-module module deb bench clean check check-layout

# mruby is built from Debian trixie's source package (mruby-sys/build.rs):
# a deb-src-only apt source for trixie, so no trixie binary reaches this system.
MRUBY_DEB_VERSION := 3.3.0-1
MRUBY_VENDOR      := mruby-sys/vendor
TRIXIE_SRC_LIST   := /etc/apt/sources.list.d/ngx-mruby-rs-trixie-src.sources

setup:
	printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > $(TRIXIE_SRC_LIST)
	# deb-src for this release too: Debian's nginx source for make module / make deb
	packaging/debian/enable-deb-src.sh
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES)
	test -f $(MRUBY_VENDOR)/mruby-3.3.0/Rakefile || { \
		rm -rf $(MRUBY_VENDOR) && mkdir -p $(MRUBY_VENDOR) && \
		cd $(MRUBY_VENDOR) && apt-get source mruby=$(MRUBY_DEB_VERSION); }
	# Debian's nginx (never started here), for make deb / test-debian
	packaging/debian/install-nginx.sh
	$(MAKE) $(PYVENV)/ok

$(PYVENV)/ok:
	/usr/bin/python3 -m venv $(PYVENV)
	$(PYVENV)/bin/pip install -q $(PYTHON_PACKAGES)
	touch $@

# cargo decides what is stale, so this always asks it.
build:
	$(CARGO) build $(CARGO_FLAGS) --workspace
	$(CARGO) run -q $(CARGO_FLAGS) -p nginx-build -- $(NGINX)
	mkdir -p $(BUILD)/modules $(BUILD)/run/logs
	cp $(TARGET)/libngx_http_mruby_module.so $(MODULE).tmp && mv $(MODULE).tmp $(MODULE)
	cp $(TARGET)/ngx-mruby-supervisor $(SUPERVISOR).tmp && mv $(SUPERVISOR).tmp $(SUPERVISOR)

run: build
	mkdir -p $(BUILD)/run/logs
	$(NGINX) -p $(CURDIR)/ -e /dev/stderr -c conf/nginx.conf -g 'daemon off; master_process on;'

test: build $(PYVENV)/ok
	$(CARGO) test $(CARGO_FLAGS) --workspace
	prove -r t/

MODULE_ENV = CARGO="$(CARGO)" PROFILE="$(PROFILE)" MODULE_TARGET_DIR="$(MODULE_TARGET_DIR)"

module:
	NGINX_SOURCE_DIR="$(NGINX_SOURCE_DIR)" NGINX_BINARY="$(NGINX_BINARY)" $(MODULE_ENV) packaging/nginx-module.sh

deb:
	NGINX_BINARY="$(or $(NGINX_BINARY),/usr/sbin/nginx)" $(MODULE_ENV) packaging/debian/build-deb.sh

test-debian: $(PYVENV)/ok
	$(MODULE_ENV) packaging/debian/test-debian.sh

# make module against the vendored source, loaded by build/sbin/nginx (CI)
test-module: build $(PYVENV)/ok
	$(MODULE_ENV) packaging/test-module.sh

# Suites whose code paths matter most for memory safety (VM entry/exit,
# waiting, limits, filters, the Ruby API); the rest of t/ adds time, not
# coverage of new paths. Fails on any invalid read/write or use of
# uninitialised memory (memcheck's error summary), not on leaks at exit.
VALGRIND_SUITES ?= t/003-errors.t t/010-nginx.t t/011-request.t t/031-filters.t \
	t/032-async.t t/034-wait-safety.t t/035-request-globals.t t/036-script-faults.t \
	t/050-cpu-limit.t t/051-memory-limit.t gems.t
VALGRIND_LOG_DIR := $(CURDIR)/t/servroot-valgrind

test-valgrind: build
	rm -rf $(VALGRIND_LOG_DIR) && mkdir -p $(VALGRIND_LOG_DIR)
	VALGRIND_LOG_DIR=$(VALGRIND_LOG_DIR) TEST_NGINX_BINARY=$(CURDIR)/t/valgrind/nginx \
		TEST_NGINX_START_STOP_SCALE=8 TEST_NGINX_TIMEOUT=30 \
		prove $(addprefix t/,$(notdir $(VALGRIND_SUITES))) || true
	t/valgrind/report $(VALGRIND_LOG_DIR)

bench: build
	bench/run.sh

check: check-layout
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace -- -D warnings

# The layering of src/ (README "Layout"): a folder may not import the
# folders above it, nor a sibling that imports it (that would be a cycle).
# Fails on the first forbidden `crate::<folder>` path, also inside a
# `use crate::{...}` group (the -z grep sees groups spanning lines).
LAYOUT_RULES := \
	vm:api,host,phases,conf,tls,upstream,limits,shm,resources \
	host:api,phases,conf,tls,upstream,limits,shm,stream,resources \
	api:phases,conf,tls,shm,stream \
	conf:phases,tls,stream \
	phases:api,tls,stream \
	tls:api,phases,stream,resources \
	stream:phases,tls,limits,shm,tenants,resources \
	shm:api,host,phases,conf,tls,vm,limits,upstream,stream,resources \
	limits:api,host,phases,conf,tls,vm,upstream,stream,resources \
	upstream:api,host,phases,conf,tls,vm,limits,shm,stream,resources \
	metrics:api,host,phases,conf,tls,vm,limits,shm,upstream,stream,resources \
	tenants:api,host,phases,tls,upstream,limits,shm,vm,metrics,stream \
	resources:api,host,phases,conf,tls,vm,upstream,limits,metrics,stream,tenants

check-layout:
	@status=0; for rule in $(LAYOUT_RULES); do \
		dir=$${rule%%:*}; banned=$$(echo $${rule#*:} | tr , '|'); \
		if grep -rnE "crate::($$banned)\b" src/$$dir || grep -rlzE "crate::\{[^}]*\b($$banned)\b" src/$$dir; then \
			echo "layout: src/$$dir/ must not import $$banned (see README Layout)"; status=1; \
		fi; \
	done; exit $$status

clean:
	rm -rf $(BUILD) t/servroot*
