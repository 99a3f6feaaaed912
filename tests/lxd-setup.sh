#!/usr/bin/env bash
# Install, start and initialise LXD for buildd-agent on a Debian 12 machine.
# Idempotent: safe to run again; it only does what is missing.
# - installs LXD (Debian's 5.0 package) and iptables (LXD needs it for a managed bridge);
# - starts the daemon itself where no systemd runs as PID 1;
# - creates the "default" dir storage pool and the root disk in the default profile.
# The agent creates its own bridge (lpbuilddbr0, no NAT) and profile at start.
set -euo pipefail

need=()
for p in lxd iptables; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! lxc info >/dev/null 2>&1; then
  if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl start lxd.socket lxd.service || true
  fi
  if ! lxc info >/dev/null 2>&1; then
    mkdir -p /var/log/lxd
    # setsid: the daemon must outlive the shell that started it.
    setsid lxd --group root --logfile /var/log/lxd/lxd.log >/dev/null 2>&1 < /dev/null &
  fi
  lxd waitready --timeout=60
fi

lxc storage show default >/dev/null 2>&1 || lxc storage create default dir >/dev/null
lxc profile device show default 2>/dev/null | grep -q '^root:' \
  || lxc profile device add default root disk path=/ pool=default >/dev/null
echo "lxd ready: $(lxd --version)"
