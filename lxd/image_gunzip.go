package lxd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// gunzipCommand is ISA-L's igzip (Debian package isal) when it is on PATH:
// it inflates the 281 MB test chroot with 0.4 s of CPU where Go's fastest
// inflater (klauspost/compress) needs 1.2 s and gzip 1.5 s, and inflating is
// the largest stage of a build's cold path. It checks the CRC and the
// length as gzip does; a stream it refuses is an error. "" = not installed:
// Go's inflater is used.
var gunzipCommand = sync.OnceValue(func() string {
	p, err := exec.LookPath("igzip")
	if err != nil {
		return ""
	}
	return p
})

// commandGunzip starts `igzip -dc` reading r. The reader it returns ends
// with the child's verdict: an exit status other than 0 is an error, never
// a clean io.EOF. close kills the child if it still runs and reaps it.
func commandGunzip(path string, r io.Reader) (io.Reader, func(), error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot start igzip: %w", err)
	}
	cr := &cmdReader{out: pr}
	cr.cmd = exec.Command(path, "-dc")
	cr.cmd.Stdin = r
	cr.cmd.Stdout = pw
	cr.cmd.Stderr = &cr.stderr
	// Wait also waits for the copy into the child's stdin; a source that
	// blocks must not hold close() for ever.
	cr.cmd.WaitDelay = 5 * time.Second
	if err := cr.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, nil, fmt.Errorf("cannot start igzip: %w", err)
	}
	pw.Close() // the child's now
	return cr, cr.close, nil
}

type cmdReader struct {
	cmd    *exec.Cmd
	out    *os.File
	stderr bytes.Buffer
	once   sync.Once
	err    error // the child's exit, once reaped
}

func (c *cmdReader) Read(p []byte) (int, error) {
	n, err := c.out.Read(p)
	if err == io.EOF {
		if werr := c.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (c *cmdReader) wait() error {
	c.once.Do(func() {
		if err := c.cmd.Wait(); err != nil {
			c.err = fmt.Errorf("cannot read gzip stream: igzip: %w: %s", err, strings.TrimSpace(c.stderr.String()))
		}
	})
	return c.err
}

func (c *cmdReader) close() {
	_ = c.cmd.Process.Kill() // an error: it has exited already
	_ = c.out.Close()
	_ = c.wait()
}
