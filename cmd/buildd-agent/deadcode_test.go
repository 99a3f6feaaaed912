package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLinkerMethodElimination fails if a function reachable in the agent's
// binary calls reflect's Method or MethodByName with a computed argument
// (text/template executing a template, a template engine resolving a
// variable...). The Go linker must then keep every exported method of every
// reachable type, program-wide: for buildd-agent that was 5 MB more
// executable and 4–5 MB more resident memory at idle (pongo2, pulled in by
// the LXD client, did it; internal/pongo2stub replaces it). The linker's
// dependency dump marks such functions <ReflectMethod>; the failure shows
// how each is reached.
func TestLinkerMethodElimination(t *testing.T) {
	cmd := exec.Command("go", "build", "-ldflags=-dumpdep", "-o", filepath.Join(t.TempDir(), "buildd-agent"), ".")
	var dump bytes.Buffer
	cmd.Stderr = &dump
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build -ldflags=-dumpdep: %v\n%.2000s", err, dump.String())
	}
	parent, flagged := parseDumpDep(dump.Bytes())
	if len(dump.Bytes()) > 0 && len(parent) == 0 {
		t.Fatalf("cannot parse the linker's dependency dump: %.500s", dump.String())
	}
	for _, sym := range flagged {
		t.Errorf("%s calls reflect's Method/MethodByName, so the linker keeps all exported methods; reached by:\n  %s",
			sym, strings.Join(reachedBy(parent, sym, 25), "\n  <- "))
	}
}

// parseDumpDep reads `go build -ldflags=-dumpdep` output, lines of
// "from -> to" with flags such as " <ReflectMethod>" after a name, and
// returns the first symbol that marked each one reachable and the
// reachable symbols flagged <ReflectMethod> outside package reflect
// (reflect's own methods are flagged, but reached only through callers
// that are flagged too).
func parseDumpDep(dump []byte) (parent map[string]string, flagged []string) {
	parent = map[string]string{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(dump))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		from, to, ok := strings.Cut(sc.Text(), " -> ")
		if !ok {
			continue
		}
		from, _, _ = strings.Cut(from, " <")
		to, flags, _ := strings.Cut(to, " <")
		if _, ok := parent[to]; !ok {
			parent[to] = from
		}
		if strings.Contains(flags, "ReflectMethod") && !strings.HasPrefix(to, "reflect.") && !seen[to] {
			seen[to] = true
			flagged = append(flagged, to)
		}
	}
	return parent, flagged
}

// reachedBy is the chain of symbols that made sym reachable, at most n long.
func reachedBy(parent map[string]string, sym string, n int) []string {
	chain := []string{sym}
	for len(chain) < n {
		p, ok := parent[sym]
		if !ok || p == "_" {
			break
		}
		chain = append(chain, p)
		sym = p
	}
	return chain
}
