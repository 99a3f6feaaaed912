package tests

// Production defaults against test defaults for routing out of the bridge.
// The shipped configuration (etc/buildd-agent.toml, the package's
// conffile) NATs the bridge as launchpad-buildd does, so that apt and snapd
// in a real build reach the archives and the store; the embedded default
// and every test configuration do not, and the test bridge must give a
// container no route out.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lxdclient "github.com/canonical/lxd/client"

	"github.com/buildd-agent/buildd-agent/agent"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func TestShippedConfigNATsEmbeddedDoesNot(t *testing.T) {
	shipped, err := agent.LoadConfig(filepath.Join(testenv.RepoRoot(), "etc", "buildd-agent.toml"))
	if err != nil {
		t.Fatalf("etc/buildd-agent.toml: %v", err)
	}
	if !shipped.LXD.NAT {
		t.Errorf("etc/buildd-agent.toml: nat = false; a real builder's apt-get and snap install would have no route out")
	}
	def, err := agent.ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if def.LXD.NAT {
		t.Errorf("the embedded default NATs the bridge; it must stay loopback-only and closed")
	}
}

func TestLXDTestBridgeHasNoRouteOut(t *testing.T) {
	testenv.RequireLXD(t)
	ip := testenv.RequireCommand(t, "ip")
	iptables := testenv.RequireCommand(t, "iptables")
	// The bridge as the agent's own code sets it up with nat = false (what
	// every test configuration says).
	cfg := lxd.Config{
		Instance: "natcheck", NamePrefix: "natcheck", Profile: "buildd-agent-natcheck",
		NAT: false, ReadyTimeout: 90 * time.Second, ImageMaxCount: 1,
	}
	host, err := lxd.NewHost(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() {
		host.Close()
		if c, err := lxdclient.ConnectLXDUnix("", nil); err == nil {
			_ = c.DeleteProfile(cfg.Profile)
			c.Disconnect()
		}
	})
	// /healthz's probe of the backend.
	if err := host.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	c, err := lxdclient.ConnectLXDUnix("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect()
	nw, _, err := c.GetNetwork("lpbuilddbr0")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ipv4.nat", "ipv4.routing"} {
		if nw.Config[k] == "true" {
			t.Errorf("bridge lpbuilddbr0: %s = true", k)
		}
	}
	// No masquerading of the bridge's subnet, by LXD or anyone.
	out, err := exec.Command(iptables, "-w", "-t", "nat", "-S", "POSTROUTING").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "10.10.10.") {
		t.Errorf("a NAT rule covers the bridge's subnet:\n%s", out)
	}
	// The kernel would not forward a container's packet anywhere: a route
	// lookup as for a packet arriving from a container (no packet is sent).
	out, err = exec.Command(ip, "route", "get", "192.0.2.1", "from", "10.10.10.2", "iif", "lpbuilddbr0").CombinedOutput()
	if err == nil {
		t.Errorf("a container on lpbuilddbr0 has a route out:\n%s", out)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/lpbuilddbr0/forwarding"); err == nil && strings.TrimSpace(string(b)) != "0" {
		t.Errorf("forwarding is on for lpbuilddbr0")
	}
}
