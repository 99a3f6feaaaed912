package lxd

// The agent's own ports, firewalled off the bridge.
//
// A build container reaches the host at the bridge address. The agent's
// XML-RPC and file cache (and its metrics, when served apart) must not be
// reachable from there: a build could call abort or ensurepresent, or read
// other jobs' inputs from /filecache. The shipped example configuration
// binds the agent to 0.0.0.0, and even a loopback-only agent is one config
// line from exposure, so the agent does not rely on its binding: it owns
// INPUT rules (IPv4 and IPv6, since Go's 0.0.0.0 listener is dual-stack
// and the bridge keeps its IPv6 link-local address) that reset TCP
// connections arriving on the bridge for each of its ports.
//
// Why not "accept the builder proxy, drop the rest": several agents (and
// the tests' own instances) can share one bridge, each with its own proxy
// port. A default drop owned by one instance would cut the others' builds
// off their proxies; rules that name only the owner's ports cannot. Other
// host services are outside the agent's care (the bridge has no NAT nor
// routing, so a container reaches nothing beyond the host).
//
// The rules carry a comment naming the instance ("buildd-agent:<instance>")
// and only rules with that comment are ever listed, deleted or replaced:
// no chain is flushed, no other rule is touched. ensureFirewall runs with
// every ensure (start and each build), so rules deleted by hand come back;
// Close removes them.

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// runFirewall runs iptables and ip6tables for every Host; tests replace it.
var runFirewall iptablesRunner = execIptables

// iptablesRunner runs iptables or ip6tables.
type iptablesRunner func(ctx context.Context, bin string, args ...string) ([]byte, error)

func execIptables(ctx context.Context, bin string, args ...string) ([]byte, error) {
	// -w: wait for the xtables lock rather than fail when another
	// program edits rules at the same moment.
	out, err := exec.CommandContext(ctx, bin, append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// firewall is the set of rules one agent instance owns on its bridge.
type firewall struct {
	bridge  string
	comment string
	ports   []int
	run     iptablesRunner
}

var firewallBins = []string{"iptables", "ip6tables"}

func newFirewall(bridge, instance string, ports []int, run iptablesRunner) *firewall {
	var safe strings.Builder
	for _, r := range instance {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			safe.WriteRune(r)
		} else {
			safe.WriteByte('_')
		}
	}
	var ps []int
	for _, p := range ports {
		if p > 0 && p < 65536 && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	sort.Ints(ps)
	if run == nil {
		run = execIptables
	}
	return &firewall{bridge: bridge, comment: "buildd-agent:" + safe.String(), ports: ps, run: run}
}

// rule is one rule's specification after the chain name, in the order
// `iptables -S` prints it back.
func (f *firewall) rule(port int) []string {
	return []string{"-i", f.bridge, "-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(port),
		"-m", "comment", "--comment", f.comment, "-j", "REJECT", "--reject-with", "tcp-reset"}
}

// owned lists the INPUT rules carrying our comment, as specifications.
func (f *firewall) owned(ctx context.Context, bin string) ([][]string, error) {
	out, err := f.run(ctx, bin, "-S", "INPUT")
	if err != nil {
		return nil, err
	}
	var rules [][]string
	for _, line := range strings.Split(string(out), "\n") {
		w := splitRule(line)
		if len(w) < 2 || w[0] != "-A" || w[1] != "INPUT" {
			continue
		}
		for i := 0; i+1 < len(w); i++ {
			if w[i] == "--comment" && w[i+1] == f.comment {
				rules = append(rules, w[2:])
				break
			}
		}
	}
	return rules, nil
}

// ensure makes our rules exactly the wanted ones, first in INPUT.
func (f *firewall) ensure(ctx context.Context) error {
	var errs []error
	for _, bin := range firewallBins {
		have, err := f.owned(ctx, bin)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var want [][]string
		for _, p := range f.ports {
			want = append(want, f.rule(p))
		}
		if sameRules(have, want) {
			continue
		}
		for _, r := range have {
			if _, err := f.run(ctx, bin, append([]string{"-D", "INPUT"}, r...)...); err != nil {
				errs = append(errs, err)
			}
		}
		for i, r := range want {
			if _, err := f.run(ctx, bin, append([]string{"-I", "INPUT", strconv.Itoa(i + 1)}, r...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cannot firewall the agent's ports on bridge %q: %w", f.bridge, err)
	}
	return nil
}

// remove deletes our rules (and nothing else).
func (f *firewall) remove(ctx context.Context) error {
	var errs []error
	for _, bin := range firewallBins {
		have, err := f.owned(ctx, bin)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range have {
			if _, err := f.run(ctx, bin, append([]string{"-D", "INPUT"}, r...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cannot remove the firewall rules of bridge %q: %w", f.bridge, err)
	}
	return nil
}

func sameRules(a, b [][]string) bool {
	key := func(rs [][]string) []string {
		var out []string
		for _, r := range rs {
			out = append(out, strings.Join(r, "\x00"))
		}
		sort.Strings(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// splitRule splits a line of `iptables -S` into words, as the shell
// would: double-quoted words (comments) lose their quotes, \" and \\ in
// them are unescaped.
func splitRule(line string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
