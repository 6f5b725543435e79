#!/usr/bin/env bash
# `make test-debian` (CI): the module as a Debian user gets it.
#   1. `make deb` against the installed Debian nginx (make setup installs it)
#   2. apt installs the package (and what it depends on): files in place,
#      enabled in modules-enabled
#   3. `nginx -t` on Debian's own /etc/nginx/nginx.conf loads the module
#   4. /usr/sbin/nginx with a config that includes modules-enabled (as
#      Debian's nginx.conf does) serves an mruby location; after a config
#      change `nginx -s reload` serves the new one; then it is stopped
#   5. the t/ suites against /usr/sbin/nginx and the packaged module
#   6. dpkg --purge removes the module and its symlink
# No daemon is left running and port 80 is never used: the served config
# listens on a free loopback port.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

nginx=/usr/sbin/nginx
package=libnginx-mod-http-mruby
module=/usr/lib/nginx/modules/ngx_http_mruby_module.so
available=/usr/share/nginx/modules-available/mod-http-mruby.conf
enabled=/etc/nginx/modules-enabled/70-mod-http-mruby.conf
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
# Every suite runs against Debian's nginx (about a minute): the Ruby VM and
# API, errors, directives (mruby_set mirrors a private rewrite-module
# struct), headers (the header list changed in nginx 1.23), upstream
# keepalive (mirrors the keepalive module's structs), TLS, vlimit and its
# Prometheus output, the demo configuration. TEST_DEBIAN_SUITES picks others.
read -r -a suites <<<"${TEST_DEBIAN_SUITES:-t/}"
# Random ports and servroots, so a run never collides with another one.
export TEST_NGINX_RANDOMIZE=${TEST_NGINX_RANDOMIZE:-1}

step() { echo "test-debian: $*"; }
fail() {
    echo "test-debian: FAIL: $*" >&2
    exit 1
}

[ -x "$nginx" ] || fail "$nginx not found: run make setup (it installs Debian's nginx)"
dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q 'install ok installed' ||
    fail "Debian's nginx package is not installed: run make setup"

step "building the package (make deb)"
deb=$(NGINX_BINARY=$nginx "$repo/packaging/debian/build-deb.sh" | tail -n1)
dpkg-deb --info "$deb" | sed 's/^/    /'
abi=$(dpkg-query -W -f='${Provides}' nginx | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p')
grep -q "$abi" <<<"$(dpkg-deb -f "$deb" Depends)" || fail "the package does not depend on $abi"

tmp=$(mktemp -d /tmp/ngx-mruby-test-debian.XXXXXX)
master_pid=
installed=0
cleanup() {
    # a failed run leaves no package of ours behind either
    if [ $installed = 1 ]; then dpkg --purge "$package" >/dev/null 2>&1 || true; fi
    if [ -n "$master_pid" ] && kill -0 "$master_pid" 2>/dev/null; then
        kill -QUIT "$master_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$master_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$master_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

step "installing $deb"
# apt, not dpkg -i: what the package depends on (libnginx-mod-stream when
# the module has a stream part) comes from Debian's archive, as for a user
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb"
[ -f "$module" ] || fail "$module not installed"
[ "$(cat "$available")" = "load_module modules/ngx_http_mruby_module.so;" ] || fail "$available: unexpected content"
[ -L "$enabled" ] && [ "$(readlink "$enabled")" = "$available" ] || fail "$enabled is not a symlink to $available"

step "nginx -t with Debian's /etc/nginx/nginx.conf"
"$nginx" -t 2>&1 | tee "$tmp/t.out"
grep -q 'test is successful' "$tmp/t.out" || fail "nginx -t failed"
# (into a file: with pipefail, grep -q closing the pipe early fails nginx -T)
"$nginx" -T >"$tmp/T.out" 2>/dev/null || fail "nginx -T failed"
grep -q '^load_module modules/ngx_http_mruby_module.so;' "$tmp/T.out" ||
    fail "nginx -T does not show the module's load_module line"

# A free loopback port (the kernel's choice).
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport')

# Debian's layout: the default prefix (/usr/share/nginx, where modules/
# points to /usr/lib/nginx/modules) and modules-enabled included at the top.
write_conf() {
    cat >"$tmp/nginx.conf" <<EOF
user www-data;
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/error.log info;
include /etc/nginx/modules-enabled/*.conf;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    vlimit_zone tenants 64k;
    server {
        listen 127.0.0.1:$port;
        location = /hello {
            vlimit ip 10 zone=tenants;
            mruby_content_handler_code 'Nginx.rputs "hello from mruby in #{Nginx.server_version}\n"';
        }
        location = /metrics { vlimit_stats format=prometheus; }
$1
    }
}
EOF
}

# fetch <path>: the body of a GET, or nothing
fetch() { curl -sS --max-time 5 "http://127.0.0.1:$port$1"; }

step "serving with $nginx (port $port)"
write_conf ""
"$nginx" -c "$tmp/nginx.conf" || fail "nginx did not start: $(cat "$tmp/error.log")"
for _ in $(seq 50); do [ -s "$tmp/nginx.pid" ] && break; sleep 0.1; done
master_pid=$(cat "$tmp/nginx.pid")
version=$("$nginx" -v 2>&1 | sed 's|.*/||')
body=$(fetch /hello) || true
[ "$body" = "hello from mruby in $version" ] || fail "/hello answered \"$body\""
metrics=$(fetch /metrics) || true
grep -q '^nginx_vlimit_zone_size_bytes{zone="tenants"} ' <<<"$metrics" || fail "/metrics has no zone size"

step "nginx -s reload with a new mruby location"
write_conf "        location = /reloaded { mruby_content_handler_code 'Nginx.rputs \"reloaded #{Nginx::Request.new.uri}\"'; }"
"$nginx" -c "$tmp/nginx.conf" -s reload
reloaded=
for _ in $(seq 50); do
    reloaded=$(fetch /reloaded 2>/dev/null) || true
    [ "$reloaded" = "reloaded /reloaded" ] && break
    sleep 0.1
done
[ "$reloaded" = "reloaded /reloaded" ] || fail "after reload /reloaded answered \"$reloaded\""
[ "$(fetch /hello)" = "hello from mruby in $version" ] || fail "/hello broken after reload"
if grep -E '\[(alert|crit|emerg)\]' "$tmp/error.log"; then fail "alerts in the error log"; fi

step "stopping nginx"
"$nginx" -c "$tmp/nginx.conf" -s quit
for _ in $(seq 100); do kill -0 "$master_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$master_pid" 2>/dev/null && fail "nginx did not stop"
master_pid=

step "every t/ suite against $nginx with $module"
# the stream module first, as modules-enabled/ orders them
load_modules=$module
if grep -q libnginx-mod-stream <<<"$(dpkg-deb -f "$deb" Depends)"; then
    load_modules="$stream_module $module"
fi
TEST_NGINX_BINARY=$nginx TEST_NGINX_LOAD_MODULES=$load_modules prove -r "${suites[@]}"

step "dpkg --purge $package"
dpkg --purge "$package"
installed=0
[ ! -e "$module" ] || fail "$module left after purge"
[ ! -L "$enabled" ] && [ ! -L "$enabled.removed" ] || fail "$enabled left after purge"
"$nginx" -t 2>/dev/null || fail "nginx -t fails after the purge"
step "ok"
