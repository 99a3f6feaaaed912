package rootfs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSubID(t *testing.T) {
	in := "# comment\n_lxd:100000:10000001\nroot:100000:65536\nroot:300000:1000\nother:1:2\n\n"
	got, err := ParseSubID(strings.NewReader(in), "root")
	if err != nil {
		t.Fatal(err)
	}
	want := []IDMap{{HostID: 100000, NSID: 0, Size: 65536}, {HostID: 300000, NSID: 65536, Size: 1000}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseSubID (-want +got):\n%s", d)
	}
	if m, _ := ParseSubID(strings.NewReader(in), "nobody"); m != nil {
		t.Errorf("unknown user got %v", m)
	}
	for _, bad := range []string{"root:1\n", "root:x:1\n", "root:1:y\n", "root:100:10\nroot:105:10\n", "root:4294967295:2\n"} {
		if _, err := ParseSubID(strings.NewReader(bad), "root"); err == nil {
			t.Errorf("ParseSubID(%q) accepted", bad)
		}
	}
}

func TestParseIDMapFile(t *testing.T) {
	got, err := ParseIDMapFile(strings.NewReader("         0    1000000      65536\n  65536 2000000 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []IDMap{{NSID: 0, HostID: 1000000, Size: 65536}, {NSID: 65536, HostID: 2000000, Size: 10}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseIDMapFile (-want +got):\n%s", d)
	}
	if FormatIDMap(got) != "0 1000000 65536\n65536 2000000 10\n" {
		t.Errorf("FormatIDMap = %q", FormatIDMap(got))
	}
	for _, bad := range []string{"0 1\n", "0 1 2 3\n", "a 1 2\n", "0 0 0\n", "0 0 10\n5 100 10\n", "0 0 4294967295\n1 0 4294967295\n"} {
		if _, err := ParseIDMapFile(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseIDMapFile(%q) accepted", bad)
		}
	}
	m := IDMapping{UIDs: want}
	if h, ok := m.UID(65540); !ok || h != 2000004 {
		t.Errorf("UID(65540) = %d %v", h, ok)
	}
	if _, ok := m.UID(65546); ok {
		t.Error("UID(65546) mapped")
	}
	if n, ok := MapFromHost(want, 1000005); !ok || n != 5 {
		t.Errorf("MapFromHost = %d %v", n, ok)
	}
	if (IDMapping{}).Identity() != true || m.Identity() {
		t.Error("Identity wrong")
	}
}

func FuzzParseSubID(f *testing.F) {
	f.Add("root:100000:65536\nroot:300000:1000\n")
	f.Add("# c\nx:1:2\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseSubID(strings.NewReader(s), "root")
		if err != nil {
			return
		}
		if err := validateIDMap(m); err != nil {
			t.Fatalf("accepted invalid map %v: %v", m, err)
		}
		for _, r := range m {
			if h, ok := MapToHost(m, r.NSID); !ok || h != r.HostID {
				t.Fatalf("range %v does not map its own start", r)
			}
		}
	})
}

func FuzzParseIDMapFile(f *testing.F) {
	f.Add("0 1000000 65536\n")
	f.Add("0 0 4294967295\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseIDMapFile(strings.NewReader(s))
		if err != nil {
			return
		}
		again, err := ParseIDMapFile(strings.NewReader(FormatIDMap(m)))
		if err != nil || len(again) != len(m) {
			t.Fatalf("round trip of %v: %v %v", m, again, err)
		}
	})
}
