package builders

import (
	"archive/tar"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ociBenchStream writes a docker save stream of n layers of size bytes
// each, half random (incompressible) and half text-like.
func ociBenchStream(w io.Writer, n int, size int64) error {
	tw := tar.NewWriter(w)
	rng := rand.New(rand.NewSource(1))
	chunk := make([]byte, 1<<20)
	for i := 0; i < n; i++ {
		id := strconv.Itoa(1000000 + i)
		tw.WriteHeader(&tar.Header{Name: id + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		if err := tw.WriteHeader(&tar.Header{Name: id + "/layer.tar", Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
			return err
		}
		for left := size; left > 0; {
			k := int64(len(chunk))
			if left < k {
				k = left
			}
			if (size-left)/int64(len(chunk))%2 == 0 {
				rng.Read(chunk[:k])
			} else {
				for j := range chunk[:k] {
					chunk[j] = "the quick brown fox jumps over the lazy dog\n"[j%44]
				}
			}
			if _, err := tw.Write(chunk[:k]); err != nil {
				return err
			}
			left -= k
		}
	}
	return tw.Close()
}

// TestOCISaveThroughput (BUILDD_AGENT_OCI_BENCH=MiB) compares result
// processing of a synthetic image with `gzip -6` of the same stream, both
// from a pipe; it logs wall times. Not a pass/fail timing test.
func TestOCISaveThroughput(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv("BUILDD_AGENT_OCI_BENCH"))
	if mib == 0 {
		t.Skip("set BUILDD_AGENT_OCI_BENCH=<MiB> to run")
	}
	const layers = 4
	size := int64(mib) << 20 / layers
	start := time.Now()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ociBenchStream(pw, layers, size)) }()
	s := newOCISave(func(name string, r io.Reader) (string, error) {
		_, err := io.Copy(io.Discard, r)
		return "", err
	}, io.Discard)
	if err := s.read(pr); err != nil {
		t.Fatal(err)
	}
	ours := time.Since(start)
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "VmHWM:") {
				t.Logf("peak RSS of the test process after processing: %s", strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")))
			}
		}
	}
	start = time.Now()
	cmd := exec.Command("gzip", "-6", "-c")
	in, _ := cmd.StdinPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ociBenchStream(in, layers, size); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	theirs := time.Since(start)
	t.Logf("%d MiB in %d layers: oci result processing %s, gzip -6 %s (ratio %.2f)", mib, layers, ours, theirs, ours.Seconds()/theirs.Seconds())
}
