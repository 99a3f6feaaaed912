#!/usr/bin/env bash
# Install and start everything the test suite and the agent need on a fresh
# Debian 12 machine (as root). Idempotent; `make test` and `make run` call it.
#   - Debian packages: LXD + iptables, debootstrap, squid + apache2-utils
#     (htpasswd), git, uidmap, libcap2-bin, squashfs-tools, compressors;
#   - tests/lxd-setup.sh: LXD daemon started and initialised;
#   - tests/chroot-fixture.sh: the cached debootstrap chroot tarball (only
#     with --fixtures, the test suite's setup).
# Services the tests need beyond LXD (squid, git daemon, http servers) are
# started by the tests themselves on loopback and stopped afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
  exec sudo -E "$0" "$@"
fi
pkgs=(lxd iptables debootstrap squid apache2-utils git uidmap libcap2-bin
      squashfs-tools zstd xz-utils bzip2 python3 curl ca-certificates)
need=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's squid starts itself on :3128 when an init system runs; the tests
# run their own instance with their own config, so the packaged one is not needed.
bash "$here/lxd-setup.sh" >&2
if [ "${1:-}" = --fixtures ]; then
  bash "$here/chroot-fixture.sh" >/dev/null
fi
command -v staticcheck >/dev/null 2>&1 || [ -x "$(go env GOPATH)/bin/staticcheck" ] \
  || GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
echo "setup: ready" >&2
