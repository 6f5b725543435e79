#!/usr/bin/env bash
# `make test-module` (CI): `make module` against a plain nginx source tree,
# the vendored one (nginx-src, the source of build/sbin/nginx), configured
# from `build/sbin/nginx -V`; then suites run with build/sbin/nginx loading
# that module instead of the one `make build` made. (Debian's source is
# covered by `make test-debian`; the refusals by t/006-make-module.t.)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo=${CARGO:-cargo}

[ -x build/sbin/nginx ] || { echo "test-module: run make build first" >&2; exit 1; }
source_dir=$("$cargo" metadata --format-version 1 --locked |
    /usr/bin/python3 -c 'import json, os, sys
print(next(os.path.join(os.path.dirname(p["manifest_path"]), "nginx")
           for p in json.load(sys.stdin)["packages"] if p["name"] == "nginx-src"))')
echo "test-module: make module NGINX_BINARY=build/sbin/nginx NGINX_SOURCE_DIR=$source_dir"
module=$(NGINX_BINARY=build/sbin/nginx NGINX_SOURCE_DIR=$source_dir "$repo/packaging/nginx-module.sh" | tail -n1)
TEST_NGINX_RANDOMIZE=${TEST_NGINX_RANDOMIZE:-1} TEST_NGINX_LOAD_MODULES=$module \
    prove ${TEST_MODULE_SUITES:-t/002-vm.t t/010-nginx.t t/vlimit-prometheus.t}
