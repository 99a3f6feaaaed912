package debian

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestImplicitPointerRegexes(t *testing.T) {
	// TestPointerCheckRegexes: with and without column numbers.
	for _, c := range []struct {
		re   *regexp.Regexp
		line string
	}{
		{pointerRE(), "/build/buildd/gtk+3.0-3.0.0/./gtk/ubuntumenuproxymodule.c:94: warning: assignment makes pointer from integer without a cast"},
		{pointerRE(), "/build/buildd/gtk+3.0-3.0.0/./gtk/ubuntumenuproxymodule.c:94:7: warning: assignment makes pointer from integer without a cast"},
		{pointerRE(), "a.c:1: warning: initialization makes pointer from integer without a cast"},
		{pointerRE(), "a.c:1: warning: return makes pointer from integer without a cast"},
		{pointerRE(), "a.c:1: warning: passing arg 2 of `strcpy' makes pointer from integer without a cast"},
		{pointerRE(), "a.c:1: warning: passing arg 2 of pointer to function makes pointer from integer without a cast"},
		{pointerRE(), "a.c:1:2: warning: cast to pointer from integer of different size"},
		{implicitRE(), "/build/buildd/gtk+3.0-3.0.0/./gtk/ubuntumenuproxymodule.c:94: warning: implicit declaration of function 'foo'"},
		{implicitRE(), "/build/buildd/gtk+3.0-3.0.0/./gtk/ubuntumenuproxymodule.c:94:7: warning: implicit declaration of function 'foo'"},
		{implicitRE(), "a.c:94:7: warning: implicit declaration of function `foo'"},
	} {
		if !c.re.MatchString(c.line) {
			t.Errorf("%v does not match %q", c.re, c.line)
		}
	}
	if implicitRE().MatchString("a.c: warning: implicit declaration of function 'foo'") {
		t.Error("matched without a line number")
	}
	if pointerRE().MatchString("a.c:1: error: assignment makes pointer from integer without a cast") {
		t.Error("matched an error")
	}
}

func filterAll(t *testing.T, in []byte, inline bool, chunk func() int) ([]byte, int) {
	t.Helper()
	var out bytes.Buffer
	f := NewImplicitPointerFilter(&out, inline)
	for len(in) > 0 {
		n := min(chunk(), len(in))
		if w, err := f.Write(in[:n]); err != nil || w != n {
			t.Fatalf("Write = %d, %v", w, err)
		}
		in = in[n:]
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), f.Problems()
}

func whole() int { return 1 << 30 }

const problemLog = "Build log with errors\n" +
	"/build/gtk/ubuntumenuproxymodule.c:94: warning: implicit declaration of function 'foo'\n" +
	"/build/gtk/ubuntumenuproxymodule.c:94: warning: assignment makes pointer from integer without a cast\n" +
	"More build log\n"

const problemLine = "Function `foo' implicitly converted to pointer at /build/gtk/ubuntumenuproxymodule.c:94"

func TestImplicitPointerFilter(t *testing.T) {
	for _, c := range []struct {
		name     string
		in       string
		inline   bool
		want     string
		problems int
	}{
		{"out of line, no errors", "Innocuous build log\nwith no errors\n", false, "", 0},
		{"out of line, errors", problemLog, false, problemLine + "\n", 1},
		{"in line, no errors", "Innocuous build log\nwith no errors\n\x80\x81\x82\n", true, "Innocuous build log\nwith no errors\n\x80\x81\x82\n", 0},
		{"in line, errors", problemLog, true,
			"Build log with errors\n" +
				"/build/gtk/ubuntumenuproxymodule.c:94: warning: implicit declaration of function 'foo'\n" +
				"/build/gtk/ubuntumenuproxymodule.c:94: warning: assignment makes pointer from integer without a cast\n" +
				problemLine + "\n" +
				"More build log\n" +
				problemLine + "\n\n" + implicitPointerTrailer, 1},
		{"in line, non-UTF-8 after errors", strings.Replace(problemLog, "More build log\n", "\x80\x81\x82\n", 1), true,
			strings.Replace(problemLog, "More build log\n", problemLine+"\n\x80\x81\x82\n", 1) + problemLine + "\n\n" + implicitPointerTrailer, 1},
		{"different line", "a.c:1: warning: implicit declaration of function 'f'\na.c:2: warning: return makes pointer from integer without a cast\n", true,
			"a.c:1: warning: implicit declaration of function 'f'\na.c:2: warning: return makes pointer from integer without a cast\n", 0},
		{"different file", "a.c:1: warning: implicit declaration of function 'f'\nb.c:1: warning: return makes pointer from integer without a cast\n", false, "", 0},
		{"leading zeros", "a.c:007:3: warning: implicit declaration of function `f'\na.c:7:9: warning: return makes pointer from integer without a cast\n", false,
			"Function `f' implicitly converted to pointer at a.c:7\n", 1},
		{"latest implicit wins", "a.c:1: warning: implicit declaration of function 'f'\na.c:2: warning: implicit declaration of function 'g'\n" +
			"a.c:1: warning: return makes pointer from integer without a cast\na.c:2: warning: return makes pointer from integer without a cast\n", false,
			"Function `g' implicitly converted to pointer at a.c:2\n", 1},
		{"twice", "a.c:1: warning: implicit declaration of function 'f'\na.c:1: warning: return makes pointer from integer without a cast\n" +
			"a.c:1: warning: cast to pointer from integer of different size\n", false,
			"Function `f' implicitly converted to pointer at a.c:1\nFunction `f' implicitly converted to pointer at a.c:1\n", 2},
		{"empty file name never matches the initial state", ":1: warning: return makes pointer from integer without a cast\n", false, "", 0},
		{"last line without newline", "a.c:1: warning: implicit declaration of function 'f'\na.c:1: warning: return makes pointer from integer without a cast", true,
			"a.c:1: warning: implicit declaration of function 'f'\na.c:1: warning: return makes pointer from integer without a cast" +
				"Function `f' implicitly converted to pointer at a.c:1\n" +
				"Function `f' implicitly converted to pointer at a.c:1\n\n" + implicitPointerTrailer, 1},
	} {
		for _, chunking := range []struct {
			name string
			n    func() int
		}{{"whole", whole}, {"bytes", func() int { return 1 }}, {"sevens", func() int { return 7 }}} {
			got, problems := filterAll(t, []byte(c.in), c.inline, chunking.n)
			if string(got) != c.want || problems != c.problems {
				t.Errorf("%s (%s): got %q, %d problems; want %q, %d", c.name, chunking.name, got, problems, c.want, c.problems)
			}
		}
	}
}

func TestImplicitPointerFilterLongLines(t *testing.T) {
	// A huge line passes through unchanged and does not disturb matching
	// of the following lines.
	long := strings.Repeat("x", 3*maxFilterLinePrefix) + "\n"
	in := long + "a.c:1: warning: implicit declaration of function 'f'\n" + long +
		"a.c:1: warning: return makes pointer from integer without a cast" + strings.Repeat(" tail", maxFilterLinePrefix) + "\n"
	got, problems := filterAll(t, []byte(in), true, func() int { return 4093 })
	if problems != 1 || !strings.HasPrefix(string(got), in+"Function `f' implicitly converted") {
		t.Errorf("long lines: %d problems, output prefix mismatch", problems)
	}
	var out bytes.Buffer
	f := NewImplicitPointerFilter(&out, true)
	f.Write([]byte(long))
	if c := cap(f.line); c > 2*maxFilterLinePrefix {
		t.Errorf("line buffer grew to %d", c)
	}
}

func TestImplicitPointerFilterSummaryBound(t *testing.T) {
	pair := "a.c:1: warning: implicit declaration of function 'f'\na.c:1: warning: return makes pointer from integer without a cast\n"
	n := maxFilterSummary/len("Function `f' implicitly converted to pointer at a.c:1\n") + 100
	got, problems := filterAll(t, []byte(strings.Repeat(pair, n)), true, whole)
	if problems != n {
		t.Errorf("problems = %d, want %d", problems, n)
	}
	if !bytes.Contains(got, []byte("more problems not repeated here)\n")) || !bytes.HasSuffix(got, []byte(implicitPointerTrailer)) {
		t.Error("summary not bounded as documented")
	}
}

type errWriter struct{ n int }

func (e *errWriter) Write(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errors.New("pipe closed")
	}
	e.n--
	return len(p), nil
}

func TestImplicitPointerFilterWriteError(t *testing.T) {
	f := NewImplicitPointerFilter(&errWriter{n: 1}, true)
	if _, err := f.Write([]byte("a\nb\n")); err == nil {
		t.Error("write error not reported")
	}
	if _, err := f.Write([]byte("c\n")); err == nil {
		t.Error("write error forgotten")
	}
	if err := f.Close(); err == nil {
		t.Error("Close hides the write error")
	}
	if _, err := f.Write([]byte("d")); err == nil {
		t.Error("write after Close accepted")
	}
}

func TestImplicitPointerWarnOnlyAndPersonality(t *testing.T) {
	for _, c := range []struct {
		arch, suite string
		warn        bool
		pers        string
	}{
		{"amd64", "noble", false, "linux64"},
		{"i386", "noble", true, "linux32"},
		{"armhf", "jammy", true, "linux32"},
		{"arm64", "jammy", false, "linux64"},
		{"ppc64el", "focal", false, "linux64"},
		{"s390x", "focal", false, "linux64"},
		{"riscv64", "noble", false, ""},
		{"amd64", "hardy-proposed", true, "linux64"},
		{"amd64", "karmic", true, "linux64"},
		{"amd64", "jaunty", false, "linux64"},
		{"amd64", "intrepid", false, "linux64"},
		{"x32", "warty", true, "linux64"},
		{"lpia", "hardy", true, "linux32"},
	} {
		if got := ImplicitPointerWarnOnly(c.arch, c.suite); got != c.warn {
			t.Errorf("ImplicitPointerWarnOnly(%q, %q) = %v", c.arch, c.suite, got)
		}
		if got := Personality(c.arch); got != c.pers {
			t.Errorf("Personality(%q) = %q", c.arch, got)
		}
	}
	for suite, want := range map[string]bool{"precise": true, "lucid-updates": true, "hardy": true, "trusty": false, "noble": false} {
		if Uname26(suite) != want {
			t.Errorf("Uname26(%q) != %v", suite, want)
		}
	}
}

// TestImplicitPointerFilterReference runs launchpad-buildd's own
// filter_log on random logs and compares. It needs the reference source:
// set LPBUILDD_REPO to a launchpad-buildd git repository (bare is fine).
func TestImplicitPointerFilterReference(t *testing.T) {
	repo := os.Getenv("LPBUILDD_REPO")
	if repo == "" {
		t.Skip("LPBUILDD_REPO not set")
	}
	src, err := exec.Command("git", "-C", repo, "show", "HEAD:lpbuildd/check_implicit_pointer_functions.py").Output()
	if err != nil {
		t.Fatalf("cannot read the reference: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cipf.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	pat := exec.Command("python3", "-c", "import cipf; print(cipf.implicit_pattern.pattern.decode()); print(cipf.pointer_pattern.pattern.decode())")
	pat.Dir = dir
	pats, err := pat.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	ours := strings.TrimPrefix(implicitRE().String(), "^") + "\n" + strings.TrimPrefix(pointerRE().String(), "^") + "\n"
	if string(pats) != ours {
		t.Errorf("patterns differ:\n ours %q\n  ref %q", ours, pats)
	}
	r := rand.New(rand.NewSource(7))
	pieces := []string{
		"a.c:1: warning: implicit declaration of function 'f'\n", "a.c:01:2: warning: implicit declaration of function `g'\n",
		"a.c:1: warning: return makes pointer from integer without a cast\n", "b.c:1: warning: assignment makes pointer from integer without a cast\n",
		"a.c:1:5: warning: passing arg 1 of `h' makes pointer from integer without a cast\n", "a.c:1: warning: cast to pointer from integer of different size\n",
		"x:y:1: warning: implicit declaration of function 'f'\n", "\x80\x81:1: warning: implicit declaration of function 'f\xff'\n",
		"\x80\x81:1: warning: return makes pointer from integer without a cast\n", "noise\n", "\r\n", "a.c:1: warning: implicit declaration of function 'f",
	}
	var inputs [][]byte
	for i := 0; i < 300; i++ {
		var b bytes.Buffer
		for n := r.Intn(12); n > 0; n-- {
			b.WriteString(pieces[r.Intn(len(pieces))])
		}
		inputs = append(inputs, b.Bytes())
	}
	job, _ := json.Marshal(inputs) // []byte marshals as base64
	cmd := exec.Command("python3", "-c", `
import base64, io, json, sys, cipf
out = []
for data in json.load(sys.stdin):
    for inline in (False, True):
        w = io.BytesIO()
        n = cipf.filter_log(io.BytesIO(base64.b64decode(data or "")), w, in_line=inline)
        out.append([base64.b64encode(w.getvalue()).decode(), n])
json.dump(out, sys.stdout)
`)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(job)
	cmd.Stderr = os.Stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var want []struct {
		Out      []byte
		Problems int
	}
	var raw [][2]json.RawMessage
	if err := json.Unmarshal(res, &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw {
		var w struct {
			Out      []byte
			Problems int
		}
		json.Unmarshal(r[0], &w.Out)
		json.Unmarshal(r[1], &w.Problems)
		want = append(want, w)
	}
	for i, in := range inputs {
		for k, inline := range []bool{false, true} {
			w := want[2*i+k]
			got, problems := filterAll(t, in, inline, func() int { return 1 + r.Intn(20) })
			if !bytes.Equal(got, w.Out) || problems != w.Problems {
				t.Errorf("input %q inline=%v:\n got %q (%d)\nwant %q (%d)", in, inline, got, problems, w.Out, w.Problems)
			}
		}
	}
}

// BenchmarkImplicitPointerFilter measures the filter on compiler-like
// output in 32 KiB writes.
func BenchmarkImplicitPointerFilter(b *testing.B) {
	var in bytes.Buffer
	for in.Len() < 16<<20 {
		in.WriteString("gcc -O2 -g -Wall -c src/module.c -o build/module.o -I/usr/include/glib-2.0 -DHAVE_CONFIG_H\n")
		in.WriteString("src/module.c:123:45: warning: unused variable 'x' [-Wunused-variable]\n")
	}
	data := in.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		f := NewImplicitPointerFilter(io.Discard, true)
		for rest := data; len(rest) > 0; {
			n := min(32<<10, len(rest))
			f.Write(rest[:n])
			rest = rest[n:]
		}
		f.Close()
	}
}
