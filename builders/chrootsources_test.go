package builders

import (
	"context"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

func TestOneLineSources(t *testing.T) {
	got := OneLineSources([]byte("# comment\ndeb http://deb.debian.org/debian bookworm main # trailing\n" +
		"deb-src http://x/ y main\n  deb   [arch=amd64]   http://a/ b c d\ndeb short\n"))
	want := []string{"deb http://deb.debian.org/debian bookworm main", "deb [arch=amd64] http://a/ b c d"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("OneLineSources = %q, want %q", got, want)
	}
}

func TestDeb822ToOneLine(t *testing.T) {
	// Ubuntu noble's /etc/apt/sources.list.d/ubuntu.sources, shortened.
	data := "## Ubuntu sources have moved to /etc/apt/sources.list.d/ubuntu.sources\n" +
		"Types: deb\nURIs: http://archive.ubuntu.com/ubuntu/\nSuites: noble noble-updates\nComponents: main universe\n" +
		"Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n\n" +
		"# disabled\nTypes: deb\nURIs: http://security.ubuntu.com/ubuntu/\nSuites: noble-security\nEnabled: no\n\n" +
		"Types: deb-src\nURIs: http://archive.ubuntu.com/ubuntu/\nSuites: noble\nComponents: main\n"
	got, err := Deb822ToOneLine([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"deb [signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] http://archive.ubuntu.com/ubuntu/ noble main universe",
		"deb [signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] http://archive.ubuntu.com/ubuntu/ noble-updates main universe",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Deb822ToOneLine = %q, want %q", got, want)
	}
	// What it writes back is what Deb822Sources reads.
	if text, skipped := Deb822Sources(got); len(skipped) != 0 || !strings.Contains(text, "Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg") {
		t.Errorf("round trip: %q, skipped %q", text, skipped)
	}
}

func FuzzDeb822ToOneLine(f *testing.F) {
	f.Add([]byte("Types: deb\nURIs: http://a/\nSuites: s\nComponents: main\n"))
	f.Add([]byte("# c\nTypes: deb deb-src\nURIs: http://a/ http://b/\nSuites: s t\nSigned-By: /k\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := Deb822ToOneLine(data)
		if err != nil {
			return
		}
		for _, l := range lines {
			if strings.ContainsAny(l, "\n\r") || !strings.HasPrefix(l, "deb ") {
				t.Fatalf("line %q", l)
			}
		}
		_ = OneLineSources(data)
	})
}

// TestTranslationTemplatesChrootOwnSources: with no archives (what
// buildd-manager sends), the chroot's own sources are updated and used.
func TestTranslationTemplatesChrootOwnSources(t *testing.T) {
	s := installSeams(t)
	s.files = map[string]string{"README": "x"}
	m, err := NewTranslationTemplatesManager(Request{BuildID: "TRANSLATIONTEMPLATESBUILD-5", Chroot: target.Image{Path: "/c", SHA1: "c"},
		Args: ttArgs(map[string]any{"branch_url": "https://bzr.example/trunk"})})
	if err != nil {
		t.Fatal(err)
	}
	old := BzrCommand
	BzrCommand = "/nonexistent/brz"
	t.Cleanup(func() { BzrCommand = old })
	ft := newFakeTarget()
	ft.put("/etc/apt/sources.list", "deb http://archive.ubuntu.com/ubuntu noble main\n", 0o644)
	fe := newFakeEnv(ft)
	res := m.Run(context.Background(), &fe.Env)
	log := fe.logText()
	if !strings.Contains(log, "No archives given: updating from the chroot's own apt sources") {
		t.Errorf("log:\n%s", log)
	}
	lp, ok := ft.files["/etc/apt/sources.list.d/lp-buildd.sources"]
	if !ok || !strings.Contains(string(lp.data), "URIs: http://archive.ubuntu.com/ubuntu") {
		t.Errorf("sources written: %v", lp)
	}
	if _, ok := ft.command("/usr/bin/apt-get", "-uy", "update"); !ok {
		t.Errorf("no apt-get update: %v", ft.argvs())
	}
	// brz missing on the host: the builder's fault, not the branch's.
	if res.Status != BuildBuilderFail || !strings.Contains(log, "cannot run Breezy") {
		t.Errorf("status %s; log:\n%s", res.Status, log)
	}
}
