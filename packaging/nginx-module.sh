#!/usr/bin/env bash
# Builds ngx_http_mruby_module.so for an nginx other than the vendored one
# (`make module`):
#
#   make module NGINX_SOURCE_DIR=/path/to/nginx-1.26.3
#   make module NGINX_BINARY=/usr/sbin/nginx [NGINX_SOURCE_DIR=...]
#
# The source is configured with --with-compat plus the configure arguments
# that `$NGINX_BINARY -V` prints (without NGINX_BINARY: the same arguments
# the vendored build uses), then the module is compiled against it through
# the nginx-sys crate's NGINX_SOURCE_DIR / NGINX_BUILD_DIR. No nginx binary
# is built: a dynamic module only needs the headers and ngx_auto_config.h.
#
# With NGINX_BINARY and no NGINX_SOURCE_DIR, the source of the Debian
# package that owns the binary is fetched with `apt-get source` (this needs
# a deb-src line: packaging/debian/enable-deb-src.sh adds one).
#
# Environment: NGINX_SOURCE_DIR, NGINX_BINARY, NGINX_CONFIGURE_ARGS (extra
# configure arguments), MODULE_OUT (where the .so goes; default
# build/module/nginx-<version>/), MODULE_TARGET_DIR (cargo's target
# directory; default target/nginx-<version>), CARGO, PROFILE (release).
# Prints the path of the built module on its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# The oldest nginx the module builds against and passes the tests with
# (README, "Supported nginx versions").
min_version=1.22.1

cargo=${CARGO:-cargo}
profile=${PROFILE:-release}
binary=${NGINX_BINARY:-}
source_dir=${NGINX_SOURCE_DIR:-}

die() {
    echo "make module: $*" >&2
    exit 1
}

# "1.22.1" -> 1022001, the form of nginx.h's nginx_version.
version_number() {
    local major minor patch
    IFS=. read -r major minor patch <<<"$1"
    echo $((major * 1000000 + minor * 1000 + ${patch:-0}))
}

# The configure arguments of a binary, one per line, as the shell would
# split the `configure arguments:` line of `nginx -V`.
binary_configure_args() {
    local line
    line=$("$binary" -V 2>&1 | sed -n 's/^configure arguments: //p')
    [ -n "$line" ] || return 0
    # nginx prints the arguments shell-quoted ('--with-cc-opt=-g -O2 ...');
    # split them without letting a shell evaluate them.
    printf '%s\n' "$line" | perl -MText::ParseWords -ne 'print "$_\n" for shellwords($_)'
}

# Fetches and unpacks the Debian source of the package that owns $binary
# into build/nginx-source/; prints the unpacked directory.
fetch_debian_source() {
    command -v dpkg-query >/dev/null || die "$binary is not from a Debian package: give NGINX_SOURCE_DIR=<its nginx source>"
    local real package source_package version upstream
    real=$(readlink -f "$binary")
    package=$(dpkg-query -S "$real" 2>/dev/null | head -n1 | cut -d: -f1) ||
        true
    [ -n "$package" ] || die "no Debian package owns $real: give NGINX_SOURCE_DIR=<the nginx source it was built from>"
    source_package=$(dpkg-query -W -f='${source:Package}' "$package")
    version=$(dpkg-query -W -f='${Version}' "$package")
    upstream=${version#*:}
    upstream=${upstream%-*}
    local dest="$repo/build/nginx-source"
    mkdir -p "$dest"
    [ -n "$(apt-cache showsrc "$source_package" 2>/dev/null)" ] ||
        die "apt knows no source package \"$source_package\": add a deb-src line (packaging/debian/enable-deb-src.sh, run by make setup) and apt-get update, or give NGINX_SOURCE_DIR"
    # The exact version first; an archive may only carry another Debian
    # revision of the same upstream version (a security update whose source
    # the mirror lacks): same nginx, same module ABI.
    local candidates candidate unpacked dsc
    candidates=$( (
        echo "$version"
        apt-cache showsrc "$source_package" 2>/dev/null | sed -n 's/^Version: //p' |
            grep -F -- "$upstream-" | sort -r -V
    ) | awk '!seen[$0]++')
    for candidate in $candidates; do
        unpacked="$dest/$source_package-$candidate"
        if [ -f "$unpacked/src/core/nginx.h" ]; then
            echo "$unpacked"
            return
        fi
    done
    for candidate in $candidates; do
        unpacked="$dest/$source_package-$candidate"
        rm -rf "$dest/download"
        # world-readable, so apt's download sandbox (user _apt) can write it
        mkdir -p -m 0777 "$dest/download"
        if (cd "$dest/download" && apt-get source --download-only "$source_package=$candidate" >"$dest/download.log" 2>&1); then
            dsc=$(ls "$dest/download"/*.dsc)
            rm -rf "$unpacked.tmp"
            dpkg-source --no-check -x "$dsc" "$unpacked.tmp" >>"$dest/download.log" 2>&1 ||
                die "dpkg-source -x $dsc failed (see $dest/download.log)"
            mv "$unpacked.tmp" "$unpacked"
            rm -rf "$dest/download" "$dest"/*.orig.tar.*
            if [ "$candidate" != "$version" ]; then
                echo "make module: the source of $source_package $version is not in the archive; using $candidate (same upstream nginx $upstream)" >&2
            fi
            echo "$unpacked"
            return
        fi
    done
    die "apt-get source $source_package=$version failed (see $dest/download.log)"
}

# --- what to build against -------------------------------------------------

configure_args=()
binary_version=
if [ -n "$binary" ]; then
    [ -x "$binary" ] || die "NGINX_BINARY=$binary is not an executable"
    binary_version=$("$binary" -v 2>&1 | sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p')
    [ -n "$binary_version" ] || die "cannot read the version from $binary -v"
    while IFS= read -r arg; do
        case $arg in
        # Built from the distribution's tree of third-party modules, and
        # separate .so files: they do not change the binary's module ABI,
        # and configuring them would need their libraries.
        --add-module=* | --add-dynamic-module=*) ;;
        --with-*_module=dynamic) ;;
        # where that build kept its objects; ours goes to build/module/
        --builddir=*) ;;
        "") ;;
        *) configure_args+=("$arg") ;;
        esac
    done < <(binary_configure_args)
    if [ -z "$source_dir" ]; then
        source_dir=$(fetch_debian_source)
    fi
else
    [ -n "$source_dir" ] || die "give NGINX_SOURCE_DIR=<nginx source> or NGINX_BINARY=<nginx binary> (see README, Install)"
    # The vendored build's arguments (nginx-src), so the module has the
    # same features as with `make build`.
    configure_args=(--with-http_realip_module --with-http_ssl_module --with-http_v2_module
        --with-stream --with-stream_realip_module --with-stream_ssl_module --with-threads)
fi
[ -f "$source_dir/src/core/nginx.h" ] || die "$source_dir is not an nginx source tree (no src/core/nginx.h)"
source_dir=$(cd "$source_dir" && pwd)

version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$source_dir/src/core/nginx.h")
[ -n "$version" ] || die "cannot read NGINX_VERSION from $source_dir/src/core/nginx.h"
if [ -n "$binary_version" ] && [ "$binary_version" != "$version" ]; then
    die "$binary is nginx $binary_version but $source_dir is nginx $version: nginx refuses a module built for another version"
fi
if [ "$(version_number "$version")" -lt "$(version_number "$min_version")" ]; then
    die "nginx $version is too old: ngx-mruby-rs needs nginx $min_version or newer"
fi

# --with-compat makes the module loadable by any --with-compat build of the
# same version; it is added once.
case " ${configure_args[*]} " in
*" --with-compat "*) ;;
*) configure_args=(--with-compat "${configure_args[@]}") ;;
esac
# shellcheck disable=SC2206 # extra arguments are split like NGX_CONFIGURE_ARGS
extra_args=(${NGINX_CONFIGURE_ARGS:-})
configure_args+=("${extra_args[@]}")

# --- configure (headers + ngx_auto_config.h only) ---------------------------

work="$repo/build/module/nginx-$version"
build_dir="$work/objs"
mkdir -p "$work"
stamp="$build_dir/ngx-mruby-configure-args"
wanted=$(printf '%s\n' "$source_dir" "${configure_args[@]}")
if [ -f "$build_dir/ngx_auto_config.h" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    echo "make module: nginx $version already configured in $build_dir" >&2
else
    echo "make module: configuring nginx $version ($source_dir) with: ${configure_args[*]}" >&2
    rm -rf "$build_dir"
    # configure writes a top-level Makefile into the source tree: keep the
    # tree as it was (it may be read-only input such as cargo's registry).
    had_makefile=0
    [ -e "$source_dir/Makefile" ] && had_makefile=1 && cp -p "$source_dir/Makefile" "$work/Makefile.saved"
    # a release tarball has ./configure; a source checkout (and the
    # nginx-src crate) only auto/configure
    configure=./configure
    [ -f "$source_dir/configure" ] || configure=auto/configure
    if ! (cd "$source_dir" && $configure "${configure_args[@]}" --builddir="$build_dir") >"$work/configure.log" 2>&1; then
        tail -n 20 "$work/configure.log" >&2
        die "configure failed (full log: $work/configure.log); a missing library: install its -dev package, or drop the module with NGINX_CONFIGURE_ARGS"
    fi
    if [ $had_makefile = 1 ]; then mv "$work/Makefile.saved" "$source_dir/Makefile"; else rm -f "$source_dir/Makefile"; fi
    printf '%s\n' "$wanted" >"$stamp"
fi
# for `make deb`, which takes the Debian ABI name from the same tree
printf '%s\n' "$source_dir" >"$work/source-dir"

# --- compile the module against it -----------------------------------------

# A target directory of its own by default, so the vendored build in
# target/ stays valid; MODULE_TARGET_DIR=target shares the compiled
# dependencies instead (CI: one build of them; the next `make build` then
# recompiles the crates that depend on the nginx source).
target_dir=${MODULE_TARGET_DIR:-"$repo/target/nginx-$version"}
cargo_flags=()
[ "$profile" = release ] && cargo_flags+=(--release)
NGINX_SOURCE_DIR="$source_dir" NGINX_BUILD_DIR="$build_dir" CARGO_TARGET_DIR="$target_dir" \
    "$cargo" build "${cargo_flags[@]}" -p ngx-mruby-rs >&2

out=${MODULE_OUT:-$work}
mkdir -p "$out"
cp "$target_dir/$profile/libngx_http_mruby_module.so" "$out/ngx_http_mruby_module.so.tmp"
mv "$out/ngx_http_mruby_module.so.tmp" "$out/ngx_http_mruby_module.so"
echo "make module: built for nginx $version" >&2
echo "$out/ngx_http_mruby_module.so"
