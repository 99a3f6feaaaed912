#!/usr/bin/env bash
# Build (once) the OCI test image: the test chroot tarball (chroot-fixture.sh)
# with Debian's docker.io and its dependencies installed, so that an oci build
# (and the OCI benchmark) has real docker without fetching it: the build's own
# `apt-get -y install docker.io` finds it installed. The shared test chroot is
# left as it is (other tests and the cold-path benchmarks depend on its size).
# docker.io comes offline from the cached .debs of apt-fixture.sh's docker set,
# as a file: archive that apt resolves in the unpacked chroot; no apt list,
# cache or source is left behind. docker.service is enabled (the container's
# systemd starts it), nothing is started while the image is made.
# Packed as chroot-fixture.sh packs (chroot-autobuild/, gzip, numeric owners,
# security.capability xattrs). Cached in $BUILDD_AGENT_TEST_CACHE (default
# /var/cache/buildd-agent-tests), rebuilt when the base tarball is newer;
# prints the tarball's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${BUILDD_AGENT_TEST_CACHE:-/var/cache/buildd-agent-tests}
series=${SERIES:-bookworm}
arch=$(dpkg --print-architecture)
out="$cache/$series-$arch-oci-chroot.tar.gz"
# Both take $cache/.lock themselves: run them before taking ours.
base=$(bash "$here/chroot-fixture.sh")
debs=$(DEBS_SET=docker bash "$here/apt-fixture.sh")
exec 9>"$cache/.oci.lock"
flock 9
if [ -s "$out" ] && [ "$out" -nt "$base" ] && [ "$out" -nt "$debs/.complete" ]; then
  echo "$out"; exit 0
fi
command -v apt-ftparchive >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apt-utils >/dev/null
}
work=$(mktemp -d "$cache/oci-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$work" --numeric-owner --xattrs --xattrs-include='security.capability' -xzf "$base"
root="$work/chroot-autobuild"
repo=/var/cache/oci-fixture-debs
mkdir -p "$root$repo"
cp "$debs"/*.deb "$root$repo/"
(cd "$root$repo" && apt-ftparchive packages . > Packages)
echo "deb [trusted=yes] file:$repo ./" > "$work/sources.list"
cp "$work/sources.list" "$root/tmp/oci-fixture.list"
# No service starts in the image being made.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
apt_opts=(-o Dir::Etc::SourceList=/tmp/oci-fixture.list -o Dir::Etc::SourceParts=-
          -o APT::Install-Recommends=false -o Acquire::Languages=none)
# The mounts live in a private mount namespace: gone when it ends.
unshare --mount --fork bash -euo pipefail -c '
  root=$1; shift
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get "$@" update -qq
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    apt-get "$@" install -y -qq docker.io
  chroot "$root" docker --version
' oci-fixture "$root" "${apt_opts[@]}" >&2
rm -f "$root/usr/sbin/policy-rc.d" "$root/tmp/oci-fixture.list"
rm -rf "${root:?}$repo" "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
  "$root"/var/cache/apt/archives/*.deb
tar -C "$work" --numeric-owner --xattrs --xattrs-include='security.capability' \
  -czf "$out.tmp" chroot-autobuild
mv "$out.tmp" "$out"
echo "$out"
