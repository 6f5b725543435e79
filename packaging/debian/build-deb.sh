#!/usr/bin/env bash
# `make deb`: libnginx-mod-http-mruby_<version>_<arch>.deb for Debian's own
# nginx (the binary at NGINX_BINARY, default /usr/sbin/nginx), laid out as
# Debian's libnginx-mod-* packages are:
#
#   /usr/lib/nginx/modules/ngx_http_mruby_module.so
#   /usr/share/nginx/modules-available/mod-http-mruby.conf   (load_module)
#   /usr/sbin/ngx-mruby-supervisor                           (tenant runners)
#   /etc/nginx/modules-enabled/70-mod-http-mruby.conf        (symlink, postinst;
#                                                             after 50-mod-stream.conf)
#
# Depends on the nginx ABI virtual package (nginx-abi-<version>-<n>) named
# by the nginx source the module was built against, as dh_nginx does, so
# apt refuses the package next to a mismatched nginx. Built with dpkg-deb
# (no debian/ tree needed at the repository root); the maintainer scripts
# are the ones dh_nginx generates.
#
# Prints the path of the .deb on its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
here="$repo/packaging/debian"
cd "$repo"

die() {
    echo "make deb: $*" >&2
    exit 1
}

binary=${NGINX_BINARY:-/usr/sbin/nginx}
[ -x "$binary" ] || die "$binary not found: install Debian's nginx (make setup does) or set NGINX_BINARY"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian's dpkg)"

module=$(NGINX_BINARY="$binary" "$repo/packaging/nginx-module.sh" | tail -n1)
work=$(dirname "$module")
source_dir=$(cat "$work/source-dir")
nginx_version=$(basename "$work")
nginx_version=${nginx_version#nginx-}

# The ABI name, where dh_nginx takes it from: the nginx source's
# debian/libnginx-mod.abisubstvars. The installed nginx must provide it.
abi_file="$source_dir/debian/libnginx-mod.abisubstvars"
[ -f "$abi_file" ] || die "$abi_file not found: the nginx source is not Debian's (make deb packages for Debian's nginx only)"
abi=$(sed -n 's/^nginx:abi=//p' "$abi_file")
[ -n "$abi" ] || die "no nginx:abi in $abi_file"
nginx_package=$(dpkg-query -S "$(readlink -f "$binary")" | head -n1 | cut -d: -f1)
provides=$(dpkg-query -W -f='${Provides}' "$nginx_package")
case ", $provides," in
*", $abi,"*) ;;
*) die "the installed $nginx_package provides \"$provides\", not $abi (the ABI of the source in $source_dir)" ;;
esac

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)-1
arch=$(dpkg --print-architecture)
package=libnginx-mod-http-mruby
out="$repo/build/deb"
stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/lib/nginx/modules" \
    "$stage/usr/share/nginx/modules-available" "$stage/usr/share/doc/$package"

# Debian ships modules stripped (debug symbols go to -dbgsym packages).
objcopy --strip-debug --remove-section=.comment "$module" "$stage/usr/lib/nginx/modules/ngx_http_mruby_module.so"
chmod 644 "$stage/usr/lib/nginx/modules/ngx_http_mruby_module.so"
# The tenant runners' supervisor program, where the module looks for it by
# default: next to the nginx binary (tenant_supervisor). It does not
# depend on the nginx version.
profile=${PROFILE:-release}
cargo_flags=()
if [ "$profile" = release ]; then cargo_flags+=(--release); fi
"${CARGO:-cargo}" build "${cargo_flags[@]}" -p ngx-mruby-supervisor >&2
mkdir -p "$stage/usr/sbin"
objcopy --strip-debug --remove-section=.comment "$repo/target/$profile/ngx-mruby-supervisor" \
    "$stage/usr/sbin/ngx-mruby-supervisor"
chmod 755 "$stage/usr/sbin/ngx-mruby-supervisor"
install -m 644 "$here/mod-http-mruby.conf" "$stage/usr/share/nginx/modules-available/"
install -m 644 "$here/copyright" "$stage/usr/share/doc/$package/copyright"
printf '%s (%s) unstable; urgency=medium\n\n  * Built from ngx-mruby-rs %s for nginx %s (%s).\n\n -- ngx-mruby-rs developers <ngx-mruby-rs@localhost>  %s\n' \
    "$package" "$version" "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)" \
    "$nginx_version" "$abi" "$(date -R)" | gzip -9n >"$stage/usr/share/doc/$package/changelog.Debian.gz"
install -m 755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"

# Library dependencies of the .so, as dpkg-shlibdeps computes them for
# every Debian package (it wants a debian/control in its working directory).
shlibs_dir="$out/shlibs"
rm -rf "$shlibs_dir"
mkdir -p "$shlibs_dir/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$package" "$package" >"$shlibs_dir/debian/control"
shlibs=$(cd "$shlibs_dir" && dpkg-shlibdeps -O "$stage/usr/lib/nginx/modules/ngx_http_mruby_module.so" \
    "$stage/usr/sbin/ngx-mruby-supervisor" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] && shlibs=", $shlibs"

# The module's stream part (ngx_stream_mruby_module) links against
# ngx_stream_module, which Debian builds as a dynamic module of its own.
stream_depends=
# (no `grep -q` in a pipe: under pipefail nm's SIGPIPE would fail the test)
undefined=$(nm -D --undefined-only "$stage/usr/lib/nginx/modules/ngx_http_mruby_module.so")
if grep ' ngx_stream_' <<<"$undefined" >/dev/null; then
    stream_depends=", libnginx-mod-stream"
fi
shlibs="$stream_depends$shlibs"

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    -e "s/@NGINX_ABI@/$abi/" -e "s/@SHLIBS@/$shlibs/" -e "s/@NGINX_VERSION@/$nginx_version/" \
    "$here/control.in" >"$stage/DEBIAN/control"
(cd "$stage" && find usr -type f -exec md5sum {} +) >"$stage/DEBIAN/md5sums"

deb="$out/${package}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "make deb: $deb ($abi)" >&2
echo "$deb"
