#!/usr/bin/env bash
# Build (once) the test chroot tarball that the end-to-end tests and benchmarks use:
# a Debian bookworm minbase made by debootstrap, with systemd so the LXD container
# boots, the tools the builds run inside the container (curl, git, socat, sudo,
# squashfs-tools) and a capability-bearing binary (ping, cap_net_raw=ep).
# It is packed like a Launchpad chroot: every member under "chroot-autobuild/",
# gzip, numeric owners, xattrs (security.capability) kept.
# Cached between runs in $BUILDD_AGENT_TEST_CACHE (default /var/cache/buildd-agent-tests);
# prints the tarball's path on stdout.
set -euo pipefail
cache=${BUILDD_AGENT_TEST_CACHE:-/var/cache/buildd-agent-tests}
series=${SERIES:-bookworm}
arch=$(dpkg --print-architecture)
out="$cache/$series-$arch-chroot.tar.gz"
include=systemd-sysv,iproute2,curl,ca-certificates,git,socat,sudo,squashfs-tools,libcap2-bin,iputils-ping
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -s "$out" ]; then echo "$out"; exit 0; fi
command -v debootstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/chroot-autobuild"
debootstrap --variant=minbase --include="$include" "$series" "$root" "$mirror" >&2
# Leave no apt lists (the container has no route out; installed packages are
# still known to apt through dpkg's status file) and no caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
# Make sure the capability is there even if the postinst fell back to setuid.
setcap cap_net_raw=ep "$root/usr/bin/ping" && chmod u-s "$root/usr/bin/ping"
tar -C "$work" --numeric-owner --xattrs --xattrs-include='security.capability' \
  -czf "$out.tmp" chroot-autobuild
mv "$out.tmp" "$out"
echo "$out"
