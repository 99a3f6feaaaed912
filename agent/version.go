package agent

// Version is the agent's version, reported as builder_version in status()
// and by `buildd-agent version`. Set at build time with
// -ldflags "-X github.com/buildd-agent/buildd-agent/agent.Version=…".
var Version = "0.1.0-dev"
