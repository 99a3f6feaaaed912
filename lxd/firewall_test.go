package lxd

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func TestSplitRule(t *testing.T) {
	got := splitRule(`-A INPUT -i br0 -m comment --comment "buildd-agent:x y \"z\"" -j REJECT`)
	want := []string{"-A", "INPUT", "-i", "br0", "-m", "comment", "--comment", `buildd-agent:x y "z"`, "-j", "REJECT"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitRule = %q", got)
	}
}

// The firewall against the real iptables and ip6tables, on a bridge name
// no interface has (so no traffic is affected): rules appear once, first
// in INPUT, survive a second ensure unchanged, follow a port change, and
// remove deletes exactly ours, leaving a rule of another instance and a
// rule of nobody's in place.
func TestFirewallRealIptables(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "iptables")
	testenv.RequireCommand(t, "ip6tables")
	ctx := context.Background()
	const bridge = "bdafwtest0"
	ours := newFirewall(bridge, "fwtest", []int{18221, 18221, 19100}, nil)
	other := newFirewall(bridge, "fwtest-other", []int{28221}, nil)
	foreign := []string{"-i", bridge, "-p", "tcp", "-m", "tcp", "--dport", "18221", "-j", "ACCEPT"}
	t.Cleanup(func() {
		ours.remove(ctx)
		other.remove(ctx)
		for _, bin := range firewallBins {
			exec.Command(bin, append([]string{"-w", "-D", "INPUT"}, foreign...)...).Run()
		}
	})
	for _, bin := range firewallBins {
		if out, err := exec.Command(bin, append([]string{"-w", "-A", "INPUT"}, foreign...)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", bin, err, out)
		}
	}
	if err := other.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	var calls int
	counting := func(ctx context.Context, bin string, args ...string) ([]byte, error) {
		if args[0] != "-S" {
			calls++
		}
		return execIptables(ctx, bin, args...)
	}
	ours.run = counting
	for i := range 2 {
		if err := ours.ensure(ctx); err != nil {
			t.Fatal(err)
		}
		if i == 1 && calls != 4 {
			t.Errorf("second ensure changed rules (%d changes in all, want the first ensure's 4)", calls)
		}
	}
	for _, bin := range firewallBins {
		out, _ := exec.Command(bin, "-w", "-S", "INPUT").Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		// -P INPUT, then ours (both ports), then the other instance's.
		if len(lines) < 5 || !strings.Contains(lines[1], "buildd-agent:fwtest\"") && !strings.Contains(lines[1], "buildd-agent:fwtest ") {
			t.Errorf("%s: our rules are not first in INPUT:\n%s", bin, out)
		}
		if strings.Count(string(out), "buildd-agent:fwtest") != 3 || !strings.Contains(string(out), "--dport 19100") {
			t.Errorf("%s INPUT:\n%s", bin, out)
		}
	}
	// A port change replaces our rules.
	moved := newFirewall(bridge, "fwtest", []int{18222}, nil)
	if err := moved.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := moved.remove(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bin := range firewallBins {
		out, _ := exec.Command(bin, "-w", "-S", "INPUT").Output()
		s := string(out)
		if strings.Contains(s, "buildd-agent:fwtest\"") || strings.Contains(s, "--dport 19100") || strings.Contains(s, "--dport 18222") {
			t.Errorf("%s: our rules remain:\n%s", bin, s)
		}
		if !strings.Contains(s, "buildd-agent:fwtest-other") || !strings.Contains(s, "--dport 18221 -j ACCEPT") {
			t.Errorf("%s: remove touched rules not ours:\n%s", bin, s)
		}
	}
}

// fakeChain is INPUT as iptables keeps it, for the Host's wiring.
type fakeChain struct{ rules map[string][]string }

func (c *fakeChain) run(_ context.Context, bin string, args ...string) ([]byte, error) {
	switch args[0] {
	case "-S":
		out := "-P INPUT ACCEPT\n"
		for _, r := range c.rules[bin] {
			out += r + "\n"
		}
		return []byte(out), nil
	case "-I":
		c.rules[bin] = append(c.rules[bin], "-A INPUT "+strings.Join(quoteComment(args[3:]), " "))
	case "-D":
		want := "-A INPUT " + strings.Join(quoteComment(args[2:]), " ")
		for i, r := range c.rules[bin] {
			if r == want {
				c.rules[bin] = append(c.rules[bin][:i], c.rules[bin][i+1:]...)
				break
			}
		}
	}
	return nil, nil
}

func quoteComment(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if i > 0 && out[i-1] == "--comment" {
			out[i] = `"` + out[i] + `"`
		}
	}
	return out
}

// A Host with AgentPorts firewalls them at start, keeps them on every
// ensure, and removes them (only them) at Close.
func TestHostFirewallWiring(t *testing.T) {
	chain := &fakeChain{rules: map[string][]string{"iptables": {`-A INPUT -i eth0 -j ACCEPT`}}}
	old := runFirewall
	runFirewall = chain.run
	t.Cleanup(func() { runFirewall = old })
	cfg := testHostConfig()
	cfg.AgentPorts = []int{8221, 9100}
	h, err := newHost(context.Background(), cfg, newFakeServer())
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range firewallBins {
		s := strings.Join(chain.rules[bin], "\n")
		if !strings.Contains(s, "--dport 8221") || !strings.Contains(s, "--dport 9100") || !strings.Contains(s, "-i lpbuilddbr0") {
			t.Errorf("%s after start:\n%s", bin, s)
		}
	}
	// Deleted by hand: back at the next ensure (before each build).
	chain.rules["ip6tables"] = nil
	if err := h.ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(chain.rules["ip6tables"]) != 2 {
		t.Errorf("ip6tables after ensure: %q", chain.rules["ip6tables"])
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if got := chain.rules["iptables"]; len(got) != 1 || got[0] != `-A INPUT -i eth0 -j ACCEPT` {
		t.Errorf("iptables after Close: %q", got)
	}
	if len(chain.rules["ip6tables"]) != 0 {
		t.Errorf("ip6tables after Close: %q", chain.rules["ip6tables"])
	}
}
