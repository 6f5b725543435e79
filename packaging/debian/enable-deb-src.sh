#!/usr/bin/env bash
# Adds deb-src entries for the Debian archives apt already uses for
# binaries, so `apt-get source nginx` works (`make module NGINX_BINARY=`,
# `make deb`). Does nothing if a deb-src entry for this release's suite is
# already configured (a source entry of another release, e.g. trixie for
# mruby, does not count). Run by `make setup`; run `apt-get update` after.
set -euo pipefail

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
target=/etc/apt/sources.list.d/ngx-mruby-rs-deb-src.sources
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] && [ "$file" != "$target" ] || continue
    # one-line format: "deb-src URI bookworm ..."; deb822: a stanza with
    # "Types: ... deb-src" and "Suites: ... bookworm ...".
    if grep -Eq "^deb-src .* $codename( |$)" "$file" ||
        awk -v RS= -v c="$codename" '/Types:[^\n]*deb-src/ && $0 ~ "Suites:[^\n]*[ \t]" c "([ \t\n]|$)" { found = 1 } END { exit !found }' "$file"; then
        exit 0
    fi
done
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # deb822 (Debian 12 images): the same stanzas with Types: deb-src.
    sed -e 's/^Types:.*/Types: deb-src/' -e '/^#/d' /etc/apt/sources.list.d/debian.sources >"$target.tmp"
    mv "$target.tmp" "$target"
elif [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
    target=/etc/apt/sources.list.d/ngx-mruby-rs-deb-src.list
    sed -n 's/^deb \(.*debian.*\)/deb-src \1/p' /etc/apt/sources.list >"$target"
else
    echo "enable-deb-src: no Debian apt source found to mirror as deb-src" >&2
    exit 1
fi
echo "enable-deb-src: wrote $target"
