package standins

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
)

// TestBuilddAccount: the base's passwd and group gain buildd (once: a base
// that has it is left as is); a base without them is an error.
func TestBuilddAccount(t *testing.T) {
	mk := func(members map[string]string) string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "chroot-autobuild/", Typeflag: tar.TypeDir, Mode: 0o755})
		for _, name := range []string{"etc/passwd", "etc/group", "etc/hostname"} {
			data, ok := members[name]
			if !ok {
				continue
			}
			tw.WriteHeader(&tar.Header{Name: "chroot-autobuild/" + name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
			tw.Write([]byte(data))
		}
		tw.Close()
		zw.Close()
		p := filepath.Join(t.TempDir(), "base.tar.gz")
		os.WriteFile(p, buf.Bytes(), 0o644)
		return p
	}
	cases := []struct {
		name               string
		members            map[string]string
		wantPasswd, wantGr string
		wantErr            bool
	}{
		{name: "added", members: map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n", "etc/group": "root:x:0:", "etc/hostname": "x\n"},
			wantPasswd: "root:x:0:0:root:/root:/bin/bash\nbuildd:x:2001:2001:buildd (tests/standins):/home/buildd:/bin/sh\n",
			wantGr:     "root:x:0:\nbuildd:x:2001:\n"},
		{name: "already there", members: map[string]string{"etc/passwd": "root:x:0:0::/:/bin/sh\nbuildd:x:1000:1000::/:/bin/sh\n", "etc/group": "buildd:x:1000:\n"},
			wantPasswd: "root:x:0:0::/:/bin/sh\nbuildd:x:1000:1000::/:/bin/sh\n", wantGr: "buildd:x:1000:\n"},
		{name: "no group file", members: map[string]string{"etc/passwd": "root:x:0:0::/:/bin/sh\n"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string][]byte{}
			err := builddAccount(mk(tc.members), files)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if tc.wantErr {
				return
			}
			if string(files["etc/passwd"]) != tc.wantPasswd || string(files["etc/group"]) != tc.wantGr {
				t.Errorf("passwd %q group %q", files["etc/passwd"], files["etc/group"])
			}
		})
	}
}
