package debian

import (
	"os"
	"os/exec"
	"testing"
)

var archMatchCases = []struct {
	arch, wildcard string
	want           bool
}{
	{"amd64", "any", true},
	{"amd64", "amd64", true},
	{"amd64", "i386", false},
	{"amd64", "linux-any", true},
	{"amd64", "any-amd64", true},
	{"amd64", "any-i386", false},
	{"i386", "any-i386", true},
	{"amd64", "gnu-linux-any", true},
	{"amd64", "base-gnu-linux-any", true},
	{"amd64", "base-gnu-linux-amd64", false}, // a tuple without "any" is looked up as a name
	{"amd64", "linux-amd64", true},
	{"x32", "any-amd64", true},
	{"x32", "amd64", false},
	{"armhf", "any-arm", true},
	{"armel", "any-arm", true},
	{"armhf", "eabihf-any-any-any", true},
	{"armhf", "eabi-any-any-any", false},
	{"arm64", "any-arm", false},
	{"hurd-i386", "linux-any", false},
	{"hurd-i386", "hurd-any", true},
	{"kfreebsd-amd64", "any-amd64", true},
	{"kfreebsd-amd64", "kfreebsd-any", true},
	{"amd64", "all", false},
	{"all", "all", false},
	{"all", "any", false},
	{"amd64", "", false},
	{"bogus", "any", false},
	{"bogus", "bogus", false},
	{"linux-amd64", "amd64", true},
	{"linux-amd64-extra", "amd64", true},
	{"amd64", "any-", false},
	{"amd64", "-any", false},
	{"amd64", "any-any", true},
	{"amd64", "any-any-any-any-any", false},
	{"musl-linux-amd64", "linux-any", true},
	{"musl-linux-amd64", "musl-linux-any", true},
	{"amd64", "musl-linux-any", false},
	{"ppc64el", "any-ppc64el", true},
	{"riscv64", "linux-any", true},
}

func TestArchMatches(t *testing.T) {
	for _, c := range archMatchCases {
		if got := ArchMatches(c.arch, c.wildcard); got != c.want {
			t.Errorf("ArchMatches(%q, %q) = %v, want %v", c.arch, c.wildcard, got, c.want)
		}
	}
}

// TestArchMatchesDpkgArchitecture checks ArchMatches against the real
// dpkg-architecture -a<arch> -i<wildcard> for a matrix of architectures and
// wildcards. It skips when dpkg-architecture is not installed.
func TestArchMatchesDpkgArchitecture(t *testing.T) {
	dpkgArch, err := exec.LookPath("dpkg-architecture")
	if err != nil {
		t.Skip("dpkg-architecture not installed")
	}
	if testing.Short() {
		t.Skip("runs dpkg-architecture ~600 times")
	}
	arches := []string{"amd64", "i386", "x32", "arm64", "armhf", "armel", "ppc64el", "s390x",
		"riscv64", "mips64el", "hurd-i386", "kfreebsd-amd64", "musl-linux-arm64",
		"linux-amd64", "all", "bogus", "arm64ilp32", "powerpcspe", "uclibc-linux-armel", "mipsn32r6el"}
	wildcards := []string{"any", "all", "linux-any", "any-amd64", "any-i386", "any-arm",
		"amd64", "i386", "armhf", "gnu-any-any", "eabihf-any-any-any", "base-gnu-linux-amd64",
		"hurd-any", "kfreebsd-any", "musl-linux-any", "any-any", "any-", "-any", "linux-amd64",
		"any-any-any-any-any", "bogus", "linux-", "x32", "ilp32-any-any-any", "abin32-any-any-any",
		"any-mips64r6el", "uclibc-linux-any"}
	env := []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	for _, a := range arches {
		for _, w := range wildcards {
			cmd := exec.Command(dpkgArch, "-a"+a, "-i"+w)
			cmd.Env = env
			want := cmd.Run() == nil
			if got := ArchMatches(a, w); got != want {
				t.Errorf("ArchMatches(%q, %q) = %v, dpkg-architecture says %v", a, w, got, want)
			}
		}
	}
	for _, c := range archMatchCases {
		if c.wildcard == "" {
			continue // "-i" alone is a usage error, not a wildcard.
		}
		cmd := exec.Command(dpkgArch, "-a"+c.arch, "-i"+c.wildcard)
		cmd.Env = env
		if want := cmd.Run() == nil; want != c.want {
			t.Errorf("table case (%q, %q) = %v, dpkg-architecture says %v", c.arch, c.wildcard, c.want, want)
		}
	}
}
