package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/rootfs"
)

// targetFactories makes the target backends the agent's managers build in,
// by backend name ("lxd", "chroot"), and a cleanup function `run` calls at
// shutdown (after the agent is closed). Build managers register
// themselves (builders.Register) in package builders' init, not here.
//
// The LXD backend is set up only when it is the default backend: NewHost
// talks to the daemon and ensures the bridge, profile and pool, which a
// chroot-only builder must not need. The chroot backend costs nothing
// until used and is always offered. The probes say, for /healthz, whether
// a backend's daemon answers. prepare (nil without LXD) is the LXD host's
// import of a chroot ahead of its build (agent.Options.Prepare).
func targetFactories(ctx context.Context, cfg *agent.Config, logger *slog.Logger) (factories map[string]target.Factory, probes map[string]agent.Probe, cleanup func(), prepare func(sha1, path string), err error) {
	factories = map[string]target.Factory{
		"chroot": rootfs.NewChrootFactory(rootfs.ChrootConfig{
			BuildHome: cfg.Builder.BuildHome,
			IDMapUser: cfg.Chroot.IDMapUser,
			Logger:    logger,
		}),
	}
	probes = map[string]agent.Probe{}
	cleanup = func() {}
	if cfg.Builder.Backend == "lxd" {
		c := cfg.LXD
		h, err := lxd.NewHost(ctx, lxd.Config{
			Socket:        c.Socket,
			RemoteURL:     c.RemoteURL,
			TLS:           lxd.RemoteTLS{ClientCert: c.TLSClientCert, ClientKey: c.TLSClientKey, ServerCert: c.TLSServerCert},
			Bridge:        c.Bridge,
			Subnet:        c.Subnet,
			NAT:           c.NAT,
			StoragePool:   c.StoragePool,
			Profile:       c.Profile,
			Privileged:    c.Privileged,
			ReadyTimeout:  c.ReadyTimeout.Duration,
			ImageMaxAge:   c.ImageMaxAge.Duration,
			ImageMaxCount: c.ImageMaxCount,
			Instance:      c.Instance,
			BuildHome:     cfg.Builder.BuildHome,
			AgentPorts:    agentPorts(cfg),
			Logger:        logger,
		})
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("cannot set up the LXD backend: %w", err)
		}
		factories["lxd"] = h.Factory()
		probes["lxd"] = h.Ping
		prepare = h.Prepare
		cleanup = func() {
			if err := h.Close(); err != nil {
				logger.Warn("cannot close the LXD backend", "error", err)
			}
		}
	}
	return factories, probes, cleanup, prepare, nil
}

// agentPorts are the agent's own ports, which the LXD host firewalls off
// its bridge: XML-RPC and file cache, and metrics when served apart.
func agentPorts(cfg *agent.Config) []int {
	ports := []int{cfg.Builder.Port}
	if _, p, err := net.SplitHostPort(cfg.Builder.MetricsAddress); err == nil {
		if n, err := strconv.Atoi(p); err == nil {
			ports = append(ports, n)
		}
	}
	return ports
}
