package relocs

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A PIE gives back its relocation table (and its RSS falls by about as
// much); a non-PIE executable has none and Release does nothing.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds executables")
	}
	for _, tc := range []struct {
		name  string
		flags []string
		pie   bool
	}{
		{"pie", []string{"-buildmode=pie", "-ldflags=-s -w"}, true},
		{"exe", []string{"-ldflags=-s -w"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "rssprobe")
			cmd := exec.Command("go", append(append([]string{"build"}, tc.flags...), "-o", bin, "./testdata/rssprobe")...)
			cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			out, err := exec.Command(bin).CombinedOutput()
			if err != nil {
				t.Fatalf("rssprobe: %v\n%s", err, out)
			}
			var released, before, after int
			if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &released, &before, &after); err != nil {
				t.Fatalf("rssprobe printed %q: %v", out, err)
			}
			t.Logf("released %d bytes; RssFile %d kB → %d kB", released, before, after)
			if !tc.pie {
				if released != 0 {
					t.Errorf("released %d bytes of a non-PIE executable", released)
				}
				return
			}
			if released < 64<<10 {
				t.Fatalf("released %d bytes: a Go PIE has a relocation table of hundreds of KB", released)
			}
			if before-after < released/1024/2 {
				t.Errorf("RssFile fell %d kB, released %d kB", before-after, released/1024)
			}
		})
	}
}

func TestRelaRangeRefusesNonELF(t *testing.T) {
	if _, _, err := relaRange(strings.NewReader(strings.Repeat("x", 64)), 0x1000); err == nil {
		t.Error("relaRange accepted a file that is not ELF")
	}
}

// Whatever the executable holds, relaRange returns or errs: it never panics.
func FuzzRelaRange(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		relaRange(bytes.NewReader(b), 0x400040)
	})
}
