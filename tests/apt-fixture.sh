#!/usr/bin/env bash
# Download (once) the .debs a local apt archive needs so that sbuild can
# install build-essential, fakeroot and debhelper into the test chroot
# offline: the whole closure of a buildd-variant bootstrap plus debhelper and
# fakeroot, taken from the mirror the host's apt uses (as chroot-fixture.sh).
# tests/aptarchive turns them into a signed archive for each test.
# mmdebstrap installs them into a scratch root (root mode) because that is
# what resolves the closure exactly as apt inside the chroot will; both
# cleanups are skipped so the downloaded .debs stay in the root's apt cache.
# Only the .debs are kept, in $BUILDD_AGENT_TEST_CACHE/debs (default
# /var/cache/buildd-agent-tests/debs); prints that directory on stdout.
set -euo pipefail
cache=${BUILDD_AGENT_TEST_CACHE:-/var/cache/buildd-agent-tests}
series=${SERIES:-bookworm}
arch=$(dpkg --print-architecture)
out="$cache/debs"
include=debhelper,fakeroot,build-essential
# DEBS_SET=tools: a second cached set, $cache/debs-tools, with intltool and
# lsb-release besides (what translation-templates and sourcepackagerecipe
# builds install into the test chroot); a superset of the default set.
case "${DEBS_SET:-}" in
  "") ;;
  tools) out="$cache/debs-tools"; include="$include,intltool,lsb-release" ;;
  # DEBS_SET=docker: $cache/debs-docker, the default set plus docker.io
  # and its dependencies (containerd, runc, iptables, tini, …), what oci
  # builds install into the test chroot.
  docker) out="$cache/debs-docker"; include="$include,docker.io" ;;
  # DEBS_SET=livefs: $cache/debs-livefs, the default set plus Debian's
  # live-build, debootstrap and squashfs-tools (what livefs builds install
  # with the livecd-rootfs stand-in).
  livefs) out="$cache/debs-livefs"; include="$include,live-build,debootstrap,squashfs-tools" ;;
  # DEBS_SET=clamav: $cache/debs-clamav, the default set plus Debian's
  # clamav (clamscan, freshclam, libclamav), what ci builds with
  # scan_malware install.
  clamav) out="$cache/debs-clamav"; include="$include,clamav" ;;
  *) echo "apt-fixture.sh: unknown DEBS_SET ${DEBS_SET}" >&2; exit 2 ;;
esac
mkdir -p "$cache"
# The same lock as chroot-fixture.sh: both download from the mirror, and a
# test that needs both runs them one after the other anyway.
exec 9>"$cache/.lock"
flock 9
if [ -s "$out/.complete" ]; then echo "$out"; exit 0; fi
command -v mmdebstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
}
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d "$out-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mmdebstrap --mode=root --variant=buildd --arch="$arch" --include="$include" \
  --skip=download/empty,cleanup/apt \
  "$series" "$work/root" "$mirror" >&2
mkdir "$work/debs"
mv "$work"/root/var/cache/apt/archives/*.deb "$work/debs/"
# What was asked for and where it came from, for whoever reads the cache.
printf 'series: %s\narch: %s\nmirror: %s\ninclude: %s\ndebs: %s\n' \
  "$series" "$arch" "$mirror" "$include" "$(ls "$work/debs" | wc -l)" > "$work/debs/.complete"
chmod -R a+rX "$work/debs"
rm -rf "$out"
mv "$work/debs" "$out"
echo "$out"
