#!/usr/bin/env bash
# Install and start everything the test suite and the agent need on a fresh
# Debian 12 machine (as root). Idempotent; `make test` and `make run` call it.
#   - Debian packages: LXD + iptables, debootstrap, squid + apache2-utils
#     (htpasswd), git, uidmap, libcap2-bin, squashfs-tools, compressors,
#     lintian and systemd (systemd-analyze) for the package test (make deb),
#     haproxy (a reference proxy beside the builder proxy in its benchmarks);
#   - tests/lxd-setup.sh: LXD daemon started and initialised;
#   - Debian package builds (sbuild in --chroot-mode=unshare, without
#     schroot: no recommends): sbuild, mmdebstrap, apt-utils (apt-ftparchive),
#     dpkg-dev (dpkg-source), gnupg, gcc/make (the test sources compile on
#     the host too), and the unprivileged user sbuild-harness with a
#     subuid/subgid range that the sbuild tests build as;
#   - tests/chroot-fixture.sh: the cached debootstrap chroot tarball, and
#     tests/apt-fixture.sh: the cached .debs of the test apt archive, and
#     tests/bootstrap-fixture.sh: those of a whole buildd bootstrap (chroot
#     create's test), and tests/oci-fixture.sh: the OCI test image (the test
#     chroot with docker.io) (only with --fixtures, the test suite's setup).
# Services the tests need beyond LXD (squid, git daemon, http servers) are
# started by the tests themselves on loopback and stopped afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
  exec sudo -E "$0" "$@"
fi
pkgs=(lxd iptables debootstrap squid apache2-utils git uidmap libcap2-bin
      squashfs-tools zstd xz-utils bzip2 python3 curl ca-certificates
      systemd zip mitmproxy isal haproxy)
need=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Without recommends: sbuild's would pull in schroot and autopkgtest.
# git-build-recipe and brz (Breezy) run on the host for recipe builds and
# Bazaar branches (translation-templates, snap, recipes).
norec=(sbuild mmdebstrap apt-utils dpkg-dev gnupg gcc make libc6-dev git-build-recipe brz lintian)
need=()
for p in "${norec[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# sbuild --chroot-mode=unshare maps 65536 ids through newuidmap: the user
# needs its own subuid/subgid range (useradd allocates one).
if ! id sbuild-harness >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh sbuild-harness
fi
for f in /etc/subuid /etc/subgid; do
  grep -q '^sbuild-harness:' "$f" || usermod --add-sub${f#/etc/sub}s 10100001-10165536 sbuild-harness
done
# The agent's own build user ([sbuild] user, default "buildd"), with ranges
# outside root's (LXD's containers map to root's 100000+ range): a build
# root never shares host ids with a container.
if ! id buildd >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh buildd
fi
for f in /etc/subuid /etc/subgid; do
  # useradd may have allocated a range inside root's: replace it.
  if ! grep -q '^buildd:10200000:65536$' "$f"; then
    sed -i '/^buildd:/d' "$f"
    echo 'buildd:10200000:65536' >> "$f"
  fi
done
# Debian's squid starts itself on :3128 when an init system runs; the tests
# run their own instance with their own config, so the packaged one is not needed.
bash "$here/lxd-setup.sh" >&2
if [ "${1:-}" = --fixtures ]; then
  bash "$here/chroot-fixture.sh" >/dev/null
  bash "$here/apt-fixture.sh" >/dev/null
  bash "$here/bootstrap-fixture.sh" >/dev/null
  bash "$here/oci-fixture.sh" >/dev/null
fi
command -v staticcheck >/dev/null 2>&1 || [ -x "$(go env GOPATH)/bin/staticcheck" ] \
  || GOFLAGS= go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
echo "setup: ready" >&2
