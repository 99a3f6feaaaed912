#!/usr/bin/env bash
# Install, start and initialise LXD for buildd-agent on a Debian 12 machine.
# Idempotent: safe to run again; it only does what is missing.
# - installs LXD (Debian's 5.0 package) and iptables (LXD needs it for a managed bridge);
# - starts the daemon itself where no systemd runs as PID 1;
# - creates the "default" dir storage pool and the root disk in the default profile.
# - creates the agent's bridge (lpbuilddbr0, 10.10.10.1/24, no NAT) if missing;
#   the agent ensures it (and its profile) again at every start.
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
# The agent ensures (and repairs) its bridge at start; creating it here too
# lets tests that use raw LXD on the bridge run first. Never NAT, no routing
# outward, no DHCP (containers get static addresses from the host side).
lxc network show lpbuilddbr0 >/dev/null 2>&1 \
  || lxc network create lpbuilddbr0 ipv4.address=10.10.10.1/24 ipv4.nat=false \
       ipv4.routing=false ipv4.dhcp=false ipv6.address=none >/dev/null 2>&1 \
  || lxc network show lpbuilddbr0 >/dev/null
echo "lxd ready: $(lxd --version)"
