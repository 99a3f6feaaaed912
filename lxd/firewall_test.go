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
