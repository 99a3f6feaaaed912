package debian

import (
	"bufio"
	"fmt"
	"math/rand"
	"os/exec"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.1", "1.0", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0~rc1", 1},
		{"1.0~~", "1.0~", -1},
		{"1.0~", "1.0", -1},
		{"1.0", "1.0+b1", -1},
		{"1.0", "1.0a", -1},
		{"1.0a", "1.0+", -1}, // letters sort before non-letters
		{"1.0a", "1.0.", -1},
		{"1.0-1", "1.0-2", -1},
		{"1.0-1", "1.0-1ubuntu1", -1},
		{"1.0", "1.0-0", 0},
		{"1:0.1", "2.0", 1},
		{"0:1.0", "1.0", 0},
		{"00:1.0", "0:1.0", 0},
		{"10:1", "9:1", 1},
		{"1.01", "1.1", 0},
		{"1.002", "1.1", 1},
		{"1.0-1.2", "1.0-1.10", -1},
		{"2.30-1", "2.4-1", 1},
		{"9~", "9", -1},
		{"3.0", "9~", -1},
		{"1.0-a-b", "1.0-a-c", -1},
		{"99999999999999999999999", "99999999999999999999998", 1},
		{"", "0", 0},
		{"a:1", "1", 1}, // invalid epoch: part of the upstream version
	} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

func TestValidVersion(t *testing.T) {
	for _, c := range []struct {
		v  string
		ok bool
	}{
		{"1.0", true},
		{"1:2.3-4ubuntu1~22.04.1", true},
		{"1.0-1-2", true},
		{"1.0+dfsg~rc1", true},
		{"0", true},
		{"2:1.2:3-1", true},
		{"", false},
		{"1.0 ", false},
		{":1.0", false},
		{"a:1.0", false},
		{"-1:1.0", false},
		{"99999999999:1.0", false},
		{"1:", false},
		{"1.0-", false},
		{"-1", false},
		{"a1.0", false},
		{"1.0_1", false},
		{"1.0-1:2", false},
		{"1.0-1_2", false},
		{"1:a", false},
	} {
		err := ValidVersion(c.v)
		if (err == nil) != c.ok {
			t.Errorf("ValidVersion(%q) = %v, want ok=%v", c.v, err, c.ok)
		}
	}
}

// randomVersion makes valid-looking Debian versions with the parts that
// exercise verrevcmp: epochs, '~', letters, punctuation, digit runs.
func randomVersion(r *rand.Rand) string {
	parts := []string{"0", "1", "2", "10", "01", "a", "b", "z", "A", "~", "~~", "+", ".", "rc", "dfsg", "9"}
	var b strings.Builder
	if r.Intn(4) == 0 {
		fmt.Fprintf(&b, "%d:", r.Intn(3))
	}
	b.WriteString([]string{"0", "1", "2", "10"}[r.Intn(4)])
	for n := r.Intn(5); n > 0; n-- {
		b.WriteString(parts[r.Intn(len(parts))])
	}
	if r.Intn(2) == 0 {
		b.WriteString("-")
		b.WriteString([]string{"0", "1", "a", "1ubuntu1", "1~", "1+b2", "2.1"}[r.Intn(7)])
		for n := r.Intn(3); n > 0; n-- {
			p := parts[r.Intn(len(parts))]
			b.WriteString(p)
		}
	}
	return b.String()
}

// TestCompareVersionsAptPkg compares CompareVersions with
// apt_pkg.version_compare (what launchpad-buildd uses) on random valid
// versions, and a few with dpkg --compare-versions. It skips without
// python3-apt.
func TestCompareVersionsAptPkg(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil || exec.Command(py, "-c", "import apt_pkg").Run() != nil {
		t.Skip("python3-apt not installed")
	}
	r := rand.New(rand.NewSource(1))
	var pairs [][2]string
	for len(pairs) < 5000 {
		a, b := randomVersion(r), randomVersion(r)
		if ValidVersion(a) != nil || ValidVersion(b) != nil {
			continue
		}
		pairs = append(pairs, [2]string{a, b})
	}
	var in strings.Builder
	for _, p := range pairs {
		fmt.Fprintf(&in, "%s %s\n", p[0], p[1])
	}
	cmd := exec.Command(py, "-c", `
import sys, apt_pkg
apt_pkg.init()
for line in sys.stdin:
    a, b = line.split()
    c = apt_pkg.version_compare(a, b)
    print((c > 0) - (c < 0))
`)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for i := 0; sc.Scan(); i++ {
		var want int
		fmt.Sscan(sc.Text(), &want)
		if got := CompareVersions(pairs[i][0], pairs[i][1]); got != want {
			t.Errorf("CompareVersions(%q, %q) = %d, apt_pkg says %d", pairs[i][0], pairs[i][1], got, want)
		}
	}
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		return
	}
	for _, p := range pairs[:40] {
		want := -1
		if exec.Command(dpkg, "--compare-versions", p[0], "eq", p[1]).Run() == nil {
			want = 0
		} else if exec.Command(dpkg, "--compare-versions", p[0], "gt", p[1]).Run() == nil {
			want = 1
		}
		if got := CompareVersions(p[0], p[1]); got != want {
			t.Errorf("CompareVersions(%q, %q) = %d, dpkg says %d", p[0], p[1], got, want)
		}
	}
}
