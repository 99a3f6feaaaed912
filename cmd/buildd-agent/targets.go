package main

import (
	"context"
	"log/slog"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

// targetFactories makes the target backends the agent's managers build in,
// by backend name ("lxd", "chroot"), and a cleanup function `run` calls at
// shutdown (after the agent is closed).
//
// WIRING POINT: the LXD and rootfs (chroot) backends are added here by
// their owners, e.g. factories["lxd"] = lxdFactory. Until then the map is
// empty and builds that need a target fail with a clear error from the
// agent. Build managers register themselves (builders.Register) through
// blank imports, not here.
func targetFactories(ctx context.Context, cfg *agent.Config, logger *slog.Logger) (map[string]target.Factory, func(), error) {
	factories := map[string]target.Factory{}
	return factories, func() {}, nil
}
