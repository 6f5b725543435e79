#!/usr/bin/env bash
# Installs Debian's nginx package (for `make deb` and `make test-debian`)
# without starting the daemon: its postinst would start nginx on port 80,
# which is not ours to take on a shared or CI machine. A policy-rc.d that
# denies service actions is put in place for the install if the machine
# has none (Debian's container images ship one).
set -euo pipefail

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# ngx-mruby-rs make setup: no daemon starts during the install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ $created_policy = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
# libnginx-mod-stream: Debian's stream module (dynamic), which the module's
# stream part links against
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx libnginx-mod-stream
