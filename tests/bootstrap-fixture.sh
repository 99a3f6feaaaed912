#!/usr/bin/env bash
# Download (once) every .deb a buildd-variant bootstrap of bookworm needs,
# essential packages included, so that `buildd-agent chroot create` can be
# tested against a local signed archive on loopback (tests/aptarchive)
# instead of a mirror. Like apt-fixture.sh, but --skip=essential/unlink
# keeps the essential set's .debs too (apt-fixture's closure lacks them:
# sbuild's test chroot already has them).
# Cached in $BUILDD_AGENT_TEST_CACHE/debs-bootstrap; prints that directory.
set -euo pipefail
cache=${BUILDD_AGENT_TEST_CACHE:-/var/cache/buildd-agent-tests}
series=${SERIES:-bookworm}
arch=$(dpkg --print-architecture)
out="$cache/debs-bootstrap"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -s "$out/.complete" ]; then echo "$out"; exit 0; fi
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d "$out-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mmdebstrap --mode=root --variant=buildd --arch="$arch" \
  --skip=download/empty,cleanup/apt,essential/unlink \
  "$series" "$work/root" "$mirror" >&2
mkdir "$work/debs"
mv "$work"/root/var/cache/apt/archives/*.deb "$work/debs/"
printf 'series: %s\narch: %s\nmirror: %s\ndebs: %s\n' \
  "$series" "$arch" "$mirror" "$(ls "$work/debs" | wc -l)" > "$work/debs/.complete"
chmod -R a+rX "$work/debs"
rm -rf "$out"
mv "$work/debs" "$out"
echo "$out"
