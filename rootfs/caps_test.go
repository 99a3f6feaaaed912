package rootfs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Golden values: the hex is what `getfattr -e hex -n security.capability`
// shows after `setcap <text>` (libcap2-bin 2.66, Debian 12) and the text is
// what `getcap` prints for it.
var capsGolden = []struct {
	name string
	raw  string
	want Caps
	text string
}{
	{"v2 net_raw=ep", "0100000200200000000000000000000000000000",
		Caps{Permitted: 1 << 13, Effective: true, Version: 2}, "cap_net_raw=ep"},
	{"v2 net_raw=p", "0000000200200000000000000000000000000000",
		Caps{Permitted: 1 << 13, Version: 2}, "cap_net_raw=p"},
	{"v2 two caps", "0100000200300000000000000000000000000000",
		Caps{Permitted: 1<<12 | 1<<13, Effective: true, Version: 2}, "cap_net_admin,cap_net_raw=ep"},
	{"v2 inheritable", "0000000200000000000000800000000000000000",
		Caps{Inheritable: 1 << 31, Version: 2}, "cap_setfcap=i"},
	{"v2 all=ep", "01000002ffffffff00000000ff01000000000000",
		Caps{Permitted: 1<<41 - 1, Effective: true, Version: 2}, "=ep"},
	{"v2 all+i", "0000000200000000ffffffff00000000ff010000",
		Caps{Inheritable: 1<<41 - 1, Version: 2}, "=i"},
	{"v2 all=p chown+i", "00000002ffffffff01000000ff01000000000000",
		Caps{Permitted: 1<<41 - 1, Inheritable: 1, Version: 2}, "=p cap_chown+i"},
	{"v2 high caps", "0100000200000000000000008001000080010000",
		Caps{Permitted: 1<<39 | 1<<40, Inheritable: 1<<39 | 1<<40, Effective: true, Version: 2}, "cap_bpf,cap_checkpoint_restore=eip"},
	{"v1 net_raw=ep", "010000010020000000000000",
		Caps{Permitted: 1 << 13, Effective: true, Version: 1}, "cap_net_raw=ep"},
	{"v3 net_raw=ep rootid", "010000030020000000000000000000000000000040420f00",
		Caps{Permitted: 1 << 13, Effective: true, RootID: 1000000, Version: 3}, "cap_net_raw=ep"},
	{"v3 rootid 0", "010000030020000000000000000000000000000000000000",
		Caps{Permitted: 1 << 13, Effective: true, Version: 3}, "cap_net_raw=ep"},
	{"v2 unnamed bit", "0000000200000000000000000000800000000000",
		Caps{Permitted: 1 << 55, Version: 2}, "= 55+p"},
	{"v2 mixed groups", "0100000221000000200000000000000000000000",
		Caps{Permitted: 1 | 1<<5, Inheritable: 1 << 5, Effective: true, Version: 2}, "cap_kill=eip cap_chown+ep"},
}

func TestDecodeCapsGolden(t *testing.T) {
	for _, tc := range capsGolden {
		t.Run(tc.name, func(t *testing.T) {
			raw := mustHex(t, tc.raw)
			c, err := DecodeCaps(raw)
			if err != nil {
				t.Fatal(err)
			}
			if c != tc.want {
				t.Fatalf("DecodeCaps = %+v, want %+v", c, tc.want)
			}
			if got := c.String(); got != tc.text {
				t.Errorf("String = %q, want %q", got, tc.text)
			}
			switch c.Version {
			case 2:
				if got := c.EncodeV2(); !bytes.Equal(got, raw) {
					t.Errorf("EncodeV2 = %x, want %x", got, raw)
				}
			case 3:
				if got := c.EncodeV3(c.RootID); !bytes.Equal(got, raw) {
					t.Errorf("EncodeV3 = %x, want %x", got, raw)
				}
			case 1:
				v2 := c.EncodeV2()
				if len(v2) != 20 || !bytes.Equal(v2[4:12], raw[4:12]) || v2[3] != 2 || v2[0] != raw[0] {
					t.Errorf("EncodeV2 of v1 = %x", v2)
				}
			}
		})
	}
}

func TestCapsForeignRootIDNormalised(t *testing.T) {
	// A v3 value from another machine's namespace (rootid 231072): decoding
	// keeps it, EncodeV2 normalises it to a plain v2 with the same sets and
	// effective flag, EncodeV3 re-owns it.
	raw := mustHex(t, "01000003002000000000000000000000000000002086030a")
	c, err := DecodeCaps(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.RootID != 0x0a038620 || c.Version != 3 || !c.Effective || c.Permitted != 1<<13 {
		t.Fatalf("decoded %+v", c)
	}
	if got, want := hex.EncodeToString(c.EncodeV2()), "0100000200200000000000000000000000000000"; got != want {
		t.Errorf("EncodeV2 = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(c.EncodeV3(1000000)), "010000030020000000000000000000000000000040420f00"; got != want {
		t.Errorf("EncodeV3 = %s, want %s", got, want)
	}
}

func TestDecodeCapsRejects(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"empty", ""},
		{"short", "010000"},
		{"v2 size 12", "010000020020000000000000"},
		{"v1 size 20", "0100000100200000000000000000000000000000"},
		{"v3 size 20", "0100000300200000000000000000000000000000"},
		{"v2 size 24", "010000020020000000000000000000000000000040420f00"},
		{"unknown flag", "0200000200200000000000000000000000000000"},
		{"revision 4", "0100000400200000000000000000000000000000"},
		{"revision 0", "0000000000200000000000000000000000000000"},
		{"trailing byte", "010000020020000000000000000000000000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := DecodeCaps(mustHex(t, tc.raw)); !errors.Is(err, ErrBadCaps) {
				t.Fatalf("DecodeCaps = %+v, %v; want ErrBadCaps", c, err)
			}
		})
	}
}

func TestCapsNamespaceConversion(t *testing.T) {
	uids := []IDMap{{NSID: 0, HostID: 1000000, Size: 65536}}
	c := Caps{Permitted: 1 << 13, Effective: true, Version: 2}
	v3, err := c.ForNamespace(uids)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(v3), "010000030020000000000000000000000000000040420f00"; got != want {
		t.Fatalf("ForNamespace = %s, want %s", got, want)
	}
	back, _ := DecodeCaps(v3)
	v2, err := back.FromNamespace(uids)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(v2), "0100000200200000000000000000000000000000"; got != want {
		t.Fatalf("FromNamespace = %s, want %s", got, want)
	}
	// Owned by namespace uid 1000 (host 1001000): stays v3, rootid 1000.
	c3 := Caps{Permitted: 1 << 13, Version: 3, RootID: 1001000}
	got, err := c3.FromNamespace(uids)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := DecodeCaps(got); d.Version != 3 || d.RootID != 1000 {
		t.Fatalf("FromNamespace of foreign owner = %+v", d)
	}
	if _, err := (Caps{Version: 3, RootID: 5}).FromNamespace(uids); err == nil {
		t.Fatal("unmapped rootid accepted")
	}
	if _, err := c.ForNamespace([]IDMap{{NSID: 1, HostID: 5, Size: 1}}); err == nil {
		t.Fatal("unmapped root accepted")
	}
}

func FuzzDecodeCaps(f *testing.F) {
	for _, g := range capsGolden {
		f.Add(mustHex(f, g.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := DecodeCaps(raw)
		if err != nil {
			return
		}
		_ = c.String()
		if c.Version == 1 {
			return
		}
		if got := c.Encode(); !bytes.Equal(got, raw) {
			t.Fatalf("re-encode %x = %x", raw, got)
		}
	})
}
