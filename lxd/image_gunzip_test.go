package lxd

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// igzip must say what Go's inflater says: the stream, or an error.
func TestCommandGunzip(t *testing.T) {
	igzip := gunzipCommand()
	if igzip == "" {
		t.Skip("igzip (Debian package isal) is not installed: Go's inflater is used")
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	body := strings.Repeat("chroot-autobuild/ ", 100000)
	good := gz(body)
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-6] ^= 0xff
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" = an error
	}{
		{"stream", good, body},
		{"members", append(gz("a"), gz("b")...), "ab"},
		{"truncated", good[:len(good)/2], ""},
		{"crc", badCRC, ""},
		{"header", []byte("\x1f\x8bxxxxxxxxxxxxxxxxxxxxxxxx"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, closeFn, err := commandGunzip(igzip, bytes.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			got, err := io.ReadAll(r)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("accepted, %d bytes", len(got))
			case tc.want != "" && (err != nil || string(got) != tc.want):
				t.Errorf("got %d bytes, %v", len(got), err)
			}
		})
	}
}

// Closing early (the upload failed) kills the child: nothing hangs.
func TestCommandGunzipClose(t *testing.T) {
	igzip := gunzipCommand()
	if igzip == "" {
		t.Skip("igzip (Debian package isal) is not installed")
	}
	pr, pw := io.Pipe() // a source that never ends
	defer pw.Close()
	go func() {
		zw := gzip.NewWriter(pw)
		for {
			if _, err := zw.Write(make([]byte, 1<<16)); err != nil {
				return
			}
		}
	}()
	r, closeFn, err := commandGunzip(igzip, pr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		closeFn()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close hangs")
	}
}
