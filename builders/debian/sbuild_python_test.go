package debian

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pythonSearchLog is launchpad-buildd's searchLogContents and its
// Fail-Stage tail check, written afresh, run by Python's re on the same
// pattern strings as searchLog. It reads a JSON job on stdin and prints,
// per log, the index of the matching pattern (-1 for none), its groups in
// hex (null when a group did not participate) and whether the tail check
// matched.
const pythonSearchLog = `
import json, re, sys
job = json.load(sys.stdin)
pats = [re.compile(p.encode(), re.M | (re.S if s else 0)) for p, s in job["patterns"]]
stops = [re.compile(p.encode(), re.M) for p in job["stops"]]
chunk_size = job["chunk"]
out = []
for path in job["logs"]:
    found = [-1, []]
    with open(path, "rb") as f:
        window = b""
        chunk = f.read(chunk_size)
        done = False
        while chunk and not done:
            window += chunk
            for i, rx in enumerate(pats):
                m = rx.search(window)
                if m is not None:
                    found = [i, [m.group(0).hex()] + [None if g is None else g.hex() for g in m.groups()]]
                    done = True
                    break
            if done:
                break
            if any(rx.search(window) for rx in stops):
                break
            if len(window) > chunk_size:
                window = window[chunk_size:]
            chunk = f.read(chunk_size)
    with open(path, "rb") as f:
        try:
            f.seek(-4096, 2)
        except OSError:
            pass
        tail = f.read(4096).decode("UTF-8", "replace")
    found.append(re.search(r"^Fail-Stage: install-deps$", tail, re.M) is not None)
    out.append(found)
json.dump(out, sys.stdout)
`

// randomSbuildLog assembles a log from pieces that the patterns care
// about, noise (including invalid UTF-8 and CRs) and, when big, padding
// that puts pieces across 256 KiB chunk boundaries.
func randomSbuildLog(r *rand.Rand, big bool) []byte {
	names := []string{"foo", "libfoo-dev:any", "bar:amd64", "", "a,b", "x|y", "q\nr", "\xff\xfe"}
	versions := []string{"", " (>= 1.0)", " (<< 2)", " (= 1:2-3)", " (>= 1", " ()"}
	endings := append(append([]string{}, aptDubiousDepPatterns...), "but 1.0 is to be installed",
		"but 2 is installed", "but it is not installable", "but it is a virtual package",
		"but  is installed", "but it is not installable ", "but x y is installed")
	var b bytes.Buffer
	n := 3 + r.Intn(12)
	for i := 0; i < n; i++ {
		switch r.Intn(12) {
		case 0, 1:
			b.WriteString(unmetHeader)
		case 2, 3, 4:
			prefix := []string{" dummy : Depends: ", "      Depends: ", "Depends: ", " x Depends:  "}[r.Intn(4)]
			fmt.Fprintf(&b, "%s%s%s %s\n", prefix, names[r.Intn(len(names))], versions[r.Intn(len(versions))], endings[r.Intn(len(endings))])
		case 5:
			b.WriteString([]string{"E: There are problems and -y was used without --force-yes\n",
				"xE: There are problems and -y was used without --force-yes\n"}[r.Intn(2)])
		case 6:
			b.WriteString([]string{"Toolchain package versions: gcc\n", " Toolchain package versions:\n"}[r.Intn(2)])
		case 7:
			b.WriteString([]string{"Fail-Stage: install-deps\n", "Fail-Stage: install-deps \n", "Fail-Stage: build\n"}[r.Intn(3)])
		case 8:
			b.WriteString("noise \xc3\x28 \r\n")
		default:
			if big {
				// Land the next piece just before a chunk boundary.
				next := (b.Len()/logSearchChunk + 1) * logSearchChunk
				if pad := next - b.Len() - r.Intn(80); pad > 0 && r.Intn(2) == 0 {
					b.WriteString(strings.Repeat("p", pad))
					break
				}
				b.WriteString(strings.Repeat("q\n", r.Intn(100<<10)))
			} else {
				b.WriteString(strings.Repeat("n", r.Intn(200)) + "\n")
			}
		}
	}
	if r.Intn(2) == 0 {
		b.WriteString("Fail-Stage: install-deps\n")
	}
	return b.Bytes()
}

// pythonPatternSource converts a searchLog pattern to the Python pattern
// text it stands for.
func pythonPatternSource(p *logPattern) (string, bool) {
	if p.re == nil {
		return "^" + regexp.QuoteMeta(p.lineStart), false
	}
	return strings.TrimPrefix(p.re().String(), "(?ms)"), true
}

// TestSearchLogPython runs searchLog and the Fail-Stage tail check, and
// the same search written for Python's re, on a few hundred random logs,
// and requires the same pattern, the same groups and the same tail
// result. It skips without python3.
func TestSearchLogPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	patterns := []*logPattern{givenBackPattern, maybeDepFailPattern, depFailPattern}
	stops := []*logPattern{toolchainStopPattern}
	var job struct {
		Patterns [][2]any `json:"patterns"`
		Stops    []string `json:"stops"`
		Chunk    int      `json:"chunk"`
		Logs     []string `json:"logs"`
	}
	for _, p := range patterns {
		src, dotall := pythonPatternSource(p)
		job.Patterns = append(job.Patterns, [2]any{src, dotall})
	}
	for _, p := range stops {
		src, _ := pythonPatternSource(p)
		job.Stops = append(job.Stops, src)
	}
	job.Chunk = logSearchChunk
	dir := t.TempDir()
	r := rand.New(rand.NewSource(3))
	var logs [][]byte
	count := 400
	if testing.Short() {
		count = 60
	}
	for i := 0; i < count; i++ {
		log := randomSbuildLog(r, i%10 == 0)
		logs = append(logs, log)
		path := filepath.Join(dir, fmt.Sprintf("log%d", i))
		if err := os.WriteFile(path, log, 0o644); err != nil {
			t.Fatal(err)
		}
		job.Logs = append(job.Logs, path)
	}
	in, _ := json.Marshal(job)
	cmd := exec.Command(py, "-c", pythonSearchLog)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want []struct {
		Index  int
		Groups []*string
		Tail   bool
	}
	var raw [][]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw {
		var w struct {
			Index  int
			Groups []*string
			Tail   bool
		}
		json.Unmarshal(r[0], &w.Index)
		json.Unmarshal(r[1], &w.Groups)
		json.Unmarshal(r[2], &w.Tail)
		want = append(want, w)
	}
	matched := map[int]int{}
	for i, log := range logs {
		m, err := searchLog(bytes.NewReader(log), int64(len(log)), patterns, stops)
		if err != nil {
			t.Fatal(err)
		}
		index := -1
		for j, p := range patterns {
			if m.pattern == p {
				index = j
			}
		}
		matched[index]++
		var groups []*string
		if index >= 0 {
			for _, g := range m.groups {
				if g == nil {
					groups = append(groups, nil)
					continue
				}
				h := hex.EncodeToString(g)
				groups = append(groups, &h)
			}
		}
		tail, _ := readTail(bytes.NewReader(log), int64(len(log)), failStageTailLen)
		gotTail := failStageDepsRE().Match(tail)
		if index != want[i].Index || !equalGroups(groups, want[i].Groups) || gotTail != want[i].Tail {
			t.Errorf("log %d (%d bytes, %s): Go pattern %d groups %s tail %v, Python pattern %d groups %s tail %v",
				i, len(log), job.Logs[i], index, showGroups(groups), gotTail, want[i].Index, showGroups(want[i].Groups), want[i].Tail)
		}
	}
	t.Logf("matches by pattern (-1 none): %v", matched)
}

func equalGroups(a, b []*string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || (a[i] != nil && *a[i] != *b[i]) {
			return false
		}
	}
	return true
}

func showGroups(gs []*string) string {
	var parts []string
	for _, g := range gs {
		if g == nil {
			parts = append(parts, "None")
			continue
		}
		b, _ := hex.DecodeString(*g)
		if len(b) > 60 {
			b = append(b[:30:30], append([]byte("..."), b[len(b)-30:]...)...)
		}
		parts = append(parts, fmt.Sprintf("%q", b))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestLogPatternsReference checks, with LPBUILDD_REPO set to a
// launchpad-buildd git repository, that the patterns searchLog uses are
// the reference's BuildLogRegexes and stop pattern, character for
// character.
func TestLogPatternsReference(t *testing.T) {
	repo := os.Getenv("LPBUILDD_REPO")
	if repo == "" {
		t.Skip("LPBUILDD_REPO not set")
	}
	src, err := exec.Command("git", "-C", repo, "show", "HEAD:lpbuildd/binarypackage.py").Output()
	if err != nil {
		t.Fatalf("cannot read the reference: %v", err)
	}
	// Evaluate only the module-level pattern definitions.
	cmd := exec.Command("python3", "-c", `
import ast, json, sys
tree = ast.parse(sys.stdin.read())
keep = [n for n in tree.body if (isinstance(n, ast.Assign) and n.targets[0].id.startswith("APT_"))
        or (isinstance(n, ast.ClassDef) and n.name == "BuildLogRegexes")]
ns = {}
exec(compile(ast.Module(body=keep, type_ignores=[]), "binarypackage.py", "exec"), ns)
R = ns["BuildLogRegexes"]
json.dump([R.GIVENBACK, R.MAYBEDEPFAIL, list(R.DEPFAIL)], sys.stdout)
`)
	cmd.Stdin = bytes.NewReader(src)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var ref [3][]string
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	ours := []*logPattern{givenBackPattern, maybeDepFailPattern, depFailPattern}
	for i, p := range ours {
		if len(ref[i]) != 1 {
			t.Fatalf("reference has %d patterns in group %d", len(ref[i]), i)
		}
		src, _ := pythonPatternSource(p)
		if src != ref[i][0] {
			t.Errorf("pattern %d:\n ours %q\n  ref %q", i, src, ref[i][0])
		}
	}
	if !bytes.Contains(src, []byte(`r"^Toolchain package versions:"`)) {
		t.Error("the reference's stop pattern changed")
	}
	if s, _ := pythonPatternSource(toolchainStopPattern); s != `^Toolchain package versions:` {
		t.Errorf("stop pattern %q", s)
	}
}
