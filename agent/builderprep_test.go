package agent

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestParseDpkgVersions(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
	}{
		{"installed", "sbuild ii 0.85.0\ngit ii 1:2.39.5-0+deb12u2\n", map[string]string{"sbuild": "0.85.0", "git": "1:2.39.5-0+deb12u2"}},
		{"not installed", "bzr un <none>\nlxd rc 5.0.2-5\n", map[string]string{}},
		{"hostile version", "git ii 1.0\x1b[2J\nsbuild ii 1.0;rm\n", map[string]string{}},
		{"short line", "git ii\n\n", map[string]string{}},
		{"tilde epoch", "dpkg-dev ii 1.21.22~bpo1\n", map[string]string{"dpkg-dev": "1.21.22~bpo1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseDpkgVersions([]byte(tc.in))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func FuzzParseDpkgVersions(f *testing.F) {
	f.Add([]byte("sbuild ii 0.85.0\ngit ii 1:2.39.5-0+deb12u2\n"))
	f.Add([]byte("bzr un <none>\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for k, v := range parseDpkgVersions(in) {
			if !debToken(k, "+-.") || !debToken(v, "+-.~:") {
				t.Fatalf("kept %q %q", k, v)
			}
		}
	})
}

// The lines open the log as builder-prep's do, with this machine's kernel
// and the packages dpkg knows.
func TestWriteBuilderPrep(t *testing.T) {
	var b bytes.Buffer
	writeBuilderPrep(&b)
	lines := strings.Split(b.String(), "\n")
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("builder-prep wrote %q, want two lines", b.String())
	}
	if uname, err := exec.Command("uname", "-snrvm").Output(); err == nil {
		if want := "Kernel version: " + strings.TrimSpace(string(uname)); lines[0] != want {
			t.Errorf("got %q, want %q", lines[0], want)
		}
	}
	re := regexp.MustCompile(`^Buildd toolchain package versions: buildd-agent_\S+( [a-z0-9.+-]+_[A-Za-z0-9.+~:-]+)*\.$`)
	if !re.MatchString(lines[1]) {
		t.Errorf("toolchain line %q", lines[1])
	}
	if _, err := exec.LookPath("dpkg-query"); err == nil {
		if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "git").Output(); err == nil && len(out) > 0 {
			if !strings.Contains(lines[1], " git_"+string(out)) {
				t.Errorf("toolchain line %q lacks git_%s", lines[1], out)
			}
		}
	}
}
